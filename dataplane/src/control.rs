//! The data plane's side of the control socket: every core keeps its own
//! connection to controld, says which snapshot version it holds, and
//! installs the snapshots controld pushes (or refuses them, keeping the old
//! one), acknowledging each.
//!
//! The connection is re-established with exponential backoff whenever it
//! drops; requests never wait on it, so a controld restart is invisible to
//! users.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use capnp::message::Builder;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::UnixStream;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame::{self, MAX_FRAME_BYTES, PREFIX_BYTES};
use palisade_schema::snapshot;

use crate::proxy::Core;
use crate::routes::{RouteTable, SharedRoots};

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

/// Runs forever: connect, serve the session, back off, repeat.
pub async fn run(core: Rc<Core>, config: ControlConfig) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Ok(stream) = UnixStream::connect(&config.socket).await {
            backoff = BACKOFF_MIN;
            // The session ends when controld goes away or misbehaves.
            let _ = session(&core, &config, stream).await;
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn session(
    core: &Core,
    config: &ControlConfig,
    mut stream: UnixStream,
) -> Result<(), String> {
    let mut hello = Builder::new_default();
    {
        let mut h = hello.init_root::<request::Builder>().init_hello();
        h.set_pid(std::process::id());
        h.set_core(config.core_index);
        h.set_cores(config.cores);
        h.set_version_held(core.routes.borrow().version);
    }
    stream
        .write_all(&frame::encode(&hello))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let mut prefix = [0u8; PREFIX_BYTES];
        stream
            .read_exact(&mut prefix)
            .await
            .map_err(|e| e.to_string())?;
        let len = frame::check_length(prefix, MAX_FRAME_BYTES).map_err(|e| e.to_string())?;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        let message = frame::decode(&body).map_err(|e| e.to_string())?;
        let root = message
            .get_root::<response::Reader>()
            .map_err(|e| e.to_string())?;
        let push = match root.which().map_err(|e| e.to_string())? {
            response::Snapshot(p) => p.map_err(|e| e.to_string())?,
            // Nothing else is addressed to a core.
            _ => continue,
        };
        let version = push.get_version();
        let bytes = push.get_bytes().map_err(|e| e.to_string())?;
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
                    a.set_error(e.as_str());
                }
            }
        }
        stream
            .write_all(&frame::encode(&ack))
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// Decodes and compiles a pushed snapshot and swaps it in; on any error the
/// current snapshot stays.
fn install(core: &Core, config: &ControlConfig, version: u64, bytes: &[u8]) -> Result<(), String> {
    let policy = snapshot::decode(bytes).map_err(|e| e.to_string())?;
    if policy.version != version {
        return Err(format!(
            "pushed as version {version} but holds version {}",
            policy.version
        ));
    }
    let table = RouteTable::build(&policy, &config.roots).map_err(|e| e.to_string())?;
    core.routes.replace(Rc::new(table));
    if config.core_index == 0 {
        if let Some(dir) = &config.cache_dir {
            // Best effort: a cache that cannot be written costs a restart
            // the newest policy, not correctness.
            if let Err(e) = cache_store(dir, version, bytes) {
                eprintln!("dataplane: snapshot cache {}: {e}", dir.display());
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
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
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
