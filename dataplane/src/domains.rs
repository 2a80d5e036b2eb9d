//! The app domain set: which app owns a host name (equal to or under one of
//! its domains, ASCII case-insensitive, most specific domain first).
//!
//! Built for the rewrite engine's hot path, where every URL in a page is
//! looked up. Every host under a domain shares the domain's last two
//! labels (its "tail": `svc.example.com` → `example.com`), so domains are
//! grouped by tail in an open-addressed table: a lookup hashes the host's
//! tail once (8 bytes per multiply, no lower-case copy), probes one slot
//! (a hash tag rejects a foreign host without comparing bytes) and checks
//! the few domains of that tail, longest first. The cost depends on the
//! host, not on the number of apps. One-label domains (`localhost`) are
//! found by a second probe on the last label, only when the set has any.
//!
//! The rewrite engine's lookup ([`DomainSet::lookup_at`]) reads the host
//! in place in the body: each slot holds its group's longest domain
//! inline (length, app, first and last 8 folded bytes, 24 bytes in all so
//! a table of 2,048 slots stays in L1), so the common hit is one hash of a
//! word of the body, one slot and two word compares.
//!
//! Keys are operator-chosen, so attacker-chosen lookups cannot make probe
//! chains long (HashDoS needs control of the inserted keys).

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// `s[at..at + 8]` as a little-endian word.
#[inline]
fn load8(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Up to 8 bytes `name[a..b]` as a little-endian word (missing high
/// bytes zero), read with whole-word loads from `name` where it is long
/// enough (no call to memcpy for a few bytes).
#[inline]
fn word(name: &[u8], a: usize, b: usize) -> u64 {
    let len = b - a;
    debug_assert!(len <= 8);
    if len == 0 {
        return 0;
    }
    if b >= 8 {
        load8(name, b - 8) >> (8 * (8 - len))
    } else if a + 8 <= name.len() {
        load8(name, a) & (u64::MAX >> (8 * (8 - len)))
    } else {
        name[a..b]
            .iter()
            .rev()
            .fold(0u64, |w, &byte| (w << 8) | u64::from(byte))
    }
}

/// Case-insensitive hash of `name[a..]`: its length and its last (up to)
/// 8 bytes, folded by setting bit 5 (letters become lower case; equal
/// hashes are then checked exactly). One load and one multiply: tails are
/// short, and tails that share length and last 8 bytes only share a slot
/// group.
#[inline]
fn hash(name: &[u8], a: usize) -> u64 {
    let len = name.len() - a;
    let take = len.min(8);
    let fold_mask = if take == 0 {
        0
    } else {
        u64::MAX >> (8 * (8 - take))
    };
    let v = word(name, name.len() - take, name.len()) | (FOLD & fold_mask);
    mix(v, len)
}

/// The hash of a tail from its (folded, zero-extended) last 8 bytes and
/// its length.
#[inline]
fn mix(last8: u64, len: usize) -> u64 {
    let h = (last8 ^ (len as u64).wrapping_mul(0xA24B_AED4_963E_E407)).wrapping_mul(MULTIPLIER);
    h ^ (h >> 29)
}

/// A slot of the table: what every lookup reads, 24 bytes (a table of
/// 2,048 slots stays within a core's L1 data cache). The group's member
/// range, read only off the fast path, is in [`DomainSet::groups`].
#[derive(Clone, Copy)]
struct Slot {
    /// High bits of the tail hash (bits 8..32, never zero) and the length
    /// of the group's longest domain (bits 0..8; 0 when it is not inline);
    /// 0 marks an empty slot.
    tag_len: u32,
    /// The longest domain's app.
    longest_app: u32,
    /// Its last and first 8 folded bytes as little-endian words (the last
    /// word zero-filled below a short key), for [`DomainSet::lookup_at`].
    longest_last8: u64,
    longest_first8: u64,
}

const EMPTY_SLOT: Slot = Slot {
    tag_len: 0,
    longest_app: 0,
    longest_last8: 0,
    longest_first8: 0,
};

impl Slot {
    #[inline]
    fn tag(&self) -> u32 {
        self.tag_len >> 8
    }

    #[inline]
    fn longest_len(&self) -> usize {
        (self.tag_len & 0xff) as usize
    }
}

const FOLD: u64 = 0x2020_2020_2020_2020;

/// The high `len` bytes of a word (all of them from 8 on): the last
/// `len` bytes of the 8 it was loaded from.
#[inline]
fn high_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        u64::MAX << (8 * (8 - len))
    }
}

/// One domain: `keys[start..start + len]`, folded (every byte `| 0x20`).
#[derive(Clone, Copy)]
struct Member {
    start: u32,
    len: u32,
    app: usize,
}

/// Domain → app index.
pub struct DomainSet {
    slots: Vec<Slot>,
    /// Per slot: `members[first..first + count]` are its tail's domains.
    groups: Vec<(u32, u32)>,
    mask: usize,
    /// Domains grouped by tail, longest first in a group, contiguous.
    members: Vec<Member>,
    /// The folded domain bytes, back to back (one allocation).
    keys: Vec<u8>,
    /// Some domain is a single label.
    has_single_labels: bool,
}

impl Default for DomainSet {
    fn default() -> DomainSet {
        DomainSet::build(std::iter::empty())
    }
}

impl DomainSet {
    /// Builds the set; a domain listed twice keeps its first app.
    pub fn build<'a>(input: impl Iterator<Item = (&'a [u8], usize)>) -> DomainSet {
        let mut seen = std::collections::HashSet::new();
        let mut domains: Vec<(Vec<u8>, usize)> = Vec::new();
        for (name, app) in input {
            let folded: Vec<u8> = name.iter().map(|b| b | 0x20).collect();
            if seen.insert(folded.clone()) {
                domains.push((folded, app));
            }
        }
        // Group by tail: (tail hash, tail, domain index), longest first.
        let mut grouped: Vec<(u64, &[u8], usize)> = domains
            .iter()
            .enumerate()
            .map(|(i, (d, _))| {
                let (two, _) = tails(d);
                (hash(d, two), &d[two..], i)
            })
            .collect();
        grouped.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then(domains[b.2].0.len().cmp(&domains[a.2].0.len()))
        });
        let capacity = (grouped.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY_SLOT; capacity];
        let mut groups = vec![(0, 0); capacity];
        let mask = capacity - 1;
        let mut members = Vec::with_capacity(grouped.len());
        let mut keys = Vec::new();
        let mut k = 0;
        while k < grouped.len() {
            let (h, tail, _) = grouped[k];
            let first = members.len() as u32;
            while k < grouped.len() && grouped[k].0 == h && grouped[k].1 == tail {
                let (name, app) = &domains[grouped[k].2];
                members.push(Member {
                    start: keys.len() as u32,
                    len: name.len() as u32,
                    app: *app,
                });
                keys.extend_from_slice(name);
                k += 1;
            }
            let mut i = slot_index(h) & mask;
            while slots[i].tag_len != 0 {
                i = (i + 1) & mask;
            }
            let longest = members[first as usize];
            let key = &keys[longest.start as usize..(longest.start + longest.len) as usize];
            let last = word(key, key.len().saturating_sub(8), key.len());
            // Inline only what fits the fast path's compare (and a u32 app).
            let inline_len = match u32::try_from(longest.app) {
                Ok(_) if key.len() <= 16 => key.len() as u32,
                _ => 0,
            };
            slots[i] = Slot {
                tag_len: tag(h) << 8 | inline_len,
                longest_app: u32::try_from(longest.app).unwrap_or(0),
                longest_last8: last << (8 * (8 - key.len().min(8))),
                longest_first8: if key.len() >= 8 { load8(key, 0) } else { 0 },
            };
            groups[i] = (first, members.len() as u32 - first);
        }
        let has_single_labels = domains.iter().any(|(d, _)| !d.contains(&b'.'));
        DomainSet {
            slots,
            groups,
            mask,
            members,
            keys,
            has_single_labels,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[inline]
    fn key(&self, m: &Member) -> &[u8] {
        &self.keys[m.start as usize..(m.start + m.len) as usize]
    }

    /// The app of the longest domain of the tail `host[tail..]` that
    /// `host` equals or lies under.
    #[inline]
    fn probe(&self, host: &[u8], tail: usize) -> Option<usize> {
        let h = hash(host, tail);
        let t = tag(h);
        let mut i = slot_index(h) & self.mask;
        loop {
            let slot = self.slots[i];
            if slot.tag_len == 0 {
                return None;
            }
            if slot.tag() == t {
                let (first, count) = self.groups[i];
                let group = &self.members[first as usize..(first + count) as usize];
                // A domain that `host` equals or lies under is an answer
                // whatever the tail: check those first (the common hit).
                for m in group {
                    let domain = self.key(m);
                    let Some(start) = host.len().checked_sub(domain.len()) else {
                        continue;
                    };
                    if (start == 0 || host[start - 1] == b'.') && eq_folded(&host[start..], domain)
                    {
                        return Some(m.app);
                    }
                }
                // No match: if this group is the host's tail, there is
                // none; otherwise the tag collided and probing goes on. The
                // group's tail is the end of its first domain.
                let first = self.key(&group[0]);
                let host_tail = &host[tail..];
                let same_tail = first.len() >= host_tail.len()
                    && (first.len() == host_tail.len()
                        || first[first.len() - host_tail.len() - 1] == b'.')
                    && eq_folded(host_tail, &first[first.len() - host_tail.len()..]);
                if same_tail {
                    return None;
                }
                // A tag collision with another tail: keep probing.
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The app owning `host` (any letter case): the longest domain it
    /// equals or lies under (at a label boundary) wins. Any bytes.
    pub fn app_for_host(&self, host: &[u8]) -> Option<usize> {
        if host.is_empty() || !host.iter().all(|&b| is_host_byte(b)) {
            return None;
        }
        let (two, one) = tails(host);
        self.lookup(host, two, one)
    }

    /// [`DomainSet::lookup`] for the host `data[start..end]`, read in
    /// place: the common hit (the host equals or lies under the longest
    /// domain of its tail, at most 16 bytes long) costs one hash of a word
    /// loaded from `data`, one slot and two word compares, with no member
    /// or key loads; anything else takes [`DomainSet::lookup`]. `two` and
    /// `one` are relative to `start`, as there.
    #[inline]
    pub fn lookup_at(
        &self,
        data: &[u8],
        start: usize,
        end: usize,
        two: usize,
        one: usize,
    ) -> Option<usize> {
        let host_len = end - start;
        let tail_len = host_len - two;
        if end < 8 || tail_len == 0 {
            return self.lookup(&data[start..end], two, one);
        }
        let last = load8(data, end - 8);
        // As `hash`: the tail's last (up to) 8 bytes, folded, in the low
        // bytes of the word.
        let take = tail_len.min(8);
        let h = mix(
            (last >> (8 * (8 - take))) | (FOLD & (u64::MAX >> (8 * (8 - take)))),
            tail_len,
        );
        let t = tag(h);
        let mut i = slot_index(h) & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.tag() == t {
                let len = slot.longest_len();
                if len != 0 && len <= host_len {
                    let from = end - len;
                    let hit = (last | FOLD) & high_bytes(len) == slot.longest_last8
                        && (len <= 8 || load8(data, from) | FOLD == slot.longest_first8)
                        && (from == start || data[from - 1] == b'.');
                    if hit {
                        return Some(slot.longest_app as usize);
                    }
                }
                return self.lookup(&data[start..end], two, one);
            }
            if slot.tag_len == 0 {
                return if self.has_single_labels {
                    self.lookup(&data[start..end], two, one)
                } else {
                    None
                };
            }
            i = (i + 1) & self.mask;
        }
    }

    /// [`DomainSet::app_for_host`] for a host made of host bytes only
    /// (letters, digits, `-`, `.`, `_`), with the starts of its last two
    /// labels and last label already known (the rewrite engine finds them
    /// while finding the host).
    #[inline]
    pub fn lookup(&self, host: &[u8], two: usize, one: usize) -> Option<usize> {
        debug_assert!(host.iter().all(|&b| is_host_byte(b)));
        debug_assert_eq!(tails(host), (two, one));
        if let Some(app) = self.probe(host, two) {
            return Some(app);
        }
        if self.has_single_labels && one > 0 {
            return self.probe(host, one);
        }
        None
    }
}

/// Bytes of a host name as written in URLs and Host fields: letters,
/// digits, `-`, `.`, and `_` (which real deployments use). The one
/// definition every host reader uses; a table, one load per byte.
#[inline]
pub fn is_host_byte(b: u8) -> bool {
    HOST_BYTES[usize::from(b)]
}

static HOST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    t
};

/// `host` equals the folded `key`, ASCII case-insensitively. Folding
/// (`| 0x20`) is exact on host bytes: it only merges letter cases (`_`
/// becomes DEL, which is not a host byte). Keys of 8 to 16 bytes (most)
/// take two overlapping word compares.
#[inline]
fn eq_folded(host: &[u8], key: &[u8]) -> bool {
    let len = host.len();
    if len != key.len() {
        return false;
    }
    if (8..=16).contains(&len) {
        return load8(host, 0) | FOLD == load8(key, 0)
            && load8(host, len - 8) | FOLD == load8(key, len - 8);
    }
    let mut at = 0;
    while at < len {
        let end = (at + 8).min(len);
        let fold_mask = u64::MAX >> (8 * (8 - (end - at)));
        let h = word(host, at, end) | (FOLD & fold_mask);
        if h != word(key, at, end) {
            return false;
        }
        at = end;
    }
    true
}

/// Start of the last two labels of `name` (0 if it has fewer), and of the
/// last label (0 if it has one label).
pub fn tails(name: &[u8]) -> (usize, usize) {
    match name.iter().rposition(|&b| b == b'.') {
        None => (0, 0),
        Some(d1) => {
            let two = name[..d1]
                .iter()
                .rposition(|&b| b == b'.')
                .map_or(0, |d2| d2 + 1);
            (two, d1 + 1)
        }
    }
}

/// Slot index and tag come from the high bits: a multiplicative hash
/// mixes its input into the high bits.
#[inline]
fn slot_index(h: u64) -> usize {
    (h >> 24) as usize
}

#[inline]
fn tag(h: u64) -> u32 {
    // 24 bits, never zero (a slot's tag shares a word with a length).
    ((h >> 40) as u32) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set() -> DomainSet {
        DomainSet::build(
            [
                (&b"demo.test"[..], 0),
                (b"demo-cdn.test", 0),
                (b"api.demo.test", 1),
                (b"under_score.test", 2),
            ]
            .into_iter(),
        )
    }

    #[test]
    fn label_boundaries_and_specificity() {
        let s = set();
        assert_eq!(s.app_for_host(b"demo.test"), Some(0));
        assert_eq!(s.app_for_host(b"A.B.Demo.TEST"), Some(0));
        assert_eq!(s.app_for_host(b"api.demo.test"), Some(1));
        assert_eq!(s.app_for_host(b"x.API.demo.test"), Some(1));
        assert_eq!(s.app_for_host(b"Under_Score.test"), Some(2));
        for miss in [
            &b"notdemo.test"[..],
            b"demo.testing",
            b"demo.test.evil.net",
            b"test",
            b"",
            b".",
            b"demo.test.",
            b"under^score.test",
            b"demo\rcdn.test",
        ] {
            assert_eq!(
                s.app_for_host(miss),
                None,
                "{}",
                String::from_utf8_lossy(miss)
            );
        }
    }

    /// The obvious definition: strip labels from the left.
    fn naive(domains: &[(String, usize)], host: &str) -> Option<usize> {
        let host = host.to_ascii_lowercase();
        let mut rest = host.as_str();
        loop {
            if let Some((_, a)) = domains.iter().find(|(d, _)| d == rest) {
                return Some(*a);
            }
            rest = &rest[rest.find('.')? + 1..];
        }
    }

    proptest! {
        #[test]
        fn agrees_with_label_stripping(
            domains in proptest::collection::vec("[a-c]{1,2}(\\.[a-c]{1,2}){0,2}", 0..12),
            host in "[a-cA-C.]{0,12}",
        ) {
            let mut unique: Vec<(String, usize)> = Vec::new();
            for (i, d) in domains.iter().enumerate() {
                if !unique.iter().any(|(u, _)| u == d) {
                    unique.push((d.clone(), i));
                }
            }
            let set = DomainSet::build(unique.iter().map(|(d, a)| (d.as_bytes(), *a)));
            prop_assert_eq!(set.app_for_host(host.as_bytes()), naive(&unique, &host));
        }

        /// The in-place lookup, with the host between arbitrary bytes
        /// (which it must not read as part of the host).
        #[test]
        fn in_place_lookup_agrees_with_label_stripping(
            domains in proptest::collection::vec(
                "[a-cA-C_]{1,3}(\\.[a-c]{1,6}){0,3}", 0..12),
            random_host in "[a-cA-C_]{1,6}(\\.[a-cA-C]{1,6}){0,4}",
            // Or a domain, upper-cased or not, behind a prefix that may
            // end in a dot: under it, or not at a label boundary.
            pick in any::<prop::sample::Index>(),
            prefix in "([a-c]{1,3}\\.?)?",
            upper in any::<bool>(),
            before in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'a'), any::<u8>()], 0..12),
            after in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut unique: Vec<(String, usize)> = Vec::new();
            for (i, d) in domains.iter().enumerate() {
                let d = d.to_ascii_lowercase();
                if !unique.iter().any(|(u, _)| *u == d) {
                    unique.push((d, i));
                }
            }
            let set = DomainSet::build(unique.iter().map(|(d, a)| (d.as_bytes(), *a)));
            let host = if unique.is_empty() || random_host.len() % 3 == 0 {
                random_host
            } else {
                let d = &unique[pick.index(unique.len())].0;
                let d = if upper { d.to_ascii_uppercase() } else { d.clone() };
                format!("{prefix}{d}")
            };
            let mut data = before.clone();
            let start = data.len();
            data.extend_from_slice(host.as_bytes());
            let end = data.len();
            data.extend_from_slice(&after);
            let (two, one) = tails(host.as_bytes());
            prop_assert_eq!(
                set.lookup_at(&data, start, end, two, one),
                naive(&unique, &host),
                "{:?} in {:?}", host, String::from_utf8_lossy(&data)
            );
        }
    }
}
