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

const FILES: &[(&str, &str)] = &[
    ("page.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript"),
    ("style.css", "text/css"),
    ("data.json", "application/json"),
    ("image.svg", "image/svg+xml"),
];

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
        let Some((_, content_type)) = FILES.iter().find(|(f, _)| *f == name) else {
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
    let ae = accept_encoding
        .map(|v| format!("Accept-Encoding: {v}\r\n"))
        .unwrap_or_default();
    request(
        dp,
        format!("GET {target} HTTP/1.1\r\nHost: {H}\r\n{ae}\r\n").as_bytes(),
    )
}

#[test]
fn every_document_is_rewritten_plain_and_compressed() {
    let origin = golden_origin();
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    for (file, _) in FILES {
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
            let resp = fetch(&dp, &format!("/{file}?enc={sent}"), *accept);
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
            "bare_host_contexts = ['\"domain\":\"']\n",
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
        assert_eq!(body.len(), want.len(), "{accept:?}");
        assert!(body == want.as_bytes(), "{accept:?}: bodies differ");
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
fn large_request_bodies_are_unwrapped_as_they_stream() {
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
    // Over 64 KiB the body is not held back: it streams, re-framed chunked.
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        format!("big={filler}&next=https%3A%2F%2Fapp.demo.test%2Fdone")
    );
}
