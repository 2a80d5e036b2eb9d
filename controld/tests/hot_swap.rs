//! Policy changes on a busy node: hot swap under load with zero failed
//! requests, refused snapshots, controld restarts, data-plane restarts
//! without controld.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const H: &str = "demo.test.proxy.test";

/// One request/response observed by the load loop.
struct Observation {
    sent: Instant,
    received: Instant,
    status: u16,
    body: String,
}

/// Keep-alive client: sends GETs back to back on one connection
/// (reconnecting only if the proxy closes), until `stop`.
fn load_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Observation>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(DEADLINE)).expect("timeout");
                buf.clear();
                conn.insert(s)
            }
        };
        let sent = Instant::now();
        if let Err(e) = s.write_all(format!("GET / HTTP/1.1\r\nHost: {H}\r\n\r\n").as_bytes()) {
            errors.lock().expect("lock").push(format!("write: {e}"));
            conn = None;
            continue;
        }
        // Read one Content-Length response.
        let result = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
                let len = content_length(r.headers);
                let close = r
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value == b"close");
                if buf.len() >= n + len {
                    let body = String::from_utf8_lossy(&buf[n..n + len]).into_owned();
                    let status = r.code.unwrap_or(0);
                    buf.drain(..n + len);
                    break Ok((status, body, close));
                }
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => break Err("connection closed mid-response".to_string()),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                Err(e) => break Err(format!("read: {e}")),
            }
        };
        match result {
            Ok((status, body, close)) => {
                out.lock().expect("lock").push(Observation {
                    sent,
                    received: Instant::now(),
                    status,
                    body,
                });
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                errors.lock().expect("lock").push(e);
                conn = None;
            }
        }
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    observations: Arc<Mutex<Vec<Observation>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

fn start_load(addr: SocketAddr, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let observations = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads = (0..clients)
        .map(|_| {
            let (stop, o, e) = (stop.clone(), observations.clone(), errors.clone());
            std::thread::spawn(move || load_loop(addr, stop, o, e))
        })
        .collect();
    Load {
        stop,
        threads,
        observations,
        errors,
    }
}

impl Load {
    fn finish(self) -> (Vec<Observation>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let o = std::mem::take(&mut *self.observations.lock().expect("lock"));
        let e = std::mem::take(&mut *self.errors.lock().expect("lock"));
        (o, e)
    }
}

#[test]
fn hot_swap_under_load_fails_no_request() {
    let env = Env::new();
    let o = env.two_origins();
    let _controld = env.controld(&o.policy_a, &[]);
    let (_dp, addr) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);

    let load = start_load(addr, 4);
    // (applied from, acked by, origin now current)
    let mut timeline: Vec<(Instant, Instant, &str)> = Vec::new();
    let mut versions = Vec::new();
    for i in 0..50 {
        let (policy, name) = if i % 2 == 0 {
            (&o.policy_b, "B")
        } else {
            (&o.policy_a, "A")
        };
        let t0 = Instant::now();
        let out = env.cli(&["apply", policy.to_str().expect("path"), "--json"]);
        let t1 = Instant::now();
        assert!(
            out.status.success(),
            "apply {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            applied["acks"].as_array().map(Vec::len),
            Some(2),
            "both cores acked: {applied}"
        );
        versions.push(applied["version"].as_u64().expect("version"));
        timeline.push((t0, t1, name));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (observations, errors) = load.finish();

    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(
        observations.len() > 200,
        "load ran: {} requests",
        observations.len()
    );
    assert!(observations.iter().all(|o| o.status == 200), "all 200");
    let seen_a = observations.iter().any(|o| o.body == "A");
    let seen_b = observations.iter().any(|o| o.body == "B");
    assert!(seen_a && seen_b, "both origins served");
    // Versions are new each time (the two policies alternate).
    assert_eq!(versions.len(), 50);
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );

    // Between the ack of apply i and the start of apply i+1 exactly one
    // snapshot is current: a request sent and answered inside such a
    // window must come from its origin.
    let mut strict = 0;
    for o in &observations {
        let mut current = "A";
        let mut stable_until: Option<Instant> = None;
        let mut stable_from = None;
        for (i, (_, t1, name)) in timeline.iter().enumerate() {
            if *t1 <= o.sent {
                current = name;
                stable_from = Some(*t1);
                stable_until = timeline.get(i + 1).map(|n| n.0);
            }
        }
        let inside = stable_from.is_some_and(|f| f <= o.sent)
            && stable_until.is_none_or(|u| o.received <= u);
        if inside {
            strict += 1;
            assert_eq!(
                o.body, current,
                "a request inside a stable window got the other origin"
            );
        }
        assert!(
            o.body == "A" || o.body == "B",
            "unexpected body {:?}",
            o.body
        );
    }
    assert!(
        strict > 50,
        "enough requests fell inside stable windows to check: {strict}"
    );
}

#[test]
fn refused_snapshot_keeps_the_old_one_serving() {
    let env = Env::new();
    let a = named_origin("A");
    let b = named_origin("B");
    let good = env.policy("good.toml", a.addr(), "");
    let _controld = env.controld(&good, &[]);
    let (_dp, addr) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);
    assert_eq!(fetch(addr, H).expect("fetch"), (200, "A".to_string()));

    // A PEM block controld accepts as a certificate file but that is not a
    // certificate: the data plane cannot build trust anchors from it.
    std::fs::write(
        env.path("bad-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let bad = env.policy("bad.toml", b.addr(), "ca_file = \"bad-ca.pem\"\n");
    let text = std::fs::read_to_string(&bad)
        .expect("read")
        .replace("http://", "https://");
    std::fs::write(&bad, text).expect("write");
    let out = env.cli(&["apply", bad.to_str().expect("path")]);
    assert!(!out.status.success(), "apply must fail when cores refuse");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REFUSED") && stdout.contains("bad CA certificates"),
        "{stdout}"
    );

    // Old snapshot still serving; status shows the refusal.
    assert_eq!(fetch(addr, H).expect("fetch"), (200, "A".to_string()));
    let status = env.status();
    assert_eq!(status["current_version"].as_u64(), Some(2));
    assert!(
        status["last_push_result"]
            .as_str()
            .unwrap_or("")
            .contains("bad CA certificates"),
        "{status}"
    );
    for core in status["cores"].as_array().expect("cores") {
        assert_eq!(core["version"].as_u64(), Some(1), "{core}");
        assert!(
            core["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("refused version 2"),
            "{core}"
        );
    }
    assert!(b.requests().is_empty());
}

#[test]
fn controld_restart_under_load_is_invisible() {
    let env = Env::new();
    let a = named_origin("A");
    let policy = env.policy("a.toml", a.addr(), "");
    let controld = env.controld(&policy, &[]);
    let (_dp, addr) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);
    let load = start_load(addr, 2);
    std::thread::sleep(Duration::from_millis(200));
    controld.kill();
    std::thread::sleep(Duration::from_millis(300));
    let _controld = env.controld(&policy, &[]);
    // The cores reconnect and report the version they hold (the same
    // policy: controld keeps version 1).
    env.wait_for_cores(2, 1);
    std::thread::sleep(Duration::from_millis(200));
    let (observations, errors) = load.finish();
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(observations.len() > 50);
    assert!(observations
        .iter()
        .all(|o| o.status == 200 && o.body == "A"));
}

#[test]
fn a_dataplane_without_any_snapshot_holds_requests_until_the_first_push() {
    let env = Env::new();
    let a = named_origin("A");
    let policy = env.policy("a.toml", a.addr(), "");
    // No controld yet and an empty cache: nothing to serve with. Every core
    // listens, but answers nothing before its first snapshot (it used to
    // answer 421 "not served by this proxy").
    let (_dp, addr) = env.dataplane(2, &[]);
    let mut early: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            s.write_all(
                format!("GET / HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .expect("send");
            s
        })
        .collect();
    // The requests are in their sockets before controld exists; its first
    // push lets the cores accept them.
    let _controld = env.controld(&policy, &[]);
    for (i, s) in early.iter_mut().enumerate() {
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("response");
        assert_eq!(
            parse_response(&buf),
            Ok((200, "A".to_string())),
            "request {i} sent before the first snapshot"
        );
    }
}

#[test]
fn dataplane_restart_with_controld_down_serves_the_cached_snapshot() {
    let env = Env::new();
    let o = env.two_origins();
    let controld = env.controld(&o.policy_a, &[]);
    let (dp, _) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);
    let out = env.cli(&["apply", o.policy_b.to_str().expect("path")]);
    assert!(out.status.success());
    env.wait_for_cores(1, 2);
    controld.kill();
    dp.kill();
    // No controld, no --snapshot: the cache has version 2.
    let (dp, addr) = env.dataplane(1, &[]);
    assert!(
        dp.first_line
            .contains("snapshot version 2 from the snapshot cache"),
        "{}",
        dp.first_line
    );
    assert_eq!(fetch(addr, H).expect("fetch"), (200, "B".to_string()));
}

#[test]
fn rollback_restores_the_previous_version() {
    let env = Env::new();
    let o = env.two_origins();
    let _controld = env.controld(&o.policy_a, &[]);
    let (_dp, addr) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);
    assert!(env
        .cli(&["apply", o.policy_b.to_str().expect("path")])
        .status
        .success());
    assert_eq!(fetch(addr, H).expect("fetch").1, "B");
    let out = env.cli(&["rollback"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rolled back to version 1"));
    assert_eq!(fetch(addr, H).expect("fetch").1, "A");
    let out = env.cli(&["rollback", "2"]);
    assert!(out.status.success());
    assert_eq!(fetch(addr, H).expect("fetch").1, "B");
    assert_eq!(env.status()["current_version"].as_u64(), Some(2));
}
