//! `[[access_policy]]` and `[block_page]`: ordered access policies (their
//! filters checked by [`compile_filters`]) and what the block page says.
//!
//! ```toml
//! [[access_policy]]
//! name = "unmanaged devices stay out of box"
//! apps = ["box"]
//! devices = ["unmanaged"]
//! action = "block"
//! message = "Use a company laptop for Box."
//! alert = { severity = "high" }
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::filters::{compile_filters, policy_source, KnownNames};
use super::report::{check_name, Report};
use crate::model::access::{AccessAction, AccessPolicy, BlockPage};
use crate::model::activity::SEVERITIES;

policy_source! {
    struct AccessPolicySource {
        action: Spanned<String>,
        #[serde(default)]
        message: String,
        alert: Option<Spanned<AlertSource>>,
    }
}

/// `alert = { severity = "…" }` on an access or session policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSource {
    severity: Spanned<String>,
}

/// The alert severity (lower case), or empty for no alert.
pub(crate) fn compile_alert(alert: &Option<Spanned<AlertSource>>, report: Report<'_>) -> String {
    let Some(a) = alert else {
        return String::new();
    };
    let severity = a.get_ref().severity.get_ref().to_ascii_lowercase();
    if !SEVERITIES.contains(&severity.as_str()) {
        report(
            a.get_ref().severity.span(),
            format!("unknown severity {severity:?} (low, medium, high)"),
        );
    }
    severity
}

pub(crate) fn compile_access_policies(
    sources: &[Spanned<AccessPolicySource>],
    known: &KnownNames<'_>,
    report: Report<'_>,
) -> Vec<AccessPolicy> {
    let mut out = Vec::with_capacity(sources.len());
    let mut names: HashMap<String, ()> = HashMap::new();
    for src in sources {
        let s = src.get_ref();
        let name = check_name(&s.name, "access_policy", &mut names, report);
        let filters = compile_filters(&s.filters(), known, report);
        let action = AccessAction::parse(s.action.get_ref()).unwrap_or_else(|| {
            report(
                s.action.span(),
                format!(
                    "unknown action {:?} (allow, audit, monitor, block)",
                    s.action.get_ref()
                ),
            );
            AccessAction::Allow
        });
        out.push(AccessPolicy {
            name,
            filters,
            action,
            message: s.message.clone(),
            alert_severity: compile_alert(&s.alert, report),
        });
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockPageSource {
    #[serde(default)]
    message: String,
    #[serde(default)]
    support_url: String,
}

pub(crate) fn compile_block_page(source: Option<&BlockPageSource>) -> BlockPage {
    source
        .map(|s| BlockPage {
            message: s.message.clone(),
            support_url: s.support_url.clone(),
        })
        .unwrap_or_default()
}
