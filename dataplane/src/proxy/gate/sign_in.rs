//! The sign-in callback (`/.palisade/callback`, part of phase
//! *identity*): reads the provider's form post (Content-Length, bounded),
//! checks the token against the login state bound to this browser, and
//! answers with the session cookie and a redirect back, or a refusal page
//! naming the reason.

use std::time::Instant;

use super::{proxy_host, Admitted, MAX_CALLBACK_BODY};
use crate::answers;
use crate::core::CLIENT_BUFFER;
use crate::http::Framing;
use crate::identity;
use crate::io::within;
use crate::proxy::exchange::{Exchange, Step};

/// Completes a sign-in; the answer is in `x.out`.
pub async fn callback(x: &mut Exchange<'_>) -> Step {
    let host = proxy_host(&x.snap.hosts, x.req.app_host.as_str());
    let login_cookie = x.req.index.login_cookie.of(x.client_head()).to_vec();
    x.consume_head();
    x.admitted = Admitted::undecided(x.conn);
    let len = match x.req.framing {
        Framing::Length(n) if n <= MAX_CALLBACK_BODY => n as usize,
        _ => {
            answers::error_response(
                &mut x.out,
                400,
                "the sign-in callback needs a form body with a Content-Length (at most 64 KiB)",
                !x.req.is_head,
            );
            return Step::Respond(400);
        }
    };
    let Some(form) = read_small_body(x, len).await else {
        answers::error_response(&mut x.out, 400, "the sign-in form did not arrive", true);
        return Step::Respond(400);
    };
    let status = complete(x, &host, &login_cookie, &form);
    Step::Respond(status)
}

/// Reads a body of `len` bytes the proxy answers itself (bounded by the
/// caller), within the body timeout; `None` when it does not arrive.
pub(super) async fn read_small_body(x: &mut Exchange<'_>, len: usize) -> Option<Vec<u8>> {
    let deadline = Instant::now() + x.core.limits.body_timeout;
    while x.client.buffered().len() < len {
        let left = deadline.saturating_duration_since(Instant::now());
        match within(left, x.client.fill(len.max(CLIENT_BUFFER))).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
    let body = x.client.buffered()[..len].to_vec();
    x.client.consume(len);
    Some(body)
}

/// Checks the posted token and writes the answer; returns its status.
fn complete(x: &mut Exchange<'_>, host: &str, login_cookie: &[u8], form: &[u8]) -> u16 {
    let snap = x.snap;
    let app = x.app();
    let refuse = |status: u16, reason: &str| {
        // The refusal is in the log record (status 403, action block); say
        // why on the data plane's error stream too.
        crate::say!("sign-in refused for {host}: {reason}");
        status
    };
    let Some(oidc) = app.oidc.as_deref().or(snap.sign_in.oidc()) else {
        answers::sign_in_failed(&mut x.out, 404, "Sign-in is not configured here.");
        return refuse(404, "sign-in is not configured");
    };
    let now = identity::now_unix();
    match snap
        .sign_in
        .complete_login(oidc, host, form, login_cookie, now)
    {
        Ok((session, return_to)) => {
            let Some(cookie) = snap.sign_in.seal_session(&session, &app.name) else {
                answers::sign_in_failed(&mut x.out, 500, "No session key is configured.");
                return refuse(500, "no session key");
            };
            let domain = snap.hosts.cookie_domain(x.req.app, x.req.app_host.as_str());
            answers::signed_in(
                &mut x.out,
                &answers::SignedIn {
                    return_to: &return_to,
                    cookie: &cookie,
                    domain: &domain,
                    lifetime_secs: snap.sign_in.lifetime_secs,
                },
            );
            x.served.user = session.user;
            303
        }
        Err(e) => {
            let why = e.to_string();
            answers::sign_in_failed(&mut x.out, 403, &why);
            refuse(403, &why)
        }
    }
}
