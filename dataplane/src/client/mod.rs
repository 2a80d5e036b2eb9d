//! The client instrumentation: one script ([`RUNTIME`], `palisade.js`)
//! that the proxy injects first in the head of every HTML document it
//! rewrites, served at [`SCRIPT_PATH`]. It translates app URLs into proxy
//! URLs at the moment the page's scripts use them (fetch, XHR, WebSocket,
//! EventSource, beacons, workers, window.open, history, script-started
//! navigations, element URL properties and attributes, markup given to
//! the parser, cookie domains), so the data responses scripts read can pass
//! through byte for byte ([`crate::rewrite::consumer`]).
//!
//! The script is built once per snapshot: its configuration (the suffix
//! and every app domain) followed by the runtime. Its URL carries the
//! snapshot version, so it is cached for good and a new policy is a new
//! URL.

use std::fmt::Write;

/// Where the script is served on every proxy host.
pub const SCRIPT_PATH: &str = "/.palisade/client.js";

/// The runtime, after its configuration.
pub const RUNTIME: &str = include_str!("palisade.js");

/// The script and the tag that loads it, for one snapshot.
pub struct Instrumentation {
    /// `const PALISADE = {…};` then the runtime.
    pub script: Vec<u8>,
    /// `<script src="/.palisade/client.js?v=N"></script>`.
    pub tag: Vec<u8>,
    /// What goes in front of a classic worker's script:
    /// `try { importScripts("/.palisade/client.js?v=N"); } catch {}` (a
    /// module worker that does not start with an import gets it too, and
    /// runs on without the translation).
    pub classic_worker: Vec<u8>,
    /// What goes in front of a module worker's script:
    /// `import "/.palisade/client.js?v=N";`.
    pub module_worker: Vec<u8>,
}

impl Instrumentation {
    /// For the proxy `suffix` and the apps' `domains` (lower case).
    pub fn new<'d>(version: u64, suffix: &str, domains: impl Iterator<Item = &'d str>) -> Self {
        let config = serde_json::json!({
            "suffix": suffix.to_ascii_lowercase(),
            "domains": domains.map(str::to_ascii_lowercase).collect::<Vec<_>>(),
        });
        let mut script = String::with_capacity(RUNTIME.len() + 256);
        let _ = writeln!(script, "const PALISADE = {config};");
        script.push_str(RUNTIME);
        Instrumentation {
            script: script.into_bytes(),
            tag: format!("<script src=\"{SCRIPT_PATH}?v={version}\"></script>").into_bytes(),
            classic_worker: format!(
                "try {{ importScripts(\"{SCRIPT_PATH}?v={version}\"); }} catch {{}}"
            )
            .into_bytes(),
            module_worker: format!("import \"{SCRIPT_PATH}?v={version}\";").into_bytes(),
        }
    }
}

/// Where the instrumentation reports a browser activity a session policy
/// controls (copy, cut, paste, print).
pub const ACTIVITY_PATH: &str = "/.palisade/activity";

/// The tag for one document: the snapshot's, with the browser activities
/// the request's session policies control (`data-controls`, JSON: name →
/// `{"block": bool, "message": …}`) when there are any.
pub fn tag_for<'a>(
    client: &'a Instrumentation,
    policies: &crate::session_policy::SessionPolicies,
    matched: &[u32],
) -> std::borrow::Cow<'a, [u8]> {
    use palisade_schema::session::{SessionAction, BROWSER_ACTIVITIES};
    let mut controls = serde_json::Map::new();
    for name in BROWSER_ACTIVITIES {
        if let Some(rule) = policies.blocking_activity(matched, name) {
            let r = policies.rule(rule);
            controls.insert(
                name.to_string(),
                serde_json::json!({"block": r.action == SessionAction::Block, "message": r.message}),
            );
        }
    }
    if controls.is_empty() {
        // The common case: the snapshot's own tag, not copied per document.
        return std::borrow::Cow::Borrowed(&client.tag);
    }
    let json = serde_json::Value::Object(controls).to_string();
    let attribute = json
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    let mut tag = client.tag.clone();
    // `<script src="…"` + ` data-controls="…"` + `></script>`
    let at = tag.len() - b"></script>".len();
    tag.splice(
        at..at,
        format!(" data-controls=\"{attribute}\"").into_bytes(),
    );
    std::borrow::Cow::Owned(tag)
}

/// Where browsers send the leak guard's violation reports.
pub const REPORT_PATH: &str = "/.palisade/csp-report";

/// The leak guard's header line for an app's documents (empty when it is
/// off): every fetch directive falls back to `default-src` (CSP Level 3
/// §6.1), which allows the proxy's hosts on any port, `data:`, `blob:`,
/// inline code and the operator's extra sources; `form-action`, which
/// does not fall back, likewise. It restricts only where requests go,
/// never what runs, so it can be enforced without breaking the app's
/// scripts.
pub fn leak_guard_header(
    suffix: &str,
    settings: &palisade_schema::policy::RewriteSettings,
) -> Vec<u8> {
    use palisade_schema::policy::LeakGuard;
    let name = match settings.leak_guard {
        LeakGuard::Report => "Content-Security-Policy-Report-Only",
        LeakGuard::Enforce => "Content-Security-Policy",
        LeakGuard::Off => return Vec::new(),
    };
    let suffix = suffix.to_ascii_lowercase();
    let mut sources = format!(
        "'self' https://*.{suffix}:* wss://*.{suffix}:* http://*.{suffix}:* ws://*.{suffix}:* data: blob:"
    );
    for extra in &settings.leak_allow {
        sources.push(' ');
        sources.push_str(extra);
    }
    format!(
        "{name}: default-src {sources} 'unsafe-inline' 'unsafe-eval'; form-action {sources}; report-uri {REPORT_PATH}\r\n"
    )
    .into_bytes()
}

/// One violation a browser reported: what was blocked (or would have
/// been), from which page, under which directive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Violation {
    pub blocked: String,
    pub page: String,
    pub directive: String,
    /// The policy was enforced (else report-only).
    pub enforced: bool,
}

/// Parses a violation report: the `report-uri` form (`application/csp-report`,
/// CSP Level 2 §4.4: `{"csp-report": {...}}`) or the Reporting API's list
/// (`application/reports+json`: `[{"type": "csp-violation", "body": {...}}]`).
pub fn parse_report(body: &[u8]) -> Vec<Violation> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let text = |v: &serde_json::Value, keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .unwrap_or("")
            .chars()
            .take(2048)
            .collect::<String>()
    };
    let one = |r: &serde_json::Value| Violation {
        blocked: text(r, &["blocked-uri", "blockedURL"]),
        page: text(r, &["document-uri", "documentURL"]),
        directive: text(
            r,
            &[
                "effective-directive",
                "effectiveDirective",
                "violated-directive",
            ],
        ),
        enforced: text(r, &["disposition"]) == "enforce",
    };
    match &doc {
        serde_json::Value::Object(_) => doc.get("csp-report").map(one).into_iter().collect(),
        serde_json::Value::Array(list) => list
            .iter()
            .filter(|r| r.get("type").and_then(|t| t.as_str()) == Some("csp-violation"))
            .filter_map(|r| r.get("body"))
            .take(16)
            .map(one)
            .collect(),
        _ => Vec::new(),
    }
}

/// Adds `'self'` to the directive that governs scripts in each policy of a
/// Content-Security-Policy value (`script-src-elem`, else `script-src`,
/// else `default-src`; CSP Level 3 §6.1), so the injected same-origin
/// script may run. Policies without one already allow it. A policy using
/// nonces or `'strict-dynamic'` still refuses it (a known limit).
pub fn allow_script(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut changed = false;
    let policies: Vec<String> = text
        .split(',')
        .map(|policy| {
            let directives: Vec<&str> = policy.split(';').collect();
            let name_of = |d: &str| {
                d.split_ascii_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            };
            let governing = ["script-src-elem", "script-src", "default-src"]
                .iter()
                .find_map(|want| directives.iter().position(|d| name_of(d) == *want));
            let Some(i) = governing else {
                return policy.to_string();
            };
            let allows_self = directives[i]
                .split_ascii_whitespace()
                .any(|s| s.eq_ignore_ascii_case("'self'") || s == "*");
            if allows_self {
                return policy.to_string();
            }
            changed = true;
            let mut out: Vec<String> = directives.iter().map(|d| d.to_string()).collect();
            let d = out[i].trim_end().to_string();
            out[i] = if d
                .split_ascii_whitespace()
                .any(|s| s.eq_ignore_ascii_case("'none'"))
            {
                format!("{} 'self'", d.replace("'none'", "").trim_end())
            } else {
                format!("{d} 'self'")
            };
            out.join(";")
        })
        .collect();
    changed.then(|| policies.join(",").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_configured_for_the_snapshot() {
        let i = Instrumentation::new(7, "Proxy.Test", ["saas.test", "Box.com"].into_iter());
        let text = String::from_utf8(i.script).unwrap();
        assert!(text.starts_with(
            "const PALISADE = {\"domains\":[\"saas.test\",\"box.com\"],\"suffix\":\"proxy.test\"};\n"
        ), "{text}");
        assert!(text.ends_with(RUNTIME));
        assert_eq!(i.tag, b"<script src=\"/.palisade/client.js?v=7\"></script>");
    }

    #[test]
    fn scripts_of_the_proxy_host_are_allowed_by_the_governing_directive() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "script-src https://static.a.test.p.test",
                Some("script-src https://static.a.test.p.test 'self'"),
            ),
            (
                "default-src 'none'; img-src *",
                Some("default-src 'self'; img-src *"),
            ),
            ("default-src https:; script-src 'self'", None),
            (
                "script-src 'self'; script-src-elem https://x",
                Some("script-src 'self'; script-src-elem https://x 'self'"),
            ),
            ("img-src *", None),
            ("script-src *", None),
            (
                "script-src https://a, default-src https://b",
                Some("script-src https://a 'self', default-src https://b 'self'"),
            ),
        ];
        for (value, want) in cases {
            let got = allow_script(value.as_bytes()).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), *want, "{value}");
        }
    }
}

#[cfg(test)]
mod leak_tests {
    use super::*;
    use palisade_schema::policy::{LeakGuard, RewriteSettings};

    #[test]
    fn the_leak_guard_allows_proxy_hosts_only() {
        let mut s = RewriteSettings::default();
        let line = String::from_utf8(leak_guard_header("Proxy.Test", &s)).unwrap();
        assert!(line.starts_with("Content-Security-Policy-Report-Only: default-src 'self' https://*.proxy.test:* wss://*.proxy.test:*"), "{line}");
        assert!(
            line.ends_with("report-uri /.palisade/csp-report\r\n"),
            "{line}"
        );
        s.leak_guard = LeakGuard::Enforce;
        s.leak_allow = vec!["https://cdn.example".into()];
        let line = String::from_utf8(leak_guard_header("proxy.test", &s)).unwrap();
        assert!(line.starts_with("Content-Security-Policy: "), "{line}");
        assert!(
            line.contains("blob: https://cdn.example 'unsafe-inline'"),
            "{line}"
        );
        s.leak_guard = LeakGuard::Off;
        assert!(leak_guard_header("proxy.test", &s).is_empty());
    }

    #[test]
    fn reports_of_both_formats_are_read() {
        let classic = br#"{"csp-report":{"document-uri":"https://app.a.test.p.test/x","blocked-uri":"https://evil.example/y","effective-directive":"connect-src","disposition":"report"}}"#;
        assert_eq!(
            parse_report(classic),
            vec![Violation {
                blocked: "https://evil.example/y".into(),
                page: "https://app.a.test.p.test/x".into(),
                directive: "connect-src".into(),
                enforced: false,
            }]
        );
        let api = br#"[{"type":"csp-violation","body":{"documentURL":"https://p/x","blockedURL":"https://e/y","effectiveDirective":"img-src","disposition":"enforce"}},{"type":"deprecation","body":{}}]"#;
        let got = parse_report(api);
        assert_eq!(got.len(), 1);
        assert!(got[0].enforced && got[0].blocked == "https://e/y");
        assert!(parse_report(b"not json").is_empty());
    }
}
