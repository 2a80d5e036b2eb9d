//! Test harness: starts the real `dataplane` binary on loopback against a
//! real origin (`palisade_bench::origin`), and speaks raw HTTP/1.1 to it.
//!
//! With `PALISADE_TEST_HTTP=2` in the environment (scripts/test runs the
//! rewriting suites both ways), [`request`] sends the same request text
//! over HTTP/2 instead: the data plane then also listens for TLS, with a
//! certificate for `*.test.proxy.test` from a CA made here.

#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use palisade_bench::origin::{demo_app, Handler, Origin, OriginConfig, Reply, Request};
use palisade_bench::testing::HeaderFields;
use palisade_schema::policy::{compile_source, CompileOptions};

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running data plane process, killed on drop.
pub struct Dataplane {
    child: Child,
    pub addr: SocketAddr,
    /// The TLS listener and a client config trusting its CA (HTTP/2 runs).
    pub tls: Option<(SocketAddr, Arc<rustls::ClientConfig>)>,
    /// The CA of the TLS listener's certificate, as a PEM file.
    pub tls_ca: Option<PathBuf>,
    /// The line it printed when ready (addresses it listens on).
    pub ready_line: String,
    _dir: tempfile::TempDir,
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A policy with app `demo` (`demo.test`, `demo-cdn.test`) at `upstream`,
/// and app `other` (`other.test`) at `other_upstream`.
pub fn policy(upstream: &str, extra: &str) -> String {
    format!(
        "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"{upstream}\"\n{extra}"
    )
}

impl Dataplane {
    /// Compiles `policy_text` and starts the data plane with `args`.
    pub fn start(policy_text: &str, args: &[&str]) -> Dataplane {
        Self::start_in(tempfile::tempdir().expect("tempdir"), policy_text, args)
    }

    /// Like `start`, always with a TLS listener (a certificate for
    /// `*.test.proxy.test`), whatever protocol the run uses.
    pub fn start_tls(policy_text: &str, args: &[&str]) -> Dataplane {
        Self::spawn_with(
            tempfile::tempdir().expect("tempdir"),
            policy_text,
            args,
            false,
            true,
        )
    }

    /// Like `start`, with its stderr kept for [`Dataplane::stderr`].
    pub fn start_capturing_stderr(policy_text: &str, args: &[&str]) -> Dataplane {
        Self::spawn(
            tempfile::tempdir().expect("tempdir"),
            policy_text,
            args,
            true,
        )
    }

    /// What the data plane wrote to stderr so far (with
    /// [`Dataplane::start_capturing_stderr`]).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Like `start`, with files (CA certificates) already in `dir`.
    pub fn start_in(dir: tempfile::TempDir, policy_text: &str, args: &[&str]) -> Dataplane {
        Self::spawn(dir, policy_text, args, false)
    }

    fn spawn(dir: tempfile::TempDir, policy_text: &str, args: &[&str], capture: bool) -> Dataplane {
        // Over HTTP/2: a default certificate and a TLS listener, unless the
        // test brings TLS settings of its own.
        let tls = over_http2() && !policy_text.contains("\n[tls]");
        Self::spawn_with(dir, policy_text, args, capture, tls)
    }

    fn spawn_with(
        dir: tempfile::TempDir,
        policy_text: &str,
        args: &[&str],
        capture: bool,
        tls: bool,
    ) -> Dataplane {
        let (policy_text, tls_args, client) = if tls {
            let (client, cert, key) = test_certificate(dir.path());
            (
                format!("{policy_text}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n"),
                vec!["--tls-listen", "127.0.0.1:0"],
                Some(client),
            )
        } else {
            (policy_text.to_string(), vec![], None)
        };
        let snap = write_snapshot(dir.path(), &policy_text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_dataplane"))
            .arg("--snapshot")
            .arg(&snap)
            .args(["--listen", "127.0.0.1:0", "--cores", "1"])
            .args(&tls_args)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::from(
                    std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file"),
                )
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn dataplane");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read dataplane stdout");
        let addr = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("dataplane did not report its address: {line:?}"));
        let tls = client.map(|c| {
            let tls_addr = line
                .split("https on ")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
                .unwrap_or_else(|| panic!("no https address in {line:?}"));
            (tls_addr, c)
        });
        Dataplane {
            child,
            addr,
            tls_ca: tls.is_some().then(|| dir.path().join("ca.pem")),
            tls,
            ready_line: line,
            _dir: dir,
        }
    }

    /// The data plane's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to dataplane");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }
}

/// Starts an origin with `handler`.
pub fn origin(handler: Handler) -> Origin {
    origin_with(handler, false)
}

/// Starts an origin that writes its responses in small random pieces.
pub fn origin_with(handler: Handler, split_writes: bool) -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler,
        tls: None,
        split_writes,
        record: true,
    })
    .expect("start origin")
}

/// How request bytes are delivered.
#[derive(Clone, Copy, Debug)]
pub enum Delivery {
    Whole,
    ByteByByte,
    RandomSplits(u64),
}

pub const DELIVERIES: [Delivery; 3] = [
    Delivery::Whole,
    Delivery::ByteByByte,
    Delivery::RandomSplits(7),
];

/// Sends `bytes` as `delivery` says; write errors are ignored (the proxy
/// may close early on purpose).
pub fn send(stream: &mut TcpStream, bytes: &[u8], delivery: Delivery) {
    match delivery {
        Delivery::Whole => {
            let _ = stream.write_all(bytes);
        }
        Delivery::ByteByByte => {
            for (i, b) in bytes.iter().enumerate() {
                if stream.write_all(&[*b]).is_err() {
                    return;
                }
                // Pause so each byte arrives on its own; past the first
                // KiBs (large-head cases) the syscalls alone split them.
                if i < 2048 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
        }
        Delivery::RandomSplits(seed) => {
            let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut rest = bytes;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = 1 + (state as usize) % rest.len().min(13);
                if stream.write_all(&rest[..n]).is_err() {
                    return;
                }
                rest = &rest[n..];
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer lines of a chunked body.
    pub trailers: String,
    /// Whether the body came without a declared length: chunked over
    /// HTTP/1.1, DATA frames without `content-length` over HTTP/2.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.header(name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.headers_named(name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads HTTP/1.1 responses from a connection, keeping read-ahead bytes.
pub struct Reader<'a> {
    pub stream: &'a mut TcpStream,
    pub buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    pub fn new(stream: &'a mut TcpStream) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    fn more(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read from dataplane failed: {e}"),
        }
    }

    /// Reads one response (to a request that was HEAD when `head`).
    pub fn response(&mut self, head: bool) -> Response {
        let (head_len, status, headers) = loop {
            let mut storage = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Response::new(&mut storage);
            match r.parse(&self.buf).expect("response head parses") {
                httparse::Status::Complete(n) => {
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (n, r.code.unwrap_or(0), headers);
                }
                httparse::Status::Partial => {
                    if self.more() == 0 {
                        panic!(
                            "connection closed before a response head; got {:?}",
                            String::from_utf8_lossy(&self.buf)
                        );
                    }
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut resp = Response {
            status,
            headers: headers.clone(),
            body: Vec::new(),
            trailers: String::new(),
            chunked: false,
        };
        if head || status < 200 || status == 204 || status == 304 {
            return resp;
        }
        if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            resp.chunked = true;
            loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        let size = size as usize;
                        while self.buf.len() < used + size + 2 {
                            assert!(self.more() > 0, "closed inside a chunk");
                        }
                        if size == 0 {
                            self.buf.drain(..used);
                            loop {
                                if self.buf.starts_with(b"\r\n") {
                                    self.buf.drain(..2);
                                    break;
                                }
                                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n")
                                {
                                    resp.trailers =
                                        String::from_utf8_lossy(&self.buf[..i + 2]).into_owned();
                                    self.buf.drain(..i + 4);
                                    break;
                                }
                                assert!(self.more() > 0, "closed inside trailers");
                            }
                            return resp;
                        }
                        assert_eq!(
                            &self.buf[used + size..used + size + 2],
                            b"\r\n",
                            "chunk data ends with CRLF"
                        );
                        resp.body.extend_from_slice(&self.buf[used..used + size]);
                        self.buf.drain(..used + size + 2);
                    }
                    Ok(httparse::Status::Partial) => {
                        assert!(self.more() > 0, "closed inside a chunk size")
                    }
                    Err(e) => panic!("bad chunk framing from the proxy: {e:?}"),
                }
            }
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().expect("content-length");
            while self.buf.len() < len {
                assert!(self.more() > 0, "closed inside a body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.more() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// True when the peer closes (EOF or reset) with no further bytes
    /// within the deadline.
    pub fn closed(&mut self) -> bool {
        let before = self.buf.len();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.buf.len() == before,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return self.buf.len() == before,
            }
        }
        false
    }
}

/// Whether this run sends [`request`]s over HTTP/2.
pub fn over_http2() -> bool {
    std::env::var("PALISADE_TEST_HTTP").is_ok_and(|v| v == "2")
}

/// A CA and a certificate for `*.test.proxy.test` (and the suffix) in
/// `dir`; returns a client config trusting the CA, and the files.
fn test_certificate(dir: &std::path::Path) -> (Arc<rustls::ClientConfig>, PathBuf, PathBuf) {
    let ca = write_pki(dir, "tls", &["*.test.proxy.test", "proxy.test"]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    (
        palisade_bench::h2client::h2_config(&config),
        dir.join("tls.pem"),
        dir.join("tls.key"),
    )
}

/// A CA (`dir/ca.pem`) and a certificate for `names` signed by it
/// (`dir/STEM.pem`, `dir/STEM.key`); returns the CA certificate.
pub fn write_pki(
    dir: &std::path::Path,
    stem: &str,
    names: &[&str],
) -> rustls::pki_types::CertificateDer<'static> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a certificate whose issuer is its own
    // subject for self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Palisade test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, &ca).expect("certificate");
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).expect("write cert");
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    ca.der().clone()
}

/// One request on a fresh connection (HTTP/2 in an HTTP/2 run); returns
/// the response.
pub fn request(dp: &Dataplane, bytes: &[u8]) -> Response {
    if let Some((addr, config)) = &dp.tls {
        let r = palisade_bench::h2client::request_text(
            config.clone(),
            *addr,
            "demo.test.proxy.test",
            bytes,
            DEADLINE,
        )
        .unwrap_or_else(|e| panic!("HTTP/2 request: {e}"));
        let chunked = r.headers.header("content-length").is_none();
        return Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
            trailers: String::new(),
            chunked,
        };
    }
    let mut s = dp.connect();
    s.write_all(bytes).expect("write");
    let head = bytes.starts_with(b"HEAD ");
    Reader::new(&mut s).response(head)
}

/// Compiles `policy_text` (files it names resolve in `dir`) into
/// `dir/policy.snap` and returns that path.
pub fn write_snapshot(dir: &std::path::Path, policy_text: &str) -> PathBuf {
    let policy = compile_source("test.toml", policy_text, dir, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("test policy does not compile:\n{e}"));
    let snap = dir.join("policy.snap");
    std::fs::write(&snap, palisade_schema::snapshot::encode(&policy)).expect("write snapshot");
    snap
}

/// A simple GET for `host` (the proxy host) and `target`.
pub fn get(host: &str, target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// Polls `cond` until it holds or [`DEADLINE`] passes.
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    palisade_bench::testing::eventually_within(what, DEADLINE, Duration::from_millis(10), cond)
}

/// Handler that answers every request with `reply()`.
pub fn always(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Handler {
    Arc::new(reply)
}

/// Path of a file in the workspace.
pub fn workspace_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}
