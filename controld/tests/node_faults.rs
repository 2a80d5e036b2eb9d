//! Faults of the node itself, each ending with "nothing lost, and the node
//! serves again", each with a policy push in the middle: the data plane
//! SIGKILLed under load and restarted on its port (it serves from its
//! snapshot cache; only the log records it held in memory and the requests
//! in flight are lost, the lost records are counted exactly, and no record
//! is stored twice); the disk under the log spill files full (batches
//! dropped and counted, the data plane serving on); file descriptors
//! exhausted (accept backs off, open connections keep working, a push
//! still lands, new connections are served once descriptors free up); a
//! slowloris attack beside idle connections (the push lands, and normal
//! traffic and the idle connections are served by the new version; the
//! latency side is `dataplane/tests/connection_floods.rs` and `bench
//! scenario slowloris`).

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{eventually, fetch, named_origin, Env, Proc, DEADLINE};

const H: &str = "demo.test.proxy.test";
/// Load clients in the data-plane kill test.
const CLIENTS: u64 = 3;

/// Clients fetching `/n/<i>` on new connections in a loop; each success
/// is kept by target.
fn load(addr: SocketAddr, clients: usize) -> support::Load {
    support::Load::start(clients, move |c| {
        let mut i = 0u64;
        while !c.stopped() {
            i += 1;
            let target = format!("/n/{}-{i}", c.index);
            // Refused or cut while the data plane restarts: not
            // completed, so not expected in the log.
            if get(addr, &target).is_some_and(|s| s == 200) {
                c.completed(target);
            }
        }
    })
}

/// One GET on a new connection; its status, or `None` when the
/// connection failed.
fn get(addr: SocketAddr, target: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    support::parse_response(&buf).ok().map(|(status, _)| status)
}

#[test]
fn a_data_plane_killed_under_load_serves_again_from_its_cache_and_stores_nothing_twice() {
    let env = Env::new();
    let o = env.two_origins();
    let _controld = env.controld(&o.policy_a, &[]);
    let (dp, addr) = env.dataplane(1, &["--log-batch-records", "16"]);
    env.wait_for_cores(1, 1);
    let listen = addr.to_string();
    let load = load(addr, CLIENTS as usize);
    load.wait_for(300);
    // SIGKILL: no chance to send or spill what it holds in memory.
    dp.kill();
    let killed_at = load.completed();
    // A policy push while it is down: it starts from its cache (version
    // 1), then takes version 2 from controld.
    env.apply(&o.policy_b, "with the data plane down");
    let restarted = Instant::now();
    let (_dp, again) = env.dataplane_on(&listen, 1, &["--log-batch-records", "16"]);
    assert_eq!(again, addr, "restarted on its port");
    assert!(
        _dp.first_line.contains("from the snapshot cache"),
        "{}",
        _dp.first_line
    );
    eventually("serving again", || {
        fetch(addr, H).is_ok_and(|(s, _)| s == 200)
    });
    env.wait_for_cores(1, 2);
    eventually("the pushed version serving", || {
        fetch(addr, H).is_ok_and(|(s, body)| s == 200 && body == "B")
    });
    eprintln!(
        "serving again {:?} after the restart began",
        restarted.elapsed()
    );
    load.wait_for(killed_at + 300);
    let completed = load.finish();

    // Everything completed after the restart is stored, nothing twice;
    // what is missing was held in the killed process's memory.
    let load_urls = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .filter_map(|r| r["url"].as_str())
            .map(|u| u.trim_start_matches("http://demo.test").to_string())
            .filter(|u| u.starts_with("/n/"))
            .collect()
    };
    let after_restart = &completed[killed_at + 16..];
    let mut missing = Vec::new();
    eventually("every request after the restart stored", || {
        let stored: BTreeSet<String> = load_urls(&env.export(&["--kind", "traffic"]))
            .into_iter()
            .collect();
        missing = after_restart
            .iter()
            .filter(|t| !stored.contains(*t))
            .cloned()
            .collect();
        missing.is_empty()
    });
    let stored = load_urls(&env.export(&["--kind", "traffic"]));
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a record stored twice");
    // The restarted run sends the killed run's end marker: what that run
    // made and never sent is counted. Every completed request is stored
    // or counted lost, but for at most one per client: a response flushed
    // whole just before the kill, whose record was not yet made, reaches
    // its client complete (the kernel closes the socket).
    let mut lost = 0;
    let mut stored_now = 0;
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        lost = env.status()["log_lost"].as_u64().unwrap_or(0);
        stored_now = load_urls(&env.export(&["--kind", "traffic"])).len() as u64;
        if stored_now + lost + CLIENTS >= completed.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stored_now + lost + CLIENTS >= completed.len() as u64,
        "{} completed, {stored_now} stored, {lost} counted lost",
        completed.len()
    );
    eprintln!(
        "{} requests completed, {} stored; counted lost with the killed process: {lost}",
        completed.len(),
        stored.len(),
    );
}

#[test]
fn records_a_killed_data_plane_held_in_memory_are_counted_lost_exactly() {
    let env = Env::new();
    let origin = named_origin("A");
    let policy = env.policy("p.toml", origin.addr(), "");
    let controld = env.controld(&policy, &[]);
    let (dp, addr) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);
    for i in 0..10 {
        assert_eq!(get(addr, &format!("/stored/{i}")), Some(200));
    }
    env.wait_for_log_counts(10);
    // controld gone: the next records wait in the data plane's memory,
    // and die with it.
    controld.kill();
    for i in 0..7 {
        assert_eq!(get(addr, &format!("/held/{i}")), Some(200));
    }
    dp.kill();
    let _controld = env.controld(&policy, &[]);
    let (_dp, addr) = env.dataplane(1, &[]);
    eventually("the 7 held records counted lost", || {
        env.status()["log_lost"].as_u64() == Some(7)
    });
    assert_eq!(get(addr, "/after"), Some(200));
    // Counted once, and kept across a controld restart.
    drop(_controld);
    let _controld = env.controld(&policy, &[]);
    env.wait_for_cores(1, 1);
    let st = env.status();
    assert_eq!(st["log_lost"].as_u64(), Some(7), "{st}");
    let out = env.cli(&["status", "--prometheus"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("palisade_log_records_lost_total 7"), "{text}");
}

/// Starts a data plane from a snapshot (before controld: it connects when
/// controld comes up), with `limit` applied to the process before it
/// starts.
fn offline_dataplane_limited(
    env: &Env,
    policy: &std::path::Path,
    extra: &[&str],
    resource: libc::__rlimit_resource_t,
    limit: u64,
) -> (Proc, SocketAddr) {
    let snap = env.path("p.snap");
    let out = env.cli_offline(&[
        "compile",
        policy.to_str().expect("path"),
        "-o",
        snap.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "compile");
    let mut cmd = Command::new(support::dataplane_bin());
    cmd.args(["--listen", "127.0.0.1:0", "--cores", "1", "--snapshot"])
        .arg(&snap)
        .arg("--snapshot-cache")
        .arg(env.path("cache"))
        .arg("--control")
        .arg(env.socket())
        .args(extra);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let p = Proc::spawn(cmd);
    let addr = p.listen_address();
    (p, addr)
}

#[test]
fn a_full_disk_under_the_spill_files_drops_and_counts_batches_and_serves_on() {
    let env = Env::new();
    let origin = named_origin("A");
    let policy = env.policy("p.toml", origin.addr(), "");
    // No controld yet and almost no memory budget: batches go to spill
    // files, and a 16-byte file size limit makes each spill write fail as
    // a full disk would (EFBIG instead of ENOSPC: the same path).
    let (_dp, addr) = offline_dataplane_limited(
        &env,
        &policy,
        &["--log-memory-kib", "1", "--log-batch-records", "2"],
        libc::RLIMIT_FSIZE,
        16,
    );
    for i in 0..30 {
        assert_eq!(get(addr, &format!("/full/{i}")), Some(200), "request {i}");
    }
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.path("cache").join("logs").join("core-0"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _controld = env.controld(&policy, &[]);
    env.wait_for_cores(1, 1);
    // A policy push while the disk is still full: it lands (the snapshot
    // cache write fails and is reported; the core swaps regardless).
    let other = named_origin("B");
    let policy_b = env.policy("b.toml", other.addr(), "");
    env.apply(&policy_b, "on a full disk");
    let mut made = 30u64;
    eventually("the pushed version serving", || {
        made += 1;
        fetch(addr, H).is_ok_and(|(s, body)| s == 200 && body == "B")
    });
    for i in 0..10 {
        assert_eq!(get(addr, &format!("/full-b/{i}")), Some(200), "request {i}");
    }
    made += 10;
    // Every request is stored or counted dropped. A core's drop count
    // reaches controld with the next batch it stores, so each poll makes
    // one more request; only the newest batch (2 records) may be still
    // unsealed or unreported.
    let mut counts = (0, 0);
    eventually("every record stored or counted dropped", || {
        assert_eq!(get(addr, "/poll"), Some(200));
        made += 1;
        let st = env.status();
        let core = &st["cores"][0];
        counts = (
            core["log_stored"].as_u64().unwrap_or(0),
            core["log_dropped"].as_u64().unwrap_or(0),
        );
        counts.0 + counts.1 + 2 >= made
    });
    assert!(counts.1 >= 2, "stored {}, dropped {}", counts.0, counts.1);
    assert_eq!(get(addr, "/after"), Some(200));
}

#[test]
fn exhausted_file_descriptors_leave_open_connections_working() {
    let env = Env::new();
    let origin = named_origin("A");
    let policy = env.policy("p.toml", origin.addr(), "");
    let _controld = env.controld(&policy, &[]);
    // 64 descriptors: the rings, the listener, the control connection and
    // a few client connections.
    let (_dp, addr) = offline_dataplane_limited(&env, &policy, &[], libc::RLIMIT_NOFILE, 64);
    env.wait_for_cores(1, 1);
    let mut kept = TcpStream::connect(addr).expect("connect");
    kept.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let roundtrip = |s: &mut TcpStream| -> Option<u16> {
        s.write_all(format!("GET /kept HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes())
            .ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Ok((status, body)) = support::parse_response(&buf) {
                if !body.is_empty() {
                    return Some(status);
                }
            }
        }
    };
    assert_eq!(roundtrip(&mut kept), Some(200));
    // Far more connections than descriptors: the extra ones wait in the
    // backlog (or are refused) while accept backs off.
    let mut flood = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    // The open connection still works (its upstream connection is pooled).
    assert_eq!(roundtrip(&mut kept), Some(200), "the open connection");
    // A policy push lands on the open control connection (writing the
    // snapshot cache needs a descriptor: it fails, best effort).
    let policy_2 = env.policy("p2.toml", origin.addr(), Env::SECOND_APP);
    env.apply(&policy_2, "with descriptors exhausted");
    env.wait_for_cores(1, 2);
    assert_eq!(roundtrip(&mut kept), Some(200), "after the push");
    drop(flood);
    // Descriptors free again: new connections are served.
    eventually("new connections served again", || {
        get(addr, "/again") == Some(200)
    });
    assert_eq!(roundtrip(&mut kept), Some(200));
}

#[test]
fn a_policy_push_lands_during_a_slowloris_attack_beside_idle_connections() {
    palisade_bench::scenario::raise_nofile();
    let env = Env::new();
    let o = env.two_origins();
    let _controld = env.controld(&o.policy_a, &[]);
    let (_dp, addr) = env.dataplane(1, &["--header-timeout", "2"]);
    env.wait_for_cores(1, 1);
    let mut attack = palisade_bench::slowloris::Attack::start(addr, H, 300, 50).expect("attack");
    env.apply(&o.policy_b, "during the attack");
    env.wait_for_cores(1, 2);
    // Normal traffic gets the new version; the idle connections opened
    // before the push are served by it too.
    for i in 0..50 {
        let (status, body) = fetch(addr, H).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!((status, body.as_str()), (200, "B"), "request {i}");
    }
    attack
        .idle_still_served(H, 50)
        .expect("idle connections served after the push");
    eventually("the proxy closing the slowloris connections", || {
        attack
            .closed_by_proxy
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 50
    });
    drop(attack);
    assert_eq!(get(addr, "/after"), Some(200));
}
