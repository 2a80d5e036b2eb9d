//! Phase *session (request)*: custom activities and upload control,
//! before anything is sent to the app. Runs only when session policies
//! matched the request or the app's profile names custom activities.
//!
//! A custom activity is recognized (its body marker read, bounded) and
//! blocked when a `block_activities` policy says so; under
//! `control_upload` an upload is held whole (bounded by the policies'
//! byte limit and the core's held-bytes budget), its files read and
//! decided. A refused request gets the block page and never reaches the
//! app. Sets `x.served.activity`; may answer (403, 400).

use palisade_schema::logrec::Action;
use palisade_schema::session::{Control, SessionAction, DEFAULT_MAX_BYTES};

use super::exchange::{ActivityNote, Exchange, Outcome, Step};
use crate::activity::{self, Upload};
use crate::answers;
use crate::http::Framing;
use crate::session_policy::file::Uninspectable;
use crate::session_policy::flow::{self, Held};
use crate::session_policy::{FileFacts, FileVerdict};

/// Longest request body read to look for a custom activity's body marker.
const MAX_MARKER_BODY: u64 = 64 * 1024;

/// Runs the phase.
pub async fn session_request(x: &mut Exchange<'_>) -> Step {
    if !x.app().profile.activities.is_empty() {
        if let Some(step) = custom_activities(x).await {
            return step;
        }
    }
    uploads(x).await
}

/// Recognizes a custom activity; `Some` when a policy blocks it.
async fn custom_activities(x: &mut Exchange<'_>) -> Option<Step> {
    let (method, target) = x.method_and_target();
    let candidates: Vec<_> = activity::custom_activity(&x.app().profile, method, target).collect();
    let timeout = x.core.limits.body_timeout;
    let mut found = None;
    for act in candidates {
        if !act.body_contains.is_empty() {
            let Framing::Length(n) = x.req.framing else {
                continue;
            };
            if n > MAX_MARKER_BODY || !ask_for_body(x).await {
                continue;
            }
            match flow::hold_body(x.client, x.req.framing, MAX_MARKER_BODY, timeout).await {
                Ok(Held::Complete { raw_len }) => {
                    let body = &x.client.buffered()[..raw_len];
                    if memchr::memmem::find(body, act.body_contains.as_bytes()).is_none() {
                        continue;
                    }
                }
                _ => continue,
            }
        }
        found = Some(act.name.clone());
        break;
    }
    let name = found?;
    let policies = &x.snap.session_policies;
    let rules = &x.admitted.session_rules;
    if let Some(rule) = policies.blocking_activity(rules, &name) {
        refuse(x, &name, rule);
        x.served.activity = Some(ActivityNote {
            name,
            action: Some(Action::Block),
            policy: Some(policies.rule(rule).name.clone()),
            ..Default::default()
        });
        return Some(refused(x).await);
    }
    let monitor = policies.monitor_rule(rules);
    x.served.activity = Some(ActivityNote {
        name,
        action: monitor.map(|_| Action::Monitor),
        policy: monitor.map(|r| policies.rule(r).name.clone()),
        ..Default::default()
    });
    None
}

/// The strictest verdict over an upload's files, and the file it fell on.
#[derive(Default)]
struct Worst {
    verdict: FileVerdict,
    file: Vec<u8>,
    size: u64,
}

impl Worst {
    fn consider(&mut self, v: FileVerdict, name: &[u8], size: u64) {
        let stricter = match (v.action, self.verdict.action) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => self.verdict.action.is_none() && self.file.is_empty(),
        };
        if stricter {
            self.verdict = v;
            self.file = name.to_vec();
            self.size = size;
        }
    }
}

/// Upload control.
async fn uploads(x: &mut Exchange<'_>) -> Step {
    let snap = x.snap;
    let policies = &snap.session_policies;
    if !policies.controls(&x.admitted.session_rules, Control::Upload) || !x.req.framing.has_body() {
        return Step::Continue;
    }
    let (method, target) = x.method_and_target();
    let content_type = x.req.index.content_type.of(&x.upstream_head);
    let Some(upload) = activity::upload(&x.app().profile, method, target, content_type) else {
        return Step::Continue;
    };
    let target = target.to_vec();
    let announced = match x.req.framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let limit = policies
        .rules
        .iter()
        .filter(|r| r.control == Control::Upload)
        .map(|r| {
            r.inspector
                .as_ref()
                .map_or(DEFAULT_MAX_BYTES, |i| i.max_bytes)
        })
        .max()
        .unwrap_or(DEFAULT_MAX_BYTES);
    if !ask_for_body(x).await {
        // The client is gone.
        x.served.status = 400;
        return Step::Done(Outcome::CloseAfterError(400));
    }
    x.hold = flow::reserve(&x.core.held_bytes, announced.unwrap_or(limit).min(limit));
    let (held, too_big) = if x.hold.is_none() {
        (Held::TooBig, Uninspectable::Busy)
    } else {
        let timeout = x.core.limits.body_timeout;
        match flow::hold_body(x.client, x.req.framing, limit, timeout).await {
            Ok(h) => (h, Uninspectable::TooBig),
            Err(e) => {
                let reason = format!("reading the upload: {e}");
                answers::error_response(&mut x.out, 400, &reason, !x.req.is_head);
                return write_refusal(x, 400, false).await;
            }
        }
    };
    let rules = &x.admitted.session_rules;
    let mut worst = Worst {
        size: announced.unwrap_or(0),
        ..Worst::default()
    };
    match held {
        Held::Complete { raw_len } => {
            let body = flow::held_bytes(x.client.buffered(), x.req.framing, raw_len);
            let files: Vec<(Vec<u8>, &[u8])> = match &upload {
                Upload::Multipart(b) => flow::multipart_files(&body, b),
                Upload::Body => vec![(activity::last_segment(&target).to_vec(), &body[..])],
            };
            for (name, data) in &files {
                let size = Some(data.len() as u64);
                let facts = FileFacts {
                    name,
                    size,
                    content: Some(data),
                    uninspectable: None,
                };
                let v = policies.decide_file(rules, Control::Upload, &facts);
                worst.consider(v, name, data.len() as u64);
            }
        }
        Held::TooBig => {
            let name = activity::upload_file_name(&upload, x.client.buffered(), &target)
                .unwrap_or_default();
            let facts = FileFacts {
                name: &name,
                size: announced,
                content: None,
                uninspectable: Some(too_big),
            };
            let v = policies.decide_file(rules, Control::Upload, &facts);
            worst.consider(v, &name, announced.unwrap_or(0));
        }
    }
    if worst.file.is_empty() && worst.verdict.action.is_none() {
        return Step::Continue;
    }
    x.served.activity = Some(note_for(
        x,
        "upload",
        (&worst.file, worst.size),
        &worst.verdict,
    ));
    let (Some(SessionAction::Block), Some(rule)) = (worst.verdict.action, worst.verdict.rule)
    else {
        return Step::Continue;
    };
    refuse(x, "upload", rule);
    if let Held::Complete { raw_len } = held {
        x.client.consume(raw_len);
        return write_refusal(x, 403, true).await;
    }
    write_refusal(x, 403, false).await
}

/// The activity record of a file decision; without a matching control
/// rule, a matching monitor rule names it.
pub(super) fn note_for(
    x: &Exchange<'_>,
    name: &str,
    (file, size): (&[u8], u64),
    v: &FileVerdict,
) -> ActivityNote {
    let policies = &x.snap.session_policies;
    let (action, policy) = match (v.action, v.rule) {
        (Some(a), Some(r)) => (Some(log_action(a)), Some(policies.rule(r).name.clone())),
        _ => match policies.monitor_rule(&x.admitted.session_rules) {
            Some(r) => (Some(Action::Monitor), Some(policies.rule(r).name.clone())),
            None => (None, None),
        },
    };
    ActivityNote {
        name: name.to_string(),
        file_name: file.to_vec(),
        file_size: size,
        action,
        policy,
        detail: v.detail.clone(),
    }
}

fn log_action(a: SessionAction) -> Action {
    match a {
        SessionAction::Audit => Action::Audit,
        SessionAction::Protect => Action::Protect,
        SessionAction::Block => Action::Block,
    }
}

/// Writes the block page for a refused `activity` into `x.out`.
pub(super) fn refuse(x: &mut Exchange<'_>, activity: &str, rule: u32) {
    let snap = x.snap;
    let blocked = answers::Blocked {
        app: &snap.apps[x.req.app].name,
        activity: Some(activity),
        policy_message: &snap.session_policies.rule(rule).message,
        request_id: x.request_id,
        json: x.req.index.wants_json,
    };
    answers::block_page(&mut x.out, &blocked, &snap.block_page, !x.req.is_head);
}

/// A client that sent `Expect: 100-continue` waits for the go-ahead before
/// its body (RFC 9110 §10.1.1): give it once before holding the body.
/// False when the client is gone.
pub(super) async fn ask_for_body(x: &mut Exchange<'_>) -> bool {
    use futures_lite::AsyncWriteExt;
    if !x.req.expect_continue || x.continued {
        return true;
    }
    x.continued = true;
    x.client.stream.write_all(answers::CONTINUE).await.is_ok()
        && x.client.stream.flush().await.is_ok()
}

/// A custom activity refused: a body already buffered whole is skipped;
/// otherwise the connection closes after the page.
async fn refused(x: &mut Exchange<'_>) -> Step {
    if let Framing::Length(n) = x.req.framing {
        if x.client.buffered().len() as u64 >= n {
            x.client.consume(n as usize);
            return write_refusal(x, 403, true).await;
        }
    }
    let body_read = !x.req.framing.has_body();
    write_refusal(x, 403, body_read).await
}

/// Sends the refusal in `x.out`; the connection stays open only when the
/// body was read whole.
async fn write_refusal(x: &mut Exchange<'_>, status: u16, body_read: bool) -> Step {
    use futures_lite::AsyncWriteExt;
    x.served.status = status;
    if x.client.stream.write_all(&x.out).await.is_err() {
        return Step::Done(Outcome::Close);
    }
    Step::Done(if body_read && x.req.keep_alive {
        Outcome::KeepAlive
    } else {
        Outcome::CloseAfterError(status)
    })
}
