//! Response heads from the app: strict parsing (RFC 9112 §4, §6.3), header
//! rewriting toward the user, and the head written to the client.
//!
//! A response that cannot be framed unambiguously is refused (the client
//! gets a 502) rather than forwarded, so a misbehaving upstream can never
//! desynchronise the client connection.

use super::fields::{self, FieldName, TransferCoding};
use super::request::{itoa, RequestInfo, Span};
use super::{has_bare_cr, push_field, Framing};
use crate::hostmap::HostMap;
use crate::hosts;
use crate::rewrite::codec::{self, Coding};
use crate::rewrite::consumer::{self, Consumer, FetchDest};
use crate::rewrite::content::{self, TextKind};
use crate::rewrite::inject::Injection;

/// Why an upstream response head was refused (RFC 9112 framing, RFC 9110
/// field syntax): the client gets a 502 page, the log the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadResponse {
    /// The head is longer than the configured limit.
    HeadTooLarge,
    /// httparse refused the head.
    Malformed(httparse::Error),
    /// A bare CR in the head (RFC 9112 §2.2). A bare LF is accepted as a
    /// line terminator in a response, as §2.2 allows: the client gets a
    /// head the proxy writes itself, with CRLF.
    BareLineEnding,
    InvalidStatus(u16),
    /// NUL, CR or LF inside a field value (RFC 9110 §5.5).
    ForbiddenValueByte,
    MalformedContentLength,
    DifferingContentLengths,
    /// 101 to a request that did not ask to upgrade.
    UnaskedUpgrade,
    /// A transfer coding other than a final `chunked`, or chunked to
    /// HTTP/1.0.
    UnsupportedTransferCoding,
    /// More 1xx responses than the proxy relays for one request.
    TooManyInterim,
    /// The connection closed before a complete head arrived.
    ClosedEarly,
}

impl std::fmt::Display for BadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadResponse::HeadTooLarge => f.write_str("response header section too large"),
            BadResponse::Malformed(e) => write!(f, "malformed response head: {e}"),
            BadResponse::BareLineEnding => f.write_str("bare CR in response head"),
            BadResponse::InvalidStatus(s) => write!(f, "invalid status code {s}"),
            BadResponse::ForbiddenValueByte => f.write_str("NUL, CR or LF in a field value"),
            BadResponse::MalformedContentLength => f.write_str("malformed Content-Length"),
            BadResponse::DifferingContentLengths => f.write_str("differing Content-Length values"),
            BadResponse::UnaskedUpgrade => {
                f.write_str("101 Switching Protocols to a request that asked no upgrade")
            }
            BadResponse::UnsupportedTransferCoding => {
                f.write_str("unsupported response transfer coding")
            }
            BadResponse::TooManyInterim => f.write_str("too many interim responses"),
            BadResponse::ClosedEarly => {
                f.write_str("the app closed the connection without a complete response")
            }
        }
    }
}

impl std::error::Error for BadResponse {}

/// What the proxy does with the body after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body follows.
    Empty,
    /// Forward exactly this many bytes (Content-Length kept).
    Length(u64),
    /// Re-encode as chunked.
    Chunked,
    /// Send until done, then close the client connection (HTTP/1.0 client).
    UntilClose,
}

/// The parsed response, with the client head already written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    pub head_len: usize,
    pub status: u16,
    /// Interim (1xx other than 101): another head follows.
    pub interim: bool,
    /// 101 to an upgrade request: tunnel bytes from here on.
    pub switching_protocols: bool,
    /// How the upstream delimits the body.
    pub upstream_framing: Framing,
    pub client_framing: ClientFraming,
    /// The upstream connection may be reused after this response.
    pub upstream_reusable: bool,
    /// The client connection may be kept open after this response.
    pub client_keep_alive: bool,
    /// The body goes through the rewrite engine.
    pub rewrite: Option<BodyPlan>,
    /// The response's head index: where the Content-Disposition and
    /// Content-Type values sit in the client head (for recognizing
    /// downloads), located while parsing.
    pub content_disposition: Span,
    pub content_type: Span,
    /// The app's content coding (of every Content-Encoding field): a
    /// controlled download is inspected and protected decoded.
    pub content_coding: Result<Option<Coding>, codec::NotDecodable>,
    /// The app sent both Content-Length and chunked Transfer-Encoding: the
    /// length was dropped and the chunked framing used (worth a warning:
    /// the app's stack is buggy).
    pub length_ignored: bool,
}

/// How a rewritten body is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPlan {
    pub kind: TextKind,
    /// An HTML document or a worker's script: the client instrumentation
    /// is injected (`rewrite::inject`).
    pub instrument: Option<Injection>,
    /// The app's content coding (decoded first).
    pub from: Option<Coding>,
    /// The coding sent to the client.
    pub to: Option<Coding>,
}

pub enum ParsedResponse {
    Partial,
    Complete(ResponseInfo),
}

/// What bounds and shapes a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLimits<'a> {
    pub max_header_bytes: usize,
    /// Text bodies go through the rewrite engine, so their length is
    /// unknown.
    pub rewrite_bodies: bool,
    /// The app's data responses of these types (lower-case essences) are
    /// rewritten too.
    pub data_types: &'a [String],
    /// The leak guard's header line, added to instrumented documents.
    pub leak_guard: &'a [u8],
}

/// Parses the response head at the start of `buf` and writes the client
/// head to `out` (cleared first).
pub fn prepare_response(
    buf: &[u8],
    req: &RequestInfo,
    hosts: &HostMap,
    limits: ResponseLimits<'_>,
    out: &mut Vec<u8>,
) -> Result<ParsedResponse, BadResponse> {
    let ResponseLimits {
        max_header_bytes,
        rewrite_bodies,
        data_types,
        leak_guard,
    } = limits;
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
        super::request::MAX_HEADERS_CEILING];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_header_bytes {
                return Err(BadResponse::HeadTooLarge);
            }
            return Ok(ParsedResponse::Partial);
        }
        Err(e) => return Err(BadResponse::Malformed(e)),
    };
    if head_len > max_header_bytes {
        return Err(BadResponse::HeadTooLarge);
    }
    if has_bare_cr(&buf[..head_len]) {
        return Err(BadResponse::BareLineEnding);
    }
    let status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(BadResponse::InvalidStatus(status));
    }
    let http11 = resp.version == Some(1);
    let headers: &[httparse::Header<'_>] = resp.headers;

    let mut content_length: Option<u64> = None;
    let mut te_values = 0;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_nominates_fields = false;
    let mut media = None;
    let mut data_type_asked = false;
    let mut attachment = false;
    let mut content_encoding_seen = false;
    let mut varies_on_accept_encoding = false;
    let mut length_ignored = false;
    let mut kinds = [FieldName::Other; super::request::MAX_HEADERS_CEILING];
    for (h, kind) in headers.iter().zip(kinds.iter_mut()) {
        if fields::has_forbidden_value_bytes(h.value) {
            return Err(BadResponse::ForbiddenValueByte);
        }
        *kind = FieldName::classify(h.name.as_bytes());
        match *kind {
            FieldName::ContentLength => {
                let n = fields::parse_content_length(h.value)
                    .ok_or(BadResponse::MalformedContentLength)?;
                if content_length.is_some_and(|p| p != n) {
                    return Err(BadResponse::DifferingContentLengths);
                }
                content_length = Some(n);
            }
            FieldName::TransferEncoding => te_values += 1,
            FieldName::ContentType => {
                media = content::classify(h.value);
                data_type_asked = data_types
                    .iter()
                    .any(|t| t.as_bytes().eq_ignore_ascii_case(content::essence(h.value)));
            }
            FieldName::ContentDisposition => attachment |= consumer::is_attachment(h.value),
            FieldName::ContentEncoding => content_encoding_seen = true,
            FieldName::Vary => {
                varies_on_accept_encoding |= fields::list_elements(h.value)
                    .any(|t| t.eq_ignore_ascii_case(b"accept-encoding") || t == b"*")
            }
            FieldName::Connection => {
                for token in fields::list_elements(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        connection_keep_alive = true;
                    } else {
                        connection_nominates_fields = true;
                    }
                }
            }
            _ => {}
        }
    }

    let interim = (100..200).contains(&status) && status != 101;
    let switching_protocols = status == 101;
    if switching_protocols && !req.upgrade {
        return Err(BadResponse::UnaskedUpgrade);
    }

    // RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304.
    let bodiless = req.is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let upstream_framing = if bodiless {
        Framing::Empty
    } else if te_values > 0 {
        // RFC 9112 §6.3 ¶3: Transfer-Encoding overrides Content-Length;
        // an intermediary may forward the message after removing the
        // Content-Length (the client head never carries it for a body:
        // it is re-added from the framing below). Requests with both
        // stay refused.
        length_ignored = content_length.is_some();
        let values = headers
            .iter()
            .zip(kinds)
            .filter(|(_, k)| *k == FieldName::TransferEncoding)
            .map(|(h, _)| h.value);
        match fields::classify_transfer_encoding(values) {
            TransferCoding::Chunked if http11 => Framing::Chunked,
            _ => return Err(BadResponse::UnsupportedTransferCoding),
        }
    } else {
        match content_length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };

    let content_coding = if content_encoding_seen {
        codec::response_coding(
            headers
                .iter()
                .zip(kinds)
                .filter(|(_, k)| *k == FieldName::ContentEncoding)
                .map(|(h, _)| h.value),
        )
    } else {
        Ok(None)
    };
    // What the browser consumes is rewritten; data only when the app asks
    // for it; downloads never (`consumer`). Partial content is left
    // alone: rewriting would break its offsets.
    let rewrite = match media {
        Some(media) if rewrite_bodies && upstream_framing.has_body() && status != 206 => {
            let dest = req.index.fetch_dest;
            let wanted = match consumer::consumer(dest, media, attachment) {
                Consumer::Browser => true,
                Consumer::Data => req.index.rewrite_data_path || data_type_asked,
                Consumer::Download => false,
            };
            let instrument = match (dest, media) {
                (FetchDest::Document | FetchDest::Unknown, content::Media::Html) => {
                    Some(Injection::Document)
                }
                (FetchDest::Worker, content::Media::Script) => Some(Injection::Worker),
                _ => None,
            };
            content_coding.ok().filter(|_| wanted).map(|from| BodyPlan {
                kind: media.kind(),
                instrument,
                from,
                to: req.accepted.choose(from),
            })
        }
        _ => None,
    };
    let filtered = rewrite.is_some();
    let client_framing = match upstream_framing {
        Framing::Empty => ClientFraming::Empty,
        Framing::Length(n) if !filtered => ClientFraming::Length(n),
        _ if req.http11 => ClientFraming::Chunked,
        _ => ClientFraming::UntilClose,
    };
    let upstream_keep_alive = if http11 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };
    let upstream_reusable =
        !switching_protocols && upstream_keep_alive && upstream_framing != Framing::UntilClose;
    let client_keep_alive =
        req.keep_alive && client_framing != ClientFraming::UntilClose && !switching_protocols;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u64::from(status)).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let nominated = |name: &[u8]| {
        connection_nominates_fields && fields::named_in_connection(headers, &kinds, name)
    };
    let mut content_disposition = Span::default();
    let mut content_type = Span::default();
    for (h, kind) in headers.iter().zip(kinds) {
        let name = h.name.as_bytes();
        let rewritten = match kind {
            FieldName::AltSvc => continue,
            k if k.is_hop_by_hop() => continue,
            FieldName::ContentLength => {
                // Kept for HEAD/304 (they describe the representation);
                // re-added from the framing below otherwise.
                if bodiless && !interim && !switching_protocols {
                    push_field(out, name, h.value.trim_ascii());
                }
                continue;
            }
            FieldName::Location
            | FieldName::ContentLocation
            | FieldName::Refresh
            | FieldName::Link
            | FieldName::AccessControlAllowOrigin => hosts::wrap_urls(hosts, h.value),
            FieldName::ContentSecurityPolicy | FieldName::ContentSecurityPolicyReportOnly => {
                let wrapped = hosts::wrap_csp(hosts, h.value);
                match rewrite.as_ref().filter(|p| p.instrument.is_some()) {
                    // The injected script must be allowed to run.
                    Some(_) => {
                        let value = wrapped.as_deref().unwrap_or(h.value);
                        crate::client::allow_script(value).or(wrapped)
                    }
                    None => wrapped,
                }
            }
            // The proxy's own cookie names are reserved: an app setting one
            // could log its users out of the proxy or pin a login state.
            FieldName::SetCookie if crate::identity::is_proxy_cookie(h.value) => continue,
            FieldName::SetCookie => hosts::wrap_cookie_domain(hosts, h.value),
            // The coding of a rewritten body is set below.
            FieldName::ContentEncoding if filtered => continue,
            // A rewritten body is no longer byte-identical to the app's
            // (RFC 9110 §8.8.1): its validator becomes weak.
            FieldName::ETag if filtered && h.value.trim_ascii().starts_with(b"\"") => {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(h.value.trim_ascii());
                Some(weak)
            }
            _ => None,
        };
        if nominated(name) {
            continue;
        }
        if rewritten.is_none() {
            let start = (out.len() + name.len() + 2) as u32;
            let span = Span(start, start + h.value.len() as u32);
            match kind {
                FieldName::ContentDisposition => content_disposition = span,
                FieldName::ContentType if content_type.is_empty() => content_type = span,
                _ => {}
            }
        }
        match rewritten {
            Some(v) => push_field(out, name, &v),
            None => push_field(out, name, h.value),
        }
    }
    if let Some(coding) = rewrite.and_then(|p| p.to) {
        push_field(out, b"Content-Encoding", coding.token());
    }
    // A decoded body is re-encoded as this client accepts: caches must key
    // it on Accept-Encoding (RFC 9110 §12.5.5).
    if rewrite.is_some_and(|p| p.from.is_some()) && !varies_on_accept_encoding {
        push_field(out, b"Vary", b"Accept-Encoding");
    }
    if rewrite.is_some_and(|p| p.instrument.is_some()) {
        // The leak guard: a policy allowing proxy hosts only, so a URL
        // that escaped every rewriting is reported, not silent.
        out.extend_from_slice(leak_guard);
    }
    match client_framing {
        ClientFraming::Length(n) => push_field(out, b"Content-Length", itoa(n).as_bytes()),
        ClientFraming::Chunked => push_field(out, b"Transfer-Encoding", b"chunked"),
        ClientFraming::Empty | ClientFraming::UntilClose => {}
    }
    if switching_protocols {
        push_field(out, b"Connection", b"upgrade");
        if let Some((u, _)) = headers
            .iter()
            .zip(kinds)
            .find(|(_, k)| *k == FieldName::Upgrade)
        {
            push_field(out, b"Upgrade", u.value);
        }
    } else if !interim && !client_keep_alive {
        push_field(out, b"Connection", b"close");
    } else if !interim && !req.http11 {
        push_field(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");

    Ok(ParsedResponse::Complete(ResponseInfo {
        head_len,
        status,
        interim,
        switching_protocols,
        upstream_framing,
        client_framing,
        upstream_reusable,
        client_keep_alive,
        rewrite,
        content_disposition,
        content_type,
        content_coding,
        length_ignored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::fuzz_routes;
    use crate::http::request::{prepare_request, ClientContext, Parsed};
    use crate::limits::Limits;

    /// The request a response answers (GET, or HEAD, or asking to upgrade).
    fn request(head: &[u8]) -> RequestInfo {
        let snap = fuzz_routes();
        let ctx = ClientContext::new("127.0.0.1:5000".parse().unwrap(), false);
        match prepare_request(head, &snap, &Limits::default(), &ctx, &mut Vec::new()) {
            Ok(Parsed::Complete(info)) => info,
            other => panic!("{other:?}"),
        }
    }

    fn prepare(req: &RequestInfo, head: &str) -> Result<ParsedResponse, BadResponse> {
        let limits = ResponseLimits {
            max_header_bytes: 1024,
            rewrite_bodies: true,
            data_types: &[],
            leak_guard: b"",
        };
        let hosts = &fuzz_routes().hosts;
        prepare_response(head.as_bytes(), req, hosts, limits, &mut Vec::new())
    }

    #[test]
    fn each_unforwardable_head_is_refused_for_its_reason() {
        let get = request(b"GET / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n");
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(2000));
        let cases: &[(&str, BadResponse)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                BadResponse::DifferingContentLengths,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
                BadResponse::MalformedContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                BadResponse::UnsupportedTransferCoding,
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
                BadResponse::Malformed(httparse::Error::HeaderValue),
            ),
            // A bare CR (httparse refuses it before our own check).
            (
                "HTTP/1.1 200 OK\r\nX: a\r\r\n\r\n",
                BadResponse::Malformed(httparse::Error::HeaderValue),
            ),
            // RFC 9112 §4: one SP between version and code.
            (
                "HTTP/1.1  200 OK\r\n\r\n",
                BadResponse::Malformed(httparse::Error::Status),
            ),
            ("HTTP/1.1 099 Odd\r\n\r\n", BadResponse::InvalidStatus(99)),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                BadResponse::UnaskedUpgrade,
            ),
            (&long, BadResponse::HeadTooLarge),
        ];
        for (head, want) in cases {
            match prepare(&get, head) {
                Err(got) => assert_eq!(&got, want, "{head:?}"),
                Ok(_) => panic!("{head:?} was accepted"),
            }
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let get = request(b"GET / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n");
        let head = request(b"HEAD / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n");
        let cases: &[(&RequestInfo, &str, Framing)] = &[
            (
                &get,
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                &get,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (&get, "HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose),
            (&get, "HTTP/1.1 204 No Content\r\n\r\n", Framing::Empty),
            (
                &get,
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                Framing::Empty,
            ),
            (
                &head,
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Empty,
            ),
            // §6.3 ¶3: Transfer-Encoding overrides Content-Length (which
            // is then dropped and the use noted).
            (
                &get,
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            // §2.2: a bare LF may end a line of a response.
            (
                &get,
                "HTTP/1.1 200 OK\nContent-Length: 5\n\n",
                Framing::Length(5),
            ),
            // A status line without a reason phrase.
            (&get, "HTTP/1.1 204\r\n\r\n", Framing::Empty),
        ];
        for (req, text, want) in cases {
            match prepare(req, text) {
                Ok(ParsedResponse::Complete(info)) => {
                    assert_eq!(info.upstream_framing, *want, "{text:?}");
                    let both =
                        text.contains("Content-Length") && text.contains("Transfer-Encoding");
                    assert_eq!(info.length_ignored, both, "{text:?}");
                }
                Ok(ParsedResponse::Partial) => panic!("{text:?}: partial"),
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
        // A head not complete yet asks for more bytes.
        assert!(matches!(
            prepare(&get, "HTTP/1.1 200 OK\r\nContent-Le"),
            Ok(ParsedResponse::Partial)
        ));
    }
}
