//! Tests of the log shard: spilling, dropping, persisting, and what a
//! restarted core sends first.

use super::*;
use crate::logs::TrafficFacts;
use palisade_schema::logrec::Action;

fn facts(target: &[u8]) -> TrafficFacts<'_> {
    TrafficFacts {
        request_id: 0,
        started_unix_us: 1,
        duration_us: 2,
        peer: "127.0.0.1:5".parse().unwrap(),
        tls: false,
        http2: false,
        app: "demo",
        host: b"demo.test",
        method: b"GET",
        target,
        user_agent: b"ua",
        status: 200,
        bytes_up: 10,
        bytes_down: 20,
        action: Action::Allow,
        policy: "",
        user: "",
        session_id: "",
        device_tags: "",
    }
}

fn config(dir: Option<&Path>, memory: usize, disk: u64) -> LogConfig {
    LogConfig {
        batch_records: 2,
        memory_budget: memory,
        spill_dir: dir.map(Path::to_path_buf),
        disk_budget: disk,
    }
}

#[test]
fn batches_spill_past_the_memory_budget_and_are_sent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one batch in memory.
    let mut shard = LogShard::new(0, config(Some(dir.path()), 700, 1 << 20));
    for i in 0..6 {
        shard.record(&facts(format!("/{i}").as_bytes()), None);
    }
    assert_eq!(shard.backlog(), (3, 2));
    let frames: Vec<Rc<[u8]>> = std::iter::from_fn(|| shard.next_to_send(16)).collect();
    assert_eq!(frames.len(), 3);
    // Acks free memory and delete files.
    let stream = shard.stream_id;
    for seq in 1..=3 {
        shard.acknowledged(stream, seq, true);
    }
    assert_eq!(shard.backlog(), (0, 0));
    let batch_files = std::fs::read_dir(dir.path().join("core-0"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
        .count();
    assert_eq!(batch_files, 0);
    assert_eq!(shard.dropped(), 0);
}

#[test]
fn records_are_dropped_and_counted_only_when_both_budgets_are_full() {
    let mut shard = LogShard::new(1, config(None, 700, 0));
    for i in 0..6 {
        shard.record(&facts(format!("/{i}").as_bytes()), None);
    }
    assert_eq!(shard.backlog(), (1, 0));
    assert_eq!(shard.dropped(), 4);
}

#[test]
fn persisting_moves_memory_batches_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut shard = LogShard::new(3, config(Some(dir.path()), 1 << 20, 1 << 20));
    for i in 0..5 {
        shard.record(&facts(format!("/{i}").as_bytes()), None);
    }
    assert_eq!(shard.backlog(), (2, 0));
    assert_eq!(shard.persist(), 3);
    assert_eq!(shard.backlog(), (3, 3));
    let next = LogShard::new(3, config(Some(dir.path()), 1 << 20, 1 << 20));
    assert_eq!(next.backlog(), (3, 3));
}

#[test]
fn a_restarted_core_sends_its_predecessors_spill_files_first() {
    let dir = tempfile::tempdir().unwrap();
    let old_stream;
    {
        let mut shard = LogShard::new(0, config(Some(dir.path()), 0, 1 << 20));
        old_stream = shard.stream_id;
        for i in 0..4 {
            shard.record(&facts(format!("/{i}").as_bytes()), None);
        }
        assert_eq!(shard.backlog(), (2, 2));
    }
    let mut shard = LogShard::new(0, config(Some(dir.path()), 1 << 20, 1 << 20));
    assert_eq!(shard.backlog(), (2, 2));
    shard.record(&facts(b"/new"), None);
    shard.seal();
    let first = shard.next_to_send(16).unwrap();
    let (stream, seq, ..) = batch_of(&first);
    assert_eq!((stream, seq), (old_stream, 1));
    // A new connection starts over from the oldest unacknowledged.
    shard.connection_reset();
    assert_eq!(shard.next_to_send(16).unwrap(), first);
}

fn batch_of(frame: &[u8]) -> (u64, u64, u32, bool, u64, u64) {
    let m = frame::decode(&frame[4..]).unwrap();
    let root = m.get_root::<request::Reader>().unwrap();
    let request::LogBatch(b) = root.which().unwrap() else {
        panic!("not a batch")
    };
    let b = b.unwrap();
    (
        b.get_stream_id(),
        b.get_seq(),
        b.get_count(),
        b.get_ends_stream(),
        b.get_issued_total(),
        b.get_dropped_total(),
    )
}

#[test]
fn the_next_run_sends_a_killed_runs_end_marker_after_its_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let old_stream;
    {
        // Room for one batch in memory: batch 1 in memory, batch 2
        // spilled, one record still being filled; then "killed"
        // (dropped without persisting).
        let mut shard = LogShard::new(0, config(Some(dir.path()), 700, 1 << 20));
        old_stream = shard.stream_id;
        for i in 0..5 {
            shard.record(&facts(format!("/{i}").as_bytes()), None);
        }
        assert_eq!(shard.backlog(), (2, 1));
    }
    let mut shard = LogShard::new(0, config(Some(dir.path()), 1 << 20, 1 << 20));
    let sent: Vec<_> = std::iter::from_fn(|| shard.next_to_send(16))
        .map(|f| batch_of(&f))
        .collect();
    assert_eq!(
        sent,
        vec![
            (old_stream, 2, 2, false, 0, 0),
            // Made 5, dropped none, stored (at most) the spilled 2:
            // controld counts the rest lost.
            (old_stream, 3, 0, true, 5, 0),
        ]
    );
    // The marker's ack deletes the old ledger; the new run's stays.
    shard.acknowledged(old_stream, 2, true);
    shard.acknowledged(old_stream, 3, true);
    let ledgers = || {
        std::fs::read_dir(dir.path().join("core-0"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ledger"))
            .count()
    };
    assert_eq!(ledgers(), 1);
    // A later run finds the new ledger (nothing made: issued 0).
    drop(shard);
    let mut next = LogShard::new(0, config(Some(dir.path()), 1 << 20, 1 << 20));
    let f = next.next_to_send(16).unwrap();
    let (_, seq, count, ends, issued, _) = batch_of(&f);
    assert_eq!((seq, count, ends, issued), (1, 0, true, 0));
}
