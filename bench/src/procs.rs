//! Child processes for measurements: the workspace binaries next to this
//! one, killed when dropped, started after their first stdout line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

/// A workspace binary built next to the running one.
pub fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build the workspace first (cargo build --release)",
            path.display()
        ))
    }
}

/// Spawns `cmd` with stdout piped and waits for its first line (the
/// binaries print one when ready).
pub fn spawn_ready(cmd: &mut Command) -> Result<(Killed, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
    }
    Ok((Killed(child), line))
}

/// The listening address a `dataplane` prints in its ready line.
pub fn dataplane_addr(line: &str) -> Result<std::net::SocketAddr, String> {
    line.split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("dataplane did not start: {line:?}"))
}
