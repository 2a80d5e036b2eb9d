//! `controld logs export` streams: exporting a million rows needs no more
//! memory than exporting a few.

use std::process::{Command, Stdio};

use palisade_controld::logstore::{self, BatchRef, Store, Sync};
use palisade_schema::logrec::{BatchBuilder, BatchView, Field, Record};
use zerocopy::little_endian::{U16, U64};

const ROWS: usize = 1_000_000;
const PER_BATCH: usize = 10_000;
/// Far below what holding the rows would take (the CSV is ~250 MB).
const MAX_RSS_KIB: i64 = 64 * 1024;

fn fill(store: &mut Store) {
    let mut b = BatchBuilder::default();
    for batch in 0..ROWS / PER_BATCH {
        b.clear();
        for i in 0..PER_BATCH {
            let n = batch * PER_BATCH + i;
            let mut r = Record {
                time_unix_us: U64::new(1_790_000_000_000_000 + n as u64),
                request_id: U64::new(n as u64),
                bytes_up: U64::new(400),
                bytes_down: U64::new(12_000),
                status: U16::new(200),
                ..Record::default()
            };
            r.strings[Field::App as usize] = b.string(b"box");
            r.strings[Field::Host as usize] = b.string(b"app.box.com");
            r.strings[Field::Method as usize] = b.string(b"GET");
            r.strings[Field::Url as usize] = b.string(
                format!("https://app.box.com/folder/{n}/files?sort=name&direction=ASC&page=3")
                    .as_bytes(),
            );
            r.strings[Field::UserAgent as usize] = b.string(
                b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            );
            r.strings[Field::User as usize] =
                b.string(format!("user{}@corp.example", n % 97).as_bytes());
            b.push(&r);
        }
        let view = BatchView::new(b.count(), b.records_bytes(), b.arena()).expect("view");
        store
            .store_all(
                &[BatchRef {
                    stream_id: 1,
                    seq: batch as u64 + 1,
                    core: 0,
                    view,
                    ends: None,
                }],
                |_, _, _| Ok(()),
            )
            .expect("store");
    }
}

#[test]
fn export_of_a_million_rows_runs_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&logstore::path(dir.path()), Sync::Normal).expect("store");
    fill(&mut store);
    drop(store);
    let mut child = Command::new(env!("CARGO_BIN_EXE_controld"))
        .args([
            "logs",
            "export",
            "--format",
            "csv",
            "-o",
            "/dev/null",
            "--state-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("export");
    // The high-water mark of the export's own address space, read while it
    // runs (getrusage would also count this process's memory, which the
    // child shares until it execs).
    let status = format!("/proc/{}/status", child.id());
    let mut rss = 0;
    while child.try_wait().expect("wait").is_none() {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        }) {
            rss = rss.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("exported {ROWS} records")), "{said}");
    assert!(rss > 0, "never saw the export's memory");
    assert!(
        rss < MAX_RSS_KIB,
        "export peaked at {rss} KiB resident (bound {MAX_RSS_KIB} KiB)"
    );
    eprintln!("export of {ROWS} rows: peak resident {rss} KiB");
}
