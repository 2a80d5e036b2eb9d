//! The data plane's side of the control socket: every core keeps its own
//! connection to controld, says which snapshot version it holds, and
//! installs the snapshots controld pushes (or refuses them, keeping the old
//! one), acknowledging each.
//!
//! The same connection carries the core's log batches (see
//! [`crate::logs`]): a writer half sends snapshot acks first, then log
//! batches (at most a window unacknowledged), while a reader half takes
//! pushes and log acks.
//!
//! The connection is re-established with exponential backoff whenever it
//! drops; requests never wait on it, so a controld restart is invisible to
//! users.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use capnp::message::Builder;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::UnixStream;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame::{self, MAX_FRAME_BYTES, PREFIX_BYTES};
use palisade_schema::snapshot;

use crate::core::Core;
use crate::snapshot::{SharedRoots, Snapshot};

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What one core needs to talk to controld.
pub struct ControlConfig {
    pub socket: PathBuf,
    /// Where installed snapshots are kept for restarts without controld.
    pub cache_dir: Option<PathBuf>,
    pub core_index: u32,
    pub cores: u32,
    pub roots: SharedRoots,
}

/// How often a partly filled log batch is sealed and sent.
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Log batches sent and not yet acknowledged, per connection.
const LOG_WINDOW: usize = 16;

/// Why a session with controld ended (it is re-established after a
/// backoff either way).
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The socket failed or closed.
    Io(std::io::Error),
    /// A frame was malformed or too large.
    Frame(frame::FrameError),
    /// A frame's message does not fit the control schema.
    Schema(capnp::Error),
    /// A message names a variant this build does not know.
    NotInSchema(capnp::NotInSchema),
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Io(e) => e.fmt(f),
            SessionEnd::Frame(e) => e.fmt(f),
            SessionEnd::Schema(e) => e.fmt(f),
            SessionEnd::NotInSchema(e) => e.fmt(f),
        }
    }
}

impl From<std::io::Error> for SessionEnd {
    fn from(e: std::io::Error) -> Self {
        SessionEnd::Io(e)
    }
}

impl From<frame::FrameError> for SessionEnd {
    fn from(e: frame::FrameError) -> Self {
        SessionEnd::Frame(e)
    }
}

impl From<capnp::Error> for SessionEnd {
    fn from(e: capnp::Error) -> Self {
        SessionEnd::Schema(e)
    }
}

impl From<capnp::NotInSchema> for SessionEnd {
    fn from(e: capnp::NotInSchema) -> Self {
        SessionEnd::NotInSchema(e)
    }
}

/// Why a pushed snapshot was refused (sent back in the ack; the current
/// snapshot keeps serving).
#[derive(Debug)]
#[non_exhaustive]
pub enum InstallError {
    Decode(snapshot::SnapshotError),
    /// The push and the snapshot disagree on the version.
    VersionMismatch {
        pushed: u64,
        holds: u64,
    },
    Build(crate::snapshot::SnapshotError),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Decode(e) => e.fmt(f),
            InstallError::VersionMismatch { pushed, holds } => {
                write!(f, "pushed as version {pushed} but holds version {holds}")
            }
            InstallError::Build(e) => e.fmt(f),
        }
    }
}

/// Runs forever: connect, serve the session, back off, repeat.
pub async fn run(core: Rc<Core>, config: ControlConfig) {
    let wake = Rc::new(Signal::default());
    if core.logs.is_some() {
        glommio::spawn_local(flush_logs(core.clone(), wake.clone())).detach();
    }
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Ok(stream) = UnixStream::connect(&config.socket).await {
            backoff = BACKOFF_MIN;
            // The session ends when controld goes away or misbehaves.
            let _ = session(&core, &config, stream, &wake).await;
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Seals the log batch being filled every [`LOG_FLUSH_EVERY`], so records
/// reach controld within that time even when traffic is light.
async fn flush_logs(core: Rc<Core>, wake: Rc<Signal>) {
    loop {
        glommio::timer::sleep(LOG_FLUSH_EVERY).await;
        if crate::shutdown::requested() {
            if let Some(log) = &core.logs {
                let written = log.borrow_mut().persist();
                if written > 0 {
                    crate::say!("dataplane: stopping: wrote {written} unacknowledged log batches to the spill directory");
                }
            }
            crate::shutdown::core_done();
            return;
        }
        if let Some(log) = &core.logs {
            let mut shard = log.borrow_mut();
            shard.seal();
            if shard.backlog().0 > 0 {
                wake.raise();
            }
        }
    }
}

/// A one-shot wake-up between tasks of one core.
#[derive(Default)]
struct Signal {
    raised: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn raise(&self) {
        self.raised.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.raised.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

async fn session(
    core: &Core,
    config: &ControlConfig,
    stream: UnixStream,
    wake: &Signal,
) -> Result<(), SessionEnd> {
    let mut hello = Builder::new_default();
    {
        let mut h = hello.init_root::<request::Builder>().init_hello();
        h.set_pid(std::process::id());
        h.set_core(config.core_index);
        h.set_cores(config.cores);
        h.set_version_held(core.snapshot.borrow().version);
        h.set_log_dropped(core.logs.as_ref().map_or(0, |l| l.borrow().dropped()));
    }
    if let Some(log) = &core.logs {
        log.borrow_mut().connection_reset();
    }
    let (reader, mut writer) = futures_lite::io::split(stream);
    writer.write_all(&frame::encode(&hello)).await?;
    // Frames the reader wants sent (snapshot acks) go before log batches.
    let outbox: RefCell<Vec<Vec<u8>>> = RefCell::new(Vec::new());
    let read_side = read_frames(core, config, reader, &outbox, wake);
    let write_side = async {
        loop {
            let urgent = std::mem::take(&mut *outbox.borrow_mut());
            for f in urgent {
                writer.write_all(&f).await?;
            }
            if let Some(log) = &core.logs {
                loop {
                    let next = log.borrow_mut().next_to_send(LOG_WINDOW);
                    let Some(f) = next else { break };
                    writer.write_all(&f).await?;
                    if !outbox.borrow().is_empty() {
                        break;
                    }
                }
            }
            if outbox.borrow().is_empty() {
                wake.wait().await;
            }
        }
    };
    futures_lite::future::or(read_side, write_side).await
}

/// The reading half of a session: snapshot pushes (installed, then acked
/// through `outbox`) and log acks.
async fn read_frames(
    core: &Core,
    config: &ControlConfig,
    mut stream: impl futures_lite::AsyncRead + Unpin,
    outbox: &RefCell<Vec<Vec<u8>>>,
    wake: &Signal,
) -> Result<(), SessionEnd> {
    loop {
        let mut prefix = [0u8; PREFIX_BYTES];
        stream.read_exact(&mut prefix).await?;
        let len = frame::check_length(prefix, MAX_FRAME_BYTES)?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        let message = frame::decode(&body)?;
        let root = message.get_root::<response::Reader>()?;
        let push = match root.which()? {
            response::Snapshot(p) => p?,
            response::LogAck(a) => {
                let a = a?;
                if let Some(log) = &core.logs {
                    if !a.get_ok() {
                        crate::say!(
                            "dataplane: core {}: controld refused log batch {}: {}",
                            config.core_index,
                            a.get_seq(),
                            a.get_error()
                                .ok()
                                .and_then(|t| t.to_str().ok())
                                .unwrap_or("")
                        );
                    }
                    log.borrow_mut()
                        .acknowledged(a.get_stream_id(), a.get_seq(), a.get_ok());
                }
                wake.raise();
                continue;
            }
            // Nothing else is addressed to a core.
            _ => continue,
        };
        let version = push.get_version();
        let bytes = push.get_bytes()?;
        // Yield first so requests already queued on this core run before
        // the (synchronous) decode and compile.
        glommio::yield_if_needed().await;
        let result = install(core, config, version, bytes);
        let mut ack = Builder::new_default();
        {
            let mut a = ack.init_root::<request::Builder>().init_ack();
            a.set_version(version);
            match &result {
                Ok(()) => a.set_ok(true),
                Err(e) => {
                    a.set_ok(false);
                    a.set_error(e.to_string().as_str());
                }
            }
        }
        outbox.borrow_mut().push(frame::encode(&ack));
        wake.raise();
    }
}

/// Decodes and compiles a pushed snapshot and swaps it in; on any error the
/// current snapshot stays.
fn install(
    core: &Core,
    config: &ControlConfig,
    version: u64,
    bytes: &[u8],
) -> Result<(), InstallError> {
    let policy = snapshot::decode(bytes).map_err(InstallError::Decode)?;
    if policy.version != version {
        return Err(InstallError::VersionMismatch {
            pushed: version,
            holds: policy.version,
        });
    }
    let table = Snapshot::build(&policy, &config.roots).map_err(InstallError::Build)?;
    core.install(table);
    core.snapshot_installed.signal(1);
    if config.core_index == 0 {
        if let Some(dir) = &config.cache_dir {
            // Best effort: a cache that cannot be written costs a restart
            // the newest policy, not correctness.
            if let Err(e) = cache_store(dir, version, bytes) {
                crate::say!("dataplane: snapshot cache {}: {e}", dir.display());
            }
        }
    }
    Ok(())
}

fn cache_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("{version:020}.snap"))
}

/// Keeps this many snapshots in the cache.
const CACHE_KEEP: usize = 5;

/// Writes a snapshot into the cache atomically and prunes old ones.
pub fn cache_store(dir: &Path, version: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = cache_path(dir, version);
    let tmp = dir.join(format!(".{version:020}.snap.tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
        // A full disk leaves no partial file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()?;
    let mut versions = cache_versions(dir);
    while versions.len() > CACHE_KEEP {
        let oldest = versions.remove(0);
        let _ = std::fs::remove_file(cache_path(dir, oldest));
    }
    Ok(())
}

fn cache_versions(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .into_string()
                .ok()?
                .strip_suffix(".snap")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// The newest snapshot in the cache that decodes, with its bytes.
pub fn cache_newest(dir: &Path) -> Option<(u64, Vec<u8>)> {
    cache_versions(dir).into_iter().rev().find_map(|v| {
        let bytes = std::fs::read(cache_path(dir, v)).ok()?;
        let policy = snapshot::decode(&bytes).ok()?;
        (policy.version == v).then_some((v, bytes))
    })
}
