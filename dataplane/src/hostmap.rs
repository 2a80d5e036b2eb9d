//! The host map of a snapshot: which app owns a host, how a proxy host
//! (`<app host>.<suffix>`) maps back to its app host, and the cookie
//! domain of a host. The rewrite engine and header rewriting depend on
//! this alone, never on the rest of the snapshot.

use crate::domains::{is_host_byte, DomainSet};

/// Longest DNS name (RFC 1035 §2.3.4), plus room for a port.
pub const MAX_HOST_LEN: usize = 253;

/// A lower-case host name held inline (no allocation per request).
#[derive(Clone, PartialEq, Eq)]
pub struct HostName {
    len: u8,
    bytes: [u8; MAX_HOST_LEN],
}

impl HostName {
    /// Lower-cases `host`; `None` if it is empty, too long or not ASCII
    /// host characters.
    pub fn lowercase(host: &[u8]) -> Option<HostName> {
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_HOST_LEN];
        for (d, s) in bytes.iter_mut().zip(host) {
            if !is_host_byte(*s) {
                return None;
            }
            *d = s.to_ascii_lowercase();
        }
        Some(HostName {
            len: host.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII host characters are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// The result of mapping a request's Host.
#[derive(Debug, PartialEq, Eq)]
pub enum HostMapping<'a> {
    /// `<app host>.<suffix>`: the app host (original letters) and app index.
    App { app_host: &'a [u8], app: usize },
    /// Under the suffix, but no app owns the name.
    UnknownApp,
    /// Not under the suffix at all.
    NotOurs,
}

/// Host → app lookup plus the proxy suffix.
pub struct HostMap {
    /// Lower case, without a leading dot.
    suffix: Box<[u8]>,
    /// `.` + suffix: what the rewrite engine appends to app hosts.
    dotted_suffix: Box<[u8]>,
    /// Finds `.<suffix>` in any letter case (built once per snapshot).
    dotted_suffix_finder: aho_corasick::AhoCorasick,
    /// App domain → index into the snapshot's apps.
    domains: DomainSet,
    /// Each app's domains (lower case), by app index: the session cookie
    /// is scoped to the proxy name of the one a request's host is under.
    app_domains: Vec<Box<[Box<str>]>>,
}

/// The proxy suffix is not a usable search pattern.
#[derive(Debug)]
pub struct BadSuffix(pub aho_corasick::BuildError);

impl std::fmt::Display for BadSuffix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl HostMap {
    /// Builds the map from `suffix` and each app's domains (by app index).
    pub fn build(suffix: &str, app_domains: Vec<Box<[Box<str>]>>) -> Result<HostMap, BadSuffix> {
        let dotted = format!(".{suffix}");
        let dotted_suffix_finder = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build([dotted.as_str()])
            .map_err(BadSuffix)?;
        let domain_list = app_domains
            .iter()
            .enumerate()
            .flat_map(|(index, ds)| ds.iter().map(move |d| (d.as_bytes(), index)));
        Ok(HostMap {
            suffix: suffix.as_bytes().into(),
            dotted_suffix: dotted.as_bytes().into(),
            dotted_suffix_finder,
            domains: DomainSet::build(domain_list),
            app_domains,
        })
    }

    /// A map with no apps (a data plane waiting for its first snapshot).
    pub fn empty() -> HostMap {
        // A fixed, valid suffix always builds.
        HostMap::build("unconfigured.invalid", Vec::new()).expect("static suffix")
    }

    pub fn suffix(&self) -> &[u8] {
        &self.suffix
    }

    /// `.` followed by the suffix.
    pub fn dotted_suffix(&self) -> &[u8] {
        &self.dotted_suffix
    }

    /// Start offsets of every `.<suffix>` in `text`, any letter case.
    pub fn find_dotted_suffix<'h>(&'h self, text: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
        self.dotted_suffix_finder.find_iter(text).map(|m| m.start())
    }

    /// The app owning `host` (equal to or under one of its domains, any
    /// letter case); the most specific domain wins.
    #[inline]
    pub fn app_for_host(&self, host: &[u8]) -> Option<usize> {
        if host.len() > MAX_HOST_LEN {
            return None;
        }
        self.domains.app_for_host(host)
    }

    /// [`HostMap::app_for_host`] for a host of host bytes only whose
    /// last-two-labels and last-label starts are known
    /// ([`crate::domains::DomainSet::lookup`]).
    #[inline]
    pub fn app_for_host_parts(&self, host: &[u8], two: usize, one: usize) -> Option<usize> {
        if host.len() > MAX_HOST_LEN {
            return None;
        }
        self.domains.lookup(host, two, one)
    }

    /// [`HostMap::app_for_host_parts`] for the host `data[start..end]`,
    /// read in place (see [`DomainSet::lookup_at`]).
    #[inline]
    pub fn app_for_host_at(
        &self,
        data: &[u8],
        start: usize,
        end: usize,
        two: usize,
        one: usize,
    ) -> Option<usize> {
        if end - start > MAX_HOST_LEN {
            return None;
        }
        self.domains.lookup_at(data, start, end, two, one)
    }

    /// If `host` (no port) is `<app host>.<suffix>`, returns the app host.
    pub fn strip_suffix<'a>(&self, host: &'a [u8]) -> Option<&'a [u8]> {
        let s = self.suffix.len();
        if host.len() <= s + 1 {
            return None;
        }
        let (head, tail) = host.split_at(host.len() - s);
        if !tail.eq_ignore_ascii_case(&self.suffix) || head[head.len() - 1] != b'.' {
            return None;
        }
        Some(&head[..head.len() - 1])
    }

    /// The cookie domain for `app_host` of app `app`: `<domain>.<suffix>`
    /// for the most specific app domain the host is under.
    pub fn cookie_domain(&self, app: usize, app_host: &str) -> String {
        let best = self.app_domains.get(app).and_then(|domains| {
            domains
                .iter()
                .filter(|d| {
                    app_host == &***d
                        || (app_host.len() > d.len()
                            && app_host.ends_with(&***d)
                            && app_host.as_bytes()[app_host.len() - d.len() - 1] == b'.')
                })
                .max_by_key(|d| d.len())
        });
        let suffix = std::str::from_utf8(&self.suffix).unwrap_or("");
        match best {
            Some(d) => format!("{d}.{suffix}"),
            None => format!("{app_host}.{suffix}"),
        }
    }

    /// Maps a request's host (without port) to an app.
    pub fn map_proxy_host<'a>(&self, host: &'a [u8]) -> HostMapping<'a> {
        match self.strip_suffix(host) {
            None => HostMapping::NotOurs,
            Some(app_host) => match self.app_for_host(app_host) {
                Some(app) => HostMapping::App { app_host, app },
                None => HostMapping::UnknownApp,
            },
        }
    }
}
