//! Starting within RLIMIT_MEMLOCK, as a user without CAP_IPC_LOCK (the
//! packaged unit runs as `palisade`). The kernel charges each core's
//! io_uring rings and registered io memory to the limit, counted across
//! all of the user's processes; a run restarted at once can find its
//! previous run's rings still charged (they are freed later, by a kernel
//! worker). A core that finds the memory taken waits for it; a run whose
//! own need cannot fit fails at once, naming the limit.
//!
//! Run as root, the data planes run as a user id of their own (no other
//! process charges it); otherwise as the test's own user.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use support::*;

/// The scenarios share the user's count when not run as root.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long a core may wait for a released ring before the test fails
/// (the data plane itself waits up to 30 s).
const RELEASE_DEADLINE: Duration = Duration::from_secs(25);

/// A data plane started as `uid` with RLIMIT_MEMLOCK `limit_kib`, its
/// stdout lines arriving on `lines` and its stderr in `dir/stderr-<name>`.
struct Limited {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::path::PathBuf,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Limited {
    fn start(dir: &Path, name: &str, uid: Option<u32>, limit_kib: u64, cores: usize) -> Limited {
        let stderr = dir.join(format!("stderr-{name}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_dataplane"));
        command
            .arg("--snapshot")
            .arg(dir.join("policy.snap"))
            .args(["--listen", "127.0.0.1:0", "--cores", &cores.to_string()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        let limit = libc::rlimit {
            rlim_cur: limit_kib << 10,
            rlim_max: limit_kib << 10,
        };
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn dataplane");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Limited {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The "listening on ADDR" line's address, within `deadline`.
    fn ready(&self, deadline: Duration) -> std::net::SocketAddr {
        let line = self
            .lines
            .recv_timeout(deadline)
            .unwrap_or_else(|_| panic!("the data plane did not start; stderr:\n{}", self.stderr()));
        line.split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

/// The user id the data planes run as: one of `base`'s own when the test
/// is root, else the test's own.
fn run_as(base: u32) -> Option<u32> {
    // SAFETY: geteuid has no memory effects.
    (unsafe { libc::geteuid() } == 0).then_some(base)
}

/// A directory the other user can read, holding the snapshot.
fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let origin_less = policy("http://127.0.0.1:9", "");
    let snap = write_snapshot(dir.path(), &origin_less);
    std::fs::set_permissions(snap, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    dir
}

#[test]
fn a_core_waits_for_locked_memory_another_process_holds_then_serves() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = shared_dir();
    let uid = run_as(64_531);
    // 2 MiB for the user. A two-core run needs ~1.25 MiB (two main rings
    // of 404 KiB, four small ones of 16, and 3 × 64 KiB of io memory per
    // core), so it fits alone but not beside another.
    let holder = Limited::start(dir.path(), "holder", uid, 2048, 2);
    holder.ready(DEADLINE);
    let waiting = Limited::start(dir.path(), "waiting", uid, 2048, 2);
    eventually("the second run to say it waits for locked memory", || {
        waiting.stderr().contains("waiting up to 30 s")
    });
    assert!(
        waiting.lines.try_recv().is_err(),
        "the second run said it listens while one of its cores waits"
    );
    drop(holder);
    let addr = waiting.ready(RELEASE_DEADLINE);
    // It serves: a host no app has gets the 404 page.
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    std::io::Write::write_all(&mut stream, &get("nowhere.test.proxy.test", "/")).expect("write");
    assert_eq!(Reader::new(&mut stream).response(false).status, 404);
}

#[test]
fn a_run_that_cannot_fit_the_limit_fails_at_once_naming_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = shared_dir();
    // Three cores' rings alone (3 × 436 KiB) are over 1 MiB.
    let mut run = Limited::start(dir.path(), "over", run_as(64_532), 1024, 3);
    let mut status = None;
    eventually("the run to exit", || {
        status = run.child.try_wait().expect("wait");
        status.is_some()
    });
    assert!(!status.unwrap().success(), "it exited successfully");
    let stderr = run.stderr();
    assert!(
        stderr.contains("RLIMIT_MEMLOCK is 1024 KiB") && stderr.contains("needs ~628 KiB"),
        "{stderr}"
    );
    assert!(!stderr.contains("waiting"), "it waited: {stderr}");
}
