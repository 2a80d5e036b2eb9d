//! The sign-in callbacks (part of phase *identity*): OpenID Connect's
//! (`/.palisade/callback`) and SAML's assertion consumer service
//! (`/.palisade/saml/acs`). Each reads the provider's form post
//! (Content-Length, bounded), checks it against the login state bound to
//! this browser, and answers with the session cookie and a redirect back,
//! or a refusal page naming the reason.

use std::time::Instant;

use super::{proxy_host, Admitted, MAX_CALLBACK_BODY};
use crate::answers;
use crate::core::CLIENT_BUFFER;
use crate::http::Framing;
use crate::identity::{self, SamlProvider};
use crate::io::within;
use crate::proxy::exchange::ActivityNote;
use crate::proxy::exchange::{Exchange, Step};
use palisade_schema::logrec::Action;

/// Completes a sign-in; the answer is in `x.out`.
pub async fn callback(x: &mut Exchange<'_>) -> Step {
    let (host, login_cookie, form) = match read_callback(x).await {
        Ok(read) => read,
        Err(step) => return step,
    };
    let status = complete(x, &host, &login_cookie, &form);
    Step::Respond(status)
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
    let idp = &saml.settings.idp_entity_id;
    let outcome = saml.complete_login(&snap.sign_in, (scheme, &host), &form, &login_cookie, now);
    let (status, action, detail) = match outcome {
        Ok(done) => match snap.sign_in.seal_session(&done.session, &app.name) {
            Some(cookie) => {
                let domain = snap.hosts.cookie_domain(x.req.app, x.req.app_host.as_str());
                let signed_in = answers::SignedIn {
                    return_to: &done.return_to,
                    cookie: &cookie,
                    domain: &domain,
                    lifetime_secs: snap.sign_in.lifetime_secs,
                };
                if let (Some(relay), false) = (app.saml_relay.as_deref(), done.solicited) {
                    // Started at the identity provider for an app whose own
                    // sign-in the proxy answers: on to the app at once.
                    return super::relay::after_sign_in(
                        x,
                        relay,
                        done.session,
                        &done.relay_state,
                        &signed_in,
                    );
                }
                answers::signed_in(&mut x.out, &signed_in);
                x.served.user = done.session.user;
                let flow = if done.solicited {
                    "service provider"
                } else {
                    "identity provider"
                };
                (
                    303,
                    Action::Allow,
                    format!("saml idp={idp} initiated by the {flow}"),
                )
            }
            None => {
                answers::sign_in_failed(&mut x.out, 500, "No session key is configured.");
                (
                    500,
                    Action::Block,
                    format!("saml idp={idp} reason=no session key"),
                )
            }
        },
        Err(e) => {
            let why = e.to_string();
            crate::say!("SAML sign-in refused for {host}: {why}");
            answers::sign_in_failed(&mut x.out, 403, &why);
            (403, Action::Block, format!("saml idp={idp} reason={why}"))
        }
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
    let Some(identity::SignInWith::Oidc(oidc)) = app.sign_in(&snap.sign_in) else {
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
