//! `bench scenario page-load`: how long the SaaS demo app's first page
//! takes to load in headless Chromium through the proxy, against the same
//! app served directly, in one run.
//!
//! Two instances of the app (`saas`, domain `saas.test`): one on HTTPS
//! that a "direct" browser reaches as `https://app.saas.test` (its
//! resolver maps `*.saas.test` there), and one on plain HTTP behind a
//! 1-core data plane on HTTPS that a "proxied" browser reaches as
//! `https://app.saas.test.proxy.test`. The proxy rewrites the page,
//! injects and serves the client instrumentation, and relays the
//! WebSocket; there is no sign-in (the session cookie check it would add
//! is a lookup in the connection's cache) and no session policy.
//!
//! Each browser keeps its connections (as a user's browser does between
//! pages); the loads run once with the cache disabled (every resource
//! fetched again, the client script included) and once with it enabled
//! (the client script is cached: it is immutable per snapshot version;
//! the app's own resources carry no cache headers and are fetched again).
//! Loads alternate between the two, after warm-up loads; for each it reads the page's navigation
//! timing (`loadEventEnd`: the document and every subresource it names)
//! and the moment the app's script says it is ready (`acmeReadyAt`: its
//! config fetched, its API called by fetch and XHR, its WebSocket echoed).
//! Reports medians and 90th percentiles in milliseconds, and the ratios.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, Launch};
use crate::origin::{Origin, OriginConfig};
use crate::procs::{sibling, spawn_ready, Killed};

/// One load's timings, milliseconds from navigation start.
#[derive(Clone, Copy)]
struct Timing {
    load: f64,
    ready: f64,
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The CA, the app's certificate and the policy of the proxied app.
fn prepare(dir: &Path, upstream: std::net::SocketAddr) -> Result<std::path::PathBuf, String> {
    let controld = sibling("controld")?;
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"saas\"\ndomains = [\"saas.test\"]\nupstream = \"http://{upstream}\"\ntls_cert = \"certs/saas.pem\"\ntls_key = \"certs/saas.key\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    run(
        Command::new(&controld)
            .args(["certs", "ca", "--out"])
            .arg(dir.join("ca")),
        "controld certs ca",
    )?;
    run(
        Command::new(&controld)
            .args(["certs", "issue"])
            .arg(&policy)
            .arg("--ca")
            .arg(dir.join("ca/ca.pem"))
            .arg("--ca-key")
            .arg(dir.join("ca/ca.key"))
            .arg("--out")
            .arg(dir.join("certs")),
        "controld certs issue",
    )?;
    let snapshot = dir.join("policy.snap");
    run(
        Command::new(&controld)
            .arg("compile")
            .arg(&policy)
            .arg("-o")
            .arg(&snapshot),
        "controld compile",
    )?;
    Ok(snapshot)
}

fn origin(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Result<Origin, String> {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        handler: crate::saas::saas_app("saas.test"),
        tls,
        split_writes: false,
        record: false,
    })
    .map_err(|e| format!("origin: {e}"))
}

fn browser(dir: &Path, rules: &str) -> Result<Browser, String> {
    Browser::launch(&Launch {
        host_resolver_rules: rules,
        dir,
        ignore_certificate_errors: true,
    })
}

/// Loads `url` and reads its timings once the app's script is ready.
fn load(b: &mut Browser, url: &str) -> Result<Timing, String> {
    b.navigate(url)?;
    b.wait_until(
        "window.acmeReadyAt !== undefined || document.getElementById('status').textContent.startsWith('error')",
        Duration::from_secs(30),
    )?;
    let v = b.eval(
        "(() => { const n = performance.getEntriesByType('navigation')[0]; return [n.loadEventEnd, window.acmeReadyAt === undefined ? -1 : window.acmeReadyAt]; })()",
    )?;
    let (load, ready) = (v[0].as_f64(), v[1].as_f64());
    match (load, ready) {
        (Some(load), Some(ready)) if ready >= 0.0 => Ok(Timing { load, ready }),
        _ => Err(format!("{url}: the app's script failed ({v})")),
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let at = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(at).copied().unwrap_or(0.0)
}

/// Runs the scenario: `rounds` measured loads of each, after 3 warm-up
/// loads of each.
pub fn page_load(rounds: usize) -> Result<String, String> {
    let dir = tempdir()?;
    let result = measure(&dir, rounds.max(1));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("palisade-page-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn measure(dir: &Path, rounds: usize) -> Result<String, String> {
    if !crate::browser::chromium_binary().exists() {
        return Err(format!(
            "{} is missing (Debian: apt-get install chromium)",
            crate::browser::chromium_binary().display()
        ));
    }
    let behind = origin(None)?;
    let snapshot = prepare(dir, behind.addr())?;
    let tls = crate::tls::server_config_from_files(
        &dir.join("certs/saas.pem"),
        &dir.join("certs/saas.key"),
    )?;
    let direct_origin = origin(Some(tls))?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (dataplane, line): (Killed, String) = spawn_ready(
        Command::new(sibling("dataplane")?)
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .args(["--cores", "1", "--cpus", &(cpus - 1).to_string()])
            .arg("--snapshot")
            .arg(&snapshot),
    )?;
    let tls_addr: std::net::SocketAddr = line
        .split("https on ")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("the data plane did not report its TLS address: {line:?}"))?;
    let (direct_dir, proxied_dir) = (dir.join("direct"), dir.join("proxied"));
    let mut direct = browser(
        &direct_dir,
        &format!("MAP *.saas.test 127.0.0.1:{}", direct_origin.addr().port()),
    )?;
    let mut proxied = browser(
        &proxied_dir,
        &format!("MAP *.proxy.test 127.0.0.1:{}", tls_addr.port()),
    )?;
    let mut report = format!(
        "page-load: the SaaS demo app's first page in headless Chromium, {rounds} loads each after 3 warm-up loads, connections kept, milliseconds\n\n| cache | | load event p50 | p90 | app ready p50 | p90 |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
    );
    let mut ratios = String::new();
    for (cache, disabled) in [("disabled", true), ("enabled", false)] {
        for b in [&mut direct, &mut proxied] {
            b.call(
                "Network.setCacheDisabled",
                json!({ "cacheDisabled": disabled }),
            )?;
        }
        let (d, p) = alternate(&mut direct, &mut proxied, rounds)?;
        let mut medians = Vec::new();
        for (name, v) in [("direct", &d), ("through Palisade", &p)] {
            let load: Vec<f64> = v.iter().map(|t| t.load).collect();
            let ready: Vec<f64> = v.iter().map(|t| t.ready).collect();
            let (l50, r50) = (
                percentile(load.clone(), 0.5),
                percentile(ready.clone(), 0.5),
            );
            report.push_str(&format!(
                "| {cache} | {name} | {l50:.1} | {:.1} | {r50:.1} | {:.1} |\n",
                percentile(load, 0.9),
                percentile(ready, 0.9)
            ));
            medians.push((l50, r50));
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        ratios.push_str(&format!(
            "\ncache {cache}: through Palisade / direct (medians): load event {:.2}×, app ready {:.2}×",
            ratio(medians[1].0, medians[0].0),
            ratio(medians[1].1, medians[0].1)
        ));
    }
    drop(dataplane);
    report.push_str(&ratios);
    Ok(report)
}

/// Warm-up loads, then `rounds` loads of each, alternating which goes
/// first so neither always follows the other.
fn alternate(
    direct: &mut Browser,
    proxied: &mut Browser,
    rounds: usize,
) -> Result<(Vec<Timing>, Vec<Timing>), String> {
    const DIRECT: &str = "https://app.saas.test/";
    const PROXIED: &str = "https://app.saas.test.proxy.test/";
    for _ in 0..3 {
        load(direct, DIRECT)?;
        load(proxied, PROXIED)?;
    }
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            d.push(load(direct, DIRECT)?);
            p.push(load(proxied, PROXIED)?);
        } else {
            p.push(load(proxied, PROXIED)?);
            d.push(load(direct, DIRECT)?);
        }
    }
    Ok((d, p))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(v.clone(), 0.5), 6.0);
        assert_eq!(percentile(v.clone(), 0.9), 9.0);
        assert_eq!(percentile(vec![3.0], 0.9), 3.0);
    }
}
