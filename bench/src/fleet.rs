//! Fleet measurements with real processes (binaries next to this one, etcd
//! and ClickHouse from their Debian packages):
//!
//! * `bench fleet-apply`: a 3-member etcd cluster and three nodes (controld
//!   `--fleet` and a one-core data plane each); the wall time of
//!   `controld apply --fleet`, which returns once every core of every node
//!   acknowledged (CLI start to the last ack), median of the rounds.
//! * `bench log-ship`: one node's store filled with records (as data-plane
//!   cores would send them), then controld started with `--log-sink` on a
//!   ClickHouse server: records shipped per second (start to the last row
//!   in ClickHouse) and controld's CPU seconds for it; then a fleet-wide
//!   `controld report --store` over `--report-rows` rows generated in
//!   ClickHouse, median wall time.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::{sibling, spawn_ready, Killed};

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn http(port: u16, body: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("http://127.0.0.1:{port}/"))
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    Ok(text)
}

/// A temporary directory removed at the end.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn scratch(name: &str) -> Result<Scratch, String> {
    let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(Scratch(dir))
}

/// The command that starts member `i` of a loopback etcd cluster whose
/// members listen on `clients` and `peers` (etcd from `$ETCD` or `PATH`).
/// Heartbeat and election timeouts suit a loaded 2-core machine.
pub fn etcd_member(dir: &Path, i: usize, clients: &[u16], peers: &[u16]) -> Command {
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(m, p)| format!("m{m}=http://127.0.0.1:{p}"))
        .collect();
    let mut cmd = Command::new(std::env::var("ETCD").unwrap_or_else(|_| "etcd".into()));
    cmd.args(["--name", &format!("m{i}")])
        .arg("--data-dir")
        .arg(dir.join(format!("etcd-m{i}")))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{}", clients[i]),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{}", clients[i]),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", peers[i]),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{}", peers[i]),
            "--initial-cluster",
            &initial.join(","),
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "palisade",
            "--heartbeat-interval",
            "200",
            "--election-timeout",
            "3000",
        ]);
    cmd
}

/// Starts a 3-member etcd cluster; its `etcd://` spec.
fn etcd_cluster(dir: &Path) -> Result<(Vec<Killed>, String), String> {
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let mut members = Vec::new();
    for i in 0..3 {
        let child: Child = etcd_member(dir, i, &clients, &peers)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("etcd (install etcd-server): {e}"))?;
        members.push(Killed(child));
    }
    for port in &clients {
        wait_until("etcd", Duration::from_secs(60), || {
            ureq::get(&format!("http://127.0.0.1:{port}/health"))
                .call()
                .is_ok_and(|mut r| {
                    r.body_mut()
                        .read_to_string()
                        .is_ok_and(|t| t.contains("true"))
                })
        })?;
    }
    let spec = clients
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok((members, format!("etcd://{spec}")))
}

/// `bench fleet-apply`.
pub fn fleet_apply(rounds: usize) -> Result<String, String> {
    let controld = sibling("controld")?;
    let dataplane = sibling("dataplane")?;
    let work = scratch("fleet-apply")?;
    let dir = &work.0;
    let (_etcd, spec) = etcd_cluster(dir)?;
    let policies: Vec<PathBuf> = (0..2)
        .map(|i| {
            let path = dir.join(format!("p{i}.toml"));
            let text = format!(
                "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.com\"]\nupstream = \"http://127.0.0.1:{}\"\n",
                18_000 + i
            );
            std::fs::write(&path, text).map(|_| path)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    for n in 0..3 {
        let node_dir = dir.join(format!("n{n}"));
        std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
        let socket = node_dir.join("control.sock");
        let (c, _) = spawn_ready(
            Command::new(&controld)
                .arg("serve")
                .arg("--policy")
                .arg(&policies[0])
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(node_dir.join("state"))
                .args(["--fleet", &spec, "--node", &format!("n{n}")]),
        )?;
        let (d, _) = spawn_ready(
            Command::new(&dataplane)
                .args(["--listen", "127.0.0.1:0", "--cores", "1", "--no-log"])
                .arg("--control")
                .arg(&socket),
        )?;
        nodes.push((c, d));
    }
    let mut wall = Vec::new();
    for round in 0..rounds + 1 {
        let t0 = Instant::now();
        let out = Command::new(&controld)
            .arg("apply")
            .arg(&policies[(round + 1) % 2])
            .args(["--fleet", &spec, "--wait", "30"])
            .output()
            .map_err(|e| e.to_string())?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            return Err(format!(
                "apply --fleet: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The first round also waits for the nodes' first reports.
        if round > 0 {
            wall.push(ms);
        }
    }
    Ok(format!(
        "fleet apply, 3 nodes × 1 core, 3 etcd members, {rounds} applies: `controld apply --fleet` CLI start to every core acknowledged, median {:.1} ms (samples {:?})",
        median(wall.clone()),
        wall.iter().map(|w| (w * 10.0).round() / 10.0).collect::<Vec<_>>()
    ))
}

/// A ClickHouse server configuration on loopback with its data, logs and
/// temporary files in `dir` and the packaged users (`default`, no
/// password).
pub fn clickhouse_config(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
</yandex>
"#
    )
}

/// A ClickHouse server in `dir`; its HTTP port.
fn clickhouse(dir: &Path) -> Result<(Killed, u16), String> {
    let (http_port, tcp_port) = (free_port()?, free_port()?);
    std::fs::write(
        dir.join("config.xml"),
        clickhouse_config(dir, http_port, tcp_port),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("/usr/sbin/clickhouse-server")
        .arg(format!(
            "--config-file={}",
            dir.join("config.xml").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("clickhouse-server (install clickhouse-server): {e}"))?;
    let ch = Killed(child);
    wait_until("ClickHouse", Duration::from_secs(60), || {
        http(http_port, "SELECT 1").is_ok()
    })?;
    Ok((ch, http_port))
}

/// CPU seconds (user + system) a process used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime is the 14th
    // field of the line, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// One controld on a one-app policy in `dir`, its store synced `normal`
/// (benchmarks fill stores; power-loss safety is not what they measure).
pub(crate) struct LoneControld {
    controld: PathBuf,
    policy: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) state: PathBuf,
}

impl LoneControld {
    pub(crate) fn new(dir: &Path) -> Result<LoneControld, String> {
        let policy = dir.join("p.toml");
        std::fs::write(
            &policy,
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.com\"]\n",
        )
        .map_err(|e| e.to_string())?;
        Ok(LoneControld {
            controld: sibling("controld")?,
            policy,
            socket: dir.join("control.sock"),
            state: dir.join("state"),
        })
    }

    /// `controld serve` with `extra` options; once ready, its first line.
    pub(crate) fn serve(&self, extra: &[&str]) -> Result<(Killed, String), String> {
        spawn_ready(
            Command::new(&self.controld)
                .arg("serve")
                .arg("--policy")
                .arg(&self.policy)
                .arg("--socket")
                .arg(&self.socket)
                .arg("--state-dir")
                .arg(&self.state)
                .args(["--log-sync", "normal"])
                .args(extra),
        )
    }
}

/// `bench log-ship`.
pub fn log_ship(records: usize, report_rows: usize, rounds: usize) -> Result<String, String> {
    let controld = sibling("controld")?;
    let work = scratch("log-ship")?;
    let dir = &work.0;
    let ch_dir = dir.join("clickhouse");
    std::fs::create_dir_all(&ch_dir).map_err(|e| e.to_string())?;
    let (_ch, port) = clickhouse(&ch_dir)?;
    let node = LoneControld::new(dir)?;
    let serve = |extra: &[&str]| node.serve(extra);
    // Fill the store first (no sink), as cores would.
    {
        let (_filler, _) = serve(&[])?;
        let batch = 1024;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let frames: Vec<Vec<u8>> = (1..=records.div_ceil(batch) as u64)
            .map(|seq| {
                crate::log_ingest::batch_frame(
                    1 << 62,
                    seq,
                    &crate::log_ingest::sample_batch(batch, now_us + seq * batch as u64),
                )
            })
            .collect();
        crate::log_ingest::produce(&node.socket, 0, &frames)?;
    }
    let stored = records.div_ceil(1024) * 1024;
    let sink = format!("clickhouse://127.0.0.1:{port}/bench");
    let t0 = Instant::now();
    let (shipper, _) = serve(&["--log-sink", &sink, "--node", "n1"])?;
    let cpu0 = cpu_seconds(shipper.id());
    wait_until(
        "every record in ClickHouse",
        Duration::from_secs(1800),
        || {
            http(port, "SELECT count() FROM bench.records")
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
                == Some(stored)
        },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(shipper.id()) - cpu0;
    drop(shipper);

    // A fleet-wide report over `report_rows` rows of ten nodes.
    http(
        port,
        &format!(
            "INSERT INTO bench.records (node, id, time_us, kind, client_ip, user, app, host, method, url, status, bytes_up, bytes_down, action) SELECT concat('g', toString(number % 10)), number, 1796600000000000 + number, 'traffic', concat('10.0.', toString(number % 250)), concat('user', toString(number % 5000)), concat('app', toString(number % 40)), 'app.example', 'GET', concat('https://app.example/', toString(number)), 200, 600, 18000, if(number % 97 = 0, 'block', 'allow') FROM system.numbers LIMIT {report_rows}"
        ),
    )?;
    let mut report_ms = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let out = Command::new(&controld)
            .args(["report", "--by", "app", "--store", &sink])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "report --store: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        report_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(format!(
        "ClickHouse shipping from one node: {stored} records in {secs:.2} s = {:.0} records/s; controld CPU {cpu:.2} s ({:.2} µs per record)\nfleet-wide `controld report --by app --store` over {} rows: median {:.0} ms (samples {:?})",
        stored as f64 / secs,
        cpu * 1e6 / stored as f64,
        report_rows + stored,
        median(report_ms.clone()),
        report_ms.iter().map(|m| m.round()).collect::<Vec<_>>()
    ))
}
