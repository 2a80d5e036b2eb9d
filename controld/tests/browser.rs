//! A real browser never leaves the proxy: headless Chromium (driven over
//! the DevTools protocol) signs in through the test identity provider and
//! walks a multi-host SaaS app (`palisade_bench::saas`) through the data
//! plane over HTTPS: scripts and styles from another host, API calls built
//! from a JSON config with fetch and XHR (CORS, credentials), a WebSocket,
//! an iframe, a form POST with a `return_to` URL, a redirect chain across
//! hosts, a blocked download and a blocked upload, and the monitoring
//! notice. Every request the browser made, from its own network events,
//! must have gone to a `*.proxy.test` host (or the identity provider) and
//! none may have failed. The fidelity pages (an editor saving through
//! every channel, a script building URLs from pieces) are walked once
//! without the proxy first (`browser/direct.rs`): through the proxy the
//! app must receive and store the same bytes and the same requests.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`); `scripts/test` installs it.
//! Screenshots go to `target/browser/`.

#[path = "browser/direct.rs"]
mod direct;
mod support;
#[path = "browser/walk.rs"]
mod walk;

use std::path::PathBuf;
use std::time::Duration;

use palisade_bench::browser::{Browser, Launch};
use palisade_bench::fidelity_walk;
use palisade_bench::idp::{Idp, IdpConfig};
use support::signin::Rig;
use support::{Env, Origin, OriginConfig};
use walk::{host_of, sign_in, step};

const KEY_HEX: &str = "3f1c0e5a3b2d4f6071829a0b1c2d3e4f5061728394a5b6c7d8e9f00112233446";
const APP: &str = "https://app.saas.test.proxy.test";
/// Where the escaping page goes (no app owns the host).
const ESCAPE: &str = "https://escape.example/beacon";

fn rig() -> Rig {
    let env = Env::new();
    env.app_certificates("certs", &[("saas", "saas.test")]);
    let origin = Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: palisade_bench::saas::saas_app("saas.test"),
        tls: None,
        split_writes: false,
        record: true,
    })
    .expect("origin");
    let idp = Idp::start(IdpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        issuer: None,
        test_mode: false,
        key_dir: None,
        token_lifetime: 600,
    })
    .expect("idp");
    std::fs::write(env.path("jwks.json"), &idp.jwks).expect("jwks");
    let issuer = &idp.issuer;
    let upstream = origin.addr();
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"[proxy]
suffix = "proxy.test"

[identity]
provider = "oidc"
issuer = "{issuer}"
client_id = "palisade-browser-test"
authorization_endpoint = "{issuer}/authorize"
jwks_file = "jwks.json"
session_keys = [{{ id = "k1", secret = "{KEY_HEX}" }}]

[[app]]
name = "saas"
domains = ["saas.test"]
upstream = "http://{upstream}"
tls_cert = "certs/saas.pem"
tls_key = "certs/saas.key"

[monitoring_notice]
message = "Acme monitors this session for data protection."

[[session_policy]]
name = "no card numbers out"
control = "control_download"
action = "block"
message = "Card numbers stay in Acme Files."
[session_policy.inspect]
detectors = ["credit_card"]

[[session_policy]]
name = "no copying for alice"
control = "block_activities"
users = ["alice"]
activities = ["copy", "paste", "print"]
message = "Copying is not allowed in Acme Files."

[[session_policy]]
name = "no card numbers in"
control = "control_upload"
action = "block"
message = "Uploads with card numbers are refused."
[session_policy.inspect]
detectors = ["credit_card"]
"#
        ),
    )
    .expect("policy");
    let controld = env.controld(&policy, &[]);
    let (dataplane, _plain, tls) = env.dataplane_tls(1, &[]);
    env.wait_for_cores(1, 1);
    Rig {
        env,
        _controld: controld,
        _dataplane: dataplane,
        tls,
        origin,
        idp,
    }
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser")
}

#[test]
fn a_browser_session_never_leaves_the_proxy() {
    if !palisade_bench::browser::chromium_binary().exists() {
        panic!(
            "{} is missing: install Debian's chromium (scripts/test does)",
            palisade_bench::browser::chromium_binary().display()
        );
    }
    let rig = rig();
    // The fidelity pages walked without the proxy first: the oracle.
    let direct = direct::walk(
        &rig.env.path("certs/saas.pem"),
        &rig.env.path("certs/saas.key"),
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let rules = format!("MAP *.proxy.test 127.0.0.1:{}", rig.tls.port());
    let mut b = Browser::launch(&Launch {
        host_resolver_rules: &rules,
        dir: profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");
    let shots = screenshots();

    // Sign in: the app sends the browser to the provider, its form posts
    // the token back to the proxy; then the app's first page is the
    // monitoring notice.
    sign_in(&mut b, APP, "alice");
    assert_eq!(
        b.eval("location.host").expect("host"),
        "app.saas.test.proxy.test"
    );
    let notice = b.eval("document.body.innerText").expect("notice text");
    assert!(
        notice
            .as_str()
            .unwrap_or("")
            .contains("Acme monitors this session"),
        "{notice}"
    );
    b.screenshot(&shots.join("notice.png")).expect("screenshot");
    walk::continue_past_notice(&mut b);

    // The app: static host, JSON config, fetch, XHR, WebSocket, iframe.
    step(&mut b, "the app's scripts", |b| {
        b.wait_until(
            "document.getElementById('status').textContent !== 'loading'",
            Duration::from_secs(20),
        )
    });
    let status = b
        .eval("document.getElementById('status').textContent")
        .expect("status");
    assert_eq!(status, "ready", "the app's script reported a failure");
    // The config is data the page's script reads: it arrives as the app
    // wrote it, and the client instrumentation translated the URLs built
    // from it when the script used them (fetch, XHR and the WebSocket all
    // worked, and every request stayed on proxy hosts: checked below).
    assert_eq!(
        b.eval("JSON.stringify(window.acmeConfig)").expect("config"),
        palisade_bench::saas::config("saas.test"),
        "the JSON config was changed on its way"
    );
    assert_eq!(
        b.eval("typeof window.__palisade.translate")
            .expect("instrumentation"),
        "function",
        "the client instrumentation did not load"
    );
    // The cookie the app set for .saas.test arrives on its API host.
    assert_eq!(b.eval("window.acmeFetch.cookie").expect("fetch"), true);
    assert_eq!(b.eval("window.acmeXhr.cookie").expect("xhr"), true);
    assert_eq!(b.eval("window.acmeWs").expect("ws"), "ping from the page");
    // The iframe (another origin: seen from the browser's network events).
    step(&mut b, "the iframe", |b| {
        b.wait_for("the iframe's page", Duration::from_secs(10), |e| {
            e["method"] == "Network.responseReceived"
                && e["params"]["response"]["url"]
                    == "https://static.saas.test.proxy.test/frame.html"
                && e["params"]["response"]["status"] == 200
        })
    });
    b.screenshot(&shots.join("app.png")).expect("screenshot");
    let api_cookies = rig
        .origin
        .requests()
        .iter()
        .filter(|r| {
            r.header("host")
                .is_some_and(|h| h.starts_with("api.saas.test"))
                && r.target.starts_with("/api/")
        })
        .all(|r| {
            r.header("cookie")
                .is_some_and(|c| c.contains("acme_sid=s3cr3t"))
        });
    assert!(
        api_cookies,
        "an API request reached the app without the .saas.test cookie"
    );

    // The notice was shown once: the app comes straight back.
    step(&mut b, "reload", |b| {
        b.navigate(&format!("{APP}/"))?;
        b.wait_until("document.title === 'Acme Files'", Duration::from_secs(10))
    });

    // A form POST with a return_to URL, answered by a redirect to it.
    let mark = b.mark();
    step(&mut b, "the settings form", |b| {
        b.eval("document.getElementById('settings').submit(); true")?;
        b.wait_load(mark)?;
        b.wait_until("document.title === 'Saved'", Duration::from_secs(10))
    });
    assert_eq!(
        b.eval("location.href").expect("href"),
        format!("{APP}/saved")
    );

    // A redirect chain across three hosts.
    step(&mut b, "the redirect chain", |b| {
        b.navigate(&format!("{APP}/"))?;
        b.wait_until("document.title === 'Acme Files'", Duration::from_secs(10))?;
        let mark = b.mark();
        b.eval("document.getElementById('chain').click(); true")?;
        b.wait_load(mark)?;
        b.wait_until("document.title === 'Landed'", Duration::from_secs(10))
    });
    let landed = b.eval("document.body.innerText").expect("text");
    assert!(
        landed.as_str().unwrap_or("").contains("cookie seen"),
        "{landed}"
    );

    // The download: the session policy replaces it.
    step(&mut b, "back to the app", |b| {
        b.navigate(&format!("{APP}/"))?;
        b.wait_until(
            "document.getElementById('status').textContent === 'ready'",
            Duration::from_secs(20),
        )
    });
    b.eval("document.getElementById('download').click(); true")
        .expect("click");
    let begun = step(&mut b, "the download", |b| {
        b.wait_for("a download", Duration::from_secs(20), |e| {
            e["method"] == "Browser.downloadWillBegin"
        })
    });
    assert_eq!(
        begun["params"]["suggestedFilename"], "report.csv.blocked.txt",
        "{begun}"
    );
    step(&mut b, "the download to finish", |b| {
        b.wait_for("the download to complete", Duration::from_secs(20), |e| {
            e["method"] == "Browser.downloadProgress" && e["params"]["state"] == "completed"
        })
    });
    let saved = std::fs::read_to_string(b.downloads.join("report.csv.blocked.txt"))
        .expect("the downloaded file");
    assert!(
        saved.starts_with("Download restricted")
            && saved.contains("Card numbers stay in Acme Files."),
        "{saved}"
    );

    // The upload form with a file holding card numbers: the block page.
    let file = profile.path().join("cards.csv");
    std::fs::write(
        &file,
        palisade_bench::samples::named("cards.csv").expect("sample"),
    )
    .expect("write");
    let input = b
        .call(
            "Runtime.evaluate",
            serde_json::json!({"expression": "document.querySelector('#upload input[type=file]')"}),
        )
        .expect("file input");
    let object_id = input["result"]["objectId"]
        .as_str()
        .expect("objectId")
        .to_string();
    b.call(
        "DOM.setFileInputFiles",
        serde_json::json!({"files": [file.to_string_lossy()], "objectId": object_id}),
    )
    .expect("choose the file");
    let mark = b.mark();
    step(&mut b, "the blocked upload", |b| {
        b.eval("document.getElementById('upload').submit(); true")?;
        b.wait_load(mark)?;
        b.wait_until(
            "document.body.innerText.includes('Uploads with card numbers are refused.')",
            Duration::from_secs(10),
        )
    });
    b.screenshot(&shots.join("block.png")).expect("screenshot");
    assert!(
        !rig.origin.requests().iter().any(|r| r.target == "/upload"),
        "the blocked upload reached the app"
    );

    // Fidelity: the editor loads a document holding the app's URLs and
    // code, changes one word and saves it back through every channel; the
    // app receives and stores exactly the bytes it received in the direct
    // walk, and a download arrives as the app wrote it.
    let (since, since_messages) = (rig.origin.requests().len(), rig.origin.messages().len());
    let fidelity = step(&mut b, "the editor's saves", |b| {
        fidelity_walk::editor(b, APP)
    });
    let failures = b.failures();
    for channel in ["json", "form", "multipart", "compressed", "websocket"] {
        assert_eq!(
            fidelity[channel],
            serde_json::Value::Bool(true),
            "{channel}: the app did not get its document back unchanged: {fidelity} {failures:?}"
        );
    }
    assert_eq!(fidelity, direct.fidelity, "the editor saw another walk");
    assert_eq!(
        fidelity["download"],
        palisade_bench::saas::notes("saas.test"),
        "the download differs from the app's copy"
    );
    // The attachments the browser downloads itself (an SVG and a JSON
    // file holding the app's URLs) are saved exactly as direct.
    let downloads = step(&mut b, "the editor's attachments", |b| {
        fidelity_walk::downloads(b, "saas.test")
    });
    for ((name, got), (_, want)) in downloads.iter().zip(&direct.downloads) {
        assert!(
            got == want,
            "{name} differs from the direct download:\n{}\n{}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want)
        );
    }
    assert_eq!(downloads.len(), direct.downloads.len());
    let saves = fidelity_walk::saves_since(&rig.origin, since, since_messages);
    assert!(
        saves == direct.saves,
        "the app stored other bytes through the proxy:\n{}\ndirect:\n{}",
        direct::show(&saves),
        direct::show(&direct.saves)
    );
    let editor_requests = fidelity_walk::requests_since(&rig.origin, since);
    assert!(
        editor_requests == direct.editor_requests,
        "the editor's requests differ: {}",
        fidelity_walk::differences(&editor_requests, &direct.editor_requests)
    );

    // URLs the page's scripts build from pieces, used through every API:
    // each request lands on a proxy host (checked with all the others
    // below), and the app receives the requests it receives direct.
    let since = rig.origin.requests().len();
    let built = step(&mut b, "the builder's requests", |b| {
        fidelity_walk::builder(b, APP)
    });
    for api in [
        "concat",
        "template",
        "json",
        "atob",
        "request",
        "xhr",
        "websocket",
        "eventsource",
        "beacon",
        "replaced",
        "script",
        "link",
        "iframe",
        "postMessage",
        "cookie",
        "domain",
    ] {
        assert_eq!(
            built[api],
            serde_json::Value::Bool(true),
            "{api} failed: {built}"
        );
        assert_eq!(
            built[api], direct.built[api],
            "{api} direct: {}",
            direct.built
        );
    }
    for worker in ["worker", "moduleWorker", "sharedWorker"] {
        assert_eq!(built[worker], "ran", "{worker}: {built}");
        assert_eq!(built[worker], direct.built[worker], "{worker} direct");
    }
    assert_eq!(built["serviceWorker"], "SecurityError", "{built}");
    assert_eq!(
        built["location"],
        format!("{APP}/builder?pushed=1"),
        "{built}"
    );
    for via in ["src", "srcset", "html"] {
        step(&mut b, "the builder's images", |b| {
            b.wait_for("an image", Duration::from_secs(10), |e| {
                e["method"] == "Network.responseReceived"
                    && e["params"]["response"]["url"]
                        == format!("https://static.saas.test.proxy.test/pixel.png?via={via}")
            })
        });
    }

    let late = direct::builder_stragglers("saas.test");
    palisade_bench::testing::eventually_within(
        "the builder's images and beacon at the app",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let got = fidelity_walk::requests_since(&rig.origin, since);
            late.iter().all(|r| got.contains(r))
        },
    );
    let builder_requests = fidelity_walk::requests_since(&rig.origin, since);
    assert!(
        builder_requests == direct.builder_requests,
        "the builder's requests differ: {}",
        fidelity_walk::differences(&builder_requests, &direct.builder_requests)
    );

    // Browser activities: copy, paste and print are stopped for alice and
    // logged; cut is no policy's business.
    step(&mut b, "back to the app", |b| {
        b.navigate(&format!("{APP}/"))?;
        b.wait_until("document.title === 'Acme Files'", Duration::from_secs(10))
    });
    const TRY_ACTIVITIES: &str = "['copy', 'cut', 'paste'].map((k) => document.dispatchEvent(new ClipboardEvent(k, { bubbles: true, cancelable: true }))).concat([window.print() === undefined])";
    let allowed = b.eval(TRY_ACTIVITIES).expect("activities");
    assert_eq!(
        allowed,
        serde_json::json!([false, true, false, true]),
        "copy and paste prevented, cut allowed"
    );
    step(&mut b, "the notice of a blocked copy", |b| {
        b.wait_until(
            "(document.getElementById('palisade-notice') || {}).textContent === 'Copying is not allowed in Acme Files.'",
            Duration::from_secs(10),
        )
    });
    let mut browser_records: Vec<serde_json::Value> = Vec::new();
    support::eventually("the browser activities in the log", || {
        browser_records = rig
            .env
            .export(&["--kind", "activity"])
            .into_iter()
            .filter(|r| {
                matches!(
                    r["activity"].as_str(),
                    Some("copy" | "cut" | "paste" | "print")
                )
            })
            .collect();
        browser_records.len() >= 3
    });
    for activity in ["copy", "paste", "print"] {
        assert!(
            browser_records.iter().any(|r| r["activity"] == activity
                && r["action"] == "block"
                && r["user"] == "alice"
                && r["policy"] == "no copying for alice"),
            "{activity}: {browser_records:?}"
        );
    }
    assert!(
        !browser_records.iter().any(|r| r["activity"] == "cut"),
        "{browser_records:?}"
    );

    // A page that deliberately escapes (to a host no app owns, which
    // nothing translates): the leak guard reports it as a `leak` record.
    step(&mut b, "the escaping page", |b| {
        b.navigate(&format!("{APP}/escape"))?;
        b.wait_until("window.escaped === true", Duration::from_secs(20))
    });
    let mut leaks: Vec<serde_json::Value> = Vec::new();
    support::eventually("the leak record", || {
        leaks = rig
            .env
            .export(&["--kind", "activity"])
            .into_iter()
            .filter(|r| r["activity"] == "leak")
            .collect();
        !leaks.is_empty()
    });
    assert_eq!(leaks.len(), 1, "one leak, the deliberate one: {leaks:?}");
    let detail = leaks[0]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("url=https://escape.example/beacon")
            && detail.contains(&format!("page={APP}/escape")),
        "{}",
        leaks[0]
    );
    assert_eq!(leaks[0]["user"], "alice", "{}", leaks[0]);
    // ...and counted in the traffic report.
    let out = std::process::Command::new(support::controld_bin())
        .args(["report", "--json", "--state-dir"])
        .arg(rig.env.path("state"))
        .output()
        .expect("controld report");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let saas = report
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == "saas"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(saas["leaks"], 1, "{report}");

    // Every request the browser made went through the proxy (or to the
    // identity provider), and none failed; but the deliberate escape.
    let idp_host = host_of(&rig.idp.issuer).to_string();
    walk::assert_stayed_on_proxy(&b, &idp_host, &[ESCAPE]);

    // Every proxied page, script, image and API call of the walk came
    // over HTTP/2 (the WebSocket opens an HTTP/1.1 connection of its own,
    // RFC 8441 not being offered).
    let proxied: Vec<(String, String)> = b
        .protocols()
        .into_iter()
        .filter(|(url, _)| {
            url::Url::parse(url).is_ok_and(|u| {
                u.scheme() == "https" && u.host_str().is_some_and(|h| h.ends_with(".proxy.test"))
            })
        })
        .collect();
    assert!(proxied.len() > 20, "the walk's responses: {proxied:?}");
    let not_h2: Vec<&(String, String)> = proxied.iter().filter(|(_, p)| p != "h2").collect();
    assert!(
        not_h2.is_empty(),
        "proxied responses not over h2: {not_h2:?}"
    );

    // Another user may copy: bob, in a browser of his own.
    let bob_profile = tempfile::tempdir().expect("profile dir");
    let mut bob = Browser::launch(&Launch {
        host_resolver_rules: &rules,
        dir: bob_profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");
    sign_in(&mut bob, APP, "bob");
    walk::continue_past_notice(&mut bob);
    let allowed = bob.eval(TRY_ACTIVITIES).expect("activities");
    assert_eq!(
        allowed,
        serde_json::json!([true, true, true, true]),
        "bob may copy, cut, paste and print"
    );

    // Signing out and in again as another user in the same browser: the
    // page's subresources loading without a session must not spoil the
    // sign-in in progress.
    step(&mut b, "sign out", |b| {
        b.navigate(&format!("{APP}/.palisade/logout"))
    });
    sign_in(&mut b, APP, "bob");

    // The decisions are in the log.
    let records = rig.env.wait_for_records("activity", 2);
    assert!(
        records
            .iter()
            .any(|r| r["activity"] == "download" && r["action"] == "block"),
        "{records:?}"
    );
}
