//! The reverse direction: proxy hosts in request bodies are unwrapped on
//! the way to the app (`demo.test.proxy.test` → `demo.test`), so values
//! the app handed out through the proxy (redirect_uri, return_to,
//! postMessage origins) come back as the app wrote them.
//!
//! Form data (`application/x-www-form-urlencoded`) and JSON bodies are
//! unwrapped; query strings and Origin/Referer are unwrapped with the
//! header helpers in [`crate::hosts`], which share the decision with the
//! streaming filter here.

use crate::body::{BodyFilter, FilterError};
use crate::hosts::is_proxy_host_suffix;
use crate::routes::{RouteTable, MAX_HOST_LEN};

/// True for request bodies whose proxy hosts are unwrapped.
pub fn is_unwrapped_body(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        || essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// Bytes kept before the scan position: the longest app host plus an
/// escape in front of it.
const CONTEXT: usize = MAX_HOST_LEN + 16;

/// Streaming unwrapper for one request body.
pub struct Unwrapper<'r> {
    routes: &'r RouteTable,
    buf: Vec<u8>,
    /// `buf[..emitted]` was already passed on (kept as context).
    emitted: usize,
    /// `.suffix` matches starting before this were decided.
    scanned: usize,
}

impl<'r> Unwrapper<'r> {
    pub fn new(routes: &'r RouteTable) -> Unwrapper<'r> {
        Unwrapper {
            routes,
            buf: Vec::new(),
            emitted: 0,
            scanned: 0,
        }
    }

    fn process(&mut self, at_end: bool, out: &mut Vec<u8>) {
        let suffix_len = self.routes.suffix().len();
        // A match needs the byte after it to be decided.
        let hold = if at_end { 0 } else { suffix_len + 2 };
        let limit = self.buf.len().saturating_sub(hold);
        if limit > self.scanned {
            let from = self.scanned;
            for rel in self.routes.find_dotted_suffix(&self.buf[from..]) {
                let dot = from + rel;
                if dot >= limit {
                    break;
                }
                if dot < self.emitted
                    || !is_proxy_host_suffix(self.routes, &self.buf, 0, dot, at_end)
                {
                    continue;
                }
                out.extend_from_slice(&self.buf[self.emitted..dot]);
                self.emitted = dot + 1 + suffix_len;
            }
            self.scanned = limit;
        }
        if limit > self.emitted {
            out.extend_from_slice(&self.buf[self.emitted..limit]);
            self.emitted = limit;
        }
        let keep_from = self.emitted.min(self.scanned.saturating_sub(CONTEXT));
        self.buf.drain(..keep_from);
        self.emitted -= keep_from;
        self.scanned -= keep_from;
    }
}

impl BodyFilter for Unwrapper<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        self.buf.extend_from_slice(input);
        self.process(false, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        self.process(true, out);
        self.buf.clear();
        self.emitted = 0;
        self.scanned = 0;
        Ok(())
    }
}
