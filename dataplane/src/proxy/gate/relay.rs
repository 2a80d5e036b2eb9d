//! The SAML relay's proxy paths (part of phase *identity*): the proxy as
//! the identity provider of an app's own SAML sign-in
//! (`identity::saml_relay`).
//!
//! - `/.palisade/saml/idp/metadata`: what the app's administrator loads.
//! - `/.palisade/saml/idp/sso`: the app's `AuthnRequest` (app-initiated
//!   sign-in). Without a proxy session the user signs in at the proxy
//!   first and comes back here; with one, access is decided for the app
//!   (the block page on block) and the browser posts a signed response to
//!   the app's ACS on the proxy host.
//! - [`after_sign_in`]: an identity-provider-initiated sign-in at the
//!   proxy's ACS goes straight on to the app, the same way.
//!
//! Each answer (or refusal) is a `sign-in` activity record.

use palisade_schema::access::AccessAction;
use palisade_schema::logrec::Action;

use super::access::{decide, Asking};
use super::identity::{sign_in_required, user_of};
use super::{proxy_host, Admitted};
use crate::answers;
use crate::identity::saml_relay::SamlRelay;
use crate::identity::{self, Session, SignInWith};
use crate::proxy::exchange::{ActivityNote, Exchange, Step};

fn scheme(x: &Exchange<'_>) -> &'static str {
    if x.conn.ctx.tls {
        "https"
    } else {
        "http"
    }
}

fn record(x: &mut Exchange<'_>, action: Action, detail: String) {
    x.served.activity = Some(ActivityNote {
        name: "sign-in".into(),
        action: Some(action),
        detail,
        ..Default::default()
    });
}

/// `/.palisade/saml/idp/metadata`.
pub fn metadata(x: &mut Exchange<'_>, relay: &SamlRelay) -> Step {
    let host = proxy_host(&x.snap.hosts, x.req.app_host.as_str());
    let xml = relay.metadata(scheme(x), &host);
    answers::saml_metadata(&mut x.out, &xml, !x.req.is_head);
    x.admitted = Admitted::undecided(x.conn);
    Step::Respond(200)
}

/// `/.palisade/saml/idp/sso?SAMLRequest=…&RelayState=…`.
pub fn sso(x: &mut Exchange<'_>, relay: &SamlRelay, provider: Option<SignInWith<'_>>) -> Step {
    let snap = x.snap;
    let path = x.req.index.path.of(x.client_head());
    let query = path
        .splitn(2, |b| *b == b'?')
        .nth(1)
        .unwrap_or(b"")
        .to_vec();
    let sp = relay.settings.entity_id.clone();
    let (request, relay_state) = match relay.read_request(&query) {
        Ok(r) => r,
        Err(e) => {
            let why = e.to_string();
            x.admitted = Admitted::undecided(x.conn);
            answers::sign_in_failed(&mut x.out, 400, &why);
            record(x, Action::Block, format!("saml relay sp={sp} reason={why}"));
            return Step::Respond(400);
        }
    };
    let now = identity::now_unix();
    let app_name = snap.apps[x.req.app].name.clone();
    let session = snap.sign_in.open_session(
        x.req.index.session_cookie.of(x.client_head()),
        &app_name,
        now,
    );
    let Some(session) = session else {
        // Sign in at the proxy first; the sign-in returns here.
        return sign_in_required(x, provider);
    };
    answer(x, relay, session, (Some(&request.id), &relay_state), None)
}

/// Decides access for `session` at this app and answers with the signed
/// response for the app (or the block page). `signed_in` is the session
/// cookie being set by a sign-in that just completed.
fn answer(
    x: &mut Exchange<'_>,
    relay: &SamlRelay,
    session: Session,
    (in_response_to, relay_state): (Option<&str>, &str),
    signed_in: Option<&answers::SignedIn<'_>>,
) -> Step {
    let snap = x.snap;
    let sp = relay.settings.entity_id.clone();
    let user = std::rc::Rc::new(user_of(&snap.access, session.clone()));
    let verdict = decide(
        &snap.access,
        snap.version,
        x.conn,
        Asking {
            app: x.req.app,
            user_agent: x.req.index.user_agent.of(&x.upstream_head),
            signed_in: Some(&user),
        },
    );
    x.served.user = session.user.clone();
    x.admitted = Admitted {
        signed_in: Some(user),
        action: verdict.decision.action,
        policy: verdict.decision.policy,
        devices: verdict.devices,
        session_rules: verdict.session_rules,
    };
    let app = x.app();
    if verdict.decision.action == AccessAction::Block {
        let blocked = answers::Blocked {
            app: &app.name,
            activity: None,
            policy_message: verdict
                .decision
                .policy
                .map_or("", |p| snap.access.policy_message(p)),
            request_id: x.request_id,
            json: false,
        };
        answers::block_page(&mut x.out, &blocked, &snap.block_page, true);
        record(
            x,
            Action::Block,
            format!("saml relay sp={sp} reason=blocked by access policy"),
        );
        return Step::Respond(403);
    }
    let id = snap.sign_in.sealer.random_token(18);
    let response = match relay.issue(&session, in_response_to, &id, identity::now_unix()) {
        Ok(r) => r,
        Err(e) => {
            answers::sign_in_failed(&mut x.out, 500, &e.to_string());
            record(x, Action::Block, format!("saml relay sp={sp} reason={e}"));
            return Step::Respond(500);
        }
    };
    let suffix = String::from_utf8_lossy(snap.hosts.suffix()).into_owned();
    let action = relay.proxied_acs(scheme(x), &suffix);
    answers::saml_post_form(&mut x.out, (&action, &response, relay_state), signed_in);
    let flow = if in_response_to.is_some() {
        "the app"
    } else {
        "the identity provider"
    };
    record(
        x,
        Action::Allow,
        format!("saml relay sp={sp} initiated by {flow}"),
    );
    Step::Respond(200)
}

/// An identity-provider-initiated sign-in at the proxy's ACS of an app
/// with a relay: the session cookie and, in the same answer, the signed
/// response for the app (unsolicited; `relay_state` passed on).
pub fn after_sign_in(
    x: &mut Exchange<'_>,
    relay: &SamlRelay,
    session: Session,
    relay_state: &str,
    signed_in: &answers::SignedIn<'_>,
) -> Step {
    answer(x, relay, session, (None, relay_state), Some(signed_in))
}
