//! The admin console in a real browser: headless Chromium signs in through
//! the test identity provider as an admin and walks every page — the
//! overview with both cores, the activity log filtered down to a request
//! made through the proxy a moment before, its record, live tail, the
//! traffic report, an export of 100,000 records (progress, download,
//! compared byte for byte with `controld logs export`), an alert and its
//! record, a policy edit with an error shown at its line, an apply both
//! cores acknowledge and a rollback. A viewer, in a browser of its own,
//! is refused (403) when it posts an apply or an export, and nothing
//! changes. Screenshots of each page go to `target/console/`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use palisade_bench::browser::{Browser, Launch};
use support::console::{console_policy_with, fill_store, Console};
use support::signin::start_idp;
use support::{eventually, named_origin, Env};

const EXPORT_ROWS: usize = 100_000;
const WAIT: Duration = Duration::from_secs(60);

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// One plain GET through the proxy to the `demo` app.
fn through_proxy(proxy: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(proxy).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: demo.test.proxy.test\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn step(b: &mut Browser, what: &str, f: impl FnOnce(&mut Browser) -> Result<(), String>) {
    if let Err(e) = f(b) {
        let shot = shots().join("failure.png");
        let _ = b.screenshot(&shot);
        panic!("{what}: {e} (screenshot: {})", shot.display());
    }
}

fn open(b: &mut Browser, url: &str, ready: &str) -> Result<(), String> {
    b.navigate(url)?;
    b.wait_until(ready, WAIT)
}

/// Signs in through the provider's form as `user` in `groups`.
fn sign_in(b: &mut Browser, console: &Console, user: &str, groups: &str) {
    step(b, &format!("{user}: the provider's form"), |b| {
        open(
            b,
            &console.url("/signin"),
            "!!document.getElementById('signin-oidc')",
        )?;
        b.eval("document.getElementById('signin-oidc').click(); true")?;
        b.wait_until("!!document.querySelector('input[name=username]')", WAIT)
    });
    step(b, &format!("{user} signs in"), |b| {
        b.eval(&format!(
            "document.querySelector('input[name=username]').value = '{user}'; document.querySelector('input[name=groups]').value = '{groups}'; document.forms[0].submit(); true"
        ))?;
        b.wait_until(
            &format!("location.pathname === '/' && document.getElementById('user')?.textContent === '{user}'"),
            WAIT,
        )
    });
}

#[test]
fn an_admin_walks_every_console_page_and_a_viewer_changes_nothing() {
    let env = Env::new();
    // The records to export: 100,000 over about 17 minutes two hours ago.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let first_us = (now_us - 2 * 3_600_000_000) / 1_000_000 * 1_000_000;
    let step_us = 10_000;
    fill_store(&env.path("state"), EXPORT_ROWS, first_us, step_us);
    let from = palisade_controld::alerts::rfc3339(first_us as i64);
    let to = palisade_controld::alerts::rfc3339(
        (first_us + EXPORT_ROWS as u64 * step_us) as i64 + 1_000_000,
    );

    let origin = named_origin("console-browser");
    let idp = start_idp();
    let policy = console_policy_with(
        &env,
        origin.addr(),
        &idp,
        "login = false\n",
        "\n[[activity_policy]]\nname = \"secret pages\"\nurl_contains = \"/secret\"\nalert = { severity = \"high\" }\n",
    );
    let controld = env.controld(&policy, &["--console", "127.0.0.1:0"]);
    let console = Console::of(&controld.first_line);
    let (_dataplane, proxy) = env.dataplane(2, &[]);
    env.wait_for_cores(2, 1);

    let profile = tempfile::tempdir().expect("profile");
    let mut b = Browser::launch(&Launch {
        host_resolver_rules: "",
        dir: profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");
    let shots = shots();

    step(&mut b, "the sign-in page", |b| {
        open(
            b,
            &console.url("/signin"),
            "!!document.getElementById('signin-oidc')",
        )?;
        b.screenshot(&shots.join("signin.png"))
    });
    sign_in(&mut b, &console, "ada", "admins");

    // Overview: both cores at version 1, the chart drawn.
    step(&mut b, "overview", |b| {
        open(
            b,
            &console.url("/"),
            "document.querySelectorAll('#cores tr').length === 3 && document.getElementById('chart').dataset.drawn === 'hour'",
        )?;
        b.screenshot(&shots.join("overview.png"))
    });
    let versions = b
        .eval("[...document.querySelectorAll('#cores tr td:nth-child(3)')].map(t => t.textContent)")
        .expect("core versions");
    assert_eq!(versions, serde_json::json!(["1", "1"]));
    // The top apps and the day's series count the 100,000 stored records
    // (a third to mail, every 50th blocked) and nothing else yet.
    let apps = b
        .eval("[...document.querySelectorAll('#top-apps tr')].slice(1).map(r => [r.cells[0].textContent, Number(r.cells[1].textContent)])")
        .expect("top apps");
    assert_eq!(
        apps,
        serde_json::json!([["files", 66_666], ["mail", 33_334]])
    );
    let day = b
        .eval("fetch('/overview/series?range=day').then(r => r.json()).then(s => [s.requests.reduce((a, b) => a + b, 0), s.blocked.reduce((a, b) => a + b, 0)])")
        .expect("series");
    assert_eq!(day, serde_json::json!([EXPORT_ROWS, EXPORT_ROWS / 50]));

    // A request through the proxy, then the log filtered down to it.
    let marker = format!("secret-{}", now_us);
    assert_eq!(through_proxy(proxy, &format!("/{marker}")), 200);
    // Only the last minutes: the 100,000 stored records are hours old, and
    // exporting them on every poll takes seconds on a loaded machine.
    eventually("the request stored", || {
        env.export(&["--kind", "traffic", "--from", "-30m"])
            .iter()
            .any(|r| r["url"].as_str().is_some_and(|u| u.contains(&marker)))
    });
    step(&mut b, "the activity log filtered to one record", |b| {
        open(
            b,
            &console.url("/log"),
            "!!document.getElementById('log-filters')",
        )?;
        b.eval(&format!(
            "const f = document.getElementById('log-filters'); f.elements.text.value = '{marker}'; f.elements.kind.value = 'traffic'; f.submit(); true"
        ))?;
        b.wait_until(
            &format!("location.search.includes('{marker}') && document.querySelectorAll('#log-body tr').length === 1"),
            WAIT,
        )?;
        b.screenshot(&shots.join("log.png"))
    });
    let url = b
        .eval("document.querySelector('#log-body tr td.url').textContent")
        .expect("row");
    assert!(
        url.as_str().unwrap_or("").ends_with(&format!("/{marker}")),
        "{url}"
    );
    step(&mut b, "the record", |b| {
        b.eval("document.querySelector('#log-body tr td a').click(); true")?;
        b.wait_until("!!document.getElementById('record')", WAIT)?;
        b.screenshot(&shots.join("record.png"))
    });
    let fields = b
        .eval("Object.fromEntries([...document.querySelectorAll('#record td')].map(t => [t.dataset.field, t.textContent]))")
        .expect("fields");
    assert!(
        fields["url"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!("/{marker}")),
        "{fields}"
    );
    assert_eq!(fields["app"], "demo");
    assert_eq!(fields["status"], "200");

    // Live tail: a request made while the page listens appears in it.
    step(&mut b, "live tail", |b| {
        open(
            b,
            &console.url("/tail"),
            "document.getElementById('tail-state').textContent === 'live'",
        )
    });
    let live = format!("tail-{now_us}");
    assert_eq!(through_proxy(proxy, &format!("/{live}")), 200);
    step(&mut b, "the request in live tail", |b| {
        b.wait_until(
            &format!("[...document.querySelectorAll('#tail-body td')].some(t => t.textContent.includes('{live}'))"),
            WAIT,
        )?;
        b.screenshot(&shots.join("tail.png"))
    });

    // Keyset pages: the next page starts right after the last row.
    step(&mut b, "the log's second page", |b| {
        open(
            b,
            &console.url("/log"),
            "!!document.getElementById('next-page')",
        )?;
        Ok(())
    });
    let first_page = b
        .eval("[...document.querySelectorAll('#log-body tr')].map(r => Number(r.dataset.id))")
        .expect("first page");
    step(&mut b, "older records", |b| {
        b.eval("document.getElementById('next-page').click(); true")?;
        b.wait_until("location.search.includes('after=') && document.querySelectorAll('#log-body tr').length === 50", WAIT)
    });
    let second_page = b
        .eval("[...document.querySelectorAll('#log-body tr')].map(r => Number(r.dataset.id))")
        .expect("second page");
    let ids = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_i64().unwrap())
            .collect()
    };
    let (p1, p2) = (ids(&first_page), ids(&second_page));
    assert_eq!(p1.len(), 50);
    assert!(p2.iter().all(|id| !p1.contains(id)), "pages overlap");

    // The traffic report.
    step(&mut b, "traffic report", |b| {
        open(
            b,
            &console.url("/report?from=-1d&by=app"),
            "!!document.getElementById('report')",
        )?;
        b.screenshot(&shots.join("report.png"))
    });
    let apps = b
        .eval("[...document.querySelectorAll('#report tr td:first-child')].map(t => t.textContent)")
        .expect("report rows");
    for app in ["files", "mail", "demo"] {
        assert!(
            apps.as_array().unwrap().iter().any(|a| a == app),
            "{app} in {apps}"
        );
    }

    // An export of the 100,000 records: progress, then the download.
    step(&mut b, "start an export", |b| {
        open(
            b,
            &console.url("/exports"),
            "!!document.getElementById('export-form')",
        )?;
        b.eval(&format!(
            "const f = document.getElementById('export-form'); f.elements.from.value = '{from}'; f.elements.to.value = '{to}'; f.elements.format.value = 'csv'; f.submit(); true"
        ))?;
        b.wait_until(
            "location.pathname === '/exports' && !!document.querySelector('tr[data-export]')",
            WAIT,
        )
    });
    // The progress as the page shows it, until the export is listed done
    // (the page reloads itself then).
    let mut seen = Vec::new();
    step(&mut b, "the export's progress", |b| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let v = b.eval("(() => { const r = document.querySelector('tr[data-export]'); const p = r && r.querySelector('progress'); return [r ? r.dataset.state : '', p ? p.value : -1, p ? p.max : -1]; })()")?;
            seen.push(v.clone());
            if v[0] == "done" {
                return b.screenshot(&shots.join("exports.png"));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("export not done: {seen:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // The bar was seen moving: the export takes seconds, the page polls
    // every 100 ms.
    let running: Vec<_> = seen.iter().filter(|v| v[0] == "running").collect();
    assert!(
        !running.is_empty(),
        "the export was never seen running: {seen:?}"
    );
    for v in &running {
        let (value, max) = (v[1].as_f64().unwrap_or(-1.0), v[2].as_f64().unwrap_or(-1.0));
        assert!(
            max <= 1.0 || max == EXPORT_ROWS as f64,
            "progress max: {seen:?}"
        );
        assert!(
            (0.0..=max.max(1.0)).contains(&value),
            "progress value: {seen:?}"
        );
    }
    let done = b
        .eval("(() => { const r = document.querySelector('tr[data-export]'); const p = r.querySelector('progress'); return [r.querySelector('td:nth-child(7)').textContent, p.value, p.max]; })()")
        .expect("rows");
    assert_eq!(
        done,
        serde_json::json!([EXPORT_ROWS.to_string(), EXPORT_ROWS, EXPORT_ROWS]),
        "{seen:?}"
    );
    step(&mut b, "download the export", |b| {
        b.eval("document.querySelector('tr[data-export] a.download').click(); true")?;
        Ok(())
    });
    let downloads = b.downloads.clone();
    let mut downloaded = None;
    eventually("the export downloaded", || {
        downloaded = std::fs::read_dir(&downloads)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        downloaded.is_some()
    });
    let got = std::fs::read(downloaded.unwrap()).expect("downloaded export");
    let cli = env.cli_offline(&[
        "logs",
        "export",
        "--format",
        "csv",
        "--from",
        &from,
        "--to",
        &to,
        "--state-dir",
        env.path("state").to_str().unwrap(),
    ]);
    assert!(cli.status.success(), "{cli:?}");
    assert_eq!(got.len(), cli.stdout.len(), "export sizes");
    assert!(
        got == cli.stdout,
        "the console's export differs from logs export"
    );
    assert_eq!(got.iter().filter(|b| **b == b'\n').count(), EXPORT_ROWS + 1);

    // The alert the secret page raised, and its record.
    step(&mut b, "alerts", |b| {
        open(
            b,
            &console.url("/alerts"),
            "document.querySelectorAll('tr[data-alert]').length >= 1",
        )?;
        b.screenshot(&shots.join("alerts.png"))?;
        b.eval("document.querySelector('tr[data-alert] a.record-link').click(); true")?;
        b.wait_until("!!document.getElementById('record')", WAIT)
    });
    let url = b
        .eval("document.querySelector('#record td[data-field=url]').textContent")
        .expect("alert record");
    assert!(
        url.as_str().unwrap_or("").ends_with(&format!("/{marker}")),
        "{url}"
    );
    step(&mut b, "acknowledge the alert", |b| {
        open(
            b,
            &console.url("/alerts"),
            "!!document.querySelector('tr[data-alert] button.ack')",
        )?;
        b.eval("document.querySelector('tr[data-alert] button.ack').click(); true")?;
        b.wait_until("!!document.querySelector('tr[data-alert] .acked')", WAIT)
    });

    // Policies: an error shown at its line, nothing applied.
    step(&mut b, "a policy with an error", |b| {
        open(
            b,
            &console.url("/policies"),
            "!!document.getElementById('policy-text')",
        )?;
        b.screenshot(&shots.join("policies.png"))?;
        b.eval("const t = document.getElementById('policy-text'); t.value = t.value.replace('suffix = \"proxy.test\"', 'suffix = 12'); document.getElementById('validate').click(); true")?;
        b.wait_until("!!document.querySelector('tr.diagnostic')", WAIT)?;
        b.screenshot(&shots.join("policy-error.png"))
    });
    let line = b
        .eval("document.querySelector('tr.diagnostic').dataset.line")
        .expect("diagnostic");
    assert_eq!(line, "2");
    assert_eq!(env.status()["current_version"], 1);

    // A valid change: validated with its diff, applied, both cores ack.
    step(&mut b, "validate a change", |b| {
        open(
            b,
            &console.url("/policies"),
            "!!document.getElementById('policy-text')",
        )?;
        b.eval("const t = document.getElementById('policy-text'); t.value = t.value + '\\n[[activity_policy]]\\nname = \"console test\"\\nurl_contains = \"/console-test\"\\n'; document.getElementById('validate').click(); true")?;
        b.wait_until(
            "!!document.getElementById('valid') && !!document.querySelector('#diff .add')",
            WAIT,
        )?;
        b.screenshot(&shots.join("policy-diff.png"))
    });
    step(&mut b, "apply", |b| {
        b.eval("document.getElementById('apply').click(); true")?;
        b.wait_until("!!document.getElementById('outcome')", WAIT)?;
        b.screenshot(&shots.join("policy-applied.png"))
    });
    let acks = b
        .eval("[document.getElementById('outcome-version').textContent, [...document.querySelectorAll('tr.ack')].map(r => r.dataset.ok)]")
        .expect("acks");
    assert_eq!(acks, serde_json::json!(["2", ["true", "true"]]));
    env.wait_for_cores(2, 2);

    // Roll back to version 1.
    step(&mut b, "roll back", |b| {
        open(
            b,
            &console.url("/policies"),
            "!!document.querySelector('tr[data-version=\"1\"] button.rollback')",
        )?;
        b.eval("document.querySelector('tr[data-version=\"1\"] button.rollback').click(); true")?;
        b.wait_until("!!document.getElementById('outcome')", WAIT)
    });
    let acks = b
        .eval("[document.getElementById('outcome-version').textContent, [...document.querySelectorAll('tr.ack')].map(r => r.dataset.ok)]")
        .expect("acks");
    assert_eq!(acks, serde_json::json!(["1", ["true", "true"]]));
    env.wait_for_cores(2, 1);

    // A viewer, in a browser of its own, reads but its posts are refused.
    let viewer_profile = tempfile::tempdir().expect("profile");
    let mut v = Browser::launch(&Launch {
        host_resolver_rules: "",
        dir: viewer_profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");
    sign_in(&mut v, &console, "vera", "viewers");
    step(&mut v, "the viewer's policies page", |b| {
        open(
            b,
            &console.url("/policies"),
            "!!document.getElementById('history')",
        )
    });
    // No source (it may hold secrets), no apply, no rollback.
    let view = v
        .eval("[!!document.getElementById('policy-text'), !!document.getElementById('sources-for-admins'), !!document.getElementById('apply'), !!document.querySelector('button.rollback')]")
        .expect("viewer page");
    assert_eq!(view, serde_json::json!([false, true, false, false]));
    let exports_before = console_exports(&env);
    let refused = v
        .eval(
            "(async () => { const csrf = document.querySelector('meta[name=csrf-token]').content; \
             const post = (path, body) => fetch(path, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: new URLSearchParams({...body, csrf})}).then(r => r.status); \
             return [await post('/policies/apply', {text: '[proxy]\\nsuffix = \"viewer.test\"\\n'}), await post('/policies/rollback', {version: '2'}), await post('/exports', {from: '-1d', format: 'csv'}), await post('/policies/validate', {text: ''}), await fetch('/policies/version/1').then(r => r.status)]; })()",
        )
        .expect("viewer posts");
    assert_eq!(refused, serde_json::json!([403, 403, 403, 403, 403]));
    assert_eq!(env.status()["current_version"], 1);
    assert_eq!(console_exports(&env), exports_before);

    // Every admin action is a record with the admin's name.
    let admin_actions: Vec<(String, String)> = env
        .export(&["--kind", "activity"])
        .iter()
        .filter(|r| r["app"] == "palisade-console")
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["activity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for action in [
        "console export",
        "console alert acknowledged",
        "console apply",
        "console rollback",
    ] {
        assert!(
            admin_actions.iter().any(|(u, a)| u == "ada" && a == action),
            "{action}: {admin_actions:?}"
        );
    }
    assert!(!admin_actions
        .iter()
        .any(|(u, a)| u == "vera" && a != "console sign-in"));
}

/// The exports kept in the console's directory.
fn console_exports(env: &Env) -> usize {
    std::fs::read_dir(env.path("state").join("console").join("exports"))
        .map(|d| d.count())
        .unwrap_or(0)
}
