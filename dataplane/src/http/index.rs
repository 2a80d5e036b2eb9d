//! The head index: where each field the proxy reads sits in a head,
//! located once by the codec while it parses, so no phase scans header
//! lines again.

/// A byte range `start..end` of a head; `(0, 0)` when the field is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span(pub u32, pub u32);

impl Span {
    /// Where `part` (a subslice of `whole`) sits in it.
    pub fn within(whole: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
        if start > whole.len() {
            return Span(0, 0);
        }
        Span(start as u32, (start + part.len()) as u32)
    }

    /// The bytes at this span of `head`.
    pub fn of(self, head: &[u8]) -> &[u8] {
        head.get(self.0 as usize..self.1 as usize).unwrap_or(b"")
    }

    pub fn is_empty(self) -> bool {
        self.0 == self.1
    }
}

/// Most `Range` / `If-Range` fields one request may carry.
pub const MAX_RANGE_FIELDS: usize = 4;

/// The head index of a request: every field the proxy reads, located
/// while the head is parsed, so routing, identity, access, session control
/// and the log never scan header lines again.
///
/// Spans marked *client* point into the client's head in the read buffer
/// (valid until the head is consumed); spans marked *upstream* point into
/// the head written for the app (valid for the whole exchange).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestIndex {
    /// Client: the request target's path and query.
    pub path: Span,
    /// Client: the proxy's own cookies (never forwarded).
    pub session_cookie: Span,
    pub login_cookie: Span,
    /// Client: the monitoring-notice acknowledgement.
    pub notice_cookie: Span,
    /// Client: trusted identity headers (only from a trusted source).
    pub trusted_user: Span,
    pub trusted_groups: Span,
    /// Upstream: the request target as the app sees it (the method is the
    /// head's first bytes, up to the target less one).
    pub target: Span,
    /// Upstream: the User-Agent and Content-Type values.
    pub user_agent: Span,
    pub content_type: Span,
    /// Upstream: where `Range` (true: `If-Range`) field names start, so a
    /// controlled download can be fetched whole.
    pub ranges: [(u32, bool); MAX_RANGE_FIELDS],
    pub range_count: u8,
    /// The path is one of the proxy's own (`/.palisade/…`).
    pub reserved: bool,
    /// The client prefers JSON (`Accept: application/json`).
    pub wants_json: bool,
    /// The client accepts HTML (`Accept` names `text/html`).
    pub accepts_html: bool,
    /// GET or HEAD: a browser navigation can be redirected to sign in.
    pub safe_method: bool,
    /// Where the response goes (`Sec-Fetch-Dest`): decides whether it is
    /// rewritten.
    pub fetch_dest: crate::rewrite::consumer::FetchDest,
    /// The app asks for data responses on this path to be rewritten.
    pub rewrite_data_path: bool,
    /// `Origin` and `Access-Control-Request-Method` are present: with
    /// OPTIONS, a CORS preflight ([`RequestIndex::is_cors_preflight`]).
    pub has_origin: bool,
    pub asks_preflight: bool,
}

impl RequestIndex {
    /// A CORS-preflight request (Fetch §3.7.2): OPTIONS with `Origin` and
    /// `Access-Control-Request-Method`. Browsers never send credentials
    /// with one, so it cannot carry the proxy's sign-in cookie.
    pub fn is_cors_preflight(self, upstream_head: &[u8]) -> bool {
        self.has_origin && self.asks_preflight && self.method(upstream_head) == b"OPTIONS"
    }

    /// The method out of the upstream head.
    pub fn method(self, upstream_head: &[u8]) -> &[u8] {
        let end = (self.target.0 as usize).saturating_sub(1);
        upstream_head.get(..end).unwrap_or(b"")
    }

    /// Renames the `Range` and `If-Range` fields of the upstream head in
    /// place (same length, so every span stays valid): a download under
    /// control is always fetched whole, or a byte range could slip past
    /// inspection.
    pub fn neutralize_ranges(self, upstream_head: &mut [u8]) {
        for &(at, if_range) in &self.ranges[..usize::from(self.range_count)] {
            let at = at as usize;
            let new: &[u8] = if if_range { b"X-If-Rng" } else { b"X-Rng" };
            if let Some(name) = upstream_head.get_mut(at..at + new.len()) {
                name.copy_from_slice(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fuzz::fuzz_routes;
    use crate::http::request::{prepare_request, ClientContext, Parsed, RequestInfo};
    use crate::limits::Limits;

    /// Parses `head` for the fuzz snapshot; the request and the upstream
    /// head.
    fn prepare(head: &[u8]) -> (RequestInfo, Vec<u8>) {
        let snap = fuzz_routes();
        let ctx = ClientContext::new("127.0.0.1:5000".parse().unwrap(), false);
        let mut out = Vec::new();
        match prepare_request(head, &snap, &Limits::default(), &ctx, &mut out) {
            Ok(Parsed::Complete(info)) => (info, out),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(head)),
        }
    }

    #[test]
    fn ranges_are_renamed_in_place() {
        let head = b"GET /f HTTP/1.1\r\nHost: demo.test.proxy.test\r\nrange: bytes=0-9\r\nIf-Range: x\r\nX-Range-Like: y\r\n\r\n";
        let (info, mut up) = prepare(head);
        assert_eq!(info.index.range_count, 2);
        let len = up.len();
        info.index.neutralize_ranges(&mut up);
        assert_eq!(up.len(), len);
        let text = String::from_utf8(up).unwrap();
        assert!(text.contains("\r\nX-Rng: bytes=0-9\r\n"), "{text}");
        assert!(text.contains("\r\nX-If-Rng: x\r\n"), "{text}");
        assert!(text.contains("\r\nX-Range-Like: y\r\n"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("\r\nrange:"), "{text}");
    }

    #[test]
    fn every_indexed_field_is_found_once() {
        // (head, what the index must say)
        let head = b"POST /a/b.csv?x=1 HTTP/1.1\r\nHost: app.demo.test.proxy.test\r\nUser-Agent: UA/1\r\nAccept: text/html,application/json\r\nContent-Type: text/csv\r\nCookie: palisade_session=S1; other=o; palisade_notice=N1\r\nContent-Length: 3\r\n\r\nabc";
        let (info, up) = prepare(head);
        let ix = info.index;
        assert_eq!(ix.path.of(head), b"/a/b.csv?x=1");
        assert_eq!(ix.session_cookie.of(head), b"S1");
        assert_eq!(ix.notice_cookie.of(head), b"N1");
        assert!(ix.login_cookie.is_empty());
        assert_eq!(ix.method(&up), b"POST");
        assert_eq!(ix.target.of(&up), b"/a/b.csv?x=1");
        assert_eq!(ix.user_agent.of(&up), b"UA/1");
        assert_eq!(ix.content_type.of(&up), b"text/csv");
        assert!(ix.accepts_html);
        assert!(!ix.wants_json, "a browser listing text/html first");
        assert!(!ix.safe_method && !ix.reserved);
        // The proxy's cookies never reach the app; the app's own do.
        let text = String::from_utf8_lossy(&up);
        assert!(text.contains("\r\nCookie: other=o\r\n"), "{text}");
        assert!(!text.contains("palisade_"), "{text}");
    }

    #[test]
    fn flags_follow_the_request() {
        let cases: &[(&[u8], bool, bool, bool)] = &[
            // head, reserved, wants_json, safe_method
            (&b"GET /.palisade/logout HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n"[..], true, false, true),
            (&b"GET /api HTTP/1.1\r\nHost: demo.test.proxy.test\r\nAccept: application/json\r\n\r\n"[..], false, true, true),
            (&b"HEAD / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n"[..], false, false, true),
            (&b"DELETE /x HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n"[..], false, false, false),
        ];
        for (head, reserved, json, safe) in cases {
            let (info, _) = prepare(head);
            let ix = info.index;
            let what = String::from_utf8_lossy(head);
            assert_eq!(
                (ix.reserved, ix.wants_json, ix.safe_method),
                (*reserved, *json, *safe),
                "{what}"
            );
        }
    }

    #[test]
    fn too_many_range_fields_are_refused() {
        let snap = fuzz_routes();
        let ctx = ClientContext::new("127.0.0.1:5000".parse().unwrap(), false);
        let mut head = b"GET /f HTTP/1.1\r\nHost: demo.test.proxy.test\r\n".to_vec();
        for _ in 0..=super::MAX_RANGE_FIELDS {
            head.extend_from_slice(b"Range: bytes=0-1\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let refused = prepare_request(&head, &snap, &Limits::default(), &ctx, &mut Vec::new());
        assert!(matches!(refused, Err(r) if r.status == 400));
    }
}
