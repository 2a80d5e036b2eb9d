//! An HTTP/2 client for tests (the `h2` crate over tokio-rustls, ALPN
//! `h2`), taking the same HTTP/1.1 request text the HTTP/1.1 test clients
//! send, so a suite written once runs over both protocols.
//!
//! The request text is translated the way a browser's HTTP/2 stack sends
//! the same request: `Host` becomes `:authority`, the framing fields
//! (`Connection`, `Transfer-Encoding`, `Keep-Alive`) are dropped, a chunked
//! body is sent as plain DATA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// A response as received over HTTP/2 (field names lower case).
#[derive(Debug, Clone)]
pub struct H2Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The protocol the connection negotiated (always "h2" on success).
    pub alpn: String,
}

/// `config` with ALPN set to `h2` only.
pub fn h2_config(config: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Sends one HTTP/1.1-formatted request (head and body) over a new HTTP/2
/// connection to `addr`, with SNI `server_name`; reads the whole response.
pub fn request_text(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    request: &[u8],
    deadline: Duration,
) -> Result<H2Response, String> {
    let (req, body) = parse_request(request)?;
    let runtime = runtime()?;
    let server_name = server_name.to_string();
    runtime.block_on(async move {
        tokio::time::timeout(deadline, exchange(config, addr, server_name, req, body))
            .await
            .map_err(|_| format!("no whole HTTP/2 response within {deadline:?}"))?
    })
}

/// One HTTP/2 connection carrying request after request, each on a new
/// stream (what a browser's connection to a host does).
pub struct H2Session {
    runtime: tokio::runtime::Runtime,
    send: h2::client::SendRequest<Bytes>,
    alpn: String,
    deadline: Duration,
    /// The connection's local port (what the proxy logs as client port).
    pub local_port: u16,
}

impl H2Session {
    /// Connects to `addr` with SNI `server_name` and completes the HTTP/2
    /// handshake.
    pub fn connect(
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        server_name: &str,
        deadline: Duration,
    ) -> Result<H2Session, String> {
        let runtime = runtime()?;
        let server_name = server_name.to_string();
        let (send, alpn, local_port) = runtime.block_on(async {
            tokio::time::timeout(deadline, open(config, addr, server_name))
                .await
                .map_err(|_| format!("no HTTP/2 connection within {deadline:?}"))?
        })?;
        Ok(H2Session {
            runtime,
            send,
            alpn,
            deadline,
            local_port,
        })
    }

    /// Sends one HTTP/1.1-formatted request on a new stream; reads the
    /// whole response.
    pub fn request_text(&mut self, request: &[u8]) -> Result<H2Response, String> {
        let (req, body) = parse_request(request)?;
        let send = self.send.clone();
        let alpn = self.alpn.clone();
        let deadline = self.deadline;
        self.runtime.block_on(async move {
            tokio::time::timeout(deadline, on_stream(send, req, body, alpn))
                .await
                .map_err(|_| format!("no whole HTTP/2 response within {deadline:?}"))?
        })
    }
}

/// A runtime on the calling thread, for one client.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())
}

/// TLS with ALPN h2, the HTTP/2 handshake, the connection driven on the
/// current runtime.
async fn open(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: String,
) -> Result<(h2::client::SendRequest<Bytes>, String, u16), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let local_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let name = rustls::pki_types::ServerName::try_from(server_name).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    if alpn != "h2" {
        return Err(format!("the server chose ALPN {alpn:?}, not h2"));
    }
    let (send, connection) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((send, alpn, local_port))
}

async fn exchange(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: String,
    req: http::Request<()>,
    body: Vec<u8>,
) -> Result<H2Response, String> {
    let (send, alpn, _) = open(config, addr, server_name).await?;
    on_stream(send, req, body, alpn).await
}

/// One request and its whole response on a new stream.
async fn on_stream(
    send: h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Vec<u8>,
    alpn: String,
) -> Result<H2Response, String> {
    let mut send = send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let end = body.is_empty();
    let (response, mut stream) = send
        .send_request(req, end)
        .map_err(|e| format!("send: {e}"))?;
    if !end {
        stream
            .send_data(Bytes::from(body), true)
            .map_err(|e| format!("send body: {e}"))?;
    }
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let (head, mut recv) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(H2Response {
        status: head.status.as_u16(),
        headers: head
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        alpn,
    })
}

/// The request text as an `http::Request` and its body.
fn parse_request(text: &[u8]) -> Result<(http::Request<()>, Vec<u8>), String> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(text) {
        Ok(httparse::Status::Complete(n)) => n,
        other => return Err(format!("request text does not parse: {other:?}")),
    };
    let method = parsed.method.unwrap_or("GET");
    let target = parsed.path.unwrap_or("/");
    let mut authority = None;
    let mut chunked = false;
    let mut builder = http::Request::builder().method(method);
    // Fields the Connection header names are connection-specific too
    // (RFC 9110 §7.6.1): an HTTP/2 client never sends them.
    let named_by_connection: Vec<String> = parsed
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| {
            String::from_utf8_lossy(f.value)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for f in parsed.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        if named_by_connection.contains(&name) {
            continue;
        }
        match name.as_str() {
            "host" => authority = Some(String::from_utf8_lossy(f.value).into_owned()),
            "transfer-encoding" => chunked = true,
            "connection" | "keep-alive" | "proxy-connection" | "upgrade" | "te" => {}
            _ => builder = builder.header(name.as_str(), f.value),
        }
    }
    let authority = authority.ok_or("the request text has no Host")?;
    let uri = if target.starts_with("http://") || target.starts_with("https://") {
        target.to_string()
    } else {
        format!("https://{authority}{target}")
    };
    let rest = &text[head_len..];
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        rest.to_vec()
    };
    let req = builder
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(())
        .map_err(|e| e.to_string())?;
    Ok((req, body))
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let data = rest
            .get(line_end + 2..line_end + 2 + size)
            .ok_or("short chunk")?;
        body.extend_from_slice(data);
        rest = rest.get(line_end + 4 + size..).ok_or("short chunk")?;
    }
}
