//! HTTP/2 toward browsers, end to end: the real data plane with a TLS
//! listener, a real origin, and clients nobody here wrote: curl and
//! nghttp (nghttp2, from Debian) for traffic, and frames built by hand
//! with Python's hyperframe and hpack (`tests/http2/frames.py`) for every
//! attack and RFC 9113 rule. After each attack the proxy must still serve
//! another client, and what it refused must never have reached the app.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const HOST: &str = "demo.test.proxy.test";

/// The Debian python3, whose packages (python3-hyperframe, python3-hpack)
/// scripts/test installs.
fn python() -> PathBuf {
    PathBuf::from(std::env::var("PALISADE_PYTHON3").unwrap_or_else(|_| "/usr/bin/python3".into()))
}

fn frames_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http2/frames.py")
}

/// The app behind the proxy: `/slow` answers after a pause, `/big` is
/// 5 MB, `/huge` 100 MB (in 1 MB chunks), `/sink` counts what it was
/// sent, anything else echoes its request line.
fn app() -> Origin {
    origin(always(|req: &Request| match req.target.as_str() {
        "/slow" => {
            std::thread::sleep(Duration::from_millis(300));
            Reply::text(200, "slow")
        }
        "/big" => Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: vec![b'b'; 5 << 20],
        },
        "/huge" => Reply::Chunked {
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            chunks: (0..100).map(|_| vec![b'h'; 1 << 20]).collect(),
            trailers: String::new(),
        },
        "/sink" => Reply::text(200, format!("got {}", req.body.len())),
        "/page" => Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: page().into_bytes(),
        },
        _ => Reply::text(200, format!("{} {}", req.method, req.target)),
    }))
}

/// A page with links to the app, which the proxy rewrites (so its
/// length changes and it leaves the proxy without one).
fn page() -> String {
    (0..200)
        .map(|i| format!("<a href=\"https://demo.test/p/{i}\">link {i}</a>\n"))
        .collect()
}

fn start(origin: &Origin, args: &[&str]) -> Dataplane {
    Dataplane::start_tls(&policy(&format!("http://{}", origin.addr()), ""), args)
}

fn tls_addr(dp: &Dataplane) -> std::net::SocketAddr {
    dp.tls.as_ref().expect("TLS listener").0
}

/// frames.py with one scenario against the proxy.
fn frames_command(dp: &Dataplane, scenario: &str, arg: &str) -> Command {
    let addr = tls_addr(dp);
    let mut command = Command::new(python());
    command.arg(frames_script()).args([
        &addr.ip().to_string(),
        &addr.port().to_string(),
        HOST,
        dp.tls_ca.as_ref().expect("CA").to_str().expect("path"),
        scenario,
        arg,
    ]);
    command
}

/// Runs one scenario of frames.py against the proxy; its JSON report.
fn frames(dp: &Dataplane, scenario: &str, arg: &str) -> Value {
    let out = frames_command(dp, scenario, arg)
        .output()
        .expect("run frames.py (python3-hyperframe and python3-hpack installed?)");
    assert!(
        out.status.success(),
        "frames.py {scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("frames.py {scenario}: {e}: {:?}", out.stdout));
    assert_eq!(report["alpn"], "h2", "{scenario}: {report}");
    report
}

fn events<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["events"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["type"] == kind).collect())
        .unwrap_or_default()
}

fn goaway_code(report: &Value) -> Option<u64> {
    events(report, "goaway")
        .last()
        .and_then(|g| g["code"].as_u64())
}

/// A normal request over a new HTTP/2 connection.
fn h2_get(dp: &Dataplane, path: &str) -> palisade_bench::h2client::H2Response {
    let (addr, config) = dp.tls.as_ref().expect("TLS listener");
    palisade_bench::h2client::request_text(
        config.clone(),
        *addr,
        HOST,
        format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
        DEADLINE,
    )
    .unwrap_or_else(|e| panic!("GET {path} over h2: {e}"))
}

fn assert_still_serves(dp: &Dataplane, after: &str) {
    let r = h2_get(dp, &format!("/after/{after}"));
    assert_eq!(r.status, 200, "after {after}");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("GET /after/{after}")
    );
}

/// The data plane's resident memory, KiB.
fn rss_kib(dp: &Dataplane) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", dp.pid())).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn curl(dp: &Dataplane, args: &[&str]) -> std::process::Output {
    let addr = tls_addr(dp);
    Command::new("curl")
        .args(["--silent", "--show-error", "--http2", "--max-time", "120"])
        .arg("--cacert")
        .arg(dp.tls_ca.as_ref().expect("CA"))
        .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", addr.port())])
        .args(args)
        .output()
        .expect("curl")
}

fn url(dp: &Dataplane, path: &str) -> String {
    format!("https://{HOST}:{}{path}", tls_addr(dp).port())
}

#[test]
fn curl_and_nghttp_speak_h2_to_the_proxy_and_many_streams_share_a_connection() {
    let origin = app();
    let dp = start(&origin, &[]);
    let out = curl(
        &dp,
        &[
            "-w",
            "\n%{http_version} %{response_code}",
            &url(&dp, "/hello?x=1"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GET /hello?x=1\n2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // nghttp: 50 requests multiplexed on one connection (SNI and
    // :authority set by hand: nghttp takes no resolver rules).
    let addr = tls_addr(&dp);
    let uris: Vec<String> = (0..50)
        .map(|i| format!("https://127.0.0.1:{}/m/{i}", addr.port()))
        .collect();
    let before = origin.requests().len();
    let out = Command::new("nghttp")
        .args(["-n", "-s", "-H", &format!(":authority: {HOST}")])
        .args(&uris)
        .output()
        .expect("nghttp (Debian nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served: Vec<String> = origin.requests()[before..]
        .iter()
        .map(|r| r.target.clone())
        .collect();
    for i in 0..50 {
        assert!(
            served.contains(&format!("/m/{i}")),
            "/m/{i} not served: {served:?}"
        );
    }
    assert_eq!(
        text.lines().filter(|l| l.contains("/m/")).count(),
        50,
        "nghttp's stats list every stream: {text}"
    );
    let connections = origin.connections();
    assert!(connections >= 1, "{connections}");
}

#[test]
fn a_rewritten_page_ends_on_its_last_data_frame() {
    let origin = app();
    let dp = start(&origin, &[]);
    // The body as a client reads it: rewritten (and instrumented).
    let body = String::from_utf8(h2_get(&dp, "/page").body).expect("text");
    assert!(
        body.contains("https://demo.test.proxy.test/p/199"),
        "{body}"
    );
    assert!(!body.contains("https://demo.test/"), "{body}");
    let report = frames(&dp, "get", "/page");
    let data = events(&report, "data");
    let total: u64 = data.iter().map(|e| e["len"].as_u64().expect("len")).sum();
    assert_eq!(total, body.len() as u64, "{report}");
    // The filter's held-back tail and the end of the body go out on one
    // frame: no DATA frame is empty, and the last one ends the stream.
    let last = data.last().expect("DATA frames");
    assert_eq!(last["end"], true, "{report}");
    assert!(
        data.iter().all(|e| e["len"].as_u64() > Some(0)),
        "no empty DATA frame: {report}"
    );
}

#[test]
fn bodies_of_100_mb_stream_both_ways_in_bounded_memory() {
    let origin = app();
    let dp = start(&origin, &[]);
    let base = rss_kib(&dp);
    // Download: 100 MB through the relay, counted by curl.
    let out = curl(
        &dp,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_version}",
            &url(&dp, "/huge"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} 2", 100u64 << 20),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Upload: 100 MB from a file, streamed under flow control.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("upload.bin");
    let mut f = std::fs::File::create(&file).expect("file");
    for _ in 0..100 {
        f.write_all(&vec![b'u'; 1 << 20]).expect("write");
    }
    drop(f);
    let out = curl(
        &dp,
        &[
            "--data-binary",
            &format!("@{}", file.display()),
            "-H",
            "Content-Type: application/octet-stream",
            &url(&dp, "/sink"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("got {}", 100u64 << 20),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grown = rss_kib(&dp).saturating_sub(base);
    assert!(
        grown < 48 * 1024,
        "200 MB through HTTP/2 grew the data plane by {grown} KiB"
    );
}

#[test]
fn rapid_reset_is_answered_with_goaway_and_others_are_still_served() {
    let origin = app();
    let dp = start(&origin, &[]);
    let report = frames(&dp, "rapid_reset", "5000");
    assert_eq!(
        goaway_code(&report),
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM expected: {report}"
    );
    let last = events(&report, "goaway")[0]["last"].as_u64().unwrap_or(0);
    assert!(
        last < 9999,
        "the connection was cut before all 5,000 streams: {last}"
    );
    assert_still_serves(&dp, "rapid-reset");
}

#[test]
fn a_header_block_that_never_ends_is_cut_off() {
    let origin = app();
    let dp = start(&origin, &[]);
    let base = rss_kib(&dp);
    // 2,000 CONTINUATION frames of 16 KiB: 32 MB of header block.
    let report = frames(&dp, "continuation_flood", "2000");
    assert!(
        report["closed"] == true || goaway_code(&report).is_some(),
        "the connection must end: {report}"
    );
    assert!(
        report["sent_bytes"].as_u64().unwrap_or(0) < 32 << 20 || goaway_code(&report).is_some(),
        "{report}"
    );
    assert!(
        origin.requests().iter().all(|r| r.target != "/cont"),
        "the endless request reached the app"
    );
    let grown = rss_kib(&dp).saturating_sub(base);
    assert!(grown < 16 * 1024, "grew by {grown} KiB");
    assert_still_serves(&dp, "continuation-flood");
}

#[test]
fn an_hpack_bomb_is_refused_before_the_app_sees_it() {
    let origin = app();
    let dp = start(&origin, &[]);
    let report = frames(&dp, "hpack_bomb", "");
    // The first request (one 3 KB field) is fine; the second decodes to
    // 15 MB of fields and must be refused.
    let bombed = origin
        .requests()
        .iter()
        .filter(|r| r.target == "/bomb")
        .count();
    assert_eq!(
        bombed, 1,
        "only the honest request reaches the app: {report}"
    );
    let refused = events(&report, "rst").iter().any(|r| r["stream"] == 3)
        || goaway_code(&report).is_some()
        || events(&report, "headers")
            .iter()
            .any(|h| h["stream"] == 3 && h["status"] == "431");
    assert!(refused, "the bomb's stream must be refused: {report}");
    assert_still_serves(&dp, "hpack-bomb");
}

#[test]
fn settings_ping_and_window_update_floods_leave_the_proxy_serving() {
    let origin = app();
    let dp = start(&origin, &[]);
    let base = rss_kib(&dp);
    for flood in ["settings_flood", "ping_flood", "window_update_flood"] {
        // 200,000 frames sent without reading the answers.
        let report = frames(&dp, flood, "200");
        if flood == "window_update_flood" {
            // 200,000 increments of 1 overflow nothing; a window past
            // 2^31-1 would be FLOW_CONTROL_ERROR.
            assert!(
                goaway_code(&report).is_none_or(|c| c == 0 || c == 0xb),
                "{flood}: {report}"
            );
        }
        assert_still_serves(&dp, flood);
    }
    let grown = rss_kib(&dp).saturating_sub(base);
    assert!(
        grown < 16 * 1024,
        "floods grew the data plane by {grown} KiB"
    );
}

#[test]
fn a_client_that_never_opens_its_window_pins_bounded_memory() {
    let origin = app();
    let dp = start(&origin, &[]);
    let base = rss_kib(&dp);
    // 20 streams of 5 MB each, the client's windows at 0: 100 MB the
    // proxy must not buffer.
    let mut child = frames_command(&dp, "zero_window", "20")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("frames.py");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("report");
    let report: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(
        events(&report, "headers").len(),
        20,
        "every stream got its response head: {report}"
    );
    assert!(
        events(&report, "data").is_empty(),
        "no DATA into a zero window"
    );
    // The app has sent its bodies; the proxy holds at most its buffers.
    eventually("the app served all 20", || {
        origin
            .requests()
            .iter()
            .filter(|r| r.target == "/big")
            .count()
            == 20
    });
    let grown = rss_kib(&dp).saturating_sub(base);
    assert!(
        grown < 40 * 1024,
        "a stalled reader pinned {grown} KiB for 100 MB of responses"
    );
    assert_still_serves(&dp, "zero-window");
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn streams_beyond_the_concurrency_limit_are_refused() {
    let origin = app();
    let dp = start(&origin, &["--h2-max-streams", "20"]);
    let report = frames(&dp, "max_streams", "40");
    let settings = events(&report, "settings");
    assert_eq!(
        settings[0]["values"]["3"], 20,
        "SETTINGS_MAX_CONCURRENT_STREAMS advertised: {report}"
    );
    let refused = events(&report, "rst")
        .iter()
        .filter(|r| r["code"] == 7)
        .count();
    let answered = events(&report, "headers").len();
    assert!(refused >= 1, "streams past 20 get REFUSED_STREAM: {report}");
    assert!(answered <= 20, "at most 20 served: {report}");
    assert_still_serves(&dp, "max-streams");
}

#[test]
fn silent_and_idle_connections_are_closed() {
    let origin = app();
    let dp = start(&origin, &["--header-timeout", "1", "--idle-timeout", "1"]);
    // The preface and settings, then nothing: closed within the header
    // timeout (the script waits up to 30 s).
    let report = frames(&dp, "idle", "");
    assert!(
        report["closed"] == true || !events(&report, "goaway").is_empty(),
        "{report}"
    );
    assert_still_serves(&dp, "idle");
}

#[test]
fn downgrade_smuggling_is_refused_and_never_reaches_the_app() {
    let origin = app();
    let dp = start(&origin, &[]);
    for case in SMUGGLING {
        let report = frames(&dp, "smuggle", case);
        let answered = events(&report, "headers")
            .first()
            .map(|h| h["status"].as_str().unwrap_or("").to_string());
        let refused = !events(&report, "rst").is_empty()
            || goaway_code(&report).is_some_and(|c| c != 0)
            || answered.as_deref().is_some_and(|s| s.starts_with('4'));
        assert!(
            refused,
            "{case}: neither reset nor 4xx ({answered:?}): {report}"
        );
        // Nothing of it reached the app whole.
        let served = origin.requests();
        let path = format!("/smuggle/{case}");
        assert!(
            served.iter().all(|r| !r.target.starts_with(&path)),
            "{case} was forwarded: {served:?}"
        );
    }
    let served = origin.requests();
    assert!(
        served
            .iter()
            .all(|r| !r.target.contains("smuggled") && r.header("x-injected").is_none()),
        "{served:?}"
    );
    assert_still_serves(&dp, "smuggling");
}

/// Requests an HTTP/2 client could try to smuggle a second HTTP/1.1
/// request (or a forged field) with, when a proxy downgrades carelessly.
const SMUGGLING: &[&str] = &[
    "cl_longer_data",
    "cl_shorter_data",
    "transfer_encoding",
    "crlf_in_value",
    "lf_in_value",
    "nul_in_value",
    "colon_in_name",
    "uppercase_name",
    "connection_header",
    "te_gzip",
    "upgrade_header",
    "host_disagrees",
    "space_in_path",
    "duplicate_path",
    "pseudo_after_regular",
    "crlf_in_authority",
];

/// RFC 9113's frame and stream rules (the ground h2spec covers), each
/// violated once on a fresh connection, with the error the RFC requires.
#[test]
fn rfc9113_frame_and_stream_rules() {
    const PROTOCOL: u64 = 0x1;
    const FLOW_CONTROL: u64 = 0x3;
    const STREAM_CLOSED: u64 = 0x5;
    const FRAME_SIZE: u64 = 0x6;
    const COMPRESSION: u64 = 0x9;
    enum Want {
        /// A connection error (GOAWAY) with this code.
        Goaway(u64),
        /// A connection error with the RFC's code, or with PROTOCOL_ERROR:
        /// the h2 crate's coarser code for these (the connection ends
        /// either way; the difference is listed in the README).
        GoawayCoarse(u64),
        /// A stream error (RST_STREAM) or a connection error, this code.
        Error(u64),
        /// Like `Error`, or a connection error PROTOCOL_ERROR (the h2
        /// crate's code for it).
        ErrorCoarse(u64),
        PingAck,
        Served,
        Closed,
    }
    use Want::*;
    let cases: &[(&str, Want)] = &[
        ("frame_too_large", Error(FRAME_SIZE)),
        ("data_on_stream_0", Goaway(PROTOCOL)),
        ("headers_on_even_stream", Goaway(PROTOCOL)),
        ("stream_id_goes_down", Goaway(PROTOCOL)),
        ("settings_enable_push_2", Goaway(PROTOCOL)),
        ("settings_window_too_large", GoawayCoarse(FLOW_CONTROL)),
        ("settings_bad_length", GoawayCoarse(FRAME_SIZE)),
        ("settings_ack_with_payload", GoawayCoarse(FRAME_SIZE)),
        ("settings_on_stream", Goaway(PROTOCOL)),
        ("ping_bad_length", GoawayCoarse(FRAME_SIZE)),
        ("ping_on_stream", Goaway(PROTOCOL)),
        ("ping_answered", PingAck),
        ("window_update_zero", Goaway(PROTOCOL)),
        ("window_update_overflow", Goaway(FLOW_CONTROL)),
        ("data_after_end_stream", ErrorCoarse(STREAM_CLOSED)),
        ("bad_hpack_index", GoawayCoarse(COMPRESSION)),
        ("continuation_without_headers", Goaway(PROTOCOL)),
        ("interleaved_frame_in_header_block", Goaway(PROTOCOL)),
        ("rst_on_idle_stream", Goaway(PROTOCOL)),
        ("priority_self_dependency", Error(PROTOCOL)),
        ("unknown_frame_ignored", Served),
        ("missing_pseudo_header", Error(PROTOCOL)),
        ("bad_preface", Closed),
    ];
    let origin = app();
    let dp = start(&origin, &[]);
    let mut wrong = Vec::new();
    for (case, want) in cases {
        let report = frames(&dp, &format!("conformance:{case}"), "");
        let rst = events(&report, "rst")
            .last()
            .and_then(|r| r["code"].as_u64());
        let goaway = goaway_code(&report);
        let ok = match want {
            Goaway(code) => goaway == Some(*code),
            GoawayCoarse(code) => goaway == Some(*code) || goaway == Some(PROTOCOL),
            Error(code) => goaway == Some(*code) || rst == Some(*code),
            ErrorCoarse(code) => {
                goaway == Some(*code) || rst == Some(*code) || goaway == Some(PROTOCOL)
            }
            PingAck => events(&report, "ping_ack")
                .iter()
                .any(|p| p["payload"] == hex(b"palisade")),
            Served => events(&report, "headers")
                .iter()
                .any(|h| h["status"] == "200"),
            Closed => report["closed"] == true || goaway.is_some(),
        };
        if !ok {
            wrong.push(format!("{case}: {report}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_still_serves(&dp, "conformance");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cleartext_http2_with_prior_knowledge_only_when_turned_on() {
    let origin = app();
    let dp = start(&origin, &["--h2c", "on"]);
    let plain = format!("http://{HOST}:{}/clear?x=1", dp.addr.port());
    let resolve = format!("{HOST}:{}:127.0.0.1", dp.addr.port());
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--http2-prior-knowledge"])
        .args(["--resolve", &resolve, "-w", "\n%{http_version}", &plain])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GET /clear?x=1\n2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HTTP/1.1 on the same listener as before.
    let r = request(&dp, &get(HOST, "/clear-h1"));
    assert_eq!(r.text(), "GET /clear-h1");

    // Off (the default): the preface is an HTTP/1.1 request line the
    // codec refuses, and nothing reaches the app.
    let dp = start(&origin, &[]);
    let plain = format!("http://{HOST}:{}/refused", dp.addr.port());
    let resolve = format!("{HOST}:{}:127.0.0.1", dp.addr.port());
    let out = Command::new("curl")
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "10"])
        .args(["--resolve", &resolve, "-w", "%{http_version}", &plain])
        .output()
        .expect("curl");
    assert!(
        !out.status.success() || !String::from_utf8_lossy(&out.stdout).ends_with('2'),
        "prior knowledge must be refused when off: {:?}",
        out
    );
    assert!(origin.requests().iter().all(|r| r.target != "/refused"));
}

#[test]
fn with_http2_off_the_listener_offers_http1_only() {
    let origin = app();
    let dp = start(&origin, &["--http2", "off"]);
    let out = curl(&dp, &["-w", "\n%{http_version}", &url(&dp, "/h1-only")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GET /h1-only\n1.1",
        "curl asked for h2 and got: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_authority_the_proxy_does_not_serve_is_refused_never_proxied() {
    let origin = app();
    let dp = start(&origin, &[]);
    let (addr, config) = dp.tls.as_ref().expect("TLS listener");
    for (authority, status) in [("evil.example", 421), ("nothing.proxy.test", 404)] {
        let r = palisade_bench::h2client::request_text(
            config.clone(),
            *addr,
            HOST,
            format!("GET /open-proxy HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
            DEADLINE,
        )
        .expect("an answer");
        assert_eq!(r.status, status, "{authority}");
    }
    assert!(origin.requests().iter().all(|r| r.target != "/open-proxy"));
}
