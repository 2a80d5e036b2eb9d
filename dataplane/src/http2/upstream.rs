//! HTTP/2 toward apps: one multiplexed connection per upstream and core,
//! used when the app's TLS server chose `h2` by ALPN.
//!
//! The phases write a request to an app and read its response in HTTP/1.1
//! (`proxy/upstream.rs`); an [`AppStream`] is one HTTP/2 stream presented
//! that way, like [`super::stream::StreamIo`] is toward browsers. Writing
//! takes the request head the phases made (Host becomes `:authority`, the
//! connection-specific fields are dropped, RFC 9113 §8.2.2) and its body in
//! its HTTP/1.1 framing (sent as DATA under the app's flow control);
//! reading gives the response as an HTTP/1.1 head (chunked when the app
//! sent no `content-length`) and its body.
//!
//! [`Http2Upstreams`] keeps each core's connections. A connection is used
//! until it fails or the app sends GOAWAY (streams it refuses are retried
//! by the phases like a request on a closed keep-alive connection); the
//! app's SETTINGS_MAX_CONCURRENT_STREAMS bounds the streams on it (a new
//! stream waits for a slot). Requests that upgrade the connection
//! (WebSockets) never go over HTTP/2: they take an HTTP/1.1 connection.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};

use super::send::{h2_error, invalid};
use crate::http::chunked::{push_chunk_header, ChunkedDecoder};
use crate::stream::ClientTls;

/// A core's HTTP/2 connections to apps, by pool key.
#[derive(Default)]
pub struct Http2Upstreams {
    conns: RefCell<rustc_hash::FxHashMap<Box<str>, Http2Conn>>,
}

struct Http2Conn {
    send: SendRequest<Bytes>,
    /// Cleared when the connection task ends (error, GOAWAY, close).
    alive: Rc<Cell<bool>>,
}

impl Http2Upstreams {
    /// A new stream on the live connection to `key`, if there is one.
    pub fn stream(&self, key: &str, head_request: bool) -> Option<AppStream> {
        let mut conns = self.conns.borrow_mut();
        let conn = conns.get(key)?;
        if !conn.alive.get() {
            conns.remove(key);
            return None;
        }
        Some(AppStream::new(conn.send.clone(), head_request))
    }

    /// Takes a TLS connection whose ALPN chose `h2`: completes the HTTP/2
    /// handshake, drives the connection on its own task, keeps it for
    /// `key` and returns a first stream on it. Its writes are collected
    /// per round and its reads lent buffers from `pool`
    /// ([`super::coalesce`]).
    pub async fn adopt(
        &self,
        key: &str,
        tls: ClientTls,
        pool: Rc<crate::io::BufferPool>,
        window: u32,
        head_request: bool,
    ) -> io::Result<AppStream> {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(window.saturating_mul(4))
            // Pushed streams are refused (RFC 9113 §8.4: the client says
            // so in its SETTINGS).
            .enable_push(false)
            .handshake::<_, Bytes>(super::coalesce::Coalesce::new(tls, pool))
            .await
            .map_err(|e| io::Error::other(format!("HTTP/2 handshake: {e}")))?;
        let alive = Rc::new(Cell::new(true));
        let flag = alive.clone();
        glommio::spawn_local(async move {
            let _ = connection.await;
            flag.set(false);
        })
        .detach();
        let stream = AppStream::new(send.clone(), head_request);
        self.conns
            .borrow_mut()
            .insert(key.into(), Http2Conn { send, alive });
        Ok(stream)
    }

    /// Connections kept (live or not yet found dead).
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request to an app on an HTTP/2 stream, read and written in
/// HTTP/1.1 by the phases.
pub struct AppStream {
    send_request: SendRequest<Bytes>,
    head: Vec<u8>,
    upload: Upload,
    send: Option<SendStream<Bytes>>,
    response: Option<ResponseFuture>,
    head_request: bool,
    /// HTTP/1.1 bytes ready for the phases.
    staged: Vec<u8>,
    staged_at: usize,
    body: Option<RecvStream>,
    chunked: bool,
    done: bool,
}

enum Upload {
    /// Still reading the request head.
    Head,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Done,
}

/// Fields that belong to one HTTP/1.1 connection and are never sent on
/// an HTTP/2 stream (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"host",
    b"http2-settings",
];

impl AppStream {
    fn new(send_request: SendRequest<Bytes>, head_request: bool) -> AppStream {
        AppStream {
            send_request,
            head: Vec::new(),
            upload: Upload::Head,
            send: None,
            response: None,
            head_request,
            staged: Vec::new(),
            staged_at: 0,
            body: None,
            chunked: false,
            done: false,
        }
    }

    /// Takes request head bytes; once the head is whole, opens the stream.
    fn poll_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // The stream can only be opened when the app has a slot free.
        ready!(self.send_request.poll_ready(cx)).map_err(h2_error)?;
        let before = self.head.len();
        self.head.extend_from_slice(buf);
        let mut fields = [httparse::EMPTY_HEADER; 256];
        let mut parsed = httparse::Request::new(&mut fields);
        let used = match parsed.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Poll::Ready(Ok(buf.len())),
            Err(e) => return Poll::Ready(Err(invalid(&format!("request head: {e}")))),
        };
        let mut authority = None;
        let mut length = None;
        let mut chunked = false;
        let mut named: Vec<&[u8]> = Vec::new();
        for f in parsed.headers.iter() {
            if f.name.eq_ignore_ascii_case("connection") {
                named.extend(f.value.split(|&b| b == b',').map(|t| t.trim_ascii()));
            }
        }
        let mut builder = http::Request::builder()
            .method(parsed.method.unwrap_or("GET"))
            .version(http::Version::HTTP_2);
        for f in parsed.headers.iter() {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                authority = Some(f.value);
            }
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = true;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(f.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            }
            let keep_te =
                name.eq_ignore_ascii_case(b"te") && f.value.eq_ignore_ascii_case(b"trailers");
            if !keep_te
                && (CONNECTION_SPECIFIC
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c))
                    || named.iter().any(|n| name.eq_ignore_ascii_case(n)))
            {
                continue;
            }
            builder = builder.header(f.name, f.value);
        }
        let authority = authority.ok_or_else(|| invalid("request head without Host"))?;
        let target = parsed.path.unwrap_or("/");
        let uri = format!(
            "https://{}{}",
            std::str::from_utf8(authority).map_err(|_| invalid("Host is not text"))?,
            target
        );
        let request = builder
            .uri(uri)
            .body(())
            .map_err(|e| invalid(&format!("request head: {e}")))?;
        let consumed = used - before;
        self.head = Vec::new();
        self.upload = if chunked {
            Upload::Chunked(Box::default())
        } else {
            match length {
                Some(n) if n > 0 => Upload::Length(n),
                _ => Upload::Done,
            }
        };
        let end = matches!(self.upload, Upload::Done);
        let (response, send) = self
            .send_request
            .send_request(request, end)
            .map_err(h2_error)?;
        self.response = Some(response);
        self.send = Some(send);
        Poll::Ready(Ok(consumed))
    }

    /// Sends request body bytes as far as the stream's capacity allows.
    fn poll_upload(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if matches!(self.upload, Upload::Done) {
            return Poll::Ready(Ok(buf.len()));
        }
        let send = self.send.as_mut().ok_or_else(|| invalid("no request"))?;
        match &mut self.upload {
            Upload::Head | Upload::Done => unreachable!("handled above"),
            Upload::Length(left) => {
                let sent = ready!(super::send::poll_send_length(send, cx, buf, left))?;
                if *left == 0 {
                    self.upload = Upload::Done;
                }
                Poll::Ready(Ok(sent))
            }
            Upload::Chunked(decoder) => {
                let (used, done) = ready!(super::send::poll_send_chunked(send, cx, decoder, buf))?;
                if done {
                    self.upload = Upload::Done;
                }
                Poll::Ready(Ok(used))
            }
        }
    }

    /// Stages the response head once the app sent it.
    fn poll_response_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(response) = &mut self.response else {
            return Poll::Ready(Err(invalid("no request was sent")));
        };
        let response = ready!(Pin::new(response).poll(cx)).map_err(h2_error)?;
        self.response = None;
        let (head, body) = response.into_parts();
        let status = head.status;
        let out = &mut self.staged;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &head.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let no_body = self.head_request
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
            || status.is_informational();
        if no_body {
            self.done = true;
        } else if head.headers.contains_key(http::header::CONTENT_LENGTH) {
            self.body = Some(body);
        } else {
            // No length announced: the body ends with the stream, which
            // HTTP/1.1 can only say with chunked framing.
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            self.chunked = true;
            self.body = Some(body);
        }
        out.extend_from_slice(b"\r\n");
        Poll::Ready(Ok(()))
    }

    /// Stages the next DATA frame (framed), or the end of the body.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(body) = &mut self.body else {
            self.done = true;
            return Poll::Ready(Ok(()));
        };
        match ready!(body.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                if self.chunked && !data.is_empty() {
                    push_chunk_header(&mut self.staged, data.len());
                    self.staged.extend_from_slice(&data);
                    self.staged.extend_from_slice(b"\r\n");
                } else {
                    self.staged.extend_from_slice(&data);
                }
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(h2_error(e))),
            None => {
                if self.chunked {
                    self.staged.extend_from_slice(b"0\r\n\r\n");
                }
                self.body = None;
                self.done = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for AppStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if matches!(this.upload, Upload::Head) {
            this.poll_head(cx, buf)
        } else {
            this.poll_upload(cx, buf)
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for AppStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.staged_at < this.staged.len() {
                let n = (this.staged.len() - this.staged_at).min(buf.len());
                buf[..n].copy_from_slice(&this.staged[this.staged_at..this.staged_at + n]);
                this.staged_at += n;
                return Poll::Ready(Ok(n));
            }
            this.staged.clear();
            this.staged_at = 0;
            if this.done {
                return Poll::Ready(Ok(0));
            }
            if this.response.is_some() {
                ready!(this.poll_response_head(cx))?;
            } else {
                ready!(this.poll_body(cx))?;
            }
        }
    }
}
