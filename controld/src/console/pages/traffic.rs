//! What went through the proxy: the overview (cores, series, top lists),
//! the activity log and one record, live tail, the traffic report.

use super::*;

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
    // A fleet node shows every node of the fleet as etcd has them (this
    // node's cores are among them).
    let fleet = match console.daemon.fleet_spec() {
        Some(spec) => Some(
            tokio::task::spawn_blocking(move || crate::fleet::cli::status(&spec))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r),
        ),
        None => None,
    };
    let now_ms = now_us() / 1000;
    let tops = match console.recent.tops() {
        Some(t) => t,
        None => {
            let computed =
                blocking(move || data::tops(&data::open(&state_dir)?, day_ago, 10)).await;
            match computed {
                Ok(t) => {
                    let t = Arc::new(t);
                    console.recent.keep_tops(t.clone());
                    t
                }
                Err(r) => return r,
            }
        }
    };
    let (apps, users, ips) = &*tops;
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
                tr { th { "pid" } th { "core" } th { "version" } th { "connected at" } th { "for" } th { "last error" } }
                @for c in &cores {
                    tr {
                        td { (c.pid) } td { (c.core) } td { (c.version) }
                        td { (short_time((now_ms - c.connected_for.as_millis() as i64) * 1000)) }
                        td { (duration_text(c.connected_for)) } td { (c.last_error) }
                    }
                }
                @if cores.is_empty() { tr { td colspan="6" { "No data-plane core is connected." } } }
            }
            @match &fleet {
                Some(Ok(status)) => {
                    h3 { "The fleet" }
                    p { "Published version " strong #fleet-version { (status.current.as_ref().map_or(0, |m| m.version)) } "." }
                    table #fleet {
                        tr { th { "node" } th { "controld version" } th { "cores (pid/core: version)" } }
                        @for n in &status.nodes {
                            tr {
                                td { (n.node) } td { (n.version) }
                                td { @for c in &n.cores { (format!("{}/{}: {} ", c.pid, c.core, c.version)) } }
                            }
                        }
                    }
                },
                Some(Err(e)) => p.error { "The fleet's status is unavailable: " (e) },
                None => {},
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
                (top("Apps", "top-apps", "app", apps))
                (top("Users", "top-users", "user", users))
                (top("Client IPs", "top-ips", "ip", ips))
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
    // Reused for a tenth of a bucket or less: a week's chart is at most 6
    // minutes old, the last hour's 6 seconds.
    let (range, span, buckets): (&'static str, i64, i64) = match q.range.as_str() {
        "" | "hour" => ("hour", 3600, 60),
        "day" => ("day", 86_400, 96),
        "week" => ("week", 7 * 86_400, 168),
        _ => return refusal(StatusCode::BAD_REQUEST, "range: hour, day or week"),
    };
    let fresh = std::time::Duration::from_secs((span / buckets / 10) as u64);
    if let Some(s) = console.recent.series(range, fresh) {
        return Json(&*s).into_response();
    }
    let state_dir = console.settings.state_dir.clone();
    match blocking(move || data::series(&data::open(&state_dir)?, now_us(), span, buckets)).await {
        Ok(s) => {
            let s = Arc::new(s);
            console.recent.keep_series(range, s.clone());
            Json(&*s).into_response()
        }
        Err(r) => r,
    }
}

// ---- activity log -----------------------------------------------------

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
    let filter = match (
        logcli::parse_optional_time(&from),
        logcli::parse_optional_time(&q.to),
    ) {
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
