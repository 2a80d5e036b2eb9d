//! Phase *access*: the access policies decide (most restrictive matching
//! action wins) from the user, groups, the connection's IP sets and
//! devices, and the client kind; a blocked request gets the block page.
//! For a request let through, it finds the session policies whose
//! who/where filters match and shows the monitoring notice on a page
//! load when one of them asks for it.
//!
//! Runs after *identity*, while the request head is still in the client
//! buffer. Sets `x.admitted`; may answer (403 block page, the notice).

use palisade_schema::access::AccessAction;

use super::{Admitted, SignedInUser};
use crate::access::{self, Subject};
use crate::answers;
use crate::proxy::exchange::{Exchange, Step};

/// Runs the phase.
pub fn access(x: &mut Exchange<'_>) -> Step {
    let snap = x.snap;
    let table = &snap.access;
    let signed_in = x.admitted.signed_in.take();
    let mut devices = x.conn.devices;
    if let Some(s) = &signed_in {
        devices |= s.device_bits;
    }
    if table.allows_everything() {
        x.admitted = Admitted {
            signed_in,
            action: AccessAction::Allow,
            policy: None,
            devices,
            session_rules: Default::default(),
        };
        return Step::Continue;
    }
    let conn = &mut *x.conn;
    if conn.ip_version != snap.version {
        table.connection_ip_sets(conn.ctx.peer.ip(), &mut conn.ip_sets);
        conn.ip_version = snap.version;
    }
    let user_agent = x.req.index.user_agent.of(&x.upstream_head);
    let fresh_ua = !matches!(&conn.user_agent, Some((v, ua, _, _)) if *v == snap.version && ua.as_slice() == user_agent);
    if fresh_ua {
        let bits = if table.has_user_agent_patterns() {
            table.user_agent_bits(user_agent)
        } else {
            0
        };
        conn.user_agent = Some((
            snap.version,
            user_agent.to_vec(),
            access::client_kind(user_agent),
            bits,
        ));
    }
    let (client_kind, user_agent_bits) = conn
        .user_agent
        .as_ref()
        .map_or((access::CLIENT_NATIVE, 0), |(_, _, k, b)| (*k, *b));
    let subject = Subject {
        app: x.req.app,
        user: signed_in.as_ref().and_then(|s| s.user_id),
        groups: signed_in.as_ref().map_or(&[], |s| &s.group_ids),
        ip_sets: &conn.ip_sets,
        devices,
        client_kind,
        user_agent_bits,
    };
    let decision = table.evaluate(&subject);
    let mut session_rules = crate::session_policy::RuleSet::default();
    if decision.action != AccessAction::Block && table.has_session_policies(x.req.app) {
        table.session_matches(&subject, &mut session_rules);
    }
    x.admitted = Admitted {
        signed_in,
        action: decision.action,
        policy: decision.policy,
        devices,
        session_rules,
    };
    let with_body = !x.req.is_head;
    let app = x.app();
    if decision.action == AccessAction::Block {
        let blocked = answers::Blocked {
            app: &app.name,
            activity: None,
            policy_message: decision.policy.map_or("", |p| table.policy_message(p)),
            request_id: x.request_id,
            json: x.req.index.wants_json,
        };
        answers::block_page(&mut x.out, &blocked, &snap.block_page, with_body);
        return Step::Respond(403);
    }
    let policies = &snap.session_policies;
    if policies.wants_notice(&x.admitted.session_rules) && is_navigation(x) {
        let binding = notice_binding(x.admitted.signed_in.as_deref());
        let head = x.client_head();
        let cookie = x.req.index.notice_cookie.of(head);
        if !policies.notice_acknowledged(&app.name, &binding, cookie) {
            let path = x.req.index.path.of(head).to_vec();
            answers::notice_page(
                &mut x.out,
                (&policies.notice_text, &app.name),
                &path,
                with_body,
            );
            return Step::Respond(200);
        }
    }
    Step::Continue
}

/// A top-level page load (GET accepting HTML): where the monitoring
/// notice can be shown. Scripts, images and API calls are never replaced
/// by it.
fn is_navigation(x: &Exchange<'_>) -> bool {
    x.req.index.method(&x.upstream_head) == b"GET" && x.req.index.accepts_html
}

/// What the notice acknowledgement is bound to: the proxy session (user
/// and expiry), or the browser session when there is no sign-in.
pub(super) fn notice_binding(signed_in: Option<&SignedInUser>) -> String {
    signed_in.map_or_else(
        || "-".to_string(),
        |s| format!("{}|{}", s.user, s.expires_unix),
    )
}
