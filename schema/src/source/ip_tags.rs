//! `[[ip_tag]]`, `[[location]]` and `[geoip]`: named sets of client
//! addresses (CIDR ranges, and for locations country codes looked up in a
//! MaxMind-format country database carried in the snapshot).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use crate::model::access::check_country_database;
use crate::model::names::{IpRange, IpTag};

/// `[[ip_tag]]` and `[[location]]`: a name and CIDR ranges.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IpTagSource {
    name: Spanned<String>,
    #[serde(default)]
    ranges: Vec<Spanned<String>>,
    /// Locations only: ISO 3166 country codes looked up in the
    /// `[geoip] country_database`.
    #[serde(default)]
    countries: Vec<Spanned<String>>,
}

/// Compiles `[[ip_tag]]` or `[[location]]` tables (`what` names them in
/// messages).
pub(crate) fn compile_ip_tags(
    sources: &[Spanned<IpTagSource>],
    what: &str,
    report: Report<'_>,
    line_of: &dyn Fn(usize) -> usize,
) -> Vec<IpTag> {
    let mut ip_tags = Vec::with_capacity(sources.len());
    let mut tag_names: HashMap<String, usize> = HashMap::new();
    for tag_src in sources {
        let tag_src = tag_src.get_ref();
        let name = tag_src.name.get_ref().trim().to_string();
        let line = line_of(tag_src.name.span().start);
        if name.is_empty() {
            report(tag_src.name.span(), format!("{what} name is empty"));
        } else if let Some(first) = tag_names.get(&name) {
            report(
                tag_src.name.span(),
                format!("duplicate {what} {name:?} (first defined on line {first})"),
            );
        } else {
            tag_names.insert(name.clone(), line);
        }
        if tag_src.ranges.is_empty() && tag_src.countries.is_empty() {
            let what_is_missing = if what == "location" {
                "ranges or countries"
            } else {
                "ranges"
            };
            report(
                tag_src.name.span(),
                format!("{what} {name:?} lists no {what_is_missing}"),
            );
        }
        let mut ranges = Vec::with_capacity(tag_src.ranges.len());
        for r in &tag_src.ranges {
            match IpRange::parse(r.get_ref()) {
                Ok(range) => ranges.push(range),
                Err(e) => report(r.span(), format!("bad IP range: {e}")),
            }
        }
        let mut countries = Vec::with_capacity(tag_src.countries.len());
        for c in &tag_src.countries {
            let code = c.get_ref().trim().to_ascii_uppercase();
            if what != "location" {
                report(
                    c.span(),
                    format!("countries are for locations, not {what}s"),
                );
            } else if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                report(
                    c.span(),
                    format!(
                        "{:?} is not a two-letter ISO 3166 country code",
                        c.get_ref()
                    ),
                );
            } else {
                countries.push(code);
            }
        }
        ip_tags.push(IpTag {
            name,
            ranges,
            countries,
        });
    }

    ip_tags
}

/// `[geoip]`: a MaxMind-format country database (GeoLite2-Country or
/// compatible), carried in the snapshot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeoipSource {
    country_database: Spanned<String>,
}

pub(crate) fn compile_geoip(
    source: Option<&Spanned<GeoipSource>>,
    locations: &[IpTag],
    base_dir: &Path,
    report: Report<'_>,
) -> Vec<u8> {
    let Some(source) = source else {
        if let Some(l) = locations.iter().find(|l| !l.countries.is_empty()) {
            report(
                0..0,
                format!(
                    "location {:?} lists countries: add [geoip] country_database",
                    l.name
                ),
            );
        }
        return Vec::new();
    };
    let file = &source.get_ref().country_database;
    let path = base_dir.join(file.get_ref());
    match std::fs::read(&path) {
        Ok(bytes) => match check_country_database(&bytes) {
            Ok(()) => bytes,
            Err(e) => {
                report(
                    file.span(),
                    format!("country_database {}: {e}", path.display()),
                );
                Vec::new()
            }
        },
        Err(e) => {
            report(
                file.span(),
                format!("country_database {}: {e}", path.display()),
            );
            Vec::new()
        }
    }
}
