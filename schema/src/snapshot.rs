//! Snapshot files: an 8-byte magic followed by one Cap'n Proto message
//! (`policy.capnp` `Snapshot`, standard stream framing).
//!
//! Decoding treats the bytes as untrusted: the size is bounded before
//! anything is read, the Cap'n Proto reader runs with explicit traversal and
//! nesting limits, and every field is validated again into the [`Policy`]
//! model, so a data plane never acts on a snapshot that controld would not
//! have produced.

use std::fmt;
use std::net::IpAddr;

use capnp::message::{Builder, ReaderOptions};

use crate::activity::{ActivityPolicy, AlertSpec, SEVERITIES};
use crate::policy::{App, DnsName, IpRange, IpTag, Policy, Scheme, Upstream, UpstreamHost};
use crate::policy_capnp;

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"PLSDSNP\x01";

/// Schema layout revision this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Largest snapshot accepted (bytes), checked before decoding.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 20;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a Palisade snapshot (wrong magic).
    NotASnapshot,
    /// Larger than [`MAX_SNAPSHOT_BYTES`].
    TooLarge(usize),
    /// Written for a schema revision this build does not know.
    FutureFormat { found: u32, supported: u32 },
    /// The Cap'n Proto message is malformed or exceeds the reader limits.
    Decode(String),
    /// Decoded, but a field is invalid.
    Invalid(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotASnapshot => f.write_str("not a Palisade snapshot (bad magic)"),
            SnapshotError::TooLarge(n) => {
                write!(f, "snapshot is {n} bytes (at most {MAX_SNAPSHOT_BYTES})")
            }
            SnapshotError::FutureFormat { found, supported } => write!(
                f,
                "snapshot format {found} is newer than this build understands ({supported}); upgrade the data plane"
            ),
            SnapshotError::Decode(e) => write!(f, "snapshot does not decode: {e}"),
            SnapshotError::Invalid(e) => write!(f, "snapshot is invalid: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<capnp::Error> for SnapshotError {
    fn from(e: capnp::Error) -> Self {
        SnapshotError::Decode(e.to_string())
    }
}

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
        crate::access_codec::encode(snap.reborrow(), policy);
        snap.set_geoip_country_database(&policy.geoip_country_database);
        crate::session_codec::encode(
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
            let mut a = apps.reborrow().get(i as u32);
            a.set_name(app.name.as_str());
            let mut domains = a.reborrow().init_domains(app.domains.len() as u32);
            for (j, d) in app.domains.iter().enumerate() {
                domains.set(j as u32, d.as_str());
            }
            if !app.bare_host_contexts.is_empty() {
                let mut contexts = a
                    .reborrow()
                    .init_bare_host_contexts(app.bare_host_contexts.len() as u32);
                for (j, c) in app.bare_host_contexts.iter().enumerate() {
                    contexts.set(j as u32, c.as_str());
                }
            }
            crate::access_codec::encode_app(a.reborrow(), app);
            if app.profile != Default::default() {
                crate::session_codec::encode_profile(a.reborrow().init_profile(), &app.profile);
            }
            let mut up = a.init_upstream();
            up.set_ca_certificates_pem(&app.ca_certificates_pem);
            match &app.upstream {
                Upstream::Direct => up.set_direct(()),
                Upstream::Fixed { scheme, host, port } => {
                    let mut f = up.init_fixed();
                    f.set_scheme(match scheme {
                        Scheme::Http => policy_capnp::Scheme::Http,
                        Scheme::Https => policy_capnp::Scheme::Https,
                    });
                    let host_text = match host {
                        UpstreamHost::Name(n) => n.as_str().to_string(),
                        UpstreamHost::Ip(ip) => ip.to_string(),
                    };
                    f.set_host(host_text.as_str());
                    f.set_port(*port);
                }
            }
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
    let text = |r: capnp::Result<capnp::text::Reader<'_>>| -> Result<String, SnapshotError> {
        Ok(r?
            .to_str()
            .map_err(|e| SnapshotError::Decode(e.to_string()))?
            .to_string())
    };
    let invalid = |what: &str, e: String| SnapshotError::Invalid(format!("{what}: {e}"));
    let suffix = DnsName::parse(&text(snap.get_proxy()?.get_suffix())?)
        .map_err(|e| invalid("proxy suffix", e))?;
    let mut apps = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for a in snap.get_apps()?.iter() {
        let name = text(a.get_name())?;
        let mut domains = Vec::new();
        for d in a.get_domains()?.iter() {
            let d = DnsName::parse(
                d?.to_str()
                    .map_err(|e| SnapshotError::Decode(e.to_string()))?,
            )
            .map_err(|e| invalid(&format!("app {name:?} domain"), e))?;
            if d.is_within(&suffix) || suffix.is_within(&d) {
                return Err(invalid(
                    &format!("app {name:?}"),
                    format!("domain {d} overlaps the suffix"),
                ));
            }
            if !seen.insert(d.clone()) {
                return Err(invalid(
                    &format!("app {name:?}"),
                    format!("duplicate domain {d}"),
                ));
            }
            domains.push(d);
        }
        if domains.is_empty() {
            return Err(invalid(&format!("app {name:?}"), "no domains".into()));
        }
        let contexts = a.get_bare_host_contexts()?;
        if contexts.len() as usize > crate::policy::MAX_BARE_HOST_CONTEXTS {
            return Err(invalid(
                &format!("app {name:?}"),
                "too many bare_host_contexts".into(),
            ));
        }
        let mut bare_host_contexts = Vec::with_capacity(contexts.len() as usize);
        for c in contexts.iter() {
            let c = text(c)?;
            crate::policy::check_bare_host_context(&c)
                .map_err(|e| invalid(&format!("app {name:?}"), e))?;
            bare_host_contexts.push(c);
        }
        let up = a.get_upstream()?;
        let ca_certificates_pem = up.get_ca_certificates_pem()?.to_vec();
        let upstream = match up
            .which()
            .map_err(|e| SnapshotError::Decode(e.to_string()))?
        {
            policy_capnp::upstream::Direct(()) => Upstream::Direct,
            policy_capnp::upstream::Fixed(f) => {
                let f = f?;
                let scheme = match f
                    .get_scheme()
                    .map_err(|e| SnapshotError::Decode(e.to_string()))?
                {
                    policy_capnp::Scheme::Http => Scheme::Http,
                    policy_capnp::Scheme::Https => Scheme::Https,
                };
                let host_text = text(f.get_host())?;
                let host = match host_text.parse::<IpAddr>() {
                    Ok(ip) => UpstreamHost::Ip(ip),
                    Err(_) => UpstreamHost::Name(
                        DnsName::parse(&host_text)
                            .map_err(|e| invalid(&format!("app {name:?} upstream"), e))?,
                    ),
                };
                let port = f.get_port();
                if port == 0 {
                    return Err(invalid(&format!("app {name:?} upstream"), "port 0".into()));
                }
                Upstream::Fixed { scheme, host, port }
            }
        };
        apps.push(App {
            name,
            domains,
            upstream,
            ca_certificates_pem,
            bare_host_contexts,
            certificate: crate::access_codec::decode_certified_key(
                a.get_has_certificate(),
                a.get_certificate(),
            )?,
            access_default: crate::access_codec::decode_action(a.get_access_default())?,
            login_required: a.get_login_required(),
            oidc: crate::access_codec::decode_app_oidc(a.get_has_oidc(), a.get_oidc())?,
            profile: crate::session_codec::decode_profile(a.has_profile(), a.get_profile())?,
        });
    }
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
        tls: crate::access_codec::decode_tls(snap.get_tls()?)?,
        identity: crate::access_codec::decode_identity(snap.get_identity()?)?,
        locations: decode_ip_tags(snap.get_locations()?, "location")?,
        access_policies: crate::access_codec::decode_access_policies(snap.get_access_policies()?)?,
        block_page: crate::access_codec::decode_block_page(snap.get_block_page()?)?,
        geoip_country_database: {
            let db = snap.get_geoip_country_database()?.to_vec();
            if !db.is_empty() {
                crate::access::check_country_database(&db)
                    .map_err(|e| SnapshotError::Invalid(format!("geoip country database: {e}")))?;
            }
            db
        },
        session_policies: crate::session_codec::decode(snap.get_session_policies()?)?,
        monitoring_notice: text(snap.get_monitoring_notice())?,
    })
}

pub(crate) fn encode_ip_tags(
    mut tags: capnp::struct_list::Builder<'_, policy_capnp::ip_tag::Owned>,
    list: &[IpTag],
) {
    for (i, tag) in list.iter().enumerate() {
        let mut t = tags.reborrow().get(i as u32);
        t.set_name(tag.name.as_str());
        if !tag.countries.is_empty() {
            let mut c = t.reborrow().init_countries(tag.countries.len() as u32);
            for (j, code) in tag.countries.iter().enumerate() {
                c.set(j as u32, code.as_str());
            }
        }
        let mut ranges = t.init_ranges(tag.ranges.len() as u32);
        for (j, r) in tag.ranges.iter().enumerate() {
            let mut out = ranges.reborrow().get(j as u32);
            match r.addr() {
                IpAddr::V4(a) => out.set_address(&a.octets()),
                IpAddr::V6(a) => out.set_address(&a.octets()),
            }
            out.set_prefix_length(r.prefix());
        }
    }
}

/// Decodes a list of named range sets (ip tags, locations).
pub(crate) fn decode_ip_tags(
    list: capnp::struct_list::Reader<'_, policy_capnp::ip_tag::Owned>,
    what: &str,
) -> Result<Vec<IpTag>, SnapshotError> {
    let text = crate::access_codec::text;
    let invalid = |what: &str, e: String| SnapshotError::Invalid(format!("{what}: {e}"));
    let mut ip_tags = Vec::new();
    let mut tag_names = std::collections::HashSet::new();
    for t in list.iter() {
        let name = text(t.get_name())?;
        if !tag_names.insert(name.clone()) {
            return Err(invalid(what, format!("duplicate tag {name:?}")));
        }
        let ranges_list = t.get_ranges()?;
        let mut ranges = Vec::with_capacity(ranges_list.len() as usize);
        for r in ranges_list.iter() {
            let address = r.get_address()?;
            let addr = match address.len() {
                4 => IpAddr::from(
                    <[u8; 4]>::try_from(address)
                        .map_err(|_| invalid("ip range", "length".into()))?,
                ),
                16 => IpAddr::from(
                    <[u8; 16]>::try_from(address)
                        .map_err(|_| invalid("ip range", "length".into()))?,
                ),
                n => {
                    return Err(invalid(
                        &format!("{what} {name:?}"),
                        format!("address of {n} bytes"),
                    ))
                }
            };
            let range = IpRange::new(addr, r.get_prefix_length()).ok_or_else(|| {
                invalid(
                    &format!("{what} {name:?}"),
                    format!("bad range {addr}/{}", r.get_prefix_length()),
                )
            })?;
            ranges.push(range);
        }
        let countries = t
            .get_countries()?
            .iter()
            .map(&text)
            .collect::<Result<Vec<_>, _>>()?;
        ip_tags.push(IpTag {
            name,
            ranges,
            countries,
        });
    }
    Ok(ip_tags)
}

fn encode_activity_policies(
    mut list: capnp::struct_list::Builder<'_, policy_capnp::activity_policy::Owned>,
    policies: &[ActivityPolicy],
) {
    for (i, p) in policies.iter().enumerate() {
        let mut out = list.reborrow().get(i as u32);
        out.set_name(p.name.as_str());
        let texts = [
            (&p.kinds, 0),
            (&p.apps, 1),
            (&p.users, 2),
            (&p.activities, 3),
            (&p.actions, 4),
            (&p.methods, 5),
        ];
        for (values, which) in texts {
            let n = values.len() as u32;
            let mut l = match which {
                0 => out.reborrow().init_kinds(n),
                1 => out.reborrow().init_apps(n),
                2 => out.reborrow().init_users(n),
                3 => out.reborrow().init_activities(n),
                4 => out.reborrow().init_actions(n),
                _ => out.reborrow().init_methods(n),
            };
            for (j, v) in values.iter().enumerate() {
                l.set(j as u32, v.as_str());
            }
        }
        let mut statuses = out.reborrow().init_statuses(p.statuses.len() as u32);
        for (j, v) in p.statuses.iter().enumerate() {
            statuses.set(j as u32, *v);
        }
        out.set_url_contains(p.url_contains.as_str());
        let mut names = out.reborrow().init_policies(p.policies.len() as u32);
        for (j, v) in p.policies.iter().enumerate() {
            names.set(j as u32, v.as_str());
        }
        if let Some(a) = &p.alert {
            out.set_has_alert(true);
            let mut alert = out.init_alert();
            alert.set_severity(a.severity.as_str());
            alert.set_daily_limit(a.daily_limit);
        }
    }
}

fn decode_activity_policies(
    list: capnp::struct_list::Reader<'_, policy_capnp::activity_policy::Owned>,
) -> Result<Vec<ActivityPolicy>, SnapshotError> {
    let text = |r: capnp::Result<capnp::text::Reader<'_>>| -> Result<String, SnapshotError> {
        Ok(r?
            .to_str()
            .map_err(|e| SnapshotError::Decode(e.to_string()))?
            .to_string())
    };
    let texts =
        |r: capnp::Result<capnp::text_list::Reader<'_>>| -> Result<Vec<String>, SnapshotError> {
            r?.iter().map(&text).collect()
        };
    let mut out = Vec::with_capacity(list.len() as usize);
    for p in list.iter() {
        let alert = if p.get_has_alert() {
            let a = p.get_alert()?;
            let severity = text(a.get_severity())?;
            if !SEVERITIES.contains(&severity.as_str()) {
                return Err(SnapshotError::Invalid(format!(
                    "activity policy alert severity {severity:?}"
                )));
            }
            Some(AlertSpec {
                severity,
                daily_limit: a.get_daily_limit(),
            })
        } else {
            None
        };
        out.push(ActivityPolicy {
            name: text(p.get_name())?,
            kinds: texts(p.get_kinds())?,
            apps: texts(p.get_apps())?,
            users: texts(p.get_users())?,
            activities: texts(p.get_activities())?,
            actions: texts(p.get_actions())?,
            methods: texts(p.get_methods())?,
            statuses: p.get_statuses()?.iter().collect(),
            url_contains: text(p.get_url_contains())?,
            policies: texts(p.get_policies())?,
            alert,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{compile_source, CompileOptions};
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
