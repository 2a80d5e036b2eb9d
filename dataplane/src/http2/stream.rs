//! One HTTP/2 stream seen by the phases as an HTTP/1.1 connection carrying
//! one exchange.
//!
//! Reading gives the request: the head [`super::request`] wrote, then the
//! body from DATA frames, framed as the head announced (`content-length`
//! bytes, or chunked). Writing takes the response the phases write in
//! HTTP/1.1 (a synthesised answer, or the app's response relayed): its
//! head becomes a HEADERS frame (connection-specific fields dropped, RFC
//! 9113 §8.2.2), its body DATA frames under the peer's flow control, its
//! end END_STREAM. After the response the stream reads as closed, so the
//! driver's keep-alive loop ends.
//!
//! Memory is bounded both ways: a request body is taken one DATA frame at
//! a time and its window released only as the phases read it; a response
//! is sent only as far as the send capacity the `h2` crate grants (at most
//! its send buffer per stream), so a client that stops reading stalls the
//! relay (and its body timeout) instead of growing a buffer.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::request::Upload;
use super::send::{h2_error, invalid};
use crate::http::chunked::{push_chunk_header, ChunkedDecoder};

/// Largest response head accepted from the phases (they bound the app's
/// head far below this).
const MAX_HEAD: usize = 256 * 1024;

/// The stream's request side and its shared response side.
pub struct StreamIo {
    request: RequestSide,
    response: Rc<RefCell<ResponseSide>>,
    /// The connection is TLS (false: cleartext HTTP/2, prior knowledge).
    pub tls: bool,
}

struct RequestSide {
    /// HTTP/1.1 bytes ready for the phases: the head, then each DATA
    /// frame with its chunk framing.
    staged: Vec<u8>,
    staged_at: usize,
    body: Option<RecvStream>,
    upload: Upload,
    /// Body bytes still announced by `content-length`.
    left: u64,
    /// The last byte of a `content-length` body, held until END_STREAM
    /// confirms the length: a body whose DATA disagrees with its length
    /// never reaches the app whole.
    withheld: Option<u8>,
    /// A failure met while bytes were still being handed out, reported on
    /// the next read (never taken for the end of the body).
    failed: Option<io::Error>,
}

/// The response side, shared with the stream's reset watch.
pub struct ResponseSide {
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    head: Vec<u8>,
    download: Download,
    head_request: bool,
}

#[derive(Debug)]
enum Download {
    /// Reading the response head.
    Head,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Ends when the phases close the stream.
    UntilClose,
    /// END_STREAM sent (or the stream reset).
    Done,
}

impl ResponseSide {
    /// The response went out whole (or the stream is gone).
    pub fn finished(&self) -> bool {
        matches!(self.download, Download::Done)
    }

    /// Ready with the reason when the client reset the stream (or the
    /// connection failed) before the response was finished.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        if self.finished() {
            return Poll::Pending;
        }
        let polled = match (&mut self.send, &mut self.respond) {
            (Some(send), _) => send.poll_reset(cx),
            (None, Some(respond)) => respond.poll_reset(cx),
            (None, None) => return Poll::Pending,
        };
        polled.map(|r| r.unwrap_or(Reason::CANCEL))
    }

    fn end(&mut self) {
        if let Some(send) = &mut self.send {
            let _ = send.send_data(Bytes::new(), true);
        }
        self.download = Download::Done;
    }

    fn abort(&mut self, reason: Reason) {
        if let Some(send) = &mut self.send {
            send.send_reset(reason);
        } else if let Some(respond) = &mut self.respond {
            respond.send_reset(reason);
        }
        self.download = Download::Done;
    }

    /// Takes response head bytes; `Ok(n)`: `n` bytes of `buf` were head
    /// (the rest, if any, is body).
    fn take_head(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The head usually comes in one write: parsed where it is, copied
        // only when it comes in pieces.
        let before = self.head.len();
        if before > 0 {
            self.head.extend_from_slice(buf);
        }
        let data: &[u8] = if before > 0 { &self.head } else { buf };
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        let used = match parsed.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => {
                if before == 0 {
                    self.head.extend_from_slice(buf);
                }
                return Ok(buf.len());
            }
            Ok(httparse::Status::Partial) => return Err(invalid("response head too large")),
            Err(e) => return Err(invalid(&format!("response head: {e}"))),
        };
        let status = http::StatusCode::from_u16(parsed.code.unwrap_or(502))
            .map_err(|e| invalid(&format!("response status: {e}")))?;
        // One copy of the head; every field value is a slice of it.
        let shared = Bytes::copy_from_slice(&data[..used]);
        let mut response = http::Response::new(());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.reserve(parsed.headers.len());
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for f in parsed.headers.iter() {
            let name = f.name.as_bytes();
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = true;
                continue;
            }
            // RFC 9113 §8.2.2: connection-specific fields have no meaning
            // in HTTP/2 and make a message malformed.
            if [
                &b"connection"[..],
                b"keep-alive",
                b"proxy-connection",
                b"upgrade",
            ]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
            {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(f.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
            let at = f.value.as_ptr() as usize - data.as_ptr() as usize;
            let value = http::HeaderValue::from_maybe_shared(shared.slice(at..at + f.value.len()))
                .map_err(|e| invalid(&format!("response field {}: {e}", f.name)))?;
            let name = http::HeaderName::from_bytes(name)
                .map_err(|e| invalid(&format!("response field {}: {e}", f.name)))?;
            headers.append(name, value);
        }
        let consumed = used - before;
        self.head.clear();
        let status = status.as_u16();
        if (100..200).contains(&status) {
            // 100 Continue and 103 Early Hints pass as informational
            // HEADERS; 101 cannot exist on HTTP/2 (RFC 9113 §8.6).
            if status == 101 {
                return Err(invalid("101 on an HTTP/2 stream"));
            }
            if let Some(respond) = &mut self.respond {
                let _ = respond.send_informational(response);
            }
            return Ok(consumed);
        }
        let no_body = self.head_request || status == 204 || status == 304;
        self.download = if no_body {
            Download::Done
        } else if chunked {
            Download::Chunked(Box::default())
        } else if let Some(n) = length {
            Download::Length(n)
        } else {
            Download::UntilClose
        };
        let end = matches!(self.download, Download::Done | Download::Length(0));
        let respond = self
            .respond
            .as_mut()
            .ok_or_else(|| invalid("second response"))?;
        let send = respond.send_response(response, end).map_err(h2_error)?;
        if end {
            self.download = Download::Done;
        }
        self.send = Some(send);
        Ok(consumed)
    }

    /// Sends body bytes as far as the stream's send capacity allows.
    fn poll_body(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if matches!(self.download, Download::Done) {
            // Bytes past the end of the response (none are written): dropped.
            return Poll::Ready(Ok(buf.len()));
        }
        let send = self.send.as_mut().ok_or_else(|| invalid("no response"))?;
        match &mut self.download {
            Download::Head | Download::Done => unreachable!("handled above"),
            Download::Length(left) => {
                let sent = ready!(super::send::poll_send_length(send, cx, buf, left))?;
                if *left == 0 {
                    self.download = Download::Done;
                }
                Poll::Ready(Ok(sent))
            }
            Download::UntilClose => super::send::poll_send(send, cx, buf, false),
            Download::Chunked(decoder) => {
                let (used, done) = ready!(super::send::poll_send_chunked(send, cx, decoder, buf))?;
                if done {
                    self.download = Download::Done;
                }
                Poll::Ready(Ok(used))
            }
        }
    }
}

impl StreamIo {
    /// A stream whose request head (HTTP/1.1) is `head`.
    pub fn new(
        head: Vec<u8>,
        body: RecvStream,
        upload: Upload,
        respond: SendResponse<Bytes>,
        head_request: bool,
        tls: bool,
    ) -> StreamIo {
        StreamIo {
            request: RequestSide {
                staged: head,
                staged_at: 0,
                body: (upload != Upload::None).then_some(body),
                upload,
                left: match upload {
                    Upload::Length(n) => n,
                    _ => 0,
                },
                withheld: None,
                failed: None,
            },
            response: Rc::new(RefCell::new(ResponseSide {
                respond: Some(respond),
                send: None,
                head: Vec::new(),
                download: Download::Head,
                head_request,
            })),
            tls,
        }
    }

    /// The response side, for the stream's reset watch.
    pub fn response(&self) -> Rc<RefCell<ResponseSide>> {
        self.response.clone()
    }

    /// Ends the response where it stands (the phases stop sending): a
    /// response cut short is reset, so the client never takes it for whole.
    pub fn finish(&mut self) {
        // Whatever of the request body is left is not wanted: dropping
        // the receive half makes the h2 crate reset the stream if the
        // client is still sending (RFC 9113 §8.1).
        self.request.body = None;
        self.request.staged.clear();
        self.request.staged_at = 0;
        let mut r = self.response.borrow_mut();
        match r.download {
            Download::Done => {}
            Download::UntilClose => r.end(),
            _ => r.abort(Reason::INTERNAL_ERROR),
        }
    }
}

impl RequestSide {
    /// Stages the next DATA frame (with its framing), or the end.
    fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(body) = &mut self.body else {
            return Poll::Ready(Ok(()));
        };
        self.staged.clear();
        self.staged_at = 0;
        match ready!(body.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                match self.upload {
                    Upload::Chunked => {
                        if !data.is_empty() {
                            push_chunk_header(&mut self.staged, data.len());
                            self.staged.extend_from_slice(&data);
                            self.staged.extend_from_slice(b"\r\n");
                        }
                    }
                    Upload::Length(_) => {
                        if data.len() as u64 > self.left {
                            return Poll::Ready(Err(invalid("DATA beyond content-length")));
                        }
                        self.left -= data.len() as u64;
                        if let Some(b) = self.withheld.take() {
                            self.staged.push(b);
                        }
                        self.staged.extend_from_slice(&data);
                        if self.left == 0 {
                            self.withheld = self.staged.pop();
                        }
                    }
                    Upload::None => {}
                }
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(h2_error(e))),
            None => {
                // END_STREAM: trailers, if any, are dropped (the app gets
                // the body; RFC 9110 §6.5 lets a proxy discard them).
                self.body = None;
                match self.upload {
                    Upload::Chunked => self.staged.extend_from_slice(b"0\r\n\r\n"),
                    Upload::Length(_) if self.left > 0 => {
                        return Poll::Ready(Err(invalid("body shorter than content-length")));
                    }
                    Upload::Length(_) => self.staged.extend(self.withheld.take()),
                    Upload::None => {}
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Fills `buf` with what is ready: the head and the DATA frames
        // already received come in one read, as they would over HTTP/1.1
        // (upload recognition reads the start of a body with its head).
        let req = &mut self.request;
        if let Some(e) = req.failed.take() {
            return Poll::Ready(Err(e));
        }
        let mut n = 0;
        loop {
            if req.staged_at < req.staged.len() {
                let k = (req.staged.len() - req.staged_at).min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&req.staged[req.staged_at..req.staged_at + k]);
                req.staged_at += k;
                n += k;
            }
            if n == buf.len() || req.body.is_none() {
                return Poll::Ready(Ok(n));
            }
            match req.poll_next_frame(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) if n == 0 => return Poll::Ready(Err(e)),
                Poll::Ready(Err(e)) => {
                    req.failed = Some(e);
                    return Poll::Ready(Ok(n));
                }
                Poll::Pending if n == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(n)),
            }
        }
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut r = self.response.borrow_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let result = if matches!(r.download, Download::Head) {
            Poll::Ready(r.take_head(buf))
        } else {
            r.poll_body(cx, buf)
        };
        if let Poll::Ready(Err(_)) = &result {
            r.abort(Reason::INTERNAL_ERROR);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames go out as the connection task writes them.
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.finish();
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        self.finish();
    }
}
