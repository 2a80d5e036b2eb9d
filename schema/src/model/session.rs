//! Session control in the model: session policies (what a user may do
//! inside an app) and app activity profiles (how an app's downloads, uploads
//! and custom activities look).

use super::access::Filters;

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
    pub name: String,
    /// Who and where, as in access policies.
    pub filters: Filters,
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
        &self.name
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

/// The activities the client instrumentation controls in the browser
/// (a determined user can get around it: it runs in their browser). An
/// app profile may also name a request activity so (a `print` API): a
/// policy listing the name controls both.
pub const BROWSER_ACTIVITIES: [&str; 4] = ["copy", "cut", "paste", "print"];

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

/// Checks an `age` X25519 recipient.
pub fn check_recipient(text: &str) -> Result<(), String> {
    text.parse::<age::x25519::Recipient>()
        .map(|_| ())
        .map_err(|e| format!("bad age recipient {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

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
