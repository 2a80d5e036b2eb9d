//! `bench load` against `bench origin`: counts and JSON are right (this is
//! a correctness test, not a speed test).

use palisade_bench::testing::RunOk;
use std::process::Command;

use palisade_bench::origin::{demo_app, Origin, OriginConfig};

fn origin() -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: demo_app("demo.test"),
        tls: None,
        split_writes: false,
        record: true,
    })
    .expect("origin")
}

/// Starts `bench origin` (the glommio origin); returns it and its address.
fn fast_origin() -> (std::process::Child, String) {
    palisade_bench::testing::spawn_announcing(Command::new(env!("CARGO_BIN_EXE_bench")).args([
        "origin",
        "--listen",
        "127.0.0.1:0",
    ]))
}

fn run_load(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&json)
        .ran_ok("bench load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("requests:") && text.contains("latency µs: p50"),
        "{text}"
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid json")
}

#[test]
fn closed_loop_counts_match_what_the_origin_served() {
    let origin = origin();
    let url = format!("http://{}/bytes?n=1000", origin.addr());
    let r = run_load(&[
        &url,
        "--closed",
        "--connections",
        "4",
        "--threads",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    let requests = r["requests"].as_u64().expect("requests");
    assert!(requests > 0);
    assert_eq!(r["warmup_requests"].as_u64(), Some(0));
    assert_eq!(
        requests as usize,
        origin.requests().len(),
        "every response counted once: {r}"
    );
    assert_eq!(r["errors"]["status"].as_u64(), Some(0));
    let l = &r["latency_us"];
    let p = |k: &str| l[k].as_u64().expect(k);
    assert!(
        p("p50") > 0
            && p("p50") <= p("p90")
            && p("p90") <= p("p99")
            && p("p99") <= p("p999")
            && p("p999") <= p("max"),
        "{l}"
    );
    // Each response is 1000 body bytes plus a head.
    let bytes =
        r["bytes_per_s"].as_f64().expect("bytes") * r["duration_s"].as_f64().expect("duration");
    assert!(bytes >= requests as f64 * 1000.0, "{r}");
    assert_eq!(r["connections"].as_u64(), Some(4));
    assert_eq!(r["mode"].as_str(), Some("closed loop"));
}

#[test]
fn open_loop_sends_at_the_requested_rate() {
    let origin = origin();
    let url = format!("http://{}/", origin.addr());
    let r = run_load(&[
        &url,
        "--rate",
        "200",
        "--connections",
        "4",
        "--threads",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0.5",
    ]);
    let requests = r["requests"].as_u64().expect("requests");
    let warmup = r["warmup_requests"].as_u64().expect("warmup");
    // Sends are scheduled, not paced by responses: 200/s over 1.5 s is
    // exactly 300 intended sends, 100 of them in the warm-up, whatever the
    // latency (each is counted in the period it was scheduled in, and late
    // ones are still sent).
    assert_eq!(requests + warmup, 300, "{r}");
    assert_eq!((requests, warmup), (200, 100), "{r}");
    assert_eq!((requests + warmup) as usize, origin.requests().len());
}

#[test]
fn host_override_and_error_statuses_are_counted() {
    let origin = origin();
    let url = format!("http://{}/missing", origin.addr());
    let r = run_load(&[
        &url,
        "--closed",
        "--connections",
        "2",
        "--threads",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--host",
        "app.demo.test",
    ]);
    let requests = r["requests"].as_u64().expect("requests");
    assert!(requests > 0);
    assert_eq!(
        r["errors"]["status"].as_u64(),
        Some(requests),
        "every 404 is an error: {r}"
    );
    assert!(origin
        .requests()
        .iter()
        .all(|q| q.header("host") == Some("app.demo.test")));
}

#[test]
fn unreachable_target_reports_connect_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_load(&[
        &url,
        "--closed",
        "--connections",
        "1",
        "--threads",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ]);
    assert_eq!(r["requests"].as_u64(), Some(0));
    assert!(r["errors"]["connect"].as_u64().expect("connect") > 0, "{r}");
}

/// `bench origin` (the glommio origin) answers the demo app's endpoints,
/// including chunked uploads, under `bench load`.
#[test]
fn fast_origin_serves_the_demo_app() {
    use std::io::{Read, Write};
    let (mut child, addr) = fast_origin();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200 OK") && response.ends_with("abc"),
        "{response}"
    );
    let r = run_load(&[
        &format!("http://{addr}/"),
        "--closed",
        "--connections",
        "4",
        "--threads",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    assert!(r["requests"].as_u64().expect("requests") > 0);
    assert_eq!(r["errors"]["status"].as_u64(), Some(0));
    let _ = child.kill();
    let _ = child.wait();
}

/// `--tls` (and https:// URLs): TLS to an origin with a certificate made
/// here; SNI is the Host field's name; every response counted.
#[test]
fn tls_load_counts_match_what_the_origin_served() {
    let ca = rcgen::CertifiedIssuer::self_signed(
        {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        },
        rcgen::KeyPair::generate().expect("ca key"),
    )
    .expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["demo.test".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let tls = palisade_bench::tls::server_config_from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .expect("server config");
    let origin = Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: demo_app("demo.test"),
        tls: Some(tls),
        split_writes: false,
        record: true,
    })
    .expect("origin");
    for url in [
        format!("https://{}/bytes?n=500", origin.addr()),
        format!("http://{}/bytes?n=500", origin.addr()),
    ] {
        let before = origin.requests().len();
        let mut args = vec![
            url.as_str(),
            "--host",
            "demo.test",
            "--connections",
            "2",
            "--threads",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0",
        ];
        if url.starts_with("http://") {
            args.push("--tls");
        }
        let r = run_load(&args);
        let requests = r["requests"].as_u64().expect("requests");
        assert!(requests > 0, "{r}");
        assert_eq!(r["errors"]["connect"].as_u64(), Some(0), "{r}");
        assert_eq!(
            requests as usize,
            origin.requests().len() - before,
            "every TLS response counted once: {r}"
        );
    }
}

/// Both origins (the recording one in process, the glommio `bench origin`)
/// serve typed downloads, an upload endpoint and a WebSocket echo.
#[test]
fn origins_serve_downloads_uploads_and_a_websocket_echo() {
    use std::io::{Read, Write};
    let recording = origin();
    let (mut child, fast) = fast_origin();
    for addr in [recording.addr().to_string(), fast] {
        let exchange = |request: &[u8]| -> Vec<u8> {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .expect("timeout");
            s.write_all(request).expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).expect("read");
            out
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        // A typed download.
        let r = exchange(
            b"GET /files/report.pdf?size=2000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let head_end = r.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        let head = text(&r[..head_end]);
        assert!(head.contains("Content-Type: application/pdf"), "{head}");
        assert!(
            head.contains("Content-Disposition: attachment; filename=\"report.pdf\""),
            "{head}"
        );
        assert!(
            r[head_end..].starts_with(b"%PDF-") && r.len() - head_end == 2000,
            "{addr}"
        );
        // A multipart upload.
        let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nid,name\r\n--b--\r\n";
        let r = text(&exchange(
            format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                .as_bytes(),
        ));
        assert!(
            r.contains(&format!("\"bytes\":{}", body.len())) && r.contains("\"files\":[\"a.csv\"]"),
            "{r}"
        );
        // A WebSocket echo: RFC 6455's sample key, then a masked "Hello"
        // and a close.
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .expect("handshake");
        s.write_all(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x88, 0x80, 1, 2, 3,
            4,
        ])
        .expect("frames");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read");
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        let head = text(&out[..head_end]);
        assert!(
            head.starts_with("HTTP/1.1 101")
                && head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        assert_eq!(
            &out[head_end..],
            &[0x81, 5, b'H', b'e', b'l', b'l', b'o', 0x88, 0][..],
            "{addr}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
