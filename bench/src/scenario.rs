//! `bench scenario NAME`: named, documented measurements that start their
//! own data plane and origin.
//!
//! * `idle-conns`: opens N keep-alive connections through a 1-core data
//!   plane, one request each, leaves them idle, and reports the data
//!   plane's resident memory per connection (target ≤ 8 KiB).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::origin::{demo_app, Origin, OriginConfig};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name(name);
    path.exists()
        .then_some(path.clone())
        .ok_or_else(|| format!("{} not found: build the workspace first", path.display()))
}

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
    let mut child = Command::new(sibling("dataplane")?)
        .arg("--snapshot")
        .arg(&snap)
        .args(["--listen", "127.0.0.1:0", "--cores", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .map_err(|e| e.to_string())?;
    }
    let pid = child.id();
    let _dp = Killed(child);
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("dataplane did not start: {line:?}"))?;
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
