//! Activity policies: rules controld evaluates on the stored log stream. A
//! record matches when every non-empty filter matches; a matching policy
//! with an alert raises an alert record (at most `daily_limit` per policy per
//! UTC day).

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
