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
    use palisade_schema::policy::{compile_source, CompileOptions};

    const POLICY: &str = r#"
[proxy]
suffix = "p.test"
[[app]]
name = "box"
domains = ["box.test"]
[[app]]
name = "wiki"
domains = ["wiki.test"]
access_default = "block"
[[ip_tag]]
name = "corp"
ranges = ["10.0.0.0/8", "2001:db8::/32"]
[[access_policy]]
name = "curl out"
apps = ["box"]
user_agent_regex = "^curl/"
action = "block"
message = "No scripts."
[[access_policy]]
name = "unmanaged audit"
apps = ["box"]
devices = ["unmanaged"]
action = "audit"
[[access_policy]]
name = "eng from corp"
apps = ["wiki"]
groups = ["eng"]
ip_tags = ["corp"]
action = "allow"
[[access_policy]]
name = "contractors"
users = ["mallory"]
action = "monitor"
[[session_policy]]
name = "watch box"
control = "monitor"
apps = ["box"]
"#;

    fn table() -> AccessTable {
        let policy = compile_source(
            "t.toml",
            POLICY,
            std::path::Path::new("."),
            &CompileOptions::default(),
        )
        .expect("compiles");
        AccessTable::build(&policy).expect("builds")
    }

    fn user(table: &AccessTable, name: &str, groups: &[&str]) -> SignedInUser {
        let mut group_ids = Vec::new();
        table.group_ids(groups.iter().copied(), &mut group_ids);
        SignedInUser {
            user: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            user_id: table.user_id(name),
            group_ids,
            device_bits: 0,
            expires_unix: 0,
        }
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0";

    #[test]
    fn the_most_restrictive_matching_policy_decides() {
        let table = table();
        // (app, peer, managed device, user agent, user and groups,
        //  expected action, deciding policy (None: the app's default),
        //  session policies matched)
        type Case<'a> = (
            usize,
            &'a str,
            bool,
            &'a str,
            Option<(&'a str, &'a [&'a str])>,
            AccessAction,
            Option<&'a str>,
            usize,
        );
        let cases: &[Case<'_>] = &[
            (
                0,
                "192.0.2.1:1",
                true,
                CHROME,
                None,
                AccessAction::Allow,
                None,
                1,
            ),
            (
                0,
                "192.0.2.1:1",
                false,
                CHROME,
                None,
                AccessAction::Audit,
                Some("unmanaged audit"),
                1,
            ),
            (
                0,
                "192.0.2.1:1",
                true,
                "curl/8.5",
                None,
                AccessAction::Block,
                Some("curl out"),
                0,
            ),
            (
                0,
                "192.0.2.1:1",
                false,
                "curl/8.5",
                None,
                AccessAction::Block,
                Some("curl out"),
                0,
            ),
            (
                1,
                "10.1.2.3:1",
                true,
                CHROME,
                Some(("ann", &["eng"])),
                AccessAction::Allow,
                Some("eng from corp"),
                0,
            ),
            (
                1,
                "[2001:db8::7]:1",
                true,
                CHROME,
                Some(("ann", &["eng"])),
                AccessAction::Allow,
                Some("eng from corp"),
                0,
            ),
            (
                1,
                "192.0.2.1:1",
                true,
                CHROME,
                Some(("ann", &["eng"])),
                AccessAction::Block,
                None,
                0,
            ),
            (
                1,
                "10.1.2.3:1",
                true,
                CHROME,
                Some(("bob", &[])),
                AccessAction::Block,
                None,
                0,
            ),
            (
                0,
                "192.0.2.1:1",
                true,
                CHROME,
                Some(("mallory", &[])),
                AccessAction::Monitor,
                Some("contractors"),
                1,
            ),
            (
                1,
                "10.1.2.3:1",
                true,
                CHROME,
                Some(("mallory", &["eng"])),
                AccessAction::Monitor,
                Some("contractors"),
                0,
            ),
        ];
        for (i, &(app, peer, managed, ua, who, action, policy, session)) in cases.iter().enumerate()
        {
            let mut conn = Connection::new(peer.parse().unwrap(), true, managed);
            let signed_in = who.map(|(name, groups)| user(&table, name, groups));
            let v = decide(
                &table,
                1,
                &mut conn,
                Asking {
                    app,
                    user_agent: ua.as_bytes(),
                    signed_in: signed_in.as_ref(),
                },
            );
            assert_eq!(v.decision.action, action, "case {i}");
            assert_eq!(
                v.decision.policy.map(|p| table.policy_name(p)),
                policy,
                "case {i}"
            );
            assert_eq!(v.session_rules.len(), session, "case {i}");
        }
    }

    #[test]
    fn a_new_user_agent_on_the_same_connection_is_evaluated_again() {
        let table = table();
        let mut conn = Connection::new("192.0.2.1:1".parse().unwrap(), true, true);
        let mut ask = |ua: &str| {
            decide(
                &table,
                1,
                &mut conn,
                Asking {
                    app: 0,
                    user_agent: ua.as_bytes(),
                    signed_in: None,
                },
            )
            .decision
            .action
        };
        assert_eq!(ask(CHROME), AccessAction::Allow);
        assert_eq!(ask("curl/8.5"), AccessAction::Block);
        assert_eq!(ask(CHROME), AccessAction::Allow);
    }

    #[test]
    fn an_empty_policy_allows_everything_without_looking() {
        let table = AccessTable::empty();
        let mut conn = Connection::new("192.0.2.1:1".parse().unwrap(), false, false);
        let v = decide(
            &table,
            1,
            &mut conn,
            Asking {
                app: 0,
                user_agent: b"curl/8.5",
                signed_in: None,
            },
        );
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
