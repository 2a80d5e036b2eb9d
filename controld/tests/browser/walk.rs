//! Steps of the browser walk that several journeys share: a step that
//! says where the browser was when it failed, signing in through the test
//! identity provider, and the check that every request stayed on proxy
//! hosts.

use std::time::Duration;

use palisade_bench::browser::Browser;

/// The host of a URL (without a port).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

/// Runs `step`, and on failure says where the browser was.
pub fn step<T>(
    b: &mut Browser,
    what: &str,
    f: impl FnOnce(&mut Browser) -> Result<T, String>,
) -> T {
    match f(b) {
        Ok(v) => v,
        Err(e) => {
            let at = b.eval("location.href").unwrap_or_default();
            let text = b
                .eval("document.body ? document.body.innerText.slice(0, 400) : ''")
                .unwrap_or_default();
            panic!("{what}: {e}\n  page: {at}\n  text: {text}")
        }
    }
}

/// Opens `app` (its first page), signs in as `user` on the provider's
/// form and waits for the monitoring notice the policy shows first.
pub fn sign_in(b: &mut Browser, app: &str, user: &str) {
    step(b, &format!("{user}: the provider's sign-in form"), |b| {
        b.navigate(&format!("{app}/"))?;
        b.wait_until(
            "!!document.querySelector('input[name=username]')",
            Duration::from_secs(20),
        )
    });
    let mark = b.mark();
    step(b, &format!("{user} signs in"), |b| {
        b.eval(&format!(
            "document.querySelector('input[name=username]').value = '{user}'; document.forms[0].submit(); true"
        ))?;
        // The form_post page, then the callback, then the notice.
        b.wait_load(mark)?;
        b.wait_until(
            "document.title === 'This session is monitored'",
            Duration::from_secs(20),
        )
    });
}

/// Acknowledges the monitoring notice and waits for the app's page.
pub fn continue_past_notice(b: &mut Browser) {
    let mark = b.mark();
    step(b, "continue past the notice", |b| {
        b.eval("document.getElementById('continue').click(); true")?;
        b.wait_load(mark)?;
        b.wait_until("document.title === 'Acme Files'", Duration::from_secs(20))
    });
}

/// Every request the browser made went to a `*.proxy.test` host, the
/// identity provider or one of `allowed` (URLs), and none failed but
/// those aborted by design (navigations that turn into downloads, the
/// event stream the builder closes after its first message) or allowed.
pub fn assert_stayed_on_proxy(b: &Browser, idp_host: &str, allowed: &[&str]) {
    let requests = b.requests();
    assert!(
        requests.len() >= 20,
        "too few requests recorded: {requests:?}"
    );
    let escaped: Vec<String> = requests
        .iter()
        .filter(|(url, _)| {
            !(url.starts_with("data:") || url.starts_with("about:") || url.starts_with("blob:"))
        })
        .filter(|(url, _)| {
            let host = host_of(url);
            !(host.ends_with(".proxy.test") || host == idp_host || allowed.contains(&url.as_str()))
        })
        .map(|(url, page)| format!("{url} (from {page})"))
        .collect();
    assert!(
        escaped.is_empty(),
        "requests escaped the proxy:\n  {}",
        escaped.join("\n  ")
    );
    let failed: Vec<String> = b
        .failures()
        .into_iter()
        .filter(|(url, error, _)| {
            let aborted = error == "net::ERR_ABORTED"
                && (url.starts_with("https://api.saas.test.proxy.test/files/")
                    || url.ends_with("/api/events"));
            !aborted && !allowed.contains(&url.as_str())
        })
        .map(|(url, error, page)| format!("{url}: {error} (from {page})"))
        .collect();
    assert!(
        failed.is_empty(),
        "requests failed:\n  {}",
        failed.join("\n  ")
    );
    for host in [
        "app.saas.test.proxy.test",
        "static.saas.test.proxy.test",
        "api.saas.test.proxy.test",
        "ws.saas.test.proxy.test",
    ] {
        assert!(
            requests.iter().any(|(url, _)| host_of(url) == host),
            "no request to {host}: {requests:?}"
        );
    }
}
