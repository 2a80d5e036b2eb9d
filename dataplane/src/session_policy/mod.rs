//! Session control, compiled per core from a snapshot: which session
//! policies apply to a request (their who/where filters are compiled into
//! the access table and matched with the same subject), what a file is
//! and whether a policy's file filters and content inspection match it,
//! which custom activity a request is, and the monitoring notice.
//!
//! Decisions are synchronous and pure over bytes already held; moving the
//! bytes (holding a download or upload, replacing or encrypting it) is in
//! [`flow`].

pub mod detect;
pub mod file;
pub mod flow;

use std::borrow::Cow;
use std::rc::Rc;

use palisade_schema::policy::Policy;
use palisade_schema::session::{
    glob_matches, Control, FileFilter, Inspection, SessionAction, DEFAULT_MAX_BYTES,
};

use crate::identity::seal::Sealer;
use file::{Examined, Uninspectable};

pub use crate::identity::NOTICE_COOKIE;
/// Where the notice's continue button goes.
pub const NOTICE_PATH: &str = "/.palisade/notice";

/// The session policies matching a request, in policy order: up to 16
/// inline (no allocation per request), more spill to the heap.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    inline: [u32; 16],
    len: usize,
    spill: Vec<u32>,
}

impl RuleSet {
    pub fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }

    pub fn push(&mut self, rule: u32) {
        if self.spill.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = rule;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.push(rule);
        }
    }
}

impl std::ops::Deref for RuleSet {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

/// A policy's content inspection, ready to run.
pub struct Inspector {
    detectors: Vec<(String, u32)>,
    keywords: Option<aho_corasick::AhoCorasick>,
    keyword_count: usize,
    regexes: Vec<regex::bytes::Regex>,
    min_matches: u32,
    pub max_bytes: u64,
    max_chars: u64,
    fail_closed: bool,
}

/// Why a session policy cannot be compiled for serving (the compiler
/// checked the same; a snapshot from another build may still fail here).
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionPolicyError {
    Keywords {
        policy: String,
        error: aho_corasick::BuildError,
    },
    Regex {
        policy: String,
        pattern: String,
        error: regex::Error,
    },
    Recipient {
        policy: String,
        reason: String,
    },
}

impl std::fmt::Display for SessionPolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionPolicyError::Keywords { policy, error } => {
                write!(f, "session policy {policy:?}: keywords: {error}")
            }
            SessionPolicyError::Regex {
                policy,
                pattern,
                error,
            } => write!(f, "session policy {policy:?}: regex {pattern:?}: {error}"),
            SessionPolicyError::Recipient { policy, reason } => {
                write!(f, "session policy {policy:?}: recipient: {reason}")
            }
        }
    }
}

impl std::error::Error for SessionPolicyError {}

impl Inspector {
    fn build(policy: &str, i: &Inspection) -> Result<Inspector, SessionPolicyError> {
        let keywords = if i.keywords.is_empty() {
            None
        } else {
            Some(
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&i.keywords)
                    .map_err(|error| SessionPolicyError::Keywords {
                        policy: policy.to_string(),
                        error,
                    })?,
            )
        };
        let regexes = i
            .regexes
            .iter()
            .map(|r| {
                regex::bytes::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|error| SessionPolicyError::Regex {
                        policy: policy.to_string(),
                        pattern: r.clone(),
                        error,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Inspector {
            detectors: i.detectors.clone(),
            keywords,
            keyword_count: i.keywords.len(),
            regexes,
            min_matches: i.min_matches,
            max_bytes: i.max_bytes,
            max_chars: i.max_chars,
            fail_closed: i.fail_closed,
        })
    }

    /// What in `text` matched (e.g. `credit_card=2`), or `None`.
    fn matches(&self, text: &[u8], builtin: &mut Option<detect::Counts>) -> Option<String> {
        let mut found = Vec::new();
        if !self.detectors.is_empty() {
            let counts = builtin.get_or_insert_with(|| detect::scan(text));
            for (name, min) in &self.detectors {
                let n = counts.of(name);
                if n >= *min {
                    found.push(format!("{name}={n}"));
                }
            }
        }
        if let Some(ac) = &self.keywords {
            let mut per = vec![0u32; self.keyword_count];
            for m in ac.find_iter(text) {
                per[m.pattern().as_usize()] += 1;
            }
            if let Some((i, n)) = per
                .iter()
                .enumerate()
                .find(|(_, n)| **n >= self.min_matches)
            {
                found.push(format!("keyword#{}={n}", i + 1));
            }
        }
        for (i, re) in self.regexes.iter().enumerate() {
            let n = re.find_iter(text).take(self.min_matches as usize).count() as u32;
            if n >= self.min_matches {
                found.push(format!("regex#{}={n}", i + 1));
            }
        }
        (!found.is_empty()).then(|| found.join(" "))
    }
}

/// One compiled session policy.
pub struct SessionRule {
    pub name: Rc<str>,
    pub control: Control,
    pub activities: Vec<String>,
    pub file: FileFilter,
    pub inspector: Option<Inspector>,
    pub action: SessionAction,
    pub message: String,
    pub recipients: Vec<age::x25519::Recipient>,
    pub notice: bool,
}

impl SessionRule {
    /// Needs the file's bytes (type, label, content, or size when the
    /// length is not announced).
    fn needs_content(&self, size_known: bool) -> bool {
        !self.file.types.is_empty()
            || !self.file.labels.is_empty()
            || self.inspector.is_some()
            || (!size_known && (self.file.min_size > 0 || self.file.max_size > 0))
    }

    /// The name and size filters (what the headers tell).
    fn header_filters_match(&self, name: &[u8], size: Option<u64>) -> bool {
        let f = &self.file;
        let ext = name
            .iter()
            .rposition(|b| *b == b'.')
            .map_or(&b""[..], |i| &name[i + 1..]);
        (f.names.is_empty()
            || f.names
                .iter()
                .any(|g| glob_matches(g.as_bytes(), name, true)))
            && (f.extensions.is_empty()
                || f.extensions
                    .iter()
                    .any(|e| e.as_bytes().eq_ignore_ascii_case(ext)))
            && size.is_none_or(|s| s >= f.min_size && (f.max_size == 0 || s <= f.max_size))
    }

    /// Bytes of a file held for this rule.
    fn hold_limit(&self) -> u64 {
        self.inspector
            .as_ref()
            .map_or(DEFAULT_MAX_BYTES, |i| i.max_bytes)
    }
}

/// All session policies of a snapshot, in policy order (the access table
/// holds their filters under the same indices).
pub struct SessionPolicies {
    pub rules: Vec<SessionRule>,
    pub notice_text: String,
    notice_sealer: Sealer,
}

/// One file as the proxy sees it.
pub struct FileFacts<'a> {
    pub name: &'a [u8],
    /// Announced or counted length.
    pub size: Option<u64>,
    /// The whole file, when it was held.
    pub content: Option<&'a [u8]>,
    /// Why the content is missing or cannot be read.
    pub uninspectable: Option<Uninspectable>,
}

/// The outcome for one file.
#[derive(Debug, Default, Clone)]
pub struct FileVerdict {
    /// `None`: no policy matched.
    pub action: Option<SessionAction>,
    pub rule: Option<u32>,
    /// What was found: type, label, matches, why not inspected.
    pub detail: String,
}

/// A process-wide key for notice cookies when the policy has no session
/// keys: the same on every core, new on every start.
fn process_notice_key() -> [u8; 32] {
    use std::sync::OnceLock;
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut k = [0u8; 32];
        let _ = ring::rand::SystemRandom::new().fill(&mut k);
        k
    })
}

impl SessionPolicies {
    pub fn build(policy: &Policy) -> Result<SessionPolicies, SessionPolicyError> {
        let mut rules = Vec::with_capacity(policy.session_policies.len());
        for p in &policy.session_policies {
            let inspector = p
                .inspection
                .as_ref()
                .map(|i| Inspector::build(p.name(), i))
                .transpose()?;
            let recipients = p
                .recipients
                .iter()
                .map(|r| r.parse::<age::x25519::Recipient>())
                .collect::<Result<_, _>>()
                .map_err(|e| SessionPolicyError::Recipient {
                    policy: p.name().to_string(),
                    reason: e.to_string(),
                })?;
            rules.push(SessionRule {
                name: p.name().into(),
                control: p.control,
                activities: p.activities.clone(),
                file: p.file.clone(),
                inspector,
                action: p.action,
                message: p.message.clone(),
                recipients,
                notice: p.notice,
            });
        }
        let keys = if policy.identity.session_keys.is_empty() {
            vec![palisade_schema::access::SessionKey {
                id: "n".into(),
                key: process_notice_key(),
            }]
        } else {
            policy.identity.session_keys.clone()
        };
        Ok(SessionPolicies {
            rules,
            notice_text: policy.monitoring_notice.clone(),
            notice_sealer: Sealer::new(&keys),
        })
    }

    pub fn empty() -> SessionPolicies {
        SessionPolicies {
            rules: Vec::new(),
            notice_text: String::new(),
            notice_sealer: Sealer::new(&[]),
        }
    }

    pub fn rule(&self, i: u32) -> &SessionRule {
        &self.rules[i as usize]
    }

    /// Whether any of `matched` rules controls `control`.
    pub fn controls(&self, matched: &[u32], control: Control) -> bool {
        matched.iter().any(|&i| self.rule(i).control == control)
    }

    /// The first matching monitor rule (activities are logged under it).
    pub fn monitor_rule(&self, matched: &[u32]) -> Option<u32> {
        matched
            .iter()
            .copied()
            .find(|&i| self.rule(i).control == Control::Monitor)
    }

    /// The rule blocking activity `name`, if any.
    pub fn blocking_activity(&self, matched: &[u32], name: &str) -> Option<u32> {
        matched.iter().copied().find(|&i| {
            let r = self.rule(i);
            r.control == Control::Activities && r.activities.iter().any(|a| a == name)
        })
    }

    /// Whether `matched` wants the monitoring notice.
    pub fn wants_notice(&self, matched: &[u32]) -> bool {
        matched.iter().any(|&i| self.rule(i).notice)
    }

    /// How many bytes of a file to hold so every candidate rule of
    /// `control` can decide; `None`: no rule can match from what the
    /// headers say, or none needs the bytes (decide without holding).
    pub fn hold_limit(
        &self,
        matched: &[u32],
        control: Control,
        name: &[u8],
        size: Option<u64>,
    ) -> Option<u64> {
        matched
            .iter()
            .map(|&i| self.rule(i))
            .filter(|r| r.control == control && r.header_filters_match(name, size))
            .filter(|r| r.needs_content(size.is_some()))
            .map(SessionRule::hold_limit)
            .max()
    }

    /// Whether any rule of `control` may match a file with this name and
    /// size (before looking at its bytes).
    pub fn may_match(
        &self,
        matched: &[u32],
        control: Control,
        name: &[u8],
        size: Option<u64>,
    ) -> bool {
        matched
            .iter()
            .map(|&i| self.rule(i))
            .any(|r| r.control == control && r.header_filters_match(name, size))
    }

    /// The most restrictive matching rule of `control` for one file
    /// (equal actions: the first in policy order).
    pub fn decide_file(&self, matched: &[u32], control: Control, f: &FileFacts<'_>) -> FileVerdict {
        let mut examined: Option<Examined> = None;
        let mut text: Option<Result<Option<Cow<'_, [u8]>>, Uninspectable>> = None;
        let mut builtin: Option<detect::Counts> = None;
        let mut verdict = FileVerdict::default();
        let mut notes: Vec<String> = Vec::new();
        let size = f.size.or(f.content.map(|c| c.len() as u64));
        for &i in matched {
            let r = self.rule(i);
            if r.control != control || !r.header_filters_match(f.name, size) {
                continue;
            }
            if let Some((e, content)) = f.content.map(|c| {
                (
                    examined.get_or_insert_with(|| file::examine(c, r.hold_limit())),
                    c,
                )
            }) {
                let t = e.file_type.unwrap_or(file::FileType::Unknown);
                if !r.file.types.is_empty() && !r.file.types.iter().any(|n| t.is(n)) {
                    continue;
                }
                if !r.file.labels.is_empty()
                    && !e
                        .label
                        .as_ref()
                        .is_some_and(|l| r.file.labels.iter().any(|w| w.eq_ignore_ascii_case(l)))
                {
                    continue;
                }
                if let Some(ins) = &r.inspector {
                    let t = text.get_or_insert_with(|| match f.uninspectable {
                        Some(u) => Err(u),
                        None => file::inspectable_text(content, e, ins.max_bytes),
                    });
                    let result = match t {
                        Err(u) => Err(*u),
                        // This policy's own byte limit (the text may have
                        // been read under another's).
                        Ok(_) if content.len() as u64 > ins.max_bytes => Err(Uninspectable::TooBig),
                        Ok(None) => Ok(None),
                        Ok(Some(text)) if text.len() as u64 > ins.max_chars => {
                            Err(Uninspectable::TooManyCharacters)
                        }
                        Ok(Some(text)) => Ok(ins.matches(text, &mut builtin)),
                    };
                    match result {
                        Ok(Some(found)) => notes.push(found),
                        Ok(None) => continue,
                        Err(u) => {
                            notes.push(format!("not inspected: {}", u.as_str()));
                            if !ins.fail_closed {
                                continue;
                            }
                        }
                    }
                }
            } else if r.needs_content(size.is_some()) {
                // The bytes were not held (too big): type and label are
                // unknown, inspection failed.
                let why = f.uninspectable.unwrap_or(Uninspectable::TooBig);
                notes.push(format!("not inspected: {}", why.as_str()));
                let closed = r.inspector.as_ref().is_some_and(|i| i.fail_closed);
                if !closed {
                    continue;
                }
            }
            if verdict.action.is_none_or(|a| r.action > a) {
                verdict.action = Some(r.action);
                verdict.rule = Some(i);
            }
        }
        let mut detail = Vec::new();
        if let Some(e) = &examined {
            if let Some(t) = e.file_type {
                detail.push(format!("type={}", t.as_str()));
            }
            if let Some(l) = &e.label {
                detail.push(format!("label={l}"));
            }
        }
        notes.dedup();
        detail.extend(notes);
        verdict.detail = detail.join(" ");
        verdict
    }

    /// The notice cookie value for `binding` (the session) under `app`.
    pub fn seal_notice(&self, app: &str, binding: &str) -> Option<String> {
        self.notice_sealer
            .seal(binding.as_bytes(), format!("notice:{app}").as_bytes())
    }

    /// True when `cookie` acknowledges the notice for this session.
    pub fn notice_acknowledged(&self, app: &str, binding: &str, cookie: &[u8]) -> bool {
        self.notice_sealer
            .open(cookie, format!("notice:{app}").as_bytes())
            .is_some_and(|b| b == binding.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::RuleSet;

    #[test]
    fn rule_sets_spill_past_sixteen_in_order() {
        let mut r = RuleSet::default();
        for i in 0..40 {
            r.push(i);
            assert_eq!(&r[..], (0..=i).collect::<Vec<_>>().as_slice());
        }
        r.clear();
        assert!(r.is_empty());
        r.push(7);
        assert_eq!(&r[..], &[7]);
    }

    mod file_decision {
        use super::super::{FileFacts, SessionPolicies, Uninspectable};
        use palisade_schema::session::{Control, SessionAction};

        const POLICY: &str = include_str!("../../testdata/session_files.toml");

        fn policies() -> SessionPolicies {
            SessionPolicies::build(&crate::testing::policy(POLICY)).expect("builds")
        }

        #[test]
        fn the_most_restrictive_matching_rule_decides_each_file() {
            let p = policies();
            let every_rule: Vec<u32> = (0..p.rules.len() as u32).collect();
            let cases = include_str!("../../testdata/session_files_cases.txt");
            for row in crate::testing::rows(cases) {
                let f: Vec<&str> = row.split('|').map(str::trim).collect();
                let given = |i: usize| (f[i] != "-").then_some(f[i]);
                let content = given(3).map(|c| match c {
                    "MZ-header" => b"MZ\x90\x00\x03\x00\x00\x00".to_vec(),
                    text => text.as_bytes().to_vec(),
                });
                let facts = FileFacts {
                    name: f[1].as_bytes(),
                    size: given(2).map(|n| n.parse().unwrap()),
                    content: content.as_deref(),
                    uninspectable: given(4).map(|u| match u {
                        "encrypted" => Uninspectable::Encrypted,
                        other => panic!("{other}"),
                    }),
                };
                let control = if f[0] == "down" {
                    Control::Download
                } else {
                    Control::Upload
                };
                let v = p.decide_file(&every_rule, control, &facts);
                let action = v.action.map(|a| match a {
                    SessionAction::Audit => "audit",
                    SessionAction::Protect => "protect",
                    SessionAction::Block => "block",
                });
                assert_eq!(action, given(5), "{row}: {v:?}");
                assert_eq!(v.rule.map(|r| p.rule(r).name.as_ref()), given(6), "{row}");
                assert!(v.detail.contains(f[7]), "{row}: {:?}", v.detail);
            }
        }

        #[test]
        fn only_the_matched_rules_are_considered() {
            let p = policies();
            let facts = FileFacts {
                name: b"report.csv",
                size: Some(5000),
                content: None,
                uninspectable: None,
            };
            // The access table matched only "audit-big" for this user.
            let v = p.decide_file(&[1], Control::Download, &facts);
            assert_eq!(v.action, Some(SessionAction::Audit));
            assert_eq!(p.decide_file(&[], Control::Download, &facts).action, None);
        }
    }
}
