//! Phase *session (response)*: download control, after the app's response
//! head (its client head is in `x.out`, not yet sent). Runs only when
//! session policies matched the request.
//!
//! Recognizes a download, holds it when a policy needs its bytes (decoded
//! when the app compressed it), decides, and either lets *relay* send it
//! untouched (`Continue`), replaces it with `<name>.blocked.txt`, or
//! streams it encrypted to the policy's `age` recipients (`Done`). Sets
//! `x.served.activity`.

use palisade_schema::logrec::Action;
use palisade_schema::session::{Control, SessionAction, DEFAULT_MAX_BYTES};

use super::error::{SessionError, UpstreamError};
use super::exchange::{Exchange, Step};
use super::session_request::note_for;
use crate::activity;
use crate::answers::{self, ProtectedFraming};
use crate::body::{self, BodyFilter, SinkFraming, Transfer};
use crate::http::Framing;
use crate::session_policy::file::Uninspectable;
use crate::session_policy::flow::{self, Held};
use crate::session_policy::{FileFacts, FileVerdict};

/// Runs the phase.
pub async fn session_response(x: &mut Exchange<'_>) -> Step {
    match decide(x).await {
        Ok(step) => step,
        Err(error) => UpstreamError::Session {
            app: x.app().name.clone(),
            error,
        }
        .into(),
    }
}

/// A held download: its raw length in the upstream buffer and its bytes
/// decoded (when they could be).
struct HeldFile {
    raw_len: Option<usize>,
    decoded: Option<Vec<u8>>,
    uninspectable: Option<Uninspectable>,
}

async fn decide(x: &mut Exchange<'_>) -> Result<Step, SessionError> {
    let Some(resp) = x.response.clone() else {
        return Ok(Step::Continue);
    };
    let policies = &x.snap.session_policies;
    let rules = &x.admitted.session_rules;
    if x.req.is_head || !(200..300).contains(&resp.status) || !resp.upstream_framing.has_body() {
        return Ok(Step::Continue);
    }
    if !policies.controls(rules, Control::Download) && policies.monitor_rule(rules).is_none() {
        return Ok(Step::Continue);
    }
    let target = x.req.index.target.of(&x.upstream_head);
    let disposition =
        (!resp.content_disposition.is_empty()).then(|| resp.content_disposition.of(&x.out));
    let content_type = resp.content_type.of(&x.out);
    let Some(name) = activity::download(&x.app().profile, disposition, content_type, target) else {
        return Ok(Step::Continue);
    };
    let size = match resp.upstream_framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    if !policies.may_match(rules, Control::Download, &name, size) {
        // Files not under control stream through untouched; a monitor
        // policy still names the activity.
        let none = FileVerdict::default();
        x.served.activity = Some(note_for(x, "download", (&name, size.unwrap_or(0)), &none));
        return Ok(Step::Continue);
    }
    let held = hold(x, &name, size).await?;
    let verdict = policies.decide_file(
        &x.admitted.session_rules,
        Control::Download,
        &FileFacts {
            name: &name,
            size: held.decoded.as_ref().map(|d| d.len() as u64).or(size),
            content: held.decoded.as_deref(),
            uninspectable: held.uninspectable,
        },
    );
    let file_size = held
        .decoded
        .as_ref()
        .map(|d| d.len() as u64)
        .or(size)
        .unwrap_or(0);
    x.served.activity = Some(note_for(x, "download", (&name, file_size), &verdict));
    let encoded = !matches!(resp.content_coding, Ok(None));
    let name_text = String::from_utf8_lossy(&name).into_owned();
    match (verdict.action, verdict.rule) {
        // An encoded file that could not be decoded cannot be encrypted as
        // the file it is: refuse it instead.
        (Some(SessionAction::Protect), Some(rule)) if encoded && held.decoded.is_none() => {
            if let Some(n) = x.served.activity.as_mut() {
                n.action = Some(Action::Block);
                n.detail
                    .push_str(" (content-encoded, not decodable: blocked instead of protected)");
            }
            Ok(block(x, &name_text, rule, held.raw_len).await)
        }
        (Some(SessionAction::Block), Some(rule)) => {
            Ok(block(x, &name_text, rule, held.raw_len).await)
        }
        (Some(SessionAction::Protect), Some(rule)) => protect(x, &name_text, rule, held).await,
        _ => Ok(Step::Continue),
    }
}

/// Holds the download when a policy needs its bytes (or it is encoded and
/// would be protected decoded), within the core's held-bytes budget.
async fn hold(
    x: &mut Exchange<'_>,
    name: &[u8],
    size: Option<u64>,
) -> Result<HeldFile, SessionError> {
    let Some(resp) = x.response.as_ref() else {
        return Ok(HeldFile {
            raw_len: None,
            decoded: None,
            uninspectable: None,
        });
    };
    let policies = &x.snap.session_policies;
    let coding = resp.content_coding;
    let encoded = !matches!(coding, Ok(None));
    let framing = resp.upstream_framing;
    let mut limit = policies.hold_limit(&x.admitted.session_rules, Control::Download, name, size);
    if encoded {
        // Protecting means encrypting the decoded file: hold it even when
        // no policy needs its bytes to decide.
        limit = Some(limit.unwrap_or(0).max(DEFAULT_MAX_BYTES));
    }
    let mut file = HeldFile {
        raw_len: None,
        decoded: None,
        uninspectable: None,
    };
    let Some(limit) = limit else {
        return Ok(file);
    };
    x.hold = flow::reserve(&x.core.held_bytes, size.unwrap_or(limit).min(limit));
    let Some(up) = x.upstream.as_mut() else {
        return Ok(file);
    };
    if x.hold.is_none() {
        file.uninspectable = Some(Uninspectable::Busy);
        return Ok(file);
    }
    let held = flow::hold_body(up, framing, limit, x.core.limits.body_timeout)
        .await
        .map_err(SessionError::Hold)?;
    let Held::Complete { raw_len: n } = held else {
        file.uninspectable = Some(Uninspectable::TooBig);
        return Ok(file);
    };
    file.raw_len = Some(n);
    let raw = flow::held_bytes(up.buffered(), framing, n);
    match coding {
        Ok(None) => file.decoded = Some(raw.into_owned()),
        Ok(Some(c)) => match crate::session_policy::file::decode_bounded(c, &raw, limit) {
            Ok(d) => file.decoded = Some(d),
            Err(u) => file.uninspectable = Some(u),
        },
        Err(_) => file.uninspectable = Some(Uninspectable::Encoded),
    }
    Ok(file)
}

/// Replaces the download with `<name>.blocked.txt`.
async fn block(x: &mut Exchange<'_>, name: &str, rule: u32, raw_len: Option<usize>) -> Step {
    let Some(resp) = x.response.as_ref() else {
        return Step::Continue;
    };
    let (keep_alive, reusable) = (resp.client_keep_alive, resp.upstream_reusable);
    let snap = x.snap;
    let blocked = answers::Blocked {
        app: &snap.apps[x.req.app].name,
        activity: Some("download"),
        policy_message: &snap.session_policies.rule(rule).message,
        request_id: x.request_id,
        json: false,
    };
    answers::blocked_download(&mut x.out, name, &blocked, keep_alive);
    if let (Some(n), Some(up)) = (raw_len, x.upstream.as_mut()) {
        up.consume(n);
    }
    let _ = futures_lite::AsyncWriteExt::write_all(&mut x.client.stream, &x.out).await;
    x.out.clear();
    super::finish::done(x, raw_len.is_some() && reusable, keep_alive)
}

/// Sends the download encrypted: whole with its length when it was held,
/// else streamed.
async fn protect(
    x: &mut Exchange<'_>,
    name: &str,
    rule: u32,
    held: HeldFile,
) -> Result<Step, SessionError> {
    let Some(resp) = x.response.as_ref() else {
        return Ok(Step::Continue);
    };
    let (keep_alive, reusable, framing) = (
        resp.client_keep_alive,
        resp.upstream_reusable,
        resp.upstream_framing,
    );
    let mut protect = flow::Protect::new(&x.snap.session_policies.rule(rule).recipients)
        .map_err(SessionError::Protect)?;
    let Some(up) = x.upstream.as_mut() else {
        return Ok(Step::Continue);
    };
    if let (Some(n), Some(plain)) = (held.raw_len, &held.decoded) {
        // Held whole: encrypt in memory, send with its length.
        let mut sealed = Vec::with_capacity(plain.len() + plain.len() / 4096 * 16 + 256);
        protect.feed(plain, &mut sealed)?;
        protect.finish(&mut sealed)?;
        up.consume(n);
        answers::protected_head(
            &mut x.out,
            name,
            ProtectedFraming::Length(sealed.len()),
            keep_alive,
        );
        x.out.extend_from_slice(&sealed);
        let written = futures_lite::AsyncWriteExt::write_all(&mut x.client.stream, &x.out).await;
        x.out.clear();
        return Ok(super::finish::done(
            x,
            reusable,
            written.is_ok() && keep_alive,
        ));
    }
    // Not held (no policy needed its bytes): encrypt as it streams.
    let chunked = x.req.http11;
    let keep_alive = chunked && keep_alive;
    let (head_framing, sink_framing) = if chunked {
        (ProtectedFraming::Chunked, SinkFraming::Chunked)
    } else {
        (ProtectedFraming::UntilClose, SinkFraming::Raw)
    };
    answers::protected_head(&mut x.out, name, head_framing, keep_alive);
    let how = Transfer {
        framing,
        sink_framing,
        read_timeout: x.core.limits.body_timeout,
        max_buffer: crate::upstream::UPSTREAM_BUFFER,
    };
    let filter = Some(&mut protect as &mut dyn BodyFilter);
    let relayed = body::relay(up, &mut x.client.stream, how, filter, &mut x.out).await;
    x.out.clear();
    let ok = relayed.is_ok();
    Ok(super::finish::done(x, ok && reusable, ok && keep_alive))
}
