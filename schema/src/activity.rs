//! Activity policies: rules controld evaluates on the stored log stream.
//! A record matches when every non-empty filter matches; a matching policy
//! with an `alert` raises an alert record (at most `daily_limit` per policy
//! per UTC day).
//!
//! ```toml
//! [[activity_policy]]
//! name = "mass-download"
//! activities = ["download"]
//! apps = ["box"]
//! alert = { severity = "high", daily_limit = 10 }
//! ```

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::logrec::Action;

/// Alert severities, lowest first.
pub const SEVERITIES: [&str; 3] = ["low", "medium", "high"];

/// What a matching policy raises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSpec {
    pub severity: String,
    /// Alerts per policy per UTC day; 0 means no limit.
    pub daily_limit: u32,
}

/// A compiled activity policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityPolicy {
    pub name: String,
    /// "traffic" and/or "activity".
    pub kinds: Vec<String>,
    pub apps: Vec<String>,
    pub users: Vec<String>,
    pub activities: Vec<String>,
    pub actions: Vec<String>,
    /// Upper-case methods.
    pub methods: Vec<String>,
    pub statuses: Vec<u16>,
    pub url_contains: String,
    /// Names of the access (or session) policies that decided the request.
    pub policies: Vec<String>,
    pub alert: Option<AlertSpec>,
}

/// The facts of one record a policy matches on.
pub struct Facts<'a> {
    pub kind: &'a str,
    pub app: &'a str,
    pub user: &'a str,
    pub activity: &'a str,
    pub action: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub url: &'a str,
    /// The deciding policy's name (empty: none).
    pub policy: &'a str,
}

impl ActivityPolicy {
    /// Every non-empty filter matches.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any(&self.kinds, f.kind)
            && any(&self.apps, f.app)
            && any(&self.users, f.user)
            && any(&self.activities, f.activity)
            && any(&self.actions, f.action)
            && any(&self.methods, f.method)
            && (self.statuses.is_empty() || self.statuses.contains(&f.status))
            && (self.url_contains.is_empty() || f.url.contains(self.url_contains.as_str()))
            && any(&self.policies, f.policy)
    }
}

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
    error: &mut dyn FnMut(Range<usize>, String),
) -> Vec<ActivityPolicy> {
    let mut out = Vec::with_capacity(sources.len());
    let mut seen: HashMap<String, ()> = HashMap::new();
    for src in sources {
        let src = src.get_ref();
        let name = src.name.get_ref().trim().to_string();
        if name.is_empty() {
            error(src.name.span(), "activity_policy name is empty".into());
        } else if seen.insert(name.clone(), ()).is_some() {
            error(
                src.name.span(),
                format!("duplicate activity_policy {name:?}"),
            );
        }
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

#[cfg(test)]
mod tests {
    use crate::policy::{compile_source, CompileOptions};
    use crate::snapshot;
    use std::path::Path;

    const BASE: &str =
        "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.test\"]\n";

    fn compile(extra: &str) -> Result<crate::policy::Policy, String> {
        compile_source(
            "t.toml",
            &format!("{BASE}{extra}"),
            Path::new("."),
            &CompileOptions::default(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn activity_policies_compile_and_survive_a_snapshot() {
        let p = compile(
            "[[activity_policy]]\nname = \"dl\"\nactivities = [\"download\"]\napps = [\"box\"]\nmethods = [\"get\"]\nstatuses = [200]\nalert = { severity = \"High\", daily_limit = 10 }\n[[activity_policy]]\nname = \"quiet\"\nactions = [\"block\"]\n",
        )
        .unwrap();
        assert_eq!(p.activity_policies.len(), 2);
        let dl = &p.activity_policies[0];
        assert_eq!(dl.methods, ["GET"]);
        let alert = dl.alert.as_ref().unwrap();
        assert_eq!((alert.severity.as_str(), alert.daily_limit), ("high", 10));
        assert!(p.activity_policies[1].alert.is_none());
        let back = snapshot::decode(&snapshot::encode(&p)).unwrap();
        assert_eq!(back.activity_policies, p.activity_policies);
    }

    #[test]
    fn bad_activity_policies_are_located() {
        let e = compile("[[activity_policy]]\nname = \"x\"\napps = [\"nope\"]\n").unwrap_err();
        assert!(
            e.contains("t.toml:8:") && e.contains("no app is named \"nope\""),
            "{e}"
        );
        let e = compile("[[activity_policy]]\nname = \"x\"\nalert = { severity = \"urgent\" }\n")
            .unwrap_err();
        assert!(
            e.contains("t.toml:8:") && e.contains("unknown severity"),
            "{e}"
        );
        let e = compile("[[activity_policy]]\nname = \"x\"\nactions = [\"zap\"]\n").unwrap_err();
        assert!(e.contains("unknown action \"zap\""), "{e}");
        let e = compile("[[activity_policy]]\nname = \"x\"\n[[activity_policy]]\nname = \"x\"\n")
            .unwrap_err();
        assert!(e.contains("duplicate activity_policy"), "{e}");
    }
}
