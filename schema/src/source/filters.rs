//! The who/where filters that access and session policies share, defined
//! once. [`policy_source!`] declares a policy table's source struct with
//! `name` and every filter field followed by the table's own fields;
//! [`compile_filters`] checks them (the same checks and messages for both
//! kinds of policy) into the model's [`Filters`]. serde's `flatten` cannot
//! do this here: it drops both `deny_unknown_fields` and the spans.

use std::collections::HashMap;

use toml::Spanned;

use super::report::Report;
use crate::model::access::{Filters, CLIENT_APPS, DEVICE_TAGS};
use crate::model::names::{IpRange, IpTag};

/// Declares a policy table's source struct: `name`, the shared filter
/// fields, then the fields given.
macro_rules! policy_source {
    (
        $(#[$meta:meta])*
        struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            pub(crate) name: toml::Spanned<String>,
            #[serde(default)]
            apps: Vec<toml::Spanned<String>>,
            #[serde(default)]
            users: Vec<toml::Spanned<String>>,
            #[serde(default)]
            groups: Vec<toml::Spanned<String>>,
            #[serde(default)]
            ip_tags: Vec<toml::Spanned<String>>,
            #[serde(default)]
            not_ip_tags: Vec<toml::Spanned<String>>,
            #[serde(default)]
            ip_ranges: Vec<toml::Spanned<String>>,
            #[serde(default)]
            locations: Vec<toml::Spanned<String>>,
            #[serde(default)]
            not_locations: Vec<toml::Spanned<String>>,
            #[serde(default)]
            devices: Vec<toml::Spanned<String>>,
            #[serde(default)]
            client_apps: Vec<toml::Spanned<String>>,
            #[serde(default)]
            user_agent_contains: Vec<toml::Spanned<String>>,
            user_agent_regex: Option<toml::Spanned<String>>,
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }

        impl $name {
            /// The shared filter fields, for [`compile_filters`].
            pub(crate) fn filters(&self) -> $crate::source::filters::FilterFields<'_> {
                $crate::source::filters::FilterFields {
                    apps: &self.apps,
                    users: &self.users,
                    groups: &self.groups,
                    ip_tags: &self.ip_tags,
                    not_ip_tags: &self.not_ip_tags,
                    ip_ranges: &self.ip_ranges,
                    locations: &self.locations,
                    not_locations: &self.not_locations,
                    devices: &self.devices,
                    client_apps: &self.client_apps,
                    user_agent_contains: &self.user_agent_contains,
                    user_agent_regex: &self.user_agent_regex,
                }
            }
        }
    };
}
pub(crate) use policy_source;

/// The filter fields of one policy table, as written.
pub(crate) struct FilterFields<'s> {
    pub apps: &'s [Spanned<String>],
    pub users: &'s [Spanned<String>],
    pub groups: &'s [Spanned<String>],
    pub ip_tags: &'s [Spanned<String>],
    pub not_ip_tags: &'s [Spanned<String>],
    pub ip_ranges: &'s [Spanned<String>],
    pub locations: &'s [Spanned<String>],
    pub not_locations: &'s [Spanned<String>],
    pub devices: &'s [Spanned<String>],
    pub client_apps: &'s [Spanned<String>],
    pub user_agent_contains: &'s [Spanned<String>],
    pub user_agent_regex: &'s Option<Spanned<String>>,
}

/// Names the filters may refer to.
pub(crate) struct KnownNames<'a> {
    pub apps: &'a HashMap<String, usize>,
    pub ip_tags: &'a [IpTag],
    pub locations: &'a [IpTag],
}

/// Checks one policy's filters: every name must be defined, every range
/// and the user-agent regex must parse.
pub(crate) fn compile_filters(
    f: &FilterFields<'_>,
    known: &KnownNames<'_>,
    report: Report<'_>,
) -> Filters {
    let mut names_in = |list: &[Spanned<String>], what: &str, ok: &dyn Fn(&str) -> bool| {
        let mut v = Vec::with_capacity(list.len());
        for item in list {
            let text = item.get_ref().trim();
            if !ok(text) {
                report(item.span(), format!("unknown {what} {text:?}"));
            } else {
                v.push(text.to_string());
            }
        }
        v
    };
    let has_tag = |n: &str| known.ip_tags.iter().any(|t| t.name == n);
    let has_location = |n: &str| known.locations.iter().any(|t| t.name == n);
    let apps = names_in(f.apps, "app", &|n| known.apps.contains_key(n));
    let ip_tags = names_in(f.ip_tags, "ip_tag", &has_tag);
    let not_ip_tags = names_in(f.not_ip_tags, "ip_tag", &has_tag);
    let locations = names_in(f.locations, "location", &has_location);
    let not_locations = names_in(f.not_locations, "location", &has_location);
    let devices = names_in(
        f.devices,
        "device tag (managed, unmanaged, compliant, domain_joined)",
        &|n| DEVICE_TAGS.contains(&n),
    );
    let client_apps = names_in(f.client_apps, "client app (browser, native)", &|n| {
        CLIENT_APPS.contains(&n)
    });
    let users = names_in(f.users, "user", &|n| !n.is_empty());
    let groups = names_in(f.groups, "group", &|n| !n.is_empty());
    let user_agent_contains =
        names_in(f.user_agent_contains, "user agent text", &|n| !n.is_empty());
    let mut ip_ranges = Vec::new();
    for r in f.ip_ranges {
        match IpRange::parse(r.get_ref()) {
            Ok(range) => ip_ranges.push(range),
            Err(e) => report(r.span(), format!("bad IP range: {e}")),
        }
    }
    let user_agent_regex = match f.user_agent_regex {
        None => String::new(),
        Some(r) => match regex::Regex::new(r.get_ref()) {
            Ok(_) => r.get_ref().clone(),
            Err(e) => {
                report(r.span(), format!("bad user_agent_regex: {e}"));
                String::new()
            }
        },
    };
    Filters {
        apps,
        users,
        groups,
        ip_tags,
        not_ip_tags,
        ip_ranges,
        locations,
        not_locations,
        devices,
        client_apps,
        user_agent_contains,
        user_agent_regex,
    }
}
