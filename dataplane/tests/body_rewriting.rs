//! Body rewriting through the real data plane: the golden page, script,
//! stylesheet, JSON and SVG served by a real origin, plain and compressed
//! (gzip, deflate, br, zstd), come back with every app host rewritten and
//! nothing else changed; request bodies have proxy hosts unwrapped on the
//! way to the app.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use support::*;

const H: &str = "demo.test.proxy.test";

/// (file, its type, the `Sec-Fetch-Dest` a browser sends for it). The JSON
/// is data: rewritten because the test app asks for it (`[app.rewrite]`).
const FILES: &[(&str, &str, &str)] = &[
    ("page.html", "text/html; charset=utf-8", "document"),
    ("app.js", "text/javascript", "script"),
    ("style.css", "text/css", "style"),
    ("data.json", "application/json", "empty"),
    ("image.svg", "image/svg+xml", "document"),
];

/// The test app's data responses rewritten anyway.
const REWRITE_JSON: &str = "[app.rewrite]\ndata_content_types = [\"application/json\"]\n";

/// `expected` with the client instrumentation's tag where the proxy puts
/// it in a document (after the doctype), taken from `got`.
fn with_injected_tag(expected: &[u8], got: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(got);
    let start = text
        .find("<script src=\"/.palisade/client.js?v=")
        .expect("the injected tag");
    let end = start + text[start..].find("</script>").expect("tag end") + "</script>".len();
    let at = expected.iter().position(|b| *b == b'>').expect("doctype") + 1;
    [&expected[..at], &got[start..end], &expected[at..]].concat()
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/rewrite_golden")
            .join(name),
    )
    .expect("golden file")
}

fn compress(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        // What some servers send as "deflate": no zlib wrapper.
        "raw-deflate" => {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
                w.write_all(body).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(body, 3).unwrap(),
        other => panic!("unknown coding {other}"),
    }
}

fn decompress(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// Serves `/<golden file>?enc=<coding>`: the file, compressed as asked
/// whatever the request accepted (an app may ignore Accept-Encoding).
fn golden_origin() -> Origin {
    origin(Arc::new(|req: &Request| {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let name = path.trim_start_matches('/');
        let Some((_, content_type, _)) = FILES.iter().find(|(f, _, _)| *f == name) else {
            return Reply::text(404, "no such file");
        };
        let coding = query.strip_prefix("enc=").unwrap_or("identity");
        let mut headers = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("ETag".to_string(), "\"v1\"".to_string()),
        ];
        let mut body = golden(name);
        if coding != "identity" {
            body = compress(coding, &body);
            let token = if coding == "raw-deflate" {
                "deflate"
            } else {
                coding
            };
            headers.push(("Content-Encoding".into(), token.into()));
        }
        Reply::Full {
            status: 200,
            headers,
            body,
        }
    }))
}

fn fetch(dp: &Dataplane, target: &str, accept_encoding: Option<&str>) -> Response {
    fetch_for(dp, target, accept_encoding, None)
}

/// A GET as a browser makes it for `dest` (`Sec-Fetch-Dest`).
fn fetch_for(
    dp: &Dataplane,
    target: &str,
    accept_encoding: Option<&str>,
    dest: Option<&str>,
) -> Response {
    let ae = accept_encoding
        .map(|v| format!("Accept-Encoding: {v}\r\n"))
        .unwrap_or_default();
    let dest = dest
        .map(|v| format!("Sec-Fetch-Dest: {v}\r\n"))
        .unwrap_or_default();
    request(
        dp,
        format!("GET {target} HTTP/1.1\r\nHost: {H}\r\n{ae}{dest}\r\n").as_bytes(),
    )
}

#[test]
fn every_document_is_rewritten_plain_and_compressed() {
    let origin = golden_origin();
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), REWRITE_JSON),
        &[],
    );
    for (file, _, dest) in FILES {
        let expected = golden(&format!("{file}.expected"));
        // (what the app sends, what the client accepts, coding expected back)
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("identity", None, None),
            ("identity", Some("gzip, br"), None),
            ("gzip", Some("gzip, deflate, br, zstd"), Some("gzip")),
            ("deflate", Some("deflate"), Some("deflate")),
            ("raw-deflate", Some("deflate"), Some("deflate")),
            ("br", Some("br, gzip"), Some("br")),
            ("zstd", Some("zstd"), Some("zstd")),
            // The app ignored Accept-Encoding: re-encoded as accepted...
            ("br", Some("gzip"), Some("gzip")),
            // ...or sent as identity to a client that named no coding.
            ("gzip", None, None),
        ];
        for (sent, accept, want_coding) in cases {
            let resp = fetch_for(&dp, &format!("/{file}?enc={sent}"), *accept, Some(dest));
            let what = format!("{file} sent {sent}, client accepts {accept:?}");
            assert_eq!(resp.status, 200, "{what}");
            assert_eq!(resp.header("content-encoding"), *want_coding, "{what}");
            assert!(resp.chunked, "{what}: a rewritten body is chunked");
            assert_eq!(resp.header("content-length"), None, "{what}");
            assert_eq!(resp.header("etag"), Some("W/\"v1\""), "{what}");
            let vary = resp.header_all("vary").join(",").to_ascii_lowercase();
            assert_eq!(
                vary.contains("accept-encoding"),
                *sent != "identity",
                "{what}: Vary {vary:?}"
            );
            let body = decompress(*want_coding, &resp.body);
            let expected = if *file == "page.html" {
                with_injected_tag(&expected, &body)
            } else {
                expected.clone()
            };
            assert!(
                body == expected,
                "{what}: body differs from {file}.expected:\n{}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[test]
fn upstream_accept_encoding_is_narrowed_to_decodable_codings() {
    let origin = golden_origin();
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    fetch(&dp, "/app.js", Some("gzip, br, compress, dcb, zstd;q=0"));
    fetch(&dp, "/app.js", Some("identity"));
    let seen = origin.requests();
    assert_eq!(seen[0].header("accept-encoding"), Some("gzip, br"));
    assert_eq!(seen[1].header("accept-encoding"), None);
}

#[test]
fn unknown_codings_pass_through_untouched() {
    let origin = origin(always(|_| Reply::Full {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html".into()),
            ("Content-Encoding".into(), "gzip, br".into()),
        ],
        body: b"https://demo.test/ (not really compressed)".to_vec(),
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let resp = fetch(&dp, "/", Some("gzip, br"));
    assert_eq!(resp.header("content-encoding"), Some("gzip, br"));
    assert_eq!(resp.text(), "https://demo.test/ (not really compressed)");
}

#[test]
fn corrupt_compressed_bodies_get_a_502_page() {
    let origin = origin(always(|_| Reply::Full {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html".into()),
            ("Content-Encoding".into(), "gzip".into()),
        ],
        body: b"this is not gzip data at all".to_vec(),
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let mut s = dp.connect();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {H}\r\nAccept-Encoding: gzip\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    // The head is held back with the first body bytes, so when the body
    // fails to decode before anything was sent the client gets a 502 page
    // naming the app (the origin writes head and body at once).
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.contains("demo") && text.contains("cannot be rewritten"),
        "{text}"
    );
}

#[test]
fn request_bodies_have_proxy_hosts_unwrapped() {
    let origin = origin(always(|_| Reply::text(200, "ok")));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let post = |content_type: &str, body: &str| {
        let resp = request(
            &dp,
            format!(
                "POST /submit HTTP/1.1\r\nHost: {H}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(resp.status, 200);
    };
    post(
        "application/x-www-form-urlencoded",
        "redirect_uri=https%3A%2F%2Fapp.demo.test.proxy.test%2Fcb&x=https%253A%252F%252FDemo.Test.PROXY.test&keep=https%3A%2F%2Fevil.test.proxy.test",
    );
    post(
        "application/json; charset=utf-8",
        r#"{"origin":"https://app.demo.test.proxy.test","escaped":"https:\/\/demo-cdn.test.proxy.test\/x","keep":"demo.test.proxy.testing"}"#,
    );
    post(
        "application/octet-stream",
        "https://app.demo.test.proxy.test/ stays",
    );
    post(
        "multipart/form-data; boundary=b0undary",
        "--b0undary\r\nContent-Disposition: form-data; name=\"return_to\"\r\n\r\nhttps://app.demo.test.proxy.test/x\r\n--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\n\r\nhttps://app.demo.test.proxy.test/file\r\n--b0undary--\r\n",
    );
    let seen = origin.requests();
    let body = |i: usize| String::from_utf8_lossy(&seen[i].body).into_owned();
    assert_eq!(
        body(0),
        "redirect_uri=https%3A%2F%2Fapp.demo.test%2Fcb&x=https%253A%252F%252FDemo.Test&keep=https%3A%2F%2Fevil.test.proxy.test"
    );
    assert_eq!(
        body(1),
        r#"{"origin":"https://app.demo.test","escaped":"https:\/\/demo-cdn.test\/x","keep":"demo.test.proxy.testing"}"#
    );
    assert_eq!(body(2), "https://app.demo.test.proxy.test/ stays");
    assert_eq!(seen[2].header("content-length"), Some("39"));
    // Small bodies that arrived whole go with their new exact length.
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.header("transfer-encoding"), None, "request {i}");
        assert_eq!(
            req.header("content-length"),
            Some(req.body.len().to_string().as_str()),
            "request {i}"
        );
    }
    assert_eq!(
        body(3),
        "--b0undary\r\nContent-Disposition: form-data; name=\"return_to\"\r\n\r\nhttps://app.demo.test/x\r\n--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\r\n\r\nhttps://app.demo.test.proxy.test/file\r\n--b0undary--\r\n"
    );
}

#[test]
fn bare_hosts_are_rewritten_only_after_the_apps_context_patterns() {
    let origin = origin(always(|_| Reply::Full {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"domain":"demo.test","cookieDomain":"demo.test","email":"ops@demo.test"}"#
            .to_vec(),
    }));
    let dp = Dataplane::start(
        &policy(
            &format!("http://{}", origin.addr()),
            "bare_host_contexts = ['\"domain\":\"']\n[app.rewrite]\ndata_paths = [\"/config.json\"]\n",
        ),
        &[],
    );
    let resp = fetch(&dp, "/config.json", None);
    assert_eq!(
        resp.text(),
        r#"{"domain":"demo.test.proxy.test","cookieDomain":"demo.test","email":"ops@demo.test"}"#
    );
}

#[test]
fn large_pages_are_rewritten_with_long_spans_passed_through() {
    // App URLs 20-40 KiB apart: the unchanged spans between them are
    // written from the read buffer without a copy.
    let mut page = String::from("<!doctype html><p>");
    for k in 0..12 {
        page.push_str(&"lorem ipsum dolor sit amet ".repeat(800 + 300 * k));
        page.push_str(&format!("<a href=\"https://app.demo.test/{k}\">{k}</a>\n"));
    }
    let page_for_origin = page.clone();
    let origin = origin(always(move |_| Reply::Full {
        status: 200,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: page_for_origin.clone().into_bytes(),
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    for accept in [None, Some("gzip")] {
        let resp = fetch(&dp, "/big", accept);
        let body = decompress(resp.header("content-encoding"), &resp.body);
        let want = page.replace(
            "https://app.demo.test/",
            "https://app.demo.test.proxy.test/",
        );
        let want = with_injected_tag(want.as_bytes(), &body);
        assert_eq!(body.len(), want.len(), "{accept:?}");
        assert!(body == want, "{accept:?}: bodies differ");
    }
}

#[test]
fn decompression_bombs_abort_the_response() {
    // 64 MiB of the same byte in ~64 KiB of brotli: one slice of it would
    // expand far beyond what any page does.
    let bomb = {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            let block = vec![b'a'; 1 << 20];
            for _ in 0..64 {
                w.write_all(&block).unwrap();
            }
        }
        out
    };
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let origin = origin(always(move |_| Reply::Full {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html".into()),
            ("Content-Encoding".into(), "br".into()),
        ],
        body: bomb.clone(),
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let mut s = dp.connect();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.len() < 8 << 20,
        "the proxy sent {} bytes of a bomb",
        got.len()
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "the response must not complete"
    );
}

#[test]
fn large_request_bodies_are_unwrapped_and_keep_a_length() {
    let origin = origin(always(|_| Reply::text(200, "ok")));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let filler = "x".repeat(100_000);
    let body = format!("big={filler}&next=https%3A%2F%2Fapp.demo.test.proxy.test%2Fdone");
    let resp = request(
        &dp,
        format!(
            "POST /submit HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let seen = &origin.requests()[0];
    // Held whole (it spans many reads), unwrapped, and sent with its new
    // exact length: apps refuse or mishandle chunked uploads.
    let want = format!("big={filler}&next=https%3A%2F%2Fapp.demo.test%2Fdone");
    assert_eq!(seen.header("transfer-encoding"), None);
    assert_eq!(
        seen.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert_eq!(String::from_utf8_lossy(&seen.body), want);
}

/// What the page's scripts read and what users download reaches them
/// byte for byte; what the browser renders or runs is rewritten, documents
/// with the client instrumentation first in their head.
#[test]
fn data_and_downloads_pass_through_byte_for_byte() {
    const DATA: &str = r#"{"html":"<a href=\"https://app.demo.test/x\">x</a>","code":"fetch('https://api.demo.test/run')","url":"https://demo-cdn.test/f"}"#;
    const PAGE: &str = "<!doctype html><html><head><title>t</title></head><body><a href=\"https://app.demo.test/p\">p</a></body></html>";
    let origin = origin(always(|req| {
        let path = req.target.split('?').next().unwrap_or("");
        let (content_type, body, attachment) = match path {
            "/data.json" => ("application/json", DATA, false),
            "/export.json" => ("application/json", DATA, true),
            "/feed.xml" => (
                "application/xml",
                "<a href=\"https://app.demo.test/\"/>",
                false,
            ),
            "/page.html" => ("text/html", PAGE, false),
            "/report.html" => ("text/html", PAGE, true),
            _ => ("text/plain", "no such file", false),
        };
        let mut headers = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            (
                "Content-Security-Policy".to_string(),
                "script-src https://demo-cdn.test".to_string(),
            ),
        ];
        if attachment {
            headers.push((
                "Content-Disposition".into(),
                "attachment; filename=\"f\"".into(),
            ));
        }
        Reply::Full {
            status: 200,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }));
    // The app asks for /export.json to be rewritten: a download still is
    // not.
    let dp = Dataplane::start(
        &policy(
            &format!("http://{}", origin.addr()),
            "[app.rewrite]\ndata_paths = [\"/export.json\"]\n",
        ),
        &[],
    );
    // (path, Sec-Fetch-Dest, passed through untouched)
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("/data.json", Some("empty"), true),
        ("/data.json", None, true),
        ("/data.json", Some("document"), true),
        ("/export.json", Some("empty"), true),
        ("/feed.xml", Some("empty"), true),
        ("/feed.xml", None, true),
        ("/page.html", Some("empty"), true),
        ("/report.html", Some("document"), true),
        ("/page.html", Some("document"), false),
        ("/page.html", Some("iframe"), false),
        ("/page.html", None, false),
    ];
    for (path, dest, untouched) in cases {
        let resp = fetch_for(&dp, path, Some("gzip"), *dest);
        let what = format!("{path} for {dest:?}");
        assert_eq!(resp.status, 200, "{what}");
        let original = if path.ends_with(".html") {
            PAGE.as_bytes()
        } else if path.ends_with(".xml") {
            b"<a href=\"https://app.demo.test/\"/>".as_slice()
        } else {
            DATA.as_bytes()
        };
        if *untouched {
            assert_eq!(resp.body, original, "{what}: changed");
            assert_eq!(
                resp.header("content-length"),
                Some(original.len().to_string().as_str()),
                "{what}: framing kept"
            );
            assert_eq!(
                resp.header("content-security-policy"),
                Some("script-src https://demo-cdn.test.proxy.test"),
                "{what}"
            );
            assert_eq!(
                resp.header("content-security-policy-report-only"),
                None,
                "{what}"
            );
        } else {
            // The leak guard: report-only by default, proxy hosts only.
            let guard = resp
                .header("content-security-policy-report-only")
                .unwrap_or_default();
            assert!(
                guard.starts_with("default-src 'self' https://*.proxy.test:* wss://*.proxy.test:*")
                    && guard.ends_with("report-uri /.palisade/csp-report"),
                "{what}: {guard:?}"
            );
            let text = resp.text();
            assert!(
                text.starts_with("<!doctype html><script src=\"/.palisade/client.js?v="),
                "{what}: {text}"
            );
            assert!(
                text.contains("href=\"https://app.demo.test.proxy.test/p\""),
                "{what}: {text}"
            );
            // The injected script may run under the app's CSP.
            assert_eq!(
                resp.header("content-security-policy"),
                Some("script-src https://demo-cdn.test.proxy.test 'self'"),
                "{what}"
            );
        }
    }
    // The script itself, configured with the suffix and every app domain.
    let script = fetch(&dp, "/.palisade/client.js?v=1", None);
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        script.text().starts_with(
            "const PALISADE = {\"domains\":[\"demo.test\",\"demo-cdn.test\"],\"suffix\":\"proxy.test\"};"
        ),
        "{}",
        script.text()
    );
}
