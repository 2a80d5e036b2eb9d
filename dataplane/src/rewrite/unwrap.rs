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
use crate::hostmap::{HostMap, MAX_HOST_LEN};
use crate::hosts::is_proxy_host_suffix;

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
    host_map: &'r HostMap,
    buf: Vec<u8>,
    /// `buf[..emitted]` was already passed on (kept as context).
    emitted: usize,
    /// `.suffix` matches starting before this were decided.
    scanned: usize,
}

impl<'r> Unwrapper<'r> {
    pub fn new(host_map: &'r HostMap) -> Unwrapper<'r> {
        Unwrapper {
            host_map,
            buf: Vec::new(),
            emitted: 0,
            scanned: 0,
        }
    }

    fn process(&mut self, at_end: bool, out: &mut Vec<u8>) {
        let suffix_len = self.host_map.suffix().len();
        // A match needs the byte after it to be decided.
        let hold = if at_end { 0 } else { suffix_len + 2 };
        let limit = self.buf.len().saturating_sub(hold);
        if limit > self.scanned {
            let from = self.scanned;
            for rel in self.host_map.find_dotted_suffix(&self.buf[from..]) {
                let dot = from + rel;
                if dot >= limit {
                    break;
                }
                if dot < self.emitted
                    || !is_proxy_host_suffix(self.host_map, &self.buf, 0, dot, at_end)
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

/// Longest multipart boundary (RFC 2046 §5.1.1).
pub const MAX_BOUNDARY: usize = 70;
/// Largest header block of one multipart part.
const MAX_PART_HEADERS: usize = 16 * 1024;

/// Which request bodies are unwrapped, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyUnwrap {
    /// Form data or JSON: the whole body.
    Text,
    /// `multipart/form-data`: the text fields (parts without a file name);
    /// uploaded files pass untouched.
    Multipart {
        boundary: [u8; MAX_BOUNDARY],
        len: u8,
    },
}

impl BodyUnwrap {
    /// The unwrapping for a request `Content-Type`, if any.
    pub fn for_content_type(content_type: &[u8]) -> Option<BodyUnwrap> {
        if is_unwrapped_body(content_type) {
            return Some(BodyUnwrap::Text);
        }
        let mut params = content_type.split(|&b| b == b';');
        let essence = params.next().unwrap_or_default().trim_ascii();
        if !essence.eq_ignore_ascii_case(b"multipart/form-data") {
            return None;
        }
        let boundary = params.find_map(|p| {
            let p = p.trim_ascii();
            (p.len() > 9 && p[..9].eq_ignore_ascii_case(b"boundary=")).then(|| &p[9..])
        })?;
        let boundary = boundary
            .strip_prefix(b"\"")
            .and_then(|b| b.strip_suffix(b"\""))
            .unwrap_or(boundary);
        if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
            return None;
        }
        let mut stored = [0u8; MAX_BOUNDARY];
        stored[..boundary.len()].copy_from_slice(boundary);
        Some(BodyUnwrap::Multipart {
            boundary: stored,
            len: boundary.len() as u8,
        })
    }

    /// The body filter for this unwrapping.
    pub fn filter<'r>(&self, host_map: &'r HostMap) -> Box<dyn BodyFilter + 'r> {
        match self {
            BodyUnwrap::Text => Box::new(Unwrapper::new(host_map)),
            BodyUnwrap::Multipart { boundary, len } => Box::new(MultipartUnwrapper::new(
                host_map,
                &boundary[..usize::from(*len)],
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartState {
    /// Inside a part's content (the preamble counts as a file part).
    Content { text: bool },
    /// Right after a delimiter: the rest of its line.
    DelimiterLine,
    /// The part's header block.
    Headers,
    /// After the close delimiter, or structure this filter gave up on:
    /// everything passes as it is.
    Verbatim,
}

/// Unwraps proxy hosts in the text fields of a `multipart/form-data`
/// body (RFC 7578), streaming; file parts and framing pass untouched.
pub struct MultipartUnwrapper<'r> {
    host_map: &'r HostMap,
    /// `\r\n--<boundary>`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: PartState,
    text: Option<Unwrapper<'r>>,
    /// Bytes at the start of `buf` not to emit (the CRLF put in front of
    /// the body so the first delimiter looks like every other).
    skip: usize,
}

impl<'r> MultipartUnwrapper<'r> {
    pub fn new(host_map: &'r HostMap, boundary: &[u8]) -> MultipartUnwrapper<'r> {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary);
        MultipartUnwrapper {
            host_map,
            delimiter,
            buf: b"\r\n".to_vec(),
            state: PartState::Content { text: false },
            text: None,
            skip: 2,
        }
    }

    /// Passes `buf[..n]` on (through the text unwrapper inside a text
    /// part) and drops it from `buf`.
    fn emit(&mut self, n: usize, through_text: bool, out: &mut Vec<u8>) -> Result<(), FilterError> {
        let skip = self.skip.min(n);
        self.skip -= skip;
        let bytes = &self.buf[skip..n];
        match (&mut self.text, through_text) {
            (Some(t), true) => t.feed(bytes, out)?,
            _ => out.extend_from_slice(bytes),
        }
        self.buf.drain(..n);
        Ok(())
    }

    fn process(&mut self, at_end: bool, out: &mut Vec<u8>) -> Result<(), FilterError> {
        loop {
            match self.state {
                PartState::Content { text } => {
                    match memchr::memmem::find(&self.buf, &self.delimiter) {
                        Some(i) => {
                            self.emit(i, text, out)?;
                            if let Some(mut t) = self.text.take() {
                                t.finish(out)?;
                            }
                            let d = self.delimiter.len();
                            self.emit(d, false, out)?;
                            self.state = PartState::DelimiterLine;
                        }
                        None => {
                            // The tail may be the start of a delimiter.
                            let keep = if at_end { 0 } else { self.delimiter.len() - 1 };
                            let safe = self.buf.len().saturating_sub(keep);
                            self.emit(safe, text, out)?;
                            if at_end {
                                if let Some(mut t) = self.text.take() {
                                    t.finish(out)?;
                                }
                            }
                            return Ok(());
                        }
                    }
                }
                PartState::DelimiterLine => {
                    if self.buf.starts_with(b"--") {
                        self.state = PartState::Verbatim;
                        continue;
                    }
                    match memchr::memmem::find(&self.buf, b"\r\n") {
                        // The CRLF stays: it may start an empty header block.
                        Some(i) => {
                            self.emit(i, false, out)?;
                            self.state = PartState::Headers;
                        }
                        None if at_end || self.buf.len() > MAX_PART_HEADERS => {
                            self.state = PartState::Verbatim;
                        }
                        None => return Ok(()),
                    }
                }
                PartState::Headers => match memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                    Some(i) => {
                        let headers = &self.buf[..i];
                        let is_file = headers
                            .windows(9)
                            .any(|w| w.eq_ignore_ascii_case(b"filename="));
                        self.emit(i + 4, false, out)?;
                        if !is_file {
                            self.text = Some(Unwrapper::new(self.host_map));
                        }
                        self.state = PartState::Content { text: !is_file };
                    }
                    None if at_end || self.buf.len() > MAX_PART_HEADERS => {
                        self.state = PartState::Verbatim;
                    }
                    None => return Ok(()),
                },
                PartState::Verbatim => {
                    let n = self.buf.len();
                    self.emit(n, false, out)?;
                    return Ok(());
                }
            }
        }
    }
}

impl BodyFilter for MultipartUnwrapper<'_> {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        self.buf.extend_from_slice(input);
        self.process(false, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        self.process(true, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::fuzz_routes;

    const BODY: &str = "preamble https://demo.test.proxy.test\r\n--XyZ\r\nContent-Disposition: form-data; name=\"redirect_uri\"\r\n\r\nhttps://app.demo.test.proxy.test/cb\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile keeps https://app.demo.test.proxy.test/\r\n--XyZ\r\nContent-Disposition: form-data; name=\"state\"\r\n\r\n{\"origin\":\"https://demo.test.proxy.test\"}\r\n--XyZ--\r\nepilogue demo.test.proxy.test";

    const WANT: &str = "preamble https://demo.test.proxy.test\r\n--XyZ\r\nContent-Disposition: form-data; name=\"redirect_uri\"\r\n\r\nhttps://app.demo.test/cb\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile keeps https://app.demo.test.proxy.test/\r\n--XyZ\r\nContent-Disposition: form-data; name=\"state\"\r\n\r\n{\"origin\":\"https://demo.test\"}\r\n--XyZ--\r\nepilogue demo.test.proxy.test";

    #[test]
    fn text_fields_are_unwrapped_and_files_are_not_for_any_split() {
        let host_map = fuzz_routes().hosts;
        let unwrap = BodyUnwrap::for_content_type(b"multipart/form-data; boundary=\"XyZ\"")
            .expect("multipart");
        for step in [1, 2, 3, 5, 8, 13, 64, BODY.len()] {
            let mut f = unwrap.filter(&host_map);
            let mut out = Vec::new();
            for piece in BODY.as_bytes().chunks(step) {
                f.feed(piece, &mut out).unwrap();
            }
            f.finish(&mut out).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), WANT, "pieces of {step}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyUnwrap::for_content_type(b"application/x-www-form-urlencoded"),
            Some(BodyUnwrap::Text)
        );
        assert_eq!(
            BodyUnwrap::for_content_type(b"application/vnd.api+json"),
            Some(BodyUnwrap::Text)
        );
        assert!(BodyUnwrap::for_content_type(b"multipart/form-data").is_none());
        assert!(BodyUnwrap::for_content_type(b"application/octet-stream").is_none());
        assert!(BodyUnwrap::for_content_type(b"multipart/mixed; boundary=x").is_none());
    }
}
