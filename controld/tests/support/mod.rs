//! Harness for control-plane tests: real `controld` and `dataplane`
//! processes on a Unix socket and loopback, real origins.

#![allow(dead_code)]

pub mod console;
pub mod https;
pub mod saml;
pub mod signin;

use palisade_bench::testing::RunOk;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use palisade_bench::origin::{Origin, OriginConfig, Reply, Request};

pub const DEADLINE: Duration = Duration::from_secs(15);

/// The `dataplane` binary, built alongside `controld` by `cargo test
/// --workspace` (scripts/test builds every binary first).
pub fn dataplane_bin() -> PathBuf {
    let controld = PathBuf::from(env!("CARGO_BIN_EXE_controld"));
    let path = controld.with_file_name("dataplane");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p palisade-dataplane)",
        path.display()
    );
    path
}

pub fn controld_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_controld"))
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub first_line: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// The address a data plane reports in its first line.
    pub fn listen_address(&self) -> SocketAddr {
        self.first_line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "dataplane did not report its address: {:?}",
                    self.first_line
                )
            })
    }

    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first_line = String::new();
        reader.read_line(&mut first_line).expect("read first line");
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Proc { child, first_line }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's working directory with its socket, state and cache paths.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn socket(&self) -> PathBuf {
        self.path("control.sock")
    }

    /// A second app (its upstream never contacted): a policy change that
    /// leaves `demo.test` served as before.
    pub const SECOND_APP: &'static str =
        "\n[[app]]\nname = \"more\"\ndomains = [\"more.test\"]\nupstream = \"http://127.0.0.1:9\"\n";

    /// Writes a policy routing `demo.test` (and subdomains) to `upstream`.
    pub fn policy(&self, name: &str, upstream: SocketAddr, extra: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{upstream}\"\n{extra}"
            ),
        )
        .expect("write policy");
        path
    }

    /// Starts `controld serve` and waits until it listens.
    pub fn controld(&self, policy: &Path, args: &[&str]) -> Proc {
        let mut cmd = Command::new(controld_bin());
        cmd.arg("serve")
            .arg("--policy")
            .arg(policy)
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(args);
        let p = Proc::spawn(cmd);
        assert!(
            p.first_line.starts_with("controld: serving version"),
            "controld: {:?}",
            p.first_line
        );
        p
    }

    /// Starts the data plane connected to controld; returns it and its address.
    pub fn dataplane(&self, cores: usize, extra: &[&str]) -> (Proc, SocketAddr) {
        self.dataplane_on("127.0.0.1:0", cores, extra)
    }

    /// Like `dataplane`, listening on `listen` (to restart on a port).
    pub fn dataplane_on(&self, listen: &str, cores: usize, extra: &[&str]) -> (Proc, SocketAddr) {
        let mut cmd = Command::new(dataplane_bin());
        cmd.args(["--listen", listen, "--cores", &cores.to_string()])
            .arg("--control")
            .arg(self.socket())
            .arg("--snapshot-cache")
            .arg(self.path("cache"))
            .args(extra);
        let p = Proc::spawn(cmd);
        let addr = p.listen_address();
        (p, addr)
    }

    /// Starts the data plane with an HTTPS listener too; returns it and
    /// its (plain, TLS) addresses.
    pub fn dataplane_tls(&self, cores: usize, extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
        let mut args = vec!["--tls-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (p, addr) = self.dataplane(cores, &args);
        let tls = p
            .first_line
            .split("https on ")
            .nth(1)
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "dataplane did not report its TLS address: {:?}",
                    p.first_line
                )
            });
        (p, addr, tls)
    }

    /// `controld apply POLICY`, which must succeed (`when` names the
    /// moment in the failure message).
    pub fn apply(&self, policy: &Path, when: &str) {
        let out = self.cli(&["apply", policy.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "apply {when}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a `controld` CLI command against this socket.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(controld_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("run controld cli")
    }

    /// `controld status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// Waits until `cores` cores report `version`.
    pub fn wait_for_cores(&self, cores: usize, version: u64) {
        eventually(&format!("{cores} cores at version {version}"), || {
            let out = self.cli(&["status", "--json"]);
            if !out.status.success() {
                return false;
            }
            let s: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(s) => s,
                Err(_) => return false,
            };
            let list = s["cores"].as_array().cloned().unwrap_or_default();
            list.len() == cores && list.iter().all(|c| c["version"].as_u64() == Some(version))
        });
    }
}

/// Two origins answering "A" and "B", and a policy routing `demo.test` to
/// each.
pub struct TwoOrigins {
    pub a: Origin,
    pub b: Origin,
    pub policy_a: PathBuf,
    pub policy_b: PathBuf,
}

impl Env {
    pub fn two_origins(&self) -> TwoOrigins {
        let a = named_origin("A");
        let b = named_origin("B");
        let policy_a = self.policy("a.toml", a.addr(), "");
        let policy_b = self.policy("b.toml", b.addr(), "");
        TwoOrigins {
            a,
            b,
            policy_a,
            policy_b,
        }
    }
}

/// An origin answering every request with `name`.
pub fn named_origin(name: &'static str) -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: Arc::new(move |_: &Request| Reply::text(200, name)),
        tls: None,
        split_writes: false,
        record: true,
    })
    .expect("origin")
}

/// One GET through the proxy on a new connection: (status, body).
pub fn fetch(addr: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    parse_response(&buf)
}

/// Parses a complete Content-Length response.
pub fn parse_response(buf: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        other => {
            return Err(format!(
                "bad response {other:?}: {:?}",
                String::from_utf8_lossy(buf)
            ))
        }
    };
    Ok((
        r.code.unwrap_or(0),
        String::from_utf8_lossy(&buf[n..]).into_owned(),
    ))
}

/// Polls `cond` until it holds or [`DEADLINE`] passes.
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    palisade_bench::testing::eventually_within(what, DEADLINE, Duration::from_millis(20), cond)
}

impl Env {
    /// `controld logs export --format jsonl` of this env's store, parsed.
    pub fn export(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let out = Command::new(controld_bin())
            .args(["logs", "export", "--format", "jsonl", "--state-dir"])
            .arg(self.path("state"))
            .args(extra)
            .output()
            .expect("run controld logs export");
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("export line is JSON"))
            .collect()
    }

    /// `controld alerts --json` of this env's store, parsed.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let out = Command::new(controld_bin())
            .args(["alerts", "--json", "--state-dir"])
            .arg(self.path("state"))
            .ran_ok("controld alerts");
        serde_json::from_slice(&out.stdout).expect("alerts JSON")
    }

    /// Waits until core 0 reports `total` log records stored plus
    /// dropped (`controld status`); returns (stored, dropped).
    pub fn wait_for_log_counts(&self, total: u64) -> (u64, u64) {
        let mut counts = (0, 0);
        eventually(&format!("stored + dropped = {total}"), || {
            let st = self.status();
            let core = &st["cores"][0];
            counts = (
                core["log_stored"].as_u64().unwrap_or(0),
                core["log_dropped"].as_u64().unwrap_or(0),
            );
            counts.0 + counts.1 == total
        });
        counts
    }

    /// Waits until the store holds `n` records of `kind`, and returns them.
    pub fn wait_for_records(&self, kind: &str, n: usize) -> Vec<serde_json::Value> {
        let mut rows = Vec::new();
        eventually(&format!("{n} {kind} records in the store"), || {
            rows = self.export(&["--kind", kind]);
            rows.len() >= n
        });
        rows
    }
}

impl Env {
    /// Runs a `controld` command that needs no socket (compile, validate).
    pub fn cli_offline(&self, args: &[&str]) -> std::process::Output {
        Command::new(controld_bin())
            .args(args)
            .output()
            .expect("run controld")
    }
}

/// The Content-Length of a parsed head (0 when absent or malformed).
pub fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

impl Env {
    /// Issues a certificate per app (`<dir>/<app>.pem` and `.key`) for
    /// its `<domain>.proxy.test` names from the CA in `ca/` (made first
    /// when missing).
    pub fn app_certificates(&self, dir: &str, apps: &[(&str, &str)]) {
        use palisade_controld::certs;
        use palisade_schema::policy::DnsName;
        if !self.path("ca/ca.pem").exists() {
            certs::make_ca(&self.path("ca"), "test CA", 30).expect("ca");
        }
        let names = certs::AppNames {
            suffix: DnsName::parse("proxy.test").expect("suffix"),
            apps: apps
                .iter()
                .map(|(name, domain)| {
                    (
                        name.to_string(),
                        vec![DnsName::parse(domain).expect("domain")],
                    )
                })
                .collect(),
        };
        certs::issue_app_certificates(
            &names,
            &self.path("ca/ca.pem"),
            &self.path("ca/ca.key"),
            &self.path(dir),
            30,
        )
        .expect("app certificates");
    }
}

/// Client threads looping until stopped, each pushing what it completed
/// (the loop body is the test's: keep-alive or not, strict or not).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What one client thread of a [`Load`] gets: its index, the stop flag
/// to poll and where to push each completed request.
pub struct Client {
    pub index: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Client {
    pub fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn completed(&self, what: String) {
        self.done.lock().expect("lock").push(what);
    }
}

impl Load {
    /// Starts `clients` threads running `client`.
    pub fn start(clients: usize, client: impl Fn(Client) + Clone + Send + 'static) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|index| {
                let c = Client {
                    index,
                    stop: stop.clone(),
                    done: done.clone(),
                };
                let client = client.clone();
                std::thread::spawn(move || client(c))
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    pub fn completed(&self) -> usize {
        self.done.lock().expect("lock").len()
    }

    pub fn wait_for(&self, n: usize) {
        eventually(&format!("{n} requests completed"), || self.completed() >= n);
    }

    /// Stops the clients; what they completed, in order of completion.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("client thread");
        }
        let done = self.done.lock().expect("lock");
        done.clone()
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in
/// `dir`: ca.pem, cert.pem, key.pem.
pub fn loopback_certificate(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "loopback test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
}
