//! Request bodies keep the client's framing. Many app servers answer 411
//! to a chunked request body (or read it as empty), so a body the client
//! sent with a Content-Length must reach the app with one, whether it
//! arrived in one read or many: exact after unwrapping proxy hosts (held up
//! to a bound), byte for byte with its own length above it. A chunked body
//! stays chunked. The app here answers 411 to any chunked request, as such
//! servers do, and echoes what it received.

mod support;

use std::io::Write;

use palisade_bench::testing::RunOk;
use support::*;

const H: &str = "demo.test.proxy.test";

/// An app that refuses chunked request bodies and reports what it got.
fn strict_origin() -> Origin {
    origin(always(|req: &Request| {
        if req.header("transfer-encoding").is_some() {
            return Reply::text(411, "Length Required");
        }
        Reply::text(
            200,
            format!(
                "length={} bytes={}",
                req.header("content-length").unwrap_or("none"),
                req.body.len()
            ),
        )
    }))
}

#[test]
fn a_multipart_upload_from_curl_reaches_an_app_that_refuses_chunked() {
    let origin = strict_origin();
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 1 KB file holding a proxy URL: a file is the user's data, passed
    // byte for byte; the text field is unwrapped.
    let text = format!(
        "see https://app.{H}/x\n{}",
        "line of the uploaded file\n".repeat(40)
    );
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, &text).expect("file");
    let resolve = format!("{H}:{}:127.0.0.1", dp.addr.port());
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &resolve])
        .args(["-F", &format!("file=@{}", file.display())])
        .args(["-F", &format!("next=https://app.{H}/done")])
        .arg(format!("http://{H}:{}/upload", dp.addr.port()))
        .ran_ok("curl");
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(answer.starts_with("length="), "{answer}");
    let seen = origin
        .requests()
        .into_iter()
        .find(|r| r.target == "/upload")
        .expect("the upload reached the app");
    assert_eq!(seen.header("transfer-encoding"), None, "{answer}");
    let body = String::from_utf8_lossy(&seen.body);
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
    assert!(body.contains(&text), "the file changed: {body}");
    assert!(
        body.contains("\r\n\r\nhttps://app.demo.test/done\r\n"),
        "{body}"
    );
}

#[test]
fn bodies_keep_their_framing_in_any_split() {
    let origin = strict_origin();
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let form = format!("next=https%3A%2F%2Fapp.{H}%2Fdone&pad={}", "p".repeat(3000));
    let unwrapped = form.replace(".proxy.test", "");
    // Larger than what is held for unwrapping: byte for byte, its length.
    let big = format!(
        "next=https%3A%2F%2Fapp.{H}%2Fdone&pad={}",
        "p".repeat(1024 * 1024 + 10)
    );
    // (what, body, content type, what the app must receive)
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "form",
            &form,
            "application/x-www-form-urlencoded",
            &unwrapped,
        ),
        ("plain", &form, "text/plain", &form),
        (
            "large-form",
            &big,
            "application/x-www-form-urlencoded",
            &big,
        ),
    ];
    for (what, body, content_type, want) in cases {
        for split in [None, Some(1), Some(body.len() / 2)] {
            let head = format!(
                "POST /{what} HTTP/1.1\r\nHost: {H}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut s = dp.connect();
            match split {
                None => s.write_all(format!("{head}{body}").as_bytes()),
                Some(at) => s
                    .write_all(format!("{head}{}", &body[..at]).as_bytes())
                    .and_then(|()| s.flush())
                    .and_then(|()| s.write_all(&body.as_bytes()[at..])),
            }
            .expect("write");
            let resp = Reader::new(&mut s).response(false);
            let label = format!("{what}, split {split:?}");
            assert_eq!(resp.status, 200, "{label}: {}", resp.text());
            assert_eq!(
                resp.text(),
                format!("length={} bytes={}", want.len(), want.len()),
                "{label}"
            );
            let seen = origin.requests().pop().expect("a request");
            assert!(seen.body == want.as_bytes(), "{label}: the body changed");
        }
    }
}

#[test]
fn a_chunked_body_stays_chunked_and_is_unwrapped() {
    let origin = origin(always(|req: &Request| {
        Reply::text(200, format!("te={:?}", req.header("transfer-encoding")))
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let part = format!("next=https%3A%2F%2Fapp.{H}%2Fdone");
    let resp = request(
        &dp,
        format!(
            "POST /c HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{part}\r\n0\r\n\r\n",
            part.len()
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "te=Some(\"chunked\")");
    let seen = origin.requests().pop().expect("a request");
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "next=https%3A%2F%2Fapp.demo.test%2Fdone"
    );
}

#[test]
fn a_body_to_unwrap_is_read_whole_before_the_app_is_contacted() {
    let origin = strict_origin();
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let body = format!("next=https%3A%2F%2Fapp.{H}%2Fdone");
    let mut s = dp.connect();
    s.write_all(
        format!(
            "POST /later HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("write head");
    // The go-ahead comes before any connection to the app (RFC 9110
    // §10.1.1), so no pooled connection waits on this client.
    let mut interim = Reader::new(&mut s);
    let cont = interim.response(true);
    assert_eq!(cont.status, 100);
    assert_eq!(
        origin.connections(),
        0,
        "the app was contacted before the body"
    );
    s.write_all(body.as_bytes()).expect("write body");
    let resp = Reader::new(&mut s).response(false);
    let want = body.replace(".proxy.test", "");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.text(),
        format!("length={} bytes={}", want.len(), want.len())
    );
}
