//! The request path: one driver ([`serve_connection`]) running named
//! phases, in order, over one per-request context ([`Exchange`]).
//!
//! | # | phase | module | when it runs | what it may do |
//! |---|---|---|---|---|
//! | 1 | read head | [`head`] | between requests | read and parse the head (codec); refuse malformed input |
//! | 2 | route | [`head`] | head complete | Host → app; refuse unknown hosts (404/421) |
//! | 3 | identity | [`gate::identity`] | every request | proxy paths, sign-in cookie or trusted headers; sign-in redirect / 401 |
//! | 4 | access | [`gate::access`] | signed in or not required | access policies; block page; the notice |
//! | 5 | session request | [`session_request`] | session policies or custom activities apply | custom activities, upload control; block page |
//! | 6 | connect | [`upstream`] | request admitted | pooled or new upstream connection; 502/504 |
//! | 7 | send | [`upstream`] | connected | head and body to the app (hosts unwrapped) |
//! | 8 | read response | [`upstream`] | request sent | app's head, interim responses, headers rewritten |
//! | 9 | session response | [`session_response`] | session policies apply | download control: relay, replace or encrypt |
//! | 10 | relay | [`relay`] | response let through | body (rewritten) to the client, or a tunnel |
//! | 11 | finish | [`finish`] | exchange over | pool the upstream, keep or close the client |
//! | 12 | log | [`finish`] | always | traffic and activity records; the metrics |
//!
//! Each phase is a function of the [`Exchange`] returning a [`Step`]:
//! continue, respond (a synthesised answer from [`crate::answers`]), fail
//! (an [`ExchangeError`]: the error page, then close) or done (the phase
//! finished the exchange). Wire protocol stays below the phases: the
//! HTTP/1.1 codec ([`crate::http`]) parses the request head into a
//! [`crate::http::request::RequestInfo`] with its head index and writes
//! the upstream head; the response codec does the same for the app's head.
//! `docs/ARCHITECTURE.md` carries this chart; a test keeps them equal.

pub mod error;
pub mod exchange;
pub mod finish;
pub mod gate;
pub mod head;
pub mod relay;
pub mod session_request;
pub mod session_response;
pub mod tunnel;
pub mod upstream;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::AsyncWriteExt;

pub use error::{Blame, ExchangeError};
pub use exchange::{Exchange, Outcome, Step};

use crate::answers;
use crate::core::Core;
use crate::io::{Counted, Inbound};
use crate::logs;
use crate::stream::ClientIo;
use gate::Connection;

/// One phase of the chart: its name, its module and the function that
/// runs it (what `docs/ARCHITECTURE.md` is checked against).
pub struct Phase {
    pub name: &'static str,
    pub module: &'static str,
    pub function: &'static str,
}

/// The phases, in the order the driver runs them.
pub const PHASES: &[Phase] = &[
    Phase {
        name: "read head",
        module: "proxy/head.rs",
        function: "read_head",
    },
    Phase {
        name: "route",
        module: "proxy/head.rs",
        function: "route",
    },
    Phase {
        name: "identity",
        module: "proxy/gate/identity.rs",
        function: "identity",
    },
    Phase {
        name: "access",
        module: "proxy/gate/access.rs",
        function: "access",
    },
    Phase {
        name: "session request",
        module: "proxy/session_request.rs",
        function: "session_request",
    },
    Phase {
        name: "connect",
        module: "proxy/upstream.rs",
        function: "connect",
    },
    Phase {
        name: "send",
        module: "proxy/upstream.rs",
        function: "send",
    },
    Phase {
        name: "read response",
        module: "proxy/upstream.rs",
        function: "read_response",
    },
    Phase {
        name: "session response",
        module: "proxy/session_response.rs",
        function: "session_response",
    },
    Phase {
        name: "relay",
        module: "proxy/relay.rs",
        function: "relay",
    },
    Phase {
        name: "finish",
        module: "proxy/finish.rs",
        function: "done",
    },
    Phase {
        name: "log",
        module: "proxy/finish.rs",
        function: "log",
    },
];

/// Serves one client connection until it closes. `managed`: the client
/// presented a certificate that verifies against the device roots.
pub async fn serve_connection(core: Rc<Core>, stream: ClientIo, peer: SocketAddr, managed: bool) {
    let conn = Connection::new(peer, stream.is_tls(), managed);
    serve_client(core, stream, conn).await
}

/// [`serve_connection`] with the connection's facts made by the caller
/// (an HTTP/2 stream's come from its connection).
pub async fn serve_client(core: Rc<Core>, stream: ClientIo, mut conn: Connection) {
    conn.ctx.http2 = matches!(stream, ClientIo::H2(_));
    let mut client = Inbound::pooled(Counted::new(stream), core.buffers.clone());
    // Head and output buffers are taken from the core's pool for each
    // exchange and given back before waiting for the next request.
    let mut upstream_head = Vec::new();
    let mut out = Vec::new();
    loop {
        // Between requests the connection holds no buffer: an idle
        // keep-alive connection costs its socket and this task only.
        client.release_if_idle();
        for b in [&mut upstream_head, &mut out] {
            if b.capacity() > 0 {
                core.buffers.give_scratch(std::mem::take(b));
            }
        }
        let (req, snap) =
            match head::read_head(&core, &mut client, &conn.ctx, &mut upstream_head).await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(rejection) => {
                    let started_unix_us = logs::now_unix_us();
                    let down0 = client.stream.written();
                    answers::error_response(&mut out, rejection.status, &rejection.reason, true);
                    let _ = client.stream.write_all(&out).await;
                    let _ = client.stream.flush().await;
                    finish::log_unrouted(
                        &core,
                        (&conn.ctx, &client),
                        &rejection,
                        started_unix_us,
                        down0,
                    );
                    tunnel::lingering_close(client).await;
                    return;
                }
            };
        if out.capacity() == 0 {
            out = core.buffers.take_scratch();
        }
        let request_id = if snap.access.allows_everything() {
            0
        } else {
            core.next_request_id()
        };
        let mut x = Exchange {
            core: &core,
            snap: &snap,
            served: exchange::Served {
                started: Some(Instant::now()),
                started_unix_us: if core.logs.is_some() {
                    logs::now_unix_us()
                } else {
                    0
                },
                up0: client.consumed(),
                down0: client.stream.written(),
                ..Default::default()
            },
            client: &mut client,
            conn: &mut conn,
            req,
            upstream_head: std::mem::take(&mut upstream_head),
            out: std::mem::take(&mut out),
            request_id,
            admitted: Default::default(),
            head_in_buffer: true,
            continued: false,
            hold: None,
            upstream: None,
            pool_key: None,
            response: None,
            recognized: None,
            late_upload_name: None,
            body_start: 0,
        };
        let outcome = run(&mut x).await;
        let _ = x.client.stream.flush().await;
        finish::log(&mut x, &outcome);
        upstream_head = std::mem::take(&mut x.upstream_head);
        out = std::mem::take(&mut x.out);
        drop(x);
        drop(snap);
        match outcome {
            Outcome::KeepAlive => continue,
            Outcome::Close => break,
            Outcome::CloseAfterError(_) => {
                tunnel::lingering_close(client).await;
                return;
            }
            Outcome::Tunnel(up) => {
                tunnel::tunnel(client, up, core.limits.tunnel_idle_timeout).await;
                return;
            }
        }
    }
    let _ = client.stream.close().await;
}

/// Ends the exchange when a phase did not say continue.
macro_rules! proceed {
    ($x:expr, $step:expr) => {
        match $step {
            Step::Continue => {}
            Step::Respond(status) => return answer($x, status).await,
            Step::Fail(e) => return fail($x, &e).await,
            Step::Done(outcome) => return outcome,
        }
    };
}

/// Phases 3–11 for one routed request.
async fn run(x: &mut Exchange<'_>) -> Outcome {
    proceed!(x, gate::identity::identity(x).await);
    proceed!(x, gate::access::access(x));
    if x.snap.session_policies.controls(
        &x.admitted.session_rules,
        palisade_schema::session::Control::Download,
    ) {
        x.req.index.neutralize_ranges(&mut x.upstream_head);
    }
    x.consume_head();
    x.body_start = x.client.consumed();
    let upload = recognize_upload(x);
    // A chunked body already buffered is checked whole before anything is
    // sent upstream, so a malformed one is refused without the app seeing
    // a byte. (Bodies still arriving are checked as they stream; a framing
    // error then aborts the upstream connection mid-message.)
    if x.req.framing == crate::http::Framing::Chunked {
        if let Err(e) = crate::http::chunked::check_prefix(x.client.buffered()) {
            return fail(
                x,
                &ExchangeError::downstream(format!("bad request body: {e}")),
            )
            .await;
        }
    }
    let session_on = !x.admitted.session_rules.is_empty() || !x.app().profile.activities.is_empty();
    if session_on {
        proceed!(x, session_request::session_request(x).await);
    }
    proceed!(x, upstream::exchange_with_app(x).await);
    let status = x.response.as_ref().map_or(0, |r| r.status);
    x.served.status = status;
    let late_name = x.late_upload_name.take().filter(|name| !name.is_empty());
    if let Some(file_name) = upload.or(late_name) {
        x.recognized = Some(exchange::ActivityNote {
            name: "upload".into(),
            file_name,
            file_size: x.client.consumed() - x.body_start,
            ..Default::default()
        });
    }
    let switching = x.response.as_ref().is_some_and(|r| r.switching_protocols);
    if session_on && !switching {
        proceed!(x, session_response::session_response(x).await);
    }
    proceed!(x, relay::relay(x).await);
    Outcome::Close
}

/// An upload the log names (the first file part of a multipart body, if
/// it has arrived), recognized before the body is sent. A multipart body
/// whose file part is still on the way is marked for *send* to name
/// (`late_upload_name`): a client that sent `Expect: 100-continue` sends
/// no body before it is asked.
fn recognize_upload(x: &mut Exchange<'_>) -> Option<Vec<u8>> {
    if x.core.logs.is_none() || !x.req.framing.has_body() {
        return None;
    }
    let (method, target) = x.method_and_target();
    let content_type = x.req.index.content_type.of(&x.upstream_head);
    let upload = crate::activity::upload(&x.app().profile, method, target, content_type)?;
    let name = crate::activity::upload_file_name(&upload, x.client.buffered(), target);
    let multipart = matches!(upload, crate::activity::Upload::Multipart(_));
    if name.is_none() && multipart {
        x.late_upload_name = Some(Vec::new());
    }
    name
}

/// Sends a response the proxy wrote itself (in `x.out`). The connection
/// stays open unless the request's body is unread or the client asked to
/// close.
async fn answer(x: &mut Exchange<'_>, status: u16) -> Outcome {
    x.served.status = status;
    x.consume_head();
    if x.client.stream.write_all(&x.out).await.is_err() {
        return Outcome::Close;
    }
    // An unread body may still be on the way: it must never be parsed as
    // a request, so the connection ends (after a lingering close).
    if x.req.framing.has_body() || !x.req.keep_alive {
        return Outcome::CloseAfterError(status);
    }
    Outcome::KeepAlive
}

/// Answers a failed exchange with an error page and closes: the request
/// body may be partly unread, and the upstream connection is dropped.
async fn fail(x: &mut Exchange<'_>, e: &ExchangeError) -> Outcome {
    if let Some(why) = e.upstream {
        x.core.metrics.upstream_failure(why);
    }
    x.consume_head();
    answers::error_response(&mut x.out, e.status, &e.detail, !x.req.is_head);
    let _ = x.client.stream.write_all(&x.out).await;
    let _ = x.client.stream.flush().await;
    x.out.clear();
    Outcome::CloseAfterError(e.status)
}
