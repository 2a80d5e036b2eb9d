//! Request heads: strict parsing and validation (RFC 9112 §2–§7, RFC 9110
//! §7.2), routing by Host, and writing the head sent to the app.
//!
//! `prepare_request` runs over the connection's read buffer with httparse
//! (field names and values are slices into it) and, in the same pass, writes
//! the rewritten head for the upstream into `out`. Nothing is forwarded
//! unless the whole head passed every check.

use std::net::SocketAddr;
use std::rc::Rc;

use super::fields::{self, FieldName, TransferCoding};
pub use super::index::{RequestIndex, Span, MAX_RANGE_FIELDS};
use super::{line_endings_are_strict, push_field, Framing};
use crate::hostmap::{HostMapping, HostName};
use crate::hosts;
use crate::limits::Limits;
use crate::rewrite::codec::Accepted;
use crate::rewrite::consumer::FetchDest;
use crate::rewrite::unwrap::BodyUnwrap;
use crate::snapshot::Snapshot;

/// Hard ceiling on header fields per head, whatever the configured limit.
pub const MAX_HEADERS_CEILING: usize = 256;

/// A request the proxy refuses, with the status it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

fn reject(status: u16, reason: impl Into<String>) -> Rejection {
    Rejection {
        status,
        reason: reason.into(),
    }
}

/// What the proxy needs to know about a request after its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Bytes of the head in the read buffer.
    pub head_len: usize,
    pub app: usize,
    pub framing: Framing,
    /// HTTP/1.1 (true) or HTTP/1.0.
    pub http11: bool,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and stripped upstream).
    pub expect_continue: bool,
    /// A protocol upgrade (RFC 9110 §7.8) is requested and forwarded.
    pub upgrade: bool,
    pub is_head: bool,
    /// Safe to replay on a new connection (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// App host (lower case) for Direct upstreams and SNI.
    pub app_host: HostName,
    /// The content codings the client accepts that the rewrite engine can
    /// decode (the upstream Accept-Encoding is narrowed to these).
    pub accepted: Accepted,
    /// The request body is form data, JSON or multipart form data: proxy
    /// hosts in it (in its text fields) are unwrapped on the way to the
    /// app (the framing stays the client's: `proxy::upstream::send`).
    pub unwrap_body: Option<BodyUnwrap>,
    /// Where every field the proxy reads sits, located once here.
    pub index: RequestIndex,
}

/// Outcome of looking at the bytes buffered so far.
// Boxing the large variant would allocate once per request; it is moved
// once, on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    Complete(RequestInfo),
}

/// Connection facts that go into forwarding headers.
pub struct ClientContext {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The request came on an HTTP/2 stream.
    pub http2: bool,
    /// The peer's IP as text, made once per connection (its HTTP/2 streams share it).
    pub ip_text: Rc<str>,
}

impl ClientContext {
    pub fn new(peer: SocketAddr, tls: bool) -> ClientContext {
        ClientContext {
            peer,
            tls,
            http2: false,
            ip_text: peer.ip().to_string().into(),
        }
    }
}

/// Parses the request head at the start of `buf`; on success writes the
/// upstream head to `out` (cleared first).
pub fn prepare_request(
    buf: &[u8],
    routes: &Snapshot,
    limits: &Limits,
    client: &ClientContext,
    out: &mut Vec<u8>,
) -> Result<Parsed, Rejection> {
    // Request-line length (RFC 9112 §3: 414 for an over-long target).
    let line_end = memchr::memchr(b'\n', buf);
    match line_end {
        None if buf.len() > limits.max_request_line => {
            return Err(reject(414, "request line too long"))
        }
        Some(end) if end > limits.max_request_line => {
            return Err(reject(414, "request line too long"))
        }
        _ => {}
    }
    // Uninitialised storage: httparse writes only the fields it finds, so
    // no 8 KiB memset per request.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS_CEILING);
    let mut req = httparse::Request::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut storage[..max_headers],
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(reject(431, "request header section too large"));
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many header fields")),
        Err(e) => return Err(reject(400, format!("malformed request head: {e}"))),
    };
    if head_len > limits.max_header_bytes {
        return Err(reject(431, "request header section too large"));
    }
    // httparse skips empty lines before the request line (RFC 9112 §2.2);
    // check the line endings of what it parsed.
    if !line_endings_are_strict(&buf[..head_len]) {
        return Err(reject(400, "bare CR or LF in request head"));
    }
    let method = req.method.unwrap_or("").as_bytes();
    let target = req.path.unwrap_or("").as_bytes();
    let http11 = req.version == Some(1);
    let headers: &[httparse::Header<'_>] = req.headers;

    if method == b"CONNECT" {
        return Err(reject(
            405,
            "CONNECT is not served: this is a reverse proxy",
        ));
    }
    if method == b"TRACE" {
        return Err(reject(405, "TRACE is not served"));
    }

    // Pass 1: framing, routing and connection-management fields.
    let mut host: Option<&[u8]> = None;
    let mut host_count = 0;
    let mut content_length: Option<u64> = None;
    let mut te_count = 0;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut connection_nominates_fields = false;
    let mut upgrade_value: Option<&[u8]> = None;
    let mut expect_continue = false;
    let mut accept_encoding_seen = false;
    let mut unwrap_body = None;
    let mut kinds = [FieldName::Other; MAX_HEADERS_CEILING];
    for (h, kind) in headers.iter().zip(kinds.iter_mut()) {
        let value = h.value;
        if fields::has_forbidden_value_bytes(value) {
            return Err(reject(400, "NUL, CR or LF in a field value"));
        }
        *kind = FieldName::classify(h.name.as_bytes());
        match *kind {
            FieldName::Host => {
                host_count += 1;
                host = Some(value.trim_ascii());
            }
            FieldName::ContentLength => {
                let n = fields::parse_content_length(value)
                    .ok_or_else(|| reject(400, "malformed Content-Length"))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(reject(400, "differing Content-Length values"));
                }
                content_length = Some(n);
            }
            FieldName::TransferEncoding => te_count += 1,
            FieldName::Connection => {
                for token in fields::list_elements(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        connection_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        connection_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        connection_upgrade = true;
                    } else {
                        connection_nominates_fields = true;
                    }
                }
            }
            FieldName::Upgrade => upgrade_value = Some(value),
            FieldName::AcceptEncoding => accept_encoding_seen = true,
            FieldName::ContentType => unwrap_body = BodyUnwrap::for_content_type(value),
            FieldName::Expect => {
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(reject(417, "unsupported expectation"));
                }
            }
            _ => {}
        }
    }

    // Host (RFC 9112 §3.2: exactly one, and 400 otherwise).
    if host_count != 1 {
        return Err(reject(
            400,
            if host_count == 0 {
                "missing Host"
            } else {
                "repeated Host"
            },
        ));
    }
    let host_value = host.unwrap_or_default();
    let (host_name, _port) =
        fields::split_host_port(host_value).ok_or_else(|| reject(400, "malformed Host"))?;

    // Request target forms (RFC 9112 §3.2).
    let (path_and_query, absolute_authority): (&[u8], Option<&[u8]>) = if target.starts_with(b"/") {
        (target, None)
    } else if target == b"*" {
        if method != b"OPTIONS" {
            return Err(reject(400, "asterisk-form is only for OPTIONS"));
        }
        (target, None)
    } else {
        let rest = strip_prefix_ignore_case(target, b"http://")
            .or_else(|| strip_prefix_ignore_case(target, b"https://"))
            .ok_or_else(|| reject(400, "unsupported request-target form"))?;
        let auth_end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let path = &rest[auth_end..];
        (
            if path.is_empty() { &b"/"[..] } else { path },
            Some(&rest[..auth_end]),
        )
    };
    if let Some(authority) = absolute_authority {
        // RFC 9112 §3.2.2 lets the target win over Host; a reverse proxy that
        // routed on one and forwarded the other would be an open proxy, so
        // the two must agree.
        if !authority.eq_ignore_ascii_case(host_value) {
            return Err(reject(400, "request target authority disagrees with Host"));
        }
    }

    let (app_host, app) = match routes.hosts.map_proxy_host(host_name) {
        HostMapping::App { app_host, app } => (app_host, app),
        HostMapping::UnknownApp => return Err(reject(404, "no app is served at this host")),
        HostMapping::NotOurs => return Err(reject(421, "this host is not served by this proxy")),
    };

    // Framing (RFC 9112 §6.1–§6.3).
    let framing = if te_count > 0 {
        if !http11 {
            return Err(reject(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if content_length.is_some() {
            return Err(reject(400, "both Transfer-Encoding and Content-Length"));
        }
        let values = headers
            .iter()
            .zip(kinds)
            .filter(|(_, k)| *k == FieldName::TransferEncoding)
            .map(|(h, _)| h.value);
        match fields::classify_transfer_encoding(values) {
            TransferCoding::Chunked => Framing::Chunked,
            TransferCoding::Invalid(why) => return Err(reject(400, why)),
            TransferCoding::Unsupported => return Err(reject(501, "unsupported transfer coding")),
        }
    } else {
        match content_length {
            None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };

    // h2c over Upgrade would carry HTTP/2 past the HTTP/1.1 checks: never
    // forwarded (a known smuggling vector).
    let upgrade = http11
        && connection_upgrade
        && upgrade_value
            .is_some_and(|v| !v.trim_ascii().is_empty() && !fields::has_token(v, b"h2c"));
    let keep_alive = if http11 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };
    let is_head = method == b"HEAD";
    let idempotent = matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE");
    let accepted = if accept_encoding_seen {
        Accepted::parse(
            headers
                .iter()
                .zip(kinds)
                .filter(|(_, k)| *k == FieldName::AcceptEncoding)
                .map(|(h, _)| h.value),
        )
    } else {
        Accepted::default()
    };
    let unwrap_body = unwrap_body.filter(|_| framing.has_body());
    let mut index = RequestIndex {
        path: Span::within(buf, path_and_query),
        reserved: path_and_query.starts_with(crate::identity::RESERVED_PREFIX),
        safe_method: matches!(method, b"GET" | b"HEAD"),
        rewrite_data_path: routes
            .apps
            .get(app)
            .is_some_and(|a| a.rewrites_data_at(path_and_query)),
        ..RequestIndex::default()
    };
    let trusted_headers = routes.sign_in.trusted_headers();
    let trusted_source =
        trusted_headers.is_some() && routes.sign_in.is_trusted_source(client.peer.ip());

    // Write the upstream head.
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    let target_start = out.len() as u32;
    match memchr::memchr(b'?', path_and_query) {
        Some(q) => match hosts::unwrap_proxy_hosts(&routes.hosts, &path_and_query[q..]) {
            Some(query) => {
                out.extend_from_slice(&path_and_query[..q]);
                out.extend_from_slice(&query);
            }
            None => out.extend_from_slice(path_and_query),
        },
        None => out.extend_from_slice(path_and_query),
    }
    index.target = Span(target_start, out.len() as u32);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(out, b"Host", app_host);

    let nominated = |name: &[u8]| {
        connection_nominates_fields && fields::named_in_connection(headers, &kinds, name)
    };
    for (h, kind) in headers.iter().zip(kinds) {
        let name = h.name.as_bytes();
        match kind {
            FieldName::Host
            | FieldName::ContentLength
            | FieldName::AcceptEncoding
            | FieldName::Expect
            | FieldName::XForwardedHost
            | FieldName::XForwardedProto => continue,
            // Re-written below, after the values earlier proxies sent.
            FieldName::XForwardedFor | FieldName::Forwarded => continue,
            FieldName::Origin | FieldName::Referer => {
                index.has_origin |= kind == FieldName::Origin;
                if let Some(v) = hosts::unwrap_proxy_hosts(&routes.hosts, h.value) {
                    push_field(out, name, &v);
                    continue;
                }
            }
            k if k.is_hop_by_hop() => continue,
            FieldName::Cookie => {
                // The proxy's own cookies never reach the app.
                let value = h.value;
                if let Some(v) =
                    crate::identity::cookie_value(value, crate::identity::SESSION_COOKIE)
                {
                    index.session_cookie = Span::within(buf, v);
                }
                if let Some(v) = crate::identity::cookie_value(value, crate::identity::LOGIN_COOKIE)
                {
                    index.login_cookie = Span::within(buf, v);
                }
                if let Some(v) =
                    crate::identity::cookie_value(value, crate::identity::NOTICE_COOKIE)
                {
                    index.notice_cookie = Span::within(buf, v);
                }
                if !index.session_cookie.is_empty()
                    || !index.login_cookie.is_empty()
                    || !index.notice_cookie.is_empty()
                {
                    write_cookie_without_ours(out, name, value);
                    continue;
                }
            }
            FieldName::Accept => {
                // Media types are case-insensitive, but JSON ones are sent
                // in lower case in practice; a browser navigation lists
                // text/html first.
                index.wants_json |= memchr::memmem::find(h.value, b"json").is_some()
                    && !h.value.starts_with(b"text/html");
                index.accepts_html |= memchr::memmem::find(h.value, b"text/html").is_some();
            }
            FieldName::Other => {
                index.asks_preflight |= name.eq_ignore_ascii_case(b"access-control-request-method");
                if let Some((user, groups)) = trusted_headers {
                    let is_user = name.eq_ignore_ascii_case(user);
                    let is_groups = !groups.is_empty() && name.eq_ignore_ascii_case(groups);
                    if is_user || is_groups {
                        // Identity headers count only from a trusted
                        // source; from anyone else they are forgeries and
                        // are dropped.
                        if !trusted_source {
                            continue;
                        }
                        let at = Span::within(buf, h.value.trim_ascii());
                        if is_user {
                            index.trusted_user = at;
                        } else {
                            index.trusted_groups = at;
                        }
                    }
                }
            }
            _ => {}
        }
        if nominated(name) {
            continue;
        }
        let value_start = (out.len() + name.len() + 2) as u32;
        let value_span = Span(value_start, value_start + h.value.len() as u32);
        match kind {
            FieldName::UserAgent => index.user_agent = value_span,
            FieldName::SecFetchDest => index.fetch_dest = FetchDest::parse(h.value),
            FieldName::ContentType => index.content_type = value_span,
            FieldName::Range | FieldName::IfRange => {
                let n = usize::from(index.range_count);
                if n == MAX_RANGE_FIELDS {
                    return Err(reject(400, "too many Range fields"));
                }
                index.ranges[n] = (out.len() as u32, kind == FieldName::IfRange);
                index.range_count += 1;
            }
            _ => {}
        }
        push_field(out, name, h.value);
    }
    // Only codings the rewrite engine can undo (RFC 9110 §12.5.3).
    if !accepted.is_empty() {
        out.extend_from_slice(b"Accept-Encoding: ");
        accepted.write_header_value(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        // An unwrapped body's new length replaces this one when it is sent.
        Framing::Length(n) => push_field(out, b"Content-Length", itoa(n).as_bytes()),
        Framing::Chunked => push_field(out, b"Transfer-Encoding", b"chunked"),
        Framing::Empty | Framing::UntilClose => {}
    }
    if upgrade {
        push_field(out, b"Connection", b"upgrade");
        push_field(out, b"Upgrade", upgrade_value.unwrap_or_default());
    }
    // Forwarding information (RFC 7239; X-Forwarded-* de facto): append to
    // what earlier proxies said, set what this proxy knows first-hand.
    // Written straight into the head: no allocation per request.
    let proto: &[u8] = if client.tls { b"https" } else { b"http" };
    // Several field lines of one name form one comma-separated list
    // (RFC 9110 §5.3): keep every earlier hop, in order.
    let earlier = |kind: FieldName, out: &mut Vec<u8>| {
        for (h, k) in headers.iter().zip(kinds) {
            if k == kind && !h.value.trim_ascii().is_empty() {
                out.extend_from_slice(h.value.trim_ascii());
                out.extend_from_slice(b", ");
            }
        }
    };
    out.extend_from_slice(b"X-Forwarded-For: ");
    earlier(FieldName::XForwardedFor, out);
    out.extend_from_slice(client.ip_text.as_bytes());
    out.extend_from_slice(b"\r\nForwarded: ");
    earlier(FieldName::Forwarded, out);
    out.extend_from_slice(b"for=");
    if client.peer.is_ipv6() {
        // RFC 7239 §6: IPv6 addresses are quoted and bracketed.
        out.extend_from_slice(b"\"[");
        out.extend_from_slice(client.ip_text.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(client.ip_text.as_bytes());
    }
    out.extend_from_slice(b";host=");
    out.extend_from_slice(host_value);
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto);
    out.extend_from_slice(b"\r\n");
    push_field(out, b"X-Forwarded-Host", host_value);
    push_field(out, b"X-Forwarded-Proto", proto);
    out.extend_from_slice(b"\r\n");

    Ok(Parsed::Complete(RequestInfo {
        head_len,
        app,
        framing,
        http11,
        keep_alive,
        expect_continue: expect_continue && http11 && framing.has_body(),
        upgrade,
        is_head,
        idempotent,
        app_host: HostName::lowercase(app_host).ok_or_else(|| reject(400, "malformed Host"))?,
        accepted,
        unwrap_body,
        index,
    }))
}

/// Writes a Cookie field without the proxy's cookies; nothing when no
/// other cookie is left.
fn write_cookie_without_ours(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let start = out.len();
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let values_start = out.len();
    for pair in value.split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        let cookie_name = pair
            .split(|b| *b == b'=')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        if pair.is_empty()
            || cookie_name == crate::identity::SESSION_COOKIE
            || cookie_name == crate::identity::LOGIN_COOKIE
            || cookie_name == crate::identity::NOTICE_COOKIE
        {
            continue;
        }
        if out.len() > values_start {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    if out.len() == values_start {
        out.truncate(start);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Decimal text of `n`, without allocating.
pub fn itoa(n: u64) -> Decimal {
    let mut d = Decimal {
        digits: [0; 20],
        start: 20,
    };
    let mut n = n;
    loop {
        d.start -= 1;
        d.digits[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Digits of a u64 in a stack buffer.
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}
