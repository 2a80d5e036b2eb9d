//! A minimal MaxMind DB (MMDB v2) writer for country databases, so tests
//! and demos can use a real database file in the format GeoLite2-Country
//! ships in, without downloading one. IPv4 networks only (an IPv4 search
//! tree, 24-bit records); each network maps to `{"country": {"iso_code":
//! CC}}`. Format: <https://maxmind.github.io/MaxMind-DB/>.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A search-tree record.
#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    /// Offset into the data section.
    Data(u32),
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    // Types above 7 are "extended": type 0 in the control byte, then the
    // type minus 7 in the next byte. Sizes here stay below 29.
    debug_assert!(size < 29);
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn unsigned(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// The database bytes for `networks` (network, prefix length, ISO country
/// code). Later entries win where networks overlap.
pub fn country_database(networks: &[(Ipv4Addr, u8, &str)]) -> Vec<u8> {
    // Data section: one record per country.
    let mut data = Vec::new();
    let mut offsets: HashMap<&str, u32> = HashMap::new();
    for (_, _, cc) in networks {
        offsets.entry(cc).or_insert_with(|| {
            let at = data.len() as u32;
            control(&mut data, 7, 1);
            string(&mut data, "country");
            control(&mut data, 7, 1);
            string(&mut data, "iso_code");
            string(&mut data, cc);
            at
        });
    }
    // Search tree over the 32 address bits.
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (net, len, cc) in networks {
        let bits = u32::from(*net);
        let mut node = 0usize;
        for depth in 0..u32::from(*len) {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == u32::from(*len) {
                nodes[node][bit] = Record::Data(offsets[cc]);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(n) => n as usize,
                _ => {
                    nodes.push([Record::Empty; 2]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(n as u32);
                    n
                }
            };
        }
    }
    let node_count = nodes.len() as u32;
    let mut out = Vec::with_capacity(nodes.len() * 6 + 16 + data.len() + 256);
    for pair in &nodes {
        for r in pair {
            let v = match *r {
                Record::Empty => node_count,
                Record::Node(n) => n,
                Record::Data(off) => node_count + 16 + off,
            };
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    control(&mut out, 7, 9);
    string(&mut out, "binary_format_major_version");
    unsigned(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    unsigned(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    unsigned(&mut out, 9, epoch);
    string(&mut out, "database_type");
    string(&mut out, "Palisade-Test-Country");
    string(&mut out, "description");
    control(&mut out, 7, 1);
    string(&mut out, "en");
    string(&mut out, "Test country database");
    string(&mut out, "ip_version");
    unsigned(&mut out, 5, 4);
    string(&mut out, "languages");
    control(&mut out, 11, 1);
    string(&mut out, "en");
    string(&mut out, "node_count");
    unsigned(&mut out, 6, u64::from(node_count));
    string(&mut out, "record_size");
    unsigned(&mut out, 5, 24);
    out
}
