//! Exports (start in the background, progress, the list, download) and
//! alerts (list, acknowledge).

use super::*;

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
                    td { (e.asked.from) " → " (if e.asked.to.is_empty() { "now" } else { &e.asked.to }) }
                    td { (format!("{} {} {}", e.asked.app, e.asked.user, e.asked.kind).trim()) }
                    td { (e.asked.format) }
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
    Form(request): Form<crate::console::exports::Request>,
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
        info.asked.from,
        if info.asked.to.is_empty() {
            "now"
        } else {
            &info.asked.to
        },
        info.asked.app,
        info.asked.user,
        info.asked.kind,
        info.asked.format
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
    let content_type = if info.asked.format == "csv" {
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
