//! One core's log shard: the batch being filled, and the sealed batches
//! not yet acknowledged by controld, in sequence order.
//!
//! A sealed batch is kept as the exact control frame that carries it, in
//! memory while the memory budget allows, else in a file of the core's
//! spill directory while the disk budget allows; only when both are
//! exhausted is a batch dropped, and its records counted. A batch is freed
//! (its file deleted) only when controld acknowledges it, so a controld
//! restart loses nothing; on reconnect the unacknowledged batches are sent
//! again, oldest first, and controld stores each (stream, seq) once.
//!
//! Spill files outlive the process: a restarted core finds the files its
//! predecessor left and sends them first. So does the run's ledger
//! ([`super::ledger`]): after an earlier run's spill files, the next run
//! sends that run's end marker, from which controld counts the records
//! lost in the killed process's memory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use capnp::message::Builder;
use palisade_schema::control_capnp::request;
use palisade_schema::frame;
use palisade_schema::logrec::BatchBuilder;

use super::ledger::{self, Ledger};

/// Budgets and places of a core's log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Records per batch before it is sealed.
    pub batch_records: u32,
    /// Sealed batches kept in memory, bytes.
    pub memory_budget: usize,
    /// Directory for spill files (a `core-N` subdirectory per core);
    /// `None`: no spilling.
    pub spill_dir: Option<PathBuf>,
    /// Spill files per core, bytes.
    pub disk_budget: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            batch_records: 1024,
            memory_budget: 32 << 20,
            spill_dir: None,
            disk_budget: 1 << 30,
        }
    }
}

/// Where a sealed batch waits.
enum Held {
    /// Shared with the writer while it sends, so sending copies nothing.
    Memory(Rc<[u8]>),
    /// A spill file and its length.
    Disk(PathBuf, u64),
}

struct Sealed {
    stream_id: u64,
    seq: u64,
    records: u32,
    held: Held,
    /// An end marker's ledger file, deleted once the marker is stored.
    ends: Option<PathBuf>,
}

/// The log of one core.
pub struct LogShard {
    core: u32,
    config: LogConfig,
    stream_id: u64,
    next_seq: u64,
    next_request: u64,
    building: BatchBuilder,
    queue: VecDeque<Sealed>,
    /// Entries at the front of `queue` already sent on the current
    /// connection.
    sent: usize,
    memory_bytes: usize,
    disk_bytes: u64,
    dropped: u64,
    spilled_batches: u64,
    /// Records of this run sealed (kept or dropped), and of those dropped:
    /// with the batch being filled, what the ledger says.
    sealed_records: u64,
    own_dropped: u64,
    ledger: Option<Ledger>,
}

impl LogShard {
    /// A shard for `core`; picks up spill files a previous run left.
    pub fn new(core: u32, config: LogConfig) -> LogShard {
        let start_us = super::now_unix_us();
        // Unique per core run and increasing across runs, so batches of an
        // earlier run sort before this run's.
        let stream_id = (start_us << 8) | (core as u64 & 0xff);
        let mut shard = LogShard {
            core,
            building: BatchBuilder::with_capacity(config.batch_records as usize, 64 << 10),
            config,
            stream_id,
            next_seq: 1,
            next_request: (start_us & 0xff_ffff) << 40 | (core as u64 & 0xff) << 32,
            queue: VecDeque::new(),
            sent: 0,
            memory_bytes: 0,
            disk_bytes: 0,
            dropped: 0,
            spilled_batches: 0,
            sealed_records: 0,
            own_dropped: 0,
            ledger: None,
        };
        shard.adopt_earlier_runs();
        if let Some(dir) = shard.core_dir() {
            match Ledger::create(&dir, stream_id) {
                Ok(l) => shard.ledger = Some(l),
                Err(e) => crate::say!(
                    "dataplane: core {core}: log ledger in {}: {e} (records lost if this run is killed are not counted)",
                    dir.display()
                ),
            }
        }
        shard
    }

    /// Brings the ledger up to date (plain stores into a mapped page).
    fn note(&self) {
        if let Some(l) = &self.ledger {
            l.update(
                self.sealed_records + self.building.count() as u64,
                self.own_dropped,
                self.next_seq,
            );
        }
    }

    /// Counts `records` of `stream_id` dropped.
    fn count_dropped(&mut self, stream_id: u64, records: u32) {
        self.dropped += records as u64;
        if stream_id == self.stream_id {
            self.own_dropped += records as u64;
        }
    }

    pub(super) fn next_request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    pub(super) fn builder(&mut self) -> &mut BatchBuilder {
        &mut self.building
    }

    pub(super) fn after_push(&mut self) {
        if self.building.count() >= self.config.batch_records {
            self.seal();
        } else {
            self.note();
        }
    }

    /// Records dropped since start (both budgets were exhausted).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sealed batches waiting for an ack, and how many of those are on
    /// disk (earlier runs' end markers not included).
    pub fn backlog(&self) -> (usize, usize) {
        let batches = self.queue.iter().filter(|s| s.ends.is_none());
        let on_disk = batches
            .clone()
            .filter(|s| matches!(s.held, Held::Disk(..)))
            .count();
        (batches.count(), on_disk)
    }

    /// Batches written to spill files since start.
    pub fn spilled_batches(&self) -> u64 {
        self.spilled_batches
    }

    /// Records in the batch being filled.
    pub fn pending_records(&self) -> u32 {
        self.building.count()
    }

    fn core_dir(&self) -> Option<PathBuf> {
        self.config
            .spill_dir
            .as_ref()
            .map(|d| d.join(format!("core-{}", self.core)))
    }

    /// Seals the batch being filled: it becomes a frame held in memory, or
    /// on disk, or is dropped when neither budget has room.
    pub fn seal(&mut self) {
        let count = self.building.count();
        if count == 0 {
            return;
        }
        let seq = self.next_seq;
        let frame = batch_frame(self.stream_id, seq, self.core, &self.building, self.dropped);
        self.building.clear();
        self.sealed_records += count as u64;
        let held = if self.memory_bytes + frame.len() <= self.config.memory_budget {
            self.memory_bytes += frame.len();
            Some(Held::Memory(Rc::from(frame)))
        } else {
            self.spill(seq, &frame)
        };
        match held {
            Some(held) => {
                self.next_seq += 1;
                self.queue.push_back(Sealed {
                    stream_id: self.stream_id,
                    seq,
                    records: count,
                    held,
                    ends: None,
                });
            }
            None => self.count_dropped(self.stream_id, count),
        }
        self.note();
    }

    fn spill(&mut self, seq: u64, frame: &[u8]) -> Option<Held> {
        let dir = self.core_dir()?;
        let len = frame.len() as u64;
        if self.disk_bytes + len > self.config.disk_budget {
            return None;
        }
        let path = dir.join(spill_name(self.stream_id, seq));
        match write_spill_file(&dir, &path, frame) {
            Ok(()) => {
                self.disk_bytes += len;
                self.spilled_batches += 1;
                Some(Held::Disk(path, len))
            }
            Err(e) => {
                crate::say!(
                    "dataplane: core {}: log spill {}: {e}",
                    self.core,
                    path.display()
                );
                None
            }
        }
    }

    /// Seals the batch being filled and moves every batch held in memory
    /// to the spill directory (on a graceful stop). Returns the batches
    /// written; what fits nowhere is dropped and counted.
    pub fn persist(&mut self) -> usize {
        self.seal();
        let mut written = 0;
        for i in 0..self.queue.len() {
            let Held::Memory(frame) = &self.queue[i].held else {
                continue;
            };
            let frame = Rc::clone(frame);
            let seq = self.queue[i].seq;
            let stream_id = self.queue[i].stream_id;
            debug_assert_eq!(stream_id, self.stream_id);
            match self.spill(seq, &frame) {
                Some(held) => {
                    self.memory_bytes -= frame.len();
                    self.queue[i].held = held;
                    written += 1;
                }
                None => self.count_dropped(stream_id, self.queue[i].records),
            }
        }
        self.note();
        written
    }

    /// Queues what earlier runs left: their spill files, and after each
    /// run's files its end marker (from its ledger), oldest first.
    fn adopt_earlier_runs(&mut self) {
        let Some(dir) = self.core_dir() else { return };
        let mut found: Vec<Sealed> = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if let Some((stream_id, seq)) = parse_spill_name(&name) {
                let Ok(meta) = entry.metadata() else { continue };
                self.disk_bytes += meta.len();
                found.push(Sealed {
                    stream_id,
                    seq,
                    // Unknown until read; only used for the drop count of
                    // a batch controld refuses.
                    records: 0,
                    held: Held::Disk(path, meta.len()),
                    ends: None,
                });
            } else if ledger::parse_file_name(&name).is_some() {
                match ledger::read(&path) {
                    Some(ended) => found.push(Sealed {
                        stream_id: ended.stream_id,
                        seq: ended.next_seq,
                        records: 0,
                        held: Held::Memory(Rc::from(end_marker_frame(self.core, &ended))),
                        ends: Some(path),
                    }),
                    // Torn before its first words were written: the run
                    // made nothing.
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        found.sort_unstable_by_key(|s| (s.stream_id, s.seq));
        self.queue.extend(found);
    }

    /// A new control connection: everything unacknowledged is sent again.
    pub fn connection_reset(&mut self) {
        self.sent = 0;
    }

    /// The next batch to send on this connection (at most `window`
    /// unacknowledged in flight): its frame bytes.
    pub fn next_to_send(&mut self, window: usize) -> Option<Rc<[u8]>> {
        while self.sent < self.queue.len().min(window) {
            let entry = &self.queue[self.sent];
            let bytes = match &entry.held {
                Held::Memory(frame) => Some(Rc::clone(frame)),
                Held::Disk(path, _) => match std::fs::read(path) {
                    Ok(b) => Some(Rc::from(b)),
                    Err(e) => {
                        crate::say!(
                            "dataplane: core {}: log spill {} unreadable: {e}",
                            self.core,
                            path.display()
                        );
                        None
                    }
                },
            };
            match bytes {
                Some(b) => {
                    self.sent += 1;
                    return Some(b);
                }
                None => {
                    // A lost spill file cannot be sent: count it and go on.
                    let stream_id = entry.stream_id;
                    let gone = self.remove_at(self.sent);
                    self.count_dropped(stream_id, gone);
                    self.note();
                }
            }
        }
        None
    }

    /// controld stored (or refused) batch `seq` of `stream_id`: free it.
    pub fn acknowledged(&mut self, stream_id: u64, seq: u64, ok: bool) {
        let Some(i) = self
            .queue
            .iter()
            .position(|s| s.stream_id == stream_id && s.seq == seq)
        else {
            return;
        };
        let records = self.remove_at(i);
        if i < self.sent {
            self.sent -= 1;
        }
        if !ok {
            self.count_dropped(stream_id, records);
            self.note();
        }
    }

    fn remove_at(&mut self, i: usize) -> u32 {
        let Some(entry) = self.queue.remove(i) else {
            return 0;
        };
        if let Some(ledger) = &entry.ends {
            let _ = std::fs::remove_file(ledger);
        }
        match entry.held {
            // End markers are not counted against the memory budget.
            Held::Memory(_) if entry.ends.is_some() => {}
            Held::Memory(frame) => self.memory_bytes -= frame.len(),
            Held::Disk(path, len) => {
                self.disk_bytes = self.disk_bytes.saturating_sub(len);
                let _ = std::fs::remove_file(path);
            }
        }
        entry.records
    }
}

fn spill_name(stream_id: u64, seq: u64) -> String {
    format!("{stream_id:016x}-{seq:016x}.batch")
}

fn parse_spill_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".batch")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// Writes a spill file whole or not at all (temp file, fsync, rename,
/// fsync of the directory), so neither a crash of the process nor of the
/// machine leaves a torn batch under a real name or loses one written. A
/// failed write (a full disk) leaves nothing behind.
fn write_spill_file(dir: &Path, path: &Path, frame: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(frame)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The control frame carrying one batch.
fn batch_frame(stream_id: u64, seq: u64, core: u32, b: &BatchBuilder, dropped: u64) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut batch = m.init_root::<request::Builder>().init_log_batch();
        batch.set_stream_id(stream_id);
        batch.set_seq(seq);
        batch.set_core(core);
        batch.set_count(b.count());
        batch.set_records(b.records_bytes());
        batch.set_arena(b.arena());
        batch.set_dropped_total(dropped);
    }
    frame::encode(&m)
}

/// The frame carrying an ended run's marker: no records, seq one past its
/// last batch, and what its ledger says it made and dropped.
fn end_marker_frame(core: u32, ended: &ledger::Ended) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut batch = m.init_root::<request::Builder>().init_log_batch();
        batch.set_stream_id(ended.stream_id);
        batch.set_seq(ended.next_seq);
        batch.set_core(core);
        batch.set_count(0);
        batch.set_dropped_total(ended.dropped);
        batch.set_ends_stream(true);
        batch.set_issued_total(ended.issued);
    }
    frame::encode(&m)
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
