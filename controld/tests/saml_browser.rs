//! A real browser signs in through SAML and never leaves the proxy:
//! headless Chromium opens a multi-host SAML app (python3-saml,
//! `tests/saml/app.py`: a page on `crm.test`, its script on
//! `static.crm.test`, its API on `api.crm.test`) whose own SAML sign-in
//! the proxy relays. The app sends the browser to the proxy as its
//! identity provider; the proxy signs the user in once through the SAML
//! identity provider (pysaml2, its sign-in form), comes back, and posts
//! its signed response to the app on the proxy host. From the browser's
//! own network events, every request went to a `*.proxy.test` host or the
//! identity provider, and none failed. Then the suite's multi-host SaaS
//! app (`palisade_bench::saas`) signs in through SAML without the form
//! again (the identity provider's session) and works on every host.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`); `scripts/test` installs it.

mod support;
// The browser suite's walking helpers; this test uses `step`.
#[allow(dead_code)]
#[path = "browser/walk.rs"]
mod walk;

use std::time::Duration;

use palisade_bench::browser::{Browser, Launch};
use support::saml::{rig, sign_in_record, CRM};
use walk::step;

const PAGE: &str = "https://crm.test.proxy.test/app";
/// The multi-host SaaS app of the browser suite, signed in through SAML.
const SAAS: &str = "https://app.saas.test.proxy.test/";

#[test]
fn a_browser_signs_in_through_saml_and_the_relay_without_leaving_the_proxy() {
    if !palisade_bench::browser::chromium_binary().exists() {
        panic!(
            "{} is missing: install Debian's chromium (scripts/test does)",
            palisade_bench::browser::chromium_binary().display()
        );
    }
    let rig = rig();
    let idp_host = rig.idp.trim_start_matches("http://").to_string();
    let profile = tempfile::tempdir().expect("profile dir");
    let rules = format!("MAP *.proxy.test 127.0.0.1:{}", rig.tls.port());
    let mut b = Browser::launch(&Launch {
        host_resolver_rules: &rules,
        dir: profile.path(),
        ignore_certificate_errors: true,
    })
    .expect("launch chromium");

    // The app sends the browser to its identity provider (the proxy), which
    // sends it on to sign in: the identity provider's form.
    step(&mut b, "the identity provider's sign-in form", |b| {
        b.navigate(PAGE)?;
        b.wait_until(
            "!!document.querySelector('input[name=user]')",
            Duration::from_secs(20),
        )
    });
    assert_eq!(b.eval("location.host").expect("host"), idp_host.as_str());
    // Signing in there: its form post to the proxy, back to the proxy's
    // answer for the app, its form post to the app, the app's page.
    let mark = b.mark();
    step(&mut b, "alice signs in", |b| {
        b.eval("document.querySelector('input[name=user]').value = 'alice'; document.forms[0].submit(); true")?;
        b.wait_load(mark)?;
        b.wait_until(
            "document.title === 'CRM' && document.getElementById('api').textContent !== 'loading'",
            Duration::from_secs(30),
        )
    });
    assert_eq!(b.eval("location.href").expect("href"), PAGE);
    assert_eq!(
        b.eval("document.getElementById('user').textContent")
            .expect("user"),
        "signed in as alice"
    );
    // The script from the static host called the API host with the app's
    // cookie, which the app scoped to its domain: on the proxy domain.
    assert_eq!(
        b.eval("document.getElementById('api').textContent")
            .expect("api"),
        "api says alice"
    );

    // The multi-host SaaS app (scripts and styles from its static host,
    // fetch and XHR to its API host, a WebSocket, an iframe) signs in
    // through SAML too, without asking again: the identity provider
    // remembers the browser, the proxy's ACS is on the app domain's host
    // and the browser comes back to the host it opened.
    step(&mut b, "the SaaS app, signed in through SAML", |b| {
        b.navigate(SAAS)?;
        b.wait_until(
            "location.host === 'app.saas.test.proxy.test' && document.getElementById('status') && document.getElementById('status').textContent !== 'loading'",
            Duration::from_secs(30),
        )
    });
    assert_eq!(
        b.eval("document.getElementById('status').textContent")
            .expect("status"),
        "ready",
        "the SaaS app's script reported a failure"
    );
    assert_eq!(b.eval("window.acmeWs").expect("ws"), "ping from the page");

    // Every request of the walk, from the browser's own events.
    let requests = b.requests();
    let hosts: Vec<String> = requests
        .iter()
        .map(|(url, _)| {
            url::Url::parse(url).map_or(String::new(), |u| {
                format!(
                    "{}{}",
                    u.host_str().unwrap_or(""),
                    u.port().map_or(String::new(), |p| format!(":{p}"))
                )
            })
        })
        .collect();
    for host in [
        CRM,
        "static.crm.test.proxy.test",
        "api.crm.test.proxy.test",
        "app.saas.test.proxy.test",
        "saas.test.proxy.test",
        "static.saas.test.proxy.test",
        "api.saas.test.proxy.test",
        idp_host.as_str(),
    ] {
        assert!(
            hosts.iter().any(|h| h == host),
            "no request to {host}: {requests:?}"
        );
    }
    let escaped: Vec<&(String, String)> = requests
        .iter()
        .zip(&hosts)
        .filter(|(_, host)| !(host.ends_with(".proxy.test") || **host == idp_host))
        .map(|(r, _)| r)
        .collect();
    assert!(
        escaped.is_empty(),
        "requests escaped the proxy: {escaped:?}"
    );
    let failed = b.failures();
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // Sign-ins at the proxy (crm, then saas without the form), one
    // relayed to the app; the form was shown once.
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the service provider")["user"],
        "alice"
    );
    let forms = requests
        .iter()
        .filter(|(url, _)| {
            url.contains("/sso?") && url.contains(&idp_host) && !url.contains("user=")
        })
        .count();
    assert_eq!(
        forms, 2,
        "the identity provider was asked twice, its form submitted once: {requests:?}"
    );
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the app")["user"],
        "alice"
    );
}
