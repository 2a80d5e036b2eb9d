//! The log pipeline end to end: real data plane, real controld, real
//! origins; records checked through `controld logs export`.
//!
//! The suite's clients speak HTTP/1.1 on the plain listener, or (with
//! `PALISADE_TEST_HTTP=2`, as scripts/test runs it a second time) HTTP/2
//! on the TLS listener, one connection carrying a stream per request: the
//! same records are expected, with the scheme, TLS flag and protocol of
//! the run. Alerts are in `alerts.rs`.

mod log_suite;
mod support;

use palisade_bench::testing::RunOk;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use log_suite::*;
use support::*;

#[test]
fn requests_through_the_data_plane_produce_exactly_the_expected_rows() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let (_dp, front) = start_dataplane(&env, 2, &[]);
    let addr = front.plain;
    env.wait_for_cores(2, 1);

    let mut s = Conn::open(&front);
    let port = s.local_port();
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\nsecret plans\r\n--XyZ--\r\n";
    let upload = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: uploader/2\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n{multipart}",
        multipart.len()
    )
    .into_bytes();
    let requests: Vec<(Vec<u8>, &str, String, u16)> = vec![
        (get("/page/100", "agent/1"), "GET", url("/page/100"), 200),
        (
            get("/page/5000?q=1", "agent/2"),
            "GET",
            url("/page/5000?q=1"),
            200,
        ),
        (get("/file.pdf", "agent/3"), "GET", url("/file.pdf"), 200),
        (upload, "POST", url("/upload"), 201),
        (get("/missing", "agent/5"), "GET", url("/missing"), 404),
    ];
    let mut expected = Vec::new();
    for (req, method, url, status) in &requests {
        let (got, received) = s.roundtrip(req);
        assert_eq!(got, *status, "{url}");
        let head = req.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        expected.push((
            *method,
            url.clone(),
            *status,
            req.len(),
            req.len() - head,
            received,
        ));
    }
    // A request smuggling attempt: refused before routing, logged anyway.
    let bad = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut b = TcpStream::connect(addr).expect("connect");
    b.set_read_timeout(Some(DEADLINE)).expect("timeout");
    b.write_all(bad.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = b.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");

    let rows = env.wait_for_records("traffic", 6);
    assert_eq!(rows.len(), 6, "exactly one row per request: {rows:#?}");
    let urls = by_url(&rows);
    let http2 = https::over_http2();
    for (method, url, status, sent, body_sent, received) in expected {
        let row = &urls[&url];
        assert_eq!(row["method"], method, "{url}");
        assert_eq!(row["status"], status, "{url}");
        let (up, down) = (
            row["bytes_up"].as_u64().unwrap_or(0),
            row["bytes_down"].as_u64().unwrap_or(0),
        );
        if http2 {
            // A stream counts its request and response in their HTTP/1.1
            // form: the body, and a head of some dozens of bytes.
            let (body_up, body_down) = (body_sent as u64, received as u64);
            assert!(
                (body_up + 16..body_up + 512).contains(&up),
                "bytes up of {url}: {up}, body {body_up}"
            );
            assert!(
                (body_down + 16..body_down + 1024).contains(&down),
                "bytes down of {url}: {down}, body {body_down}"
            );
        } else {
            assert_eq!(up, sent as u64, "bytes up of {url}");
            assert_eq!(down, received as u64, "bytes down of {url}");
        }
        assert_eq!(row["app"], "demo");
        assert_eq!(row["host"], "demo.test");
        assert_eq!(row["client_ip"], "127.0.0.1");
        assert_eq!(row["client_port"], port);
        assert_eq!(row["tls"], u64::from(http2));
        let protocol = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        assert_eq!(row["protocol"], protocol);
        assert_eq!(row["action"], "allow");
    }
    assert_eq!(urls[&url("/page/100")]["user_agent"], "agent/1");
    let refused = rows.iter().find(|r| r["status"] == 400).expect("400 row");
    assert_eq!(refused["app"], "");
    assert_eq!(refused["action"], "block");
    assert_eq!(refused["bytes_up"], bad.len() as u64);
    assert_eq!(refused["bytes_down"], answer.len() as u64);
    // Request ids are unique.
    let ids: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 6);

    let activities = env.wait_for_records("activity", 2);
    assert_eq!(activities.len(), 2, "{activities:#?}");
    let download = activities
        .iter()
        .find(|a| a["activity"] == "download")
        .expect("download");
    assert_eq!(download["file_name"], "report.pdf");
    assert_eq!(download["file_size"], 3000);
    assert_eq!(download["url"], url("/file.pdf"));
    let up = activities
        .iter()
        .find(|a| a["activity"] == "upload")
        .expect("upload");
    assert_eq!(up["file_name"], "notes.txt");
    assert_eq!(up["file_size"], multipart.len() as u64);
    assert_eq!(up["user_agent"], "uploader/2");

    // The report adds them up.
    let out = std::process::Command::new(controld_bin())
        .args(["report", "--json", "--state-dir"])
        .arg(env.path("state"))
        .output()
        .expect("report");
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let demo = report
        .as_array()
        .and_then(|a| a.iter().find(|r| r["key"] == "demo"))
        .expect("demo row");
    assert_eq!(demo["requests"], 5);
    assert_eq!(demo["activities"], 2);
    let sent: u64 = rows
        .iter()
        .filter(|r| r["app"] == "demo")
        .map(|r| r["bytes_up"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(demo["bytes_up"], sent);
}

#[test]
fn an_upload_whose_file_part_follows_the_head_is_logged_with_its_name() {
    // A client that sends `Expect: 100-continue` sends no body before the
    // proxy asks for it, so the file part is never in the head's read.
    let env = Env::new();
    let stored = Arc::new(Mutex::new(Vec::new()));
    let origin = Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: Arc::new({
            let stored = stored.clone();
            move |r: &Request| {
                stored.lock().expect("lock").clone_from(&r.body);
                Reply::text(201, "stored")
            }
        }),
        tls: None,
        split_writes: false,
        record: false,
    })
    .expect("origin");
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let (_dp, front) = start_dataplane(&env, 1, &[]);
    env.wait_for_cores(1, 1);
    let fields = "--B1\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n";
    let file = "--B1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"late.csv\"\r\n\r\na,b\r\n--B1--\r\n";
    let body = format!("{fields}{file}");
    let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
    // (framing field, the two writes after the 100, the size logged)
    let cases = [
        (
            format!("Content-Length: {}", body.len()),
            [fields.to_string(), file.to_string()],
            body.len(),
        ),
        (
            "Transfer-Encoding: chunked".to_string(),
            [chunk(fields), format!("{}0\r\n\r\n", chunk(file))],
            chunk(fields).len() + chunk(file).len() + 5,
        ),
    ];
    for (round, (framing, [first, second], size)) in cases.iter().enumerate() {
        let mut s = TcpStream::connect(front.plain).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\nContent-Type: multipart/form-data; boundary=B1\r\n{framing}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).expect("head");
        let continue_line = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut interim = vec![0u8; continue_line.len()];
        s.read_exact(&mut interim).expect("100 Continue");
        assert_eq!(interim, continue_line, "{framing}");
        // The plain fields first, then the file part, as a browser streams
        // a form.
        s.write_all(first.as_bytes()).expect("fields");
        s.flush().expect("flush");
        let (status, _) = roundtrip(&mut s, second.as_bytes());
        assert_eq!(status, 201, "{framing}");
        // Read ahead for the name, the body still reaches the app unchanged.
        assert_eq!(*stored.lock().expect("lock"), body.as_bytes(), "{framing}");
        let activities = env.wait_for_records("activity", round + 1);
        let up = &activities[round];
        assert_eq!(up["activity"], "upload", "{framing}: {activities:#?}");
        assert_eq!(up["file_name"], "late.csv", "{framing}");
        assert_eq!(up["file_size"], *size as u64, "{framing}");
    }
}

/// Clients sending unique URLs on keep-alive connections until stopped;
/// each completed URL is kept.
fn keep_alive_load(front: Front, clients: usize) -> support::Load {
    support::Load::start(clients, move |c| {
        let mut s = Conn::open(&front);
        let mut n = 0;
        while !c.stopped() {
            let target = format!("/item/{}-{n}", c.index);
            let (status, _) = s.roundtrip(&get(&target, "load"));
            assert_eq!(status, 200);
            c.completed(url(&target));
            n += 1;
        }
    })
}

#[test]
fn controld_killed_mid_load_loses_and_duplicates_nothing() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let controld = env.controld(&policy, &[]);
    let (_dp, front) = start_dataplane(&env, 2, &["--log-batch-records", "64"]);
    env.wait_for_cores(2, 1);
    let load = keep_alive_load(front.clone(), 4);
    load.wait_for(2000);
    // SIGKILL: no chance to finish a transaction or send an ack.
    controld.kill();
    let at_kill = load.completed();
    load.wait_for(at_kill + 2000);
    let _controld = env.controld(&policy, &[]);
    let after = load.completed();
    // A policy push under the same load, on the restarted controld.
    let more = demo_policy(&env, "more.toml", origin.addr(), Env::SECOND_APP);
    env.apply(&more, "after the restart");
    env.wait_for_cores(2, 2);
    load.wait_for(after + 2000);
    let completed = load.finish();

    let rows = env.wait_for_records("traffic", completed.len());
    let stored: Vec<&str> = rows.iter().filter_map(|r| r["url"].as_str()).collect();
    let unique: BTreeSet<&str> = stored.iter().copied().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "{} duplicated records",
        stored.len() - unique.len()
    );
    let want: BTreeSet<&str> = completed.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = want.difference(&unique).take(5).collect();
    assert!(missing.is_empty(), "records lost, e.g. {missing:?}");
    assert_eq!(stored.len(), completed.len(), "records no client completed");
    let ids: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), rows.len(), "request ids are unique");
    // The store survived the SIGKILL whole.
    let db = rusqlite::Connection::open_with_flags(
        env.path("state").join("logs.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the store");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok", "SQLite integrity check");
}

/// Compiles the env's policy into a snapshot file (for a data plane that
/// starts before controld).
fn snapshot(env: &Env, policy: &std::path::Path) -> std::path::PathBuf {
    let snap = env.path("start.snap");
    let out = env.cli_offline(&[
        "compile",
        policy.to_str().unwrap(),
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    snap
}

/// A 1-core data plane started from a snapshot while controld is down
/// (it keeps trying to connect), with `extra` flags.
fn offline_dataplane(env: &Env, policy: &std::path::Path, extra: &[&str]) -> (Proc, Front) {
    let snap = snapshot(env, policy);
    let mut args = vec!["--snapshot", snap.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_dataplane(env, 1, &args)
}

/// `n` GETs of `/seq/0` … on one keep-alive connection, each answered 200.
fn send_sequence(front: &Front, n: usize, agent: &str) {
    let mut s = Conn::open(front);
    for i in 0..n {
        assert_eq!(s.roundtrip(&get(&format!("/seq/{i}"), agent)).0, 200);
    }
}

fn spill_files(env: &Env) -> usize {
    std::fs::read_dir(env.path("cache").join("logs").join("core-0"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn batches_spill_to_disk_while_controld_is_down_and_replay_in_order() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    // No memory budget: every batch goes to disk until controld acks it.
    let (_dp, front) = offline_dataplane(
        &env,
        &policy,
        &["--log-memory-kib", "0", "--log-batch-records", "7"],
    );
    send_sequence(&front, 60, "spill");
    // 8 full batches of 7 at least (the 20 ms flush may seal partial ones
    // too, which only adds files).
    eventually("batches spilled to disk", || spill_files(&env) >= 8);

    let _controld = env.controld(&policy, &[]);
    let mut rows = env.wait_for_records("traffic", 60);
    assert_eq!(rows.len(), 60);
    rows.sort_by_key(|r| r["id"].as_i64());
    let order: Vec<String> = rows
        .iter()
        .map(|r| r["url"].as_str().unwrap_or("").to_string())
        .collect();
    let sent: Vec<String> = (0..60).map(|i| url(&format!("/seq/{i}"))).collect();
    assert_eq!(order, sent, "stored in the order the requests were made");
    eventually("spill files deleted once acknowledged", || {
        spill_files(&env) == 0
    });
}

#[test]
fn records_are_dropped_and_counted_only_when_both_budgets_are_exhausted() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let (_dp, front) = offline_dataplane(
        &env,
        &policy,
        &[
            "--log-memory-kib",
            "1",
            "--log-disk-mib",
            "0",
            "--log-batch-records",
            "2",
        ],
    );
    send_sequence(&front, 30, "drop");
    let _controld = env.controld(&policy, &[]);
    let counts = env.wait_for_log_counts(30);
    let (stored, dropped) = counts;
    assert!(
        stored >= 2 && dropped >= 2,
        "stored {stored}, dropped {dropped}"
    );
    assert_eq!(env.export(&[]).len() as u64, stored);
    // So do the metrics.
    let metrics = env.cli(&["status", "--prometheus"]);
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("palisade_log_records_dropped_total{")
                && l.ends_with(&format!(" {dropped}"))),
        "{text}"
    );
    // The human status shows the drop counter too.
    let text = env.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("{dropped} dropped")),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
}

#[test]
fn export_filters_and_formats() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let (_dp, front) = start_dataplane(&env, 1, &[]);
    env.wait_for_cores(1, 1);
    let mut s = Conn::open(&front);
    assert_eq!(
        s.roundtrip(&get("/page/1?a=1,b", "comma, \"quoted\"")).0,
        200
    );
    env.wait_for_records("traffic", 1);
    let out = std::process::Command::new(controld_bin())
        .args([
            "logs",
            "export",
            "--format",
            "csv",
            "--from",
            "-1h",
            "--to",
            "now",
            "--app",
            "demo",
            "--state-dir",
        ])
        .arg(env.path("state"))
        .ran_ok("export");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("id,time,kind,request_id,client_ip"));
    let row = lines.next().expect("one row");
    assert!(row.contains(",\"comma, \"\"quoted\"\"\",demo,"), "{row}");
    assert!(
        row.contains(&format!(",\"{}\",", url("/page/1?a=1,b"))),
        "{row}"
    );
    assert_eq!(lines.next(), None);
    // Other filters select nothing.
    assert!(env.export(&["--app", "other"]).is_empty());
    assert!(env.export(&["--to", "2001-01-01"]).is_empty());
    assert!(env.export(&["--user", "nobody"]).is_empty());
    // A bad time is a clear error.
    let out = std::process::Command::new(controld_bin())
        .args(["logs", "export", "--from", "yesterday-ish", "--state-dir"])
        .arg(env.path("state"))
        .output()
        .expect("export");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("time \"yesterday-ish\""));
}

#[test]
fn tail_follows_new_records_for_one_app() {
    use std::io::BufRead;
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let _controld = env.controld(&policy, &[]);
    let (_dp, front) = start_dataplane(&env, 1, &[]);
    env.wait_for_cores(1, 1);
    let mut s = Conn::open(&front);
    // Stored before tail starts: not shown.
    assert_eq!(s.roundtrip(&get("/page/1?old", "a")).0, 200);
    env.wait_for_records("traffic", 1);
    let mut tail = std::process::Command::new(controld_bin())
        .args([
            "logs",
            "tail",
            "--app",
            "demo",
            "--format",
            "jsonl",
            "--state-dir",
        ])
        .arg(env.path("state"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tail");
    let mut lines = std::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    // Requests keep coming until tail has shown one (it may start after
    // the first of them was stored).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
    });
    let mut n = 0;
    let line = loop {
        n += 1;
        assert_eq!(s.roundtrip(&get(&format!("/page/2?new={n}"), "b")).0, 200);
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            break line;
        }
        assert!(n < 50, "tail showed nothing");
    };
    let _ = tail.kill();
    let _ = tail.wait();
    let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
    assert!(v["url"].as_str().unwrap_or("").contains("new="), "{line}");
    assert_eq!(v["app"], "demo");
}

#[test]
fn a_data_plane_stopped_with_sigterm_keeps_its_unsent_records_for_the_next_run() {
    let env = Env::new();
    let origin = app_origin();
    let policy = demo_policy(&env, "p.toml", origin.addr(), "");
    let (dp, front) = offline_dataplane(&env, &policy, &[]);
    send_sequence(&front, 25, "term");
    // controld never ran: the records are in the core's memory only.
    assert_eq!(spill_files(&env), 0);
    let mut dp = dp;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(dp.child.id() as i32, libc::SIGTERM) },
        0
    );
    let status = dp.child.wait().expect("wait");
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    assert!(spill_files(&env) >= 1, "unsent batches written to disk");

    // The next run (same cache) sends them once controld is there.
    let _controld = env.controld(&policy, &[]);
    let (_dp2, _) = env.dataplane(1, &[]);
    let rows = env.wait_for_records("traffic", 25);
    let urls: BTreeSet<&str> = rows.iter().filter_map(|r| r["url"].as_str()).collect();
    assert_eq!(rows.len(), 25);
    assert_eq!(urls.len(), 25);
    eventually("spill files deleted once acknowledged", || {
        spill_files(&env) == 0
    });
}
