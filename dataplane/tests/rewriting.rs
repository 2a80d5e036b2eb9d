//! Header rewriting both ways, checked on the wire: what the origin
//! receives (hosts unwrapped, hop-by-hop fields gone, forwarding fields
//! appended) and what the client receives (app hosts wrapped into proxy
//! hosts, Alt-Svc dropped).

mod support;

use std::sync::Arc;

use support::*;

const H: &str = "demo.test.proxy.test";

fn start_with(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (Origin, Dataplane) {
    let origin = origin(Arc::new(reply));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    (origin, dp)
}

#[test]
fn request_headers_are_unwrapped_toward_the_app() {
    let (origin, dp) = start_with(|_| Reply::text(200, "ok"));
    let resp = request(
        &dp,
        format!(
            "GET http://{H}/cb?redirect_uri=https%3A%2F%2Fapp.demo.test.proxy.test%2Fdone&plain=https://demo-cdn.test.proxy.test/x&other=https://evil.test.proxy.test/ HTTP/1.1\r\n\
             Host: {H}\r\n\
             Origin: https://app.demo.test.proxy.test\r\n\
             Referer: https://app.demo.test.proxy.test:8443/page?q=https%253A%252F%252Fdemo.test.proxy.test\r\n\
             Connection: keep-alive, X-Hop-Secret\r\n\
             X-Hop-Secret: do-not-forward\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\n\
             Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             TE: trailers\r\n\
             X-Forwarded-For: 203.0.113.7\r\n\
             X-Forwarded-For: 198.51.100.2, 198.51.100.3\r\n\
             Forwarded: for=203.0.113.7\r\n\
             X-Forwarded-Host: spoofed.example\r\n\
             X-Forwarded-Proto: https\r\n\
             Cookie: a=1\r\n\
             \r\n"
        )
        .as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let seen = &origin.requests()[0];
    // Absolute-form becomes origin-form; query hosts unwrapped (encoded and
    // plain), unknown proxy hosts left alone.
    assert_eq!(
        seen.target,
        "/cb?redirect_uri=https%3A%2F%2Fapp.demo.test%2Fdone&plain=https://demo-cdn.test/x&other=https://evil.test.proxy.test/"
    );
    assert_eq!(seen.header("host"), Some("demo.test"));
    assert_eq!(seen.header("origin"), Some("https://app.demo.test"));
    assert_eq!(
        seen.header("referer"),
        Some("https://app.demo.test:8443/page?q=https%253A%252F%252Fdemo.test")
    );
    for hop in [
        "connection",
        "x-hop-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} must not be forwarded");
    }
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.2, 198.51.100.3, 127.0.0.1")
    );
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
            .count(),
        1
    );
    // The client's scheme: HTTPS when the run goes over HTTP/2.
    let proto = if over_http2() { "https" } else { "http" };
    assert_eq!(
        seen.header("forwarded"),
        Some(
            format!("for=203.0.113.7, for=127.0.0.1;host=demo.test.proxy.test;proto={proto}")
                .as_str()
        )
    );
    assert_eq!(seen.header("x-forwarded-host"), Some(H));
    assert_eq!(seen.header("x-forwarded-proto"), Some(proto));
    assert_eq!(seen.header("cookie"), Some("a=1"));
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .count(),
        1
    );
}

#[test]
fn subdomains_and_letter_case_map_to_the_app_host() {
    let (origin, dp) = start_with(|_| Reply::text(200, "ok"));
    assert_eq!(
        request(&dp, &get("Api.V2.DEMO.test.Proxy.Test:8080", "/")).status,
        200
    );
    assert_eq!(
        request(&dp, &get("static.demo-cdn.test.proxy.test", "/")).status,
        200
    );
    let hosts: Vec<String> = origin
        .requests()
        .iter()
        .map(|r| r.header("host").unwrap_or("").to_string())
        .collect();
    assert_eq!(hosts, ["Api.V2.DEMO.test", "static.demo-cdn.test"]);
}

#[test]
fn response_headers_are_wrapped_toward_the_user() {
    let (_origin, dp) = start_with(|_| Reply::Full {
        status: 302,
        headers: [
            ("Location", "https://app.demo.test/next?x=1"),
            ("Content-Location", "//static.demo-cdn.test/a.json"),
            ("Refresh", "5; url=https://demo.test/later"),
            (
                "Link",
                "<https://static.demo.test/app.css>; rel=preload, <https://other.net/x>; rel=next",
            ),
            ("Access-Control-Allow-Origin", "https://app.demo.test"),
            (
                "Content-Security-Policy",
                "default-src 'self' https://demo.test *.demo-cdn.test; img-src data: other.net",
            ),
            (
                "Content-Security-Policy-Report-Only",
                "script-src https://static.demo.test:443/js/",
            ),
            (
                "Set-Cookie",
                "sid=1; Path=/; Domain=.demo.test; Secure; HttpOnly",
            ),
            ("Set-Cookie", "pref=2; Domain=demo-cdn.test"),
            ("Set-Cookie", "hostonly=3; Path=/"),
            ("Set-Cookie", "foreign=4; Domain=other.net"),
            ("Alt-Svc", "h3=\":443\"; ma=86400"),
            ("Connection", "X-Upstream-Hop"),
            ("X-Upstream-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Unrelated", "https://demo.test/stays"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
        body: Vec::new(),
    });
    let resp = request(&dp, &get(H, "/"));
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some("https://app.demo.test.proxy.test/next?x=1")
    );
    assert_eq!(
        resp.header("content-location"),
        Some("//static.demo-cdn.test.proxy.test/a.json")
    );
    assert_eq!(
        resp.header("refresh"),
        Some("5; url=https://demo.test.proxy.test/later")
    );
    assert_eq!(
        resp.header("link"),
        Some("<https://static.demo.test.proxy.test/app.css>; rel=preload, <https://other.net/x>; rel=next")
    );
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.demo.test.proxy.test")
    );
    assert_eq!(
        resp.header("content-security-policy"),
        Some("default-src 'self' https://demo.test.proxy.test *.demo-cdn.test.proxy.test; img-src data: other.net")
    );
    assert_eq!(
        resp.header("content-security-policy-report-only"),
        Some("script-src https://static.demo.test.proxy.test:443/js/")
    );
    assert_eq!(
        resp.header_all("set-cookie"),
        [
            "sid=1; Path=/; Domain=.demo.test.proxy.test; Secure; HttpOnly",
            "pref=2; Domain=demo-cdn.test.proxy.test",
            "hostonly=3; Path=/",
            "foreign=4; Domain=other.net",
        ]
    );
    assert_eq!(resp.header("alt-svc"), None);
    assert_eq!(resp.header("x-upstream-hop"), None);
    assert_eq!(resp.header("keep-alive"), None);
    assert_eq!(resp.header("x-unrelated"), Some("https://demo.test/stays"));
}

#[test]
fn look_alike_hosts_in_headers_are_left_alone() {
    let (_origin, dp) = start_with(|_| Reply::Full {
        status: 302,
        headers: vec![
            ("Location".into(), "https://notdemo.test/x".into()),
            (
                "Content-Location".into(),
                "https://demo.test.evil.net/".into(),
            ),
            ("Link".into(), "<https://demo.testing/>; rel=x".into()),
        ],
        body: Vec::new(),
    });
    let resp = request(&dp, &get(H, "/"));
    assert_eq!(resp.header("location"), Some("https://notdemo.test/x"));
    assert_eq!(
        resp.header("content-location"),
        Some("https://demo.test.evil.net/")
    );
    assert_eq!(resp.header("link"), Some("<https://demo.testing/>; rel=x"));
}

#[test]
fn binary_and_partial_bodies_pass_through_unchanged() {
    // Images, opaque data and partial content keep their bytes and length;
    // text bodies go through the rewrite engine (tests/body_rewriting.rs).
    for (status, content_type) in [
        (200, "image/png"),
        (200, "application/octet-stream"),
        (206, "text/html"),
    ] {
        let (_origin, dp) = start_with(move |_| Reply::Full {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: b"<a href=\"https://demo.test/\">x</a>".to_vec(),
        });
        let resp = request(&dp, &get(H, "/"));
        assert_eq!(resp.status, status);
        assert_eq!(
            resp.text(),
            "<a href=\"https://demo.test/\">x</a>",
            "{content_type}"
        );
        assert_eq!(resp.header("content-length"), Some("34"), "{content_type}");
    }
}
