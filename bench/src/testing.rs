//! What every test harness in the workspace shares: polling with a
//! deadline instead of sleeping, and reading header fields off a parsed
//! message. The data plane's and controld's test support modules and the
//! origin's [`Request`](crate::origin::Request) use these.

use std::time::{Duration, Instant};

/// Polls `cond` every `every` until it holds; panics naming `what` when
/// `deadline` passes first. Never asserts on timing: under load the
/// deadline only decides how long a real failure takes to report.
pub fn eventually_within(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(every);
    }
    panic!("timed out after {deadline:?} waiting for: {what}");
}

/// Runs a command a test depends on and insists it succeeded.
pub trait RunOk {
    /// The command's output; panics naming `what`, with the exit status and
    /// stderr, when it cannot start or exits unsuccessfully.
    fn ran_ok(&mut self, what: &str) -> std::process::Output;
}

impl RunOk for std::process::Command {
    fn ran_ok(&mut self, what: &str) -> std::process::Output {
        let out = self
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Header fields as a list of (name, value), looked up case-insensitively
/// (RFC 9110 §5.1).
pub trait HeaderFields {
    fn fields(&self) -> &[(String, String)];

    /// The first value of `name`.
    fn header(&self, name: &str) -> Option<&str> {
        self.fields()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.fields()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl HeaderFields for [(String, String)] {
    fn fields(&self) -> &[(String, String)] {
        self
    }
}

impl HeaderFields for Vec<(String, String)> {
    fn fields(&self) -> &[(String, String)] {
        self
    }
}

/// Starts `command` with its stdout piped and returns the child with the
/// address its first line announces (`… http://ADDR …`), as `bench origin`
/// and `bench floor` do once they accept connections.
pub fn spawn_announcing(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the announcing line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_whatever_their_case() {
        let h = vec![
            ("Set-Cookie".to_string(), "a=1".to_string()),
            ("content-type".to_string(), "text/html".to_string()),
            ("set-cookie".to_string(), "b=2".to_string()),
        ];
        assert_eq!(h.header("Content-Type"), Some("text/html"));
        assert_eq!(h.header("SET-COOKIE"), Some("a=1"));
        assert_eq!(h.headers_named("set-cookie"), ["a=1", "b=2"]);
        assert_eq!(h.header("location"), None);
    }

    #[test]
    fn eventually_returns_once_the_condition_holds() {
        let mut n = 0;
        eventually_within(
            "three polls",
            Duration::from_secs(10),
            Duration::ZERO,
            || {
                n += 1;
                n == 3
            },
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn ran_ok_returns_the_output_of_a_successful_command() {
        let out = std::process::Command::new("sh")
            .args(["-c", "echo hi"])
            .ran_ok("sh");
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    #[should_panic(expected = "sh failed")]
    fn ran_ok_names_a_failed_command() {
        std::process::Command::new("sh")
            .args(["-c", "echo oops >&2; exit 3"])
            .ran_ok("sh");
    }

    #[test]
    #[should_panic(expected = "waiting for: never")]
    fn eventually_names_what_never_happened() {
        eventually_within("never", Duration::from_millis(1), Duration::ZERO, || false);
    }
}
