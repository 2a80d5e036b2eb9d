//! Snapshot files: an 8-byte magic followed by one Cap'n Proto message
//! (`policy.capnp` `Snapshot`, standard stream framing).
//!
//! Decoding treats the bytes as untrusted: the size is bounded before
//! anything is read, the Cap'n Proto reader runs with explicit traversal and
//! nesting limits, and every field is validated again into the [`Policy`]
//! model, so a data plane never acts on a snapshot that controld would not
//! have produced.

use std::collections::HashSet;

use capnp::message::{Builder, ReaderOptions};

use super::activity::{decode_activity_policies, encode_activity_policies};
use super::app::{decode_app, encode_app};
use super::error::SnapshotError;
use super::fields::{decode_range, encode_range, invalid, set_texts, text};
use super::format::{FORMAT_VERSION, MAGIC, MAX_SNAPSHOT_BYTES};
use crate::model::access::check_country_database;
use crate::model::names::{DnsName, IpTag};
use crate::model::policy::Policy;
use crate::policy_capnp;

/// Encodes `policy` as snapshot bytes.
pub fn encode(policy: &Policy) -> Vec<u8> {
    encode_with_format(policy, FORMAT_VERSION)
}

/// Encodes with an explicit format version (tests use this to forge
/// snapshots from a "future" build).
pub fn encode_with_format(policy: &Policy, format_version: u32) -> Vec<u8> {
    let mut message = Builder::new_default();
    {
        let mut snap = message.init_root::<policy_capnp::snapshot::Builder>();
        snap.set_format_version(format_version);
        snap.set_version(policy.version);
        snap.set_compiled_at_unix_ms(policy.compiled_at_unix_ms);
        snap.set_source(policy.source.as_str());
        snap.reborrow()
            .init_proxy()
            .set_suffix(policy.suffix.as_str());
        encode_ip_tags(
            snap.reborrow().init_ip_tags(policy.ip_tags.len() as u32),
            &policy.ip_tags,
        );
        encode_ip_tags(
            snap.reborrow()
                .init_locations(policy.locations.len() as u32),
            &policy.locations,
        );
        super::access::encode(snap.reborrow(), policy);
        snap.set_geoip_country_database(&policy.geoip_country_database);
        super::session::encode(
            snap.reborrow(),
            &policy.session_policies,
            &policy.monitoring_notice,
        );
        encode_activity_policies(
            snap.reborrow()
                .init_activity_policies(policy.activity_policies.len() as u32),
            &policy.activity_policies,
        );
        let mut apps = snap.init_apps(policy.apps.len() as u32);
        for (i, app) in policy.apps.iter().enumerate() {
            encode_app(apps.reborrow().get(i as u32), app);
        }
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    // Writing into a Vec cannot fail.
    capnp::serialize::write_message(&mut out, &message).expect("write to Vec");
    out
}

/// Decodes and validates snapshot bytes.
pub fn decode(bytes: &[u8]) -> Result<Policy, SnapshotError> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(bytes.len()));
    }
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(SnapshotError::NotASnapshot)?;
    let mut options = ReaderOptions::new();
    // Each word may be visited a bounded number of times; nesting is shallow
    // by design (snapshot → app → upstream → fixed).
    options
        .traversal_limit_in_words(Some(body.len() / 8 * 4 + 1024))
        .nesting_limit(16);
    let mut slice = body;
    let message = capnp::serialize::read_message_from_flat_slice(&mut slice, options)?;
    if !slice.is_empty() {
        return Err(SnapshotError::Decode(format!(
            "{} trailing bytes after the message",
            slice.len()
        )));
    }
    let snap = message.get_root::<policy_capnp::snapshot::Reader>()?;
    let format = snap.get_format_version();
    if format > FORMAT_VERSION {
        return Err(SnapshotError::FutureFormat {
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    if format == 0 {
        return Err(SnapshotError::Invalid("format version 0".into()));
    }
    let suffix = DnsName::parse(&text(snap.get_proxy()?.get_suffix())?)
        .map_err(|e| invalid(format!("proxy suffix: {e}")))?;
    let mut seen = HashSet::new();
    let apps = snap
        .get_apps()?
        .iter()
        .map(|a| decode_app(a, &suffix, &mut seen))
        .collect::<Result<Vec<_>, _>>()?;
    let ip_tags = decode_ip_tags(snap.get_ip_tags()?, "ip tag")?;
    let activity_policies = decode_activity_policies(snap.get_activity_policies()?)?;
    Ok(Policy {
        version: snap.get_version(),
        compiled_at_unix_ms: snap.get_compiled_at_unix_ms(),
        source: text(snap.get_source())?,
        suffix,
        apps,
        ip_tags,
        activity_policies,
        tls: super::access::decode_tls(snap.get_tls()?)?,
        identity: super::access::decode_identity(snap.get_identity()?)?,
        locations: decode_ip_tags(snap.get_locations()?, "location")?,
        access_policies: super::access::decode_access_policies(snap.get_access_policies()?)?,
        block_page: super::access::decode_block_page(snap.get_block_page()?)?,
        geoip_country_database: {
            let db = snap.get_geoip_country_database()?.to_vec();
            if !db.is_empty() {
                check_country_database(&db)
                    .map_err(|e| invalid(format!("geoip country database: {e}")))?;
            }
            db
        },
        session_policies: super::session::decode(snap.get_session_policies()?)?,
        monitoring_notice: text(snap.get_monitoring_notice())?,
    })
}

fn encode_ip_tags(
    mut tags: capnp::struct_list::Builder<'_, policy_capnp::ip_tag::Owned>,
    list: &[IpTag],
) {
    for (i, tag) in list.iter().enumerate() {
        let mut t = tags.reborrow().get(i as u32);
        t.set_name(tag.name.as_str());
        if !tag.countries.is_empty() {
            set_texts(
                t.reborrow().init_countries(tag.countries.len() as u32),
                &tag.countries,
            );
        }
        let mut ranges = t.init_ranges(tag.ranges.len() as u32);
        for (j, r) in tag.ranges.iter().enumerate() {
            encode_range(ranges.reborrow().get(j as u32), r);
        }
    }
}

/// Decodes a list of named range sets (ip tags, locations; `what` names
/// them in messages).
fn decode_ip_tags(
    list: capnp::struct_list::Reader<'_, policy_capnp::ip_tag::Owned>,
    what: &str,
) -> Result<Vec<IpTag>, SnapshotError> {
    let mut ip_tags = Vec::new();
    let mut tag_names = HashSet::new();
    for t in list.iter() {
        let name = text(t.get_name())?;
        if !tag_names.insert(name.clone()) {
            return Err(invalid(format!("{what}: duplicate tag {name:?}")));
        }
        let ranges = t
            .get_ranges()?
            .iter()
            .map(|r| {
                decode_range(r).map_err(|e| match e {
                    SnapshotError::Invalid(m) => invalid(format!("{what} {name:?}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let countries = t
            .get_countries()?
            .iter()
            .map(text)
            .collect::<Result<Vec<_>, _>>()?;
        ip_tags.push(IpTag {
            name,
            ranges,
            countries,
        });
    }
    Ok(ip_tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{compile_source, CompileOptions};
    use std::path::Path;

    fn sample() -> Policy {
        compile_source(
            "t.toml",
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"https://[::1]:8443\"\n[[app]]\nname = \"direct\"\ndomains = [\"box.com\"]\n[[ip_tag]]\nname = \"corp\"\nranges = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n",
            Path::new("."),
            &CompileOptions { version: 3, compiled_at_unix_ms: 42 },
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(decode(&encode(&p)).unwrap(), p);
    }

    #[test]
    fn future_format_is_refused() {
        let bytes = encode_with_format(&sample(), FORMAT_VERSION + 1);
        assert!(matches!(
            decode(&bytes),
            Err(SnapshotError::FutureFormat { .. })
        ));
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let good = encode(&sample());
        assert_eq!(decode(b"garbage"), Err(SnapshotError::NotASnapshot));
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        let mut state = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            let mut bad = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = MAGIC.len() + (state as usize) % (bad.len() - MAGIC.len());
                bad[i] = (state >> 32) as u8;
            }
            let _ = decode(&bad);
        }
    }
}
