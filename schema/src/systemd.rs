//! Running as a systemd service: readiness notification and structured
//! logging to the journal. Both daemons use it; outside systemd both are
//! no-ops (lines go to stderr as before).
//!
//! * [`notify_ready`] sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify(3)),
//!   so a `Type=notify` unit is "started" only once the daemon serves:
//!   `palisade-dataplane.service` orders itself after a controld that
//!   really listens.
//! * [`log`] writes a line. When stderr is the journal (systemd sets
//!   `$JOURNAL_STREAM` to its device and inode, systemd.exec(5)) the line
//!   goes over the journal's native protocol instead, with `PRIORITY`,
//!   `SYSLOG_IDENTIFIER` and `PALISADE_*` fields an operator can filter on
//!   (`journalctl PALISADE_SIEM_DESTINATION=…`). Any failure there falls
//!   back to stderr: a log line is never lost to the journal being away.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::OnceLock;

/// syslog(3) priorities the journal's `PRIORITY` field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// Where the journal's native socket is (systemd-journald.service(8)).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The journal socket to log to, when stderr is connected to the journal.
fn journal() -> Option<&'static (UnixDatagram, String)> {
    static JOURNAL: OnceLock<Option<(UnixDatagram, String)>> = OnceLock::new();
    JOURNAL
        .get_or_init(|| {
            let stream = std::env::var("JOURNAL_STREAM").ok()?;
            if !stderr_is(&stream) {
                return None;
            }
            let path = std::env::var("PALISADE_JOURNAL_SOCKET")
                .unwrap_or_else(|_| JOURNAL_SOCKET.to_string());
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, path))
        })
        .as_ref()
}

/// Whether stderr is the `DEVICE:INODE` systemd put in `$JOURNAL_STREAM`
/// (a child that inherited the variable but not the stream must not use
/// it).
fn stderr_is(stream: &str) -> bool {
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat fills the struct for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

/// Logs one line as `identifier` (`palisade-controld`,
/// `palisade-dataplane`) with extra `fields` (names in upper case,
/// `PALISADE_` first).
pub fn log(identifier: &str, priority: Priority, message: &str, fields: &[(&str, &str)]) {
    if let Some((socket, path)) = journal() {
        let entry = entry(identifier, priority, message, fields);
        if socket.send_to(&entry, path).is_ok() {
            return;
        }
    }
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// A journal entry in the native protocol: `KEY=value\n` per field, or,
/// for a value with a line break, `KEY\n`, its length as a little-endian
/// u64, the value and `\n`.
pub fn entry(
    identifier: &str,
    priority: Priority,
    message: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 128);
    let mut field = |key: &str, value: &str| {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    };
    field("MESSAGE", message);
    field("PRIORITY", &(priority as u8).to_string());
    field("SYSLOG_IDENTIFIER", identifier);
    for (key, value) in fields {
        field(key, value);
    }
    out
}

/// Tells systemd the service is ready (`READY=1`), when it asked
/// (`$NOTIFY_SOCKET`, a path or `@abstract` name). Errors are ignored: a
/// unit that is not `Type=notify` does not listen.
pub fn notify_ready() {
    let Ok(target) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let _ = notify(&target, "READY=1");
}

fn notify(target: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), Path::new(target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_use_the_binary_form_only_for_values_with_line_breaks() {
        let e = entry(
            "palisade-controld",
            Priority::Warning,
            "controld: siem x: down",
            &[("PALISADE_NOTE", "a\nb")],
        );
        let mut expected = b"MESSAGE=controld: siem x: down\nPRIORITY=4\nSYSLOG_IDENTIFIER=palisade-controld\nPALISADE_NOTE\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\n");
        assert_eq!(e, expected);
    }

    #[test]
    fn readiness_reaches_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("palisade-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify(&format!("@{name}"), "READY=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_journal_stream_that_is_not_our_stderr_is_ignored() {
        assert!(!stderr_is("0:0"));
        assert!(!stderr_is("garbage"));
    }
}
