//! Access policy evaluation, compiled per core from a snapshot.
//!
//! Everything a request is matched on is turned into small integers ahead
//! of time: every IP set (ip tag, location, a policy's own ranges) gets an
//! id, and one sorted table of elementary address intervals maps a client
//! address to the (deduplicated) list of set ids containing it: one binary
//! search per connection. Users and groups are interned; device tags,
//! client kinds and user-agent patterns are bit masks. Each app has its
//! policies pre-sorted most restrictive first, so evaluation stops at the
//! first match: that match is the most restrictive one. Nothing is
//! allocated per request.

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_schema::access::AccessAction;
use palisade_schema::policy::{IpRange, Policy};

use crate::identity::ip_number;

mod bits;
mod compile;

pub use bits::*;
use compile::{index_sets, CompiledPolicy, IdList};
pub use compile::{AccessError, Subject};

/// Tag names for the log, in bit order.
pub fn device_tags_text(bits: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "",
        "managed",
        "unmanaged",
        "managed,unmanaged",
        "compliant",
        "managed,compliant",
        "unmanaged,compliant",
        "managed,unmanaged,compliant",
        "domain_joined",
        "managed,domain_joined",
        "unmanaged,domain_joined",
        "managed,unmanaged,domain_joined",
        "compliant,domain_joined",
        "managed,compliant,domain_joined",
        "unmanaged,compliant,domain_joined",
        "managed,unmanaged,compliant,domain_joined",
    ];
    NAMES[usize::from(bits & 15)]
}

/// Device tag bits of a session's token tags.
pub fn device_bits<'a>(tags: impl Iterator<Item = &'a str>) -> u8 {
    tags.fold(0, |bits, t| bits | device_bit(t))
}

/// Browser or native client, from the User-Agent: browsers all send
/// `Mozilla/5.0 …`; sync clients, CLIs and SDKs do not, and desktop apps
/// built on browser engines name themselves.
pub fn client_kind(user_agent: &[u8]) -> u8 {
    const NATIVE_MARKERS: [&[u8]; 6] = [
        b"Electron/",
        b"OneDrive",
        b"Dropbox",
        b"Teams/",
        b"Slack/",
        b"Zoom",
    ];
    if user_agent.starts_with(b"Mozilla/")
        && !NATIVE_MARKERS
            .iter()
            .any(|m| memchr::memmem::find(user_agent, m).is_some())
    {
        CLIENT_BROWSER
    } else {
        CLIENT_NATIVE
    }
}

/// An access decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: AccessAction,
    /// The deciding policy (`None`: the app's default).
    pub policy: Option<u32>,
}

pub struct AccessTable {
    policies: Vec<CompiledPolicy>,
    /// No policy and every app defaults to allow (computed once: the
    /// request path asks on every request).
    allows_everything: bool,
    /// Per app: policy indices, most restrictive action first, then in
    /// policy order.
    per_app: Vec<Box<[u32]>>,
    /// Session policies' who/where filters, in policy order, and per app
    /// the indices of those naming it (or every app).
    session: Vec<CompiledPolicy>,
    session_per_app: Vec<Box<[u32]>>,
    defaults: Vec<AccessAction>,
    /// Elementary interval starts (IPv6 number space), sorted.
    boundaries: Vec<u128>,
    /// Per interval: index into `set_lists`.
    interval_sets: Vec<u32>,
    set_lists: Vec<IdList>,
    users: HashMap<Box<str>, u32>,
    groups: HashMap<Box<str>, u32>,
    ua_contains: Option<(aho_corasick::AhoCorasick, Vec<u64>)>,
    ua_regexes: Vec<(regex::bytes::Regex, u64)>,
    /// The country database and, per country code, the location sets that
    /// name it (`None` without a database).
    geoip: Option<(maxminddb::Reader<Vec<u8>>, CountrySets)>,
}

/// Per ISO country code, the location sets naming it.
type CountrySets = HashMap<[u8; 2], Vec<u32>>;

impl AccessTable {
    pub fn build(policy: &Policy) -> Result<AccessTable, AccessError> {
        let app_index: HashMap<&str, usize> = policy
            .apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        // IP sets: tags, then locations, then each policy's own ranges.
        let mut set_ranges: Vec<&[IpRange]> = Vec::new();
        let mut tag_ids = HashMap::new();
        for t in &policy.ip_tags {
            tag_ids.insert(t.name.as_str(), set_ranges.len() as u32);
            set_ranges.push(&t.ranges);
        }
        let mut location_ids = HashMap::new();
        let mut country_sets = CountrySets::new();
        for l in &policy.locations {
            let id = set_ranges.len() as u32;
            location_ids.insert(l.name.as_str(), id);
            set_ranges.push(&l.ranges);
            for c in &l.countries {
                if let [a, b] = *c.as_bytes() {
                    country_sets.entry([a, b]).or_default().push(id);
                }
            }
        }
        let geoip = if policy.geoip_country_database.is_empty() {
            None
        } else {
            let reader = maxminddb::Reader::from_source(policy.geoip_country_database.clone())
                .map_err(AccessError::CountryDatabase)?;
            Some((reader, country_sets))
        };
        let mut users: HashMap<Box<str>, u32> = HashMap::new();
        let mut groups: HashMap<Box<str>, u32> = HashMap::new();
        // User-agent patterns: (is regex, text); the bit is the position.
        let mut ua_patterns: Vec<(bool, String)> = Vec::new();
        // Access policies, then session policies' filters: one set of
        // interned names, IP sets and user-agent bits for both.
        let every_filter = policy
            .access_policies
            .iter()
            .map(|p| (compile::Verdict::of_access_policy(p), &p.filters))
            .chain(
                policy
                    .session_policies
                    .iter()
                    .map(|s| (compile::Verdict::filters_only(&s.name), &s.filters)),
            );
        let mut compiled = Vec::with_capacity(policy.access_policies.len());
        for (verdict, filters) in every_filter {
            let names = compile::SetNames {
                tags: &tag_ids,
                locations: &location_ids,
            };
            let mut interned = compile::Interned {
                set_ranges: &mut set_ranges,
                users: &mut users,
                groups: &mut groups,
                ua_patterns: &mut ua_patterns,
            };
            compiled.push(compile::compile_one(
                verdict,
                filters,
                &names,
                &mut interned,
            )?);
        }
        let session = compiled.split_off(policy.access_policies.len());
        let by_app = |apps_of: &mut dyn Iterator<Item = &[String]>| {
            let mut per_app: Vec<Vec<u32>> = vec![Vec::new(); policy.apps.len()];
            for (i, apps) in apps_of.enumerate() {
                if apps.is_empty() {
                    per_app.iter_mut().for_each(|l| l.push(i as u32));
                } else {
                    for a in apps {
                        if let Some(&app) = app_index.get(a.as_str()) {
                            per_app[app].push(i as u32);
                        }
                    }
                }
            }
            per_app
        };
        let mut per_app = by_app(
            &mut policy
                .access_policies
                .iter()
                .map(|p| p.filters.apps.as_slice()),
        );
        let session_per_app = by_app(
            &mut policy
                .session_policies
                .iter()
                .map(|p| p.filters.apps.as_slice()),
        )
        .into_iter()
        .map(Vec::into_boxed_slice)
        .collect();
        for list in &mut per_app {
            // Stable: equal actions keep policy order.
            list.sort_by_key(|&i| std::cmp::Reverse(compiled[i as usize].action));
        }
        let (boundaries, interval_sets, set_lists) = index_sets(&set_ranges);
        let contains: Vec<(&str, u64)> = ua_patterns
            .iter()
            .enumerate()
            .filter(|(_, (regex, _))| !regex)
            .map(|(i, (_, text))| (text.as_str(), 1u64 << i))
            .collect();
        let ua_contains = if contains.is_empty() {
            None
        } else {
            let finder = aho_corasick::AhoCorasick::new(contains.iter().map(|(t, _)| t))
                .map_err(AccessError::UserAgentSearch)?;
            Some((finder, contains.iter().map(|(_, b)| *b).collect()))
        };
        let ua_regexes = ua_patterns
            .iter()
            .enumerate()
            .filter(|(_, (regex, _))| *regex)
            .map(|(i, (_, r))| {
                regex::bytes::Regex::new(r)
                    .map(|re| (re, 1u64 << i))
                    .map_err(AccessError::UserAgentRegex)
            })
            .collect::<Result<_, _>>()?;
        let defaults: Vec<AccessAction> = policy.apps.iter().map(|a| a.access_default).collect();
        Ok(AccessTable {
            allows_everything: compiled.is_empty()
                && session.is_empty()
                && defaults.iter().all(|d| *d == AccessAction::Allow),
            session,
            session_per_app,
            policies: compiled,
            per_app: per_app.into_iter().map(Vec::into_boxed_slice).collect(),
            defaults,
            boundaries,
            interval_sets,
            set_lists,
            users,
            groups,
            ua_contains,
            ua_regexes,
            geoip,
        })
    }

    /// An empty table: every app allowed.
    pub fn empty() -> AccessTable {
        AccessTable {
            allows_everything: true,
            policies: Vec::new(),
            per_app: Vec::new(),
            session: Vec::new(),
            session_per_app: Vec::new(),
            defaults: Vec::new(),
            boundaries: vec![0],
            interval_sets: vec![0],
            set_lists: vec![Box::new([])],
            users: HashMap::new(),
            groups: HashMap::new(),
            ua_contains: None,
            ua_regexes: Vec::new(),
            geoip: None,
        }
    }

    /// True when no policy exists and every app defaults to allow: the
    /// request path can skip evaluation.
    #[inline]
    pub fn allows_everything(&self) -> bool {
        self.allows_everything
    }

    /// The id of the set list holding `ip` (cache it per connection).
    #[inline]
    pub fn ip_sets_id(&self, ip: IpAddr) -> u32 {
        let n = ip_number(ip);
        let i = self
            .boundaries
            .partition_point(|b| *b <= n)
            .saturating_sub(1);
        self.interval_sets[i]
    }

    #[inline]
    pub fn ip_sets(&self, id: u32) -> &[u32] {
        self.set_lists.get(id as usize).map_or(&[], |l| l)
    }

    /// Every set holding `ip`, ranges and countries (the country from the
    /// GeoIP database), sorted, into `out`. Once per connection.
    pub fn connection_ip_sets(&self, ip: IpAddr, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(self.ip_sets(self.ip_sets_id(ip)));
        if let Some(country) = self.country_of(ip) {
            if let Some((_, sets)) = &self.geoip {
                if let Some(ids) = sets.get(&country) {
                    out.extend_from_slice(ids);
                    out.sort_unstable();
                    out.dedup();
                }
            }
        }
    }

    /// The ISO country code of `ip` in the GeoIP database.
    pub fn country_of(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let (reader, _) = self.geoip.as_ref()?;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let found = reader.lookup(ip).ok()?;
        let code: &str = found
            .decode_path(&maxminddb::path!["country", "iso_code"])
            .ok()??;
        match *code.as_bytes() {
            [a, b] => Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
            _ => None,
        }
    }

    pub fn user_id(&self, user: &str) -> Option<u32> {
        self.users.get(user).copied()
    }

    /// Interned ids of `names` known to some policy, sorted, into `out`.
    pub fn group_ids<'a>(&self, names: impl Iterator<Item = &'a str>, out: &mut Vec<u32>) {
        out.clear();
        out.extend(names.filter_map(|g| self.groups.get(g).copied()));
        out.sort_unstable();
        out.dedup();
    }

    /// Bits of the user-agent patterns `user_agent` matches.
    pub fn user_agent_bits(&self, user_agent: &[u8]) -> u64 {
        let mut bits = 0;
        if let Some((finder, pattern_bits)) = &self.ua_contains {
            for m in finder.find_overlapping_iter(user_agent) {
                bits |= pattern_bits[m.pattern().as_usize()];
            }
        }
        for (re, bit) in &self.ua_regexes {
            if re.is_match(user_agent) {
                bits |= bit;
            }
        }
        bits
    }

    pub fn has_user_agent_patterns(&self) -> bool {
        self.ua_contains.is_some() || !self.ua_regexes.is_empty()
    }

    /// The most restrictive matching action, or the app's default.
    #[inline]
    pub fn evaluate(&self, s: &Subject<'_>) -> Decision {
        if let Some(list) = self.per_app.get(s.app) {
            for &i in list.iter() {
                if self.policies[i as usize].matches(s) {
                    return Decision {
                        action: self.policies[i as usize].action,
                        policy: Some(i),
                    };
                }
            }
        }
        Decision {
            action: self.defaults.get(s.app).copied().unwrap_or_default(),
            policy: None,
        }
    }

    /// True when session policies may apply to requests for `app`.
    #[inline]
    pub fn has_session_policies(&self, app: usize) -> bool {
        self.session_per_app.get(app).is_some_and(|l| !l.is_empty())
    }

    /// The session policies whose filters match, in policy order.
    pub fn session_matches(&self, s: &Subject<'_>, out: &mut crate::session_policy::RuleSet) {
        out.clear();
        for &i in self.session_per_app.get(s.app).map_or(&[][..], |l| &l[..]) {
            if self.session[i as usize].matches(s) {
                out.push(i);
            }
        }
    }

    pub fn policy_name(&self, i: u32) -> &str {
        self.policies.get(i as usize).map_or("", |p| &p.name)
    }

    pub fn policy_message(&self, i: u32) -> &str {
        self.policies.get(i as usize).map_or("", |p| &p.message)
    }

    pub fn policy_alerts(&self, i: u32) -> bool {
        self.policies.get(i as usize).is_some_and(|p| p.alert)
    }
}
