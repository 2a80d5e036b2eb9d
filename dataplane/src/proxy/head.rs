//! Phases *read head* and *route*: read until a whole request head is
//! buffered, and hand it to the HTTP/1.1 codec, which parses it in place
//! (strict framing, RFC 9112), routes Host → app through the host map
//! (unknown hosts never leave the proxy), builds the head index and
//! writes the head for the app.
//!
//! Runs first, between requests of a keep-alive connection. Answers
//! nothing itself: a refusal (4xx) goes back to the driver, which sends
//! the error page, logs it and closes.

use std::rc::Rc;
use std::time::Instant;

use crate::core::Core;
use crate::http::request::{prepare_request, ClientContext, Parsed, Rejection, RequestInfo};
use crate::io::{within, Inbound};
use crate::snapshot::Snapshot;
use crate::stream::ClientStream;

/// A parsed, routed request and the snapshot that serves it.
pub type Routed = (RequestInfo, Rc<Snapshot>);

/// Runs the phases: `Ok(None)` when the client closed or idled out
/// between requests.
pub async fn read_head(
    core: &Core,
    client: &mut Inbound<ClientStream>,
    ctx: &ClientContext,
    out: &mut Vec<u8>,
) -> Result<Option<Routed>, Rejection> {
    let limits = &core.limits;
    let mut started = (!client.buffered().is_empty()).then(Instant::now);
    let max_buffer = limits.max_header_bytes.max(limits.max_request_line) + 1024;
    let too_slow = || Rejection {
        status: 408,
        reason: "request head not received in time".into(),
    };
    loop {
        if started.is_some() {
            // The snapshot current when the head is complete serves the
            // whole request.
            let snap = core.snapshot.borrow().clone();
            if out.capacity() == 0 {
                *out = core.buffers.take_scratch();
            }
            if let Parsed::Complete(info) = route(client.buffered(), &snap, (core, ctx), out)? {
                return Ok(Some((info, snap)));
            }
        }
        let wait = match started {
            None => limits.idle_timeout,
            Some(t0) => limits.header_timeout.saturating_sub(t0.elapsed()),
        };
        if wait.is_zero() {
            return Err(too_slow());
        }
        match within(wait, client.fill(max_buffer)).await {
            Ok(0) => return Ok(None),
            Ok(_) => {
                started.get_or_insert_with(Instant::now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return match started {
                    None => Ok(None),
                    Some(_) => Err(too_slow()),
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

/// *route*: the codec parses and routes what is buffered.
fn route(
    buffered: &[u8],
    snap: &Snapshot,
    (core, ctx): (&Core, &ClientContext),
    out: &mut Vec<u8>,
) -> Result<Parsed, Rejection> {
    prepare_request(buffered, snap, &core.limits, ctx, out)
}
