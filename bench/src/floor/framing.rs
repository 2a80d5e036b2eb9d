//! Where a request or a response ends (RFC 9112 §6.3), for proxies that
//! forward bytes verbatim. Only what the floor's traffic needs: requests
//! without a body or with a Content-Length one, responses with a
//! Content-Length (or none allowed: 204, 304). Anything else is an error,
//! and the floor proxy closes the connection: it is a measuring
//! instrument, not a proxy to serve with.

use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum FramingError {
    /// `httparse` refused the head.
    Parse(httparse::Error),
    /// Transfer-Encoding, or a Content-Length that is not one number.
    Unsupported(&'static str),
    /// The request is longer than the floor buffers.
    TooLong,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::Parse(e) => write!(f, "bad head: {e}"),
            FramingError::Unsupported(what) => write!(f, "unsupported framing: {what}"),
            FramingError::TooLong => write!(f, "request longer than {} bytes", super::MAX_REQUEST),
        }
    }
}

impl std::error::Error for FramingError {}

const MAX_HEADERS: usize = 64;

/// The length of the request at the start of `buf` (head and body), or
/// `None` while its head is incomplete. The body may not have arrived yet.
pub fn request_len(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf).map_err(FramingError::Parse)? {
        httparse::Status::Partial if buf.len() >= super::MAX_REQUEST => Err(FramingError::TooLong),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(head) => {
            let total = head + body_len(req.headers)?;
            if total > super::MAX_REQUEST {
                return Err(FramingError::TooLong);
            }
            Ok(Some(total))
        }
    }
}

/// The length of the response at the start of `buf` (head and body), or
/// `None` while its head is incomplete.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf).map_err(FramingError::Parse)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(head) => {
            let code = resp.code.unwrap_or(0);
            if code < 200 {
                return Err(FramingError::Unsupported("1xx response"));
            }
            if code == 204 || code == 304 {
                return Ok(Some(head));
            }
            let body = body_len(resp.headers)?;
            let has_length = resp
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-length"));
            if !has_length {
                return Err(FramingError::Unsupported("response without Content-Length"));
            }
            Ok(Some(head + body))
        }
    }
}

/// The Content-Length of a message (0 without one); Transfer-Encoding and
/// conflicting lengths are refused.
fn body_len(headers: &[httparse::Header]) -> Result<usize, FramingError> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(FramingError::Unsupported("Transfer-Encoding"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).ok();
            let n = text
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<usize>().ok())
                .ok_or(FramingError::Unsupported("Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::Unsupported("two Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_ends_after_its_head_or_its_content_length_body() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        assert_eq!(request_len(get), Ok(Some(27)));
        assert_eq!(request_len(&get[..20]), Ok(None));
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe";
        assert_eq!(request_len(post), Ok(Some(post.len() + 3)));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            request_len(chunked),
            Err(FramingError::Unsupported(_))
        ));
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n";
        assert_eq!(request_len(huge), Err(FramingError::TooLong));
    }

    #[test]
    fn a_response_needs_a_length_unless_it_has_no_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbo";
        assert_eq!(response_len(ok), Ok(Some(ok.len() + 2)));
        assert_eq!(
            response_len(b"HTTP/1.1 304 Not Modified\r\n\r\n"),
            Ok(Some(29))
        );
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\nConte"), Ok(None));
        assert!(response_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n";
        assert!(response_len(two).is_err());
        assert!(response_len(b"HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n").is_err());
    }
}
