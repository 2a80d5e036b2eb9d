//! The session-policy phases of the request path (DESIGN: phase 6), run
//! by the proxy only when session policies match the request or the app's
//! profile names custom activities:
//!
//! - [`before_upstream`]: recognize a custom activity (block it when a
//!   `block_activities` policy says so) and, under `control_upload`, hold
//!   an upload whole (bounded), read its files and decide; a blocked
//!   request gets the block page and never reaches the app.
//! - [`on_response`]: under `control_download`, recognize a download,
//!   hold it when a policy needs its bytes, decide, and either let the
//!   normal relay send it untouched, replace it with `<name>.blocked.txt`,
//!   or stream it encrypted to the policy's `age` recipients.

use std::rc::Rc;

use palisade_schema::logrec::Action;
use palisade_schema::session::{Control, SessionAction};

use crate::body::{self, BodyFilter, SinkFraming};
use crate::gate::Admitted;
use crate::http::request::RequestInfo;
use crate::http::response::ResponseInfo;
use crate::http::Framing;
use crate::io::Inbound;
use crate::pages;
use crate::proxy::{ClientStream, Core, Outcome};
use crate::routes::RouteTable;
use crate::session::file::Uninspectable;
use crate::session::flow::{self, Held};
use crate::session::{FileFacts, FileVerdict};
use crate::upstream::UpstreamConn;

/// Longest request body read to look for a custom activity's body marker.
const MAX_MARKER_BODY: u64 = 64 * 1024;

/// An activity the request carried, for its log record.
#[derive(Default, Debug)]
pub struct ActivityNote {
    pub name: String,
    pub file_name: Vec<u8>,
    pub file_size: u64,
    /// The session decision (`None`: recognized, no session policy).
    pub action: Option<Action>,
    pub policy: Option<Rc<str>>,
    /// Type, label, matches.
    pub detail: String,
}

fn log_action(a: SessionAction) -> Action {
    match a {
        SessionAction::Audit => Action::Audit,
        SessionAction::Protect => Action::Protect,
        SessionAction::Block => Action::Block,
    }
}

/// The activity record of a file decision; without a matching control
/// rule, a matching monitor rule names it.
fn note_for(
    routes: &RouteTable,
    admitted: &Admitted,
    name: &str,
    file: &[u8],
    size: u64,
    v: &FileVerdict,
) -> ActivityNote {
    let (action, policy) = match (v.action, v.rule) {
        (Some(a), Some(r)) => (
            Some(log_action(a)),
            Some(routes.session.rule(r).name.clone()),
        ),
        _ => match routes.session.monitor_rule(&admitted.session_rules) {
            Some(r) => (
                Some(Action::Monitor),
                Some(routes.session.rule(r).name.clone()),
            ),
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

/// Answers with the block page for a refused request; the connection
/// stays open only when the body was read whole.
fn refuse(
    out: &mut Vec<u8>,
    routes: &RouteTable,
    req: &RequestInfo,
    activity: &str,
    rule: u32,
    request_id: u64,
) {
    let app = &routes.apps[req.app];
    pages::block_page(
        out,
        req.gate.wants_json,
        &app.name,
        Some(activity),
        &routes.session.rule(rule).message,
        &routes.block_page,
        &format!("{request_id:016x}"),
        !req.is_head,
    );
}

/// What the request phase decided.
pub enum BeforeUpstream {
    /// Send the request on.
    Forward,
    /// The proxy answered (block page in `out`); `body_read`: the whole
    /// request body was consumed, so the connection may stay open.
    Refused { status: u16, body_read: bool },
}

/// Custom activities and upload control, before anything is sent to the
/// app.
#[allow(clippy::too_many_arguments)]
pub async fn before_upstream<'c>(
    core: &'c Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    upstream_head: &[u8],
    admitted: &Admitted,
    request_id: u64,
    out: &mut Vec<u8>,
    note: &mut Option<ActivityNote>,
    continued: &mut bool,
    budget: &mut Option<flow::HoldBudget<'c>>,
) -> BeforeUpstream {
    let route = &routes.apps[req.app];
    let rules = &admitted.session_rules;
    let (method, target, _) = req.log_fields.split(upstream_head);
    let timeout = core.limits.body_timeout;

    // Custom activities.
    if !route.profile.activities.is_empty() {
        let mut found = None;
        for act in crate::session::custom_activity(&route.profile, method, target) {
            if !act.body_contains.is_empty() {
                let Framing::Length(n) = req.framing else {
                    continue;
                };
                if n > MAX_MARKER_BODY {
                    continue;
                }
                if !ask_for_body(client, req, continued).await {
                    continue;
                }
                match flow::hold_body(client, req.framing, MAX_MARKER_BODY, timeout).await {
                    Ok(Held::Complete { raw_len }) => {
                        if memchr::memmem::find(
                            &client.buffered()[..raw_len],
                            act.body_contains.as_bytes(),
                        )
                        .is_none()
                        {
                            continue;
                        }
                    }
                    _ => continue,
                }
            }
            found = Some(act.name.clone());
            break;
        }
        if let Some(name) = found {
            if let Some(rule) = routes.session.blocking_activity(rules, &name) {
                refuse(out, routes, req, &name, rule, request_id);
                *note = Some(ActivityNote {
                    name,
                    action: Some(Action::Block),
                    policy: Some(routes.session.rule(rule).name.clone()),
                    ..Default::default()
                });
                return refused(client, req);
            }
            let monitor = routes.session.monitor_rule(rules);
            *note = Some(ActivityNote {
                name,
                action: monitor.map(|_| Action::Monitor),
                policy: monitor.map(|r| routes.session.rule(r).name.clone()),
                ..Default::default()
            });
        }
    }

    // Uploads.
    if !routes.session.controls(rules, Control::Upload) || !req.framing.has_body() {
        return BeforeUpstream::Forward;
    }
    let content_type = flow::header(upstream_head, b"content-type").unwrap_or(b"");
    let boundary = flow::multipart_boundary(content_type).map(<[u8]>::to_vec);
    let by_path = matches!(method, b"PUT" | b"POST")
        && crate::session::path_matches(&route.profile.upload_paths, target);
    if boundary.is_none() && !by_path {
        return BeforeUpstream::Forward;
    }
    let announced = match req.framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let limit = routes
        .session
        .rules
        .iter()
        .filter(|r| r.control == Control::Upload)
        .map(|r| {
            r.inspector
                .as_ref()
                .map_or(palisade_schema::session::DEFAULT_MAX_BYTES, |i| i.max_bytes)
        })
        .max()
        .unwrap_or(palisade_schema::session::DEFAULT_MAX_BYTES);
    if !ask_for_body(client, req, continued).await {
        return BeforeUpstream::Refused {
            status: 400,
            body_read: false,
        };
    }
    *budget = flow::reserve(&core.held_bytes, announced.unwrap_or(limit).min(limit));
    let (held, too_big) = if budget.is_none() {
        (Held::TooBig, Uninspectable::Busy)
    } else {
        match flow::hold_body(client, req.framing, limit, timeout).await {
            Ok(h) => (h, Uninspectable::TooBig),
            Err(e) => {
                pages::error_response(out, 400, &format!("reading the upload: {e}"), !req.is_head);
                return BeforeUpstream::Refused {
                    status: 400,
                    body_read: false,
                };
            }
        }
    };
    let mut worst = FileVerdict::default();
    let mut worst_file: (Vec<u8>, u64) = (Vec::new(), announced.unwrap_or(0));
    let mut consider = |v: FileVerdict, name: &[u8], size: u64| {
        let stricter = match (v.action, worst.action) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => worst.action.is_none() && worst_file.0.is_empty(),
        };
        if stricter {
            worst = v;
            worst_file = (name.to_vec(), size);
        }
    };
    match held {
        Held::Complete { raw_len } => {
            let body = flow::held_bytes(client.buffered(), req.framing, raw_len);
            let files: Vec<(Vec<u8>, &[u8])> = match &boundary {
                Some(b) => flow::multipart_files(&body, b),
                None => vec![(crate::session::last_segment(target).to_vec(), &body[..])],
            };
            for (name, data) in &files {
                let v = routes.session.decide_file(
                    rules,
                    Control::Upload,
                    &FileFacts {
                        name,
                        size: Some(data.len() as u64),
                        content: Some(data),
                        uninspectable: None,
                    },
                );
                consider(v, name, data.len() as u64);
            }
        }
        Held::TooBig => {
            let name = match &boundary {
                Some(_) => crate::logs::disposition::multipart_file_name(client.buffered())
                    .unwrap_or_default(),
                None => crate::session::last_segment(target).to_vec(),
            };
            let v = routes.session.decide_file(
                rules,
                Control::Upload,
                &FileFacts {
                    name: &name,
                    size: announced,
                    content: None,
                    uninspectable: Some(too_big),
                },
            );
            consider(v, &name, announced.unwrap_or(0));
        }
    }
    if worst_file.0.is_empty() && worst.action.is_none() {
        return BeforeUpstream::Forward;
    }
    *note = Some(note_for(
        routes,
        admitted,
        "upload",
        &worst_file.0,
        worst_file.1,
        &worst,
    ));
    match (worst.action, worst.rule) {
        (Some(SessionAction::Block), Some(rule)) => {
            refuse(out, routes, req, "upload", rule, request_id);
            if let Held::Complete { raw_len } = held {
                client.consume(raw_len);
                return BeforeUpstream::Refused {
                    status: 403,
                    body_read: true,
                };
            }
            BeforeUpstream::Refused {
                status: 403,
                body_read: false,
            }
        }
        _ => BeforeUpstream::Forward,
    }
}

/// A client that sent `Expect: 100-continue` waits for the go-ahead before
/// its body (RFC 9110 §10.1.1): give it once before holding the body.
/// False when the client is gone.
async fn ask_for_body(
    client: &mut Inbound<ClientStream>,
    req: &RequestInfo,
    continued: &mut bool,
) -> bool {
    use futures_lite::AsyncWriteExt;
    if !req.expect_continue || *continued {
        return true;
    }
    *continued = true;
    client
        .stream
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .await
        .is_ok()
        && client.stream.flush().await.is_ok()
}

fn refused(client: &mut Inbound<ClientStream>, req: &RequestInfo) -> BeforeUpstream {
    // A body already buffered whole can be skipped; otherwise the
    // connection closes after the page.
    if let Framing::Length(n) = req.framing {
        if client.buffered().len() as u64 >= n {
            client.consume(n as usize);
            return BeforeUpstream::Refused {
                status: 403,
                body_read: true,
            };
        }
    }
    BeforeUpstream::Refused {
        status: 403,
        body_read: !req.framing.has_body(),
    }
}

/// What the response phase did.
pub enum OnResponse {
    /// Not a controlled download (or it passes): relay as usual.
    Relay,
    /// The proxy answered; `reuse_upstream`: the app's response was read
    /// whole, so its connection may go back to the pool.
    Done {
        outcome: Outcome,
        reuse_upstream: bool,
    },
}

/// Download control, after the app's response head (the client head is
/// in `out`, not yet sent).
#[allow(clippy::too_many_arguments)]
pub async fn on_response<'c>(
    core: &'c Core,
    routes: &RouteTable,
    client: &mut Inbound<ClientStream>,
    up: &mut UpstreamConn,
    req: &RequestInfo,
    upstream_head: &[u8],
    resp: &ResponseInfo,
    admitted: &Admitted,
    request_id: u64,
    out: &mut Vec<u8>,
    note: &mut Option<ActivityNote>,
    budget: &mut Option<flow::HoldBudget<'c>>,
) -> Result<OnResponse, String> {
    let rules = &admitted.session_rules;
    if req.is_head || !(200..300).contains(&resp.status) || !resp.upstream_framing.has_body() {
        return Ok(OnResponse::Relay);
    }
    if !routes.session.controls(rules, Control::Download)
        && routes.session.monitor_rule(rules).is_none()
    {
        return Ok(OnResponse::Relay);
    }
    let route = &routes.apps[req.app];
    let (_, target, _) = req.log_fields.split(upstream_head);
    let disposition_name = resp
        .content_disposition
        .and_then(|(s, e)| out.get(s as usize..e as usize))
        .and_then(crate::logs::disposition::attachment_name);
    let content_type = flow::header(out, b"content-type").map(|v| {
        v.split(|b| *b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii()
            .to_ascii_lowercase()
    });
    let is_download = disposition_name.is_some()
        || content_type.as_ref().is_some_and(|t| {
            route
                .profile
                .download_content_types
                .iter()
                .any(|d| d.as_bytes() == t.as_slice())
        })
        || crate::session::path_matches(&route.profile.download_paths, target);
    if !is_download {
        return Ok(OnResponse::Relay);
    }
    let name = match disposition_name {
        Some(n) if !n.is_empty() => n,
        _ => crate::session::last_segment(target).to_vec(),
    };
    let size = match resp.upstream_framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    if !routes
        .session
        .may_match(rules, Control::Download, &name, size)
    {
        // Files not under control stream through untouched; a monitor
        // policy still names the activity.
        *note = Some(note_for(
            routes,
            admitted,
            "download",
            &name,
            size.unwrap_or(0),
            &FileVerdict::default(),
        ));
        return Ok(OnResponse::Relay);
    }
    // The app's content coding: a held file is inspected (and protected)
    // decoded.
    let coding = match &resp.rewrite {
        Some(plan) => Ok(plan.from),
        None => crate::rewrite::codec::response_coding(
            flow::header(out, b"content-encoding").into_iter(),
        ),
    };
    let encoded = !matches!(coding, Ok(None));
    let mut limit = routes
        .session
        .hold_limit(rules, Control::Download, &name, size);
    if encoded {
        // Protecting means encrypting the decoded file: hold it even when
        // no policy needs its bytes to decide.
        limit = Some(
            limit
                .unwrap_or(0)
                .max(palisade_schema::session::DEFAULT_MAX_BYTES),
        );
    }
    let mut held = None;
    let mut uninspectable = None;
    if let Some(limit) = limit {
        *budget = flow::reserve(&core.held_bytes, size.unwrap_or(limit).min(limit));
        if budget.is_none() {
            held = Some(Held::TooBig);
            uninspectable = Some(Uninspectable::Busy);
        } else {
            held = Some(
                flow::hold_body(up, resp.upstream_framing, limit, core.limits.body_timeout)
                    .await
                    .map_err(|e| format!("reading the download: {e}"))?,
            );
        }
    }
    let raw_len = match held {
        Some(Held::Complete { raw_len }) => Some(raw_len),
        _ => None,
    };
    if matches!(held, Some(Held::TooBig)) && uninspectable.is_none() {
        uninspectable = Some(Uninspectable::TooBig);
    }
    // The decoded file when it was held whole (and its coding undone).
    let decoded: Option<Vec<u8>> = match (raw_len, coding) {
        (None, _) => None,
        (Some(n), Ok(None)) => {
            Some(flow::held_bytes(up.buffered(), resp.upstream_framing, n).into_owned())
        }
        (Some(n), Ok(Some(c))) => {
            let raw = flow::held_bytes(up.buffered(), resp.upstream_framing, n);
            match crate::session::file::decode_bounded(c, &raw, limit.unwrap_or(0)) {
                Ok(d) => Some(d),
                Err(u) => {
                    uninspectable = Some(u);
                    None
                }
            }
        }
        (Some(_), Err(_)) => {
            uninspectable = Some(Uninspectable::Encoded);
            None
        }
    };
    let verdict = routes.session.decide_file(
        rules,
        Control::Download,
        &FileFacts {
            name: &name,
            size: decoded.as_ref().map(|d| d.len() as u64).or(size),
            content: decoded.as_deref(),
            uninspectable,
        },
    );
    let file_size = decoded
        .as_ref()
        .map(|d| d.len() as u64)
        .or(size)
        .unwrap_or(0);
    *note = Some(note_for(
        routes, admitted, "download", &name, file_size, &verdict,
    ));
    let name_text = String::from_utf8_lossy(&name).into_owned();
    let action = match (verdict.action, verdict.rule) {
        // An encoded file that could not be decoded cannot be encrypted
        // as the file it is: refuse it instead.
        (Some(SessionAction::Protect), Some(rule)) if encoded && decoded.is_none() => {
            if let Some(n) = note.as_mut() {
                n.action = Some(Action::Block);
                n.detail
                    .push_str(" (content-encoded, not decodable: blocked instead of protected)");
            }
            Some((SessionAction::Block, rule))
        }
        (Some(a), Some(rule)) => Some((a, rule)),
        _ => None,
    };
    match action {
        Some((SessionAction::Block, rule)) => {
            flow::blocked_download(
                out,
                &name_text,
                &route.name,
                &routes.session.rule(rule).message,
                request_id,
                resp.client_keep_alive,
                true,
            );
            if let Some(n) = raw_len {
                up.consume(n);
            }
            let _ = futures_lite::AsyncWriteExt::write_all(&mut client.stream, out).await;
            out.clear();
            Ok(OnResponse::Done {
                outcome: if resp.client_keep_alive {
                    Outcome::KeepAlive
                } else {
                    Outcome::Close
                },
                reuse_upstream: raw_len.is_some() && resp.upstream_reusable,
            })
        }
        Some((SessionAction::Protect, rule)) => {
            let mut protect = flow::Protect::new(&routes.session.rule(rule).recipients)?;
            if let (Some(n), Some(plain)) = (raw_len, &decoded) {
                // Held whole: encrypt in memory, send with its length.
                let mut sealed = Vec::with_capacity(plain.len() + plain.len() / 4096 * 16 + 256);
                protect.feed(plain, &mut sealed).map_err(|e| e.0)?;
                protect.finish(&mut sealed).map_err(|e| e.0)?;
                up.consume(n);
                flow::protected_head(
                    out,
                    &name_text,
                    flow::ProtectedFraming::Length(sealed.len()),
                    resp.client_keep_alive,
                );
                out.extend_from_slice(&sealed);
                let written = futures_lite::AsyncWriteExt::write_all(&mut client.stream, out).await;
                out.clear();
                return Ok(OnResponse::Done {
                    outcome: if written.is_ok() && resp.client_keep_alive {
                        Outcome::KeepAlive
                    } else {
                        Outcome::Close
                    },
                    reuse_upstream: resp.upstream_reusable,
                });
            }
            // Not held (no policy needed its bytes): encrypt as it streams.
            let chunked = req.http11;
            let framing = if chunked {
                flow::ProtectedFraming::Chunked
            } else {
                flow::ProtectedFraming::UntilClose
            };
            let keep_alive = chunked && resp.client_keep_alive;
            flow::protected_head(out, &name_text, framing, keep_alive);
            let sink = if chunked {
                SinkFraming::Chunked
            } else {
                SinkFraming::Raw
            };
            let relayed = body::relay(
                up,
                &mut client.stream,
                resp.upstream_framing,
                sink,
                Some(&mut protect as &mut dyn BodyFilter),
                out,
                core.limits.body_timeout,
                crate::upstream::UPSTREAM_BUFFER,
            )
            .await;
            out.clear();
            Ok(OnResponse::Done {
                reuse_upstream: relayed.is_ok() && resp.upstream_reusable,
                outcome: match relayed {
                    Ok(_) if keep_alive => Outcome::KeepAlive,
                    _ => Outcome::Close,
                },
            })
        }
        _ => Ok(OnResponse::Relay),
    }
}
