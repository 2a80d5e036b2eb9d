//! Fuzz harness: the request parser and framing, the rewrite engine and
//! body unwrappers, the response head parser, the chunked decoder, the
//! multipart parsers and the snapshot decoder. The targets in `fuzz/` (outside the workspace) call
//! these functions; keeping the logic here means it compiles and runs in
//! normal CI through the tests, which replay each target's corpus.

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

/// Parses `data[1..]` as an app's response head to a request the first
/// byte picks (GET, HEAD, or GET asking to upgrade): must never panic, and
/// a head it accepts becomes a client head that is itself a complete,
/// valid HTTP/1.1 response head.
pub fn response_head(routes: &Snapshot, data: &[u8]) {
    use crate::http::response::{prepare_response, ParsedResponse, ResponseLimits};
    let Some((&control, head)) = data.split_first() else {
        return;
    };
    let request: &[u8] = match control % 3 {
        0 => b"GET / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n",
        1 => b"HEAD / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n",
        _ => b"GET / HTTP/1.1\r\nHost: demo.test.proxy.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    };
    let limits = Limits::default();
    let ctx = ClientContext::new(SocketAddr::from(([127, 0, 0, 1], 1)), false);
    let mut upstream_head = Vec::new();
    let Ok(Parsed::Complete(req)) =
        prepare_request(request, routes, &limits, &ctx, &mut upstream_head)
    else {
        // The fixed requests are valid; a failure here is a bug in this file.
        panic!("the fuzz request does not parse");
    };
    let shape = ResponseLimits {
        max_header_bytes: limits.max_response_header_bytes,
        rewrite_bodies: control & 4 == 0,
        data_types: &[],
        leak_guard: b"",
    };
    let mut out = Vec::new();
    let Ok(ParsedResponse::Complete(info)) =
        prepare_response(head, &req, &routes.hosts, shape, &mut out)
    else {
        return;
    };
    assert!(info.head_len <= head.len());
    assert!(out.starts_with(b"HTTP/1.1 ") && out.ends_with(b"\r\n\r\n"));
    let mut fields = [httparse::EMPTY_HEADER; 512];
    let mut reparsed = httparse::Response::new(&mut fields);
    assert!(
        matches!(reparsed.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()),
        "the client head does not reparse: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(reparsed.code, Some(info.status));
}

/// Decodes `data[1..]` as a chunked body whole and in pieces of the size
/// the first byte picks: never panics, every split gives the same data,
/// trailers and verdict, and the data re-encoded decodes to itself.
pub fn chunked_body(data: &[u8]) {
    use crate::http::chunked::{decode_all, push_chunk_header, push_last_chunk, ChunkError};
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let whole = decode_all(body).map(|(data, trailers, _)| (data, trailers));
    let step = usize::from(control).max(1);
    let mut d = ChunkedDecoder::new();
    let (mut got, mut pos) = (Vec::new(), 0);
    let pieces: Result<(Vec<u8>, Vec<u8>), ChunkError> = 'decode: {
        for piece in body.chunks(step) {
            // Feed what is left of this piece until it is used up.
            let mut held = piece;
            while !held.is_empty() {
                match d.step(held) {
                    Ok((n, Step::Data(r))) => {
                        got.extend_from_slice(&held[r]);
                        held = &held[n..];
                    }
                    Ok((n, Step::Framing)) => held = &held[n..],
                    Ok((_, Step::Done)) => break 'decode Ok((got, d.trailers().to_vec())),
                    Err(e) => break 'decode Err(e),
                }
                pos += 1;
                assert!(
                    pos <= 4 * body.len() + 8,
                    "the decoder stopped making progress"
                );
            }
        }
        Err(ChunkError::InvalidSize)
    };
    assert_eq!(
        whole.is_ok(),
        pieces.is_ok(),
        "split every {step} bytes changed the verdict: {whole:?} vs {pieces:?}"
    );
    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
        assert_eq!(a, b, "split every {step} bytes changed the body");
    }
    if let Ok((data, trailers)) = whole {
        let mut again = Vec::new();
        if !data.is_empty() {
            push_chunk_header(&mut again, data.len());
            again.extend_from_slice(&data);
            again.extend_from_slice(b"\r\n");
        }
        push_last_chunk(&mut again, &trailers);
        let (data2, trailers2, used) = decode_all(&again).expect("a re-encoded body decodes");
        assert_eq!((data2, trailers2, used), (data, trailers, again.len()));
    }
}

/// Decodes `data` as snapshot bytes: never panics; a snapshot that
/// decodes builds or is refused with an error, and encodes to bytes that
/// decode again.
pub fn snapshot_bytes(data: &[u8]) {
    let Ok(policy) = palisade_schema::snapshot::decode(data) else {
        return;
    };
    let _ = Snapshot::build(&policy, &rustls::RootCertStore::empty());
    let again = palisade_schema::snapshot::encode(&policy);
    assert!(
        palisade_schema::snapshot::decode(&again).is_ok(),
        "a decoded snapshot does not survive encoding"
    );
}

/// Parses `data` as a multipart upload: its first line is the
/// Content-Type value (the boundary comes from it, `XyZ` when it has
/// none), the rest the body. The upload parsers never panic and find file
/// parts only between delimiters; the text-field unwrapper gives the same
/// output however the body is split, and leaves a body that names no
/// proxy host byte for byte as it was.
pub fn multipart_body(routes: &Snapshot, data: &[u8]) {
    use crate::activity::disposition::{multipart_boundary, multipart_file_name};
    use crate::body::BodyFilter;
    use crate::rewrite::unwrap::MultipartUnwrapper;
    use crate::session_policy::flow::multipart_files;
    let line_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let content_type = &data[..line_end];
    let body = data.get(line_end + 1..).unwrap_or_default();
    let boundary = multipart_boundary(content_type).unwrap_or(b"XyZ");
    assert!(!boundary.is_empty() && boundary.len() <= 70);

    let files = multipart_files(body, boundary);
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let delimiters = memchr::memmem::find_iter(body, &delimiter).count();
    // A part that names its file twice (two Content-Disposition fields)
    // is reported once per name, so a policy sees every name an app
    // server might take; the parts themselves are still only those
    // between delimiters.
    let mut parts: Vec<*const u8> = files.iter().map(|(_, content)| content.as_ptr()).collect();
    parts.dedup();
    assert!(
        parts.len() < delimiters.max(1),
        "{} file parts between {delimiters} delimiters",
        parts.len()
    );
    if let Some(name) = multipart_file_name(body) {
        assert!(!name.is_empty());
    }

    let unwrap = |step: usize| {
        let mut out = Vec::new();
        let mut m = MultipartUnwrapper::new(&routes.hosts, boundary);
        for piece in body.chunks(step.max(1)) {
            m.feed(piece, &mut out).expect("unwrapping never fails");
        }
        m.finish(&mut out).expect("unwrapping never fails");
        out
    };
    let whole = unwrap(body.len());
    let step = usize::from(content_type.len() as u8 % 7) + 1;
    assert_eq!(
        whole,
        unwrap(step),
        "split every {step} bytes changed the output"
    );
    let names_a_proxy_host = memchr::memmem::find_iter(&body.to_ascii_lowercase(), b"proxy")
        .next()
        .is_some();
    if !names_a_proxy_host {
        assert_eq!(whole, body, "a body with no proxy host was changed");
    }
}
