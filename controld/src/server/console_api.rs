//! What the admin console asks of the daemon. Policy changes take the very
//! paths the CLI's `apply` and `rollback` take (one at a time, refused on a
//! fleet node, pushed to every core with their acks awaited); admin actions
//! are stored as activity records through the same storage thread as the
//! cores' logs, so they are in exports, reports, SIEM and ClickHouse alike.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capnp::message::Builder;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame;
use palisade_schema::logrec::{self, Action, BatchBuilder, Field, Kind, Record, StrRef};
use palisade_schema::policy::{CompileOptions, Policy};
use zerocopy::little_endian::{U16, U32, U64};

use super::{now_unix_ms, Daemon, Outcome};
use crate::commands::PolicyError;
use crate::ingest::Incoming;

/// How a policy edited in the console is named in messages.
pub const CONSOLE_POLICY_LABEL: &str = "policy";

/// The `app` of admin action records.
pub const CONSOLE_APP: &str = "palisade-console";

/// One data-plane core as the console shows it.
pub struct CoreView {
    pub pid: u32,
    pub core: u32,
    pub version: u64,
    pub connected_for: Duration,
    pub last_error: String,
}

/// An admin action, stored as an activity record.
pub struct AdminEntry {
    /// The signed-in administrator.
    pub admin: String,
    pub client: std::net::SocketAddr,
    pub user_agent: String,
    pub host: String,
    /// The console path the action was posted to.
    pub path: String,
    /// `console apply`, `console rollback`, `console export`,
    /// `console alert acknowledged`, `console sign-in`…
    pub activity: String,
    /// What it did (the version, the export's range…).
    pub detail: String,
    pub file_name: String,
    pub status: u16,
}

/// Stream ids of admin records: a high bit no core's stream id carries
/// (theirs are start time and core number), then this daemon's start.
const ADMIN_STREAM_BIT: u64 = 1 << 62;

static ADMIN_SEQ: AtomicU64 = AtomicU64::new(0);

impl Daemon {
    /// Directory relative paths in a console-edited policy resolve against:
    /// the one of the policy file the daemon started with.
    fn policy_base(&self) -> std::path::PathBuf {
        self.config
            .policy
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| ".".into())
    }

    /// Compiles policy text as `apply` would, storing and pushing nothing.
    pub fn validate_text(&self, text: &str) -> Result<Policy, PolicyError> {
        crate::commands::compile_policy_text(
            CONSOLE_POLICY_LABEL,
            text,
            &self.policy_base(),
            &CompileOptions::default(),
        )
    }

    /// Applies policy text: a new version (unless it equals the current
    /// one), pushed to every core.
    pub fn apply_text(&self, text: &str) -> Result<Outcome, PolicyError> {
        let base = self.policy_base();
        self.apply_with(|| self.compile_and_store_text(CONSOLE_POLICY_LABEL, text, &base))
    }

    /// The etcd endpoints of the fleet this node follows, if any.
    pub fn fleet_spec(&self) -> Option<String> {
        self.config.fleet.as_ref().map(|(spec, _)| spec.clone())
    }

    /// Whether policy changes are made elsewhere (a fleet node), and why.
    pub fn changes_refused(&self) -> Option<String> {
        self.local_change_allowed().err()
    }

    /// The current policy (decoded snapshot).
    pub fn current_policy(&self) -> Option<Policy> {
        self.lock().current.as_ref().map(|c| c.policy.clone())
    }

    pub fn current_version(&self) -> u64 {
        self.lock().current.as_ref().map_or(0, |c| c.version)
    }

    /// Every version in the history, ascending.
    pub fn history(&self) -> Vec<u64> {
        self.state.versions()
    }

    /// The policy text a version came from (none for fleet versions).
    pub fn source_of(&self, version: u64) -> Option<String> {
        self.state.source(version)
    }

    /// When a version was compiled (Unix ms), from its snapshot.
    pub fn compiled_at(&self, version: u64) -> Option<i64> {
        self.state
            .load(version)
            .ok()
            .map(|s| s.policy.compiled_at_unix_ms)
    }

    pub fn cores(&self) -> Vec<CoreView> {
        self.lock()
            .cores
            .values()
            .map(|c| CoreView {
                pid: c.pid,
                core: c.core,
                version: c.version,
                connected_for: c.connected_at.elapsed(),
                last_error: c.last_error.clone(),
            })
            .collect()
    }

    /// Stores an admin action as an activity record and waits until it is
    /// committed (as a core's batch is acknowledged).
    pub fn record_admin(&self, entry: &AdminEntry) -> Result<(), String> {
        let ingest = self.ingest.get().ok_or("log storage is not running")?;
        let mut batch = BatchBuilder::with_capacity(1, 512);
        let mut strings = [StrRef::default(); logrec::STRING_FIELDS];
        let mut set = |field: Field, value: &str| {
            strings[field as usize] = batch.string(value.as_bytes());
        };
        set(Field::User, &entry.admin);
        set(Field::UserAgent, &entry.user_agent);
        set(Field::App, CONSOLE_APP);
        set(Field::Host, &entry.host);
        set(Field::Method, "POST");
        set(Field::Url, &entry.path);
        set(Field::Activity, &entry.activity);
        set(Field::FileName, &entry.file_name);
        set(Field::Detail, &entry.detail);
        let seq = ADMIN_SEQ.fetch_add(1, Ordering::Relaxed) + 1;
        let now_us = now_unix_ms() * 1000;
        batch.push(&Record {
            time_unix_us: U64::new(now_us as u64),
            request_id: U64::new(seq),
            client_ip: logrec::ip_bytes(entry.client.ip()),
            client_port: U16::new(entry.client.port()),
            status: U16::new(entry.status),
            kind: Kind::Activity as u8,
            action: Action::Audit as u8,
            tls: 1,
            strings,
            duration_us: U32::new(0),
            ..Record::default()
        });
        let stream_id = ADMIN_STREAM_BIT | *ADMIN_STREAM_START;
        let mut m = Builder::new_default();
        {
            let mut b = m.init_root::<request::Builder>().init_log_batch();
            b.set_stream_id(stream_id);
            b.set_seq(seq);
            b.set_core(0);
            b.set_count(batch.count());
            b.set_records(batch.records_bytes());
            b.set_arena(batch.arena());
        }
        let bytes = frame::encode(&m);
        let message = frame::decode(&bytes[frame::PREFIX_BYTES..]).map_err(|e| e.to_string())?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        ours.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        if !ingest.submit(Incoming {
            message,
            count: 1,
            conn_id: 0,
            reply: Arc::new(Mutex::new(theirs)),
        }) {
            return Err("log storage stopped".into());
        }
        let mut ours = ours;
        let body = frame::read_blocking(&mut ours, frame::MAX_FRAME_BYTES)
            .map_err(|e| format!("storing the admin record: {e}"))?;
        let reply = frame::decode(&body).map_err(|e| e.to_string())?;
        let root = reply
            .get_root::<response::Reader>()
            .map_err(|e| e.to_string())?;
        match root.which().map_err(|e| e.to_string())? {
            response::LogAck(a) => {
                let a = a.map_err(|e| e.to_string())?;
                if a.get_ok() {
                    Ok(())
                } else {
                    Err(a
                        .get_error()
                        .ok()
                        .and_then(|t| t.to_str().ok())
                        .unwrap_or("refused")
                        .to_string())
                }
            }
            _ => Err("unexpected answer from log storage".into()),
        }
    }
}

/// This daemon's start (ms), fixed at the first admin record.
static ADMIN_STREAM_START: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| (now_unix_ms() as u64) & ((1 << 62) - 1));
