//! The console's pages: handlers and their HTML (maud templates, escaped by
//! construction). Pages work without scripts except the charts, live tail
//! and the export progress bar, which `assets/console.js` drives from the
//! JSON and server-sent-event routes here.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use maud::{html, Markup, DOCTYPE};
use palisade_schema::access::IdentityProvider;

use super::auth::{self, Role, Session};
use super::data::{self, LogFilter};
use super::{refuse_viewer, Console, Peer, Who};
use crate::logcli::{self, By, Filter};
use crate::server::AdminEntry;

type Ctx = State<Arc<Console>>;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs store work off the async threads; its error as a 500 page.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, &e)),
        Err(e) => Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

/// A page with only a message (errors, refusals).
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Palisade console" } link rel="stylesheet" href="/assets/console.css"; }
            body.bare {
                main.narrow {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p #message { (message) }
                    p { a href="/" { "Back to the console" } }
                }
            }
        }
    };
    (status, page).into_response()
}

pub async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "There is no such page.")
}

const NAV: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/log", "Activity log"),
    ("/tail", "Live tail"),
    ("/report", "Traffic report"),
    ("/exports", "Exports"),
    ("/alerts", "Alerts"),
    ("/policies", "Policies"),
];

/// The frame of every signed-in page.
fn layout(who: &Who, current: &str, title: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(who.csrf);
                title { (title) " · Palisade console" }
                link rel="stylesheet" href="/assets/uPlot.min.css";
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/uPlot.iife.min.js" defer {}
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    span.brand { "Palisade" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=[(href == current).then_some("here")] { (label) }
                        }
                    }
                    span.who {
                        span #user { (who.session.user) } " · "
                        span #role { (who.session.role.as_str()) }
                        form.inline method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    page.into_response()
}

fn csrf_field(who: &Who) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// Stores an admin action; failing to, the action's page says so.
async fn record_admin(
    console: &Arc<Console>,
    who: &Who,
    path: &str,
    activity: &str,
    detail: String,
    file_name: String,
) -> Option<String> {
    let entry = AdminEntry {
        admin: who.session.user.clone(),
        client: who.peer,
        user_agent: who.user_agent.clone(),
        host: who.host.clone(),
        path: path.to_string(),
        activity: activity.to_string(),
        detail,
        file_name,
        status: 200,
    };
    let daemon = console.daemon.clone();
    match tokio::task::spawn_blocking(move || daemon.record_admin(&entry)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(e.to_string()),
    }
}

// ---- sign-in ----------------------------------------------------------

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct SigninQuery {
    error: String,
}

fn oidc_of(console: &Console) -> Option<palisade_schema::access::Oidc> {
    match console.daemon.current_policy()?.identity.provider {
        IdentityProvider::Oidc(o) => Some(o),
        _ => None,
    }
}

pub async fn signin_page(State(console): Ctx, Query(q): Query<SigninQuery>) -> Response {
    let oidc = oidc_of(&console);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign in · Palisade console" } link rel="stylesheet" href="/assets/console.css"; }
            body.bare {
                main.narrow {
                    h1 { "Palisade console" }
                    @if !q.error.is_empty() { p.error #signin-error { (q.error) } }
                    @if let Some(o) = &oidc {
                        p { a.button #signin-oidc href="/signin/oidc" { "Sign in with " (o.issuer) } }
                    } @else {
                        p { "The policy names no OpenID Connect provider: sign in with a bootstrap token." }
                    }
                    details open[oidc.is_none()] {
                        summary { "Bootstrap token" }
                        p { "A one-time token from " code { "controld console-token" } " signs in as admin once." }
                        form method="post" action="/signin/token" {
                            label { "Token " input #token type="password" name="token" autocomplete="off"; }
                            " "
                            button #signin-token type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
    };
    page.into_response()
}

#[derive(serde::Deserialize)]
pub struct TokenForm {
    token: String,
}

fn start_session(
    console: &Console,
    user: String,
    role: Role,
    provider: String,
) -> (Session, String) {
    let session = Session {
        user,
        role,
        expires: auth::now_secs() + console.settings.session_lifetime.as_secs() as i64,
        id: console.keys.random(16),
        provider,
    };
    let cookie = auth::session_set_cookie(
        &console.keys.session_cookie(&session),
        console.settings.session_lifetime.as_secs() as i64,
    );
    (session, cookie)
}

fn who_of(
    console: &Console,
    session: Session,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
) -> Who {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Who {
        csrf: console.keys.csrf(&session),
        session,
        peer: peer
            .map(|p| p.0 .0)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        user_agent: text(header::USER_AGENT),
        host: text(header::HOST),
    }
}

fn to_signin(error: &str) -> Response {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", error)
        .finish();
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/signin?{q}"))],
    )
        .into_response()
}

pub async fn signin_token(
    State(console): Ctx,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let state_dir = console.settings.state_dir.clone();
    let token = form.token;
    let used =
        tokio::task::spawn_blocking(move || auth::use_bootstrap_token(&state_dir, &token)).await;
    match used {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return to_signin(&e.to_string()),
        Err(e) => return to_signin(&e.to_string()),
    }
    let (session, cookie) = start_session(
        &console,
        "bootstrap".into(),
        Role::Admin,
        "bootstrap".into(),
    );
    let who = who_of(&console, session, peer, &headers);
    record_admin(
        &console,
        &who,
        "/signin/token",
        "console sign-in",
        "bootstrap token, role admin".into(),
        String::new(),
    )
    .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

pub async fn signin_oidc(State(console): Ctx, headers: HeaderMap) -> Response {
    let Some(oidc) = oidc_of(&console) else {
        return to_signin("The policy names no OpenID Connect provider.");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pending = console.keys.new_pending();
    let Ok(mut url) = url::Url::parse(&oidc.authorization_endpoint) else {
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The provider's authorization endpoint is not a URL.",
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "id_token")
        .append_pair("response_mode", "form_post")
        .append_pair("client_id", &oidc.client_id)
        .append_pair(
            "redirect_uri",
            &format!("https://{host}/signin/oidc/callback"),
        )
        .append_pair(
            "scope",
            if oidc.scopes.is_empty() {
                "openid profile"
            } else {
                &oidc.scopes
            },
        )
        .append_pair("nonce", &pending.nonce)
        .append_pair("state", &pending.state);
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                auth::pending_set_cookie(&console.keys.pending_cookie(&pending)),
            ),
            (header::LOCATION, url.to_string()),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Callback {
    id_token: String,
    state: String,
    error: String,
}

pub async fn signin_oidc_callback(
    State(console): Ctx,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<Callback>,
) -> Response {
    let pending = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::cookie(h, auth::SIGNIN_COOKIE))
        .and_then(|c| console.keys.pending(c));
    let Some(pending) = pending else {
        return to_signin("This sign-in was not started here, or took too long: try again.");
    };
    if !form.error.is_empty() {
        return to_signin(&format!("The provider refused: {}", form.error));
    }
    if !auth::same(form.state.as_bytes(), pending.state.as_bytes()) {
        return to_signin("The sign-in answer does not belong to this browser's sign-in.");
    }
    let Some(oidc) = oidc_of(&console) else {
        return to_signin("The policy names no OpenID Connect provider.");
    };
    let claims = palisade_schema::jwt::KeySet::parse(&oidc.jwks)
        .map_err(|e| e.to_string())
        .and_then(|keys| {
            palisade_schema::jwt::verify(
                &form.id_token,
                &keys,
                &palisade_schema::jwt::Expect {
                    issuer: &oidc.issuer,
                    audience: &oidc.client_id,
                    nonce: &pending.nonce,
                    now_unix: auth::now_secs(),
                },
            )
            .map_err(|e| e.to_string())
        });
    let claims = match claims {
        Ok(c) => c,
        Err(e) => return to_signin(&format!("The provider's token was refused: {e}")),
    };
    let role = if claims
        .groups
        .iter()
        .any(|g| *g == console.settings.admin_group)
    {
        Role::Admin
    } else if claims
        .groups
        .iter()
        .any(|g| *g == console.settings.viewer_group)
    {
        Role::Viewer
    } else {
        return to_signin(&format!(
            "{} is in neither the {} nor the {} group.",
            claims.user, console.settings.admin_group, console.settings.viewer_group
        ));
    };
    let (session, cookie) = start_session(&console, claims.user.clone(), role, oidc.issuer.clone());
    let who = who_of(&console, session, peer, &headers);
    record_admin(
        &console,
        &who,
        "/signin/oidc/callback",
        "console sign-in",
        format!("{}, role {}", oidc.issuer, role.as_str()),
        String::new(),
    )
    .await;
    // The provider posted here cross-site: a Strict cookie would not go
    // with a redirect from this answer, so the page moves on itself.
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta http-equiv="refresh" content="0;url=/"; title { "Signed in" } }
            body { p { "Signed in. " a href="/" { "Continue" } } }
        }
    };
    (
        StatusCode::OK,
        // Appended: an array of headers would keep only the last cookie.
        axum::response::AppendHeaders([
            (header::SET_COOKIE, cookie),
            (header::SET_COOKIE, auth::pending_clear_cookie()),
        ]),
        page,
    )
        .into_response()
}

pub async fn signout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, auth::session_clear_cookie()),
            (header::LOCATION, "/signin".to_string()),
        ],
    )
        .into_response()
}

// ---- overview ---------------------------------------------------------

fn duration_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

pub async fn overview(State(console): Ctx, Extension(who): Extension<Who>) -> Response {
    let cores = console.daemon.cores();
    let current = console.daemon.current_version();
    let state_dir = console.settings.state_dir.clone();
    let day_ago = now_us() - 86_400_000_000;
    let tops = blocking(move || {
        let conn = data::open(&state_dir)?;
        Ok((
            data::top(&conn, "app", day_ago, 10)?,
            data::top(&conn, "user", day_ago, 10)?,
            data::top(&conn, "client_ip", day_ago, 10)?,
        ))
    })
    .await;
    let (apps, users, ips) = match tops {
        Ok(t) => t,
        Err(r) => return r,
    };
    let top = |title: &str, id: &str, filter: &str, rows: &[(String, i64)]| {
        html! {
            section.top-list {
                h3 { (title) }
                table #(id) {
                    tr { th { "" } th.num { "requests" } }
                    @for (k, n) in rows {
                        tr { td { a href=(format!("/log?{filter}={}", urlencode(k))) { (k) } } td.num { (n) } }
                    }
                }
            }
        }
    };
    let body = html! {
        section {
            h2 { "Nodes and cores" }
            p { "Current policy version " strong #current-version { (current) } "." }
            @if let Some(why) = console.daemon.changes_refused() { p.note { (why) } }
            table #cores {
                tr { th { "pid" } th { "core" } th { "version" } th { "connected for" } th { "last error" } }
                @for c in &cores {
                    tr { td { (c.pid) } td { (c.core) } td { (c.version) } td { (duration_text(c.connected_for)) } td { (c.last_error) } }
                }
                @if cores.is_empty() { tr { td colspan="5" { "No data-plane core is connected." } } }
            }
        }
        section {
            h2 { "Traffic" }
            p.ranges {
                @for (r, label) in [("hour", "Last hour"), ("day", "Last day"), ("week", "Last week")] {
                    button.range type="button" data-range=(r) { (label) }
                }
            }
            div #chart data-series="/overview/series" {}
        }
        section.tops {
            h2 { "Top over the last day" }
            div.columns {
                (top("Apps", "top-apps", "app", &apps))
                (top("Users", "top-users", "user", &users))
                (top("Client IPs", "top-ips", "ip", &ips))
            }
        }
    };
    layout(&who, "/", "Overview", body)
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct SeriesQuery {
    range: String,
}

pub async fn overview_series(State(console): Ctx, Query(q): Query<SeriesQuery>) -> Response {
    let (span, buckets) = match q.range.as_str() {
        "" | "hour" => (3600, 60),
        "day" => (86_400, 96),
        "week" => (7 * 86_400, 168),
        _ => return refusal(StatusCode::BAD_REQUEST, "range: hour, day or week"),
    };
    let state_dir = console.settings.state_dir.clone();
    match blocking(move || data::series(&data::open(&state_dir)?, now_us(), span, buckets)).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

/// A time to the second, for lists (records keep microseconds).
fn short_time(us: i64) -> String {
    let t = crate::alerts::rfc3339(us);
    format!("{} {}", &t[..10], &t[11..19])
}

/// A byte count in binary units.
fn size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- activity log -----------------------------------------------------

fn log_table(rows: &[data::LogRow], id: &str) -> Markup {
    html! {
        table.log #(id) {
            thead {
                tr { th { "time" } th { "kind" } th { "user" } th { "IP" } th { "app" } th { "method" } th { "URL" } th { "status" } th { "action" } th { "policy" } th { "activity" } }
            }
            tbody #(format!("{id}-body")) {
                @for r in rows {
                    tr data-id=(r.id) {
                        td { a href=(format!("/log/record/{}", r.id)) { (r.time) } }
                        td { (r.kind) } td { (r.user) } td { (r.client_ip) } td { (r.app) } td { (r.method) }
                        td.url { (r.url) } td { (r.status) } td { (r.action) } td { (r.policy) } td { (r.activity) }
                    }
                }
            }
        }
    }
}

pub async fn log(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Query(filter): Query<LogFilter>,
) -> Response {
    let state_dir = console.settings.state_dir.clone();
    let f = filter.clone();
    let page = blocking(move || data::log_page(&data::open(&state_dir)?, &f)).await;
    let (rows, next, error) = match page {
        Ok((rows, next)) => (rows, next, None),
        Err(_) if !filter.after.is_empty() || !filter.from.is_empty() || !filter.to.is_empty() || !filter.status.is_empty() => {
            (Vec::new(), None, Some("A filter could not be read: times are `-1h`, `2026-11-22`, `2026-11-22T10:00:00Z` or Unix seconds; status a number."))
        }
        Err(r) => return r,
    };
    let field = |name: &str, label: &str, value: &str| {
        html! { label { (label) " " input name=(name) value=(value); } }
    };
    let next_href = next.map(|key| {
        let mut f = filter.clone();
        f.after = key;
        format!("/log?{}", serde_urlencoded_string(&f))
    });
    let body = html! {
        form.filters #log-filters method="get" action="/log" {
            (field("from", "From", &filter.from))
            (field("to", "To", &filter.to))
            label { "Kind " select name="kind" {
                @for k in ["", "traffic", "activity"] { option value=(k) selected[filter.kind == k] { (if k.is_empty() { "any" } else { k }) } }
            } }
            (field("app", "App", &filter.app))
            (field("user", "User", &filter.user))
            (field("ip", "IP", &filter.ip))
            (field("action", "Action", &filter.action))
            (field("policy", "Policy", &filter.policy))
            (field("activity", "Activity", &filter.activity))
            (field("status", "Status", &filter.status))
            (field("text", "URL contains", &filter.text))
            button #apply-filters type="submit" { "Filter" }
            " " a href="/log" { "Clear" }
        }
        @if let Some(e) = error { p.error { (e) } }
        (log_table(&rows, "log"))
        @if rows.is_empty() { p #no-records { "No records match." } }
        @if let Some(href) = next_href { p { a #next-page href=(href) { "Older records →" } } }
    };
    layout(&who, "/log", "Activity log", body)
}

fn serde_urlencoded_string(f: &LogFilter) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("from", &f.from),
        ("to", &f.to),
        ("kind", &f.kind),
        ("app", &f.app),
        ("user", &f.user),
        ("ip", &f.ip),
        ("action", &f.action),
        ("policy", &f.policy),
        ("activity", &f.activity),
        ("status", &f.status),
        ("text", &f.text),
        ("after", &f.after),
    ] {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// The lines of a policy source that define policy `name` (its table,
/// up to the next table), for the record view.
fn policy_excerpt(source: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let lines: Vec<&str> = source.lines().collect();
    let at = lines.iter().position(|l| {
        let t = l.trim();
        t.starts_with("name") && t.contains(&format!("\"{name}\""))
    })?;
    let start = (0..=at)
        .rev()
        .find(|i| lines[*i].trim_start().starts_with('['))?;
    let end = (at + 1..lines.len())
        .find(|i| lines[*i].trim_start().starts_with('['))
        .unwrap_or(lines.len());
    Some(lines[start..end].join("\n").trim_end().to_string())
}

pub async fn record(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let state_dir = console.settings.state_dir.clone();
    let fields = match blocking(move || data::record(&data::open(&state_dir)?, id)).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return refusal(
                StatusCode::NOT_FOUND,
                "No such record (expired, or never stored).",
            )
        }
        Err(r) => return r,
    };
    let policy = fields
        .iter()
        .find(|(k, _)| *k == "policy")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let version = console.daemon.current_version();
    let excerpt = console
        .daemon
        .source_of(version)
        .and_then(|s| policy_excerpt(&s, &policy));
    let body = html! {
        table.record #record {
            @for (k, v) in &fields {
                tr { th { (k) } td data-field=(k) { (v) } }
            }
        }
        h2 { "Deciding policy" }
        @if policy.is_empty() {
            p { "No policy decided this request (the app's default applied)." }
        } @else {
            p { "Policy " strong #deciding-policy { (policy) } " as it stands in the current version (" (version) "):" }
            @if let Some(text) = excerpt { pre #policy-excerpt { (text) } } @else { p { "Not found in the current version's source." } }
        }
        p { a href="/log" { "← Activity log" } }
    };
    layout(&who, "/log", &format!("Record {id}"), body)
}

// ---- live tail --------------------------------------------------------

pub async fn tail(Extension(who): Extension<Who>) -> Response {
    let body = html! {
        p { "New records appear at the top as they are stored. " span #tail-state { "connecting…" } }
        (log_table(&[], "tail"))
    };
    layout(&who, "/tail", "Live tail", body)
}

/// Server-sent events: each new record as a JSON event, polled from the
/// store twice a second; stops when the browser goes.
pub async fn tail_events(State(console): Ctx) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    let state_dir = console.settings.state_dir.clone();
    tokio::spawn(async move {
        let dir = state_dir.clone();
        let mut last =
            match tokio::task::spawn_blocking(move || data::last_id(&data::open(&dir)?)).await {
                Ok(Ok(id)) => id,
                _ => 0,
            };
        let _ = tx
            .send(Ok(Event::default().event("ready").data(last.to_string())))
            .await;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if tx.is_closed() {
                return;
            }
            let dir = state_dir.clone();
            let from = last;
            let rows = match tokio::task::spawn_blocking(move || {
                data::since(&data::open(&dir)?, from, 200)
            })
            .await
            {
                Ok(Ok(rows)) => rows,
                _ => continue,
            };
            for row in rows {
                last = last.max(row.id);
                let json = serde_json::to_string(&row).unwrap_or_default();
                if tx
                    .send(Ok(Event::default().event("record").data(json)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---- traffic report ---------------------------------------------------

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct ReportQuery {
    from: String,
    to: String,
    by: String,
}

fn time_or_none(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        Ok(None)
    } else {
        logcli::parse_time(s).map(Some)
    }
}

/// Horizontal bars as SVG (attributes, not styles: the CSP allows them).
fn bars(rows: &[(String, i64)], id: &str) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let height = rows.len() * 22 + 4;
    html! {
        svg.bars #(id) width="100%" height=(height) viewBox=(format!("0 0 600 {height}")) preserveAspectRatio="none" role="img" {
            @for (i, (label, n)) in rows.iter().enumerate() {
                @let y = i * 22 + 2;
                @let w = 400 * n / max;
                text x="0" y=(y + 14) { (label) }
                rect x="190" y=(y) width=(w.max(1)) height="18" {}
                text x=(196 + w) y=(y + 14) { (n) }
            }
        }
    }
}

pub async fn report(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let by = match q.by.as_str() {
        "" | "app" => By::App,
        "user" => By::User,
        "ip" => By::Ip,
        _ => return refusal(StatusCode::BAD_REQUEST, "by: app, user or ip"),
    };
    let from = if q.from.is_empty() {
        "-1d".to_string()
    } else {
        q.from.clone()
    };
    let filter = match (time_or_none(&from), time_or_none(&q.to)) {
        (Ok(from_us), Ok(to_us)) => Filter {
            from_us,
            to_us,
            ..Filter::default()
        },
        (Err(e), _) | (_, Err(e)) => return refusal(StatusCode::BAD_REQUEST, &e),
    };
    let state_dir = console.settings.state_dir.clone();
    let rows = match blocking(move || logcli::report(&state_dir, &filter, by)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let key_name = match by {
        By::App => "app",
        By::User => "user",
        By::Ip => "ip",
    };
    let top: Vec<(String, i64)> = rows
        .iter()
        .take(15)
        .map(|r| (r.key.clone(), r.requests))
        .collect();
    let blocked: Vec<(String, i64)> = rows
        .iter()
        .filter(|r| r.blocked > 0)
        .take(15)
        .map(|r| (r.key.clone(), r.blocked))
        .collect();
    let body = html! {
        form.filters #report-form method="get" action="/report" {
            label { "From " input name="from" value=(from); }
            label { "To " input name="to" value=(q.to); }
            label { "By " select name="by" {
                @for b in ["app", "user", "ip"] { option value=(b) selected[key_name == b] { (b) } }
            } }
            button type="submit" { "Show" }
        }
        div.columns {
            section { h3 { "Requests" } (bars(&top, "chart-requests")) }
            section { h3 { "Blocked" } (bars(&blocked, "chart-blocked")) }
        }
        table #report {
            tr { th { (key_name) } th.num { "requests" } th.num { "users" } th.num { "bytes up" } th.num { "bytes down" } th.num { "blocked" } th.num { "activities" } }
            @for r in &rows {
                tr { td { a href=(format!("/log?{key_name}={}", urlencode(&r.key))) { (r.key) } } td.num { (r.requests) } td.num { (r.users) } td.num { (r.bytes_up) } td.num { (r.bytes_down) } td.num { (r.blocked) } td.num { (r.activities) } }
            }
        }
        @if rows.is_empty() { p { "No traffic in this range." } }
    };
    layout(&who, "/report", "Traffic report", body)
}

// ---- exports ----------------------------------------------------------

pub async fn exports_page(State(console): Ctx, Extension(who): Extension<Who>) -> Response {
    let list = console.exports.list();
    let admin = who.session.role == Role::Admin;
    let body = html! {
        @if admin {
            form.filters #export-form method="post" action="/exports" {
                (csrf_field(&who))
                label { "From " input name="from" value="-1d"; }
                label { "To " input name="to"; }
                label { "App " input name="app"; }
                label { "User " input name="user"; }
                label { "Kind " select name="kind" { option value="" { "any" } option value="traffic" { "traffic" } option value="activity" { "activity" } } }
                label { "Format " select name="format" { option value="csv" { "CSV" } option value="jsonl" { "JSON lines" } } }
                button #export-button type="submit" { "Export" }
            }
            p.note { "This process may take some time: the export runs in the background and appears below when done." }
        } @else {
            p.note { "Exports are made and downloaded by admins." }
        }
        h2 { "Exported reports" }
        table #exports {
            tr { th { "asked" } th { "by" } th { "range" } th { "filters" } th { "format" } th { "state" } th.num { "rows" } th.num { "size" } th { "" } }
            @for e in &list {
                tr data-export=(e.id) data-state=(e.state) {
                    td { (short_time(e.created_unix * 1_000_000)) }
                    td { (e.requested_by) }
                    td { (e.from) " → " (if e.to.is_empty() { "now" } else { &e.to }) }
                    td { (format!("{} {} {}", e.app, e.user, e.kind).trim()) }
                    td { (e.format) }
                    td.state {
                        @if e.state == "running" {
                            @let (done, total) = console.exports.progress(&e.id).unwrap_or((0, 0));
                            progress value=(done) max=(total.max(1)) {} " " span.count { (done) " / " (total) }
                        } @else if e.state == "failed" { span.error { "failed: " (e.error) } }
                        @else { progress value=(e.rows) max=(e.rows.max(1)) {} " done" }
                    }
                    td.num { (e.rows) } td.num title=(e.bytes) { (size_text(e.bytes)) }
                    td { @if e.state == "done" && admin { a.download href=(format!("/exports/{}/download", e.id)) { "Download" } } }
                }
            }
            @if list.is_empty() { tr { td colspan="9" { "No exports yet." } } }
        }
    };
    layout(&who, "/exports", "Exports", body)
}

pub async fn export_start(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Form(request): Form<super::exports::Request>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    let id = format!(
        "{}-{}",
        auth::now_secs(),
        &console.keys.random(6).replace(['_'], "-")
    );
    let info = match console.exports.start(&request, &who.session.user, id) {
        Ok(i) => i,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e),
    };
    let detail = format!(
        "from {} to {} app {} user {} kind {} format {}",
        info.from,
        if info.to.is_empty() { "now" } else { &info.to },
        info.app,
        info.user,
        info.kind,
        info.format
    );
    record_admin(
        &console,
        &who,
        "/exports",
        "console export",
        detail,
        info.file_name(),
    )
    .await;
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/exports")]).into_response()
}

pub async fn export_progress(State(console): Ctx, UrlPath(id): UrlPath<String>) -> Response {
    let Some(info) = console.exports.get(&id) else {
        return refusal(StatusCode::NOT_FOUND, "No such export.");
    };
    let (done, total) = console
        .exports
        .progress(&id)
        .unwrap_or((info.rows, info.rows));
    Json(serde_json::json!({"state": info.state, "done": done, "total": total, "rows": info.rows, "bytes": info.bytes, "error": info.error})).into_response()
}

pub async fn export_download(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    let Some(info) = console.exports.get(&id).filter(|i| i.state == "done") else {
        return refusal(StatusCode::NOT_FOUND, "No such finished export.");
    };
    let path = console.exports.data_path(&info);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return refusal(
                StatusCode::NOT_FOUND,
                &format!("The export's file is gone: {e}"),
            )
        }
    };
    let stream = tokio_util_stream(file);
    let content_type = if info.format == "csv" {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, info.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", info.file_name()),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// A file as a stream of 64 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl tokio_stream::Stream<Item = std::io::Result<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(buf)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

// ---- alerts -----------------------------------------------------------

pub async fn alerts(State(console): Ctx, Extension(who): Extension<Who>) -> Response {
    let state_dir = console.settings.state_dir.clone();
    let list = match blocking(move || data::alerts(&data::open(&state_dir)?, 500)).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let admin = who.session.role == Role::Admin;
    let body = html! {
        table #alerts {
            tr { th { "time" } th { "severity" } th { "policy" } th { "user" } th { "app" } th { "activity" } th { "record" } th { "acknowledged" } }
            @for a in &list {
                tr data-alert=(a.id) {
                    td { (a.time) } td class=(format!("severity {}", a.severity)) { (a.severity) } td { (a.policy) } td { (a.user) } td { (a.app) } td { (a.activity) }
                    td { a.record-link href=(format!("/log/record/{}", a.record_id)) { "record " (a.record_id) } }
                    td {
                        @if !a.acked_by.is_empty() { span.acked { (a.acked_by) " at " (a.acked_at) } }
                        @else if admin {
                            form.inline method="post" action=(format!("/alerts/{}/ack", a.id)) {
                                (csrf_field(&who))
                                button.ack type="submit" { "Acknowledge" }
                            }
                        } @else { "no" }
                    }
                }
            }
            @if list.is_empty() { tr { td colspan="8" { "No alerts." } } }
        }
    };
    layout(&who, "/alerts", "Alerts", body)
}

pub async fn alert_ack(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    let state_dir = console.settings.state_dir.clone();
    let user = who.session.user.clone();
    match blocking(move || data::acknowledge(&state_dir, id, &user, now_us())).await {
        Ok(true) => {
            record_admin(
                &console,
                &who,
                &format!("/alerts/{id}/ack"),
                "console alert acknowledged",
                format!("alert {id}"),
                String::new(),
            )
            .await;
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/alerts")]).into_response()
        }
        Ok(false) => refusal(
            StatusCode::CONFLICT,
            "No such alert, or it was acknowledged already.",
        ),
        Err(r) => r,
    }
}

// ---- policies ---------------------------------------------------------

fn history_table(console: &Console, who: &Who, current: u64) -> Markup {
    let versions: Vec<u64> = console.daemon.history().into_iter().rev().collect();
    let admin = who.session.role == Role::Admin;
    html! {
        table #history {
            tr { th { "version" } th { "compiled" } th { "" } th { "" } }
            @for v in &versions {
                tr data-version=(v) {
                    td { a href=(format!("/policies/version/{v}")) { (v) } @if *v == current { " " strong { "(current)" } } }
                    td { (console.daemon.compiled_at(*v).map(|ms| crate::alerts::rfc3339(ms * 1000)).unwrap_or_default()) }
                    td { a href=(format!("/policies/version/{v}")) { "source and diff" } }
                    td {
                        @if admin && *v != current {
                            form.inline method="post" action="/policies/rollback" {
                                (csrf_field(who))
                                input type="hidden" name="version" value=(v);
                                button.rollback type="submit" { "Roll back to " (v) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why a viewer sees no policy text.
const SOURCES_FOR_ADMINS: &str =
    "Policy sources are shown to admins only: they may hold secrets (session keys, credentials).";

fn editor(who: &Who, text: &str) -> Markup {
    let admin = who.session.role == Role::Admin;
    html! {
        form #policy-form method="post" action="/policies/validate" {
            (csrf_field(who))
            textarea #policy-text name="text" rows="30" spellcheck="false" readonly[!admin] { (text) }
            p {
                button #validate type="submit" formaction="/policies/validate" { "Validate and show the diff" }
                @if admin { " " button #apply type="submit" formaction="/policies/apply" { "Apply" } }
            }
        }
    }
}

pub async fn policies(State(console): Ctx, Extension(who): Extension<Who>) -> Response {
    let current = console.daemon.current_version();
    let source = console.daemon.source_of(current);
    let admin = who.session.role == Role::Admin;
    let body = html! {
        p { "Current version " strong #current-version { (current) } "." }
        @if let Some(why) = console.daemon.changes_refused() { p.note { (why) } }
        @if !admin {
            p.note #sources-for-admins { (SOURCES_FOR_ADMINS) }
        } @else {
            @match &source {
                Some(text) => (editor(&who, text)),
                None => p { "This version's source is not kept on this node (it came from the fleet)." },
            }
        }
        h2 { "History" }
        (history_table(&console, &who, current))
    };
    layout(&who, "/policies", "Policies", body)
}

fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> Markup {
    let d = similar::TextDiff::from_lines(old, new);
    if d.ratio() == 1.0 {
        return html! { p #diff-none { "No change." } };
    }
    html! {
        pre.diff #diff {
            @for line in d.unified_diff().context_radius(3).header(old_name, new_name).to_string().lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") { "head" } else if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else if line.starts_with("@@") { "hunk" } else { "same" };
                span class=(class) { (line) } "\n"
            }
        }
    }
}

pub async fn policy_version(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    UrlPath(version): UrlPath<u64>,
) -> Response {
    if !console.daemon.history().contains(&version) {
        return refusal(StatusCode::NOT_FOUND, "No such version in the history.");
    }
    if who.session.role != Role::Admin {
        return refusal(StatusCode::FORBIDDEN, SOURCES_FOR_ADMINS);
    }
    let current = console.daemon.current_version();
    let source = console.daemon.source_of(version);
    let current_source = console.daemon.source_of(current).unwrap_or_default();
    let body = html! {
        @match &source {
            Some(text) => {
                h2 { "Diff against the current version (" (current) ")" }
                (diff(&current_source, text, &format!("version {current}"), &format!("version {version}")))
                h2 { "Source" }
                pre #version-source { (text) }
            },
            None => p { "This version's source is not kept on this node." },
        }
        (history_table(&console, &who, current))
    };
    layout(
        &who,
        "/policies",
        &format!("Policy version {version}"),
        body,
    )
}

#[derive(serde::Deserialize)]
pub struct PolicyForm {
    text: String,
}

/// The edited text with each problem under its line.
fn annotated(text: &str, problems: &[palisade_schema::policy::Diagnostic]) -> Markup {
    html! {
        table.source #annotated {
            @for (i, line) in text.lines().enumerate() {
                @let n = i + 1;
                @let here: Vec<_> = problems.iter().filter(|d| d.line == n).collect();
                tr class=[(!here.is_empty()).then_some("has-error")] { td.line { (n) } td { code { (line) } } }
                @for d in here {
                    tr.diagnostic data-line=(n) { td.line { "" } td { span.error { "line " (d.line) ", column " (d.column) ": " (d.message) } } }
                }
            }
        }
    }
}

pub async fn policy_validate(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Form(form): Form<PolicyForm>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    let daemon = console.daemon.clone();
    let text = form.text.replace("\r\n", "\n");
    let t = text.clone();
    let result = tokio::task::spawn_blocking(move || daemon.validate_text(&t)).await;
    let current = console.daemon.current_version();
    let current_source = console.daemon.source_of(current).unwrap_or_default();
    let body = match result {
        Ok(Ok(_)) => html! {
            p.ok #valid { "The policy is valid." }
            h2 { "Diff against the current version (" (current) ")" }
            (diff(&current_source, &text, &format!("version {current}"), "edited"))
            (editor(&who, &text))
        },
        Ok(Err(crate::commands::PolicyError::Located(d))) => html! {
            p.error #invalid { (d.0.len()) " problem(s): nothing was applied." }
            (annotated(&text, &d.0))
            (editor(&who, &text))
        },
        Ok(Err(e)) => html! {
            p.error #invalid { (e.to_string()) }
            (editor(&who, &text))
        },
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    layout(&who, "/policies", "Validate the policy", body)
}

fn outcome_page(
    who: &Who,
    title: &str,
    outcome: &crate::server::Outcome,
    note: Option<String>,
) -> Response {
    let all_ok = !outcome.results.is_empty() && outcome.results.iter().all(|r| r.ok);
    let body = html! {
        p #outcome class=(if all_ok { "ok" } else { "error" }) {
            "Version " strong #outcome-version { (outcome.version) } ": "
            (if all_ok { "every core acknowledged it." } else if outcome.results.is_empty() { "no core is connected." } else { "not every core took it." })
        }
        table #acks {
            tr { th { "pid" } th { "core" } th { "result" } }
            @for r in &outcome.results {
                tr.ack data-ok=(r.ok) { td { (r.pid) } td { (r.core) } td { @if r.ok { "acknowledged" } @else { span.error { "refused: " (r.error) } } } }
            }
        }
        @if let Some(n) = note { p.error { "The admin record could not be stored: " (n) } }
        p { a href="/policies" { "← Policies" } }
    };
    layout(who, "/policies", title, body)
}

pub async fn policy_apply(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Form(form): Form<PolicyForm>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    let daemon = console.daemon.clone();
    let text = form.text.replace("\r\n", "\n");
    let t = text.clone();
    let result = tokio::task::spawn_blocking(move || daemon.apply_text(&t)).await;
    match result {
        Ok(Ok(outcome)) => {
            let acks: Vec<String> = outcome
                .results
                .iter()
                .map(|r| {
                    format!(
                        "pid {} core {}: {}",
                        r.pid,
                        r.core,
                        if r.ok {
                            "ok".to_string()
                        } else {
                            r.error.clone()
                        }
                    )
                })
                .collect();
            let note = record_admin(
                &console,
                &who,
                "/policies/apply",
                "console apply",
                format!("version {}; {}", outcome.version, acks.join("; ")),
                String::new(),
            )
            .await;
            outcome_page(&who, "Policy applied", &outcome, note)
        }
        Ok(Err(crate::commands::PolicyError::Located(d))) => {
            let body = html! {
                p.error #invalid { (d.0.len()) " problem(s): nothing was applied." }
                (annotated(&text, &d.0))
                (editor(&who, &text))
            };
            let mut r = layout(&who, "/policies", "Apply refused", body);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Ok(Err(e)) => refusal(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
pub struct RollbackForm {
    version: u64,
}

pub async fn policy_rollback(
    State(console): Ctx,
    Extension(who): Extension<Who>,
    Form(form): Form<RollbackForm>,
) -> Response {
    if let Some(r) = refuse_viewer(&who) {
        return r;
    }
    if form.version == 0 || !console.daemon.history().contains(&form.version) {
        return refusal(StatusCode::NOT_FOUND, "No such version in the history.");
    }
    let daemon = console.daemon.clone();
    let version = form.version;
    match tokio::task::spawn_blocking(move || daemon.rollback(version)).await {
        Ok(Ok(outcome)) => {
            let note = record_admin(
                &console,
                &who,
                "/policies/rollback",
                "console rollback",
                format!("to version {}", outcome.version),
                String::new(),
            )
            .await;
            outcome_page(&who, "Rolled back", &outcome, note)
        }
        Ok(Err(e)) => refusal(StatusCode::CONFLICT, &e),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

// ---- static assets ----------------------------------------------------

pub async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match name.as_str() {
        "console.css" => (
            include_bytes!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.iife.min.js" => (
            include_bytes!("assets/vendor/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (
            include_bytes!("assets/vendor/uPlot.min.css"),
            "text/css; charset=utf-8",
        ),
        _ => return not_found().await,
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}
