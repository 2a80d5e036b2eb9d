//! Fuzz harness for the request parser and framing. The targets in `fuzz/`
//! (outside the workspace) call [`request_head_and_body`]; keeping the logic
//! here means it compiles and runs in normal CI through the tests.

use std::net::SocketAddr;

use crate::http::chunked::{ChunkedDecoder, Step};
use crate::http::request::{prepare_request, ClientContext, Parsed};
use crate::http::Framing;
use crate::limits::Limits;
use crate::snapshot::Snapshot;

/// The routing table every fuzz run uses (apps `demo.test` and
/// `demo-cdn.test` under `proxy.test`, with three bare-host context
/// patterns).
pub fn fuzz_routes() -> Snapshot {
    let policy = palisade_schema::policy::compile_source(
        "fuzz.toml",
        "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"http://127.0.0.1:9\"\nbare_host_contexts = ['\"domain\":\"', 'document.domain = \"', 'host=']\n",
        std::path::Path::new("."),
        &palisade_schema::policy::CompileOptions::default(),
    )
    // The embedded policy is valid; a failure here is a bug in this file.
    .expect("fuzz policy compiles");
    Snapshot::build(&policy, &rustls::RootCertStore::empty()).expect("fuzz routes build")
}

/// Parses `data` as a request head and, when it is complete, decodes the
/// body that follows per its framing. Must never panic; checks invariants
/// that hold for any input.
pub fn request_head_and_body(routes: &Snapshot, data: &[u8]) {
    let limits = Limits::default();
    let ctx = ClientContext::new(SocketAddr::from(([127, 0, 0, 1], 1)), false);
    let mut out = Vec::new();
    let info = match prepare_request(data, routes, &limits, &ctx, &mut out) {
        Ok(Parsed::Complete(info)) => info,
        Ok(Parsed::Partial) | Err(_) => return,
    };
    assert!(info.head_len <= data.len());
    // What goes upstream must itself be a valid head with the same framing.
    assert!(out.ends_with(b"\r\n\r\n"));
    let mut headers = [httparse::EMPTY_HEADER; 512];
    let mut reparsed = httparse::Request::new(&mut headers);
    assert!(matches!(reparsed.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()));
    let body = &data[info.head_len..];
    if info.framing == Framing::Chunked {
        let mut d = ChunkedDecoder::new();
        let mut pos = 0;
        while pos < body.len() {
            match d.step(&body[pos..]) {
                Ok((n, Step::Done)) => {
                    assert!(pos + n <= body.len());
                    break;
                }
                Ok((n, _)) => {
                    assert!(n > 0);
                    pos += n;
                }
                Err(_) => break,
            }
        }
    }
}

/// Rewrites `data` (the first byte picks HTML or not and the split
/// pattern) whole and in pieces: must never panic, and every split must
/// give the same output. The request-body unwrapper is held to the same.
pub fn rewrite_split_invariance(routes: &Snapshot, data: &[u8]) {
    use crate::body::BodyFilter;
    use crate::rewrite::{unwrap::Unwrapper, Rewriter};
    let Some((&control, doc)) = data.split_first() else {
        return;
    };
    let html = control & 1 == 1;
    let contexts = if control & 2 == 2 {
        routes.apps[0].bare_host_contexts.as_ref()
    } else {
        None
    };
    let mut whole = Vec::new();
    let mut r = Rewriter::new(&routes.hosts, html).with_contexts(contexts);
    r.feed(doc, &mut whole);
    r.finish(&mut whole);
    let step = usize::from(control >> 2).max(1);
    let mut split = Vec::new();
    let mut r = Rewriter::new(&routes.hosts, html).with_contexts(contexts);
    for piece in doc.chunks(step) {
        r.feed(piece, &mut split);
    }
    r.finish(&mut split);
    assert_eq!(whole, split, "split every {step} bytes changed the output");

    // Zero-copy output (spans of the input by reference) is the same text.
    let mut zero_copy = Vec::new();
    let mut r = Rewriter::new(&routes.hosts, html).with_contexts(contexts);
    let mut pieces = crate::body::FilterOutput::default();
    for piece in doc.chunks(step) {
        pieces.clear();
        r.feed(piece, &mut pieces);
        zero_copy.extend_from_slice(&pieces.to_vec(piece));
    }
    r.finish(&mut zero_copy);
    assert_eq!(whole, zero_copy, "zero-copy output differs");

    let unwrap = |step: usize| {
        let mut out = Vec::new();
        let mut u = Unwrapper::new(&routes.hosts);
        for piece in doc.chunks(step) {
            u.feed(piece, &mut out).expect("unwrapping never fails");
        }
        u.finish(&mut out).expect("unwrapping never fails");
        out
    };
    assert_eq!(unwrap(doc.len().max(1)), unwrap(step));

    let multipart = |step: usize| {
        let mut out = Vec::new();
        let mut m = crate::rewrite::unwrap::MultipartUnwrapper::new(&routes.hosts, b"XyZ");
        for piece in doc.chunks(step) {
            m.feed(piece, &mut out).expect("unwrapping never fails");
        }
        m.finish(&mut out).expect("unwrapping never fails");
        out
    };
    assert_eq!(multipart(doc.len().max(1)), multipart(step));
}
