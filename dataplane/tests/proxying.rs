//! HTTP/1.1 proxying both ways: keep-alive, pipelining, bodies in every
//! framing, 100-continue, HEAD, 1xx, 204/304, trailers, close-delimited
//! responses, Upgrade tunnels. Every exchange is run with the request
//! delivered whole, byte by byte and in random splits, against an origin
//! that writes whole or in random pieces; the transcripts must be identical.

mod support;

use palisade_bench::testing::RunOk;
use std::io::Write;
use std::sync::Arc;

use support::*;

const H: &str = "demo.test.proxy.test";

/// The origin for these tests: the demo app plus endpoints for each case.
fn handler() -> Handler {
    let demo = demo_app("demo.test");
    Arc::new(move |req: &Request| {
        let path = req.target.split('?').next().unwrap_or("");
        match path {
            "/early-hints" => Reply::Raw {
                bytes: b"HTTP/1.1 103 Early Hints\r\nLink: <https://static.demo.test/app.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                close: false,
            },
            "/no-content" => Reply::Full { status: 204, headers: vec![], body: vec![] },
            "/not-modified" => Reply::Raw {
                bytes: b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n".to_vec(),
                close: false,
            },
            "/until-close" => Reply::Raw {
                bytes: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the origin closes".to_vec(),
                close: true,
            },
            "/body-info" => Reply::text(
                200,
                format!(
                    "method={} len={} sum={} trailers={:?}",
                    req.method,
                    req.body.len(),
                    req.body.iter().map(|b| u64::from(*b)).sum::<u64>(),
                    String::from_utf8_lossy(&req.trailers)
                ),
            ),
            _ => demo(req),
        }
    })
}

fn start(split_writes: bool) -> (Origin, Dataplane) {
    let origin = origin_with(handler(), split_writes);
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    (origin, dp)
}

/// Runs every exchange on one keep-alive connection and returns a
/// normalized transcript (status, framing-independent headers, body).
fn transcript(dp: &Dataplane, delivery: Delivery) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = dp.connect();
    let mut r = Reader::new(&mut s);
    let exchange = |r: &mut Reader, req: &[u8], head: bool, out: &mut Vec<String>| {
        send(r.stream, req, delivery);
        let resp = r.response(head);
        let keep: Vec<String> = resp
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        out.push(format!(
            "{} {:?} {:?} trailers={:?}",
            resp.status,
            keep,
            resp.text(),
            resp.trailers
        ));
    };
    exchange(&mut r, &get(H, "/"), false, &mut out);
    exchange(
        &mut r,
        format!("HEAD / HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes(),
        true,
        &mut out,
    );
    exchange(
        &mut r,
        format!("POST /body-info HTTP/1.1\r\nHost: {H}\r\nContent-Length: 11\r\n\r\nhello world")
            .as_bytes(),
        false,
        &mut out,
    );
    exchange(
        &mut r,
        format!("POST /body-info HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n").as_bytes(),
        false,
        &mut out,
    );
    exchange(&mut r, &get(H, "/chunked"), false, &mut out);
    exchange(&mut r, &get(H, "/no-content"), false, &mut out);
    exchange(&mut r, &get(H, "/not-modified"), false, &mut out);
    exchange(&mut r, &get(H, "/early-hints"), false, &mut out);
    // The 103 was read as the response above; its final 200 follows.
    let resp = r.response(false);
    out.push(format!("after 103: {} {:?}", resp.status, resp.text()));
    // A close-delimited upstream response is re-framed as chunked, so the
    // client connection survives.
    exchange(&mut r, &get(H, "/until-close"), false, &mut out);
    exchange(&mut r, &get(H, "/echo?x=1"), false, &mut out);
    out
}

#[test]
fn exchanges_are_identical_for_any_split_of_requests_and_responses() {
    let mut reference: Option<Vec<String>> = None;
    for split_writes in [false, true] {
        let (_origin, dp) = start(split_writes);
        for delivery in DELIVERIES {
            let t = transcript(&dp, delivery);
            match &reference {
                None => reference = Some(t),
                Some(r) => assert_eq!(
                    &t, r,
                    "transcript differs for {delivery:?}, split origin writes: {split_writes}"
                ),
            }
        }
    }
    let t = reference.expect("ran");
    assert!(t[0].starts_with("200 "), "{}", t[0]);
    assert!(
        t[1].starts_with("200 ") && t[1].contains("Content-Length: 4096") && t[1].contains("\"\""),
        "HEAD: {}",
        t[1]
    );
    assert!(t[2].contains("method=POST len=11 sum=1116"), "{}", t[2]);
    assert!(
        t[3].contains("method=POST len=11 sum=1116 trailers=\\\"X-Trailer: yes\\\\r\\\\n\\\""),
        "{}",
        t[3]
    );
    assert!(
        t[4].contains("hello chunked world") && t[4].contains("X-Checksum: 42"),
        "{}",
        t[4]
    );
    assert!(t[5].starts_with("204 "), "{}", t[5]);
    assert!(
        t[6].starts_with("304 ") && t[6].contains("Content-Length: 1234"),
        "{}",
        t[6]
    );
    assert!(
        t[7].starts_with("103 ") && t[7].contains("https://static.demo.test.proxy.test/app.css"),
        "{}",
        t[7]
    );
    assert_eq!(t[8], "after 103: 200 \"ok\"");
    assert!(
        t[9].starts_with("200 ")
            && t[9].contains("Transfer-Encoding: chunked")
            && t[9].contains("read until the origin closes"),
        "{}",
        t[9]
    );
    assert!(
        t[10].starts_with("200 ") && t[10].contains("GET /echo?x=1 HTTP/1.1"),
        "{}",
        t[10]
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (origin, dp) = start(false);
    let mut s = dp.connect();
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(&get(H, &format!("/echo?n={i}")));
    }
    batch.extend_from_slice(
        format!("POST /body-info HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\n\r\nabc").as_bytes(),
    );
    batch.extend_from_slice(&get(H, "/echo?n=last"));
    s.write_all(&batch).expect("write");
    let mut r = Reader::new(&mut s);
    for i in 0..5 {
        let resp = r.response(false);
        assert!(
            resp.text()
                .starts_with(&format!("GET /echo?n={i} HTTP/1.1")),
            "{}",
            resp.text()
        );
    }
    assert!(r.response(false).text().contains("len=3"));
    assert!(r.response(false).text().starts_with("GET /echo?n=last"));
    assert_eq!(origin.requests().len(), 7);
}

#[test]
fn keep_alive_reuses_upstream_connections() {
    let (origin, dp) = start(false);
    for _ in 0..3 {
        let mut s = dp.connect();
        let mut r = Reader::new(&mut s);
        for _ in 0..3 {
            r.stream.write_all(&get(H, "/echo")).expect("write");
            assert_eq!(r.response(false).status, 200);
        }
    }
    assert_eq!(origin.requests().len(), 9);
    let conns: std::collections::BTreeSet<u64> =
        origin.requests().iter().map(|r| r.connection).collect();
    assert_eq!(
        conns.len(),
        1,
        "all nine requests on one upstream connection: {conns:?}"
    );
    assert_eq!(origin.connections(), 1);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let (origin, dp) = start(false);
    let mut s = dp.connect();
    s.write_all(format!("PUT /body-info HTTP/1.1\r\nHost: {H}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").as_bytes())
        .expect("write head");
    let mut r = Reader::new(&mut s);
    let interim = r.response(false);
    assert_eq!(interim.status, 100);
    r.stream.write_all(b"hello").expect("write body");
    let resp = r.response(false);
    assert!(resp.text().contains("method=PUT len=5"), "{}", resp.text());
    assert!(
        origin.requests()[0].header("expect").is_none(),
        "Expect is not forwarded"
    );
}

#[test]
fn http10_client_gets_close_delimited_body_for_unknown_length() {
    let (_origin, dp) = start(false);
    let mut s = dp.connect();
    s.write_all(format!("GET /chunked HTTP/1.0\r\nHost: {H}\r\n\r\n").as_bytes())
        .expect("write");
    let mut r = Reader::new(&mut s);
    let resp = r.response(false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.text(), "hello chunked world\n");
}

#[test]
fn large_bodies_stream_both_ways() {
    let (_origin, dp) = start(false);
    let mut s = dp.connect();
    let n = 10 * 1024 * 1024;
    s.write_all(&get(H, &format!("/bytes?n={n}")))
        .expect("write");
    let mut r = Reader::new(&mut s);
    let resp = r.response(false);
    assert_eq!(resp.body.len(), n);
    assert!(resp
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == b'a' + (i % 26) as u8));
    // Upload 4 MiB chunked in 64 KiB chunks.
    let mut req =
        format!("POST /body-info HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..64 {
        req.extend_from_slice(b"10000\r\n");
        req.extend(std::iter::repeat_n(1u8, 0x10000));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let writer = std::thread::spawn({
        let mut w = r.stream.try_clone().expect("clone");
        move || w.write_all(&req).expect("write upload")
    });
    let resp = r.response(false);
    writer.join().expect("writer");
    assert!(
        resp.text().contains("len=4194304 sum=4194304"),
        "{}",
        resp.text()
    );
}

#[test]
fn upgrade_becomes_a_byte_tunnel() {
    let (_origin, dp) = start(false);
    let mut s = dp.connect();
    s.write_all(format!("GET /upgrade HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly").as_bytes())
        .expect("write");
    let mut r = Reader::new(&mut s);
    let resp = r.response(false);
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    let mut echoed = std::mem::take(&mut r.buf);
    r.stream
        .write_all(b" and later bytes")
        .expect("write tunnel");
    while echoed.len() < "early and later bytes".len() {
        let mut chunk = [0u8; 64];
        let n = std::io::Read::read(r.stream, &mut chunk).expect("read tunnel");
        assert!(n > 0, "tunnel closed early");
        echoed.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(echoed, b"early and later bytes");
    // Half-close propagates: our EOF reaches the origin, which closes.
    r.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert!(r.closed());
}

#[test]
fn h2c_upgrade_is_not_forwarded() {
    let (origin, dp) = start(false);
    let resp = request(
        &dp,
        format!("GET /echo HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let seen = &origin.requests()[0];
    assert!(
        seen.header("upgrade").is_none() && seen.header("http2-settings").is_none(),
        "{:?}",
        seen.headers
    );
}

#[test]
fn works_through_curl() {
    let (_origin, dp) = start(false);
    let resolve = format!("{H}:{}:127.0.0.1", dp.addr.port());
    let url = format!("http://{H}:{}/", dp.addr.port());
    let run = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(extra)
            .ran_ok("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let page = run(&[&url]);
    // The 4 KiB page comes back with its app URLs rewritten.
    assert!(
        page.contains("Demo app on demo.test")
            && page.contains("https://app.demo.test.proxy.test/items/0")
            && page.len() > 4096,
        "{page}"
    );
    let echo = run(&[
        "--data-binary",
        "@-",
        "-H",
        "Transfer-Encoding: chunked",
        &format!("{url}body-info"),
    ]);
    assert!(echo.contains("method=POST"), "{echo}");
    let redirect = run(&[
        "-o",
        "/dev/null",
        "-w",
        "%{redirect_url}",
        &format!("{url}redirect"),
    ]);
    assert_eq!(redirect, "https://app.demo.test.proxy.test/landing");
}

#[test]
fn connections_beyond_the_per_core_limit_wait_for_a_slot() {
    let origin = origin(handler());
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--max-connections", "2"],
    );
    let first = dp.connect();
    let second = dp.connect();
    // Make sure both hold their slots (served: a request answered on each).
    for s in [&first, &second] {
        let mut s = s.try_clone().expect("clone");
        s.write_all(&get(H, "/echo")).expect("write");
        assert_eq!(Reader::new(&mut s).response(false).status, 200);
    }
    let mut third = dp.connect();
    third.write_all(&get(H, "/echo?third")).expect("write");
    third
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut third, &mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "the third connection must wait while two are open: {early:?}"
    );
    drop(first);
    third.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let resp = Reader::new(&mut third).response(false);
    assert!(
        resp.text().starts_with("GET /echo?third"),
        "served once a slot freed: {}",
        resp.text()
    );
    drop(second);
}

#[test]
fn idle_tunnel_is_closed() {
    let origin = origin(handler());
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--tunnel-idle-timeout", "0.5"],
    );
    let mut s = dp.connect();
    s.write_all(format!("GET /upgrade HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping").as_bytes())
        .expect("write");
    let mut r = Reader::new(&mut s);
    assert_eq!(r.response(false).status, 101);
    let mut echoed = std::mem::take(&mut r.buf);
    while echoed.len() < 4 {
        let mut chunk = [0u8; 16];
        let n = std::io::Read::read(r.stream, &mut chunk).expect("read");
        assert!(n > 0);
        echoed.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(echoed, b"ping");
    // Nothing more either way: the proxy ends the tunnel.
    assert!(r.closed(), "idle tunnel closed");
}
