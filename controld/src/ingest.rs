//! Log ingestion: connection threads hand received log batches to one
//! storage thread, which stores whatever has queued up in one transaction
//! (group commit), then acknowledges each batch to the core that sent it.
//! A batch is acknowledged only after its transaction committed; a batch
//! that fails to store is not acknowledged and its connection is closed, so
//! the core sends it again after reconnecting.
//!
//! The queue is bounded: when storage falls behind, connection threads
//! block, cores stop receiving acks, and their own budgets (memory, then
//! disk) absorb the backlog.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capnp::message::Builder;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame;
use palisade_schema::logrec::BatchView;

use crate::alerts::Engine;
use crate::logstore::{BatchRef, Store, Stored, StreamEnd};
use palisade_schema::systemd::Priority;

/// Batches queued for storage, at most.
const QUEUE_BATCHES: usize = 256;
/// Most records stored in one transaction.
const GROUP_RECORDS: usize = 200_000;
/// Longest a batch waits for others to share its transaction.
const GROUP_WAIT: Duration = Duration::from_millis(25);
/// How often expired records are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

/// A received batch and where its ack goes.
pub struct Incoming {
    /// The decoded frame (a `Request` holding `logBatch`), decoded once by
    /// the connection thread.
    pub message: capnp::message::Reader<capnp::serialize::OwnedSegments>,
    pub count: u32,
    pub conn_id: u64,
    pub reply: Arc<Mutex<UnixStream>>,
}

/// Counters shown by `controld status`.
#[derive(Default)]
pub struct Stats {
    /// Records received and not stored yet.
    pub backlog: AtomicU64,
    /// Records stored since start.
    pub stored: AtomicU64,
    /// Records data-plane runs lost (killed holding them in memory), over
    /// the store's life.
    pub lost: AtomicU64,
}

/// Called after each commit: (connection, records stored, core's dropped
/// total).
pub type OnStored = Box<dyn Fn(u64, u64, u64) + Send>;

/// Handle to the storage thread.
pub struct Ingest {
    tx: SyncSender<Incoming>,
    pub stats: Arc<Stats>,
}

impl Ingest {
    /// Starts the storage thread over `store`.
    pub fn start(
        store: Store,
        alerts: Engine,
        retention: Option<Duration>,
        on_stored: OnStored,
    ) -> Ingest {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BATCHES);
        let stats = Arc::new(Stats {
            lost: AtomicU64::new(store.lost_total()),
            ..Stats::default()
        });
        let s = stats.clone();
        let _ = std::thread::Builder::new()
            .name("controld-store".into())
            .spawn(move || run(rx, store, alerts, retention, s, on_stored));
        Ingest { tx, stats }
    }

    /// Queues a batch (blocks while the queue is full).
    pub fn submit(&self, batch: Incoming) -> bool {
        self.stats
            .backlog
            .fetch_add(batch.count as u64, Ordering::Relaxed);
        self.tx.send(batch).is_ok()
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn ack_frame(stream_id: u64, seq: u64, error: Option<&str>) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut a = m.init_root::<response::Builder>().init_log_ack();
        a.set_stream_id(stream_id);
        a.set_seq(seq);
        a.set_ok(error.is_none());
        if let Some(e) = error {
            a.set_error(e);
        }
    }
    frame::encode(&m)
}

fn send(reply: &Mutex<UnixStream>, bytes: &[u8]) {
    if let Ok(mut w) = reply.lock() {
        let _ = std::io::Write::write_all(&mut *w, bytes);
    }
}

/// The ids and counters of a decoded batch.
struct Header {
    stream_id: u64,
    seq: u64,
    core: u32,
    dropped_total: u64,
    ends: Option<StreamEnd>,
}

fn run(
    rx: Receiver<Incoming>,
    mut store: Store,
    mut alerts: Engine,
    retention: Option<Duration>,
    stats: Arc<Stats>,
    on_stored: OnStored,
) {
    let mut last_expiry: Option<Instant> = None;
    loop {
        if let Some(keep) = retention {
            if last_expiry.is_none_or(|t| t.elapsed() >= EXPIRE_EVERY) {
                let cutoff = now_us() - keep.as_micros() as i64;
                match store.expire(cutoff) {
                    Ok(n) if n > 0 => crate::say(
                        Priority::Info,
                        &format!("controld: retention: deleted {n} old records"),
                        &[],
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        crate::say(Priority::Error, &format!("controld: retention: {e}"), &[])
                    }
                }
                last_expiry = Some(Instant::now());
            }
        }
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Group commit: take what arrives within GROUP_WAIT of the first
        // batch (or up to GROUP_RECORDS) into one transaction, so light
        // traffic from many cores costs one fsync per interval, not one
        // per batch.
        let mut group = vec![first];
        let mut records = group[0].count as usize;
        let until = Instant::now() + GROUP_WAIT;
        while records < GROUP_RECORDS {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => {
                    records += b.count as usize;
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        store_group(&mut store, &mut alerts, group, &stats, &on_stored);
    }
}

fn store_group(
    store: &mut Store,
    alerts: &mut Engine,
    group: Vec<Incoming>,
    stats: &Stats,
    on_stored: &OnStored,
) {
    let total: u64 = group.iter().map(|b| b.count as u64).sum();
    // Malformed batches are refused right away.
    let mut refs = Vec::with_capacity(group.len());
    let mut owners = Vec::with_capacity(group.len());
    for incoming in &group {
        let decoded = Ok::<_, String>(&incoming.message).and_then(|m| {
            let root = m.get_root::<request::Reader>().map_err(|e| e.to_string())?;
            let request::LogBatch(b) = root.which().map_err(|e| e.to_string())? else {
                return Err("not a log batch".to_string());
            };
            let b = b.map_err(|e| e.to_string())?;
            let header = Header {
                stream_id: b.get_stream_id(),
                seq: b.get_seq(),
                core: b.get_core(),
                dropped_total: b.get_dropped_total(),
                ends: b.get_ends_stream().then(|| StreamEnd {
                    issued: b.get_issued_total(),
                    dropped: b.get_dropped_total(),
                }),
            };
            let view = BatchView::new(
                b.get_count(),
                b.get_records().map_err(|e| e.to_string())?,
                b.get_arena().map_err(|e| e.to_string())?,
            )
            .map_err(|e| {
                // Refused with an ack naming the batch, so the core frees it.
                send(
                    &incoming.reply,
                    &ack_frame(header.stream_id, header.seq, Some(&e.to_string())),
                );
                e.to_string()
            })?;
            Ok((header, view))
        });
        match decoded {
            Ok((header, view)) => {
                refs.push(BatchRef {
                    stream_id: header.stream_id,
                    seq: header.seq,
                    core: header.core,
                    view,
                    ends: header.ends,
                });
                owners.push((incoming, header));
            }
            Err(e) => crate::say(
                Priority::Warning,
                &format!("controld: refused a log batch: {e}"),
                &[],
            ),
        }
    }
    let result = store.store_all(&refs, |tx, id, r| alerts.check(tx, id, r));
    stats.backlog.fetch_sub(total, Ordering::Relaxed);
    stats.lost.store(store.lost_total(), Ordering::Relaxed);
    match result {
        Ok(outcomes) => {
            for ((incoming, header), outcome) in owners.iter().zip(outcomes) {
                send(
                    &incoming.reply,
                    &ack_frame(header.stream_id, header.seq, None),
                );
                let stored = match outcome {
                    Stored::Inserted { .. } => incoming.count as u64,
                    Stored::Duplicate => 0,
                    Stored::Ended { lost } => {
                        if lost > 0 {
                            crate::say(
                                Priority::Warning,
                                &format!("controld: core {}: an earlier data-plane run ended (killed or crashed) holding {lost} log records it never sent; counted as lost", header.core),
                                &[("PALISADE_CORE", &header.core.to_string()), ("PALISADE_LOST_RECORDS", &lost.to_string())],
                            );
                        }
                        0
                    }
                };
                stats.stored.fetch_add(stored, Ordering::Relaxed);
                on_stored(incoming.conn_id, stored, header.dropped_total);
            }
        }
        Err(e) => {
            // Nothing of the group is stored: make the cores resend.
            crate::say(
                Priority::Error,
                &format!("controld: storing logs failed: {e}; the cores will resend"),
                &[],
            );
            for (incoming, _) in &owners {
                if let Ok(s) = incoming.reply.lock() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}
