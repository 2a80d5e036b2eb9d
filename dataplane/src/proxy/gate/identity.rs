//! Phase *identity*: who is asking. Serves the proxy's own paths (the
//! sign-in callbacks, SAML metadata, logout, the notice), finds
//! the user (the sign-in cookie, or trusted headers from a trusted
//! source) through the connection's cache, and sends a user without one
//! to sign in when the app requires it.
//!
//! Runs after *route*, while the request head is still in the client
//! buffer. Sets `x.admitted.signed_in`; may answer (404 for unknown proxy
//! paths, the sign-in redirect or 401, logout, the sign-in callback, the
//! notice acknowledgement).

use std::rc::Rc;

use super::{proxy_host, sign_in, Admitted, CachedUser, SignedInUser};
use crate::answers;
use crate::identity::{self, saml, saml_relay, Provider, Session, SignInWith};
use crate::proxy::exchange::{Exchange, Step};

/// Runs the phase.
pub async fn identity(x: &mut Exchange<'_>) -> Step {
    let snap = x.snap;
    let app = x.app();
    // The app's own provider, else the global one.
    let provider = app.sign_in(&snap.sign_in);
    let cookie_sessions = provider.is_some();
    let with_body = !x.req.is_head;
    if x.req.index.reserved {
        let path = x.req.index.path.of(x.client_head());
        let path_only = path.split(|b| *b == b'?').next().unwrap_or(b"");
        if path_only == identity::CALLBACK_PATH.as_bytes() {
            let Some(SignInWith::Oidc(oidc)) = provider else {
                return not_found(x, "OpenID Connect sign-in is not configured here.");
            };
            return sign_in::callback(x, oidc).await;
        }
        if path_only == saml::ACS_PATH.as_bytes() {
            let Some(SignInWith::Saml(saml)) = provider else {
                return not_found(x, "SAML sign-in is not configured here.");
            };
            return sign_in::saml_acs(x, saml).await;
        }
        if let Some(relay) = app.saml_relay.as_deref() {
            if path_only == saml_relay::SSO_PATH.as_bytes() {
                return super::relay::sso(x, relay, provider);
            }
            if path_only == saml_relay::METADATA_PATH.as_bytes() {
                return super::relay::metadata(x, relay);
            }
        }
        if path_only == saml::METADATA_PATH.as_bytes() {
            let Some(SignInWith::Saml(saml)) = provider else {
                return not_found(x, "SAML sign-in is not configured here.");
            };
            let scheme = if x.conn.ctx.tls { "https" } else { "http" };
            let host = proxy_host(&snap.hosts, x.req.app_host.as_str());
            answers::saml_metadata(&mut x.out, &saml.metadata(scheme, &host), with_body);
            x.admitted = Admitted::undecided(x.conn);
            return Step::Respond(200);
        }
        if path_only == answers::NOTICE_PATH.as_bytes() {
            let path = path.to_vec();
            return acknowledge_notice(x, &path);
        }
        if path_only == crate::client::SCRIPT_PATH.as_bytes() {
            // It lists the policy's app domains: only for who may use the
            // app.
            let signed_in = signed_in_user(x, identity::now_unix(), cookie_sessions);
            if app.login_required && signed_in.is_none() {
                return sign_in_required(x, provider);
            }
            answers::client_script(&mut x.out, &snap.client.script, with_body);
            x.admitted = Admitted::undecided(x.conn);
            return Step::Respond(200);
        }
        if path_only == crate::client::ACTIVITY_PATH.as_bytes() {
            return browser_activity(x, cookie_sessions).await;
        }
        if path_only == crate::client::REPORT_PATH.as_bytes() {
            return leak_report(x, cookie_sessions).await;
        }
        if path_only == identity::LOGOUT_PATH.as_bytes() {
            let host = x.req.app_host.as_str();
            let domain = snap.hosts.cookie_domain(x.req.app, host);
            x.conn.signed_in = None;
            answers::signed_out(&mut x.out, &domain, with_body);
            x.admitted = Admitted::undecided(x.conn);
            return Step::Respond(200);
        }
        return not_found(x, "No such proxy path.");
    }
    let signed_in = signed_in_user(x, identity::now_unix(), cookie_sessions);
    // A CORS preflight carries no cookies (Fetch §3.7.2): it goes to the
    // app as an anonymous request (access policies still decide), or no
    // cross-origin API call of a signed-in user could ever be made.
    let preflight = x.req.index.is_cors_preflight(&x.upstream_head);
    if app.login_required && signed_in.is_none() && !preflight {
        return sign_in_required(x, provider);
    }
    x.admitted.signed_in = signed_in;
    Step::Continue
}

fn not_found(x: &mut Exchange<'_>, text: &str) -> Step {
    answers::simple_page(&mut x.out, 404, ("Not found", text), !x.req.is_head);
    x.admitted = Admitted::undecided(x.conn);
    Step::Respond(404)
}

/// `/.palisade/notice?return=…`: remembers the acknowledgement for this
/// session and app (a sealed cookie), then goes back to the page.
fn acknowledge_notice(x: &mut Exchange<'_>, path: &[u8]) -> Step {
    let snap = x.snap;
    let app = x.app();
    let cookie_sessions = app.sign_in(&snap.sign_in).is_some();
    let signed_in = signed_in_user(x, identity::now_unix(), cookie_sessions);
    let binding = super::access::notice_binding(signed_in.as_deref());
    let query = path.splitn(2, |b| *b == b'?').nth(1).unwrap_or(b"");
    let back = url::form_urlencoded::parse(query)
        .find(|(k, _)| k == "return")
        .map(|(_, v)| identity::safe_return_path(&v).to_string())
        .unwrap_or_else(|| "/".into());
    let domain = snap.hosts.cookie_domain(x.req.app, x.req.app_host.as_str());
    let token = snap.session_policies.seal_notice(&app.name, &binding);
    let cookie = token
        .as_deref()
        .map(|t| (t, domain.as_str(), x.conn.ctx.tls));
    answers::notice_acknowledged(&mut x.out, &back, cookie, !x.req.is_head);
    x.admitted = Admitted {
        signed_in,
        devices: x.conn.devices,
        ..Default::default()
    };
    Step::Respond(303)
}

/// The request's user: from the sign-in cookie (`cookie_sessions`: the
/// app signs in through OpenID Connect or SAML) or the trusted headers,
/// through the connection's cache.
pub(super) fn signed_in_user(
    x: &mut Exchange<'_>,
    now: i64,
    cookie_sessions: bool,
) -> Option<Rc<SignedInUser>> {
    let snap = x.snap;
    let index = x.req.index;
    let head = x.client_head();
    let key: &[u8] = match &snap.sign_in.provider {
        _ if cookie_sessions => index.session_cookie.of(head),
        Provider::None | Provider::Oidc(_) | Provider::Saml(_) => return None,
        // Trusted headers: user, then groups, as one cache key.
        Provider::TrustedHeader { .. } => index.trusted_user.of(head),
    };
    if key.is_empty() {
        return None;
    }
    let groups_value = index.trusted_groups.of(head);
    if let Some(c) = &x.conn.signed_in {
        if c.version == snap.version
            && c.app == x.req.app
            && c.key.len() == key.len() + groups_value.len()
            && c.key.starts_with(key)
            && c.key.ends_with(groups_value)
            // Sessions expire: a cached one is re-checked against the clock.
            && c.user.expires_unix > now
        {
            return Some(c.user.clone());
        }
    }
    let app_name = &snap.apps[x.req.app].name;
    let session = match &snap.sign_in.provider {
        _ if cookie_sessions => snap.sign_in.open_session(key, app_name, now)?,
        _ => Session {
            user: String::from_utf8_lossy(key).into_owned(),
            groups: String::from_utf8_lossy(groups_value)
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
            device_tags: Vec::new(),
            expires_unix: i64::MAX,
            name_id: String::new(),
            attributes: Vec::new(),
        },
    };
    let expires_unix = session.expires_unix;
    let user = Rc::new(user_of(&snap.access, session));
    let mut cache_key = key.to_vec();
    cache_key.extend_from_slice(groups_value);
    // A cookie-based session is only cached while it is valid; the cache
    // is dropped when the snapshot changes.
    if expires_unix > now {
        x.conn.signed_in = Some(CachedUser {
            key: cache_key,
            version: snap.version,
            app: x.req.app,
            user: user.clone(),
        });
    }
    Some(user)
}

/// A session as the access table sees its user.
pub(super) fn user_of(table: &crate::access::AccessTable, session: Session) -> SignedInUser {
    let mut group_ids = Vec::new();
    table.group_ids(session.groups.iter().map(String::as_str), &mut group_ids);
    SignedInUser {
        user_id: table.user_id(&session.user),
        device_bits: crate::access::device_bits(session.device_tags.iter().map(String::as_str)),
        expires_unix: session.expires_unix,
        user: session.user,
        groups: session.groups,
        group_ids,
    }
}

/// No session: browsers navigating are sent to sign in; other requests
/// get 401.
pub(super) fn sign_in_required(x: &mut Exchange<'_>, provider: Option<SignInWith<'_>>) -> Step {
    let index = x.req.index;
    let with_body = !x.req.is_head;
    let sign_in = &x.snap.sign_in;
    x.admitted = Admitted::undecided(x.conn);
    // Only a page load is sent to sign in: the redirect sets the login
    // cookie its callback must find, and a subresource of the same page
    // (an image, a script, the favicon) sent there too would replace it
    // and fail the sign-in in progress. Browsers say what a request is for
    // (Sec-Fetch-Dest); without that, any GET not asking for JSON is one.
    let page_load = matches!(
        index.fetch_dest,
        crate::rewrite::consumer::FetchDest::Document
            | crate::rewrite::consumer::FetchDest::Unknown
    );
    if let (Some(provider), true) = (
        provider,
        index.safe_method && !index.wants_json && page_load,
    ) {
        let path = String::from_utf8_lossy(index.path.of(x.client_head())).into_owned();
        let scheme = if x.conn.ctx.tls { "https" } else { "http" };
        let proxy_host = proxy_host(&x.snap.hosts, x.req.app_host.as_str());
        let redirect = match provider {
            SignInWith::Oidc(oidc) => sign_in
                .login_redirect(oidc, scheme, &proxy_host, &path)
                .map(|(url, login)| (url, login, None)),
            SignInWith::Saml(saml) => {
                let acs_host = x
                    .snap
                    .hosts
                    .cookie_domain(x.req.app, x.req.app_host.as_str());
                saml.login_redirect(sign_in, scheme, (&proxy_host, &acs_host), &path)
                    .map(|(url, login)| (url, login, Some(acs_host)))
            }
        };
        if let Some((url, login, domain)) = redirect {
            answers::sign_in_redirect(&mut x.out, &url, (&login, domain.as_deref()), with_body);
            return Step::Respond(302);
        }
    }
    let message = if provider.is_some() {
        "Sign-in required: open this app in a browser to sign in."
    } else {
        "Sign-in required: no identity was received from the trusted identity proxy."
    };
    answers::sign_in_required(&mut x.out, message, index.wants_json, with_body);
    Step::Respond(401)
}

/// Largest violation report read (bytes); browsers send a few hundred.
const MAX_REPORT_BODY: u64 = 16 * 1024;

/// A leak guard violation report: each violation becomes a `leak`
/// activity record (blocked if the policy was enforced, else audited) with
/// the escaped URL, the page and the directive. Answered 204 either way.
async fn leak_report(x: &mut Exchange<'_>, oidc: bool) -> Step {
    let signed_in = signed_in_user(x, identity::now_unix(), oidc);
    x.consume_head();
    x.admitted = Admitted::undecided(x.conn);
    x.admitted.signed_in = signed_in;
    let body = match x.req.framing {
        crate::http::Framing::Length(n) if n <= MAX_REPORT_BODY => {
            sign_in::read_small_body(x, n as usize).await
        }
        _ => None,
    };
    let Some(body) = body else {
        answers::error_response(
            &mut x.out,
            400,
            "a violation report is a JSON body of at most 16 KiB",
            !x.req.is_head,
        );
        return Step::Respond(400);
    };
    if let Some(v) = crate::client::parse_report(&body).into_iter().next() {
        use palisade_schema::logrec::Action;
        x.served.activity = Some(crate::proxy::exchange::ActivityNote {
            name: "leak".into(),
            action: Some(if v.enforced {
                Action::Block
            } else {
                Action::Audit
            }),
            detail: format!(
                "url={} page={} directive={}",
                v.blocked, v.page, v.directive
            ),
            ..Default::default()
        });
    }
    answers::no_content(&mut x.out);
    Step::Respond(204)
}

/// A browser activity the instrumentation stopped or saw (copy, cut,
/// paste, print): recorded as an activity of the session policy that
/// controls it for this user, decided here again (the browser only says
/// what happened). Answered 204; nothing is recorded when no policy
/// controls it.
async fn browser_activity(x: &mut Exchange<'_>, oidc: bool) -> Step {
    use palisade_schema::logrec::Action;
    use palisade_schema::session::{SessionAction, BROWSER_ACTIVITIES};
    let signed_in = signed_in_user(x, identity::now_unix(), oidc);
    x.consume_head();
    let body = match x.req.framing {
        crate::http::Framing::Length(n) if n <= MAX_REPORT_BODY => {
            sign_in::read_small_body(x, n as usize).await
        }
        _ => None,
    };
    let name = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| {
            v.get("activity")
                .and_then(|a| a.as_str())
                .map(str::to_string)
        })
        .filter(|n| BROWSER_ACTIVITIES.contains(&n.as_str()));
    let Some(name) = name else {
        x.admitted = Admitted::undecided(x.conn);
        answers::error_response(
            &mut x.out,
            400,
            "expected {\"activity\": \"copy\"|\"cut\"|\"paste\"|\"print\"}",
            !x.req.is_head,
        );
        return Step::Respond(400);
    };
    let snap = x.snap;
    let asking = super::access::Asking {
        app: x.req.app,
        user_agent: x.req.index.user_agent.of(&x.upstream_head),
        signed_in: signed_in.as_deref(),
    };
    let verdict = super::access::decide(&snap.access, snap.version, x.conn, asking);
    let policies = &snap.session_policies;
    if let Some(rule) = policies.blocking_activity(&verdict.session_rules, &name) {
        let r = policies.rule(rule);
        x.served.activity = Some(crate::proxy::exchange::ActivityNote {
            name,
            action: Some(match r.action {
                SessionAction::Block => Action::Block,
                _ => Action::Audit,
            }),
            policy: Some(r.name.clone()),
            detail: "in the browser".into(),
            ..Default::default()
        });
    }
    x.admitted = Admitted {
        signed_in,
        action: verdict.decision.action,
        policy: verdict.decision.policy,
        devices: verdict.devices,
        session_rules: verdict.session_rules,
    };
    answers::no_content(&mut x.out);
    Step::Respond(204)
}
