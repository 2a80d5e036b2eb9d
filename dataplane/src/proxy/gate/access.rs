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

use super::{Admitted, Connection, SignedInUser};
use crate::access::{self, AccessTable, Decision, Subject};
use crate::answers;
use crate::proxy::exchange::{Exchange, Step};
use crate::session_policy::RuleSet;

/// Who asks, for [`decide`].
pub struct Asking<'a> {
    pub app: usize,
    pub user_agent: &'a [u8],
    pub signed_in: Option<&'a SignedInUser>,
}

/// What the access policies decided for one request.
pub struct Verdict {
    pub decision: Decision,
    /// The connection's device tags and the identity token's.
    pub devices: u8,
    /// Session policies whose who/where filters match (none when blocked).
    pub session_rules: RuleSet,
}

/// The access decision, a function of the compiled table (snapshot
/// `version`), the connection's cached facts (refreshed here when the
/// snapshot or the user agent changed) and who asks.
pub fn decide(
    table: &AccessTable,
    version: u64,
    conn: &mut Connection,
    who: Asking<'_>,
) -> Verdict {
    let mut devices = conn.devices;
    if let Some(s) = who.signed_in {
        devices |= s.device_bits;
    }
    if table.allows_everything() {
        return Verdict {
            decision: Decision {
                action: AccessAction::Allow,
                policy: None,
            },
            devices,
            session_rules: RuleSet::default(),
        };
    }
    if conn.ip_version != version {
        table.connection_ip_sets(conn.ctx.peer.ip(), &mut conn.ip_sets);
        conn.ip_version = version;
    }
    let fresh_ua = !matches!(&conn.user_agent, Some((v, ua, _, _)) if *v == version && ua.as_slice() == who.user_agent);
    if fresh_ua {
        let bits = if table.has_user_agent_patterns() {
            table.user_agent_bits(who.user_agent)
        } else {
            0
        };
        conn.user_agent = Some((
            version,
            who.user_agent.to_vec(),
            access::client_kind(who.user_agent),
            bits,
        ));
    }
    let (client_kind, user_agent_bits) = conn
        .user_agent
        .as_ref()
        .map_or((access::CLIENT_NATIVE, 0), |(_, _, k, b)| (*k, *b));
    let subject = Subject {
        app: who.app,
        user: who.signed_in.and_then(|s| s.user_id),
        groups: who.signed_in.map_or(&[], |s| &s.group_ids),
        ip_sets: &conn.ip_sets,
        devices,
        client_kind,
        user_agent_bits,
    };
    let decision = table.evaluate(&subject);
    let mut session_rules = RuleSet::default();
    if decision.action != AccessAction::Block && table.has_session_policies(who.app) {
        table.session_matches(&subject, &mut session_rules);
    }
    Verdict {
        decision,
        devices,
        session_rules,
    }
}

/// Runs the phase.
pub fn access(x: &mut Exchange<'_>) -> Step {
    let snap = x.snap;
    let table = &snap.access;
    let signed_in = x.admitted.signed_in.take();
    let who = Asking {
        app: x.req.app,
        user_agent: x.req.index.user_agent.of(&x.upstream_head),
        signed_in: signed_in.as_deref(),
    };
    let Verdict {
        decision,
        devices,
        session_rules,
    } = decide(table, snap.version, x.conn, who);
    x.admitted = Admitted {
        signed_in,
        action: decision.action,
        policy: decision.policy,
        devices,
        session_rules,
    };
    if table.allows_everything() {
        return Step::Continue;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = include_str!("../../../testdata/gate_access.toml");

    const CHROME: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0";

    fn table() -> AccessTable {
        AccessTable::build(&crate::testing::policy(POLICY)).expect("builds")
    }

    /// `user:group,group` (or `-`: nobody signed in) as the table sees them.
    fn signed_in(table: &AccessTable, who: &str) -> Option<SignedInUser> {
        let (name, groups) = who.split_once(':')?;
        let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
        let mut group_ids = Vec::new();
        table.group_ids(groups.iter().copied(), &mut group_ids);
        Some(SignedInUser {
            user: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            user_id: table.user_id(name),
            group_ids,
            device_bits: 0,
            expires_unix: 0,
        })
    }

    fn ask(
        table: &AccessTable,
        conn: &mut Connection,
        app: usize,
        ua: &[u8],
        who: Option<&SignedInUser>,
    ) -> Verdict {
        let asking = Asking {
            app,
            user_agent: ua,
            signed_in: who,
        };
        decide(table, 1, conn, asking)
    }

    #[test]
    fn the_most_restrictive_matching_policy_decides() {
        let table = table();
        let cases = include_str!("../../../testdata/gate_access_cases.txt");
        for row in crate::testing::rows(cases) {
            let f: Vec<&str> = row.split('|').map(str::trim).collect();
            let ua = if f[3] == "chrome" {
                CHROME
            } else {
                f[3].as_bytes()
            };
            let mut conn = Connection::new(f[1].parse().unwrap(), true, f[2] == "managed");
            let who = signed_in(&table, f[4]);
            let v = ask(&table, &mut conn, f[0].parse().unwrap(), ua, who.as_ref());
            assert_eq!(v.decision.action.as_str(), f[5], "{row}");
            let policy = v.decision.policy.map_or("-", |p| table.policy_name(p));
            assert_eq!(policy, f[6], "{row}");
            assert_eq!(v.session_rules.len().to_string(), f[7], "{row}");
        }
    }

    #[test]
    fn a_new_user_agent_on_the_same_connection_is_evaluated_again() {
        let table = table();
        let mut conn = Connection::new("192.0.2.1:1".parse().unwrap(), true, true);
        for (ua, action) in [
            (CHROME, AccessAction::Allow),
            (b"curl/8.5".as_slice(), AccessAction::Block),
            (CHROME, AccessAction::Allow),
        ] {
            assert_eq!(ask(&table, &mut conn, 0, ua, None).decision.action, action);
        }
    }

    #[test]
    fn an_empty_policy_allows_everything_without_looking() {
        let table = AccessTable::empty();
        let mut conn = Connection::new("192.0.2.1:1".parse().unwrap(), false, false);
        let v = ask(&table, &mut conn, 0, b"curl/8.5", None);
        assert_eq!(
            v.decision,
            Decision {
                action: AccessAction::Allow,
                policy: None
            }
        );
        // Nothing was computed for the connection.
        assert!(conn.user_agent.is_none() && conn.ip_version == u64::MAX);
    }
}
