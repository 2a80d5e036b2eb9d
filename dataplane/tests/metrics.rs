//! `--metrics`: a real Prometheus server (Debian's `prometheus`, installed
//! by `scripts/test`) scrapes the data plane while requests go through
//! it, and its query API returns exactly the requests made: by app,
//! status class and action, the duration histogram's count, an upstream
//! that refuses connections, requests refused before routing, and the
//! policy version. The exposition itself is checked line by line first.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const H: &str = "demo.test.proxy.test";

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One HTTP/1.0 GET; the body (HTTP/1.0: no chunking, read to the end).
fn http_get(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second.
    fn start(target: &str) -> Prometheus {
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: palisade\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin}: {e} (scripts/test installs Debian's prometheus)")
            });
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        palisade_bench::testing::eventually_within(
            "prometheus ready",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || http_get(p.addr, "/-/ready").is_some_and(|(s, _)| s == 200),
        );
        p
    }

    /// The value of an instant query that returns one series; `None`
    /// while it returns none.
    fn value(&self, promql: &str) -> Option<f64> {
        let mut q = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                q.push(b as char);
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={q}"))?;
        assert_eq!(status, 200, "query {promql}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        let result = json["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql} returned {result:?}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` has the value `want`.
    fn eventually_equals(&self, promql: &str, want: f64) {
        let mut last = None;
        palisade_bench::testing::eventually_within(
            &format!("prometheus: {promql} == {want}"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                last = self.value(promql);
                last == Some(want)
            },
        );
    }
}

/// `n` keep-alive GETs of `/` on one connection, each answered 200.
fn requests_ok(dp: &Dataplane, n: usize) {
    let mut s = dp.connect();
    for i in 0..n {
        s.write_all(&get(H, "/")).expect("write");
        let r = Reader::new(&mut s).response(false);
        assert_eq!(r.status, 200, "request {i}");
    }
}

#[test]
fn prometheus_scrapes_exact_request_counts_during_a_load() {
    let origin = origin(demo_app("demo.test"));
    // An app whose upstream refuses connections: a port bound and freed.
    let refused = free_port();
    let extra = format!(
        "\n[[app]]\nname = \"down\"\ndomains = [\"down.test\"]\nupstream = \"http://127.0.0.1:{refused}\"\n"
    );
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), &extra),
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics: SocketAddr = dp
        .ready_line
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", dp.ready_line));

    // The exposition, read directly, after a known set of requests.
    requests_ok(&dp, 3);
    for _ in 0..2 {
        let r = request(&dp, &get("down.test.proxy.test", "/"));
        assert_eq!(r.status, 502);
    }
    let r = request(&dp, &get("unknown.example", "/"));
    assert!(r.status >= 400, "an unknown host is refused: {}", r.status);
    // A request is counted in its *log* phase, just after its response
    // is written: the client may read the response first.
    let want = [
        "palisade_requests_total{app=\"demo\",code_class=\"2xx\",action=\"allow\"} 3",
        "palisade_requests_total{app=\"down\",code_class=\"5xx\",action=\"allow\"} 2",
        "palisade_requests_total{app=\"\",code_class=\"4xx\",action=\"block\"} 1",
        "palisade_upstream_failures_total{reason=\"connect_error\"} 2",
        "palisade_request_duration_seconds_count 5",
        "palisade_connections_accepted_total 4",
    ];
    let mut text = String::new();
    eventually("every request counted", || {
        let (status, body) = http_get(metrics, "/metrics").expect("scrape");
        assert_eq!(status, 200);
        text = body;
        want.iter().all(|line| text.lines().any(|l| l == *line))
    });
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("palisade_core_policy_version{core=\"0\"} "))
        .expect("policy version");
    assert_ne!(version, "0", "the snapshot's version is reported");
    assert_eq!(http_get(metrics, "/other").map(|r| r.0), Some(404));

    // Prometheus scrapes while four clients make requests: the load goes
    // on until a scrape has seen part of it, then one more round.
    let prometheus = Prometheus::start(&metrics.to_string());
    let mut made = 3;
    let mut seen_mid_load = false;
    let mut rounds = 0;
    // Bounded by time, not rounds: Prometheus's first scrape may come a
    // few seconds after it is ready, and a fast machine makes many rounds
    // before then.
    let started = std::time::Instant::now();
    while !seen_mid_load || rounds < 2 {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| requests_ok(&dp, 50));
            }
        });
        made += 200;
        rounds += 1;
        seen_mid_load = seen_mid_load
            || prometheus
                .value("palisade_requests_total{app=\"demo\",code_class=\"2xx\"}")
                .is_some_and(|v| v > 3.0 && v < made as f64);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "prometheus never scraped during the load ({rounds} rounds)"
        );
    }
    let demo_ok = "palisade_requests_total{app=\"demo\",code_class=\"2xx\",action=\"allow\"}";
    prometheus.eventually_equals(demo_ok, made as f64);
    prometheus.eventually_equals("palisade_request_duration_seconds_count", (made + 2) as f64);
    prometheus.eventually_equals(
        "palisade_request_duration_seconds_bucket{le=\"+Inf\"}",
        (made + 2) as f64,
    );
    prometheus.eventually_equals(
        "palisade_upstream_failures_total{reason=\"connect_error\"}",
        2.0,
    );
    prometheus.eventually_equals("palisade_connections_open{core=\"0\"}", 0.0);
    // The histogram answers a quantile query: a finite median within its
    // bounds.
    let median = prometheus
        .value("histogram_quantile(0.5, palisade_request_duration_seconds_bucket)")
        .expect("median");
    assert!(median > 0.0 && median <= 30.0, "median {median}");
    // And the scrapes themselves succeeded throughout.
    prometheus.eventually_equals("up{job=\"palisade\"}", 1.0);
}
