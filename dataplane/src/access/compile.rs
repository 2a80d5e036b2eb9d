//! Compiling access and session policies into the evaluation table's
//! form: names interned into ids, user-agent patterns into bits, and every
//! IP set's ranges into one sorted table of elementary intervals.

use std::collections::HashMap;
use std::rc::Rc;

use palisade_schema::access::{AccessAction, AccessPolicy, Filters};
use palisade_schema::policy::IpRange;

use super::bits::{device_bit, CLIENT_BROWSER, CLIENT_NATIVE, MAX_USER_AGENT_PATTERNS};

/// A sorted, deduplicated list of small ids.
pub type IdList = Box<[u32]>;

fn intersects(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

pub struct CompiledPolicy {
    pub name: Rc<str>,
    pub action: AccessAction,
    pub message: Rc<str>,
    pub alert: bool,
    pub users: Option<IdList>,
    pub groups: Option<IdList>,
    /// The address must be in one of these sets.
    pub ip_any: Option<IdList>,
    /// The address must be in none of these sets.
    pub ip_none: IdList,
    pub devices: u8,
    pub client_kinds: u8,
    pub user_agents: u64,
}

impl CompiledPolicy {
    #[inline]
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        (self.devices == 0 || self.devices & s.devices != 0)
            && (self.client_kinds == 0 || self.client_kinds & s.client_kind != 0)
            && (self.user_agents == 0 || self.user_agents & s.user_agent_bits != 0)
            && self
                .users
                .as_ref()
                .is_none_or(|u| s.user.is_some_and(|id| u.binary_search(&id).is_ok()))
            && self.groups.as_ref().is_none_or(|g| intersects(g, s.groups))
            && self
                .ip_any
                .as_ref()
                .is_none_or(|sets| intersects(sets, s.ip_sets))
            && !intersects(&self.ip_none, s.ip_sets)
    }
}

/// Who is asking, in the table's numbers.
pub struct Subject<'a> {
    pub app: usize,
    /// Interned user id (`None`: anonymous or unknown to every policy).
    pub user: Option<u32>,
    /// Interned group ids, sorted.
    pub groups: &'a [u32],
    /// The client address's set ids ([`AccessTable::ip_sets`]).
    pub ip_sets: &'a [u32],
    pub devices: u8,
    pub client_kind: u8,
    pub user_agent_bits: u64,
}

/// Why the access and session policies' filters cannot be compiled.
#[derive(Debug)]
#[non_exhaustive]
pub enum AccessError {
    /// More distinct user-agent patterns than the match bits hold.
    TooManyUserAgentPatterns,
    /// The MaxMind country database does not open.
    CountryDatabase(maxminddb::MaxMindDbError),
    /// The user-agent substring searcher cannot be built.
    UserAgentSearch(aho_corasick::BuildError),
    UserAgentRegex(regex::Error),
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::TooManyUserAgentPatterns => write!(
                f,
                "more than {MAX_USER_AGENT_PATTERNS} distinct user agent patterns"
            ),
            AccessError::CountryDatabase(e) => write!(f, "geoip country database: {e}"),
            AccessError::UserAgentSearch(e) => write!(f, "user agent patterns: {e}"),
            AccessError::UserAgentRegex(e) => write!(f, "user agent regex: {e}"),
        }
    }
}

impl std::error::Error for AccessError {}

/// The ids of the named IP sets (ip tags and locations).
pub struct SetNames<'n> {
    pub tags: &'n HashMap<&'n str, u32>,
    pub locations: &'n HashMap<&'n str, u32>,
}

/// What compiling the policies interns as it goes.
pub struct Interned<'i, 'p> {
    /// Each IP set's ranges, by set id (a policy's own ranges get one).
    pub set_ranges: &'i mut Vec<&'p [IpRange]>,
    pub users: &'i mut HashMap<Box<str>, u32>,
    pub groups: &'i mut HashMap<Box<str>, u32>,
    /// (is a regex, pattern), by bit.
    pub ua_patterns: &'i mut Vec<(bool, String)>,
}

/// What a matching policy decides: an access policy's own; a session
/// policy's filters decide nothing by themselves (allow, no message).
pub struct Verdict<'p> {
    pub name: &'p str,
    pub action: AccessAction,
    pub message: &'p str,
    pub alert: bool,
}

impl<'p> Verdict<'p> {
    pub fn of_access_policy(p: &'p AccessPolicy) -> Verdict<'p> {
        Verdict {
            name: &p.name,
            action: p.action,
            message: &p.message,
            alert: !p.alert_severity.is_empty(),
        }
    }

    pub fn filters_only(name: &'p str) -> Verdict<'p> {
        Verdict {
            name,
            action: AccessAction::Allow,
            message: "",
            alert: false,
        }
    }
}

/// One policy's filters, their names turned into ids.
pub fn compile_one<'p>(
    verdict: Verdict<'_>,
    p: &'p Filters,
    names: &SetNames<'_>,
    interned: &mut Interned<'_, 'p>,
) -> Result<CompiledPolicy, AccessError> {
    let (tag_ids, location_ids) = (names.tags, names.locations);
    let Interned {
        set_ranges,
        users,
        groups,
        ua_patterns,
    } = interned;
    let intern = |map: &mut HashMap<Box<str>, u32>, names: &[String]| -> Option<IdList> {
        if names.is_empty() {
            return None;
        }
        let mut ids: Vec<u32> = names
            .iter()
            .map(|n| {
                let next = map.len() as u32;
                *map.entry(n.as_str().into()).or_insert(next)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids.into_boxed_slice())
    };
    let sets = |names: &[String], extra: Option<u32>| -> Vec<u32> {
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|n| {
                tag_ids
                    .get(n.as_str())
                    .or(location_ids.get(n.as_str()))
                    .copied()
            })
            .chain(extra)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let own = (!p.ip_ranges.is_empty()).then(|| {
        set_ranges.push(&p.ip_ranges);
        set_ranges.len() as u32 - 1
    });
    let any_names: Vec<String> = p.ip_tags.iter().chain(&p.locations).cloned().collect();
    let none_names: Vec<String> = p
        .not_ip_tags
        .iter()
        .chain(&p.not_locations)
        .cloned()
        .collect();
    let ip_any =
        (!any_names.is_empty() || own.is_some()).then(|| sets(&any_names, own).into_boxed_slice());
    let mut user_agents = 0u64;
    let regex = (!p.user_agent_regex.is_empty()).then(|| (true, p.user_agent_regex.clone()));
    for pattern in p
        .user_agent_contains
        .iter()
        .map(|t| (false, t.clone()))
        .chain(regex)
    {
        let i = match ua_patterns.iter().position(|x| *x == pattern) {
            Some(i) => i,
            None => {
                ua_patterns.push(pattern);
                ua_patterns.len() - 1
            }
        };
        if i >= MAX_USER_AGENT_PATTERNS {
            return Err(AccessError::TooManyUserAgentPatterns);
        }
        user_agents |= 1 << i;
    }
    Ok(CompiledPolicy {
        name: verdict.name.into(),
        action: verdict.action,
        message: verdict.message.into(),
        alert: verdict.alert,
        users: intern(users, &p.users),
        groups: intern(groups, &p.groups),
        ip_any,
        ip_none: sets(&none_names, None).into_boxed_slice(),
        devices: p.devices.iter().fold(0, |b, d| b | device_bit(d)),
        client_kinds: p.client_apps.iter().fold(0, |b, c| {
            b | match c.as_str() {
                "browser" => CLIENT_BROWSER,
                _ => CLIENT_NATIVE,
            }
        }),
        user_agents,
    })
}

/// Splits the address space at every range edge; each elementary interval
/// gets the (shared, deduplicated) list of sets covering it.
pub fn index_sets(set_ranges: &[&[IpRange]]) -> (Vec<u128>, Vec<u32>, Vec<IdList>) {
    // Events: at `at`, set `id` starts (+1) or ends (-1, the address after
    // its last one).
    let mut events: Vec<(u128, bool, u32)> = Vec::new();
    for (id, ranges) in set_ranges.iter().enumerate() {
        for r in ranges.iter() {
            let (lo, hi) = r.bounds();
            events.push((lo, true, id as u32));
            if let Some(after) = hi.checked_add(1) {
                events.push((after, false, id as u32));
            }
        }
    }
    events.sort_unstable();
    let mut boundaries = vec![0u128];
    let mut interval_sets = vec![0u32];
    let mut set_lists: Vec<IdList> = vec![Box::new([])];
    let mut list_ids: HashMap<Vec<u32>, u32> = HashMap::new();
    list_ids.insert(Vec::new(), 0);
    let mut active: HashMap<u32, u32> = HashMap::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, start, id) = events[i];
            let count = active.entry(id).or_insert(0);
            if start {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    active.remove(&id);
                }
            }
            i += 1;
        }
        let mut list: Vec<u32> = active.keys().copied().collect();
        list.sort_unstable();
        let next = set_lists.len() as u32;
        let id = *list_ids.entry(list.clone()).or_insert_with(|| {
            set_lists.push(list.into_boxed_slice());
            next
        });
        if *boundaries.last().unwrap_or(&0) == at {
            *interval_sets.last_mut().unwrap_or(&mut 0) = id;
        } else {
            boundaries.push(at);
            interval_sets.push(id);
        }
    }
    (boundaries, interval_sets, set_lists)
}
