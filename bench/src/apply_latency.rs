//! `bench apply-latency`: how long a large policy takes from `controld
//! apply` to acks from every data-plane core, end to end with real
//! processes.
//!
//! Starts `controld serve` and a data plane (binaries next to this one),
//! generates two large policies that differ in their upstream, applies them
//! alternately, and reports medians of: the `controld apply` command's wall
//! time (CLI start to exit), controld's compile time (read, parse, validate,
//! encode, fsync), and push-to-last-ack time (snapshot sent to every core,
//! each core decodes, compiles, swaps and acks).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::procs::{sibling, spawn_ready};
use std::time::{Duration, Instant};

/// Settings for one run.
pub struct ApplyLatency {
    pub apps: usize,
    pub ip_ranges: usize,
    pub cores: usize,
    pub rounds: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the measurement and returns a report.
pub fn run(cfg: &ApplyLatency) -> Result<String, String> {
    let controld = sibling("controld")?;
    let dataplane = sibling("dataplane")?;
    let dir = std::env::temp_dir().join(format!("palisade-apply-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = measure(cfg, &controld, &dataplane, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(
    cfg: &ApplyLatency,
    controld: &Path,
    dataplane: &Path,
    dir: &Path,
) -> Result<String, String> {
    let policies: Vec<PathBuf> = (0..2)
        .map(|i| {
            let path = dir.join(format!("large{i}.toml"));
            let text = crate::policies::large_policy_toml(
                cfg.apps,
                cfg.ip_ranges,
                &format!("http://127.0.0.1:{}", 18_000 + i),
            );
            std::fs::write(&path, text).map(|_| path)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let socket = dir.join("control.sock");
    let (_daemon, _) = spawn_ready(
        Command::new(controld)
            .arg("serve")
            .arg("--policy")
            .arg(&policies[0])
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state")),
    )?;
    let (_dp, _) = spawn_ready(
        Command::new(dataplane)
            .args(["--listen", "127.0.0.1:0", "--cores", &cfg.cores.to_string()])
            .arg("--control")
            .arg(&socket),
    )?;

    // Wait until every core holds the initial version.
    let start = Instant::now();
    loop {
        let out = Command::new(controld)
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.matches("\"version\": 1").count() == cfg.cores {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("data plane cores did not take the initial snapshot".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (mut wall, mut compile, mut push) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cfg.rounds {
        let policy = &policies[(round + 1) % 2];
        let t0 = Instant::now();
        let out = Command::new(controld)
            .arg("apply")
            .arg(policy)
            .args(["--json", "--socket"])
            .arg(&socket)
            .output()
            .map_err(|e| e.to_string())?;
        let elapsed = t0.elapsed();
        if !out.status.success() {
            return Err(format!(
                "apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> Result<f64, String> {
            text.split(&format!("\"{name}\": "))
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<f64>().ok())
                .ok_or_else(|| format!("no {name} in {text}"))
        };
        if text.matches("\"ok\": true").count() != cfg.cores {
            return Err(format!("not every core acked: {text}"));
        }
        wall.push(elapsed.as_secs_f64() * 1000.0);
        compile.push(field("compile_micros")? / 1000.0);
        push.push(field("push_micros")? / 1000.0);
    }
    Ok(format!(
        "{} apps, {} IP ranges, {} cores, {} applies (medians):\n  push to last ack: {:.1} ms\n  controld compile + store: {:.1} ms\n  `controld apply` wall time: {:.1} ms\n  push samples (ms): {:?}",
        cfg.apps,
        cfg.ip_ranges,
        cfg.cores,
        cfg.rounds,
        median(push.clone()),
        median(compile),
        median(wall),
        push.iter().map(|p| (p * 10.0).round() / 10.0).collect::<Vec<_>>()
    ))
}
