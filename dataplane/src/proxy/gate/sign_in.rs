//! The sign-in callbacks (part of phase *identity*): OpenID Connect's
//! (`/.palisade/callback`) and SAML's assertion consumer service
//! (`/.palisade/saml/acs`). Each reads the provider's form post
//! (Content-Length, bounded), checks it against the login state bound to
//! this browser, and answers with the session cookie and a redirect back,
//! or a refusal page naming the reason; either way a `sign-in` activity
//! record names the provider and the user or the reason.

use std::time::Instant;

use super::{proxy_host, Admitted, MAX_CALLBACK_BODY};
use crate::answers;
use crate::core::CLIENT_BUFFER;
use crate::http::Framing;
use crate::identity::{self, OidcProvider, SamlProvider};
use crate::io::within;
use crate::proxy::exchange::ActivityNote;
use crate::proxy::exchange::{Exchange, Step};
use palisade_schema::logrec::Action;

/// Completes an OpenID Connect sign-in; the answer is in `x.out`, and a
/// `sign-in` activity record says who, through which provider, or why not.
pub async fn callback(x: &mut Exchange<'_>, oidc: &OidcProvider) -> Step {
    let (host, login_cookie, form) = match read_callback(x).await {
        Ok(read) => read,
        Err(step) => return step,
    };
    let provider = format!("oidc issuer={}", oidc.issuer());
    let snap = x.snap;
    let now = identity::now_unix();
    match snap
        .sign_in
        .complete_login(oidc, &host, &form, &login_cookie, now)
    {
        Ok((session, return_to)) => {
            let status = match session_cookie(x, &session) {
                Some((cookie, domain)) => {
                    let answer = signed_in(x, &return_to, (&cookie, &domain));
                    answers::signed_in(&mut x.out, &answer);
                    x.served.user = session.user;
                    200
                }
                None => 500,
            };
            finish(x, status, format!("{provider} signed in"))
        }
        Err(e) => refused(x, &host, (&provider, &e.to_string())),
    }
}

/// The proxy host, the login cookie and the posted form of a sign-in
/// callback; or the 400 answer when no bounded form arrives.
async fn read_callback(x: &mut Exchange<'_>) -> Result<(String, Vec<u8>, Vec<u8>), Step> {
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
            return Err(Step::Respond(400));
        }
    };
    let Some(form) = read_small_body(x, len).await else {
        answers::error_response(&mut x.out, 400, "the sign-in form did not arrive", true);
        return Err(Step::Respond(400));
    };
    Ok((host, login_cookie, form))
}

/// The SAML assertion consumer service: validates the posted response and
/// answers with the session cookie and a redirect, or the refusal page
/// naming the reason. Either way a `sign-in` activity record says who,
/// through which identity provider, and why not.
pub async fn saml_acs(x: &mut Exchange<'_>, saml: &SamlProvider) -> Step {
    let (host, login_cookie, form) = match read_callback(x).await {
        Ok(read) => read,
        Err(step) => return step,
    };
    let snap = x.snap;
    let app = x.app();
    let scheme = if x.conn.ctx.tls { "https" } else { "http" };
    let now = identity::now_unix();
    let provider = format!("saml idp={}", saml.settings.idp_entity_id);
    let done = match saml.complete_login(&snap.sign_in, (scheme, &host), &form, &login_cookie, now)
    {
        Ok(done) => done,
        Err(e) => return refused(x, &host, (&provider, &e.to_string())),
    };
    let Some((cookie, domain)) = session_cookie(x, &done.session) else {
        return finish(x, 500, provider);
    };
    let signed_in = signed_in(x, &done.return_to, (&cookie, &domain));
    if let (Some(relay), false) = (app.saml_relay.as_deref(), done.solicited) {
        // Started at the identity provider for an app whose own sign-in
        // the proxy answers: on to the app at once.
        return super::relay::after_sign_in(x, relay, done.session, &done.relay_state, &signed_in);
    }
    answers::signed_in(&mut x.out, &signed_in);
    x.served.user = done.session.user;
    let flow = if done.solicited {
        "service provider"
    } else {
        "identity provider"
    };
    finish(x, 200, format!("{provider} initiated by the {flow}"))
}

/// The sealed session cookie for `session` and the domain it is set on;
/// `None` (and the 500 page) without a session key.
fn session_cookie(x: &mut Exchange<'_>, session: &identity::Session) -> Option<(String, String)> {
    let snap = x.snap;
    let Some(cookie) = snap.sign_in.seal_session(session, &x.app().name) else {
        answers::sign_in_failed(&mut x.out, 500, "No session key is configured.");
        return None;
    };
    let domain = snap.hosts.cookie_domain(x.req.app, x.req.app_host.as_str());
    Some((cookie, domain))
}

fn signed_in<'a>(
    x: &Exchange<'_>,
    return_to: &'a str,
    (cookie, domain): (&'a str, &'a str),
) -> answers::SignedIn<'a> {
    answers::SignedIn {
        return_to,
        cookie,
        domain,
        lifetime_secs: x.snap.sign_in.lifetime_secs,
    }
}

/// A refused sign-in: the 403 page naming the reason, said on the error
/// stream too, and the record.
fn refused(x: &mut Exchange<'_>, host: &str, (provider, why): (&str, &str)) -> Step {
    crate::say!("sign-in refused for {host}: {why}");
    answers::sign_in_failed(&mut x.out, 403, why);
    x.served.activity = Some(ActivityNote {
        name: "sign-in".into(),
        action: Some(Action::Block),
        detail: format!("{provider} reason={why}"),
        ..Default::default()
    });
    Step::Respond(403)
}

/// The `sign-in` record of a sign-in answered with `status` (200 here
/// means the 303 back to the app; 500: no session key).
fn finish(x: &mut Exchange<'_>, status: u16, detail: String) -> Step {
    let (status, action, detail) = match status {
        200 => (303, Action::Allow, detail),
        other => (
            other,
            Action::Block,
            format!("{detail} reason=no session key"),
        ),
    };
    x.served.activity = Some(ActivityNote {
        name: "sign-in".into(),
        action: Some(action),
        detail,
        ..Default::default()
    });
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
