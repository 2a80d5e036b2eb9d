//! The per-request context every phase reads and changes ([`Exchange`]),
//! what a phase answers ([`Step`]) and how an exchange leaves the client
//! connection ([`Outcome`]).

use std::rc::Rc;
use std::time::Instant;

use palisade_schema::logrec::Action;

use super::error::ExchangeError;
use super::gate::{Admitted, Connection};
use crate::core::Core;
use crate::http::request::RequestInfo;
use crate::http::response::ResponseInfo;
use crate::io::Inbound;
use crate::session_policy::flow::HoldBudget;
use crate::snapshot::{AppRoute, Snapshot};
use crate::stream::ClientStream;
use crate::upstream::UpstreamConn;

/// One request and its response, from a complete head to the log record.
///
/// Created by the driver once the head is parsed and routed; each phase
/// gets `&mut Exchange`. Who writes what:
///
/// - `req`, `upstream_head`: the codec (read head); later phases only read
///   them, except that session control may neutralize `Range` fields.
/// - `admitted`: identity and access.
/// - `out`: the response bytes the proxy sends next (a synthesised answer,
///   or the client head of the app's response, held back until the body
///   phase sends it with the first body bytes).
/// - `upstream`, `response`: the upstream phases.
/// - `served`: every phase that learns something the log records.
pub struct Exchange<'x> {
    pub core: &'x Core,
    /// The snapshot in force when the head arrived; it serves the whole
    /// exchange.
    pub snap: &'x Snapshot,
    pub client: &'x mut Inbound<ClientStream>,
    /// What the connection knows across its requests (address, device,
    /// caches).
    pub conn: &'x mut Connection,
    pub req: RequestInfo,
    /// The head written for the app.
    pub upstream_head: Vec<u8>,
    pub out: Vec<u8>,
    /// Shown on block pages and stored as the log record's id (0: none
    /// was needed, the log numbers it).
    pub request_id: u64,
    pub admitted: Admitted,
    /// The request head is still at the start of `client`'s buffer (the
    /// client spans of `req.index` are valid).
    pub head_in_buffer: bool,
    /// `100 Continue` was already sent.
    pub continued: bool,
    /// Bytes this exchange holds for inspection, released when it ends.
    pub hold: Option<HoldBudget<'x>>,
    pub upstream: Option<UpstreamConn>,
    /// Where `upstream` goes back to in the pool.
    pub pool_key: Option<std::borrow::Cow<'x, str>>,
    /// The app's response head (set by *read response*).
    pub response: Option<ResponseInfo>,
    pub served: Served,
    /// An upload or download recognized for the log alone (no session
    /// decision): used when `served.activity` is empty.
    pub recognized: Option<ActivityNote>,
    /// A multipart upload whose file part had not arrived with the head:
    /// empty until *send* has read far enough to find its file's name.
    pub late_upload_name: Option<Vec<u8>>,
    /// Client bytes consumed when the request body started.
    pub body_start: u64,
}

impl<'x> Exchange<'x> {
    /// The app this request was routed to.
    pub fn app(&self) -> &'x AppRoute {
        &self.snap.apps[self.req.app]
    }

    /// The request head's bytes in the client buffer (empty once consumed).
    pub fn client_head(&self) -> &[u8] {
        if self.head_in_buffer {
            self.client.buffered()
        } else {
            b""
        }
    }

    /// Drops the request head from the client buffer: what follows is the
    /// body. Idempotent; the client spans of the head index are invalid
    /// afterwards.
    pub fn consume_head(&mut self) {
        if self.head_in_buffer {
            self.client.consume(self.req.head_len);
            self.head_in_buffer = false;
        }
    }

    /// The method and target as the app sees them.
    pub fn method_and_target(&self) -> (&[u8], &[u8]) {
        let index = self.req.index;
        (
            index.method(&self.upstream_head),
            index.target.of(&self.upstream_head),
        )
    }
}

/// What the traffic log needs that only the phases learn.
#[derive(Default)]
pub struct Served {
    /// Signed in by this request (the sign-in callback).
    pub user: String,
    pub status: u16,
    /// A recognized activity and what session control decided.
    pub activity: Option<ActivityNote>,
    /// When the head was complete (log durations and timestamps).
    pub started: Option<Instant>,
    pub started_unix_us: u64,
    /// Client byte counters when the head was complete.
    pub up0: u64,
    pub down0: u64,
}

/// An activity the request carried, for its log record.
#[derive(Default, Debug)]
pub struct ActivityNote {
    pub name: String,
    pub file_name: Vec<u8>,
    pub file_size: u64,
    /// The session decision (`None`: recognized, no session policy).
    pub action: Option<Action>,
    pub policy: Option<Rc<str>>,
    /// Type, label, matches.
    pub detail: String,
}

/// What a phase decided.
pub enum Step {
    /// Go on with the next phase.
    Continue,
    /// The proxy answers itself with the response in `out` (this status
    /// for the log); the connection stays open unless a body is unread or
    /// the client asked to close.
    Respond(u16),
    /// The exchange failed: the driver answers with an error page and
    /// closes.
    Fail(ExchangeError),
    /// The phase finished the exchange itself.
    Done(Outcome),
}

impl From<super::error::UpstreamError> for Step {
    fn from(e: super::error::UpstreamError) -> Step {
        Step::Fail(e.into())
    }
}

impl From<ExchangeError> for Step {
    fn from(e: ExchangeError) -> Step {
        Step::Fail(e)
    }
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
