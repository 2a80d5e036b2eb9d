//! The walk of the fidelity pages without the proxy: the same app (a
//! second instance, on HTTPS) in a browser of its own that resolves
//! `*.saas.test` to it. What the app receives there is the oracle the
//! proxied walk is compared with.

use std::collections::BTreeSet;
use std::time::Duration;

use palisade_bench::browser::{Browser, Launch};
use palisade_bench::fidelity_walk::{self, Received};

/// What the direct walk gave.
pub struct DirectWalk {
    pub fidelity: serde_json::Value,
    pub built: serde_json::Value,
    /// What the app received during the editor's walk.
    pub editor_requests: BTreeSet<Received>,
    /// What the app stored from the editor's saves and its WebSocket.
    pub saves: Vec<(String, Vec<u8>)>,
    /// The editor page's attachments as the browser saved them.
    pub downloads: Vec<(String, Vec<u8>)>,
    /// What the app received during the builder's walk.
    pub builder_requests: BTreeSet<Received>,
}

/// The requests that may arrive after the builder says it is done (the
/// images it set, its beacon, the frames' navigations): waited for before
/// a walk's requests are compared.
pub fn builder_stragglers(domain: &str) -> Vec<Received> {
    let mut late: Vec<Received> = [
        "src", "srcset", "html", "outer", "adjacent", "write", "source",
    ]
    .iter()
    .map(|via| {
        (
            "GET".into(),
            format!("static.{domain}"),
            format!("/pixel.png?via={via}"),
        )
    })
    .collect();
    late.push(("POST".into(), format!("api.{domain}"), "/api/beacon".into()));
    for via in ["open", "location"] {
        late.push((
            "GET".into(),
            format!("app.{domain}"),
            format!("/help?via={via}"),
        ));
    }
    late
}

/// Walks the editor and the builder of a fresh app on HTTPS (`cert` and
/// `key` are any certificate: the browser ignores certificate errors).
pub fn walk(cert: &std::path::Path, key: &std::path::Path) -> DirectWalk {
    let tls = palisade_bench::tls::server_config_from_files(cert, key).expect("tls config");
    let origin = fidelity_walk::direct_origin("saas.test", tls).expect("direct origin");
    let profile = tempfile::tempdir().expect("profile dir");
    let rules = format!("MAP *.saas.test 127.0.0.1:{}", origin.addr().port());
    let mut b = Browser::launch(&Launch {
        host_resolver_rules: &rules,
        dir: profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");
    let base = "https://app.saas.test";
    let fidelity = fidelity_walk::editor(&mut b, base).expect("the direct editor walk");
    let downloads = fidelity_walk::downloads(&mut b, "saas.test").expect("direct downloads");
    let editor_requests = fidelity_walk::requests_since(&origin, 0);
    let saves = fidelity_walk::saves_since(&origin, 0, 0);
    let since = origin.requests().len();
    let built = fidelity_walk::builder(&mut b, base).expect("the direct builder walk");
    let late = builder_stragglers("saas.test");
    palisade_bench::testing::eventually_within(
        "the direct builder's images and beacon",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let got = fidelity_walk::requests_since(&origin, since);
            late.iter().all(|r| got.contains(r))
        },
    );
    // Sanity: without the proxy, every channel works.
    for channel in ["json", "form", "multipart", "compressed", "websocket"] {
        assert_eq!(
            fidelity[channel],
            serde_json::Value::Bool(true),
            "direct {channel}: {fidelity}"
        );
    }
    for ((name, got), (_, _, sent)) in downloads
        .iter()
        .zip(palisade_bench::saas_fidelity::attachments("saas.test"))
    {
        assert_eq!(got, sent.as_bytes(), "direct download of {name}");
    }
    let stored: Vec<&str> = saves.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        stored,
        [
            "/api/save/compressed",
            "/api/save/form",
            "/api/save/json",
            "/api/save/multipart",
            "websocket /socket"
        ],
        "direct: what the app stored"
    );
    let mut builder_requests = fidelity_walk::requests_since(&origin, since);
    // Through the proxy a service worker is refused (it would run the
    // app's code without the instrumentation): its script is fetched
    // direct only.
    assert!(
        builder_requests.remove(&("GET".into(), "app.saas.test".into(), "/sw.js".into())),
        "direct: the service worker's script was not fetched: {builder_requests:?}"
    );
    assert_eq!(built["serviceWorker"], "registered", "direct: {built}");
    DirectWalk {
        fidelity,
        built,
        editor_requests,
        saves,
        downloads,
        builder_requests,
    }
}

/// A save list in a readable form, for failure messages.
pub fn show(saves: &[(String, Vec<u8>)]) -> String {
    saves
        .iter()
        .map(|(what, body)| format!("{what}: {}\n", String::from_utf8_lossy(body)))
        .collect()
}
