//! Shipping logs into ClickHouse: a real ClickHouse server (Debian
//! `clickhouse-server`) on loopback and three nodes, each a controld with
//! `--log-sink` and its own data plane. Requests through all three nodes
//! appear in ClickHouse once each, compared with each node's store by id
//! and URL, including across a ClickHouse restart in the middle of a load
//! and a controld that dies between an insert and its mark.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(90);

fn within(what: &str, cond: impl FnMut() -> bool) {
    palisade_bench::testing::eventually_within(what, LONG, Duration::from_millis(50), cond)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A ClickHouse server with its own configuration and data directory.
struct ClickHouse {
    child: Option<Child>,
    dir: PathBuf,
    http_port: u16,
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl ClickHouse {
    fn start(dir: &Path) -> ClickHouse {
        let bin = PathBuf::from(
            std::env::var("CLICKHOUSE_SERVER").unwrap_or("/usr/sbin/clickhouse-server".into()),
        );
        assert!(
            bin.exists(),
            "{} is missing: install clickhouse-server (scripts/test does)",
            bin.display()
        );
        let (http_port, tcp_port) = (free_port(), free_port());
        std::fs::write(
            dir.join("config.xml"),
            palisade_bench::fleet::clickhouse_config(dir, http_port, tcp_port),
        )
        .expect("config");
        let mut ch = ClickHouse {
            child: None,
            dir: dir.to_path_buf(),
            http_port,
        };
        ch.resume();
        ch
    }

    fn resume(&mut self) {
        let bin =
            std::env::var("CLICKHOUSE_SERVER").unwrap_or("/usr/sbin/clickhouse-server".into());
        let child = Command::new(bin)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        self.child = Some(child);
        within("ClickHouse answers", || {
            self.query("SELECT 1").is_ok_and(|t| t.trim() == "1")
        });
    }

    /// Stops it as its service manager would (SIGTERM) and waits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn query(&self, sql: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let body = sql.as_bytes();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .and_then(|_| s.write_all(body))
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no response")?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{head}\n{body}"));
        }
        // Chunked: keep the data lines only.
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut data = String::new();
            let mut rest = body;
            while let Some((size, tail)) = rest.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 || tail.len() < n {
                    break;
                }
                data.push_str(&tail[..n]);
                rest = tail[n..].trim_start_matches("\r\n");
            }
            return Ok(data);
        }
        Ok(body.to_string())
    }

    fn count(&self, sql: &str) -> u64 {
        self.query(sql)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    fn spec(&self) -> String {
        format!("clickhouse://127.0.0.1:{}/palisade", self.http_port)
    }
}

struct Node {
    env: Env,
    name: String,
    policy: PathBuf,
    controld: Option<Proc>,
    _dataplane: Proc,
    proxy: SocketAddr,
}

impl Node {
    fn start(name: &str, sink: &str, origin: SocketAddr) -> Node {
        let env = Env::new();
        // Requests for /page/alert/… raise an alert on every node.
        let policy = env.policy(
            "p.toml",
            origin,
            "\n[[activity_policy]]\nname = \"alert pages\"\nurl_contains = \"/page/alert/\"\nalert = { severity = \"medium\" }\n",
        );
        let controld = env.controld(&policy, &["--log-sink", sink, "--node", name]);
        let (dataplane, proxy) = env.dataplane(1, &[]);
        env.wait_for_cores(1, 1);
        Node {
            env,
            name: name.into(),
            policy,
            controld: Some(controld),
            _dataplane: dataplane,
            proxy,
        }
    }

    fn start_controld(&mut self, sink: &str, fault: Option<&str>) {
        let mut cmd = Command::new(controld_bin());
        cmd.arg("serve")
            .arg("--policy")
            .arg(&self.policy)
            .arg("--socket")
            .arg(self.env.socket())
            .arg("--state-dir")
            .arg(self.env.path("state"))
            .args(["--log-sink", sink, "--node", &self.name]);
        if let Some(f) = fault {
            cmd.env("PALISADE_FAULT", f);
        }
        let p = Proc::spawn(cmd);
        assert!(
            p.first_line.starts_with("controld: serving"),
            "{}",
            p.first_line
        );
        self.controld = Some(p);
    }

    /// The node's stored records: id → URL.
    fn stored(&self) -> BTreeMap<i64, String> {
        self.env
            .export(&[])
            .into_iter()
            .map(|r| {
                (
                    r["id"].as_i64().unwrap(),
                    r["url"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn get(addr: SocketAddr, target: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(DEADLINE)).ok();
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: demo.test.proxy.test\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf).is_ok_and(|(status, _)| status == 200)
}

/// ClickHouse's rows (FINAL: each (node, id) once), per node: id → URL.
fn shipped(ch: &ClickHouse) -> BTreeMap<String, BTreeMap<i64, String>> {
    let text = ch
        .query("SELECT node, id, url FROM palisade.records FINAL FORMAT TabSeparated")
        .unwrap_or_default();
    let mut out: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(3, '\t').collect();
        if f.len() == 3 {
            out.entry(f[0].to_string())
                .or_default()
                .insert(f[1].parse().unwrap(), f[2].to_string());
        }
    }
    out
}

#[test]
fn records_from_three_nodes_reach_clickhouse_once_each_across_restarts_and_crashes() {
    let work = Env::new();
    let mut ch = ClickHouse::start(work.dir.path());
    let sink = ch.spec();
    let origin = named_origin("logs");
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::start(n, &sink, origin.addr()))
        .collect();

    // A load through all three nodes; ClickHouse restarted in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let proxies: Vec<SocketAddr> = nodes.iter().map(|n| n.proxy).collect();
    let load = {
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let node = i % proxies.len();
                assert!(
                    get(proxies[node], &format!("/page/n{}/{i}", node + 1)),
                    "request {i}"
                );
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
                // A steady load, not a flood: the phases below count
                // requests, and ClickHouse's shutdown takes seconds.
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    within("100 requests", || done.load(Ordering::SeqCst) >= 100);
    ch.stop();
    let at_stop = done.load(Ordering::SeqCst);
    // The nodes say they are failing (status, metrics) while records wait.
    within("node 1's log sink failing", || {
        let st = nodes[0].env.status();
        st["log_sink"][0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    });
    let metrics = nodes[0].env.cli(&["status", "--prometheus"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(
        metrics.contains(&format!(
            "palisade_log_sink_failing{{destination=\"{sink}\"}} 1"
        )),
        "{metrics}"
    );
    within("100 more requests with ClickHouse down", || {
        done.load(Ordering::SeqCst) >= at_stop + 100
    });
    ch.resume();
    let at_resume = done.load(Ordering::SeqCst);
    within("100 more requests after the restart", || {
        done.load(Ordering::SeqCst) >= at_resume + 100
    });
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load");
    let total = done.load(Ordering::SeqCst);
    // Waits until the nodes stored `requests` records, then until
    // ClickHouse holds exactly them.
    let check = |nodes: &[Node], ch: &ClickHouse, requests: usize| {
        let mut expected: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
        within(
            &format!("the nodes' stores hold {requests} records"),
            || {
                expected = nodes.iter().map(|n| (n.name.clone(), n.stored())).collect();
                expected.values().map(BTreeMap::len).sum::<usize>() >= requests
            },
        );
        let sum: usize = expected.values().map(BTreeMap::len).sum();
        let deadline = std::time::Instant::now() + LONG;
        let mut seen = 0;
        while std::time::Instant::now() < deadline {
            seen = ch.count("SELECT count() FROM palisade.records FINAL");
            if seen == sum as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if seen != sum as u64 {
            let per_node = ch
                .query("SELECT node, count(), max(id) FROM palisade.records FINAL GROUP BY node ORDER BY node FORMAT TSV")
                .unwrap_or_default();
            let stores: Vec<(String, usize, i64)> = expected
                .iter()
                .map(|(n, m)| (n.clone(), m.len(), m.keys().last().copied().unwrap_or(0)))
                .collect();
            panic!("ClickHouse holds {seen} of the nodes' {sum} records: {per_node} vs stores {stores:?}");
        }
        assert_eq!(shipped(ch), expected, "ClickHouse = each node's store");
        sum
    };
    let sum = check(&nodes, &ch, total);
    assert_eq!(sum, total, "one record per request");
    for n in &nodes {
        let last = *n.stored().keys().last().unwrap();
        within(
            &format!("{}'s log sink through record {last}", n.name),
            || {
                let st = n.env.status();
                let sink = &st["log_sink"][0];
                sink["mark_record"] == last
                    && sink["last_error"] == ""
                    && sink["sent"].as_u64() > Some(0)
            },
        );
    }

    // A controld that dies between an insert and its mark: node 1's
    // controld is down while requests are made (its data plane keeps them),
    // then starts with the fault, ships them and is SIGKILLed before the mark;
    // started again, it ships them again, and ClickHouse folds the copies.
    nodes[0].controld.take().unwrap().kill();
    for i in 0..20 {
        assert!(get(nodes[0].proxy, &format!("/page/crash/{i}")));
    }
    let before = ch.count("SELECT count() FROM palisade.records");
    nodes[0].start_controld(&sink, Some("kill-after-ship"));
    let mut faulted = nodes[0].controld.take().unwrap();
    let mut died = None;
    within("the faulted controld is killed after its insert", || {
        died = faulted.child.try_wait().ok().flatten();
        died.is_some()
    });
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(died.and_then(|s| s.signal()), Some(libc::SIGKILL));
    assert!(
        ch.count("SELECT count() FROM palisade.records") > before,
        "it inserted"
    );
    // …and died before its mark: the restart sends those rows again.
    let mark =
        std::fs::read_to_string(nodes[0].env.path("state/clickhouse.mark")).unwrap_or_default();
    let marked: i64 = mark
        .lines()
        .find_map(|l| l.strip_prefix("records "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let shipped_max = ch.count("SELECT max(id) FROM palisade.records WHERE node = 'n1'") as i64;
    assert!(
        shipped_max > marked,
        "shipped up to {shipped_max}, marked {marked}"
    );
    drop(faulted);
    nodes[0].start_controld(&sink, None);
    let sum = check(&nodes, &ch, total + 20);
    assert_eq!(sum, total + 20);

    // The fleet-wide export reads the same records, each once.
    let out = Command::new(controld_bin())
        .args(["logs", "export", "--format", "jsonl", "--store", &sink])
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), sum);
    let stored: BTreeMap<String, BTreeMap<i64, String>> =
        nodes.iter().map(|n| (n.name.clone(), n.stored())).collect();
    for r in &rows {
        let node = &stored[r["node"].as_str().unwrap()];
        assert_eq!(
            node.get(&r["id"].as_i64().unwrap()).map(String::as_str),
            r["url"].as_str(),
            "{r}"
        );
    }
    // And, per node, the same lines the node's own export gives.
    let local = nodes[1].env.export(&[]);
    let from_fleet: Vec<&serde_json::Value> = rows.iter().filter(|r| r["node"] == "n2").collect();
    assert_eq!(from_fleet.len(), local.len());
    for (f, l) in from_fleet.iter().zip(&local) {
        let mut f = (*f).clone();
        f.as_object_mut().unwrap().remove("node");
        assert_eq!(&f, l);
    }
    // The fleet-wide report adds up the nodes' reports.
    let report = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = Command::new(controld_bin())
            .args(["report", "--by", "app", "--json"])
            .args(args)
            .output()
            .expect("report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("report JSON")
    };
    let fleet_report = report(&["--store", &sink]);
    let mut local_requests = 0;
    for n in &nodes {
        let state = n.env.path("state");
        let rows = report(&["--state-dir", state.to_str().unwrap()]);
        local_requests += rows
            .iter()
            .map(|r| r["requests"].as_i64().unwrap())
            .sum::<i64>();
    }
    let fleet_requests: i64 = fleet_report
        .iter()
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(fleet_requests, local_requests);
    assert_eq!(fleet_requests as usize, sum);

    // Alerts: one raised on each node, all three listed from ClickHouse.
    for (i, n) in nodes.iter().enumerate() {
        assert!(get(n.proxy, &format!("/page/alert/{i}")));
    }
    let mut alerts = Vec::new();
    within("three alerts in ClickHouse", || {
        let out = Command::new(controld_bin())
            .args(["alerts", "--json", "--store", &sink])
            .output()
            .expect("alerts");
        alerts = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default();
        alerts.len() == 3
    });
    let mut seen: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["node"].as_str().unwrap().to_string(),
                a["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    for (i, (node, url)) in seen.iter().enumerate() {
        assert_eq!(node, &format!("n{}", i + 1));
        assert_eq!(url, &format!("http://demo.test/page/alert/{i}"));
        assert_eq!(alerts[0]["policy"], "alert pages");
    }
}
