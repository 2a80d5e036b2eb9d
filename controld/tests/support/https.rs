//! A small HTTPS client for tests: rustls with the test CA as the only
//! root, SNI set to the proxy host, an optional client certificate, and a
//! response reader for Content-Length, chunked and close-delimited bodies.
//!
//! [`Client::request`] speaks HTTP/1.1, or HTTP/2 when the environment
//! says `PALISADE_TEST_HTTP=2` (scripts/test runs the access, session and
//! log suites both ways): the same request text, sent as a browser's
//! HTTP/2 stack would send it.

use palisade_bench::testing::HeaderFields;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::DEADLINE;

pub type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Client settings: trusted CA and an optional client certificate.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    /// Set when requests go over HTTP/2: the same settings with ALPN h2.
    http2: Option<Arc<rustls::ClientConfig>>,
}

/// Whether this test run sends [`Client::request`]s over HTTP/2.
pub fn over_http2() -> bool {
    std::env::var("PALISADE_TEST_HTTP").is_ok_and(|v| v == "2")
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .expect("certificate PEM")
}

fn pem_key(path: &Path) -> PrivateKeyDer<'static> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .expect("key PEM")
        .expect("a key")
}

impl Client {
    /// Trusts `ca`; presents `cert`/`key` when given.
    pub fn new(ca: &Path, client_cert: Option<(&Path, &Path)>) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(ca) {
            roots.add(c).expect("add root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(pem_certs(cert), pem_key(key))
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            http2: over_http2().then(|| palisade_bench::h2client::h2_config(&config)),
            config: Arc::new(config),
        }
    }

    /// A TLS connection to `addr` for `host` (handshake completed).
    pub fn connect(&self, addr: SocketAddr, host: &str) -> Result<TlsConn, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(DEADLINE))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(tls)
    }

    /// An HTTP/2 connection to `addr` for `host`, for requests one after
    /// another (each on a new stream).
    pub fn h2_session(&self, addr: SocketAddr, host: &str) -> palisade_bench::h2client::H2Session {
        let config = self
            .http2
            .clone()
            .unwrap_or_else(|| palisade_bench::h2client::h2_config(&self.config));
        palisade_bench::h2client::H2Session::connect(config, addr, host, DEADLINE)
            .unwrap_or_else(|e| panic!("HTTP/2 connection to {host}: {e}"))
    }

    /// One request on a new connection.
    pub fn request(&self, addr: SocketAddr, host: &str, request: &str) -> Response {
        if let Some(config) = &self.http2 {
            let r = palisade_bench::h2client::request_text(
                config.clone(),
                addr,
                host,
                request.as_bytes(),
                DEADLINE,
            )
            .unwrap_or_else(|e| panic!("HTTP/2 request to {host}: {e}"));
            return Response {
                status: r.status,
                headers: r.headers,
                body: String::from_utf8_lossy(&r.body).into_owned(),
                bytes: r.body,
            };
        }
        let mut conn = self
            .connect(addr, host)
            .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        send(&mut conn, request);
        read_response(&mut conn)
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as received (binary files).
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.header(name)
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.headers_named(name)
    }
}

pub fn send(conn: &mut impl Write, request: &str) {
    conn.write_all(request.as_bytes()).expect("send request");
    conn.flush().expect("flush");
}

fn read_some(conn: &mut impl Read, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16384];
    match conn.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        // A peer closing without close_notify, or a reset: end of stream.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            0
        }
        Err(e) => panic!("read: {e}"),
    }
}

/// Reads one response (not to a HEAD request).
pub fn read_response(conn: &mut impl Read) -> Response {
    let mut buf = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = r.parse(&buf).expect("response head parses") {
            let status = r.code.unwrap_or(0);
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let mut rest = buf[n..].to_vec();
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let body = if let Some(len) = find("content-length") {
                let len: usize = len.trim().parse().expect("content-length");
                while rest.len() < len {
                    assert!(read_some(conn, &mut rest) > 0, "closed inside a body");
                }
                rest.truncate(len);
                rest
            } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                let mut body = Vec::new();
                loop {
                    let line_end = loop {
                        if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        assert!(read_some(conn, &mut rest) > 0, "closed inside a chunk size");
                    };
                    let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
                    let size =
                        usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                            .expect("chunk size");
                    while rest.len() < line_end + 2 + size + 2 {
                        assert!(read_some(conn, &mut rest) > 0, "closed inside a chunk");
                    }
                    body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                    rest.drain(..line_end + 2 + size + 2);
                    if size == 0 {
                        break;
                    }
                }
                body
            } else {
                while read_some(conn, &mut rest) > 0 {}
                rest
            };
            return Response {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                bytes: body,
            };
        }
        assert!(
            read_some(conn, &mut buf) > 0,
            "closed before a response head"
        );
    }
}

/// The hidden fields of a form_post page: (action, id_token, state).
pub fn form_post(page: &str) -> (String, String, String) {
    palisade_bench::idp::form_post_fields(page)
        .unwrap_or_else(|| panic!("not a form_post page: {page}"))
}

/// `name=value` of a Set-Cookie header among `set_cookies`.
pub fn cookie<'a>(set_cookies: &[&'a str], name: &str) -> Option<&'a str> {
    set_cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?.trim();
        pair.strip_prefix(name)?.strip_prefix('=')
    })
}

/// A plain HTTP GET to `url` (the identity provider), returning the body.
pub fn http_get(url: &str) -> (u16, String) {
    let parsed = url::Url::parse(url).expect("url");
    let addr = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().expect("port")
    );
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    send(
        &mut s,
        &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    let r = read_response(&mut s);
    (r.status, r.body)
}
