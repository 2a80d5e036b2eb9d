//! The streaming rewrite engine against a naive oracle: random documents
//! mixing app hosts, near misses and every URL encoding, split at random
//! points (one byte at a time included), must come out exactly as the
//! oracle rewrites the whole document.
//!
//! The oracle walks the document byte by byte and tries every encoded
//! `//` literally: slow, short and independent of the engine's SIMD
//! scanner, windows and carry-over.

use palisade_dataplane::body::FilterOutput;
use palisade_dataplane::fuzz::{fuzz_routes, rewrite_split_invariance};
use palisade_dataplane::rewrite::{inject, rewrite_all, Rewriter};
use proptest::prelude::*;

const SUFFIX: &str = "proxy.test";
/// The app domains of `fuzz_routes()`.
const DOMAINS: &[&str] = &["demo.test", "demo-cdn.test"];

/// Each family's ways of writing `/`, and of writing `:` before `//`.
const FAMILIES: &[(&[&str], &[&str])] = &[
    (&["/"], &[":"]),
    (&["\\/"], &[":"]),
    (&["\\u002f"], &[":", "\\u003a"]),
    (&["\\x2f"], &[":", "\\x3a"]),
    (&["%2f"], &["%3a"]),
    (&["%252f"], &["%253a"]),
    (
        &["&#x2f;", "&#47;", "&sol;"],
        &[":", "&#x3a;", "&#58;", "&colon;"],
    ),
];

fn starts_ic(doc: &[u8], at: usize, pat: &str) -> bool {
    doc.len() >= at + pat.len() && doc[at..at + pat.len()].eq_ignore_ascii_case(pat.as_bytes())
}

fn ends_ic(doc: &[u8], end: usize, pat: &str) -> bool {
    end >= pat.len() && doc[end - pat.len()..end].eq_ignore_ascii_case(pat.as_bytes())
}

fn is_app_host(host: &[u8]) -> bool {
    let h = String::from_utf8_lossy(host).to_ascii_lowercase();
    DOMAINS
        .iter()
        .any(|d| h == *d || h.ends_with(&format!(".{d}")))
}

fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// If an app URL authority starts at `i`, the end of its host.
fn oracle_url_at(doc: &[u8], i: usize) -> Option<usize> {
    for (slashes, colons) in FAMILIES {
        for first in *slashes {
            if !starts_ic(doc, i, first) {
                continue;
            }
            for second in *slashes {
                if !starts_ic(doc, i + first.len(), second) {
                    continue;
                }
                let authority = i + first.len() + second.len();
                // Position: scheme + colon, or a delimiter, or the start.
                let mut positioned = false;
                let mut had_colon = false;
                for colon in *colons {
                    if ends_ic(doc, i, colon) {
                        had_colon = true;
                        let scheme_end = i - colon.len();
                        let mut s = scheme_end;
                        while s > 0
                            && (doc[s - 1].is_ascii_alphanumeric()
                                || matches!(doc[s - 1], b'+' | b'-' | b'.'))
                        {
                            s -= 1;
                        }
                        let scheme = String::from_utf8_lossy(&doc[s..scheme_end]).to_lowercase();
                        positioned = ["http", "https", "ws", "wss"].contains(&scheme.as_str());
                        break;
                    }
                }
                if !had_colon {
                    positioned = i == 0 || b" \t\r\n\x0c\"'`=(,;<>[{".contains(&doc[i - 1]);
                }
                if !positioned {
                    return None;
                }
                let mut host_start = authority;
                let mut k = authority;
                while k < doc.len()
                    && k - authority <= 128
                    && (doc[k].is_ascii_alphanumeric() || b"-._~%!$*+=:".contains(&doc[k]))
                {
                    k += 1;
                }
                if k - authority <= 128 && doc.get(k) == Some(&b'@') {
                    host_start = k + 1;
                }
                let mut end = host_start;
                while end < doc.len() && host_byte(doc[end]) {
                    end += 1;
                }
                if doc.get(end) == Some(&b'@') || end - host_start > 254 {
                    return None;
                }
                while end > host_start && doc[end - 1] == b'.' {
                    end -= 1;
                }
                let host = &doc[host_start..end];
                if host.is_empty() || host[0] == b'.' || !is_app_host(host) {
                    return None;
                }
                return Some(end);
            }
        }
    }
    None
}

/// If ` integrity=...` (HTML) starts at `i`, where it ends.
fn oracle_integrity_at(doc: &[u8], i: usize) -> Option<usize> {
    if !b" \t\n\r\x0c".contains(doc.get(i)?) || !starts_ic(doc, i + 1, "integrity=") {
        return None;
    }
    let v = i + 11;
    match doc.get(v) {
        Some(&q) if q == b'"' || q == b'\'' => {
            let close = doc[v + 1..].iter().position(|&b| b == q)?;
            (close < 1024).then_some(v + 1 + close + 1)
        }
        _ => {
            let mut e = v;
            while e < doc.len() && !b" \t\n\r\x0c>".contains(&doc[e]) && e - v < 1024 {
                e += 1;
            }
            Some(e)
        }
    }
}

/// The bare-host context patterns of `fuzz_routes()`.
const CONTEXTS: &[&str] = &["\"domain\":\"", "document.domain = \"", "host="];

/// If a context pattern starts at `i` and an app host follows it, the end
/// of that host.
fn oracle_bare_host_at(doc: &[u8], i: usize) -> Option<usize> {
    let pattern = CONTEXTS
        .iter()
        .find(|p| doc[i..].starts_with(p.as_bytes()))?;
    let start = i + pattern.len();
    let mut end = start;
    while end < doc.len() && host_byte(doc[end]) {
        end += 1;
    }
    if doc.get(end) == Some(&b'@') || end - start > 254 {
        return None;
    }
    while end > start && doc[end - 1] == b'.' {
        end -= 1;
    }
    let host = &doc[start..end];
    (!host.is_empty() && host[0] != b'.' && is_app_host(host)).then_some(end)
}

fn oracle(doc: &[u8], html: bool) -> Vec<u8> {
    oracle_with(doc, html, false)
}

fn oracle_with(doc: &[u8], html: bool, contexts: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < doc.len() {
        let found = oracle_url_at(doc, i)
            .or_else(|| contexts.then(|| oracle_bare_host_at(doc, i)).flatten());
        if let Some(end) = found {
            out.extend_from_slice(&doc[i..end]);
            out.push(b'.');
            out.extend_from_slice(SUFFIX.as_bytes());
            i = end;
            continue;
        }
        if html {
            if let Some(end) = oracle_integrity_at(doc, i) {
                i = end;
                continue;
            }
        }
        out.push(doc[i]);
        i += 1;
    }
    out
}

fn rewrite_split(doc: &[u8], html: bool, cuts: &[usize]) -> Vec<u8> {
    let routes = fuzz_routes();
    let mut out = Vec::new();
    let mut r = Rewriter::new(&routes.hosts, html);
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts {
        r.feed(&doc[at..c.max(at)], &mut out);
        at = c.max(at);
    }
    r.feed(&doc[at..], &mut out);
    r.finish(&mut out);
    out
}

fn one_byte_at_a_time(doc: &[u8], html: bool) -> Vec<u8> {
    let cuts: Vec<usize> = (1..doc.len()).collect();
    rewrite_split(doc, html, &cuts)
}

/// Pieces random documents are made of.
fn token() -> impl Strategy<Value = String> {
    let hosts = prop_oneof![
        Just("demo.test"),
        Just("Demo.TEST"),
        Just("a.b.demo.test"),
        Just("cdn.demo-cdn.test"),
        Just("notdemo.test"),
        Just("demo.testing"),
        Just("demo.test.evil.net"),
        Just("demo.test.proxy.test"),
        Just("other.net"),
        Just("u:p@demo.test"),
        Just("demo.test:8443"),
        Just("demo.test."),
    ];
    let prefixes = prop_oneof![
        Just("https://"),
        Just("HTTP://"),
        Just("ws://"),
        Just("wss://"),
        Just("ftp://"),
        Just("//"),
        Just("https:\\/\\/"),
        Just("\\/\\/"),
        Just("https\\u003a\\u002F\\u002F"),
        Just("https:\\u002f\\u002f"),
        Just("http:\\x2F\\x2F"),
        Just("https%3A%2F%2F"),
        Just("https%3a%2f%2f"),
        Just("%2F%2F"),
        Just("https%253A%252F%252F"),
        Just("https:&#x2F;&#x2F;"),
        Just("https&colon;&#47;&#47;"),
        Just("&sol;&sol;"),
        Just("blob:https://"),
        Just("xhttps://"),
        Just("/\\/"),
    ];
    let filler = prop_oneof![
        Just(" "),
        Just("\""),
        Just("'"),
        Just("="),
        Just("/"),
        Just("\\"),
        Just("%"),
        Just("&"),
        Just(";"),
        Just("f"),
        Just("F"),
        Just("y="),
        Just(" integrity=\"sha384-abc\""),
        Just(" integrity=x"),
        Just("<meta "),
        Just("\"domain\":\""),
        Just("document.domain = \""),
        Just("host="),
        Just("host=demo.test"),
        Just("mail demo.test@x"),
        Just("a"),
        Just("\n"),
        Just("@"),
        Just("("),
        Just("."),
        // Bytes that `| 0x20` would fold into `/`, `;` and `<`.
        Just("\x0f"),
        Just("\x1b"),
        Just("\x1cmeta "),
    ];
    prop_oneof![
        3 => (prefixes, hosts).prop_map(|(p, h)| format!("{p}{h}")),
        2 => filler.prop_map(str::to_string),
        1 => "[a-z/:.%&;#\\\\]{1,6}",
    ]
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(token(), 0..40).prop_map(|t| t.concat().into_bytes())
}

/// Longer documents: most candidates then have the whole look-ahead of
/// the plain `//` fast path in the same piece.
fn long_document() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(token(), 40..200).prop_map(|t| t.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_oracle_for_any_split(
        doc in document(),
        html in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let want = oracle(&doc, html);
        let routes = fuzz_routes();
        let whole = rewrite_all(&routes.hosts, html, &doc);
        prop_assert_eq!(
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&want),
            "whole document"
        );
        prop_assert_eq!(&rewrite_split(&doc, html, &cuts), &want, "random split");
    }

    #[test]
    fn bare_host_contexts_match_the_oracle_for_any_split(
        doc in document(),
        html in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let routes = fuzz_routes();
        let contexts = routes.apps[0].bare_host_contexts.as_ref();
        let want = oracle_with(&doc, html, true);
        let run = |cuts: &[usize]| {
            let mut out = Vec::new();
            let mut r = Rewriter::new(&routes.hosts, html).with_contexts(contexts);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts {
                r.feed(&doc[at..c.max(at)], &mut out);
                at = c.max(at);
            }
            r.feed(&doc[at..], &mut out);
            r.finish(&mut out);
            out
        };
        let whole = run(&[]);
        prop_assert_eq!(String::from_utf8_lossy(&whole), String::from_utf8_lossy(&want));
        prop_assert_eq!(&run(&cuts), &want);
        let every: Vec<usize> = (1..doc.len()).collect();
        prop_assert_eq!(&run(&every), &want);
    }

    #[test]
    fn one_byte_at_a_time_matches_the_oracle(doc in document(), html in any::<bool>()) {
        prop_assert_eq!(&one_byte_at_a_time(&doc, html), &oracle(&doc, html));
    }

    #[test]
    fn long_documents_match_the_oracle_for_any_split(
        doc in long_document(),
        html in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let want = oracle(&doc, html);
        prop_assert_eq!(&rewrite_split(&doc, html, &[]), &want, "whole document");
        prop_assert_eq!(&rewrite_split(&doc, html, &cuts), &want, "random split");
    }

    /// The injected tag goes where the injection point says and is
    /// rewritten with the body, whatever the split; the rest of the body
    /// comes out as without injection. Output through a [`FilterOutput`],
    /// as the data plane's body relay takes it.
    #[test]
    fn injection_matches_the_oracle_for_any_split(
        head in prop_oneof![
            Just(""),
            Just("<!doctype html><html><head>"),
            Just("\u{feff}<html lang=en><HEAD >"),
            Just("<html><body>"),
            Just("'use strict';\n"),
            Just("#!/usr/bin/env node\n\"use strict\"; /* x */ "),
            Just("import x from './a.js';"),
        ],
        doc in document(),
        worker in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        const TAG: &str = "<script src=\"https://demo.test/__c.js\"></script>";
        const CLASSIC: &str = "importScripts('//demo.test/__w.js');";
        const MODULE: &str = "import '//demo.test/__m.js';";
        let doc = [head.as_bytes(), &doc].concat();
        let tag = match (worker, inject::script_injection_point(&doc, true)) {
            (false, _) => Some((TAG, inject::injection_point(&doc, true).expect("complete"))),
            (true, inject::Point::At(at)) if inject::is_module(&doc, at) => Some((MODULE, at)),
            (true, inject::Point::At(at)) => Some((CLASSIC, at)),
            (true, _) => None,
        };
        let with_tag = match tag {
            Some((tag, at)) => [&doc[..at], tag.as_bytes(), &doc[at..]].concat(),
            None => doc.clone(),
        };
        let want = oracle(&with_tag, !worker);
        let routes = fuzz_routes();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (doc.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(doc.len());
        let mut r = Rewriter::new(&routes.hosts, !worker);
        r = if worker {
            r.with_worker_injection(CLASSIC.as_bytes(), MODULE.as_bytes())
        } else {
            r.with_injection(TAG.as_bytes())
        };
        let (mut got, mut out, mut at) = (Vec::new(), FilterOutput::default(), 0);
        for c in cuts {
            let piece = &doc[at..c.max(at)];
            out.clear();
            r.feed(piece, &mut out);
            got.extend_from_slice(&out.to_vec(piece));
            at = c.max(at);
        }
        out.clear();
        r.finish(&mut out);
        got.extend_from_slice(&out.to_vec(&[]));
        prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
    }

    #[test]
    fn arbitrary_bytes_are_split_invariant(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        rewrite_split_invariance(&fuzz_routes(), &data);
    }
}

#[test]
fn long_documents_with_far_apart_anchors_match_the_oracle() {
    // Anchors separated by more than the stitch size and the look-ahead,
    // so the in-place path and carry hand-over are both exercised.
    let mut doc = Vec::new();
    for k in 0..50 {
        doc.extend(std::iter::repeat_n(b'x', 700 + k * 97));
        doc.extend_from_slice(b" \"https://demo.test/a\" https%3A%2F%2Fa.demo.test ");
    }
    let want = oracle(&doc, false);
    assert_eq!(want.len(), doc.len() + 100 * (SUFFIX.len() + 1));
    for chunk in [1, 7, 500, 1023, 1024, 1025, 4096, 65536] {
        let cuts: Vec<usize> = (1..doc.len() / chunk + 1).map(|n| n * chunk).collect();
        assert_eq!(rewrite_split(&doc, false, &cuts), want, "chunks of {chunk}");
    }
}
