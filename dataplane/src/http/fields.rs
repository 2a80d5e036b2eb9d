//! Parsers for the field values that decide framing and routing:
//! Content-Length, Transfer-Encoding, Connection tokens and Host.

use crate::domains::is_host_byte;

/// Header fields the proxy treats specially, recognised once per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldName {
    Accept,
    AcceptEncoding,
    AccessControlAllowOrigin,
    AltSvc,
    Connection,
    ContentEncoding,
    ContentDisposition,
    ContentLength,
    ContentLocation,
    ContentSecurityPolicy,
    ContentSecurityPolicyReportOnly,
    ContentType,
    Cookie,
    ETag,
    Expect,
    Forwarded,
    Host,
    IfRange,
    KeepAlive,
    Link,
    Location,
    Origin,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyConnection,
    Range,
    SecFetchDest,
    Referer,
    Refresh,
    SetCookie,
    Te,
    TransferEncoding,
    Upgrade,
    UserAgent,
    Vary,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    Other,
}

/// Every recognised name: the oracle `classify` is tested against.
#[cfg(test)]
const KNOWN_FIELDS: &[(&[u8], FieldName)] = &[
    (b"accept", FieldName::Accept),
    (b"cookie", FieldName::Cookie),
    (b"accept-encoding", FieldName::AcceptEncoding),
    (b"content-encoding", FieldName::ContentEncoding),
    (b"content-type", FieldName::ContentType),
    (b"etag", FieldName::ETag),
    (b"user-agent", FieldName::UserAgent),
    (b"content-disposition", FieldName::ContentDisposition),
    (
        b"access-control-allow-origin",
        FieldName::AccessControlAllowOrigin,
    ),
    (b"alt-svc", FieldName::AltSvc),
    (b"connection", FieldName::Connection),
    (b"content-length", FieldName::ContentLength),
    (b"content-location", FieldName::ContentLocation),
    (b"content-security-policy", FieldName::ContentSecurityPolicy),
    (
        b"content-security-policy-report-only",
        FieldName::ContentSecurityPolicyReportOnly,
    ),
    (b"expect", FieldName::Expect),
    (b"forwarded", FieldName::Forwarded),
    (b"host", FieldName::Host),
    (b"if-range", FieldName::IfRange),
    (b"range", FieldName::Range),
    (b"keep-alive", FieldName::KeepAlive),
    (b"link", FieldName::Link),
    (b"location", FieldName::Location),
    (b"origin", FieldName::Origin),
    (b"proxy-authenticate", FieldName::ProxyAuthenticate),
    (b"proxy-authorization", FieldName::ProxyAuthorization),
    (b"proxy-connection", FieldName::ProxyConnection),
    (b"referer", FieldName::Referer),
    (b"refresh", FieldName::Refresh),
    (b"set-cookie", FieldName::SetCookie),
    (b"te", FieldName::Te),
    (b"transfer-encoding", FieldName::TransferEncoding),
    (b"upgrade", FieldName::Upgrade),
    (b"vary", FieldName::Vary),
    (b"x-forwarded-for", FieldName::XForwardedFor),
    (b"x-forwarded-host", FieldName::XForwardedHost),
    (b"x-forwarded-proto", FieldName::XForwardedProto),
];

impl FieldName {
    /// Recognises a field name (case-insensitive, RFC 9110 §5.1).
    pub fn classify(name: &[u8]) -> FieldName {
        use FieldName::*;
        // Dispatch on length first: most names are compared with at most
        // one candidate.
        let candidates: &[(&[u8], FieldName)] = match name.len() {
            2 => &[(b"te", Te)],
            4 => &[
                (b"host", Host),
                (b"link", Link),
                (b"etag", ETag),
                (b"vary", Vary),
            ],
            5 => &[(b"range", Range)],
            6 => &[
                (b"accept", Accept),
                (b"cookie", Cookie),
                (b"expect", Expect),
                (b"origin", Origin),
            ],
            7 => &[
                (b"alt-svc", AltSvc),
                (b"referer", Referer),
                (b"refresh", Refresh),
                (b"upgrade", Upgrade),
            ],
            8 => &[(b"location", Location), (b"if-range", IfRange)],
            9 => &[(b"forwarded", Forwarded)],
            10 => &[
                (b"connection", Connection),
                (b"keep-alive", KeepAlive),
                (b"set-cookie", SetCookie),
                (b"user-agent", UserAgent),
            ],
            12 => &[(b"content-type", ContentType)],
            14 => &[
                (b"content-length", ContentLength),
                (b"sec-fetch-dest", SecFetchDest),
            ],
            15 => &[
                (b"x-forwarded-for", XForwardedFor),
                (b"accept-encoding", AcceptEncoding),
            ],
            16 => &[
                (b"content-encoding", ContentEncoding),
                (b"content-location", ContentLocation),
                (b"proxy-connection", ProxyConnection),
                (b"x-forwarded-host", XForwardedHost),
            ],
            17 => &[
                (b"transfer-encoding", TransferEncoding),
                (b"x-forwarded-proto", XForwardedProto),
            ],
            18 => &[(b"proxy-authenticate", ProxyAuthenticate)],
            19 => &[
                (b"proxy-authorization", ProxyAuthorization),
                (b"content-disposition", ContentDisposition),
            ],
            23 => &[(b"content-security-policy", ContentSecurityPolicy)],
            27 => &[(b"access-control-allow-origin", AccessControlAllowOrigin)],
            35 => &[(
                b"content-security-policy-report-only",
                ContentSecurityPolicyReportOnly,
            )],
            _ => return Other,
        };
        candidates
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map_or(Other, |(_, kind)| *kind)
    }

    /// Hop-by-hop fields (RFC 9110 §7.6.1), plus the legacy ones proxies
    /// drop.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            FieldName::Connection
                | FieldName::KeepAlive
                | FieldName::ProxyConnection
                | FieldName::ProxyAuthenticate
                | FieldName::ProxyAuthorization
                | FieldName::Te
                | FieldName::TransferEncoding
                | FieldName::Upgrade
        )
    }
}

/// True when a Connection field of the head names `name`: such fields are
/// hop-by-hop too (RFC 9110 §7.6.1). `kinds` classifies `headers`.
pub fn named_in_connection(
    headers: &[httparse::Header<'_>],
    kinds: &[FieldName],
    name: &[u8],
) -> bool {
    headers
        .iter()
        .zip(kinds)
        .any(|(h, k)| *k == FieldName::Connection && has_token(h.value, name))
}

/// True when a field value holds NUL, CR or LF (RFC 9110 §5.5).
pub fn has_forbidden_value_bytes(value: &[u8]) -> bool {
    memchr::memchr3(0, b'\r', b'\n', value).is_some()
}

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
    if host.is_empty() || (host[0] != b'[' && !host.iter().all(|&b| is_host_byte(b))) {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_field_is_classified_in_any_case() {
        for (name, kind) in KNOWN_FIELDS {
            assert_eq!(FieldName::classify(name), *kind);
            assert_eq!(FieldName::classify(&name.to_ascii_uppercase()), *kind);
            let mut near = name.to_vec();
            near[0] ^= 0x01;
            assert_eq!(FieldName::classify(&near), FieldName::Other);
        }
        assert_eq!(FieldName::classify(b"x-custom"), FieldName::Other);
        assert_eq!(FieldName::classify(b""), FieldName::Other);
    }

    /// Any single byte changed in a known name, to any value, classifies as
    /// `eq_ignore_ascii_case` says: only the other case of a letter keeps
    /// the name (`content\rlength` is not `content-length`).
    #[test]
    fn a_known_name_with_any_byte_changed_is_classified_as_the_definition_says() {
        for (name, kind) in KNOWN_FIELDS {
            for at in 0..name.len() {
                for b in 0..=255u8 {
                    let mut changed = name.to_vec();
                    changed[at] = b;
                    let want = if changed.eq_ignore_ascii_case(name) {
                        *kind
                    } else {
                        FieldName::Other
                    };
                    assert_eq!(
                        FieldName::classify(&changed),
                        want,
                        "{:?}",
                        String::from_utf8_lossy(&changed)
                    );
                }
            }
        }
    }

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
