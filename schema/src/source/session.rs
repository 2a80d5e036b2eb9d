//! `[[session_policy]]` and `[monitoring_notice]`: what a user may do inside
//! an app. The who/where filters are the access policies' own (same fields,
//! checks and messages, [`compile_filters`]).
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

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::access::{compile_alert, AlertSource};
use super::filters::{compile_filters, policy_source, KnownNames};
use super::report::{check_name, Report};
use crate::model::session::{
    check_recipient, Control, FileFilter, Inspection, SessionAction, SessionPolicy,
    BROWSER_ACTIVITIES, BUILT_IN_ACTIVITIES, DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS, DETECTORS,
    FILE_TYPES, MAX_MAX_BYTES,
};

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

policy_source! {
    struct SessionPolicySource {
        control: Spanned<String>,
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
pub(crate) struct InspectSource {
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
        let name = check_name(&s.name, "session_policy", &mut names, report);
        let filters = compile_filters(&s.filters(), known, report);
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
                && !BROWSER_ACTIVITIES.contains(&text)
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
        let alert_severity = compile_alert(&s.alert, report);
        out.push(SessionPolicy {
            name,
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
