//! controld as systemd runs it (`Type=notify`, stderr connected to the
//! journal): it reports readiness on `$NOTIFY_SOCKET` once it serves, and
//! its log lines go to the journal's native socket as structured entries
//! (`MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `PALISADE_*`) instead of
//! stderr. The two sockets are datagram sockets the test binds, standing in
//! for systemd and journald (which are not running in the test machine).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use support::*;

/// A native-protocol journal entry's fields (no binary values are sent
/// for these lines).
fn fields(datagram: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `controld serve` whose alert file's directory does not exist: the
/// delivery thread logs an error as it starts. Its journal socket is the
/// env's `journal.sock`, its stderr `stderr`.
fn serve_logging_an_error(env: &Env, stderr: std::fs::File) -> Command {
    let policy = env.policy("p.toml", "127.0.0.1:9".parse().unwrap(), "");
    let mut cmd = Command::new(controld_bin());
    cmd.args(["serve", "--policy"])
        .arg(&policy)
        .arg("--socket")
        .arg(env.socket())
        .arg("--state-dir")
        .arg(env.path("state"))
        .arg("--alert-file")
        .arg(env.path("missing/alerts.jsonl"))
        .env("PALISADE_JOURNAL_SOCKET", env.path("journal.sock"))
        .stdout(Stdio::null())
        .stderr(stderr);
    cmd
}

#[test]
fn readiness_goes_to_notify_socket_and_log_lines_to_the_journal_with_fields() {
    let env = Env::new();
    let notify = UnixDatagram::bind(env.path("notify.sock")).expect("notify socket");
    let journal = UnixDatagram::bind(env.path("journal.sock")).expect("journal socket");
    for s in [&notify, &journal] {
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    }
    let stderr_path = env.path("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let meta = stderr.metadata().expect("stat");
    let mut child = serve_logging_an_error(&env, stderr)
        .env("NOTIFY_SOCKET", env.path("notify.sock"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .spawn()
        .expect("start controld");
    let mut buf = vec![0u8; 65536];
    let n = notify.recv(&mut buf).expect("READY=1 within the deadline");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(env.socket().exists(), "ready means the socket is there");
    let n = journal.recv(&mut buf).expect("a journal entry");
    let entry = fields(&buf[..n]);
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "palisade-controld", "{entry:?}");
    assert_eq!(entry["PRIORITY"], "3", "an error: {entry:?}");
    assert_eq!(entry["PALISADE_ALERT_SINK"], "file", "{entry:?}");
    assert!(
        entry["MESSAGE"].starts_with("controld: alert file "),
        "{entry:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        !text.contains("alert file"),
        "went to the journal, not stderr: {text}"
    );
}

#[test]
fn a_journal_stream_that_is_not_stderr_leaves_lines_on_stderr() {
    let env = Env::new();
    let journal = UnixDatagram::bind(env.path("journal.sock")).expect("journal socket");
    journal.set_nonblocking(true).expect("nonblocking");
    let stderr_path = env.path("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    // Inherited from a parent whose stderr was the journal.
    let mut child = serve_logging_an_error(&env, stderr)
        .env("JOURNAL_STREAM", "1:1")
        .spawn()
        .expect("start controld");
    eventually("the line on stderr", || {
        std::fs::read_to_string(&stderr_path).is_ok_and(|t| t.contains("controld: alert file "))
    });
    let _ = child.kill();
    let _ = child.wait();
    let mut buf = [0u8; 1024];
    assert!(
        journal.recv(&mut buf).is_err(),
        "nothing sent to the journal"
    );
}
