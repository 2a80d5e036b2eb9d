//! Phases *connect*, *send* and *read response*: a pooled keep-alive
//! connection to the app or a new one; the rewritten request head and its
//! body (framing re-encoded, proxy hosts unwrapped); the app's response
//! head (interim responses forwarded, headers rewritten toward the user).
//!
//! A reused connection the app closed in the meantime is retried once on
//! a new connection when that is safe (idempotent, no body, nothing
//! received). On success `x.upstream` holds the connection, `x.response`
//! the parsed head and `x.out` the client head, not yet written.

use std::borrow::Cow;
use std::io;
use std::time::Instant;

use futures_lite::AsyncWriteExt;

use super::error::{ExchangeError, RequestBodyError, UpstreamError};
use super::exchange::{Exchange, Step};
use crate::answers;
use crate::body::{self, BodyFilter, SinkFraming, Transfer};
use crate::core::{Core, CLIENT_BUFFER};
use crate::http::response::{
    prepare_response, BadResponse, ParsedResponse, ResponseInfo, ResponseLimits,
};
use crate::http::Framing;
use crate::io::within;
use crate::rewrite::unwrap::BodyUnwrap;
use crate::upstream::{self, Target, UpstreamConn};

/// Interim responses accepted before the final one.
const MAX_INTERIM_RESPONSES: usize = 16;

/// Runs *connect*, *send* and *read response*, retrying once on a fresh
/// connection when a reused one turns out closed.
pub async fn exchange_with_app(x: &mut Exchange<'_>) -> Step {
    let app_host = x.req.app_host.clone();
    let route = x.app();
    // HTTP/2 toward the app where it chooses it, except for requests that
    // upgrade the connection (an HTTP/2 stream cannot become a tunnel).
    let http2 = x.core.limits.http2.upstream && !x.req.upgrade;
    let target = match Target::for_request(route, app_host.as_str(), http2) {
        Ok(t) => t,
        Err(reason) => {
            let app = route.name.clone();
            return UpstreamError::BadTarget { app, reason }.into();
        }
    };
    // A body to unwrap and send with its exact length is read whole before
    // any upstream connection is taken: no pooled connection waits idle
    // on a slow client (the app may close it meanwhile).
    let _held = match hold_body_to_unwrap(x).await {
        Ok(held) => held,
        Err(e) => return ExchangeError::from(e).into(),
    };
    let mut body_sent = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pooled = if attempt == 1 {
            take_idle(x.core, &target.key)
        } else {
            None
        };
        // A stream on the app's HTTP/2 connection counts as reused: a
        // connection the app has closed meanwhile is retried the same way.
        let pooled = pooled.or_else(|| {
            let stream = x
                .core
                .h2_upstreams
                .stream(&target.key, x.req.is_head)
                .filter(|_| http2 && attempt == 1)?;
            Some(crate::io::Inbound::with_pooled_buffer(
                upstream::UpstreamStream::H2(Box::new(stream)),
                x.core.upstream_buffers.clone(),
            ))
        });
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(c) => c,
            // Boxed: a new connection (TLS, perhaps an HTTP/2 handshake) is
            // a large future, and only this rare step should pay for it;
            // inline it would enlarge every exchange's future.
            None => match Box::pin(connect(x, &target)).await {
                Ok(c) => c,
                Err(e) => return Step::Fail(e),
            },
        };
        let result = async {
            if x.req.expect_continue && !body_sent && !x.continued {
                // The app is reachable: ask the client for its body
                // (RFC 9110 §10.1.1). Expect itself is not forwarded.
                x.client
                    .stream
                    .write_all(answers::CONTINUE)
                    .await
                    .map_err(|e| ExchangeError::downstream(format!("writing 100 Continue: {e}")))?;
                let _ = x.client.stream.flush().await;
            }
            body_sent |= x.req.framing.has_body();
            send(x, &mut up).await.map_err(ExchangeError::from)?;
            read_response(x, &mut up).await
        }
        .await;
        match result {
            Ok(resp) => {
                x.upstream = Some(up);
                x.response = Some(resp);
                // The pool key outlives `target`: it borrows only the
                // route (a fixed upstream) or is owned (a direct one).
                x.pool_key = Some(match target.key {
                    Cow::Borrowed(_) => Cow::Borrowed(route_key(route).unwrap_or_default()),
                    Cow::Owned(k) => Cow::Owned(k),
                });
                return Step::Continue;
            }
            Err(e)
                if reused
                    && e.retry_safe
                    && x.req.idempotent
                    && !x.req.framing.has_body()
                    && attempt == 1 => {}
            Err(e) => return Step::Fail(e),
        }
    }
}

/// The pool key of a fixed upstream, borrowed from the route.
fn route_key(route: &crate::snapshot::AppRoute) -> Option<&str> {
    match &route.upstream {
        crate::snapshot::UpstreamRoute::Fixed { key, .. } => Some(key),
        crate::snapshot::UpstreamRoute::Direct { .. } => None,
    }
}

/// *connect* from the pool: an idle pooled connection that is still
/// usable. One that has bytes waiting (an upstream that sent more than its
/// response: never relayed to the next request) or was closed by the app
/// is dropped.
fn take_idle(core: &Core, key: &str) -> Option<UpstreamConn> {
    loop {
        let conn = core.pool.borrow_mut().take(key)?;
        if conn.stream.is_idle_and_open() {
            return Some(conn);
        }
    }
}

/// *connect*: a new upstream connection. One on which the app chose
/// `h2` becomes the core's HTTP/2 connection to it, and the exchange gets
/// a stream on it.
async fn connect(x: &Exchange<'_>, target: &Target<'_>) -> Result<UpstreamConn, ExchangeError> {
    let failed = |error| -> ExchangeError {
        UpstreamError::Connect {
            app: x.app().name.clone(),
            key: target.key.to_string(),
            error,
        }
        .into()
    };
    let conn = upstream::connect(
        target,
        x.core.limits.connect_timeout,
        &x.core.upstream_buffers,
    )
    .await
    .map_err(failed)?;
    let upstream::UpstreamStream::Tls(tls) = &conn.stream else {
        return Ok(conn);
    };
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(conn);
    }
    let (upstream::UpstreamStream::Tls(tls), _) = conn.into_parts() else {
        unreachable!("matched above")
    };
    let window = x.core.limits.http2.stream_window;
    let handshake = x.core.h2_upstreams.adopt(
        &target.key,
        *tls,
        x.core.buffers.clone(),
        window,
        x.req.is_head,
    );
    let stream = within(x.core.limits.connect_timeout, handshake)
        .await
        .map_err(|e| failed(upstream::ConnectError::Tls(e)))?;
    Ok(crate::io::Inbound::with_pooled_buffer(
        upstream::UpstreamStream::H2(Box::new(stream)),
        x.core.upstream_buffers.clone(),
    ))
}

/// *send*: the head, then the body in the client's framing. Many app
/// servers refuse or mishandle chunked request bodies (411, or an empty
/// body), so a body the client sent with a Content-Length goes with one:
/// unwrapped and with its exact new length when [`hold_body_to_unwrap`]
/// held it whole, else byte for byte with its own. A chunked body stays
/// chunked, unwrapped as it streams.
async fn send(x: &mut Exchange<'_>, up: &mut UpstreamConn) -> Result<(), RequestBodyError> {
    if x.late_upload_name
        .as_ref()
        .is_some_and(|name| name.is_empty())
    {
        name_late_upload(x).await;
    }
    x.out.clear();
    let mut unwrap = x.req.unwrap_body;
    if let (Some(how), Framing::Length(n)) = (unwrap, x.req.framing) {
        if x.client.buffered().len() as u64 >= n {
            return send_unwrapped_with_length(x, up, how, n as usize).await;
        }
        unwrap = None;
    }
    x.out.extend_from_slice(&x.upstream_head);
    let sink_framing = if x.req.framing == Framing::Chunked {
        SinkFraming::Chunked
    } else {
        SinkFraming::Raw
    };
    let how = Transfer {
        framing: x.req.framing,
        sink_framing,
        read_timeout: x.core.limits.body_timeout,
        max_buffer: CLIENT_BUFFER.max(x.core.limits.max_header_bytes),
    };
    let mut unwrapper = unwrap.map(|u| u.filter(&x.snap.hosts));
    let filter = unwrapper.as_deref_mut().map(|u| u as &mut dyn BodyFilter);
    let result = body::relay(x.client, &mut up.stream, how, filter, &mut x.out).await;
    x.out.clear();
    result.map(|_| ()).map_err(RequestBodyError::from)
}

/// Bytes of a multipart body read ahead to find its first file part's
/// name for the log (the part's head comes after any plain fields): the
/// client buffer every connection has, so the read-ahead holds no memory
/// beyond it.
const UPLOAD_NAME_WINDOW: usize = CLIENT_BUFFER;

/// Reads a multipart body on until its first file part's name has
/// arrived, the body is whole or [`UPLOAD_NAME_WINDOW`] bytes are buffered
/// (each read within the body timeout); the body then goes to the app as
/// usual, from the buffer. Nothing found leaves the name empty: a form
/// without a file is not an upload.
async fn name_late_upload(x: &mut Exchange<'_>) {
    loop {
        let buffered = x.client.buffered();
        let window = &buffered[..buffered.len().min(UPLOAD_NAME_WINDOW)];
        // The body so far, unframed, and whether it is whole.
        let (body, whole) = match x.req.framing {
            Framing::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let body = &window[..window.len().min(n)];
                (Cow::Borrowed(body), body.len() == n)
            }
            Framing::Chunked => match crate::http::chunked::decode_prefix(window) {
                Ok((data, done)) => (Cow::Owned(data), done),
                // The relay refuses the framing.
                Err(_) => return,
            },
            Framing::Empty | Framing::UntilClose => return,
        };
        // Whole lines only: a name cut by the end of a read is not a name.
        let lines = &body[..memchr::memrchr(b'\n', &body).map_or(0, |i| i + 1)];
        if let Some(name) = crate::activity::disposition::multipart_file_name(lines) {
            x.late_upload_name = Some(name);
            return;
        }
        if whole || window.len() >= UPLOAD_NAME_WINDOW {
            return;
        }
        match within(
            x.core.limits.body_timeout,
            x.client.fill(UPLOAD_NAME_WINDOW),
        )
        .await
        {
            Ok(read) if read > 0 => {}
            // The relay meets the same end or timeout and answers it.
            _ => return,
        }
    }
}

/// Reads a Content-Length body that is to be unwrapped whole into the
/// client buffer, when it is at most [`MAX_UNWRAPPED_BODY`] and the core's
/// budget for held bodies has room (the reservation is returned; dropping
/// it gives the bytes back). A client waiting for `100 Continue` gets it
/// first. Past the bound or the budget, nothing is held and the body goes
/// byte for byte.
async fn hold_body_to_unwrap<'c>(
    x: &mut Exchange<'c>,
) -> Result<Option<crate::session_policy::flow::HoldBudget<'c>>, RequestBodyError> {
    let (Some(_), Framing::Length(n)) = (x.req.unwrap_body, x.req.framing) else {
        return Ok(None);
    };
    if n > MAX_UNWRAPPED_BODY || x.client.buffered().len() as u64 >= n {
        return Ok(None);
    }
    let core: &'c Core = x.core;
    let Some(budget) = crate::session_policy::flow::reserve(&core.held_bytes, n) else {
        return Ok(None);
    };
    if !super::session_request::ask_for_body(x).await {
        return Err(RequestBodyError::Interim(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the client is gone",
        )));
    }
    let n = n as usize;
    while x.client.buffered().len() < n {
        let read = within(
            x.core.limits.body_timeout,
            x.client.fill(n.max(CLIENT_BUFFER)),
        )
        .await
        .map_err(RequestBodyError::Read)?;
        if read == 0 {
            return Err(RequestBodyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed before the end of the body",
            )));
        }
    }
    Ok(Some(budget))
}

/// Form, JSON and multipart bodies up to this size are held whole to be
/// unwrapped and sent with their exact new Content-Length; larger ones go
/// byte for byte (the proxy hosts in them stay).
pub const MAX_UNWRAPPED_BODY: u64 = 1024 * 1024;

/// Unwraps the `n`-byte body (all buffered) and sends the head with the
/// new length, then the body.
async fn send_unwrapped_with_length(
    x: &mut Exchange<'_>,
    up: &mut UpstreamConn,
    unwrap: BodyUnwrap,
    n: usize,
) -> Result<(), RequestBodyError> {
    let mut body = Vec::with_capacity(n + 64);
    let mut filter = unwrap.filter(&x.snap.hosts);
    let input = &x.client.buffered()[..n];
    filter
        .feed(input, &mut body)
        .and_then(|()| filter.finish(&mut body))
        .map_err(RequestBodyError::Unwrap)?;
    // The codec wrote the client's length last among the framing fields.
    let head = &x.upstream_head;
    let old = format!("\r\nContent-Length: {n}\r\n");
    let at = memchr::memmem::find(head, old.as_bytes()).ok_or_else(|| {
        RequestBodyError::Unwrap(crate::body::FilterError::Coding {
            stage: "request head",
            reason: "no Content-Length to replace".into(),
        })
    })?;
    let out = &mut x.out;
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(crate::http::request::itoa(body.len() as u64).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head[at + old.len()..]);
    out.extend_from_slice(&body);
    let result = up.stream.write_all(out).await;
    out.clear();
    x.client.consume(n);
    result.map_err(RequestBodyError::Send)
}

/// *read response*: the final response head, forwarding interim
/// responses. On success the client head is in `x.out`, not yet written.
async fn read_response(
    x: &mut Exchange<'_>,
    up: &mut UpstreamConn,
) -> Result<ResponseInfo, ExchangeError> {
    let limits = &x.core.limits;
    let app = x.app().name.clone();
    let invalid = |error: BadResponse, retry_safe: bool| UpstreamError::Invalid {
        app: app.clone(),
        error,
        retry_safe,
    };
    let shape = ResponseLimits {
        max_header_bytes: limits.max_response_header_bytes,
        rewrite_bodies: limits.rewrite_bodies,
        data_types: &x.snap.apps[x.req.app].rewrite.data_content_types,
        leak_guard: &x.snap.apps[x.req.app].leak_guard,
    };
    let deadline = Instant::now() + limits.response_timeout;
    let mut received_any = false;
    let mut interim = 0;
    loop {
        match prepare_response(up.buffered(), &x.req, &x.snap.hosts, shape, &mut x.out) {
            Ok(ParsedResponse::Complete(info)) => {
                up.consume(info.head_len);
                if info.length_ignored {
                    let app = &x.snap.apps[x.req.app].name;
                    x.core.warn_once(app, "length and chunked", || {
                        "a response carried both Content-Length and Transfer-Encoding: \
                         forwarded chunked without the Content-Length (RFC 9112 §6.3)"
                            .into()
                    });
                }
                if !info.interim {
                    return Ok(info);
                }
                interim += 1;
                if interim > MAX_INTERIM_RESPONSES {
                    return Err(invalid(BadResponse::TooManyInterim, false).into());
                }
                // 100 was already sent by the proxy; other 1xx go to
                // HTTP/1.1 clients only (RFC 9110 §15.2).
                if info.status != 100 && x.req.http11 {
                    x.client
                        .stream
                        .write_all(&x.out)
                        .await
                        .map_err(RequestBodyError::Interim)?;
                    let _ = x.client.stream.flush().await;
                }
                continue;
            }
            Ok(ParsedResponse::Partial) => {}
            Err(e) => return Err(invalid(e, false).into()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(UpstreamError::NoAnswer { app }.into());
        }
        match within(left, up.fill(limits.max_response_header_bytes + 1024)).await {
            Ok(0) => {
                return Err(invalid(BadResponse::ClosedEarly, !received_any).into());
            }
            Ok(_) => received_any = true,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(UpstreamError::NoAnswer { app }.into())
            }
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
                return Err(invalid(BadResponse::HeadTooLarge, false).into())
            }
            Err(error) => {
                let retry_safe = !received_any;
                return Err(UpstreamError::Receive {
                    app,
                    error,
                    retry_safe,
                }
                .into());
            }
        }
    }
}
