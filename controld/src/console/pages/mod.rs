//! The console's pages: handlers and their HTML (maud templates, escaped by
//! construction). Pages work without scripts except the charts, live tail
//! and the export progress bar, which `assets/console.js` drives from the
//! JSON and server-sent-event routes here.
//!
//! - [`signin`]: the sign-in page, the bootstrap token, OIDC, sign-out.
//! - [`traffic`]: overview, activity log, record, live tail, report.
//! - [`exports_alerts`]: exports (start, progress, download) and alerts.
//! - [`policies`]: source, validate, diff, apply, rollback, history.
//!
//! This module holds what they share: the page frame, refusals, the
//! admin-record helper and the static assets.

mod exports_alerts;
mod policies;
mod signin;
mod traffic;

pub use exports_alerts::*;
pub use policies::*;
pub use signin::*;
pub use traffic::*;

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

/// A time to the second, for lists (records keep microseconds).
pub(super) fn short_time(us: i64) -> String {
    let t = crate::alerts::rfc3339(us);
    format!("{} {}", &t[..10], &t[11..19])
}

/// A byte count in binary units.
pub(super) fn size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

pub(super) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) fn log_table(rows: &[data::LogRow], id: &str) -> Markup {
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

// ---- static assets ----------------------------------------------------

pub async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match name.as_str() {
        "console.css" => (
            include_bytes!("../assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("../assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.iife.min.js" => (
            include_bytes!("../assets/vendor/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (
            include_bytes!("../assets/vendor/uPlot.min.css"),
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
