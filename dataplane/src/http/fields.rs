//! Parsers for the field values that decide framing and routing:
//! Content-Length, Transfer-Encoding, Connection tokens and Host.

/// Parses one Content-Length value: 1*DIGIT (RFC 9110 §8.6), no sign, no
/// whitespace inside, no hex, at most u64.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Iterates the comma-separated list elements of a field value (RFC 9110
/// §5.6.1), trimmed, skipping empty elements.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// True when `value` lists `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// The result of reading all Transfer-Encoding fields of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferCoding {
    /// Final coding is chunked and nothing else is listed.
    Chunked,
    /// The list is malformed (empty, chunked not last, chunked twice).
    Invalid(&'static str),
    /// A coding we do not implement precedes chunked (RFC 9112 §6.1: 501).
    Unsupported,
}

/// Classifies the concatenated Transfer-Encoding values.
pub fn classify_transfer_encoding<'a>(values: impl Iterator<Item = &'a [u8]>) -> TransferCoding {
    let mut codings = 0usize;
    let mut chunked_seen = false;
    let mut last_is_chunked = false;
    let mut unknown = false;
    for value in values {
        for element in value.split(|b| *b == b',') {
            let coding = element.trim_ascii();
            if coding.is_empty() {
                return TransferCoding::Invalid("empty transfer coding");
            }
            codings += 1;
            // Coding parameters (`;q=`) are not allowed in Transfer-Encoding
            // for chunked; for others they make the coding unknown to us.
            let name = coding
                .split(|b| *b == b';')
                .next()
                .unwrap_or(coding)
                .trim_ascii();
            if !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
            {
                return TransferCoding::Invalid("malformed transfer coding");
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                if chunked_seen {
                    return TransferCoding::Invalid("chunked applied twice");
                }
                chunked_seen = true;
                last_is_chunked = true;
            } else {
                if chunked_seen {
                    last_is_chunked = false;
                }
                unknown = true;
            }
        }
    }
    if codings == 0 {
        TransferCoding::Invalid("empty Transfer-Encoding")
    } else if !last_is_chunked {
        TransferCoding::Invalid("final transfer coding is not chunked")
    } else if unknown {
        TransferCoding::Unsupported
    } else {
        TransferCoding::Chunked
    }
}

/// Splits `host[:port]` (RFC 9110 §7.2, RFC 3986 §3.2.2) and checks its
/// syntax: a reg-name or IP literal, an optional all-digit port. Returns the
/// host part.
pub fn split_host_port(value: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if value.is_empty() || value.len() > 260 {
        return None;
    }
    let (host, port) = if value[0] == b'[' {
        let close = memchr::memchr(b']', value)?;
        let rest = &value[close + 1..];
        let port = match rest {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return None,
        };
        let inner = &value[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return None;
        }
        (&value[..close + 1], port)
    } else {
        match memchr::memchr(b':', value) {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    if host.is_empty()
        || (host[0] != b'['
            && !host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
    {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b"+5"[..],
            b"-1",
            b"0x5",
            b"5 5",
            b"",
            b" ",
            b"5,5",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transfer_encoding_lists() {
        let c = |v: &[&[u8]]| classify_transfer_encoding(v.iter().copied());
        assert_eq!(c(&[b"chunked"]), TransferCoding::Chunked);
        assert_eq!(c(&[b"Chunked "]), TransferCoding::Chunked);
        assert_eq!(c(&[b"gzip, chunked"]), TransferCoding::Unsupported);
        assert_eq!(c(&[b"gzip", b"chunked"]), TransferCoding::Unsupported);
        assert!(matches!(c(&[b"chunked, gzip"]), TransferCoding::Invalid(_)));
        assert!(matches!(
            c(&[b"chunked", b"chunked"]),
            TransferCoding::Invalid(_)
        ));
        assert!(matches!(
            c(&[b"chunked, chunked"]),
            TransferCoding::Invalid(_)
        ));
        assert!(matches!(c(&[b""]), TransferCoding::Invalid(_)));
        assert!(matches!(c(&[b"identity"]), TransferCoding::Invalid(_)));
        assert!(matches!(c(&[b"chunked,"]), TransferCoding::Invalid(_)));
    }

    #[test]
    fn host_syntax() {
        assert_eq!(
            split_host_port(b"a.test:80"),
            Some((&b"a.test"[..], Some(&b"80"[..])))
        );
        assert_eq!(
            split_host_port(b"[::1]:80"),
            Some((&b"[::1]"[..], Some(&b"80"[..])))
        );
        assert_eq!(split_host_port(b"a.test"), Some((&b"a.test"[..], None)));
        for bad in [
            &b""[..],
            b"a.test:",
            b"a.test:x",
            b"u@a.test",
            b"a test",
            b"[::1",
            b"a.test:80:80",
            b"a/b",
        ] {
            assert_eq!(
                split_host_port(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
