//! The per-core state every connection of one core shares (never shared
//! across cores): the snapshot in force, the limits, the upstream pool,
//! the buffer pool, the log shard, request ids, the held-bytes budget and
//! the warnings already given about each app.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::io::BufferPool;
use crate::limits::Limits;
use crate::logs::LogShard;
use crate::metrics::CoreMetrics;
use crate::snapshot::Snapshot;
use crate::upstream::Pool;

/// Initial read buffer of a client connection.
pub const CLIENT_BUFFER: usize = 8 * 1024;

/// Per-core state shared by that core's connections.
pub struct Core {
    /// The snapshot in force. A request takes its own reference when its
    /// head arrives and keeps it to its end; a swap only changes what
    /// later requests see, and an old snapshot is freed when its last
    /// request ends.
    pub snapshot: RefCell<Rc<Snapshot>>,
    pub limits: Limits,
    pub pool: RefCell<Pool>,
    /// HTTP/2 connections to apps that chose `h2`, one per upstream.
    pub h2_upstreams: crate::http2::upstream::Http2Upstreams,
    /// Read and scratch buffers lent to this core's connections.
    pub buffers: Rc<BufferPool>,
    /// Read buffers of upstream connections (an idle pooled connection
    /// gives its buffer back here).
    pub upstream_buffers: Rc<BufferPool>,
    /// This core's traffic and activity log (`None`: logging is off).
    pub logs: Option<RefCell<LogShard>>,
    /// Request ids for block pages: a per-core random start, counted up.
    request_ids: Cell<u64>,
    /// Bytes of files currently held for session control on this core
    /// (bounded by `session_policy::flow::MAX_HELD_BYTES_PER_CORE`).
    pub held_bytes: Cell<u64>,
    /// `(app, what)` warnings already written to stderr by this core.
    warned: RefCell<Vec<(Rc<str>, &'static str)>>,
    /// A permit per snapshot installed from controld: a core that started
    /// without a snapshot accepts nothing before the first (see
    /// `server::start`).
    pub snapshot_installed: glommio::sync::Semaphore,
    /// This core's counters (read by the metrics exporter).
    pub metrics: Arc<CoreMetrics>,
}

impl Core {
    pub fn new(snapshot: Snapshot, limits: Limits, metrics: Arc<CoreMetrics>) -> Core {
        let pool = Pool::new(limits.pool_max_idle, limits.pool_idle_timeout);
        let snapshot = with_counters(snapshot, &metrics);
        Core {
            snapshot: RefCell::new(Rc::new(snapshot)),
            limits,
            pool: RefCell::new(pool),
            h2_upstreams: Default::default(),
            buffers: Rc::new(BufferPool::new(CLIENT_BUFFER, 4096)),
            upstream_buffers: Rc::new(BufferPool::new(crate::upstream::UPSTREAM_BUFFER, 1024)),
            logs: None,
            request_ids: Cell::new(random_u64()),
            held_bytes: Cell::new(0),
            warned: RefCell::new(Vec::new()),
            snapshot_installed: glommio::sync::Semaphore::new(0),
            metrics,
        }
    }

    /// Makes `snapshot` the one in force for requests from now on (see
    /// [`Core::snapshot`]), its apps' counters lined up first.
    pub fn install(&self, snapshot: Snapshot) {
        self.snapshot
            .replace(Rc::new(with_counters(snapshot, &self.metrics)));
    }

    /// A new request id (shown as 16 hex digits on block pages and in
    /// the log).
    pub fn next_request_id(&self) -> u64 {
        let id = self.request_ids.get().wrapping_add(1).max(1);
        self.request_ids.set(id);
        id
    }

    /// Writes `message` about `app` to stderr the first time this core
    /// meets `what` from it (an app's quirk is worth one line, not one per
    /// request).
    pub fn warn_once(&self, app: &Rc<str>, what: &'static str, message: impl FnOnce() -> String) {
        let mut warned = self.warned.borrow_mut();
        if warned.iter().any(|(a, w)| a == app && *w == what) {
            return;
        }
        warned.push((app.clone(), what));
        crate::say!("dataplane: app \"{app}\": {}", message());
    }

    /// Turns on this core's log with `shard`.
    pub fn with_logs(mut self, shard: LogShard) -> Core {
        self.logs = Some(RefCell::new(shard));
        self
    }
}

/// `snapshot` with this core's counters of each of its apps, and the
/// version gauge set.
fn with_counters(mut snapshot: Snapshot, metrics: &CoreMetrics) -> Snapshot {
    snapshot.app_counters = metrics.for_apps(snapshot.apps.iter().map(|a| &*a.name));
    metrics.policy_version.set(snapshot.version);
    snapshot
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b)
}
