//! Client-address tags: which named ranges (corporate network, VPN egress…)
//! contain a client IP. Compiled per core from the snapshot into sorted,
//! merged intervals per tag, so a lookup is one binary search per tag and
//! never allocates.

use std::net::IpAddr;

use palisade_schema::policy::IpTag;

/// Inclusive first and last address, in the IPv6 number space.
type Interval = (u128, u128);

/// Tags and their sorted, merged intervals (IPv4 mapped into IPv6).
#[derive(Default)]
pub struct IpTagTable {
    tags: Vec<(Box<str>, Vec<Interval>)>,
}

/// The IPv6-space number of an address (IPv4 as `::ffff:a.b.c.d`).
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl IpTagTable {
    pub fn build(tags: &[IpTag]) -> IpTagTable {
        let tags = tags
            .iter()
            .map(|tag| {
                let mut intervals: Vec<Interval> = tag.ranges.iter().map(|r| r.bounds()).collect();
                intervals.sort_unstable();
                // Merge overlapping and adjacent intervals.
                let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
                for (start, end) in intervals {
                    match merged.last_mut() {
                        Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                        _ => merged.push((start, end)),
                    }
                }
                merged.shrink_to_fit();
                (tag.name.as_str().into(), merged)
            })
            .collect();
        IpTagTable { tags }
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// True when tag number `tag` contains `ip`.
    pub fn contains(&self, tag: usize, ip: IpAddr) -> bool {
        let Some((_, intervals)) = self.tags.get(tag) else {
            return false;
        };
        let x = number(ip);
        let after = intervals.partition_point(|(start, _)| *start <= x);
        after > 0 && intervals[after - 1].1 >= x
    }

    /// Names of every tag containing `ip`.
    pub fn tags_of(&self, ip: IpAddr) -> impl Iterator<Item = &str> {
        (0..self.tags.len())
            .filter(move |t| self.contains(*t, ip))
            .map(|t| &*self.tags[t].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_schema::policy::IpRange;
    use proptest::prelude::*;

    fn tag(name: &str, ranges: &[&str]) -> IpTag {
        IpTag {
            countries: Vec::new(),
            name: name.into(),
            ranges: ranges.iter().map(|r| IpRange::parse(r).unwrap()).collect(),
        }
    }

    #[test]
    fn lookups() {
        let t = IpTagTable::build(&[
            tag("corp", &["10.0.0.0/8", "192.0.2.0/24", "192.0.2.128/25"]),
            tag("v6", &["2001:db8::/32"]),
            tag("everything4", &["0.0.0.0/0"]),
        ]);
        let tags = |ip: &str| t.tags_of(ip.parse().unwrap()).collect::<Vec<_>>();
        assert_eq!(tags("10.1.2.3"), ["corp", "everything4"]);
        assert_eq!(tags("192.0.2.255"), ["corp", "everything4"]);
        assert_eq!(tags("192.0.3.0"), ["everything4"]);
        assert_eq!(tags("2001:db8::1"), ["v6"]);
        assert_eq!(tags("2001:db9::1"), Vec::<&str>::new());
        // IPv4-mapped IPv6 is the same address as IPv4.
        assert_eq!(tags("::ffff:10.0.0.1"), ["corp", "everything4"]);
    }

    proptest! {
        #[test]
        fn matches_a_naive_scan(
            ranges in proptest::collection::vec((any::<u32>(), 8u8..=32), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let parsed: Vec<IpRange> = ranges
                .iter()
                .map(|(a, p)| {
                    let mask = if *p == 0 { 0 } else { u32::MAX << (32 - u32::from(*p)) };
                    IpRange::new(IpAddr::V4((a & mask).into()), *p).unwrap()
                })
                .collect();
            let t = IpTagTable::build(&[IpTag { name: "t".into(), ranges: parsed.clone(), countries: Vec::new() }]);
            for p in probes {
                let ip = IpAddr::V4(p.into());
                let naive = parsed.iter().any(|r| {
                    let (lo, hi) = r.bounds();
                    (lo..=hi).contains(&number(ip))
                });
                prop_assert_eq!(t.contains(0, ip), naive);
            }
        }
    }
}
