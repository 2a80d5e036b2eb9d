//! HTTP/1.1 message syntax (RFC 9112): strict request and response head
//! parsing over the read buffer, field-value parsers, and the chunked
//! transfer coding.

pub mod chunked;
pub mod fields;
pub mod index;
pub mod request;
pub mod response;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// True when body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// Checks line endings of a complete head: every LF must follow a CR and
/// every CR must precede an LF (RFC 9112 §2.2: bare CR is invalid; we also
/// refuse bare LF in requests and trailers, which §2.2 allows a recipient
/// to accept, because disagreeing with an upstream about line ends enables
/// smuggling; a response head is held to [`has_bare_cr`] only: the client
/// gets a head the proxy writes itself).
pub fn line_endings_are_strict(head: &[u8]) -> bool {
    for i in memchr::memchr2_iter(b'\r', b'\n', head) {
        match head[i] {
            b'\n' if i == 0 || head[i - 1] != b'\r' => return false,
            b'\r' if head.get(i + 1) != Some(&b'\n') => return false,
            _ => {}
        }
    }
    true
}

/// A CR not followed by LF (RFC 9112 §2.2): what a response head may not
/// hold (a bare LF it may, as a line terminator).
pub fn has_bare_cr(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', head).any(|i| head.get(i + 1) != Some(&b'\n'))
}

/// Writes `name: value\r\n`.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        assert!(has_bare_cr(b"a\rb"));
        assert!(has_bare_cr(b"a\r"));
        assert!(!has_bare_cr(b"a\r\nb\nc"));
        assert!(line_endings_are_strict(b"a\r\nb\r\n"));
        assert!(!line_endings_are_strict(b"a\nb"));
        assert!(!line_endings_are_strict(b"a\rb"));
    }
}
