//! A small HTTP/1.1 origin server: the demo app behind the proxy, and the
//! real server integration tests run the data plane against.
//!
//! One thread per connection (simple and plenty fast for demos and tests).
//! Every request it receives is recorded byte for byte, with the connection
//! it came on, so tests can assert what reached the app — or that nothing
//! did. Replies come from a handler; [`demo_app`] is the default one.

use crate::testing::HeaderFields;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the origin received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Which accepted connection (1-based) carried it.
    pub connection: u64,
    pub method: String,
    pub target: String,
    /// Field names and values as received.
    pub headers: Vec<(String, String)>,
    /// The raw head, request line to the empty line.
    pub head: Vec<u8>,
    /// The body after removing chunked framing.
    pub body: Vec<u8>,
    /// Raw trailer lines of a chunked body.
    pub trailers: Vec<u8>,
}

impl Request {
    /// First value of the named field (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.header(name)
    }
}

/// What the origin answers.
pub enum Reply {
    /// A normal response with Content-Length.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A chunked response with these chunks and trailer lines.
    Chunked {
        headers: Vec<(String, String)>,
        chunks: Vec<Vec<u8>>,
        trailers: String,
    },
    /// Exactly these bytes, then keep going (`close: false`) or close.
    Raw { bytes: Vec<u8>, close: bool },
    /// 101 Switching Protocols, then echo every byte back until EOF.
    UpgradeEcho,
    /// A WebSocket handshake (101 with this `Sec-WebSocket-Accept`), then
    /// every frame echoed (RFC 6455).
    WebSocketEcho { accept: String },
}

/// What a connection does after a 101.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterUpgrade {
    Nothing,
    /// Echo bytes as they come.
    RawEcho,
    /// Echo WebSocket frames.
    WebSocket,
}

/// Feeds `data` to the upgraded connection; returns the bytes to send
/// back and whether to keep going. WebSocket data frames' payloads are
/// appended to `received`.
pub(crate) fn upgraded_echo(
    mode: AfterUpgrade,
    pending: &mut Vec<u8>,
    data: &[u8],
    received: &mut Vec<Vec<u8>>,
) -> (Vec<u8>, bool) {
    match mode {
        AfterUpgrade::WebSocket => {
            pending.extend_from_slice(data);
            let mut out = Vec::new();
            let more = crate::websocket::echo_frames(pending, &mut out, received);
            (out, more)
        }
        _ => (data.to_vec(), true),
    }
}

/// A WebSocket message the origin received (one data frame's payload).
#[derive(Clone, Debug)]
pub struct Message {
    /// Which accepted connection (1-based) carried it.
    pub connection: u64,
    /// The `Host` and target of the upgrade request.
    pub host: String,
    pub target: String,
    pub payload: Vec<u8>,
}

/// What a recording origin keeps.
#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    messages: Vec<Message>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.into(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// How to run an origin.
pub struct OriginConfig {
    pub listen: SocketAddr,
    pub handler: Handler,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Write responses in small random pieces with pauses, to exercise
    /// the proxy's incremental parsing.
    pub split_writes: bool,
    /// Keep every request for [`Origin::requests`] (tests); off for load,
    /// where it would grow without bound.
    pub record: bool,
}

/// A running origin.
pub struct Origin {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    /// Binds and starts accepting on a background thread.
    pub fn start(config: OriginConfig) -> io::Result<Origin> {
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(config);
        {
            let (log, connections, stop) = (log.clone(), connections.clone(), stop.clone());
            std::thread::Builder::new()
                .name("origin-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let id = connections.fetch_add(1, Ordering::SeqCst) + 1;
                        let (log, config) = (log.clone(), shared.clone());
                        let _ = std::thread::Builder::new()
                            .name("origin-conn".into())
                            .spawn(move || {
                                let _ = stream.set_nodelay(true);
                                let _ = match &config.tls {
                                    None => serve(stream, id, &config, &log),
                                    Some(tls) => match rustls::ServerConnection::new(tls.clone()) {
                                        Ok(conn) => serve(
                                            rustls::StreamOwned::new(conn, stream),
                                            id,
                                            &config,
                                            &log,
                                        ),
                                        Err(_) => Ok(()),
                                    },
                                };
                            });
                    }
                })?;
        }
        Ok(Origin {
            addr,
            log,
            connections,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log
            .lock()
            .map(|l| l.requests.clone())
            .unwrap_or_default()
    }

    /// Every WebSocket message received so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.log
            .lock()
            .map(|l| l.messages.clone())
            .unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Serves requests on one connection until it closes.
fn serve<S: Read + Write>(
    mut stream: S,
    id: u64,
    config: &OriginConfig,
    log: &Mutex<Log>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut rng = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, id)? else {
            return Ok(());
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if config.record {
            if let Ok(mut l) = log.lock() {
                l.requests.push(req.clone());
            }
        }
        let reply = (config.handler)(&req);
        let (bytes, close_after, upgrade) = encode(reply, req.method == "HEAD");
        write_out(&mut stream, &bytes, config.split_writes, &mut rng)?;
        if upgrade != AfterUpgrade::Nothing {
            // Echo whatever was read ahead, then everything else.
            let mut pending = Vec::new();
            let mut received = Vec::new();
            let keep = |received: &mut Vec<Vec<u8>>| {
                if config.record && !received.is_empty() {
                    if let Ok(mut l) = log.lock() {
                        l.messages.extend(received.drain(..).map(|payload| Message {
                            connection: id,
                            host: req.header("host").unwrap_or("").to_string(),
                            target: req.target.clone(),
                            payload,
                        }));
                    }
                }
                received.clear();
            };
            let (out, mut more) = upgraded_echo(upgrade, &mut pending, &buf, &mut received);
            keep(&mut received);
            stream.write_all(&out)?;
            stream.flush()?;
            buf.clear();
            let mut chunk = [0u8; 8192];
            while more {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                let (out, go_on) = upgraded_echo(upgrade, &mut pending, &chunk[..n], &mut received);
                keep(&mut received);
                more = go_on;
                stream.write_all(&out)?;
                stream.flush()?;
            }
            return Ok(());
        }
        if close || close_after {
            stream.flush()?;
            return Ok(());
        }
    }
}

fn write_out<S: Write>(stream: &mut S, bytes: &[u8], split: bool, rng: &mut u64) -> io::Result<()> {
    if !split {
        stream.write_all(bytes)?;
        return stream.flush();
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let n = 1 + (*rng as usize) % rest.len().min(7);
        stream.write_all(&rest[..n])?;
        stream.flush()?;
        rest = &rest[n..];
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

pub(crate) fn encode(reply: Reply, head_request: bool) -> (Vec<u8>, bool, AfterUpgrade) {
    match reply {
        Reply::Full { status, headers, body } => {
            let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
            for (n, v) in &headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            if !(status == 204 || status == 304 || status < 200) {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if !head_request {
                out.extend_from_slice(&body);
            }
            (out, false, AfterUpgrade::Nothing)
        }
        Reply::Chunked { headers, chunks, trailers } => {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_vec();
            for (n, v) in &headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if !head_request {
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                out.extend_from_slice(trailers.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            (out, false, AfterUpgrade::Nothing)
        }
                Reply::Raw { bytes, close } => (bytes, close, AfterUpgrade::Nothing),
        Reply::UpgradeEcho => (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(),
            false,
            AfterUpgrade::RawEcho,
        ),
        Reply::WebSocketEcho { accept } => (
            format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes(),
            false,
            AfterUpgrade::WebSocket,
        ),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// The `filename` of every file part in a multipart/form-data body.
fn multipart_file_names(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("filename=\"")
        .filter_map(|(at, m)| {
            let rest = &text[at + m.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// Content type and leading bytes of a downloadable file, by extension.
fn file_kind(name: &str) -> (&'static str, &'static [u8]) {
    let ext = name
        .rsplit_once('.')
        .map_or("", |(_, e)| e)
        .to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => ("application/pdf", b"%PDF-1.7\n"),
        "zip" => ("application/zip", b"PK\x03\x04"),
        "docx" => (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b"PK\x03\x04",
        ),
        "xlsx" => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            b"PK\x03\x04",
        ),
        "exe" => ("application/vnd.microsoft.portable-executable", b"MZ"),
        "png" => ("image/png", b"\x89PNG\r\n\x1a\n"),
        "csv" => ("text/csv", b"id,name\n"),
        "txt" => ("text/plain", b""),
        _ => ("application/octet-stream", b""),
    }
}

/// Incremental request parser over a growing buffer (sans I/O), shared by
/// the blocking origin and the glommio one. Bodies are decoded as they
/// arrive, so a large upload is scanned once.
#[derive(Default)]
pub struct RequestParser {
    pending: Option<(Request, BodyFraming)>,
}

enum BodyFraming {
    Length(usize),
    /// Offset in the buffer of the next chunk-size line.
    Chunked(usize),
}

impl RequestParser {
    /// True between requests (no head parsed yet).
    pub fn idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Completes one request from the front of `buf` if it is all there,
    /// removing its bytes; `Ok(None)` means read more.
    pub fn poll(&mut self, buf: &mut Vec<u8>, id: u64) -> Result<Option<Request>, String> {
        if self.pending.is_none() {
            let mut storage = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut storage);
            let head_len = match req.parse(buf).map_err(|e| e.to_string())? {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => return Ok(None),
            };
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let request = Request {
                connection: id,
                method: req.method.unwrap_or("").to_string(),
                target: req.path.unwrap_or("").to_string(),
                head: buf[..head_len].to_vec(),
                headers,
                body: Vec::new(),
                trailers: Vec::new(),
            };
            buf.drain(..head_len);
            let framing = if request
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                BodyFraming::Chunked(0)
            } else {
                let len = match request.header("content-length") {
                    Some(v) => v
                        .trim()
                        .parse()
                        .map_err(|_| "bad content-length".to_string())?,
                    None => 0,
                };
                BodyFraming::Length(len)
            };
            self.pending = Some((request, framing));
        }
        let Some((request, framing)) = self.pending.as_mut() else {
            return Ok(None);
        };
        match framing {
            BodyFraming::Length(len) => {
                if buf.len() < *len {
                    return Ok(None);
                }
                request.body = buf.drain(..*len).collect();
            }
            BodyFraming::Chunked(pos) => loop {
                match httparse::parse_chunk_size(&buf[*pos..])
                    .map_err(|_| "bad chunk size".to_string())?
                {
                    httparse::Status::Partial => return Ok(None),
                    httparse::Status::Complete((used, 0)) => {
                        // Trailer section, up to the empty line.
                        let rest = &buf[*pos + used..];
                        let end = if rest.starts_with(b"\r\n") {
                            *pos + used + 2
                        } else if let Some(i) = find_subslice(rest, b"\r\n\r\n") {
                            request.trailers = rest[..i + 2].to_vec();
                            *pos + used + i + 4
                        } else {
                            return Ok(None);
                        };
                        buf.drain(..end);
                        break;
                    }
                    httparse::Status::Complete((used, size)) => {
                        let size = size as usize;
                        let data = *pos + used;
                        if buf.len() < data + size + 2 {
                            return Ok(None);
                        }
                        request.body.extend_from_slice(&buf[data..data + size]);
                        *pos = data + size + 2;
                    }
                }
            },
        }
        Ok(self.pending.take().map(|(r, _)| r))
    }
}

/// Reads one request; `None` at a clean end of stream.
fn read_request<S: Read>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    id: u64,
) -> io::Result<Option<Request>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut parser = RequestParser::default();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(req) = parser.poll(buf, id).map_err(bad)? {
            return Ok(Some(req));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() && parser.idle() {
                Ok(None)
            } else {
                Err(bad("connection closed inside a request".into()))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_subslice(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The demo app: a page that links across the app's hosts, plus endpoints
/// for trying the proxy by hand. `domain` is the app's main domain.
pub fn demo_app(domain: &str) -> Handler {
    demo_app_with_hosts(domain, 16)
}

/// [`demo_app`] whose dense documents reference `hosts` app hosts unless
/// the request's `hosts=` says otherwise.
pub fn demo_app_with_hosts(domain: &str, default_hosts: usize) -> Handler {
    let domain = domain.to_string();
    // Pages are built once, not per request: the origin must never be the
    // bottleneck of a benchmark.
    let page = page_4k(&domain).into_bytes();
    let dense_pages: Mutex<std::collections::HashMap<(DenseKind, usize, usize), Vec<u8>>> =
        Mutex::new(Default::default());
    Arc::new(move |req: &Request| {
        let path = req.target.split('?').next().unwrap_or("");
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        match path {
            "/" | "/index.html" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body: page.clone(),
            },
            "/echo" => {
                let mut body = req.head.clone();
                body.extend_from_slice(&req.body);
                Reply::text(200, body)
            }
            "/redirect" => Reply::Full {
                status: 302,
                headers: vec![("Location".into(), format!("https://app.{domain}/landing"))],
                body: Vec::new(),
            },
            "/cookie" => Reply::Full {
                status: 200,
                headers: vec![
                    (
                        "Set-Cookie".into(),
                        format!("sid=42; Path=/; Domain=.{domain}; HttpOnly"),
                    ),
                    ("Set-Cookie".into(), "host_only=1; Path=/".into()),
                ],
                body: b"cookies set\n".to_vec(),
            },
            "/chunked" => Reply::Chunked {
                headers: vec![
                    ("Content-Type".into(), "text/plain".into()),
                    ("Trailer".into(), "X-Checksum".into()),
                ],
                chunks: vec![
                    b"hello ".to_vec(),
                    b"chunked ".to_vec(),
                    b"world\n".to_vec(),
                ],
                trailers: "X-Checksum: 42\r\n".into(),
            },
            "/bytes" => {
                let n: usize = query
                    .strip_prefix("n=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1024)
                    .min(1 << 30);
                Reply::Full {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                    body: (0..n).map(|i| b'a' + (i % 26) as u8).collect(),
                }
            }
            "/upgrade" => Reply::UpgradeEcho,
            "/ws" => match req.header("sec-websocket-key") {
                Some(key)
                    if req
                        .header("upgrade")
                        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")) =>
                {
                    Reply::WebSocketEcho {
                        accept: crate::websocket::accept_value(key),
                    }
                }
                _ => Reply::text(400, "a WebSocket handshake is expected here\n"),
            },
            "/upload" if req.method == "POST" || req.method == "PUT" => {
                let files = multipart_file_names(&req.body);
                let json = serde_json::json!({
                    "bytes": req.body.len(),
                    "content_type": req.header("content-type").unwrap_or(""),
                    "files": files,
                });
                Reply::Full {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: json.to_string().into_bytes(),
                }
            }
            p if p.starts_with("/samples/") => {
                let name = &p["/samples/".len()..];
                match crate::samples::named(name) {
                    Some(body) => Reply::Full {
                        status: 200,
                        headers: vec![
                            ("Content-Type".into(), file_kind(name).0.into()),
                            (
                                "Content-Disposition".into(),
                                format!("attachment; filename=\"{name}\""),
                            ),
                        ],
                        body,
                    },
                    None => Reply::text(404, "no such sample"),
                }
            }
            p if p.starts_with("/files/") => {
                let name = &p["/files/".len()..];
                let size = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("size=")?.parse::<usize>().ok())
                    .unwrap_or(4096)
                    .min(1 << 30);
                let (kind, magic) = file_kind(name);
                let mut body = magic.to_vec();
                body.resize(size.max(magic.len()), b'x');
                Reply::Full {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), kind.into()),
                        (
                            "Content-Disposition".into(),
                            format!("attachment; filename=\"{}\"", name.replace('"', "")),
                        ),
                    ],
                    body,
                }
            }
            "/dense" | "/dense.js" | "/dense.css" | "/dense.json" => {
                let kind = match path {
                    "/dense.js" => DenseKind::Script,
                    "/dense.css" => DenseKind::Stylesheet,
                    "/dense.json" => DenseKind::Json,
                    _ => DenseKind::Html,
                };
                let param = |k: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse::<usize>().ok())
                };
                let size = param("size").unwrap_or(256 * 1024).min(64 << 20);
                let hosts = param("hosts").unwrap_or(default_hosts).clamp(1, 4096);
                Reply::Full {
                    status: 200,
                    headers: vec![("Content-Type".into(), kind.content_type().into())],
                    body: dense_pages
                        .lock()
                        .map(|mut cache| {
                            cache
                                .entry((kind, size, hosts))
                                .or_insert_with(|| {
                                    dense_document(kind, &domain, hosts, size).into_bytes()
                                })
                                .clone()
                        })
                        .unwrap_or_default(),
                }
            }
            _ => Reply::text(404, "not found\n"),
        }
    })
}

/// A 4 KiB HTML page whose links and assets point at the app's hosts.
pub fn page_4k(domain: &str) -> String {
    let mut page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Demo app</title>\n<link rel=\"stylesheet\" href=\"https://static.{domain}/app.css\">\n<script src=\"https://static.{domain}/app.js\"></script></head>\n<body><h1>Demo app on {domain}</h1>\n"
    );
    let mut i = 0;
    while page.len() < 4096 - 200 {
        page.push_str(&format!(
            "<p>Item {i}: <a href=\"https://app.{domain}/items/{i}\">open</a> · <a href=\"//cdn.{domain}/files/{i}.pdf\">download</a></p>\n"
        ));
        i += 1;
    }
    page.push_str("</body></html>\n");
    while page.len() < 4096 {
        page.insert(page.len() - 15, ' ');
    }
    page
}

/// An HTML page of `size` bytes that references `hosts` app hosts
/// (`h<i>.<domain>`) about every 125 bytes, cycling through every URL
/// encoding the rewriter handles: plain, scheme-relative, JS-escaped,
/// `\u002F` and `\x2F`, percent-encoded (both cases, double-encoded),
/// and HTML entities.
pub fn dense_page(domain: &str, hosts: usize, size: usize) -> String {
    dense_document(DenseKind::Html, domain, hosts, size)
}

/// The document types the origin serves densely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenseKind {
    Html,
    Script,
    Stylesheet,
    Json,
}

impl DenseKind {
    pub fn content_type(self) -> &'static str {
        match self {
            DenseKind::Html => "text/html; charset=utf-8",
            DenseKind::Script => "text/javascript; charset=utf-8",
            DenseKind::Stylesheet => "text/css; charset=utf-8",
            DenseKind::Json => "application/json",
        }
    }
}

/// A document of `size` bytes of `kind` referencing `hosts` app hosts
/// (`h<i>.<domain>`) about every 125 bytes, cycling through the URL
/// encodings that occur in that kind of document.
pub fn dense_document(kind: DenseKind, domain: &str, hosts: usize, size: usize) -> String {
    const SCRIPT: &[(&str, &str)] = &[
        ("var a=\"https://", "/api\";"),
        ("var b='//", "/lib.js';"),
        ("var c=\"https:\\/\\/", "\\/x\";"),
        ("var d=\"https:\\u002F\\u002F", "\\u002Fy\";"),
        ("var e='https:\\x2F\\x2F", "\\x2Fz';"),
        ("fetch(\"/go?to=https%3A%2F%2F", "%2Fq\");"),
        ("new WebSocket(\"wss://", "/ws\");"),
    ];
    const STYLESHEET: &[(&str, &str)] = &[
        (".a{background:url(https://", "/i.png)}"),
        (".b{background:url(\"//", "/j.png\")}"),
        ("@import url('https://", "/k.css');"),
        (".c{background:url(/r?u=https%3A%2F%2F", "%2Fl.png)}"),
    ];
    const JSON: &[(&str, &str)] = &[
        ("{\"url\":\"https://", "/a\"},"),
        ("{\"url\":\"https:\\/\\/", "\\/b\"},"),
        ("{\"url\":\"https:\\u002F\\u002F", "\\u002Fc\"},"),
        ("{\"next\":\"https%3A%2F%2F", "%2Fd\"},"),
        ("{\"cdn\":\"//", "/e.png\"},"),
    ];
    let (head, forms, tail, filler): (&str, &[(&str, &str)], &str, &str) = match kind {
        DenseKind::Html => (
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Dense</title></head><body>\n",
            HTML_FORMS,
            "</body></html>\n",
            " lorem",
        ),
        DenseKind::Script => ("// dense script\n", SCRIPT, "\n", " /*lorem*/"),
        DenseKind::Stylesheet => ("/* dense stylesheet */\n", STYLESHEET, "\n", " /*x*/"),
        DenseKind::Json => ("{\"items\":[\n", JSON, "{}]}\n", " "),
    };
    let mut page = String::with_capacity(size + 256);
    page.push_str(head);
    let mut i = 0usize;
    while page.len() < size.saturating_sub(32) {
        let (before, after) = forms[i % forms.len()];
        let start = page.len();
        page.push_str(before);
        page.push_str(&format!("h{}.{domain}", i % hosts));
        page.push_str(after);
        // Filler up to ~125 bytes per reference.
        while page.len() - start < 120 {
            page.push_str(filler);
        }
        page.push('\n');
        i += 1;
    }
    page.push_str(tail);
    page
}

/// The encodings of the HTML dense page.
const HTML_FORMS: &[(&str, &str)] = &[
    ("<a href=\"https://", "/p\">x</a>"),
    ("<img src=\"//", "/i.png\">"),
    ("<script>u=\"https:\\/\\/", "\\/a\"</script>"),
    ("<script>v=\"https:\\u002F\\u002F", "\\u002Fb\"</script>"),
    ("<script>w='https:\\x2F\\x2F", "\\x2Fc'</script>"),
    ("<a href=\"/go?to=https%3A%2F%2F", "%2Fd\">y</a>"),
    ("<a href=\"/go?to=https%3a%2f%2f", "%2fe\">y</a>"),
    ("<a href=\"/go?to=https%253A%252F%252F", "%252Ff\">z</a>"),
    ("<a href=\"https:&#x2F;&#x2F;", "&#x2F;g\">e</a>"),
    ("<a href=\"https:&#47;&#47;", "&#47;h\">e</a>"),
    ("<a href=\"https:&sol;&sol;", "&sol;i\">e</a>"),
    ("<link href=\"wss://", "/ws\">"),
];
#[cfg(test)]
mod dense_tests {
    use super::{dense_document, DenseKind};

    #[test]
    fn every_dense_document_references_every_host_and_is_well_formed() {
        for kind in [
            DenseKind::Html,
            DenseKind::Script,
            DenseKind::Stylesheet,
            DenseKind::Json,
        ] {
            let doc = dense_document(kind, "demo.test", 40, 64 * 1024);
            assert!(
                (64 * 1024 - 200..64 * 1024 + 200).contains(&doc.len()),
                "{kind:?}"
            );
            for h in 0..40 {
                assert!(
                    doc.contains(&format!("h{h}.demo.test")),
                    "{kind:?} lacks h{h}"
                );
            }
            // About one reference per 125 bytes.
            assert!(
                doc.matches(".demo.test").count() > 64 * 1024 / 140,
                "{kind:?}"
            );
        }
        let json = dense_document(DenseKind::Json, "demo.test", 3, 8192);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(v["items"].as_array().is_some_and(|a| a.len() > 50));
    }
}
