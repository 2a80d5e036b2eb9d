//! HTTP/2 toward browsers (RFC 9113): the second client codec under the
//! same phases.
//!
//! A TLS connection whose ALPN chose `h2` is served here. The `h2` crate
//! speaks the framing, HPACK, flow control and the stream states; this
//! module drives one connection ([`serve`]) and runs the request path
//! ([`crate::proxy::serve_connection`]) once per stream, over a
//! [`stream::StreamIo`] that presents the stream as an HTTP/1.1 exchange.
//! Every phase therefore runs for an HTTP/2 request exactly as for an
//! HTTP/1.1 one, and the HTTP/1.1 codec's checks apply to both: the
//! translation ([`request`]) can only express what HTTP/1.1 can, and the
//! codec parses it as strictly as a browser's own bytes.
//!
//! The attacks of recent years are bounded here, each by a limit in
//! [`crate::limits::Http2Limits`]:
//! - rapid reset (CVE-2023-44487): streams the client resets before their
//!   response is finished are counted in a leaky bucket; past it, GOAWAY
//!   `ENHANCE_YOUR_CALM`. A reset stream's exchange is dropped at once (its
//!   upstream request with it), and the number of exchanges running per
//!   connection never exceeds the concurrent-stream limit, whatever the
//!   client resets.
//! - CONTINUATION floods and HPACK bombs: the `h2` crate bounds the header
//!   block by the header-list limit while decoding (before allocating it).
//! - resets the client provokes (malformed frames), and streams reset
//!   before they were accepted: the `h2` crate's own bounds, then
//!   `ENHANCE_YOUR_CALM`.
//! - zero-window stalls: a response is sent only as far as the stream's
//!   send capacity, at most the send buffer per stream.
//! - slow or idle connections: the first request must arrive within the
//!   header timeout, and a connection without open streams is closed after
//!   the idle timeout.

mod coalesce;
pub mod request;
mod send;
pub mod stream;
pub mod upstream;

use coalesce::Coalesce;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;

use crate::core::Core;
use crate::io::within;
use crate::stream::{ClientIo, ServerTls};

/// How long a connection that is going away may take to finish its open
/// streams and flush its GOAWAY.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// What one connection's streams share with its driver.
struct ConnState {
    /// Exchanges running.
    open: Cell<usize>,
    /// Client resets in the leaky bucket, and when it last leaked.
    resets: Cell<f64>,
    leaked_at: Cell<Instant>,
    /// The reset budget is spent: the driver sends GOAWAY.
    calm_down: Cell<bool>,
    /// The driver's task, woken when a stream ends or the budget is spent.
    driver: RefCell<Option<Waker>>,
}

impl ConnState {
    fn wake_driver(&self) {
        if let Some(w) = self.driver.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Counts one stream the client reset before its response was whole;
    /// `max` resets may be outstanding, leaking `max / 10` per second.
    fn count_reset(&self, max: u32) {
        let now = Instant::now();
        let leaked = now.duration_since(self.leaked_at.get()).as_secs_f64() * f64::from(max) / 10.0;
        self.leaked_at.set(now);
        let level = (self.resets.get() - leaked).max(0.0) + 1.0;
        self.resets.set(level);
        if level > f64::from(max) {
            self.calm_down.set(true);
        }
    }
}

enum Next {
    Stream(
        Box<(
            http::Request<h2::RecvStream>,
            h2::server::SendResponse<Bytes>,
        )>,
    ),
    Closed,
    CalmDown,
    Idle,
}

/// The client preface (RFC 9113 §3.4) that opens every HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one HTTP/2 connection over TLS until it closes. `managed`: the
/// client presented a certificate that verifies against the device roots.
pub async fn serve(core: Rc<Core>, tls: ServerTls, peer: SocketAddr, managed: bool) {
    serve_over(core, tls, peer, managed, true).await
}

/// Serves one cleartext HTTP/2 connection (prior knowledge, RFC 9113
/// §3.3) until it closes.
pub async fn serve_cleartext(core: Rc<Core>, tcp: glommio::net::TcpStream, peer: SocketAddr) {
    serve_over(core, tcp, peer, false, false).await
}

/// Whether a plain connection opens with the HTTP/2 preface; waits (up to
/// the header timeout) until its first bytes tell, without reading them.
pub async fn opens_with_preface(core: &Core, tcp: &glommio::net::TcpStream) -> bool {
    let mut first = [0u8; PREFACE.len()];
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let left = core.limits.header_timeout.saturating_sub(started.elapsed());
        let Ok(n) = within(left, async { Ok(tcp.peek(&mut first).await?) }).await else {
            return false;
        };
        if n == 0 || first[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // Part of the preface so far: wait for more. A socket has no "more
        // than n bytes" readiness, so pause, longer each time (a client
        // stalling mid-preface costs a few wake-ups, then the timeout).
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

async fn serve_over<T>(core: Rc<Core>, io: T, peer: SocketAddr, managed: bool, tls: bool)
where
    T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let limits = core.limits.http2.clone();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(core.limits.max_header_bytes as u32)
        .initial_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .max_send_buffer_size(limits.send_buffer)
        .max_local_error_reset_streams(Some(limits.max_resets as usize));
    let opened = Instant::now();
    let handshake = async {
        builder
            .handshake::<_, Bytes>(Coalesce::new(io, core.buffers.clone()))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    let Ok(mut conn) = within(core.limits.header_timeout, handshake).await else {
        return;
    };
    let state = Rc::new(ConnState {
        open: Cell::new(0),
        resets: Cell::new(0.0),
        leaked_at: Cell::new(Instant::now()),
        calm_down: Cell::new(false),
        driver: RefCell::new(None),
    });
    let mut served_any = false;
    // The peer's IP as text for forwarding headers, rendered once for all
    // the connection's streams.
    let ip_text: Rc<str> = peer.ip().to_string().into();
    loop {
        let max_streams = limits.max_streams as usize;
        let next = std::future::poll_fn(|cx| {
            if state.calm_down.get() {
                return Poll::Ready(Ok(Next::CalmDown));
            }
            *state.driver.borrow_mut() = Some(cx.waker().clone());
            if state.open.get() >= max_streams {
                // As many exchanges run as streams may be open: keep the
                // connection's I/O going without taking new streams.
                return conn.poll_closed(cx).map(|_| Ok(Next::Closed));
            }
            conn.poll_accept(cx).map(|accepted| {
                Ok(match accepted {
                    Some(Ok(accepted)) => Next::Stream(Box::new(accepted)),
                    Some(Err(_)) | None => Next::Closed,
                })
            })
        });
        // Waiting without an open stream is bounded: by the header timeout
        // for the first request, by the idle timeout afterwards.
        let next = if state.open.get() == 0 {
            let wait = if served_any {
                core.limits.idle_timeout
            } else {
                core.limits.header_timeout.saturating_sub(opened.elapsed())
            };
            within(wait, next).await.unwrap_or(Next::Idle)
        } else {
            next.await.unwrap_or(Next::Closed)
        };
        match next {
            Next::Stream(accepted) => {
                served_any = true;
                let (req, respond) = *accepted;
                let conn = crate::proxy::gate::Connection::with_context(
                    crate::http::request::ClientContext {
                        peer,
                        tls,
                        http2: true,
                        ip_text: ip_text.clone(),
                    },
                    managed,
                );
                start_stream(&core, &state, req, respond, conn, tls);
            }
            Next::Closed => return,
            Next::Idle => {
                conn.graceful_shutdown();
                break;
            }
            Next::CalmDown => {
                core.metrics.http2_calm_down.add(1);
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                break;
            }
        }
    }
    let drain = std::future::poll_fn(|cx| conn.poll_closed(cx).map(|_| Ok(())));
    let _ = within(DRAIN_TIME, drain).await;
}

/// Runs the request path for one stream on its own task.
fn start_stream(
    core: &Rc<Core>,
    state: &Rc<ConnState>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    conn: crate::proxy::gate::Connection,
    tls: bool,
) {
    let (parts, body) = req.into_parts();
    let mut head = core.buffers.take_scratch();
    let Some(upload) = request::translate(&parts, body.is_end_stream(), &mut head) else {
        respond.send_reset(Reason::PROTOCOL_ERROR);
        core.buffers.give_scratch(head);
        return;
    };
    let head_request = parts.method == http::Method::HEAD;
    let io = stream::StreamIo::new(head, body, upload, respond, head_request, tls);
    let response = io.response();
    state.open.set(state.open.get() + 1);
    let (core, state) = (core.clone(), state.clone());
    // The task's own future stays small: the exchange's future (several
    // KiB) is boxed once when the task first runs instead of being moved
    // whole through the executor's spawn (four copies of it, measured).
    glommio::spawn_local(async move {
        let max_resets = core.limits.http2.max_resets;
        let exchange = async {
            let client = ClientIo::H2(Box::new(io));
            Box::pin(crate::proxy::serve_client(core, client, conn)).await;
            false
        };
        // The client resetting the stream before its response is whole
        // ends the exchange at once, its upstream request with it.
        let reset = async {
            std::future::poll_fn(|cx| response.borrow_mut().poll_reset(cx)).await;
            true
        };
        if futures_lite::future::or(exchange, reset).await {
            state.count_reset(max_resets);
        }
        state.open.set(state.open.get() - 1);
        state.wake_driver();
    })
    .detach();
}
