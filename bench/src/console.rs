//! `bench console`: how fast the admin console's pages come back with a
//! large store, timed from the HTTP client. Fills a store through the real
//! ingest path (a connection acting as a data-plane core), then starts
//! `controld serve --console`, signs in with a bootstrap token and times
//! each page whole (request sent to last body byte, TLS connection kept):
//! the overview and its chart (whose aggregates the console reuses for a
//! short while: the first load is the uncached one), the activity log's
//! first page, the log filtered to one user over one day, and the traffic
//! report by app over the last day and over every day.

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_schema::logrec::{ip_bytes, Action, BatchBuilder, Field, Record};
use zerocopy::little_endian::{U16, U32, U64};

use crate::fleet::{median, scratch, LoneControld};
use crate::log_ingest::{batch_frame, produce};
use crate::procs::sibling;

const USERS: usize = 5_000;
const APPS: usize = 40;
/// Records spread over this many days before now.
const DAYS: u64 = 10;
const BATCH: usize = 4096;

/// A batch of varied records: `USERS` users, `APPS` apps, one in 97
/// blocked, times `step_us` apart from `first_us`.
fn batch(first_n: usize, n: usize, first_us: u64, step_us: u64) -> BatchBuilder {
    let mut b = BatchBuilder::with_capacity(n, n * 200);
    for i in first_n..first_n + n {
        let blocked = i % 97 == 0;
        let mut r = Record {
            time_unix_us: U64::new(first_us + i as u64 * step_us),
            request_id: U64::new(i as u64),
            bytes_up: U64::new(600),
            bytes_down: U64::new(18_000),
            duration_us: U32::new(2_000),
            client_ip: ip_bytes(std::net::IpAddr::from([10, 0, (i % 250) as u8, 7])),
            client_port: U16::new(40_000),
            status: U16::new(if blocked { 403 } else { 200 }),
            action: if blocked {
                Action::Block
            } else {
                Action::Allow
            } as u8,
            tls: 1,
            ..Record::default()
        };
        let s = &mut r.strings;
        s[Field::App as usize] = b.string(format!("app{}", i % APPS).as_bytes());
        s[Field::Host as usize] = b.string(b"app.example.proxy.test");
        s[Field::Method as usize] = b.string(b"GET");
        s[Field::Url as usize] = b.string(format!("https://app.example/item/{i}").as_bytes());
        s[Field::User as usize] = b.string(format!("user{}@corp.example", i % USERS).as_bytes());
        b.push(&r);
    }
    b
}

/// An HTTPS client for a console on loopback: it accepts the console's
/// self-signed certificate, follows no redirect (sign-in answers are
/// looked at) and treats every status as an answer.
pub fn console_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// `bench console`.
pub fn run(records: usize, rounds: usize) -> Result<String, String> {
    let controld = sibling("controld")?;
    let work = scratch("console")?;
    let dir = &work.0;
    let node = LoneControld::new(dir)?;
    let (socket, state) = (&node.socket, &node.state);
    let serve = |extra: &[&str]| node.serve(extra);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let span_us = DAYS * 86_400_000_000;
    let first_us = now_us - span_us;
    let step_us = (span_us / records as u64).max(1);
    let filled = Instant::now();
    {
        let (_filler, _) = serve(&[])?;
        // A few hundred batches per connection keeps memory bounded.
        let mut seq = 0u64;
        let mut n = 0;
        while n < records {
            let frames: Vec<Vec<u8>> = (0..256)
                .take_while(|k| n + k * BATCH < records)
                .map(|k| {
                    let start = n + k * BATCH;
                    let count = BATCH.min(records - start);
                    seq += 1;
                    batch_frame(1 << 61, seq, &batch(start, count, first_us, step_us))
                })
                .collect();
            n = (n + frames.len() * BATCH).min(records);
            produce(socket, 0, &frames)?;
        }
    }
    let fill_secs = filled.elapsed().as_secs_f64();

    let (_console, line) = serve(&["--console", "127.0.0.1:0"])?;
    let addr = line
        .split("console on https://")
        .nth(1)
        .map(|a| a.trim().trim_end_matches('/').to_string())
        .ok_or_else(|| format!("no console address in {line:?}"))?;
    let token = Command::new(&controld)
        .args(["console-token", "--state-dir"])
        .arg(state)
        .output()
        .map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let agent = console_agent();
    let signed = agent
        .post(&format!("https://{addr}/signin/token"))
        .send_form([("token", token.as_str())])
        .map_err(|e| e.to_string())?;
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or("the bootstrap sign-in set no cookie")?
        .to_string();
    // Unix seconds: the console takes them as times.
    let day_from = (now_us - 3 * 86_400_000_000) / 1_000_000;
    let day_to = (now_us - 2 * 86_400_000_000) / 1_000_000;
    let pages = [
        (
            "overview (cores, top lists of the last day)",
            "/".to_string(),
        ),
        (
            "overview chart, last week",
            "/overview/series?range=week".to_string(),
        ),
        ("activity log, first page", "/log".to_string()),
        (
            "activity log, one user over one day",
            format!("/log?user=user42%40corp.example&from={day_from}&to={day_to}"),
        ),
        (
            "traffic report by app, last day",
            "/report?from=-1d&by=app".to_string(),
        ),
        (
            "traffic report by app, all 10 days",
            "/report?from=-11d&by=app".to_string(),
        ),
    ];
    let mut out = format!(
        "{records} records over {DAYS} days stored in {fill_secs:.1} s; each page timed {rounds} times from the HTTP client (TLS connection kept)\n"
    );
    for (name, path) in pages {
        let mut ms = Vec::new();
        let mut rows = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let mut resp = agent
                .get(&format!("https://{addr}{path}"))
                .header("cookie", &cookie)
                .call()
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("{path}: {status}"));
            }
            rows = body.matches("<tr").count().saturating_sub(1);
        }
        out.push_str(&format!(
            "{name} ({path}): median {:.1} ms, first {:.1} ms, {rows} table rows (samples {:?})\n",
            median(ms.clone()),
            ms[0],
            ms.iter()
                .map(|m| (m * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        ));
    }
    Ok(out)
}
