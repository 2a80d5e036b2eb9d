//! The request path of one client connection, as named phases:
//!
//! 1. `read_request_head` — read and parse the head in place; strict
//!    framing checks; route Host → app (unknown hosts never leave the proxy).
//! 2. `acquire_upstream` — a pooled keep-alive connection or a new one.
//! 3. `send_request` — the rewritten head, then the body streamed.
//! 4. `read_response_head` — parse the app's head, forward interim 1xx,
//!    rewrite headers toward the user.
//! 5. `send_response` — the body streamed through the body filter.
//! 6. `finish` — return the upstream connection to the pool, decide whether
//!    the client connection stays open.
//!
//! Every failure is an [`ExchangeError`] saying who is to blame and whether
//! a retry is safe; the client gets a 4xx/5xx page when nothing of the
//! response was sent yet, and the connection is closed otherwise, so a
//! broken exchange can never leak into the next request on the connection.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::gate::{self, Admitted, ConnGate, Gate};
use crate::stream::ClientIo;
use futures_lite::AsyncWriteExt;

use crate::body::{self, BodyFilter, RelayError, SinkFraming};
use crate::http::request::{prepare_request, ClientContext, Parsed, Rejection, RequestInfo};
use crate::http::response::{prepare_response, ClientFraming, ParsedResponse, ResponseInfo};
use crate::http::Framing;
use crate::io::{within, BufferPool, Counted, Inbound};
use crate::limits::Limits;
use crate::logs::{self, ActivityFacts, LogShard, TrafficFacts};
use crate::pages;
use crate::rewrite::codec::Transcoder;
use crate::rewrite::content::TextKind;
use crate::rewrite::unwrap::BodyUnwrap;
use crate::rewrite::Rewriter;
use crate::routes::RouteTable;
use crate::session::phase::ActivityNote;
use crate::upstream::{self, Pool, Target, UpstreamConn};

/// A client connection (TCP or TLS): counts the bytes sent for the
/// traffic log.
pub type ClientStream = Counted<ClientIo>;

/// Initial read buffer of a client connection.
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// Interim responses accepted before the final one.
const MAX_INTERIM_RESPONSES: usize = 16;

/// Per-core state shared by that core's connections (never across cores).
pub struct Core {
    /// The current snapshot's routes. A request takes its own reference
    /// when its head arrives and keeps it to its end; a swap only changes
    /// what later requests see, and an old table is freed when its last
    /// request ends.
    pub routes: RefCell<Rc<RouteTable>>,
    pub limits: Limits,
    pub pool: RefCell<Pool>,
    /// Read and scratch buffers lent to this core's connections.
    pub buffers: Rc<BufferPool>,
    /// This core's traffic and activity log (`None`: logging is off).
    pub logs: Option<RefCell<LogShard>>,
    /// Request ids for block pages: a per-core random start, counted up.
    request_ids: std::cell::Cell<u64>,
    /// Bytes of files currently held for session control on this core
    /// (bounded by `session::flow::MAX_HELD_BYTES_PER_CORE`).
    pub held_bytes: std::cell::Cell<u64>,
}

impl Core {
    pub fn new(routes: RouteTable, limits: Limits) -> Core {
        let pool = Pool::new(limits.pool_max_idle, limits.pool_idle_timeout);
        Core {
            routes: RefCell::new(Rc::new(routes)),
            limits,
            pool: RefCell::new(pool),
            buffers: Rc::new(BufferPool::new(CLIENT_BUFFER, 4096)),
            logs: None,
            request_ids: std::cell::Cell::new(random_u64()),
            held_bytes: std::cell::Cell::new(0),
        }
    }

    /// A new request id (shown as 16 hex digits on block pages and in
    /// the log).
    pub fn next_request_id(&self) -> u64 {
        let id = self.request_ids.get().wrapping_add(1).max(1);
        self.request_ids.set(id);
        id
    }

    /// Turns on this core's log with `shard`.
    pub fn with_logs(mut self, shard: LogShard) -> Core {
        self.logs = Some(RefCell::new(shard));
        self
    }
}

/// Who caused a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Downstream,
    Upstream,
    Internal,
}

/// A failed exchange.
#[derive(Debug)]
pub struct ExchangeError {
    pub status: u16,
    pub blame: Blame,
    /// Failed before any request byte reached the app (or on a reused
    /// connection before any response byte): replaying is safe for an
    /// idempotent request without a body.
    pub retry_safe: bool,
    pub detail: String,
}

/// How an exchange ended for the client connection.
pub enum Outcome {
    KeepAlive,
    Close,
    /// An error page with this status was sent; input may be pending.
    CloseAfterError(u16),
    /// 101 Switching Protocols: tunnel bytes between the two.
    Tunnel(UpstreamConn),
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}

/// Serves one client connection until it closes. `managed`: the client
/// presented a certificate that verifies against the device roots.
pub async fn serve_connection(core: Rc<Core>, stream: ClientIo, peer: SocketAddr, managed: bool) {
    let tls = matches!(stream, ClientIo::Tls(_));
    let mut client = Inbound::pooled(Counted::new(stream), core.buffers.clone());
    let ctx = ClientContext::new(peer, tls);
    let mut conn_gate = ConnGate::new(managed);
    // Head and output buffers are taken from the core's pool for each
    // exchange and given back before waiting for the next request.
    let mut upstream_head = Vec::new();
    let mut scratch = Vec::new();
    loop {
        // Between requests the connection holds no buffer: an idle
        // keep-alive connection costs its socket and this task only.
        client.release_if_idle();
        for b in [&mut upstream_head, &mut scratch] {
            if b.capacity() > 0 {
                core.buffers.give_scratch(std::mem::take(b));
            }
        }
        let (req, routes) =
            match read_request_head(&core, &mut client, &ctx, &mut upstream_head).await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(rejection) => {
                    let started_unix_us = logs::now_unix_us();
                    let down0 = client.stream.written();
                    pages::error_response(&mut scratch, rejection.status, &rejection.reason, true);
                    let _ = client.stream.write_all(&scratch).await;
                    let _ = client.stream.flush().await;
                    if let Some(log) = &core.logs {
                        // Refused before routing: no app, no parsed target.
                        log.borrow_mut().record(
                            &refused_facts(&ctx, &client, rejection.status, started_unix_us, down0),
                            None,
                        );
                    }
                    lingering_close(client).await;
                    return;
                }
            };
        let started = Instant::now();
        let started_unix_us = if core.logs.is_some() {
            logs::now_unix_us()
        } else {
            0
        };
        let (up0, down0) = (client.consumed(), client.stream.written());
        if scratch.capacity() == 0 {
            scratch = core.buffers.take_scratch();
        }
        let mut served = Served::default();
        let request_id = if routes.access.allows_everything() {
            0
        } else {
            core.next_request_id()
        };

        let verdict = gate::check(
            &gate::Ask {
                routes: &routes,
                req: &req,
                head: client.buffered(),
                upstream_head: &upstream_head,
                peer: peer.ip(),
                tls,
                request_id,
            },
            &mut conn_gate,
            &mut scratch,
        );
        client.consume(req.head_len);
        let mut admitted = Admitted::default();
        let outcome = match verdict {
            Gate::Pass(a) => {
                admitted = a;
                if routes.session.controls(
                    &admitted.session_rules,
                    palisade_schema::session::Control::Download,
                ) {
                    crate::session::flow::neutralize_ranges(&mut upstream_head);
                }
                exchange(
                    &core,
                    &routes,
                    &mut client,
                    &req,
                    &upstream_head,
                    (&admitted, request_id),
                    &mut scratch,
                    &mut served,
                )
                .await
            }
            Gate::Answered {
                status,
                admitted: a,
            } => {
                admitted = a;
                served.status = status;
                answer(&mut client, &req, &scratch, served.status).await
            }
            Gate::Callback { host, login_cookie } => {
                let (status, user) = sign_in_callback(
                    &core,
                    &routes,
                    &mut client,
                    &req,
                    &host,
                    &login_cookie,
                    &mut scratch,
                )
                .await;
                served.status = status;
                admitted.devices = conn_gate.conn_devices;
                if let Some(user) = user {
                    served.user = user;
                }
                answer(&mut client, &req, &scratch, served.status).await
            }
        };
        let _ = client.stream.flush().await;
        if let Some(log) = &core.logs {
            if let Outcome::CloseAfterError(status) = outcome {
                served.status = status;
            }
            let (method, target, user_agent) = req.log_fields.split(&upstream_head);
            let facts = TrafficFacts {
                request_id,
                started_unix_us,
                duration_us: started.elapsed().as_micros().min(u32::MAX as u128) as u32,
                peer: ctx.peer,
                tls: ctx.tls,
                app: &routes.apps[req.app].name,
                host: req.app_host.as_str().as_bytes(),
                method,
                target,
                user_agent,
                status: served.status,
                bytes_up: client.consumed() - up0,
                bytes_down: client.stream.written() - down0,
                action: log_action(&admitted, served.status),
                policy: admitted.policy.map_or("", |p| routes.access.policy_name(p)),
                user: if served.user.is_empty() {
                    admitted.user()
                } else {
                    &served.user
                },
                session_id: "",
                device_tags: crate::access::device_tags_text(admitted.devices),
            };
            let activity = served.activity.as_ref().map(|a| ActivityFacts {
                name: &a.name,
                file_name: &a.file_name,
                file_size: a.file_size,
                action: a.action,
                policy: a.policy.as_deref().unwrap_or(""),
                detail: &a.detail,
            });
            log.borrow_mut().record(&facts, activity.as_ref());
        }
        drop(routes);
        match outcome {
            Outcome::KeepAlive => continue,
            Outcome::Close => break,
            Outcome::CloseAfterError(_) => {
                lingering_close(client).await;
                return;
            }
            Outcome::Tunnel(up) => {
                tunnel(client, up, core.limits.tunnel_idle_timeout).await;
                return;
            }
        }
    }
    let _ = client.stream.close().await;
}

/// Phase 1: reads until a whole head is buffered and parses it. `Ok(None)`
/// when the client closed or idled out between requests.
async fn read_request_head(
    core: &Core,
    client: &mut Inbound<ClientStream>,
    ctx: &ClientContext,
    out: &mut Vec<u8>,
) -> Result<Option<(RequestInfo, Rc<RouteTable>)>, Rejection> {
    let limits = &core.limits;
    let mut started = (!client.buffered().is_empty()).then(Instant::now);
    let max_buffer = limits.max_header_bytes.max(limits.max_request_line) + 1024;
    loop {
        if started.is_some() {
            // The snapshot current when the head is complete serves the
            // whole request.
            let routes = core.routes.borrow().clone();
            if out.capacity() == 0 {
                *out = core.buffers.take_scratch();
            }
            if let Parsed::Complete(info) =
                prepare_request(client.buffered(), &routes, limits, ctx, out)?
            {
                return Ok(Some((info, routes)));
            }
        }
        let wait = match started {
            None => limits.idle_timeout,
            Some(t0) => limits.header_timeout.saturating_sub(t0.elapsed()),
        };
        if wait.is_zero() {
            return Err(Rejection {
                status: 408,
                reason: "request head not received in time".into(),
            });
        }
        match within(wait, client.fill(max_buffer)).await {
            Ok(0) => return Ok(None),
            Ok(_) => {
                started.get_or_insert_with(Instant::now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return match started {
                    None => Ok(None),
                    Some(_) => Err(Rejection {
                        status: 408,
                        reason: "request head not received in time".into(),
                    }),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return Err(Rejection {
                    status: 431,
                    reason: "request header section too large".into(),
                });
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Phases 2–6 for one request whose head has been consumed.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    core: &Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    upstream_head: &[u8],
    (admitted, request_id): (&Admitted, u64),
    scratch: &mut Vec<u8>,
    served: &mut Served,
) -> Outcome {
    let route = &routes.apps[req.app];
    // Multipart uploads carry files: name the first one if its part
    // header has already arrived.
    let logging = core.logs.is_some();
    let upload_name = (logging && matches!(req.unwrap_body, Some(BodyUnwrap::Multipart { .. })))
        .then(|| logs::disposition::multipart_file_name(client.buffered()))
        .flatten();
    let body_start = client.consumed();
    let target = match Target::for_request(route, req.app_host.as_str()) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                client,
                req,
                scratch,
                &ExchangeError {
                    status: 502,
                    blame: Blame::Internal,
                    retry_safe: false,
                    detail: format!("app \"{}\": bad upstream name: {e}", route.name),
                },
            )
            .await
        }
    };
    // A chunked body already buffered is checked whole before anything is
    // sent upstream, so a malformed one is refused without the app seeing
    // a byte. (Bodies still arriving are checked as they stream; a framing
    // error then aborts the upstream connection mid-message.)
    if req.framing == Framing::Chunked {
        if let Err(e) = crate::http::chunked::check_prefix(client.buffered()) {
            let err = downstream_error(&format!("bad request body: {e}"));
            return fail(client, req, scratch, &err).await;
        }
    }
    // Phase 6 (request side): custom activities and upload control.
    let session_on = !admitted.session_rules.is_empty() || !route.profile.activities.is_empty();
    let mut note = None;
    // Set when session control asked for the body (100 Continue sent).
    let mut continued = false;
    // Bytes this exchange holds for inspection, released when it ends.
    let mut budget = None;
    if session_on {
        use crate::session::phase::{before_upstream, BeforeUpstream};
        let decided = before_upstream(
            core,
            routes,
            client,
            req,
            upstream_head,
            admitted,
            request_id,
            scratch,
            &mut note,
            &mut continued,
            &mut budget,
        )
        .await;
        if let BeforeUpstream::Refused { status, body_read } = decided {
            served.status = status;
            served.activity = note;
            if client.stream.write_all(scratch).await.is_err() {
                return Outcome::Close;
            }
            return if body_read && req.keep_alive {
                Outcome::KeepAlive
            } else {
                Outcome::CloseAfterError(status)
            };
        }
    }
    let mut body_sent = false;
    let mut attempt = 0;
    let (mut up, resp) = loop {
        attempt += 1;
        // A connection from the pool may have been closed by the app in the
        // meantime; a fresh one failing is a real failure.
        let pooled = if attempt == 1 {
            take_idle(core, &target.key).await
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(c) => c,
            None => match acquire_upstream(core, &target, &route.name).await {
                Ok(c) => c,
                Err(e) => return fail(client, req, scratch, &e).await,
            },
        };
        let result = async {
            if req.expect_continue && !body_sent && !continued {
                // The app is reachable: ask the client for its body
                // (RFC 9110 §10.1.1). Expect itself is not forwarded.
                client
                    .stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(|e| downstream_error(&format!("writing 100 Continue: {e}")))?;
                let _ = client.stream.flush().await;
            }
            body_sent |= req.framing.has_body();
            send_request(core, routes, client, &mut up, req, upstream_head, scratch).await?;
            read_response_head(core, routes, client, &mut up, req, scratch, &route.name).await
        }
        .await;
        match result {
            Ok(resp) => break (up, resp),
            Err(e)
                if reused
                    && e.retry_safe
                    && req.idempotent
                    && !req.framing.has_body()
                    && attempt == 1 =>
            {
                continue;
            }
            Err(e) => return fail(client, req, scratch, &e).await,
        }
    };

    // Phase 5: the response head is in `scratch`; stream the body.
    served.status = resp.status;
    if let Some(name) = upload_name {
        served.activity = Some(ActivityNote {
            name: "upload".into(),
            file_name: name,
            file_size: client.consumed() - body_start,
            ..Default::default()
        });
    }
    let download = resp
        .content_disposition
        .filter(|_| logging)
        .and_then(|(start, end)| scratch.get(start as usize..end as usize))
        .and_then(logs::disposition::attachment_name);
    if session_on && !resp.switching_protocols {
        use crate::session::phase::{on_response, OnResponse};
        let decided = on_response(
            core,
            routes,
            client,
            &mut up,
            req,
            upstream_head,
            &resp,
            admitted,
            request_id,
            scratch,
            &mut note,
            &mut budget,
        )
        .await;
        match decided {
            Ok(OnResponse::Relay) => {}
            Ok(OnResponse::Done {
                outcome,
                reuse_upstream,
            }) => {
                served.activity = note;
                if reuse_upstream {
                    core.pool.borrow_mut().put(&target.key, up);
                }
                return outcome;
            }
            Err(reason) => {
                let e = ExchangeError {
                    status: 502,
                    blame: Blame::Upstream,
                    retry_safe: false,
                    detail: format!("app \"{}\": {reason}", route.name),
                };
                return fail(client, req, scratch, &e).await;
            }
        }
    }
    if resp.switching_protocols {
        if client.stream.write_all(scratch).await.is_err() {
            return Outcome::Close;
        }
        return Outcome::Tunnel(up);
    }
    let sink_framing = match resp.client_framing {
        ClientFraming::Chunked => SinkFraming::Chunked,
        _ => SinkFraming::Raw,
    };
    let upstream_framing = resp.upstream_framing;
    let mut transcoder = resp.rewrite.map(|plan| {
        let rewriter = Rewriter::new(routes, plan.kind == TextKind::Html)
            .with_contexts(route.bare_host_contexts.as_ref());
        Transcoder::new(rewriter, plan.from, plan.to)
    });
    let relayed = body::relay(
        &mut up,
        &mut client.stream,
        upstream_framing,
        sink_framing,
        transcoder.as_mut().map(|t| t as &mut dyn BodyFilter),
        scratch,
        core.limits.body_timeout,
        upstream::UPSTREAM_BUFFER,
    )
    .await;
    scratch.clear();
    if let (Some(name), Ok(size)) = (download, &relayed) {
        served.activity = Some(ActivityNote {
            name: "download".into(),
            file_name: name,
            file_size: *size,
            ..Default::default()
        });
    }
    if let Some(mut n) = note {
        if let (0, Ok(size)) = (n.file_size, &relayed) {
            n.file_size = *size;
        }
        served.activity = Some(n);
    }
    match relayed {
        Ok(_) => {}
        // Nothing reached the client yet (its head was held back with the
        // first body bytes): it still gets a proper error page.
        Err(RelayError::Filter {
            reason,
            sent_nothing: true,
        }) => {
            let e = ExchangeError {
                status: 502,
                blame: Blame::Upstream,
                retry_safe: false,
                detail: format!(
                    "app \"{}\" sent a body that cannot be rewritten: {reason}",
                    route.name
                ),
            };
            return fail(client, req, scratch, &e).await;
        }
        // Part of the response is out: all we can do is close.
        Err(_) => return Outcome::Close,
    }

    // Phase 6.
    if resp.upstream_reusable {
        core.pool.borrow_mut().put(&target.key, up);
    }
    if resp.client_keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// The log's action for an exchange: the access decision, or `block`
/// when the proxy refused the request itself (sign-in required or failed).
fn log_action(admitted: &Admitted, status: u16) -> palisade_schema::logrec::Action {
    use palisade_schema::access::AccessAction;
    use palisade_schema::logrec::Action;
    match admitted.action {
        AccessAction::Block => Action::Block,
        _ if matches!(status, 401 | 403) && admitted.session.is_none() => Action::Block,
        AccessAction::Allow => Action::Allow,
        AccessAction::Audit => Action::Audit,
        AccessAction::Monitor => Action::Monitor,
    }
}

/// Sends a response the proxy wrote itself (in `out`). The connection
/// stays open unless the request's body is unread or the client asked to
/// close.
async fn answer(
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    out: &[u8],
    status: u16,
) -> Outcome {
    if client.stream.write_all(out).await.is_err() {
        return Outcome::Close;
    }
    // An unread body may still be on the way: it must never be parsed as
    // a request, so the connection ends (after a lingering close).
    if req.framing.has_body() || !req.keep_alive {
        return Outcome::CloseAfterError(status);
    }
    Outcome::KeepAlive
}

/// Reads the sign-in callback's form body (Content-Length, bounded) and
/// completes the sign-in; the response is left in `out`.
async fn sign_in_callback(
    core: &Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    host: &str,
    login_cookie: &[u8],
    out: &mut Vec<u8>,
) -> (u16, Option<String>) {
    let len = match req.framing {
        Framing::Length(n) if n <= gate::MAX_CALLBACK_BODY => n as usize,
        _ => {
            pages::error_response(
                out,
                400,
                "the sign-in callback needs a form body with a Content-Length (at most 64 KiB)",
                !req.is_head,
            );
            return (400, None);
        }
    };
    let deadline = Instant::now() + core.limits.body_timeout;
    while client.buffered().len() < len {
        let left = deadline.saturating_duration_since(Instant::now());
        match within(left, client.fill(len.max(CLIENT_BUFFER))).await {
            Ok(n) if n > 0 => {}
            _ => {
                pages::error_response(out, 400, "the sign-in form did not arrive", true);
                return (400, None);
            }
        }
    }
    let form = client.buffered()[..len].to_vec();
    client.consume(len);
    let (status, user, reason) = gate::complete_callback(
        routes,
        req.app,
        req.app_host.as_str(),
        host,
        login_cookie,
        &form,
        out,
    );
    if !reason.is_empty() {
        // The refusal is in the log record (status 403, action block); say
        // why on the data plane's error stream too.
        eprintln!("sign-in refused for {host}: {reason}");
    }
    (status, user)
}

/// What the traffic log needs from an exchange.
#[derive(Default)]
struct Served {
    /// Signed in by this request (the sign-in callback).
    user: String,
    status: u16,
    /// A recognized activity and what session control decided.
    activity: Option<ActivityNote>,
}

/// The log facts of a request refused before it was routed.
fn refused_facts<'a>(
    ctx: &'a ClientContext,
    client: &Inbound<ClientStream>,
    status: u16,
    started_unix_us: u64,
    down0: u64,
) -> TrafficFacts<'a> {
    TrafficFacts {
        request_id: 0,
        started_unix_us,
        duration_us: 0,
        peer: ctx.peer,
        tls: ctx.tls,
        app: "",
        host: b"",
        method: b"",
        target: b"",
        user_agent: b"",
        status,
        bytes_up: client.buffered().len() as u64,
        bytes_down: client.stream.written() - down0,
        action: palisade_schema::logrec::Action::Block,
        policy: "",
        user: "",
        session_id: "",
        device_tags: "",
    }
}

/// Phase 2a: an idle pooled connection that is still usable. One that has
/// bytes waiting (an upstream that sent more than its response: never
/// relayed to the next request) or was closed by the app is dropped.
async fn take_idle(core: &Core, key: &str) -> Option<UpstreamConn> {
    loop {
        let conn = core.pool.borrow_mut().take(key)?;
        if conn.stream.is_idle_and_open() {
            return Some(conn);
        }
    }
}

/// Phase 2b: a new upstream connection.
async fn acquire_upstream(
    core: &Core,
    target: &Target<'_>,
    app: &str,
) -> Result<UpstreamConn, ExchangeError> {
    upstream::connect(target, core.limits.connect_timeout)
        .await
        .map_err(|e| {
            let status = if matches!(e, upstream::ConnectError::TimedOut) {
                504
            } else {
                502
            };
            ExchangeError {
                status,
                blame: Blame::Upstream,
                retry_safe: true,
                detail: format!("app \"{app}\" ({}): {e}", target.key),
            }
        })
}

/// Phase 3: the head, then the body with its framing re-encoded.
async fn send_request(
    core: &Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    up: &mut UpstreamConn,
    req: &RequestInfo,
    head: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<(), ExchangeError> {
    scratch.clear();
    if let Some(sent) = send_small_unwrapped_body(routes, client, up, req, head, scratch).await {
        return sent;
    }
    scratch.extend_from_slice(head);
    let sink_framing = if req.framing == Framing::Chunked || req.unwrap_body.is_some() {
        SinkFraming::Chunked
    } else {
        SinkFraming::Raw
    };
    let mut unwrapper = req.unwrap_body.map(|u| u.filter(routes));
    let result = body::relay(
        client,
        &mut up.stream,
        req.framing,
        sink_framing,
        unwrapper.as_deref_mut().map(|u| u as &mut dyn BodyFilter),
        scratch,
        core.limits.body_timeout,
        CLIENT_BUFFER.max(core.limits.max_header_bytes),
    )
    .await;
    scratch.clear();
    match result {
        Ok(_) => Ok(()),
        Err(RelayError::Sink(e)) => Err(ExchangeError {
            status: 502,
            blame: Blame::Upstream,
            retry_safe: true,
            detail: format!("sending the request to the app failed: {e}"),
        }),
        Err(RelayError::Framing(e)) => Err(ExchangeError {
            status: 400,
            blame: Blame::Downstream,
            retry_safe: false,
            detail: format!("bad request body: {e}"),
        }),
        Err(RelayError::Source(e)) => {
            Err(downstream_error(&format!("reading the request body: {e}")))
        }
        Err(RelayError::Filter { reason, .. }) => Err(ExchangeError {
            status: 502,
            blame: Blame::Internal,
            retry_safe: false,
            detail: format!("rewriting the request body failed: {reason}"),
        }),
    }
}

/// Unwrapped request bodies up to this size that have fully arrived are
/// sent with an exact Content-Length instead of chunked: some apps refuse
/// chunked uploads (411).
const SMALL_UNWRAPPED_BODY: u64 = 64 * 1024;

/// Sends a small, fully buffered form/JSON/multipart body unwrapped with
/// its new exact length; `None` when the body is not such a body (it then
/// streams chunked).
async fn send_small_unwrapped_body(
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    up: &mut UpstreamConn,
    req: &RequestInfo,
    head: &[u8],
    scratch: &mut Vec<u8>,
) -> Option<Result<(), ExchangeError>> {
    let unwrap = req.unwrap_body?;
    let Framing::Length(n) = req.framing else {
        return None;
    };
    if n > SMALL_UNWRAPPED_BODY || (client.buffered().len() as u64) < n {
        return None;
    }
    // prepare_request announced the body as chunked (it could not know
    // the body had arrived): swap that field for the exact length.
    const CHUNKED: &[u8] = b"\r\nTransfer-Encoding: chunked\r\n";
    let at = memchr::memmem::find(head, CHUNKED)?;
    let mut body = Vec::with_capacity(n as usize + 64);
    let mut filter = unwrap.filter(routes);
    let input = &client.buffered()[..n as usize];
    if filter.feed(input, &mut body).is_err() || filter.finish(&mut body).is_err() {
        return None;
    }
    scratch.extend_from_slice(&head[..at]);
    scratch.extend_from_slice(b"\r\nContent-Length: ");
    scratch.extend_from_slice(crate::http::request::itoa(body.len() as u64).as_bytes());
    scratch.extend_from_slice(b"\r\n");
    scratch.extend_from_slice(&head[at + CHUNKED.len()..]);
    scratch.extend_from_slice(&body);
    let result = up.stream.write_all(scratch).await;
    scratch.clear();
    client.consume(n as usize);
    Some(result.map_err(|e| ExchangeError {
        status: 502,
        blame: Blame::Upstream,
        retry_safe: true,
        detail: format!("sending the request to the app failed: {e}"),
    }))
}

fn downstream_error(detail: &str) -> ExchangeError {
    ExchangeError {
        status: 400,
        blame: Blame::Downstream,
        retry_safe: false,
        detail: detail.to_string(),
    }
}

/// Phase 4: reads the final response head, forwarding interim responses.
/// On success the client head is in `out`, not yet written.
async fn read_response_head(
    core: &Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    up: &mut UpstreamConn,
    req: &RequestInfo,
    out: &mut Vec<u8>,
    app: &str,
) -> Result<ResponseInfo, ExchangeError> {
    let limits = &core.limits;
    let deadline = Instant::now() + limits.response_timeout;
    let mut received_any = false;
    let mut interim = 0;
    loop {
        match prepare_response(
            up.buffered(),
            req,
            routes,
            limits.max_response_header_bytes,
            limits.rewrite_bodies,
            out,
        ) {
            Ok(ParsedResponse::Complete(info)) => {
                up.consume(info.head_len);
                if !info.interim {
                    return Ok(info);
                }
                interim += 1;
                if interim > MAX_INTERIM_RESPONSES {
                    return Err(bad_upstream(app, "too many interim responses", false));
                }
                // 100 was already sent by the proxy; other 1xx go to
                // HTTP/1.1 clients only (RFC 9110 §15.2).
                if info.status != 100 && req.http11 {
                    client.stream.write_all(out).await.map_err(|e| {
                        downstream_error(&format!("writing an interim response: {e}"))
                    })?;
                    let _ = client.stream.flush().await;
                }
                continue;
            }
            Ok(ParsedResponse::Partial) => {}
            Err(e) => return Err(bad_upstream(app, &e.0, false)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ExchangeError {
                status: 504,
                blame: Blame::Upstream,
                retry_safe: false,
                detail: format!("app \"{app}\" did not answer in time"),
            });
        }
        match within(left, up.fill(limits.max_response_header_bytes + 1024)).await {
            Ok(0) => {
                return Err(bad_upstream(
                    app,
                    "the app closed the connection without a complete response",
                    !received_any,
                ))
            }
            Ok(_) => received_any = true,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(ExchangeError {
                    status: 504,
                    blame: Blame::Upstream,
                    retry_safe: false,
                    detail: format!("app \"{app}\" did not answer in time"),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return Err(bad_upstream(
                    app,
                    "response header section too large",
                    false,
                ))
            }
            Err(e) => {
                return Err(bad_upstream(
                    app,
                    &format!("reading the response failed: {e}"),
                    !received_any,
                ))
            }
        }
    }
}

fn bad_upstream(app: &str, what: &str, retry_safe: bool) -> ExchangeError {
    ExchangeError {
        status: 502,
        blame: Blame::Upstream,
        retry_safe,
        detail: format!("app \"{app}\" sent an invalid response: {what}"),
    }
}

/// Answers a failed exchange with an error page and closes: the request
/// body may be partly unread, and the upstream connection is dropped.
async fn fail(
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    scratch: &mut Vec<u8>,
    e: &ExchangeError,
) -> Outcome {
    pages::error_response(scratch, e.status, &e.detail, !req.is_head);
    let _ = client.stream.write_all(scratch).await;
    let _ = client.stream.flush().await;
    scratch.clear();
    Outcome::CloseAfterError(e.status)
}

/// Most bytes and time spent draining a client after an error response.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Closes after an error without losing the response: closing a socket
/// with unread input makes the kernel send RST, which can destroy the
/// response in flight. So: shut down our sending side, then read and
/// discard (bounded in bytes and time) until the client closes.
async fn lingering_close(mut client: Inbound<ClientStream>) {
    client.stream.inner.shutdown_write().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    loop {
        client.consume(client.buffered().len());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || drained > LINGER_BYTES {
            return;
        }
        match within(left, client.fill(CLIENT_BUFFER)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// After 101: copies bytes both ways until each side has finished sending,
/// propagating half-closes. The tunnel ends when neither direction has
/// carried a byte for `idle` (WebSocket apps ping well within the default).
async fn tunnel(client: Inbound<ClientStream>, up: UpstreamConn, idle: std::time::Duration) {
    let (client_stream, client_rest) = client.into_parts();
    let (up_stream, up_rest) = up.into_parts();
    let (client_read, client_write) = futures_lite::io::split(client_stream);
    let (up_read, up_write) = futures_lite::io::split(up_stream);
    let last_activity = std::cell::Cell::new(Instant::now());
    futures_lite::future::zip(
        pump(client_read, up_write, client_rest, &last_activity, idle),
        pump(up_read, client_write, up_rest, &last_activity, idle),
    )
    .await;
}

/// One direction of a tunnel: `first` (bytes read ahead), then everything
/// `from` sends, then a half-close of `to`.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    first: Vec<u8>,
    last_activity: &std::cell::Cell<Instant>,
    idle: std::time::Duration,
) where
    R: futures_lite::AsyncRead + Unpin,
    W: futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    if to.write_all(&first).await.is_ok() && to.flush().await.is_ok() {
        loop {
            let wait = idle.saturating_sub(last_activity.get().elapsed());
            if wait.is_zero() {
                break;
            }
            match within(wait, from.read(&mut buf)).await {
                Ok(0) => break,
                Ok(n) => {
                    last_activity.set(Instant::now());
                    // TLS holds written bytes until flushed.
                    if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                        break;
                    }
                }
                // The other direction may have been busy: re-check.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => break,
            }
        }
    }
    let _ = to.close().await;
}
