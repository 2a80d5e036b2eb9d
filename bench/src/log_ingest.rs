//! `bench log-ingest`: how many log records per second controld stores,
//! through the real socket path. Starts `controld serve`, connects like
//! data-plane cores (hello, then log batches with increasing sequence
//! numbers, sent as fast as controld takes them), and times
//! from the first batch sent to the last ack received (an ack is sent only
//! after the batch's transaction committed).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use capnp::message::Builder;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame;
use palisade_schema::logrec::{ip_bytes, BatchBuilder, Field, Record};
use zerocopy::little_endian::{U16, U32, U64};

use crate::procs::{sibling, spawn_ready};

/// Settings for one run.
pub struct LogIngest {
    /// Records per round.
    pub records: usize,
    /// Records per batch (the data plane's default is 1024).
    pub batch: usize,
    /// Connections acting as cores.
    pub producers: usize,
    pub rounds: usize,
    /// controld's `--log-sync` (full or normal).
    pub sync: String,
}

/// A batch of realistic records (a browser's requests to a SaaS app).
/// Times increase from batch to batch, as they do in a real log.
pub(crate) fn sample_batch(n: usize, first_us: u64) -> BatchBuilder {
    let mut b = BatchBuilder::with_capacity(n, n * 300);
    for i in 0..n {
        let mut r = Record {
            time_unix_us: U64::new(first_us + i as u64),
            request_id: U64::new(i as u64),
            bytes_up: U64::new(612),
            bytes_down: U64::new(18_442),
            duration_us: U32::new(2_300),
            client_ip: ip_bytes(std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8])),
            client_port: U16::new(40_000 + (i % 20_000) as u16),
            status: U16::new(200),
            ..Record::default()
        };
        let s = &mut r.strings;
        s[Field::App as usize] = b.string(b"box");
        s[Field::Host as usize] = b.string(b"app.box.com");
        s[Field::Method as usize] = b.string(b"GET");
        s[Field::Url as usize] = b.string(
            format!(
                "https://app.box.com/folder/{}/files?sort=name&page={}",
                i * 7,
                i % 9
            )
            .as_bytes(),
        );
        s[Field::UserAgent as usize] = b.string(
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        );
        s[Field::User as usize] = b.string(format!("user{}@corp.example", i % 50).as_bytes());
        s[Field::SessionId as usize] = b.string(format!("s{:016x}", i % 50).as_bytes());
        b.push(&r);
    }
    b
}

pub(crate) fn batch_frame(stream_id: u64, seq: u64, b: &BatchBuilder) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut lb = m.init_root::<request::Builder>().init_log_batch();
        lb.set_stream_id(stream_id);
        lb.set_seq(seq);
        lb.set_count(b.count());
        lb.set_records(b.records_bytes());
        lb.set_arena(b.arena());
    }
    frame::encode(&m)
}

fn hello_frame(core: u32) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut h = m.init_root::<request::Builder>().init_hello();
        h.set_pid(std::process::id());
        h.set_core(core);
        h.set_cores(1);
        // Claim the version controld holds so it pushes nothing.
        h.set_version_held(1);
    }
    frame::encode(&m)
}

/// Reads frames until `acks` log acks arrived.
fn read_acks(stream: &mut UnixStream, acks: usize) -> Result<(), String> {
    let mut seen = 0;
    while seen < acks {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).map_err(|e| e.to_string())?;
        let len = frame::check_length(prefix, frame::MAX_FRAME_BYTES).map_err(|e| e.to_string())?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        let m = frame::decode(&body).map_err(|e| e.to_string())?;
        let root = m
            .get_root::<response::Reader>()
            .map_err(|e| e.to_string())?;
        if let response::LogAck(a) = root.which().map_err(|e| e.to_string())? {
            let a = a.map_err(|e| e.to_string())?;
            if !a.get_ok() {
                return Err("controld refused a batch".into());
            }
            seen += 1;
        }
    }
    Ok(())
}

/// One producer: sends `batches` batches (window-limited) and waits for
/// every ack.
pub(crate) fn produce(socket: &Path, core: u32, frames: &[Vec<u8>]) -> Result<(), String> {
    let batches = frames.len();
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .write_all(&hello_frame(core))
        .map_err(|e| e.to_string())?;
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let acks = std::thread::spawn(move || read_acks(&mut reader, batches));
    // Sent as fast as controld takes them: its bounded queue and the
    // socket buffer apply the back-pressure a core would see.
    for f in frames {
        stream.write_all(f).map_err(|e| e.to_string())?;
    }
    acks.join().map_err(|_| "ack reader panicked".to_string())?
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the measurement and returns a report.
pub fn run(cfg: &LogIngest) -> Result<String, String> {
    let controld = sibling("controld")?;
    let dir = std::env::temp_dir().join(format!("palisade-log-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let policy = dir.join("p.toml");
        std::fs::write(
            &policy,
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.com\"]\n",
        )
        .map_err(|e| e.to_string())?;
        let socket = dir.join("control.sock");
        let (_daemon, _) = spawn_ready(
            Command::new(&controld)
                .arg("serve")
                .arg("--policy")
                .arg(&policy)
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .args(["--log-sync", &cfg.sync]),
        )?;
        let per_producer = cfg.records.div_ceil(cfg.batch * cfg.producers);
        let total = per_producer * cfg.batch * cfg.producers;
        let mut rates = Vec::new();
        for round in 0..cfg.rounds {
            // Frames are built before the clock starts, so the client's own
            // work is not measured.
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            let frames: Vec<Vec<Vec<u8>>> = (0..cfg.producers)
                .map(|p| {
                    let stream_id = ((round as u64) << 32) | p as u64 | 1 << 62;
                    (1..=per_producer as u64)
                        .map(|seq| {
                            let first =
                                now_us + (seq * cfg.producers as u64 + p as u64) * cfg.batch as u64;
                            batch_frame(stream_id, seq, &sample_batch(cfg.batch, first))
                        })
                        .collect()
                })
                .collect();
            let t0 = Instant::now();
            std::thread::scope(|s| -> Result<(), String> {
                let handles: Vec<_> = frames
                    .iter()
                    .enumerate()
                    .map(|(p, frames)| {
                        let socket = &socket;
                        s.spawn(move || produce(socket, p as u32, frames))
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| "producer panicked".to_string())??;
                }
                Ok(())
            })?;
            let secs = t0.elapsed().as_secs_f64();
            rates.push(total as f64 / secs);
        }
        let db = dir.join("state").join("logs.db");
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        Ok(format!(
            "{} rounds of {} records ({} producers, {}-record batches, --log-sync {}):\n  stored and acknowledged: {:.0} records/s (median)\n  rounds (records/s): {:?}\n  store size after: {:.1} MB ({:.0} bytes/record)",
            cfg.rounds,
            total,
            cfg.producers,
            cfg.batch,
            cfg.sync,
            median(rates.clone()),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            size as f64 / 1e6,
            size as f64 / (total * cfg.rounds) as f64,
        ))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
