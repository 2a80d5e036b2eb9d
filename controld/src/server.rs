//! The daemon: serves the control socket to data-plane cores (hello, snapshot
//! push, ack, log batches) and to the operator CLI (apply, status,
//! rollback). Log batches go to the storage thread ([`crate::ingest`]).
//!
//! One thread per connection with blocking I/O: the daemon handles a few
//! dozen connections (one per data-plane core plus operators), so
//! simplicity wins over an event loop. A peer that sends garbage, an
//! oversized frame, or stalls mid-frame is dropped; the others are not
//! affected.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capnp::message::Builder;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame::{self, FrameError, MAX_FRAME_BYTES};
use palisade_schema::policy::{CompileOptions, Policy};
use palisade_schema::snapshot;

use crate::alerts::{Engine, PolicySet};
use crate::commands::PolicyError;
use crate::ingest::{Incoming, Ingest};
use crate::socket::{self, Access};
use crate::state::{StateDir, Stored};
use palisade_schema::systemd::Priority;

mod console_api;
pub use console_api::{AdminEntry, CoreView};

/// How long the rest of a frame may take once its first byte arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a peer may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Daemon settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub policy: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub access: Access,
    pub socket_gid: Option<u32>,
    /// How long `apply` waits for every core's ack.
    pub ack_timeout: Duration,
    pub logs: LogSettings,
    /// Follow the fleet's policy in etcd: (`etcd://…`, this node's name).
    pub fleet: Option<(String, String)>,
    /// Ship stored records to ClickHouse, as this node's name.
    pub log_sink: Option<(crate::clickhouse::Target, String)>,
    /// Serve the admin console.
    pub console: Option<crate::console::Settings>,
}

/// Log storage settings.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub sync: crate::logstore::Sync,
    /// Records older than this are deleted (hourly); `None`: kept forever.
    pub retention: Option<Duration>,
    pub sinks: crate::alerts::Sinks,
    /// Where every record and alert is exported (CEF over syslog).
    pub siem: crate::siem::Settings,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            sync: crate::logstore::Sync::Full,
            retention: Some(Duration::from_secs(30 * 86400)),
            sinks: crate::alerts::Sinks::default(),
            siem: crate::siem::Settings::default(),
        }
    }
}

/// A connected data-plane core.
struct CoreConn {
    pid: u32,
    core: u32,
    version: u64,
    last_error: String,
    connected_at: Instant,
    writer: Arc<Mutex<UnixStream>>,
    /// Last ack: (version, ok, error).
    last_ack: Option<(u64, bool, String)>,
    /// Records the core says it dropped since it started.
    log_dropped: u64,
    /// Records from this core stored since it connected.
    log_stored: u64,
}

struct LastPush {
    version: u64,
    at_unix_ms: i64,
    result: String,
}

struct Inner {
    current: Option<Stored>,
    cores: BTreeMap<u64, CoreConn>,
    last_push: Option<LastPush>,
}

/// Shared daemon state.
pub struct Daemon {
    state: StateDir,
    config: ServeConfig,
    inner: Mutex<Inner>,
    changed: Condvar,
    /// Serialises apply and rollback.
    applying: Mutex<()>,
    /// The storage thread for log batches.
    ingest: OnceLock<Ingest>,
    /// Activity policies the alert engine evaluates.
    activity_policies: PolicySet,
    alert_stats: OnceLock<Arc<crate::alerts::AlertStats>>,
    /// Each SIEM destination's progress.
    siem_stats: OnceLock<Vec<Arc<crate::progress::Progress>>>,
    /// The ClickHouse sink's progress.
    sink_stats: OnceLock<Arc<crate::progress::Progress>>,
}

/// The outcome of an apply or rollback.
pub struct Outcome {
    pub version: u64,
    pub results: Vec<CoreResult>,
    /// Reading, compiling and storing (apply) or loading (rollback).
    pub compile: Duration,
    /// From the first push byte to the last ack.
    pub push: Duration,
}

/// The outcome of one core for a push.
pub struct CoreResult {
    pub pid: u32,
    pub core: u32,
    pub ok: bool,
    pub error: String,
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Compares two policies ignoring version and compile metadata.
fn same_policy(a: &Policy, b: &Policy) -> bool {
    a.suffix == b.suffix
        && a.apps == b.apps
        && a.ip_tags == b.ip_tags
        && a.activity_policies == b.activity_policies
        && a.tls == b.tls
        && a.identity == b.identity
        && a.locations == b.locations
        && a.access_policies == b.access_policies
        && a.block_page == b.block_page
}

impl Daemon {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; keep serving with
        // the state as it is rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles the policy at `path` and makes it current (a new version
    /// unless it equals the current one).
    fn compile_and_store(&self, path: &std::path::Path) -> Result<Stored, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read policy: {e}", path.display()))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        self.compile_and_store_text(&path.display().to_string(), &text, base)
            .map_err(|e| e.to_string())
    }

    /// Compiles policy `text` and makes it current, keeping the text as the
    /// version's source.
    fn compile_and_store_text(
        &self,
        label: &str,
        text: &str,
        base_dir: &std::path::Path,
    ) -> Result<Stored, PolicyError> {
        let version = self.state.next_version();
        let policy = crate::commands::compile_policy_text(
            label,
            text,
            base_dir,
            &CompileOptions {
                version,
                ..CompileOptions::default()
            },
        )?;
        if let Some(current) = self.lock().current.clone() {
            if same_policy(&current.policy, &policy) {
                return Ok(current);
            }
        }
        // The source first: a version never lacks the text it came from.
        self.state
            .store_source(version, text)
            .map_err(|e| PolicyError::Whole(format!("state dir: {e}")))?;
        let bytes = snapshot::encode(&policy);
        self.store_as_current(version, policy, bytes)
            .map_err(PolicyError::Whole)
    }

    /// Writes a version to the history and makes it current.
    fn store_as_current(
        &self,
        version: u64,
        policy: Policy,
        bytes: Vec<u8>,
    ) -> Result<Stored, String> {
        self.state
            .store(version, &bytes)
            .map_err(|e| format!("state dir: {e}"))?;
        let stored = Stored {
            version,
            policy,
            bytes: Arc::new(bytes),
        };
        self.make_current(&stored);
        Ok(stored)
    }

    fn make_current(&self, stored: &Stored) {
        self.lock().current = Some(stored.clone());
        let set = Arc::new(stored.policy.activity_policies.clone());
        match self.activity_policies.write() {
            Ok(mut p) => *p = set,
            Err(e) => *e.into_inner() = set,
        }
    }

    /// Pushes `stored` to every connected core and waits for their acks.
    fn push_and_wait(&self, stored: &Stored) -> Vec<CoreResult> {
        let frame = push_frame(stored);
        let targets: Vec<(u64, Arc<Mutex<UnixStream>>)> = self
            .lock()
            .cores
            .iter()
            .map(|(id, c)| (*id, c.writer.clone()))
            .collect();
        for (_, writer) in &targets {
            // A failed write shows up as a missing ack.
            let _ = writer
                .lock()
                .map(|mut w| std::io::Write::write_all(&mut *w, &frame));
        }
        let deadline = Instant::now() + self.config.ack_timeout;
        let mut inner = self.lock();
        loop {
            let pending = targets.iter().any(|(id, _)| {
                inner
                    .cores
                    .get(id)
                    .is_some_and(|c| c.last_ack.as_ref().is_none_or(|a| a.0 != stored.version))
            });
            let left = deadline.saturating_duration_since(Instant::now());
            if !pending || left.is_zero() {
                break;
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let results: Vec<CoreResult> = targets
            .iter()
            .filter_map(|(id, _)| inner.cores.get(id))
            .map(|c| match &c.last_ack {
                Some((v, ok, error)) if *v == stored.version => CoreResult {
                    pid: c.pid,
                    core: c.core,
                    ok: *ok,
                    error: error.clone(),
                },
                _ => CoreResult {
                    pid: c.pid,
                    core: c.core,
                    ok: false,
                    error: "no answer in time".into(),
                },
            })
            .collect();
        let refused: Vec<String> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("pid {} core {}: {}", r.pid, r.core, r.error))
            .collect();
        inner.last_push = Some(LastPush {
            version: stored.version,
            at_unix_ms: now_unix_ms(),
            result: if refused.is_empty() {
                "ok".into()
            } else {
                refused.join("; ")
            },
        });
        results
    }

    /// Refuses a local change on a node that follows the fleet.
    fn local_change_allowed(&self) -> Result<(), String> {
        match &self.config.fleet {
            Some((spec, node)) => Err(format!(
                "node {node} follows the fleet's policy ({spec}): use `controld apply --fleet` or `rollback --fleet`"
            )),
            None => Ok(()),
        }
    }

    /// Installs a version published to the fleet: stored in the history,
    /// made current and pushed to every core, as an apply does.
    fn install_from_fleet(&self, version: u64, bytes: Vec<u8>) -> Result<(), String> {
        let _serial = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let policy = snapshot::decode(&bytes).map_err(|e| format!("version {version}: {e}"))?;
        if policy.version != version {
            return Err(format!(
                "the fleet's version {version} holds a snapshot of version {}",
                policy.version
            ));
        }
        let stored = self.store_as_current(version, policy, bytes)?;
        self.push_and_wait(&stored);
        Ok(())
    }

    /// What this node reports to the fleet.
    fn fleet_report(&self) -> crate::fleet::NodeReport {
        Self::fleet_report_of(&self.lock())
    }

    fn fleet_report_of(inner: &Inner) -> crate::fleet::NodeReport {
        crate::fleet::NodeReport {
            node: String::new(),
            version: inner.current.as_ref().map_or(0, |c| c.version),
            cores: inner
                .cores
                .values()
                .map(|c| {
                    let refused = c.last_ack.as_ref().filter(|a| !a.1);
                    crate::fleet::CoreReport {
                        pid: c.pid,
                        core: c.core,
                        version: c.version,
                        refused_version: refused.map_or(0, |a| a.0),
                        error: refused.map_or(String::new(), |a| a.2.clone()),
                    }
                })
                .collect(),
        }
    }

    fn apply(&self, path: &str) -> Result<Outcome, String> {
        self.apply_with(|| self.compile_and_store(std::path::Path::new(path)))
    }

    /// Apply's steps around a compile: one apply at a time, refused on a
    /// fleet node, then pushed to every core and their acks awaited.
    fn apply_with<E: From<String>>(
        &self,
        compile: impl FnOnce() -> Result<Stored, E>,
    ) -> Result<Outcome, E> {
        self.local_change_allowed()?;
        let _serial = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let stored = compile()?;
        let compiled = Instant::now();
        let results = self.push_and_wait(&stored);
        Ok(Outcome {
            version: stored.version,
            results,
            compile: compiled - started,
            push: compiled.elapsed(),
        })
    }

    pub(crate) fn rollback(&self, version: u64) -> Result<Outcome, String> {
        self.local_change_allowed()?;
        let _serial = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.lock().current.as_ref().map(|c| c.version).unwrap_or(0);
        let target = if version == 0 {
            self.state
                .versions()
                .into_iter()
                .rev()
                .find(|v| *v < current)
                .ok_or("no earlier version in the history")?
        } else {
            version
        };
        let started = Instant::now();
        let stored = self.state.load(target)?;
        self.state
            .set_current(target)
            .map_err(|e| format!("state dir: {e}"))?;
        self.make_current(&stored);
        let loaded = Instant::now();
        let results = self.push_and_wait(&stored);
        Ok(Outcome {
            version: target,
            results,
            compile: loaded - started,
            push: loaded.elapsed(),
        })
    }
}

fn push_frame(stored: &Stored) -> Vec<u8> {
    let mut m = Builder::new_default();
    let mut push = m.init_root::<response::Builder>().init_snapshot();
    push.set_version(stored.version);
    push.set_bytes(&stored.bytes);
    frame::encode(&m)
}

fn applied_frame(outcome: &Outcome) -> Vec<u8> {
    let mut m = Builder::new_default();
    let mut applied = m.init_root::<response::Builder>().init_applied();
    applied.set_version(outcome.version);
    applied.set_compile_micros(outcome.compile.as_micros() as u64);
    applied.set_push_micros(outcome.push.as_micros() as u64);
    let mut acks = applied.init_acks(outcome.results.len() as u32);
    for (i, r) in outcome.results.iter().enumerate() {
        let mut a = acks.reborrow().get(i as u32);
        a.set_pid(r.pid);
        a.set_core(r.core);
        a.set_ok(r.ok);
        a.set_error(r.error.as_str());
    }
    frame::encode(&m)
}

fn error_frame(message: &str) -> Vec<u8> {
    let mut m = Builder::new_default();
    m.init_root::<response::Builder>().set_error(message);
    frame::encode(&m)
}

fn status_frame(daemon: &Daemon) -> Vec<u8> {
    let versions = daemon.state.versions();
    let inner = daemon.lock();
    let mut m = Builder::new_default();
    let mut st = m.init_root::<response::Builder>().init_status();
    st.set_current_version(inner.current.as_ref().map_or(0, |c| c.version));
    let mut h = st.reborrow().init_history_versions(versions.len() as u32);
    for (i, v) in versions.iter().enumerate() {
        h.set(i as u32, *v);
    }
    let mut cores = st.reborrow().init_cores(inner.cores.len() as u32);
    for (i, c) in inner.cores.values().enumerate() {
        let mut cs = cores.reborrow().get(i as u32);
        cs.set_pid(c.pid);
        cs.set_core(c.core);
        cs.set_version(c.version);
        cs.set_last_error(c.last_error.as_str());
        cs.set_connected_for_ms(c.connected_at.elapsed().as_millis() as u64);
        cs.set_log_dropped(c.log_dropped);
        cs.set_log_stored(c.log_stored);
    }
    if let Some(p) = &inner.last_push {
        st.set_last_push_version(p.version);
        st.set_last_push_unix_ms(p.at_unix_ms);
        st.set_last_push_result(p.result.as_str());
    }
    if let Some(ingest) = daemon.ingest.get() {
        st.set_log_backlog(ingest.stats.backlog.load(Ordering::Relaxed));
        st.set_log_stored(ingest.stats.stored.load(Ordering::Relaxed));
        st.set_log_lost(ingest.stats.lost.load(Ordering::Relaxed));
    }
    if let Some(a) = daemon.alert_stats.get() {
        st.set_alerts_pending(a.pending.load(Ordering::Relaxed));
        st.set_alerts_raised(a.raised.load(Ordering::Relaxed));
        st.set_alerts_delivered(a.delivered.load(Ordering::Relaxed));
        st.set_alerts_failed(a.failed.load(Ordering::Relaxed));
    }
    let progress = |mut out: palisade_schema::control_capnp::export_status::Builder<'_>,
                    p: &crate::progress::Progress| {
        out.set_destination(p.url.as_str());
        out.set_sent(p.sent.load(Ordering::Relaxed));
        out.set_failures(p.failures.load(Ordering::Relaxed));
        out.set_last_error(p.last_error().as_str());
        out.set_mark_record(p.mark_record.load(Ordering::Relaxed));
        out.set_mark_alert(p.mark_alert.load(Ordering::Relaxed));
    };
    if let Some(siem) = daemon.siem_stats.get() {
        let mut list = st.reborrow().init_siem(siem.len() as u32);
        for (i, d) in siem.iter().enumerate() {
            progress(list.reborrow().get(i as u32), d);
        }
    }
    if let Some(sink) = daemon.sink_stats.get() {
        progress(st.reborrow().init_log_sink(1).get(0), sink);
    }
    frame::encode(&m)
}

/// Reads one frame: waits without limit for its first byte (idle peers are
/// fine), then gives the rest [`FRAME_TIMEOUT`] (a stalled peer is dropped).
fn read_frame(stream: &mut UnixStream) -> Result<Vec<u8>, FrameError> {
    let mut first = [0u8; 1];
    stream.set_read_timeout(None).map_err(FrameError::Io)?;
    loop {
        match stream.read(&mut first) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .map_err(FrameError::Io)?;
    let stalled = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("stalled mid-frame for {} s", FRAME_TIMEOUT.as_secs()),
            ))
        }
        _ => FrameError::Io(e),
    };
    let mut rest = [0u8; 3];
    stream.read_exact(&mut rest).map_err(stalled)?;
    let len = frame::check_length([first[0], rest[0], rest[1], rest[2]], MAX_FRAME_BYTES)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(stalled)?;
    Ok(body)
}

/// Serves one peer until it disconnects or misbehaves.
fn handle(daemon: Arc<Daemon>, mut stream: UnixStream, conn_id: u64) {
    let peer = match socket::peer_credentials(&stream) {
        Ok(p) => p,
        Err(_) => return,
    };
    if !daemon.config.access.allows(&peer) {
        crate::say(
            Priority::Warning,
            &format!(
                "controld: refused connection from uid {} (pid {})",
                peer.uid, peer.pid
            ),
            &[
                ("PALISADE_PEER_UID", &peer.uid.to_string()),
                ("PALISADE_PEER_PID", &peer.pid.to_string()),
            ],
        );
        return;
    }
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let writer = match stream.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(_) => return,
    };
    let send = |bytes: &[u8]| {
        writer
            .lock()
            .map(|mut w| std::io::Write::write_all(&mut *w, bytes).is_ok())
            .unwrap_or(false)
    };
    loop {
        let body = match read_frame(&mut stream) {
            Ok(b) => b,
            Err(FrameError::Closed) => break,
            Err(e) => {
                crate::say(
                    Priority::Warning,
                    &format!("controld: dropping peer pid {}: {e}", peer.pid),
                    &[("PALISADE_PEER_PID", &peer.pid.to_string())],
                );
                break;
            }
        };
        let message = match frame::decode(&body) {
            Ok(m) => m,
            Err(e) => {
                crate::say(
                    Priority::Warning,
                    &format!("controld: dropping peer pid {}: {e}", peer.pid),
                    &[("PALISADE_PEER_PID", &peer.pid.to_string())],
                );
                break;
            }
        };
        let req = match message
            .get_root::<request::Reader>()
            .and_then(|r| r.which().map_err(capnp::Error::from))
        {
            Ok(r) => r,
            Err(e) => {
                crate::say(
                    Priority::Warning,
                    &format!("controld: dropping peer pid {}: {e}", peer.pid),
                    &[("PALISADE_PEER_PID", &peer.pid.to_string())],
                );
                break;
            }
        };
        let ok = match req {
            request::Hello(h) => {
                let Ok(h) = h else { break };
                let push = {
                    let mut inner = daemon.lock();
                    inner.cores.insert(
                        conn_id,
                        CoreConn {
                            pid: h.get_pid(),
                            core: h.get_core(),
                            version: h.get_version_held(),
                            last_error: String::new(),
                            connected_at: Instant::now(),
                            writer: writer.clone(),
                            last_ack: None,
                            log_dropped: h.get_log_dropped(),
                            log_stored: 0,
                        },
                    );
                    inner
                        .current
                        .clone()
                        .filter(|c| c.version != h.get_version_held())
                };
                daemon.changed.notify_all();
                // A core that is behind (or ahead, after a rollback) gets
                // the current snapshot right away.
                push.is_none_or(|stored| send(&push_frame(&stored)))
            }
            request::Ack(a) => {
                let Ok(a) = a else { break };
                let error = a
                    .get_error()
                    .ok()
                    .and_then(|t| t.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let mut inner = daemon.lock();
                if let Some(c) = inner.cores.get_mut(&conn_id) {
                    if a.get_ok() {
                        c.version = a.get_version();
                        c.last_error.clear();
                    } else {
                        c.last_error = format!("refused version {}: {error}", a.get_version());
                    }
                    c.last_ack = Some((a.get_version(), a.get_ok(), error));
                }
                drop(inner);
                daemon.changed.notify_all();
                true
            }
            request::Apply(a) => {
                let path = a
                    .ok()
                    .and_then(|a| a.get_policy_path().ok())
                    .and_then(|p| p.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let reply = match daemon.apply(&path) {
                    Ok(outcome) => applied_frame(&outcome),
                    Err(e) => error_frame(&e),
                };
                send(&reply)
            }
            request::Rollback(r) => {
                let version = r.map(|r| r.get_version()).unwrap_or(0);
                let reply = match daemon.rollback(version) {
                    Ok(outcome) => applied_frame(&outcome),
                    Err(e) => error_frame(&e),
                };
                send(&reply)
            }
            request::Status(()) => send(&status_frame(&daemon)),
            request::LogBatch(b) => {
                let Ok(b) = b else { break };
                let count = b.get_count();
                match daemon.ingest.get() {
                    Some(ingest) => ingest.submit(Incoming {
                        message,
                        count,
                        conn_id,
                        reply: writer.clone(),
                    }),
                    None => false,
                }
            }
        };
        if !ok {
            break;
        }
    }
    daemon.lock().cores.remove(&conn_id);
    daemon.changed.notify_all();
}

/// Starts the daemon and serves until the process ends. `on_ready` runs
/// once the socket listens, with the current version and the console's
/// address.
pub fn serve(
    config: ServeConfig,
    on_ready: impl FnOnce(u64, Option<std::net::SocketAddr>),
) -> Result<(), String> {
    let state = StateDir::open(&config.state_dir)
        .map_err(|e| format!("{}: {e}", config.state_dir.display()))?;
    let current = state.current();
    let daemon = Arc::new(Daemon {
        state,
        config: config.clone(),
        inner: Mutex::new(Inner {
            current,
            cores: BTreeMap::new(),
            last_push: None,
        }),
        changed: Condvar::new(),
        applying: Mutex::new(()),
        ingest: OnceLock::new(),
        activity_policies: PolicySet::default(),
        alert_stats: OnceLock::new(),
        siem_stats: OnceLock::new(),
        sink_stats: OnceLock::new(),
    });
    // A fleet node resumes the last version the fleet gave it: the
    // bootstrap policy is only for a node that never reached etcd.
    let resumed = match (&config.fleet, daemon.lock().current.clone()) {
        (Some(_), Some(current)) => Some(current),
        _ => None,
    };
    let stored = match resumed {
        Some(current) => current,
        None => daemon.compile_and_store(&config.policy)?,
    };
    // The alert engine follows the current policy (a restart may have
    // resumed a newer one than the file given).
    let current = daemon.lock().current.clone();
    if let Some(current) = current {
        daemon.make_current(&current);
    }
    let store_path = crate::logstore::path(&config.state_dir);
    let store = crate::logstore::Store::open(&store_path, config.logs.sync)
        .map_err(|e| format!("{}: {e}", store_path.display()))?;
    if let Some((target, node)) = &config.log_sink {
        let _ = daemon.sink_stats.set(crate::clickhouse::start(
            &config.state_dir,
            target.clone(),
            node.clone(),
        )?);
    }
    let _ = daemon
        .siem_stats
        .set(crate::siem::start(&config.state_dir, &config.logs.siem)?);
    let engine = Engine::start(daemon.activity_policies.clone(), config.logs.sinks.clone());
    let _ = daemon.alert_stats.set(engine.stats.clone());
    let weak = Arc::downgrade(&daemon);
    let on_stored: crate::ingest::OnStored = Box::new(move |conn, stored, dropped| {
        if let Some(d) = weak.upgrade() {
            if let Some(c) = d.lock().cores.get_mut(&conn) {
                c.log_stored += stored;
                c.log_dropped = c.log_dropped.max(dropped);
            }
        }
    });
    let _ = daemon.ingest.set(Ingest::start(
        store,
        engine,
        config.logs.retention,
        on_stored,
    ));
    let listener = socket::bind(&config.socket, config.socket_gid)?;
    if let Some((spec, node)) = &config.fleet {
        let (a, b, c, d) = (
            daemon.clone(),
            daemon.clone(),
            daemon.clone(),
            daemon.clone(),
        );
        crate::fleet::follow(
            spec,
            node.clone(),
            crate::fleet::Hooks {
                installed: Box::new(move || {
                    a.lock()
                        .current
                        .as_ref()
                        .map(|s| (s.version, crate::fleet::digest(&s.bytes)))
                }),
                install: Box::new(move |version, bytes| b.install_from_fleet(version, bytes)),
                report: Box::new(move || c.fleet_report()),
                wait_change: Box::new(move |last, limit| {
                    // Compared and waited for under the lock every change
                    // takes, so no change slips between the two.
                    let inner = d.lock();
                    let mut now = Daemon::fleet_report_of(&inner);
                    now.node.clone_from(&last.node);
                    if now == *last {
                        let _ = d.changed.wait_timeout(inner, limit);
                    }
                }),
            },
        )?;
    }
    let console = match &config.console {
        Some(settings) => Some(crate::console::start(settings.clone(), daemon.clone())?),
        None => None,
    };
    on_ready(stored.version, console);
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        next_id += 1;
        let (d, id) = (daemon.clone(), next_id);
        let _ = std::thread::Builder::new()
            .name(format!("controld-peer{id}"))
            .spawn(move || handle(d, stream, id));
    }
    Ok(())
}
