//! `[[activity_policy]]`: rules controld evaluates on the stored log stream.
//!
//! ```toml
//! [[activity_policy]]
//! name = "mass-download"
//! activities = ["download"]
//! apps = ["box"]
//! alert = { severity = "high", daily_limit = 10 }
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::report::{check_name, Report};
use crate::logrec::Action;
use crate::model::activity::{ActivityPolicy, AlertSpec, SEVERITIES};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityPolicySource {
    name: Spanned<String>,
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
    #[serde(default)]
    apps: Vec<Spanned<String>>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    activities: Vec<String>,
    #[serde(default)]
    actions: Vec<Spanned<String>>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    statuses: Vec<Spanned<u16>>,
    #[serde(default)]
    url_contains: String,
    #[serde(default)]
    policies: Vec<String>,
    alert: Option<Spanned<AlertSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertSource {
    severity: Spanned<String>,
    #[serde(default)]
    daily_limit: u32,
}

/// Compiles the `[[activity_policy]]` tables; problems go to `error` with
/// the span they concern. `app_names` are the apps the policy defines.
pub(crate) fn compile(
    sources: &[Spanned<ActivityPolicySource>],
    app_names: &HashMap<String, usize>,
    error: Report<'_>,
) -> Vec<ActivityPolicy> {
    let mut out = Vec::with_capacity(sources.len());
    let mut seen: HashMap<String, ()> = HashMap::new();
    for src in sources {
        let src = src.get_ref();
        let name = check_name(&src.name, "activity_policy", &mut seen, error);
        for k in &src.kinds {
            if !matches!(k.get_ref().as_str(), "traffic" | "activity") {
                error(
                    k.span(),
                    format!("unknown kind {:?} (traffic or activity)", k.get_ref()),
                );
            }
        }
        for a in &src.apps {
            if !app_names.contains_key(a.get_ref()) {
                error(a.span(), format!("no app is named {:?}", a.get_ref()));
            }
        }
        for a in &src.actions {
            if Action::parse(a.get_ref()).is_none() {
                error(
                    a.span(),
                    format!(
                        "unknown action {:?} (allow, block, monitor, protect or audit)",
                        a.get_ref()
                    ),
                );
            }
        }
        for s in &src.statuses {
            if !(100..=599).contains(s.get_ref()) {
                error(s.span(), format!("status {} is not 100–599", s.get_ref()));
            }
        }
        let alert = src.alert.as_ref().map(|a| {
            let a = a.get_ref();
            let severity = a.severity.get_ref().to_ascii_lowercase();
            if !SEVERITIES.contains(&severity.as_str()) {
                error(
                    a.severity.span(),
                    format!(
                        "unknown severity {:?} (low, medium or high)",
                        a.severity.get_ref()
                    ),
                );
            }
            AlertSpec {
                severity,
                daily_limit: a.daily_limit,
            }
        });
        out.push(ActivityPolicy {
            name,
            kinds: src.kinds.iter().map(|k| k.get_ref().clone()).collect(),
            apps: src.apps.iter().map(|a| a.get_ref().clone()).collect(),
            users: src.users.clone(),
            activities: src.activities.clone(),
            actions: src.actions.iter().map(|a| a.get_ref().clone()).collect(),
            methods: src.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            statuses: src.statuses.iter().map(|s| *s.get_ref()).collect(),
            url_contains: src.url_contains.clone(),
            policies: src.policies.clone(),
            alert,
        });
    }
    out
}
