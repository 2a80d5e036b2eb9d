//! Policies: the current source in an editor, validation with problems
//! under their lines, diffs, apply and rollback with each core's answer,
//! the history.

use super::*;

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

/// The edited text with its problems, nothing applied.
fn problems(who: &Who, text: &str, found: &[palisade_schema::policy::Diagnostic]) -> Markup {
    html! {
        p.error #invalid { (found.len()) " problem(s): nothing was applied." }
        (annotated(text, found))
        (editor(who, text))
    }
}

/// A posted policy text, line ends as the compiler counts them.
fn posted_text(form: PolicyForm) -> String {
    form.text.replace("\r\n", "\n")
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
    let text = posted_text(form);
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
        Ok(Err(crate::commands::PolicyError::Located(d))) => problems(&who, &text, &d.0),
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
    let text = posted_text(form);
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
            let mut r = layout(
                &who,
                "/policies",
                "Apply refused",
                problems(&who, &text, &d.0),
            );
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
