//! Phase *relay*: the response body from the app to the client, streamed
//! through the rewrite engine when the head said so (decoded, rewritten,
//! re-encoded as the client accepts), or a 101 handed over as a tunnel.
//!
//! Runs after *session (response)* let the response through; the client
//! head is in `x.out` and goes out with the first body bytes. A body that
//! cannot be rewritten before anything was sent gets the 502 page; once
//! bytes are out, a failure can only close.

use futures_lite::AsyncWriteExt;

use super::error::UpstreamError;
use super::exchange::{ActivityNote, Exchange, Outcome, Step};
use crate::body::{self, BodyFilter, RelayError, SinkFraming, Transfer};
use crate::http::response::ClientFraming;
use crate::rewrite::codec::Transcoder;
use crate::rewrite::content::TextKind;
use crate::rewrite::inject::Injection;
use crate::rewrite::Rewriter;

/// Runs the phase.
pub async fn relay(x: &mut Exchange<'_>) -> Step {
    let (Some(resp), Some(mut up)) = (x.response.take(), x.upstream.take()) else {
        return Step::Done(Outcome::Close);
    };
    if resp.switching_protocols {
        if x.client.stream.write_all(&x.out).await.is_err() {
            return Step::Done(Outcome::Close);
        }
        return Step::Done(Outcome::Tunnel(up));
    }
    // A download is named from the client head before it goes out.
    let download = if x.core.logs.is_some() && x.served.activity.is_none() {
        let disposition =
            (!resp.content_disposition.is_empty()).then(|| resp.content_disposition.of(&x.out));
        let target = x.req.index.target.of(&x.upstream_head);
        let content_type = resp.content_type.of(&x.out);
        crate::activity::download(&x.app().profile, disposition, content_type, target)
    } else {
        None
    };
    let sink_framing = match resp.client_framing {
        ClientFraming::Chunked => SinkFraming::Chunked,
        _ => SinkFraming::Raw,
    };
    let app = x.app();
    let injection = resp.rewrite.and_then(|p| p.instrument);
    let tag = (injection == Some(Injection::Document)).then(|| {
        crate::client::tag_for(
            &x.snap.client,
            &x.snap.session_policies,
            &x.admitted.session_rules,
        )
    });
    let mut transcoder = resp.rewrite.map(|plan| {
        let mut rewriter = Rewriter::new(&x.snap.hosts, plan.kind == TextKind::Html)
            .with_contexts(app.bare_host_contexts.as_ref());
        if let Some(tag) = &tag {
            rewriter = rewriter.with_injection(tag);
        } else if injection == Some(Injection::Worker) {
            let client = &x.snap.client;
            rewriter =
                rewriter.with_worker_injection(&client.classic_worker, &client.module_worker);
        }
        Transcoder::new(rewriter, plan.from, plan.to)
    });
    let how = Transfer {
        framing: resp.upstream_framing,
        sink_framing,
        read_timeout: x.core.limits.body_timeout,
        max_buffer: crate::upstream::UPSTREAM_BUFFER,
    };
    let filter = transcoder.as_mut().map(|t| t as &mut dyn BodyFilter);
    let relayed = body::relay(&mut up, &mut x.client.stream, how, filter, &mut x.out).await;
    x.out.clear();
    if let Ok(size) = &relayed {
        if let Some(file_name) = download {
            x.recognized = Some(ActivityNote {
                name: "download".into(),
                file_name,
                file_size: *size,
                ..Default::default()
            });
        }
        if let Some(n) = x.served.activity.as_mut().filter(|n| n.file_size == 0) {
            n.file_size = *size;
        }
    }
    match relayed {
        Ok(_) => {}
        // Nothing reached the client yet (its head was held back with the
        // first body bytes): it still gets a proper error page.
        Err(RelayError::Filter {
            reason,
            sent_nothing: true,
        }) => {
            let app = app.name.clone();
            return UpstreamError::Unrewritable { app, reason }.into();
        }
        Err(
            error @ (RelayError::Framing {
                sent_nothing: true, ..
            }
            | RelayError::Source {
                sent_nothing: true, ..
            }),
        ) => {
            let app = app.name.clone();
            return UpstreamError::BadBody { app, error }.into();
        }
        // Part of the response is out: all we can do is close.
        Err(_) => return Step::Done(Outcome::Close),
    }
    x.upstream = Some(up);
    super::finish::done(x, resp.upstream_reusable, resp.client_keep_alive)
}
