//! Phases *finish* and *log*: the upstream connection back to the pool
//! when its response was read whole, whether the client connection stays
//! open, and the exchange's traffic record (and activity record) into the
//! core's log shard and its counts into the core's metrics.

use palisade_schema::access::AccessAction;
use palisade_schema::logrec::Action;

use super::exchange::{Exchange, Outcome, Step};
use super::gate::Admitted;
use crate::http::request::{ClientContext, Rejection};
use crate::io::Inbound;
use crate::logs::{ActivityFacts, TrafficFacts};
use crate::stream::ClientStream;

/// *finish*: pools the upstream connection when `reuse_upstream`, and
/// ends the exchange keeping the client connection open or not.
pub fn done(x: &mut Exchange<'_>, reuse_upstream: bool, keep_alive: bool) -> Step {
    if let (true, Some(mut up), Some(key)) =
        (reuse_upstream, x.upstream.take(), x.pool_key.as_deref())
    {
        if matches!(up.stream, crate::stream::MaybeTls::H2(_)) {
            // An HTTP/2 stream ends with its exchange (its connection stays
            // with the core's HTTP/2 connections); its buffer serves the
            // next one.
            up.release_if_idle();
        } else {
            x.core.pool.borrow_mut().put(key, up);
        }
    }
    Step::Done(if keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    })
}

/// *log*: the exchange's records and counts, once its outcome is known.
pub fn log(x: &mut Exchange<'_>, outcome: &Outcome) {
    if let Outcome::CloseAfterError(status) = outcome {
        x.served.status = *status;
    }
    let served = &x.served;
    let admitted = &x.admitted;
    let duration_us = served
        .started
        .map_or(0, |t| t.elapsed().as_micros().min(u64::MAX as u128) as u64);
    let action = log_action(admitted, served.status);
    let bytes_up = x.client.consumed() - served.up0;
    let bytes_down = x.client.stream.written() - served.down0;
    x.core.metrics.duration.observe(duration_us);
    if let Some(app) = x.snap.app_counters.get(x.req.app) {
        app.request(served.status, action, bytes_up, bytes_down);
    }
    let Some(log) = &x.core.logs else {
        return;
    };
    let snap = x.snap;
    let index = x.req.index;
    let head = &x.upstream_head;
    let facts = TrafficFacts {
        request_id: x.request_id,
        started_unix_us: served.started_unix_us,
        duration_us: duration_us.min(u32::MAX as u64) as u32,
        peer: x.conn.ctx.peer,
        tls: x.conn.ctx.tls,
        http2: x.conn.ctx.http2,
        app: &snap.apps[x.req.app].name,
        host: x.req.app_host.as_str().as_bytes(),
        method: index.method(head),
        target: index.target.of(head),
        user_agent: index.user_agent.of(head),
        status: served.status,
        bytes_up,
        bytes_down,
        action,
        policy: admitted.policy.map_or("", |p| snap.access.policy_name(p)),
        user: if served.user.is_empty() {
            admitted.user()
        } else {
            &served.user
        },
        session_id: "",
        device_tags: crate::access::device_tags_text(admitted.devices),
    };
    let note = served.activity.as_ref().or(x.recognized.as_ref());
    let activity = note.map(|a| ActivityFacts {
        name: &a.name,
        file_name: &a.file_name,
        file_size: a.file_size,
        action: a.action,
        policy: a.policy.as_deref().unwrap_or(""),
        detail: &a.detail,
    });
    log.borrow_mut().record(&facts, activity.as_ref());
}

/// The log's action for an exchange: the access decision, or `block`
/// when the proxy refused the request itself (sign-in required or failed).
fn log_action(admitted: &Admitted, status: u16) -> Action {
    match admitted.action {
        AccessAction::Block => Action::Block,
        _ if matches!(status, 401 | 403) && admitted.signed_in.is_none() => Action::Block,
        AccessAction::Allow => Action::Allow,
        AccessAction::Audit => Action::Audit,
        AccessAction::Monitor => Action::Monitor,
    }
}

/// *log* for a request refused before it was routed (no app, no parsed
/// target): `down0` is the client's byte counter before the error page.
pub fn log_unrouted(
    core: &crate::core::Core,
    (ctx, client): (&ClientContext, &Inbound<ClientStream>),
    rejection: &Rejection,
    started_unix_us: u64,
    down0: u64,
) {
    let bytes_up = client.buffered().len() as u64;
    let bytes_down = client.stream.written() - down0;
    core.metrics
        .unrouted
        .request(rejection.status, Action::Block, bytes_up, bytes_down);
    let Some(log) = &core.logs else {
        return;
    };
    let facts = TrafficFacts {
        request_id: 0,
        started_unix_us,
        duration_us: 0,
        peer: ctx.peer,
        tls: ctx.tls,
        http2: ctx.http2,
        app: "",
        host: b"",
        method: b"",
        target: b"",
        user_agent: b"",
        status: rejection.status,
        bytes_up,
        bytes_down,
        action: Action::Block,
        policy: "",
        user: "",
        session_id: "",
        device_tags: "",
    };
    log.borrow_mut().record(&facts, None);
}
