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
}

impl RequestIndex {
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
