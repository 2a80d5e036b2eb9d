//! The per-core routing table compiled from a snapshot: which app owns a
//! host, how a proxy host maps back to an app host, and where each app's
//! upstream is.
//!
//! Each core builds its own table from the snapshot bytes (shared-nothing):
//! lookups touch no state shared with another core.

use crate::domains::DomainSet;
use crate::iptags::IpTagTable;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use palisade_schema::policy::{Policy, Scheme, Upstream, UpstreamHost};
use rustls::pki_types::ServerName;

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
            if !(s.is_ascii_alphanumeric() || matches!(s, b'-' | b'.' | b'_')) {
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

/// Trust anchors shared read-only by every core (cloned into each core's
/// TLS configurations when a snapshot is compiled, never touched per
/// request).
pub type SharedRoots = Arc<rustls::RootCertStore>;

/// Where one app's requests go.
pub struct AppRoute {
    pub name: Rc<str>,
    pub upstream: UpstreamRoute,
    /// Text after which bare app hosts are rewritten in this app's
    /// responses (none configured: `None`).
    pub bare_host_contexts: Option<ContextPatterns>,
    /// The app's domains (lower case): the session cookie is scoped to
    /// the proxy name of the one a request's host is under.
    pub domains: Box<[Box<str>]>,
    /// Requests need a proxy session.
    pub login_required: bool,
    /// The app's own OpenID Connect provider (else the global one).
    pub oidc: Option<Box<crate::identity::OidcProvider>>,
    /// How the app's downloads, uploads and custom activities look.
    pub profile: palisade_schema::session::AppProfile,
}

/// An app's bare-host context patterns, compiled.
pub struct ContextPatterns {
    finder: aho_corasick::AhoCorasick,
    /// Longest pattern (bytes).
    pub max_len: usize,
}

impl ContextPatterns {
    fn build(patterns: &[String]) -> Result<Option<ContextPatterns>, RouteError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(patterns)
            .map_err(|e| RouteError::BadSuffix(e.to_string()))?;
        Ok(Some(ContextPatterns {
            finder,
            max_len: patterns.iter().map(String::len).max().unwrap_or(1),
        }))
    }

    /// The first pattern occurrence starting in `from..limit`: (start, end).
    /// The answer depends only on the bytes and `from` (leftmost start,
    /// first-listed pattern at that start).
    pub fn find(&self, data: &[u8], from: usize, limit: usize) -> Option<(usize, usize)> {
        if from >= limit {
            return None;
        }
        let input = aho_corasick::Input::new(data).range(from..);
        self.finder
            .find(input)
            .filter(|m| m.start() < limit)
            .map(|m| (m.start(), m.end()))
    }
}

/// The connection target of an app, resolved as far as it can be ahead of
/// time.
pub enum UpstreamRoute {
    /// Connect to the requested app host itself: HTTPS, port 443.
    Direct { tls: Arc<rustls::ClientConfig> },
    /// Connect to this address for every host of the app.
    Fixed {
        /// Pool key, also used in error pages: `scheme://host:port`.
        key: Rc<str>,
        host: Rc<str>,
        ip: Option<IpAddr>,
        port: u16,
        /// `Some` for HTTPS upstreams.
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    },
}

/// Why a snapshot could not be turned into routes.
#[derive(Debug)]
#[non_exhaustive]
pub enum RouteError {
    BadCaCertificates {
        app: String,
        reason: String,
    },
    BadSuffix(String),
    /// TLS material, identity settings or access policies are unusable.
    Access(String),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::BadCaCertificates { app, reason } => {
                write!(f, "app {app:?}: bad CA certificates: {reason}")
            }
            RouteError::BadSuffix(e) => write!(f, "proxy suffix: {e}"),
            RouteError::Access(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RouteError {}

/// Host → app lookup plus the proxy suffix.
pub struct RouteTable {
    pub version: u64,
    /// Lower case, without a leading dot.
    suffix: Box<[u8]>,
    /// `.` + suffix: what the rewrite engine appends to app hosts.
    dotted_suffix: Box<[u8]>,
    /// Finds `.<suffix>` in any letter case (built once per snapshot).
    dotted_suffix_finder: aho_corasick::AhoCorasick,
    /// App domain → index into `apps`.
    domains: DomainSet,
    pub apps: Vec<AppRoute>,
    /// Client-address tags for access and session policies.
    pub ip_tags: IpTagTable,
    /// The TLS listener's configuration (`None`: no certificate).
    pub tls: Option<crate::tls::TlsServer>,
    pub identity: crate::identity::IdentityConfig,
    pub access: crate::access::AccessTable,
    pub block_page: palisade_schema::access::BlockPage,
    /// Session policies (their filters live in `access`).
    pub session: crate::session::SessionTable,
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

impl RouteTable {
    /// Builds the table; `system_roots` are the trust anchors for HTTPS
    /// upstreams without (or in addition to) an app CA file.
    pub fn build(
        policy: &Policy,
        system_roots: &rustls::RootCertStore,
    ) -> Result<RouteTable, RouteError> {
        let mut domain_list = Vec::new();
        let mut apps = Vec::with_capacity(policy.apps.len());
        let default_tls = Arc::new(client_config(system_roots.clone()));
        for (index, app) in policy.apps.iter().enumerate() {
            for d in &app.domains {
                domain_list.push((d.as_str().as_bytes(), index));
            }
            let tls = if app.ca_certificates_pem.is_empty() {
                default_tls.clone()
            } else {
                let mut roots = system_roots.clone();
                let mut reader = app.ca_certificates_pem.as_slice();
                let mut added = 0;
                for cert in rustls_pemfile::certs(&mut reader) {
                    let cert = cert.map_err(|e| RouteError::BadCaCertificates {
                        app: app.name.clone(),
                        reason: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| RouteError::BadCaCertificates {
                        app: app.name.clone(),
                        reason: e.to_string(),
                    })?;
                    added += 1;
                }
                if added == 0 {
                    return Err(RouteError::BadCaCertificates {
                        app: app.name.clone(),
                        reason: "no certificate in the PEM data".into(),
                    });
                }
                Arc::new(client_config(roots))
            };
            let upstream = match &app.upstream {
                Upstream::Direct => UpstreamRoute::Direct { tls },
                Upstream::Fixed { scheme, host, port } => {
                    let (host_text, ip) = match host {
                        UpstreamHost::Name(n) => (n.as_str().to_string(), None),
                        UpstreamHost::Ip(ip) => (ip.to_string(), Some(*ip)),
                    };
                    let tls = match scheme {
                        Scheme::Http => None,
                        Scheme::Https => {
                            let name = match ip {
                                Some(ip) => ServerName::IpAddress(ip.into()),
                                None => ServerName::try_from(host_text.clone()).map_err(|e| {
                                    RouteError::BadCaCertificates {
                                        app: app.name.clone(),
                                        reason: e.to_string(),
                                    }
                                })?,
                            };
                            Some((tls, name))
                        }
                    };
                    UpstreamRoute::Fixed {
                        key: format!("{}://{host}:{port}", scheme.as_str()).into(),
                        host: host_text.into(),
                        ip,
                        port: *port,
                        tls,
                    }
                }
            };
            apps.push(AppRoute {
                name: app.name.as_str().into(),
                upstream,
                bare_host_contexts: ContextPatterns::build(&app.bare_host_contexts)?,
                domains: app.domains.iter().map(|d| d.as_str().into()).collect(),
                login_required: app.login_required,
                oidc: match &app.oidc {
                    Some(o) => Some(Box::new(
                        crate::identity::OidcProvider::build(o)
                            .map_err(|e| RouteError::Access(format!("app {:?}: {e}", app.name)))?,
                    )),
                    None => None,
                },
                profile: app.profile.clone(),
            });
        }
        let dotted = format!(".{}", policy.suffix);
        let dotted_suffix_finder = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build([dotted.as_str()])
            .map_err(|e| RouteError::BadSuffix(e.to_string()))?;
        Ok(RouteTable {
            version: policy.version,
            ip_tags: IpTagTable::build(&policy.ip_tags),
            dotted_suffix_finder,
            suffix: policy.suffix.as_str().as_bytes().into(),
            dotted_suffix: dotted.as_bytes().into(),
            domains: DomainSet::build(domain_list.into_iter()),
            apps,
            tls: crate::tls::TlsServer::build(policy)
                .map_err(|e| RouteError::Access(format!("tls: {e}")))?,
            identity: crate::identity::IdentityConfig::build(&policy.identity)
                .map_err(RouteError::Access)?,
            access: crate::access::AccessTable::build(policy)
                .map_err(|e| RouteError::Access(format!("access policies: {}", e.0)))?,
            block_page: policy.block_page.clone(),
            session: crate::session::SessionTable::build(policy).map_err(RouteError::Access)?,
        })
    }

    /// A table with no apps, for a data plane waiting for its first
    /// snapshot from controld: every host gets 421.
    pub fn empty() -> RouteTable {
        RouteTable {
            version: 0,
            suffix: b"unconfigured.invalid".to_vec().into_boxed_slice(),
            dotted_suffix: b".unconfigured.invalid".to_vec().into_boxed_slice(),
            dotted_suffix_finder: aho_corasick::AhoCorasick::new([".unconfigured.invalid"])
                // A fixed, valid pattern always builds.
                .expect("static pattern"),
            domains: DomainSet::default(),
            apps: Vec::new(),
            ip_tags: IpTagTable::default(),
            tls: None,
            identity: crate::identity::IdentityConfig::none(),
            access: crate::access::AccessTable::empty(),
            block_page: Default::default(),
            session: crate::session::SessionTable::empty(),
        }
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

    /// [`RouteTable::app_for_host`] for a host of host bytes only whose
    /// last-two-labels and last-label starts are known
    /// ([`crate::domains::DomainSet::lookup`]).
    #[inline]
    pub fn app_for_host_parts(&self, host: &[u8], two: usize, one: usize) -> Option<usize> {
        if host.len() > MAX_HOST_LEN {
            return None;
        }
        self.domains.lookup(host, two, one)
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
        let best = self.apps.get(app).and_then(|a| {
            a.domains
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

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    // The ring provider supports the default protocol versions.
    .expect("ring supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The machine's trust anchors (`/etc/ssl/certs` and friends). Unreadable
/// entries are skipped: an app that needs a private CA names it in policy.
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_schema::policy::{compile_source, CompileOptions};

    pub(crate) fn table() -> RouteTable {
        let p = compile_source(
            "t",
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"http://127.0.0.1:1\"\n[[app]]\nname = \"api\"\ndomains = [\"api.demo.test\"]\nupstream = \"http://127.0.0.1:2\"\n",
            std::path::Path::new("."),
            &CompileOptions::default(),
        )
        .unwrap();
        RouteTable::build(&p, &rustls::RootCertStore::empty()).unwrap()
    }

    #[test]
    fn host_lookup_respects_label_boundaries() {
        let t = table();
        assert_eq!(t.app_for_host(b"demo.test"), Some(0));
        assert_eq!(t.app_for_host(b"A.B.Demo.TEST"), Some(0));
        assert_eq!(t.app_for_host(b"api.demo.test"), Some(1));
        assert_eq!(t.app_for_host(b"x.api.demo.test"), Some(1));
        assert_eq!(t.app_for_host(b"notdemo.test"), None);
        assert_eq!(t.app_for_host(b"demo.testing"), None);
        assert_eq!(t.app_for_host(b"demo.test.evil.net"), None);
        assert_eq!(t.app_for_host(b""), None);
    }

    #[test]
    fn proxy_host_mapping() {
        let t = table();
        assert_eq!(
            t.map_proxy_host(b"Www.Demo.Test.PROXY.test"),
            HostMapping::App {
                app_host: b"Www.Demo.Test",
                app: 0
            }
        );
        assert_eq!(
            t.map_proxy_host(b"other.test.proxy.test"),
            HostMapping::UnknownApp
        );
        assert_eq!(t.map_proxy_host(b"proxy.test"), HostMapping::NotOurs);
        assert_eq!(t.map_proxy_host(b"demo.test"), HostMapping::NotOurs);
        assert_eq!(
            t.map_proxy_host(b"demo.testproxy.test"),
            HostMapping::NotOurs
        );
        assert_eq!(t.map_proxy_host(b".proxy.test"), HostMapping::NotOurs);
    }
}
