//! Session policies (what a user may do inside an app) and app activity
//! profiles (how an app's downloads, uploads and custom activities look).
//!
//! ```toml
//! [monitoring_notice]
//! message = "This session is monitored by your organization."
//!
//! [[session_policy]]
//! name = "no-cards-on-unmanaged"
//! control = "control_download"      # monitor | control_download | control_upload | block_activities
//! apps = ["files"]
//! devices = ["unmanaged"]           # every access-policy filter works here
//! extensions = ["csv", "docx"]      # file filters: file_names, extensions,
//! file_types = ["docx", "text"]     #   file_types, min_size, max_size, labels
//! action = "block"                  # audit | block | protect
//! message = "Card numbers stay in the app."
//! [session_policy.inspect]
//! detectors = ["credit_card", { name = "ssn", min_matches = 3 }]
//! keywords = ["project falcon"]
//! on_uninspectable = "apply"        # apply (fail closed) | allow (fail open)
//! ```
//!
//! The filters shared with access policies are compiled by the access
//! compiler (same checks, same messages), so a session policy can say
//! anything an access policy can about who and where.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::access::{AccessPolicy, AccessPolicySource, KnownNames, Report};
use crate::activity::SEVERITIES;

/// What a session policy controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Control {
    /// Log the activities it sees (and show the monitoring notice).
    #[default]
    Monitor,
    Download,
    Upload,
    /// Block the listed activities.
    Activities,
}

impl Control {
    pub fn parse(text: &str) -> Option<Control> {
        Some(match text {
            "monitor" => Control::Monitor,
            "control_download" => Control::Download,
            "control_upload" => Control::Upload,
            "block_activities" => Control::Activities,
            _ => return None,
        })
    }
}

/// What happens to a matching file or activity, least restrictive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SessionAction {
    /// Let through, log, alert.
    #[default]
    Audit,
    /// Downloads: encrypt to the policy's recipients.
    Protect,
    Block,
}

impl SessionAction {
    pub fn parse(text: &str) -> Option<SessionAction> {
        Some(match text {
            "audit" => SessionAction::Audit,
            "protect" => SessionAction::Protect,
            "block" => SessionAction::Block,
            _ => return None,
        })
    }
}

/// Built-in content detectors.
pub const DETECTORS: [&str; 5] = ["credit_card", "ssn", "iban", "aws_key", "private_key"];

/// File types the data plane detects from a file's first bytes.
pub const FILE_TYPES: [&str; 14] = [
    "pdf",
    "docx",
    "xlsx",
    "pptx",
    "ooxml",
    "zip",
    "ole",
    "image",
    "png",
    "jpeg",
    "gif",
    "executable",
    "gzip",
    "text",
];

/// Default inspection limits.
pub const DEFAULT_MAX_BYTES: u64 = 30 * 1024 * 1024;
pub const DEFAULT_MAX_CHARS: u64 = 1_000_000;
/// The largest `max_bytes` a policy may set: files under inspection are
/// held in memory up to it.
pub const MAX_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// File filters: every non-empty one must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFilter {
    /// Globs over the file name (`*`, `?`), case-insensitive.
    pub names: Vec<String>,
    /// Lower case, no dot.
    pub extensions: Vec<String>,
    pub types: Vec<String>,
    pub min_size: u64,
    /// 0: no bound.
    pub max_size: u64,
    pub labels: Vec<String>,
}

impl FileFilter {
    pub fn is_empty(&self) -> bool {
        *self == FileFilter::default()
    }
}

/// Content inspection of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// (detector, minimum matches).
    pub detectors: Vec<(String, u32)>,
    pub keywords: Vec<String>,
    pub regexes: Vec<String>,
    /// Minimum matches of each keyword or regex.
    pub min_matches: u32,
    pub max_bytes: u64,
    pub max_chars: u64,
    /// An uninspectable file gets the action anyway.
    pub fail_closed: bool,
}

/// A compiled session policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Name and who/where filters (the action field is unused).
    pub filters: AccessPolicy,
    pub control: Control,
    pub activities: Vec<String>,
    pub file: FileFilter,
    pub inspection: Option<Inspection>,
    pub action: SessionAction,
    pub message: String,
    /// `age1…` X25519 recipients (protect).
    pub recipients: Vec<String>,
    /// Empty: no alert.
    pub alert_severity: String,
    pub notice: bool,
}

impl SessionPolicy {
    pub fn name(&self) -> &str {
        &self.filters.name
    }
}

/// How an app's activities look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppProfile {
    /// Responses with these content types (lower case, no parameters) are
    /// downloads, besides `Content-Disposition: attachment`.
    pub download_content_types: Vec<String>,
    /// Path globs whose responses are downloads.
    pub download_paths: Vec<String>,
    /// Path globs whose PUT/POST bodies are uploads (besides multipart
    /// file parts).
    pub upload_paths: Vec<String>,
    pub activities: Vec<CustomActivity>,
}

/// A named activity: method + path glob + optional query or body marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomActivity {
    pub name: String,
    /// Upper case; empty: any.
    pub method: String,
    pub path: String,
    pub query_contains: String,
    pub body_contains: String,
}

/// Activity names the data plane recognizes without a profile.
pub const BUILT_IN_ACTIVITIES: [&str; 2] = ["download", "upload"];

/// `*` matches any run (also empty), `?` one byte; ASCII case folded when
/// `fold` is set.
pub fn glob_matches(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let eq = |a: u8, b: u8| a == b || (fold && a.eq_ignore_ascii_case(&b));
    let (mut p, mut t) = (0, 0);
    // Backtracking point: the last `*` and where its run ends now.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || eq(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

// ---- TOML source -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitoringNoticeSource {
    #[serde(default)]
    message: String,
}

pub(crate) fn compile_notice(source: Option<&MonitoringNoticeSource>) -> String {
    source
        .map(|s| s.message.trim().to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionPolicySource {
    name: Spanned<String>,
    control: Spanned<String>,
    // Who and where: as in access policies.
    #[serde(default)]
    apps: Vec<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    ip_tags: Vec<Spanned<String>>,
    #[serde(default)]
    not_ip_tags: Vec<Spanned<String>>,
    #[serde(default)]
    ip_ranges: Vec<Spanned<String>>,
    #[serde(default)]
    locations: Vec<Spanned<String>>,
    #[serde(default)]
    not_locations: Vec<Spanned<String>>,
    #[serde(default)]
    devices: Vec<Spanned<String>>,
    #[serde(default)]
    client_apps: Vec<Spanned<String>>,
    #[serde(default)]
    user_agent_contains: Vec<Spanned<String>>,
    user_agent_regex: Option<Spanned<String>>,
    // What.
    #[serde(default)]
    activities: Vec<Spanned<String>>,
    #[serde(default)]
    file_names: Vec<Spanned<String>>,
    #[serde(default)]
    extensions: Vec<Spanned<String>>,
    #[serde(default)]
    file_types: Vec<Spanned<String>>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    inspect: Option<Spanned<InspectSource>>,
    action: Option<Spanned<String>>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    recipients: Vec<Spanned<String>>,
    alert: Option<Spanned<AlertSource>>,
    notice: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertSource {
    severity: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DetectorSource {
    // Untagged enums cannot carry spans: problems point at `inspect`.
    Name(String),
    WithCount { name: String, min_matches: u32 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InspectSource {
    #[serde(default)]
    detectors: Vec<DetectorSource>,
    #[serde(default)]
    keywords: Vec<Spanned<String>>,
    #[serde(default)]
    regexes: Vec<Spanned<String>>,
    min_matches: Option<u32>,
    max_bytes: Option<Spanned<u64>>,
    max_chars: Option<u64>,
    on_uninspectable: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppProfileSource {
    #[serde(default)]
    download_content_types: Vec<Spanned<String>>,
    #[serde(default)]
    download_paths: Vec<Spanned<String>>,
    #[serde(default)]
    upload_paths: Vec<Spanned<String>>,
    #[serde(default, rename = "activity")]
    activities: Vec<Spanned<CustomActivitySource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomActivitySource {
    name: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    query_contains: String,
    #[serde(default)]
    body_contains: String,
}

fn check_path_glob(p: &Spanned<String>, report: Report<'_>) -> String {
    let text = p.get_ref().trim();
    if !text.starts_with('/') {
        report(p.span(), format!("path pattern {text:?} must start with /"));
    }
    text.to_string()
}

pub(crate) fn compile_profile(
    source: &Spanned<AppProfileSource>,
    report: Report<'_>,
) -> AppProfile {
    let s = source.get_ref();
    let mut types = Vec::new();
    for t in &s.download_content_types {
        let text = t.get_ref().trim().to_ascii_lowercase();
        if !text.contains('/') || text.contains(';') {
            report(
                t.span(),
                format!("content type {text:?}: want type/subtype without parameters"),
            );
        }
        types.push(text);
    }
    let mut seen = HashMap::new();
    let mut activities = Vec::new();
    for a in &s.activities {
        let a_ref = a.get_ref();
        let name = a_ref.name.get_ref().trim().to_string();
        if name.is_empty() || BUILT_IN_ACTIVITIES.contains(&name.as_str()) {
            report(
                a_ref.name.span(),
                format!("activity name {name:?} is empty or built in"),
            );
        } else if seen.insert(name.clone(), ()).is_some() {
            report(a_ref.name.span(), format!("duplicate activity {name:?}"));
        }
        let method = match &a_ref.method {
            Some(m) => {
                let text = m.get_ref().trim().to_ascii_uppercase();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
                    report(m.span(), format!("bad method {:?}", m.get_ref()));
                }
                text
            }
            None => String::new(),
        };
        activities.push(CustomActivity {
            name,
            method,
            path: check_path_glob(&a_ref.path, report),
            query_contains: a_ref.query_contains.clone(),
            body_contains: a_ref.body_contains.clone(),
        });
    }
    AppProfile {
        download_content_types: types,
        download_paths: s
            .download_paths
            .iter()
            .map(|p| check_path_glob(p, report))
            .collect(),
        upload_paths: s
            .upload_paths
            .iter()
            .map(|p| check_path_glob(p, report))
            .collect(),
        activities,
    }
}

/// Checks an `age` X25519 recipient.
pub fn check_recipient(text: &str) -> Result<(), String> {
    text.parse::<age::x25519::Recipient>()
        .map(|_| ())
        .map_err(|e| format!("bad age recipient {text:?}: {e}"))
}

/// Compiles `[[session_policy]]`. `activity_names` are the custom
/// activities the apps' profiles define.
pub(crate) fn compile(
    sources: &[Spanned<SessionPolicySource>],
    known: &KnownNames<'_>,
    activity_names: &[String],
    report: Report<'_>,
) -> Vec<SessionPolicy> {
    let mut out = Vec::with_capacity(sources.len());
    let mut names: HashMap<String, ()> = HashMap::new();
    for src in sources {
        let at = src.span();
        let s = src.get_ref();
        let name = s.name.get_ref().trim().to_string();
        if !name.is_empty() && names.insert(name.clone(), ()).is_some() {
            report(s.name.span(), format!("duplicate session_policy {name:?}"));
        }
        let filters = filters_of(s, known, report);
        let control = Control::parse(s.control.get_ref()).unwrap_or_else(|| {
            report(
                s.control.span(),
                format!(
                    "unknown control {:?} (monitor, control_download, control_upload, block_activities)",
                    s.control.get_ref()
                ),
            );
            Control::Monitor
        });
        let action = match &s.action {
            None if matches!(control, Control::Monitor) => SessionAction::Audit,
            None if control == Control::Activities => SessionAction::Block,
            None => {
                report(
                    at.clone(),
                    format!("session_policy {name:?} needs an action (audit, block or protect)"),
                );
                SessionAction::Audit
            }
            Some(a) => {
                let parsed = SessionAction::parse(a.get_ref()).unwrap_or_else(|| {
                    report(
                        a.span(),
                        format!("unknown action {:?} (audit, block or protect)", a.get_ref()),
                    );
                    SessionAction::Audit
                });
                if control == Control::Monitor {
                    report(a.span(), "a monitor policy takes no action: it logs".into());
                }
                if parsed == SessionAction::Protect && control != Control::Download {
                    report(
                        a.span(),
                        "protect applies to downloads only (control_download)".into(),
                    );
                }
                parsed
            }
        };
        let mut activities = Vec::new();
        for a in &s.activities {
            let text = a.get_ref().trim();
            if control != Control::Activities {
                report(
                    a.span(),
                    "activities: only block_activities policies list activities".into(),
                );
            } else if !BUILT_IN_ACTIVITIES.contains(&text)
                && !activity_names.iter().any(|n| n == text)
            {
                report(
                    a.span(),
                    format!("no app profile defines activity {text:?}"),
                );
            }
            activities.push(text.to_string());
        }
        if control == Control::Activities && activities.is_empty() {
            report(
                at.clone(),
                format!("session_policy {name:?}: block_activities needs activities"),
            );
        }
        let file = compile_file_filter(s, report);
        let file_control = matches!(control, Control::Download | Control::Upload);
        if !file_control && (!file.is_empty() || s.inspect.is_some()) {
            report(
                at.clone(),
                format!("session_policy {name:?}: file filters and inspect need control_download or control_upload"),
            );
        }
        let inspection = s.inspect.as_ref().map(|i| compile_inspection(i, report));
        let mut recipients = Vec::new();
        for r in &s.recipients {
            if let Err(e) = check_recipient(r.get_ref().trim()) {
                report(r.span(), e);
            }
            recipients.push(r.get_ref().trim().to_string());
        }
        if action == SessionAction::Protect && recipients.is_empty() {
            report(
                at.clone(),
                format!("session_policy {name:?}: protect needs recipients (age1…)"),
            );
        }
        let alert_severity = match &s.alert {
            None => String::new(),
            Some(a) => {
                let sev = a.get_ref().severity.get_ref().to_ascii_lowercase();
                if !SEVERITIES.contains(&sev.as_str()) {
                    report(
                        a.get_ref().severity.span(),
                        format!("unknown severity {sev:?} (low, medium, high)"),
                    );
                }
                sev
            }
        };
        out.push(SessionPolicy {
            filters,
            control,
            activities,
            file,
            inspection,
            action,
            message: s.message.trim().to_string(),
            recipients,
            alert_severity,
            notice: s.notice.unwrap_or(true),
        });
    }
    out
}

/// The who/where filters, checked by the access compiler.
fn filters_of(s: &SessionPolicySource, known: &KnownNames<'_>, report: Report<'_>) -> AccessPolicy {
    let as_access = AccessPolicySource {
        name: s.name.clone(),
        apps: s.apps.clone(),
        users: s.users.clone(),
        groups: s.groups.clone(),
        ip_tags: s.ip_tags.clone(),
        not_ip_tags: s.not_ip_tags.clone(),
        ip_ranges: s.ip_ranges.clone(),
        locations: s.locations.clone(),
        not_locations: s.not_locations.clone(),
        devices: s.devices.clone(),
        client_apps: s.client_apps.clone(),
        user_agent_contains: s.user_agent_contains.clone(),
        user_agent_regex: s.user_agent_regex.clone(),
        action: Spanned::new(s.name.span(), "allow".to_string()),
        message: String::new(),
        alert: None,
    };
    let mut rename = |span: Range<usize>, message: String| {
        report(span, message.replace("access_policy", "session_policy"))
    };
    crate::access::compile_access_policies(
        std::slice::from_ref(&Spanned::new(0..0, as_access)),
        known,
        &mut rename,
    )
    .pop()
    .unwrap_or_default()
}

fn compile_file_filter(s: &SessionPolicySource, report: Report<'_>) -> FileFilter {
    let mut types = Vec::new();
    for t in &s.file_types {
        let text = t.get_ref().trim().to_ascii_lowercase();
        if !FILE_TYPES.contains(&text.as_str()) {
            report(
                t.span(),
                format!(
                    "unknown file type {text:?} (one of {})",
                    FILE_TYPES.join(", ")
                ),
            );
        }
        types.push(text);
    }
    let mut extensions = Vec::new();
    for e in &s.extensions {
        let text = e
            .get_ref()
            .trim()
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if text.is_empty() || text.contains(['/', '.', '*']) {
            report(e.span(), format!("bad extension {:?}", e.get_ref()));
        }
        extensions.push(text);
    }
    let (min_size, max_size) = (s.min_size.unwrap_or(0), s.max_size.unwrap_or(0));
    if max_size != 0 && max_size < min_size {
        report(s.name.span(), "max_size is below min_size".into());
    }
    let non_empty = |list: &[Spanned<String>], what: &str, report: Report<'_>| -> Vec<String> {
        list.iter()
            .map(|v| {
                if v.get_ref().trim().is_empty() {
                    report(v.span(), format!("empty {what}"));
                }
                v.get_ref().trim().to_string()
            })
            .collect()
    };
    FileFilter {
        names: non_empty(&s.file_names, "file name pattern", report),
        extensions,
        types,
        min_size,
        max_size,
        labels: non_empty(&s.labels, "label", report),
    }
}

fn compile_inspection(source: &Spanned<InspectSource>, report: Report<'_>) -> Inspection {
    let s = source.get_ref();
    let mut detectors = Vec::new();
    for d in &s.detectors {
        let (name, min) = match d {
            DetectorSource::Name(n) => (n, 1),
            DetectorSource::WithCount { name, min_matches } => (name, *min_matches),
        };
        let text = name.trim().to_ascii_lowercase();
        if !DETECTORS.contains(&text.as_str()) {
            report(
                source.span(),
                format!(
                    "unknown detector {text:?} (one of {})",
                    DETECTORS.join(", ")
                ),
            );
        }
        if min == 0 {
            report(
                source.span(),
                format!("detector {text:?}: min_matches must be at least 1"),
            );
        }
        detectors.push((text, min.max(1)));
    }
    for k in &s.keywords {
        if k.get_ref().is_empty() {
            report(k.span(), "empty keyword".into());
        }
    }
    let mut regexes = Vec::new();
    for r in &s.regexes {
        // The size limit keeps a hostile policy from costing the data plane
        // a huge automaton per core.
        match regex::bytes::RegexBuilder::new(r.get_ref())
            .size_limit(1 << 20)
            .build()
        {
            Ok(_) => regexes.push(r.get_ref().clone()),
            Err(e) => report(r.span(), format!("bad regex: {e}")),
        }
    }
    if detectors.is_empty() && s.keywords.is_empty() && regexes.is_empty() && s.regexes.is_empty() {
        report(
            source.span(),
            "inspect needs detectors, keywords or regexes".into(),
        );
    }
    let max_bytes = match &s.max_bytes {
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > MAX_MAX_BYTES => {
            report(m.span(), format!("max_bytes must be 1..={MAX_MAX_BYTES}"));
            DEFAULT_MAX_BYTES
        }
        Some(m) => *m.get_ref(),
        None => DEFAULT_MAX_BYTES,
    };
    let fail_closed = match &s.on_uninspectable {
        None => true,
        Some(v) => match v.get_ref().as_str() {
            "apply" => true,
            "allow" => false,
            other => {
                report(
                    v.span(),
                    format!("on_uninspectable {other:?}: apply (fail closed) or allow (fail open)"),
                );
                true
            }
        },
    };
    Inspection {
        detectors,
        keywords: s.keywords.iter().map(|k| k.get_ref().clone()).collect(),
        regexes,
        min_matches: s.min_matches.unwrap_or(1).max(1),
        max_bytes,
        max_chars: s.max_chars.unwrap_or(DEFAULT_MAX_CHARS).max(1),
        fail_closed,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_matches;
    use crate::policy::{compile_source, CompileOptions};

    const FULL: &str = r#"
[proxy]
suffix = "p.test"
[[app]]
name = "box"
domains = ["box.test"]
[app.profile]
download_content_types = ["application/pdf"]
download_paths = ["/export/*"]
upload_paths = ["/api/files/*"]
[[app.profile.activity]]
name = "share"
method = "post"
path = "/api/*/share"
query_contains = "a=1"
body_contains = "invitees"
[[location]]
name = "office"
ranges = ["10.0.0.0/8"]
[monitoring_notice]
message = "Watched."
[[session_policy]]
name = "everything"
control = "control_download"
apps = ["box"]
users = ["alice"]
groups = ["eng"]
not_locations = ["office"]
devices = ["unmanaged"]
client_apps = ["browser"]
user_agent_regex = "Chrome"
file_names = ["*.docx"]
extensions = [".DOCX", "xlsx"]
file_types = ["ooxml", "pdf"]
min_size = 10
max_size = 1000000
labels = ["Confidential"]
action = "protect"
message = "Protected."
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
alert = { severity = "high" }
notice = false
[session_policy.inspect]
detectors = ["credit_card", { name = "ssn", min_matches = 3 }]
keywords = ["falcon"]
regexes = ["T-[0-9]+"]
min_matches = 2
max_bytes = 1000
max_chars = 500
on_uninspectable = "allow"
[[session_policy]]
name = "no sharing"
control = "block_activities"
activities = ["share"]
"#;

    #[test]
    fn every_session_field_survives_a_snapshot() {
        let p = compile_source(
            "t.toml",
            FULL,
            std::path::Path::new("."),
            &CompileOptions::default(),
        )
        .expect("compiles");
        assert_eq!(p.session_policies.len(), 2);
        let s = &p.session_policies[0];
        assert_eq!(s.file.extensions, ["docx", "xlsx"]);
        assert_eq!(
            s.inspection.as_ref().map(|i| i.detectors.clone()),
            Some(vec![("credit_card".into(), 1), ("ssn".into(), 3)])
        );
        assert!(!s.notice && !s.inspection.as_ref().is_some_and(|i| i.fail_closed));
        assert_eq!(p.apps[0].profile.activities[0].method, "POST");
        // The alert is raised by controld on the policy's activity records.
        assert!(p
            .activity_policies
            .iter()
            .any(|a| a.policies == ["everything"] && a.kinds == ["activity"]));
        let back = crate::snapshot::decode(&crate::snapshot::encode(&p)).expect("decodes");
        assert_eq!(back.session_policies, p.session_policies);
        assert_eq!(back.apps[0].profile, p.apps[0].profile);
        assert_eq!(back.monitoring_notice, "Watched.");
    }

    #[test]
    fn globs_match_like_a_shell() {
        for (p, t, want) in [
            ("*.docx", "Report.DOCX", true),
            ("*.docx", "report.docx.exe", false),
            ("/api/*/share", "/api/42/share", true),
            ("/api/*/share", "/api/42/shared", false),
            ("a?c", "abc", true),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "x", false),
        ] {
            assert_eq!(
                glob_matches(p.as_bytes(), t.as_bytes(), true),
                want,
                "{p} vs {t}"
            );
        }
    }
}
