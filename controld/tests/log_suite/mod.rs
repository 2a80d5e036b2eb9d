//! What the log and alert suites share: the app origin, its policy, a
//! data plane with both listeners, and a client connection that speaks
//! HTTP/1.1 on the plain listener or (with `PALISADE_TEST_HTTP=2`) HTTP/2
//! on the TLS listener.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::support::*;

pub const HOST: &str = "demo.test.proxy.test";

/// An origin with pages, a download, an upload endpoint and a 404.
pub fn app_origin() -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: Arc::new(|r: &Request| {
            let path = r.target.split('?').next().unwrap_or("");
            if let Some(n) = path.strip_prefix("/page/") {
                let n: usize = n.parse().unwrap_or(1);
                Reply::text(200, vec![b'x'; n])
            } else if path == "/file.pdf" {
                Reply::Full {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "application/pdf".into()),
                        (
                            "Content-Disposition".into(),
                            "attachment; filename=\"report.pdf\"".into(),
                        ),
                    ],
                    body: vec![b'%'; 3000],
                }
            } else if path == "/upload" {
                Reply::text(201, "stored")
            } else if path.starts_with("/item/") || path.starts_with("/seq/") {
                Reply::text(200, "ok")
            } else {
                Reply::text(404, "no such thing")
            }
        }),
        tls: None,
        split_writes: false,
        record: false,
    })
    .expect("origin")
}

/// Where the suite's clients connect: the plain listener, and the TLS
/// listener with a client trusting its CA.
#[derive(Clone)]
pub struct Front {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub client: https::Client,
}

/// A policy for the app `demo` at `origin` with its certificate (made in
/// `env` once), plus `extra`.
pub fn demo_policy(env: &Env, name: &str, origin: SocketAddr, extra: &str) -> std::path::PathBuf {
    if !env.path("certs/demo.pem").exists() {
        env.app_certificates("certs", &[("demo", "demo.test")]);
    }
    env.policy(
        name,
        origin,
        &format!("tls_cert = \"certs/demo.pem\"\ntls_key = \"certs/demo.key\"\n{extra}"),
    )
}

/// A data plane with both listeners, `extra` flags.
pub fn start_dataplane(env: &Env, cores: usize, extra: &[&str]) -> (Proc, Front) {
    let (dp, plain, tls) = env.dataplane_tls(cores, extra);
    let client = https::Client::new(&env.path("ca/ca.pem"), None);
    (dp, Front { plain, tls, client })
}

/// How the run's records spell a request's URL.
pub fn url(path: &str) -> String {
    let scheme = if https::over_http2() { "https" } else { "http" };
    format!("{scheme}://demo.test{path}")
}

/// One client connection of the suite, kept open across requests.
pub enum Conn {
    Http1(TcpStream),
    Http2(palisade_bench::h2client::H2Session),
}

impl Conn {
    pub fn open(front: &Front) -> Conn {
        if https::over_http2() {
            return Conn::Http2(front.client.h2_session(front.tls, HOST));
        }
        let s = TcpStream::connect(front.plain).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Conn::Http1(s)
    }

    /// The connection's local port (the record's client port).
    pub fn local_port(&self) -> u16 {
        match self {
            Conn::Http1(s) => s.local_addr().expect("local").port(),
            Conn::Http2(h) => h.local_port,
        }
    }

    /// Sends `request` and reads its response: (status, bytes received:
    /// the whole response over HTTP/1.1, the body over HTTP/2).
    pub fn roundtrip(&mut self, request: &[u8]) -> (u16, usize) {
        match self {
            Conn::Http1(s) => roundtrip(s, request),
            Conn::Http2(h) => {
                let r = h
                    .request_text(request)
                    .unwrap_or_else(|e| panic!("HTTP/2 request: {e}"));
                (r.status, r.body.len())
            }
        }
    }
}

/// Sends `request` on `s` and reads one Content-Length response: (status,
/// bytes received).
pub fn roundtrip(s: &mut TcpStream, request: &[u8]) -> (u16, usize) {
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "proxy closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = r.parse(&buf) {
            let len = content_length(r.headers);
            if buf.len() >= head + len {
                assert_eq!(buf.len(), head + len, "more than one response");
                return (r.code.unwrap_or(0), buf.len());
            }
        }
    }
}

pub fn get(target: &str, agent: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {agent}\r\n\r\n").into_bytes()
}

pub fn by_url(rows: &[serde_json::Value]) -> HashMap<String, serde_json::Value> {
    rows.iter()
        .map(|r| (r["url"].as_str().unwrap_or("").to_string(), r.clone()))
        .collect()
}
