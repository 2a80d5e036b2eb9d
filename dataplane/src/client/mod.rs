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
        }
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
