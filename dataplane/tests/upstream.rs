//! Upstream behaviour: HTTPS upstreams with a private CA, misbehaving
//! upstreams answered with a clean 502 that never poisons the next request,
//! timeouts, retries of idempotent requests, and error pages naming the app.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use support::*;

const H: &str = "demo.test.proxy.test";

/// A private CA and a server certificate for 127.0.0.1 it signed.
struct TestPki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn test_pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Palisade test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca cert");
    let server_key = KeyPair::generate().expect("server key");
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .expect("server cert");
    TestPki {
        ca_pem: ca.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

fn tls_origin(pki: &TestPki) -> Origin {
    let tls = palisade_bench::tls::server_config_from_pem(
        pki.server_cert_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
    )
    .expect("server config");
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: demo_app("demo.test"),
        tls: Some(tls),
        split_writes: false,
        record: true,
    })
    .expect("tls origin")
}

#[test]
fn https_upstream_with_private_ca() {
    let pki = test_pki();
    let origin = tls_origin(&pki);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).expect("write ca");
    let dp = Dataplane::start_in(
        dir,
        &policy(
            &format!("https://{}", origin.addr()),
            "ca_file = \"ca.pem\"\n",
        ),
        &[],
    );
    let mut s = dp.connect();
    let mut r = Reader::new(&mut s);
    for i in 0..3 {
        r.stream
            .write_all(&get(H, &format!("/echo?i={i}")))
            .expect("write");
        let resp = r.response(false);
        assert_eq!(resp.status, 200);
        assert!(
            resp.text()
                .starts_with(&format!("GET /echo?i={i} HTTP/1.1\r\nHost: demo.test\r\n")),
            "{}",
            resp.text()
        );
    }
    assert_eq!(
        origin.connections(),
        1,
        "TLS upstream connection is kept alive and reused"
    );
}

#[test]
fn https_upstream_with_unknown_ca_is_refused_with_502() {
    let pki = test_pki();
    let origin = tls_origin(&pki);
    let dp = Dataplane::start(&policy(&format!("https://{}", origin.addr()), ""), &[]);
    let resp = request(&dp, &get(H, "/"));
    assert_eq!(resp.status, 502);
    let page = resp.text();
    assert!(
        page.contains("app &quot;demo&quot;") && page.contains("TLS handshake"),
        "{page}"
    );
    assert!(origin.requests().is_empty());
}

/// Each misbehaving response: the client gets a 502 (or, once the body has
/// started, a closed connection), and the next request — on a new client
/// connection — is answered correctly by a healthy upstream connection.
#[test]
fn misbehaving_upstream_never_poisons_the_next_request() {
    fn chunked(body: &[u8]) -> Vec<u8> {
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
            body,
        ]
        .concat()
    }
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage_status_line", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true),
        ("differing_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok".to_vec(), true),
        ("bad_cl", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok".to_vec(), true),
        ("unknown_transfer_coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec(), true),
        ("bare_cr_head", b"HTTP/1.1 200 OK\r\nX: a\rContent-Length: 2\r\n\r\nok".to_vec(), true),
        ("double_space_status_line", b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true),
        ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok".to_vec(), true),
        ("oversized_head", format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok", "a".repeat(70_000)).into_bytes(), true),
        ("early_close_in_head", b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(), true),
        ("unsolicited_101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".to_vec(), true),
        // Bad chunk syntax in the same read as the head: nothing was sent
        // yet, so the client still gets the 502 page.
        ("bad_chunk_in_body", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec(), true),
        ("chunk_size_0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), true),
        ("chunk_size_plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), true),
        ("chunk_size_minus", chunked(b"-1\r\nhello\r\n0\r\n\r\n"), true),
        ("chunk_size_leading_space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), true),
        ("chunk_bare_lf", chunked(b"5\nhello\r\n0\r\n\r\n"), true),
        ("chunk_bare_cr", chunked(b"5\rhello\r\n0\r\n\r\n"), true),
        ("chunk_nul_in_extension", chunked(b"5;a=\0\r\nhello\r\n0\r\n\r\n"), true),
        ("content_length_trailer", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), true),
        ("transfer_encoding_trailer", chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), true),
        ("host_trailer", chunked(b"5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n"), true),
        // The head went out: the client connection must be closed, not reused.
        ("early_close_in_body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part".to_vec(), false),
        // Extra bytes after a complete response: a response-splitting attempt.
        ("extra_bytes_after_body", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected".to_vec(), false),
    ];
    for (name, bytes, expect_502) in cases {
        let bad = Arc::new(bytes);
        let origin = origin(always(move |req: &Request| {
            if req.target == "/bad" {
                Reply::Raw {
                    bytes: bad.to_vec(),
                    close: true,
                }
            } else {
                Reply::text(200, format!("healthy {}", req.target))
            }
        }));
        let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
        let mut s = dp.connect();
        s.write_all(&get(H, "/bad")).expect("write");
        s.write_all(&get(H, "/after-on-same-connection"))
            .expect("write");
        let mut r = Reader::new(&mut s);
        if expect_502 {
            let resp = r.response(false);
            assert_eq!(resp.status, 502, "{name}: {}", resp.text());
            assert!(
                resp.text().contains("app &quot;demo&quot;"),
                "{name}: {}",
                resp.text()
            );
            assert!(r.closed(), "{name}: connection closed after the 502");
        } else {
            // Whatever partial response came, nothing after it may be a
            // second response: the connection ends.
            let mut all = Vec::new();
            loop {
                let mut chunk = [0u8; 4096];
                match std::io::Read::read(r.stream, &mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
            }
            all.splice(0..0, r.buf.drain(..));
            let text = String::from_utf8_lossy(&all);
            assert!(!text.contains("injected"), "{name}: {text}");
            if name == "extra_bytes_after_body" {
                // The proper response, then the next request's proper one.
                assert!(
                    text.contains("ok") && text.contains("healthy /after-on-same-connection"),
                    "{name}: {text}"
                );
            } else {
                assert!(
                    !text.contains("healthy"),
                    "{name}: the connection must end after a broken body: {text}"
                );
            }
        }
        let fresh = request(&dp, &get(H, "/fresh"));
        assert_eq!(fresh.status, 200, "{name}");
        assert_eq!(fresh.text(), "healthy /fresh", "{name}");
    }
}

#[test]
fn unreachable_upstream_gets_502_naming_the_app() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dp = Dataplane::start(&policy(&format!("http://127.0.0.1:{port}"), ""), &[]);
    let resp = request(&dp, &get(H, "/"));
    assert_eq!(resp.status, 502);
    assert!(
        resp.text().contains("app &quot;demo&quot;") && resp.text().contains("cannot connect"),
        "{}",
        resp.text()
    );
    let head = request(
        &dp,
        format!("HEAD / HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes(),
    );
    assert_eq!(head.status, 502);
    assert!(head.body.is_empty());
}

#[test]
fn slow_upstream_gets_504() {
    let origin = origin(always(|req: &Request| {
        if req.target == "/slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        Reply::text(200, "late")
    }));
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--response-timeout", "0.3"],
    );
    let resp = request(&dp, &get(H, "/slow"));
    assert_eq!(resp.status, 504);
    assert!(resp.text().contains("did not answer in time"));
    assert_eq!(request(&dp, &get(H, "/fast")).status, 200);
}

#[test]
fn idempotent_request_is_retried_when_a_pooled_connection_was_closed() {
    // The origin answers each connection's first request, then closes it
    // without saying so (keep-alive advertised), as a server whose idle
    // timeout fired would.
    let served = Arc::new(AtomicUsize::new(0));
    let origin = origin(always({
        let served = served.clone();
        move |req: &Request| {
            served.fetch_add(1, Ordering::SeqCst);
            let body = format!("served {}", req.target);
            Reply::Raw {
                bytes: format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                close: true,
            }
        }
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    for i in 0..5 {
        let resp = request(&dp, &get(H, &format!("/r{i}")));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
        assert_eq!(resp.text(), format!("served /r{i}"));
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        5,
        "each request reached the app exactly once"
    );
}

#[test]
fn imperfect_responses_that_nginx_and_haproxy_serve_are_served() {
    // (path, what the app sends, the body the client must get)
    let cases: &[(&str, &[u8], &str)] = &[
        // RFC 9112 §6.3 ¶3: chunked wins; the Content-Length is dropped.
        (
            "/length-and-chunked",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "hello",
        ),
        // §2.2: a bare LF may end a line of a response.
        (
            "/bare-lf",
            b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok",
            "ok",
        ),
        // No reason phrase (and no space after the code).
        (
            "/no-reason",
            b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
            "ok",
        ),
    ];
    let raw: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(p, b, _)| (p.to_string(), b.to_vec()))
        .collect();
    let origin = origin(always(move |req: &Request| {
        match raw.iter().find(|(p, _)| *p == req.target) {
            Some((_, bytes)) => Reply::Raw {
                bytes: bytes.clone(),
                close: true,
            },
            None => Reply::text(404, "no such case"),
        }
    }));
    let dp =
        Dataplane::start_capturing_stderr(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    for (path, _, body) in cases {
        for round in 0..2 {
            let resp = request(&dp, &get(H, path));
            assert_eq!(resp.status, 200, "{path} #{round}: {}", resp.text());
            assert_eq!(resp.text(), *body, "{path} #{round}");
            if *path == "/length-and-chunked" {
                assert_eq!(resp.header("content-length"), None, "{path}");
                assert_eq!(resp.header("transfer-encoding"), Some("chunked"), "{path}");
            }
        }
    }
    // The buggy framing is worth one line per app and core, not one per
    // response.
    let stderr = dp.stderr();
    assert_eq!(
        stderr
            .matches("app \"demo\": a response carried both Content-Length and Transfer-Encoding")
            .count(),
        1,
        "{stderr}"
    );
}
