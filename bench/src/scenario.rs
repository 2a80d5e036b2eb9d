//! `bench scenario NAME`: named, documented measurements that start their
//! own data plane and origin.
//!
//! * `small-page`: closed-loop load of the demo app's 4 KB page through a
//!   1-core data plane;
//! * `dense-page`: a 256 KB HTML page referencing 16 app hosts about every
//!   125 bytes in every URL encoding;
//! * `download`: a 10 MB file;
//! * `hot-swap`: `small-page` load while controld applies a new snapshot
//!   every 100 ms, alternating the upstream between two origins (reports
//!   errors, which must be zero);
//! * `idle-conns`: opens N keep-alive connections through a 1-core data
//!   plane, one request each, leaves them idle, and reports the data
//!   plane's resident memory per connection (target ≤ 8 KiB);
//! * `tls-handshake`: a new TLS connection per request, full and resumed;
//! * `policy-heavy`: small-page under 1,000 access policies vs none;
//! * `session-download`: a 100 MB attachment under session policies that
//!   do not inspect it, against no policy (target ≥ 90% of the throughput);
//! * `page-load` (in [`crate::page_load`]): the SaaS demo app's page in
//!   headless Chromium through the proxy vs direct.
//!
//! The data plane runs on the last CPU; the load and the origin on the
//! others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::procs::{dataplane_addr, sibling, spawn_ready, Killed};
use std::time::Duration;

use crate::origin::{demo_app, Origin, OriginConfig};

/// Raises the soft open-files limit to the hard limit; returns the result.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Resident set size of a process, in KiB (from /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

fn one_request(s: &mut TcpStream) -> Result<(), String> {
    s.write_all(b"GET /bytes?n=64 HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = r.parse(&buf) {
            if buf.len() >= head + 64 {
                return Ok(());
            }
        }
    }
}

/// `idle-conns`: per-connection resident memory of idle keep-alive
/// connections.
pub fn idle_conns(connections: usize) -> Result<String, String> {
    let limit = raise_nofile();
    if (limit as usize) < connections + 100 {
        return Err(format!(
            "open-files limit {limit} is too low for {connections} connections"
        ));
    }
    let origin = Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        handler: demo_app("demo.test"),
        tls: None,
        split_writes: false,
        record: false,
    })
    .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("palisade-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{}\"\n",
            origin.addr()
        ),
    )
    .map_err(|e| e.to_string())?;
    let snap = dir.join("policy.snap");
    let status = Command::new(sibling("controld")?)
        .arg("compile")
        .arg(&policy)
        .arg("-o")
        .arg(&snap)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("controld compile failed".into());
    }
    let (dp, line) = spawn_ready(
        Command::new(sibling("dataplane")?)
            .arg("--snapshot")
            .arg(&snap)
            .args(["--listen", "127.0.0.1:0", "--cores", "1"]),
    )?;
    let pid = dp.id();
    let _dp = dp;
    let addr = dataplane_addr(&line)?;
    // Warm up: allocator arenas, the upstream pool, the page cache.
    let mut warm = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        one_request(&mut s)?;
        warm.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(pid)?;
    let mut held = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        one_request(&mut s)?;
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid)?;
    let _ = std::fs::remove_dir_all(&dir);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    Ok(format!(
        "idle-conns: {connections} idle keep-alive connections (one request each) on a 1-core data plane\n  resident memory: {before} KiB before, {after} KiB after\n  per connection: {:.2} KiB (target ≤ 8 KiB)",
        per_conn / 1024.0
    ))
}

/// Options shared by the load scenarios.
pub struct LoadScenario {
    pub connections: usize,
    pub duration: std::time::Duration,
    pub warmup: std::time::Duration,
}

/// A data plane (1 core, last CPU) in front of in-process origins,
/// optionally driven by controld.
struct Rig {
    dir: PathBuf,
    origins: Vec<Origin>,
    addr: std::net::SocketAddr,
    /// The HTTPS listener, when the data plane has one.
    tls_addr: Option<std::net::SocketAddr>,
    dataplane_pid: u32,
    _procs: Vec<Killed>,
}

/// CPU time a process has used (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    Ok(field(11) + field(12))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn policy_text(upstream: std::net::SocketAddr) -> String {
    format!("[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{upstream}\"\n")
}

fn start_rig(origins: usize, with_controld: bool) -> Result<Rig, String> {
    // Only hot-swap reports per-origin counts; elsewhere recording would
    // cost the origin time and memory.
    start_rig_with(origins, with_controld, with_controld, &[], &policy_text)
}

fn start_rig_with(
    origins: usize,
    with_controld: bool,
    record: bool,
    dataplane_args: &[&str],
    policy: &dyn Fn(std::net::SocketAddr) -> String,
) -> Result<Rig, String> {
    static RIGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "palisade-scenario-{}-{}",
        std::process::id(),
        RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let origins: Vec<Origin> = if record {
        (0..origins)
            .map(|_| {
                Origin::start(OriginConfig {
                    listen: "127.0.0.1:0".parse().expect("literal address"),
                    handler: demo_app("demo.test"),
                    tls: None,
                    split_writes: false,
                    record,
                })
                .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut upstreams: Vec<std::net::SocketAddr> = origins.iter().map(|o| o.addr()).collect();
    if !record {
        // The fast origin (glommio) for pure load: it must never be the
        // bottleneck. It runs until the process ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = crate::fast_origin::serve(
                "127.0.0.1:0".parse().expect("literal address"),
                demo_app("demo.test"),
                1,
                |a| {
                    let _ = tx.send(a);
                },
            );
        });
        upstreams.push(
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| "the origin did not start".to_string())?,
        );
    }
    for (i, addr) in upstreams.iter().enumerate() {
        std::fs::write(dir.join(format!("policy{i}.toml")), policy(*addr))
            .map_err(|e| e.to_string())?;
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut procs = Vec::new();
    let mut dp = Command::new(sibling("dataplane")?);
    dp.args([
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--cpus",
        &(cpus - 1).to_string(),
    ]);
    dp.args(dataplane_args);
    if with_controld {
        let socket = dir.join("control.sock");
        let (daemon, _) = spawn_ready(
            Command::new(sibling("controld")?)
                .arg("serve")
                .arg("--policy")
                .arg(dir.join("policy0.toml"))
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(dir.join("state")),
        )?;
        procs.push(daemon);
        dp.arg("--control").arg(&socket);
    } else {
        let snap = dir.join("policy0.snap");
        let ok = Command::new(sibling("controld")?)
            .arg("compile")
            .arg(dir.join("policy0.toml"))
            .arg("-o")
            .arg(&snap)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err("controld compile failed".into());
        }
        dp.arg("--snapshot").arg(&snap);
    }
    let (child, line) = spawn_ready(&mut dp)?;
    let dataplane_pid = child.id();
    procs.push(child);
    let addr = dataplane_addr(&line)?;
    let tls_addr = line
        .split("https on ")
        .nth(1)
        .and_then(|a| a.trim().parse().ok());
    // Wait until the app answers (with controld: until the first push).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            if one_request(&mut s).is_ok() {
                break;
            }
        }
        if std::time::Instant::now() > deadline {
            return Err("the data plane never served the app".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Rig {
        dir,
        origins,
        addr,
        tls_addr,
        dataplane_pid,
        _procs: procs,
    })
}

fn load_through(
    rig: &Rig,
    path: &str,
    opts: &LoadScenario,
) -> Result<crate::load::LoadResult, String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let target = crate::load::Target::parse(
        &format!("http://{}{path}", rig.addr),
        Some("demo.test.proxy.test"),
    )?;
    crate::load::run(&crate::load::LoadConfig {
        targets: vec![target],
        rate: None,
        connections: opts.connections,
        threads: cpus.saturating_sub(1).max(1),
        duration: opts.duration,
        warmup: opts.warmup,
        progress: false,
    })
}

/// `logging`: small-page through a data plane driven by controld, with
/// logging on and with `--no-log`, alternating rounds; reports medians and
/// the ratio (target: logging costs ≤ 5% of requests/s).
pub fn logging_overhead(opts: &LoadScenario, rounds: usize) -> Result<String, String> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    let mut stored = 0;
    for _ in 0..rounds.max(1) {
        for logging in [true, false] {
            let args: &[&str] = if logging { &[] } else { &["--no-log"] };
            let rig = start_rig_with(0, true, false, args, &policy_text)?;
            let before = cpu_ticks(rig.dataplane_pid)?;
            let result = load_through(&rig, "/", opts)?;
            let ticks = cpu_ticks(rig.dataplane_pid)?.saturating_sub(before);
            let all = (result.requests + result.warmup_requests).max(1) as f64;
            let cpu_us = ticks as f64 / ticks_per_second() * 1e6 / all;
            if logging {
                cpu_on.push(cpu_us);
            } else {
                cpu_off.push(cpu_us);
            }
            if logging {
                on.push(result.requests_per_s);
                let status = Command::new(sibling("controld")?)
                    .args(["status", "--json", "--socket"])
                    .arg(rig.dir.join("control.sock"))
                    .output()
                    .map_err(|e| e.to_string())?;
                let v: serde_json::Value =
                    serde_json::from_slice(&status.stdout).map_err(|e| e.to_string())?;
                stored = v["log_stored"].as_u64().unwrap_or(0);
                if result.errors.total() > 0 {
                    return Err(format!("errors with logging on: {}", result.render()));
                }
            } else {
                off.push(result.requests_per_s);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m_on, m_off) = (median(on.clone()), median(off.clone()));
    let (c_on, c_off) = (median(cpu_on.clone()), median(cpu_off.clone()));
    let rounded = |v: &[f64], k: f64| v.iter().map(|x| (x * k).round() / k).collect::<Vec<_>>();
    Ok(format!(
        "logging: small-page, 1-core data plane with controld, {} rounds each (medians)\n  logging on:  {m_on:.0} req/s {:?}; data plane CPU {c_on:.2} µs/request {:?}\n  --no-log:    {m_off:.0} req/s {:?}; data plane CPU {c_off:.2} µs/request {:?}\n  data plane CPU per request: {:+.1}% with logging (its capacity cost; target ≤ 5%)\n  requests/s: {:+.1}% with logging (client, origin and controld share the other core)\n  last run stored {stored} records\n",
        on.len(),
        rounded(&on, 1.0),
        rounded(&cpu_on, 100.0),
        rounded(&off, 1.0),
        rounded(&cpu_off, 100.0),
        (c_on / c_off - 1.0) * 100.0,
        (m_on / m_off - 1.0) * 100.0,
    ))
}

/// Runs a named load scenario and returns its report.
pub fn load_scenario(name: &str, opts: &LoadScenario) -> Result<String, String> {
    let (path, with_controld) = match name {
        "small-page" => ("/", false),
        "dense-page" => ("/dense?size=262144&hosts=16", false),
        "download" => ("/bytes?n=10485760", false),
        "hot-swap" => ("/", true),
                "tls-handshake" => return tls_handshakes(opts),
        "policy-heavy" => return policy_heavy(opts, 3),
        "session-download" => return session_download(opts, 3),
        other => {
            return Err(format!(
                "unknown scenario {other:?} (available: small-page, dense-page, download, hot-swap, tls-handshake, policy-heavy, session-download, idle-conns, logging)"
            ))
        }
    };
    let rig = start_rig(if with_controld { 2 } else { 1 }, with_controld)?;
    let applies = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed_applies = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = with_controld.then(|| {
        let (dir, applies, failed, stop) = (
            rig.dir.clone(),
            applies.clone(),
            failed_applies.clone(),
            stop.clone(),
        );
        let controld = sibling("controld");
        std::thread::spawn(move || {
            let Ok(controld) = controld else { return };
            let mut i = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ok = Command::new(&controld)
                    .arg("apply")
                    .arg(dir.join(format!("policy{}.toml", i % 2)))
                    .arg("--socket")
                    .arg(dir.join("control.sock"))
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                let counter = if ok { &applies } else { &failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let result = load_through(&rig, path, opts);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = swapper {
        let _ = t.join();
    }
    let result = result?;
    let mut report = format!("{name}: {}\n", result.render().replace('\n', "\n  "));
    if with_controld {
        let served: Vec<usize> = rig.origins.iter().map(|o| o.requests().len()).collect();
        report.push_str(&format!(
            "  snapshots applied during the run: {} ({} failed); requests per origin: {served:?}\n",
            applies.load(std::sync::atomic::Ordering::Relaxed),
            failed_applies.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    Ok(report)
}

/// Median of a non-empty list.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `policy-heavy`: small-page to an app of a policy with 1,000 access
/// policies over 100 apps and 100,000 IP ranges (none of which match the
/// load generator, so every request is evaluated and let through), against
/// the same page with no access policy, alternating rounds; reports medians
/// of requests/s and the data plane's CPU per request.
pub fn policy_heavy(opts: &LoadScenario, rounds: usize) -> Result<String, String> {
    let heavy = |addr: std::net::SocketAddr| {
        crate::policies::access_policy_toml_to(1_000, 100_000, &format!("http://{addr}")).replace(
            "name = \"app0\"\ndomains = [\"app0.scale.test\"]",
            "name = \"app0\"\ndomains = [\"app0.scale.test\", \"demo.test\"]",
        )
    };
    let mut rates = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for _ in 0..rounds.max(1) {
        for (i, policy) in [&policy_text as &dyn Fn(_) -> String, &heavy]
            .into_iter()
            .enumerate()
        {
            let rig = start_rig_with(0, false, false, &[], policy)?;
            let before = cpu_ticks(rig.dataplane_pid)?;
            let result = load_through(&rig, "/", opts)?;
            let ticks = cpu_ticks(rig.dataplane_pid)?.saturating_sub(before);
            if result.errors.total() > 0 {
                return Err(format!("errors: {}", result.render()));
            }
            let all = (result.requests + result.warmup_requests).max(1) as f64;
            rates[i].push(result.requests_per_s);
            cpu[i].push(ticks as f64 / ticks_per_second() * 1e6 / all);
        }
    }
    let (r0, r1) = (median(rates[0].clone()), median(rates[1].clone()));
    let (c0, c1) = (median(cpu[0].clone()), median(cpu[1].clone()));
    Ok(format!(
        "policy-heavy: small-page, 1-core data plane, {} rounds each (medians)\n  no access policy:                    {r0:.0} req/s; data plane CPU {c0:.2} µs/request\n  1,000 policies, 100,000 IP ranges:   {r1:.0} req/s; data plane CPU {c1:.2} µs/request\n  requests/s {:+.1}%, CPU per request {:+.1}% with the policies\n",
        rates[0].len(),
        (r1 / r0 - 1.0) * 100.0,
        (c1 / c0 - 1.0) * 100.0,
    ))
}

/// The session policies of `session-download`: download control with
/// content inspection and label protection for office documents and
/// PDFs, an executable block, and a monitor policy with its notice; the
/// 100 MB zip the load fetches is recognized as a download but under no
/// inspection, so it must stream through untouched.
pub const SESSION_DOWNLOAD_POLICY: &str = r#"
[[session_policy]]
name = "cards"
control = "control_download"
extensions = ["docx", "xlsx", "csv", "txt"]
action = "block"
[session_policy.inspect]
detectors = ["credit_card", "ssn", "iban"]

[[session_policy]]
name = "labelled"
control = "control_download"
extensions = ["docx", "xlsx", "pptx", "pdf"]
labels = ["Confidential"]
action = "protect"
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[session_policy]]
name = "executables"
control = "control_download"
file_types = ["executable"]
extensions = ["exe", "msi"]
action = "block"

[[session_policy]]
name = "watch"
control = "monitor"
"#;

/// `session-download`: a 100 MB attachment (`/files/archive.zip`) that no
/// policy inspects, through a 1-core data plane with the session policies
/// of [`SESSION_DOWNLOAD_POLICY`] and with no policy, alternating rounds;
/// reports medians of throughput and the data plane's CPU per MB (target:
/// ≥ 90% of the no-policy throughput).
pub fn session_download(opts: &LoadScenario, rounds: usize) -> Result<String, String> {
    let with_policies =
        |addr: std::net::SocketAddr| format!("{}{SESSION_DOWNLOAD_POLICY}", policy_text(addr));
    const SIZE: f64 = 104_857_600.0;
    let path = "/files/archive.zip?size=104857600";
    let mut rates = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for _ in 0..rounds.max(1) {
        for (i, policy) in [&policy_text as &dyn Fn(_) -> String, &with_policies]
            .into_iter()
            .enumerate()
        {
            let rig = start_rig_with(0, false, false, &[], policy)?;
            let before = cpu_ticks(rig.dataplane_pid)?;
            let result = load_through(&rig, path, opts)?;
            let ticks = cpu_ticks(rig.dataplane_pid)?.saturating_sub(before);
            if result.errors.total() > 0 {
                return Err(format!("errors: {}", result.render()));
            }
            let all = (result.requests + result.warmup_requests).max(1) as f64;
            rates[i].push(result.requests_per_s * SIZE / 1e6);
            cpu[i].push(ticks as f64 / ticks_per_second() * 1e3 / (all * SIZE / 1e6));
        }
    }
    let (r0, r1) = (median(rates[0].clone()), median(rates[1].clone()));
    let (c0, c1) = (median(cpu[0].clone()), median(cpu[1].clone()));
    Ok(format!(
        "session-download: 100 MB attachment, not under inspection, 1-core data plane, {} rounds each (medians)\n  no policy:              {r0:.0} MB/s; data plane CPU {c0:.3} ms/MB\n  with session policies:  {r1:.0} MB/s; data plane CPU {c1:.3} ms/MB\n  throughput {:.1}% of no policy (target ≥ 90%), CPU per MB {:+.1}%\n",
        rates[0].len(),
        r1 / r0 * 100.0,
        (c1 / c0 - 1.0) * 100.0,
    ))
}

/// `tls-handshake`: a new TLS connection per request (connect, handshake,
/// GET of the 4 KB page, close) to a 1-core data plane serving a
/// certificate made by `controld certs`, full then resumed; reports
/// handshakes/s, latency and the data plane's CPU per handshake.
pub fn tls_handshakes(opts: &LoadScenario) -> Result<String, String> {
    let certs =
        std::env::temp_dir().join(format!("palisade-scenario-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    let run = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let ok = Command::new(sibling("controld")?)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?
            .success();
        ok.then_some(())
            .ok_or_else(|| "controld certs failed".to_string())
    };
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    let names = certs.join("names.toml");
    std::fs::write(
        &names,
        policy_text("127.0.0.1:1".parse().expect("literal address")),
    )
    .map_err(|e| e.to_string())?;
    run(&[
        "certs".as_ref(),
        "ca".as_ref(),
        "--out".as_ref(),
        certs.join("ca").as_os_str(),
    ])?;
    run(&[
        "certs".as_ref(),
        "issue".as_ref(),
        "--ca".as_ref(),
        certs.join("ca/ca.pem").as_os_str(),
        "--ca-key".as_ref(),
        certs.join("ca/ca.key").as_os_str(),
        names.as_os_str(),
        "--out".as_ref(),
        certs.as_os_str(),
    ])?;
    let dir = certs.clone();
    let policy = move |addr: std::net::SocketAddr| {
        format!(
            "{}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            policy_text(addr),
            dir.join("demo.pem").display(),
            dir.join("demo.key").display()
        )
    };
    let rig = start_rig_with(0, false, false, &["--tls-listen", "127.0.0.1:0"], &policy);
    let rig = match rig {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&certs);
            return Err(e);
        }
    };
    let tls_addr = rig
        .tls_addr
        .ok_or("the data plane reported no TLS address")?;
    let mut report = String::from(
        "tls-handshake: new connection per request, 1-core data plane, ECDSA P-256 certificate\n",
    );
    for resume in [false, true] {
        let before = cpu_ticks(rig.dataplane_pid)?;
        let r = crate::handshake::run(&crate::handshake::HandshakeConfig {
            target: tls_addr,
            host: "demo.test.proxy.test".into(),
            path: "/".into(),
            connections: opts.connections.min(64),
            duration: opts.duration,
            warmup: opts.warmup,
            resume,
            tls12: false,
        })?;
        let ticks = cpu_ticks(rig.dataplane_pid)?.saturating_sub(before);
        let cpu_us = ticks as f64 / ticks_per_second() * 1e6 / r.total_handshakes.max(1) as f64;
        report.push_str(&format!(
            "  {}: {:.0} handshakes/s ({} resumed, {} errors), p50 {} µs, p99 {} µs; data plane CPU {cpu_us:.0} µs per handshake\n",
            if resume { "resumed" } else { "full   " },
            r.per_second,
            r.resumed,
            r.errors,
            r.p50_us,
            r.p99_us
        ));
    }
    drop(rig);
    let _ = std::fs::remove_dir_all(&certs);
    Ok(report)
}
