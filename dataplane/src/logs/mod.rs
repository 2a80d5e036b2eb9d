//! The traffic and activity log of one core: every request becomes a
//! fixed-size record in the core's [`shard::LogShard`], strings copied into
//! the batch arena (no allocation per record); batches go to controld over
//! the core's control connection and are freed only once acknowledged.

pub mod ledger;
pub mod shard;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_schema::logrec::{ip_bytes, Action, Field, Kind, Record};
use zerocopy::little_endian::{U16, U32, U64};

pub use shard::{LogConfig, LogShard};

/// Microseconds since the Unix epoch.
pub fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What the proxy knows about one finished request.
pub struct TrafficFacts<'a> {
    /// The id the proxy already showed for this request (block page);
    /// 0: the shard numbers it.
    pub request_id: u64,
    pub started_unix_us: u64,
    pub duration_us: u32,
    pub peer: SocketAddr,
    pub tls: bool,
    /// The request came over HTTP/2.
    pub http2: bool,
    /// App name; empty when the request was refused before routing.
    pub app: &'a str,
    /// App host (the proxy suffix removed).
    pub host: &'a [u8],
    pub method: &'a [u8],
    /// Request target as the app saw it (path and query).
    pub target: &'a [u8],
    pub user_agent: &'a [u8],
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub action: Action,
    pub policy: &'a str,
    pub user: &'a str,
    pub session_id: &'a str,
    pub device_tags: &'a str,
}

/// A recognized activity within a request.
pub struct ActivityFacts<'a> {
    /// download, upload, login…
    pub name: &'a str,
    pub file_name: &'a [u8],
    pub file_size: u64,
    /// The session decision; `None`: the request's own action.
    pub action: Option<Action>,
    /// The deciding session policy (empty: the request's policy).
    pub policy: &'a str,
    /// What was found in the file (type, label, matches).
    pub detail: &'a str,
}

impl LogShard {
    /// Records one request, and the activity it carried if any. Returns the
    /// request id.
    pub fn record(&mut self, t: &TrafficFacts<'_>, activity: Option<&ActivityFacts<'_>>) -> u64 {
        let id = if t.request_id != 0 {
            t.request_id
        } else {
            self.next_request_id()
        };
        let b = self.builder();
        let scheme: &[u8] = if t.tls { b"https://" } else { b"http://" };
        let mut r = Record {
            time_unix_us: U64::new(t.started_unix_us),
            request_id: U64::new(id),
            bytes_up: U64::new(t.bytes_up),
            bytes_down: U64::new(t.bytes_down),
            file_size: U64::new(0),
            duration_us: U32::new(t.duration_us),
            client_ip: ip_bytes(t.peer.ip()),
            client_port: U16::new(t.peer.port()),
            status: U16::new(t.status),
            kind: Kind::Traffic as u8,
            action: t.action as u8,
            tls: t.tls as u8,
            protocol: if t.http2 { 2 } else { 0 },
            strings: Default::default(),
        };
        let s = &mut r.strings;
        s[Field::User as usize] = b.string(t.user.as_bytes());
        s[Field::UserAgent as usize] = b.string(t.user_agent);
        s[Field::App as usize] = b.string(t.app.as_bytes());
        s[Field::Host as usize] = b.string(t.host);
        s[Field::Method as usize] = b.string(t.method);
        s[Field::Url as usize] = if t.host.is_empty() {
            b.string(t.target)
        } else {
            b.string_parts(&[scheme, t.host, t.target])
        };
        s[Field::SessionId as usize] = b.string(t.session_id.as_bytes());
        s[Field::DeviceTags as usize] = b.string(t.device_tags.as_bytes());
        s[Field::Policy as usize] = b.string(t.policy.as_bytes());
        b.push(&r);
        if let Some(a) = activity {
            // The activity shares the request's strings; only its own
            // fields are new.
            r.kind = Kind::Activity as u8;
            r.file_size = U64::new(a.file_size);
            r.strings[Field::Activity as usize] = b.string(a.name.as_bytes());
            r.strings[Field::FileName as usize] = b.string(a.file_name);
            r.strings[Field::Detail as usize] = b.string(a.detail.as_bytes());
            if let Some(action) = a.action {
                r.action = action as u8;
            }
            if !a.policy.is_empty() {
                r.strings[Field::Policy as usize] = b.string(a.policy.as_bytes());
            }
            b.push(&r);
        }
        self.after_push();
        id
    }
}
