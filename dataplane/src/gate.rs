//! The identity and access phase of a request (after routing, before the
//! upstream): find the user (proxy session cookie or trusted headers),
//! send a user without one to sign in, serve the proxy's own paths
//! (`/.palisade/callback`, `/.palisade/logout`), and apply the access
//! policies — most restrictive matching action wins — answering blocked
//! requests with the block page.
//!
//! What a connection does not change between requests (its address's IP
//! sets, its device tags, the opened session for an unchanged cookie, the
//! user-agent match bits) is cached in [`ConnGate`] per snapshot version,
//! so the steady state costs a few comparisons and no allocation.

use std::rc::Rc;

use palisade_schema::access::AccessAction;

use crate::access::{self, Subject};
use crate::http::request::{GateFields, RequestInfo};
use crate::identity::{self, Provider, Session};
use crate::pages;
use crate::routes::RouteTable;

/// Largest sign-in callback body accepted (bytes).
pub const MAX_CALLBACK_BODY: u64 = 64 * 1024;

/// A user as the access table sees them.
pub struct SessionView {
    pub user: String,
    pub groups: Vec<String>,
    user_id: Option<u32>,
    group_ids: Vec<u32>,
    /// Tags from the identity token (compliant, domain_joined).
    device_bits: u8,
    expires_unix: i64,
}

struct CachedSession {
    /// The cookie value or identity header bytes it was made from.
    key: Vec<u8>,
    version: u64,
    app: usize,
    view: Rc<SessionView>,
}

/// Per-connection facts and caches.
pub struct ConnGate {
    /// Device tag bits of the connection (managed / unmanaged).
    pub conn_devices: u8,
    ip_version: u64,
    /// The address's IP sets (ranges and country) under `ip_version`.
    ip_sets: Vec<u32>,
    session: Option<CachedSession>,
    /// (version, user agent, kind bits, pattern bits).
    user_agent: Option<(u64, Vec<u8>, u8, u64)>,
}

impl ConnGate {
    pub fn new(managed: bool) -> ConnGate {
        ConnGate {
            conn_devices: if managed {
                access::DEVICE_MANAGED
            } else {
                access::DEVICE_UNMANAGED
            },
            ip_version: u64::MAX,
            ip_sets: Vec::new(),
            session: None,
            user_agent: None,
        }
    }
}

/// What the gate let through, for the request and its log record.
#[derive(Default)]
pub struct Admitted {
    pub session: Option<Rc<SessionView>>,
    pub action: AccessAction,
    pub policy: Option<u32>,
    pub devices: u8,
    /// Session policies whose who/where filters match, in policy order.
    pub session_rules: crate::session::RuleSet,
}

impl Admitted {
    pub fn user(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.user.as_str())
    }
}

/// The gate's verdict.
pub enum Gate {
    /// Forward to the app.
    Pass(Admitted),
    /// The proxy answered (the response is in the output buffer).
    Answered { status: u16, admitted: Admitted },
    /// A sign-in callback: read the body and complete the sign-in.
    Callback { host: String, login_cookie: Vec<u8> },
}

/// Everything `check` needs about the request.
pub struct Ask<'a> {
    pub routes: &'a RouteTable,
    pub req: &'a RequestInfo,
    /// The client's read buffer, starting with the request head.
    pub head: &'a [u8],
    /// The head as sent upstream (the User-Agent is located there).
    pub upstream_head: &'a [u8],
    pub peer: std::net::IpAddr,
    pub tls: bool,
    /// Shown on the block page (and the log record's request id).
    pub request_id: u64,
}

/// Decides a request. Writes the proxy's own response into `out` when it
/// answers.
pub fn check(a: &Ask<'_>, conn: &mut ConnGate, out: &mut Vec<u8>) -> Gate {
    let routes = a.routes;
    let req = a.req;
    let app = &routes.apps[req.app];
    let g = &req.gate;
    let with_body = !req.is_head;
    let host = req.app_host.as_str();
    let proxy_host = || format!("{host}.{}", String::from_utf8_lossy(routes.suffix()));
    // The app's own provider, else the global one.
    let oidc = app.oidc.as_deref().or(routes.identity.oidc());

    if g.reserved {
        let path = GateFields::slice(a.head, g.path);
        let path_only = path.split(|b| *b == b'?').next().unwrap_or(b"");
        if path_only == identity::CALLBACK_PATH.as_bytes() && oidc.is_none() {
            return answer_page(
                out,
                conn,
                404,
                "Not found",
                "Sign-in is not configured here.",
                with_body,
            );
        }
        if path_only == identity::CALLBACK_PATH.as_bytes() {
            return Gate::Callback {
                host: proxy_host(),
                login_cookie: GateFields::slice(a.head, g.login_cookie).to_vec(),
            };
        }
        if path_only == crate::session::NOTICE_PATH.as_bytes() {
            return acknowledge_notice(a, conn, out, path);
        }
        if path_only == identity::LOGOUT_PATH.as_bytes() {
            let domain = routes.cookie_domain(req.app, host);
            let headers = format!(
                "Set-Cookie: {}=; Domain={domain}; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax\r\n",
                String::from_utf8_lossy(identity::SESSION_COOKIE)
            );
            conn.session = None;
            let body = pages::html_page("Signed out", &["You have signed out of this app.".into()]);
            pages::own_response(out, 200, &headers, false, &body, with_body);
            return Gate::Answered {
                status: 200,
                admitted: undecided(conn),
            };
        }
        return answer_page(
            out,
            conn,
            404,
            "Not found",
            "No such proxy path.",
            with_body,
        );
    }

    // Identity.
    let now = identity::now_unix();
    let session = session_for(a, conn, now, oidc.is_some());
    if app.login_required && session.is_none() {
        return sign_in_required(a, oidc, conn, out, &proxy_host());
    }

    // Access.
    let mut devices = conn.conn_devices;
    if let Some(s) = &session {
        devices |= s.device_bits;
    }
    let access = &routes.access;
    if access.allows_everything() {
        return Gate::Pass(Admitted {
            session,
            action: AccessAction::Allow,
            policy: None,
            devices,
            session_rules: Default::default(),
        });
    }
    if conn.ip_version != routes.version {
        access.connection_ip_sets(a.peer, &mut conn.ip_sets);
        conn.ip_version = routes.version;
    }
    let (_, _, user_agent) = req.log_fields.split(a.upstream_head);
    let fresh_ua = !matches!(&conn.user_agent, Some((v, ua, _, _)) if *v == routes.version && ua.as_slice() == user_agent);
    if fresh_ua {
        let bits = if access.has_user_agent_patterns() {
            access.user_agent_bits(user_agent)
        } else {
            0
        };
        conn.user_agent = Some((
            routes.version,
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
        app: req.app,
        user: session.as_ref().and_then(|s| s.user_id),
        groups: session.as_ref().map_or(&[], |s| &s.group_ids),
        ip_sets: &conn.ip_sets,
        devices,
        client_kind,
        user_agent_bits,
    };
    let decision = access.evaluate(&subject);
    let mut session_rules = crate::session::RuleSet::default();
    if decision.action != AccessAction::Block && access.has_session_policies(req.app) {
        access.session_matches(&subject, &mut session_rules);
    }
    let admitted = Admitted {
        session,
        action: decision.action,
        policy: decision.policy,
        devices,
        session_rules,
    };
    if decision.action == AccessAction::Block {
        let message = decision.policy.map_or("", |p| access.policy_message(p));
        pages::block_page(
            out,
            g.wants_json,
            &app.name,
            None,
            message,
            &routes.block_page,
            &format!("{:016x}", a.request_id),
            with_body,
        );
        return Gate::Answered {
            status: 403,
            admitted,
        };
    }
    {
        if routes.session.wants_notice(&admitted.session_rules) && is_navigation(a) {
            let binding = notice_binding(admitted.session.as_deref());
            let cookie = GateFields::slice(a.head, g.notice_cookie);
            if !routes
                .session
                .notice_acknowledged(&app.name, &binding, cookie)
            {
                let path = GateFields::slice(a.head, g.path);
                notice_page(out, &routes.session.notice_text, &app.name, path, with_body);
                return Gate::Answered {
                    status: 200,
                    admitted,
                };
            }
        }
    }
    Gate::Pass(admitted)
}

/// A top-level page load (GET accepting HTML): where the monitoring
/// notice can be shown. Scripts, images and API calls are never replaced
/// by it.
fn is_navigation(a: &Ask<'_>) -> bool {
    let (method, _, _) = a.req.log_fields.split(a.upstream_head);
    method == b"GET"
        && crate::session::flow::header(a.upstream_head, b"accept")
            .is_some_and(|v| memchr::memmem::find(v, b"text/html").is_some())
}

/// What the notice acknowledgement is bound to: the proxy session (user
/// and expiry), or the browser session when there is no sign-in.
fn notice_binding(session: Option<&SessionView>) -> String {
    session.map_or_else(
        || "-".to_string(),
        |s| format!("{}|{}", s.user, s.expires_unix),
    )
}

/// The monitoring notice: the operator's text and a continue button that
/// records the acknowledgement and returns to the page.
fn notice_page(out: &mut Vec<u8>, text: &str, app: &str, path: &[u8], with_body: bool) {
    let text = if text.is_empty() {
        "Your organization monitors this session: downloads, uploads and other activities may be logged or restricted."
    } else {
        text
    };
    let back = identity::safe_return_path(std::str::from_utf8(path).unwrap_or("/"));
    let encoded = pages::percent_encode(back, b"-._~/");
    let body = pages::html_page(
        "This session is monitored",
        &[
            pages::escape_html(text),
            format!("App: {}", pages::escape_html(app)),
            format!(
                "<a id=\"continue\" href=\"{}?return={encoded}\">Continue to {}</a>",
                crate::session::NOTICE_PATH,
                pages::escape_html(app)
            ),
        ],
    );
    pages::own_response(
        out,
        200,
        "X-Palisade-Session: notice\r\n",
        false,
        &body,
        with_body,
    );
}

/// `/.palisade/notice?return=…`: remembers the acknowledgement for this
/// session and app (a sealed cookie), then goes back to the page.
fn acknowledge_notice(a: &Ask<'_>, conn: &mut ConnGate, out: &mut Vec<u8>, path: &[u8]) -> Gate {
    let routes = a.routes;
    let req = a.req;
    let app = &routes.apps[req.app];
    let oidc = app.oidc.as_deref().or(routes.identity.oidc());
    let session = session_for(a, conn, identity::now_unix(), oidc.is_some());
    let binding = notice_binding(session.as_deref());
    let query = path.splitn(2, |b| *b == b'?').nth(1).unwrap_or(b"");
    let back = url::form_urlencoded::parse(query)
        .find(|(k, _)| k == "return")
        .map(|(_, v)| identity::safe_return_path(&v).to_string())
        .unwrap_or_else(|| "/".into());
    let host = req.app_host.as_str();
    let domain = routes.cookie_domain(req.app, host);
    let secure = if a.tls { "; Secure" } else { "" };
    let mut headers = format!("Location: {back}\r\n");
    if let Some(token) = routes.session.seal_notice(&app.name, &binding) {
        headers.push_str(&format!(
            "Set-Cookie: {}={token}; Domain={domain}; Path=/; HttpOnly; SameSite=Lax{secure}\r\n",
            String::from_utf8_lossy(identity::NOTICE_COOKIE)
        ));
    }
    pages::own_response(out, 303, &headers, false, "", !req.is_head);
    Gate::Answered {
        status: 303,
        admitted: Admitted {
            session,
            devices: conn.conn_devices,
            ..Default::default()
        },
    }
}

fn answer_page(
    out: &mut Vec<u8>,
    conn: &ConnGate,
    status: u16,
    title: &str,
    text: &str,
    with_body: bool,
) -> Gate {
    let body = pages::html_page(title, &[pages::escape_html(text)]);
    pages::own_response(out, status, "", false, &body, with_body);
    Gate::Answered {
        status,
        admitted: undecided(conn),
    }
}

/// What is known of a request the proxy answers before deciding access:
/// the connection's device tags.
fn undecided(conn: &ConnGate) -> Admitted {
    Admitted {
        devices: conn.conn_devices,
        ..Admitted::default()
    }
}

/// The request's user: from the session cookie (OIDC) or the trusted
/// headers, through the connection's cache.
fn session_for(a: &Ask<'_>, conn: &mut ConnGate, now: i64, oidc: bool) -> Option<Rc<SessionView>> {
    let routes = a.routes;
    let g = &a.req.gate;
    let key: &[u8] = match &routes.identity.provider {
        _ if oidc => GateFields::slice(a.head, g.session_cookie),
        Provider::None | Provider::Oidc(_) => return None,
        // Trusted headers: user, then groups, as one cache key.
        Provider::TrustedHeader { .. } => GateFields::slice(a.head, g.trusted_user),
    };
    if key.is_empty() {
        return None;
    }
    let groups_value = GateFields::slice(a.head, g.trusted_groups);
    if let Some(c) = &conn.session {
        if c.version == routes.version
            && c.app == a.req.app
            && c.key.len() == key.len() + groups_value.len()
            && c.key.starts_with(key)
            && c.key.ends_with(groups_value)
            // Sessions expire: a cached one is re-checked against the clock.
            && c.view.expires_unix > now
        {
            return Some(c.view.clone());
        }
    }
    let app_name = &routes.apps[a.req.app].name;
    let session = match &routes.identity.provider {
        _ if oidc => routes.identity.open_session(key, app_name, now)?,
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
        },
    };
    let mut group_ids = Vec::new();
    routes
        .access
        .group_ids(session.groups.iter().map(String::as_str), &mut group_ids);
    let view = Rc::new(SessionView {
        user_id: routes.access.user_id(&session.user),
        device_bits: access::device_bits(session.device_tags.iter().map(String::as_str)),
        expires_unix: session.expires_unix,
        user: session.user,
        groups: session.groups,
        group_ids,
    });
    let mut cache_key = key.to_vec();
    cache_key.extend_from_slice(groups_value);
    // A cookie-based session is only cached while it is valid; the cache
    // is dropped when the snapshot changes.
    if session.expires_unix > now {
        conn.session = Some(CachedSession {
            key: cache_key,
            version: routes.version,
            app: a.req.app,
            view: view.clone(),
        });
    }
    Some(view)
}

/// No session: browsers navigating are sent to sign in; other requests
/// get 401.
fn sign_in_required(
    a: &Ask<'_>,
    oidc: Option<&identity::OidcProvider>,
    conn: &ConnGate,
    out: &mut Vec<u8>,
    proxy_host: &str,
) -> Gate {
    let g = &a.req.gate;
    let with_body = !a.req.is_head;
    let identity = &a.routes.identity;
    if let (Some(oidc), true) = (oidc, g.safe_method && !g.wants_json) {
        let path = String::from_utf8_lossy(GateFields::slice(a.head, g.path));
        let scheme = if a.tls { "https" } else { "http" };
        if let Some((url, login)) = identity.login_redirect(oidc, scheme, proxy_host, &path) {
            // The provider posts back cross-site: the login cookie must be
            // SameSite=None to come along (it holds no identity).
            let headers = format!(
                "Location: {url}\r\nSet-Cookie: {}={login}; Path={}; Max-Age=600; Secure; HttpOnly; SameSite=None\r\n",
                String::from_utf8_lossy(identity::LOGIN_COOKIE),
                identity::CALLBACK_PATH
            );
            let body = pages::html_page(
                "Sign in",
                &[format!(
                    "Continue to <a href=\"{0}\">sign in</a>.",
                    pages::escape_html(&url)
                )],
            );
            pages::own_response(out, 302, &headers, false, &body, with_body);
            return Gate::Answered {
                status: 302,
                admitted: undecided(conn),
            };
        }
    }
    let message = if oidc.is_some() {
        "Sign-in required: open this app in a browser to sign in."
    } else {
        "Sign-in required: no identity was received from the trusted identity proxy."
    };
    if g.wants_json {
        let body = serde_json::json!({"error": "sign_in_required", "message": message}).to_string();
        pages::own_response(out, 401, "", true, &body, with_body);
    } else {
        let body = pages::html_page("Sign-in required", &[pages::escape_html(message)]);
        pages::own_response(out, 401, "", false, &body, with_body);
    }
    Gate::Answered {
        status: 401,
        admitted: undecided(conn),
    }
}

/// Completes a sign-in from the callback body; writes the response (a
/// redirect with the session cookie, or a refusal page) into `out`.
/// Returns the status and the user on success.
pub fn complete_callback(
    routes: &RouteTable,
    app: usize,
    app_host: &str,
    host: &str,
    login_cookie: &[u8],
    form: &[u8],
    out: &mut Vec<u8>,
) -> (u16, Option<String>, String) {
    let now = identity::now_unix();
    let route = &routes.apps[app];
    let Some(oidc) = route.oidc.as_deref().or(routes.identity.oidc()) else {
        let body = pages::html_page(
            "Sign-in failed",
            &["Sign-in is not configured here.".into()],
        );
        pages::own_response(out, 404, "", false, &body, true);
        return (404, None, "sign-in is not configured".into());
    };
    match routes
        .identity
        .complete_login(oidc, host, form, login_cookie, now)
    {
        Ok((session, return_to)) => {
            let app_name = &routes.apps[app].name;
            let Some(cookie) = routes.identity.seal_session(&session, app_name) else {
                let body =
                    pages::html_page("Sign-in failed", &["No session key is configured.".into()]);
                pages::own_response(out, 500, "", false, &body, true);
                return (500, None, "no session key".into());
            };
            let domain = routes.cookie_domain(app, app_host);
            let headers = format!(
                "Location: {return_to}\r\nSet-Cookie: {}={cookie}; Domain={domain}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax\r\nSet-Cookie: {}=; Path={}; Max-Age=0; Secure; HttpOnly; SameSite=None\r\n",
                String::from_utf8_lossy(identity::SESSION_COOKIE),
                routes.identity.lifetime_secs,
                String::from_utf8_lossy(identity::LOGIN_COOKIE),
                identity::CALLBACK_PATH,
            );
            let body = pages::html_page(
                "Signed in",
                &[format!(
                    "Continue to <a href=\"{0}\">{0}</a>.",
                    pages::escape_html(&return_to)
                )],
            );
            pages::own_response(out, 303, &headers, false, &body, true);
            (303, Some(session.user), String::new())
        }
        Err(e) => {
            let body = pages::html_page(
                "Sign-in failed",
                &[
                    pages::escape_html(&e.0),
                    "Close this tab and open the app again to sign in.".into(),
                ],
            );
            pages::own_response(out, 403, "", false, &body, true);
            (403, None, e.0)
        }
    }
}
