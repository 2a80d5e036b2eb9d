//! An HTTP/2 request as the HTTP/1.1 head the phases parse (RFC 9113 §8.3,
//! RFC 9112 §3).
//!
//! The `h2` crate has already refused what RFC 9113 §8.2 calls malformed:
//! uppercase or invalid field names, values with CR, LF or NUL,
//! connection-specific fields (`connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`), `te` other than
//! `trailers`, missing or repeated pseudo-headers, and (while the body
//! arrives) DATA that disagrees with `content-length`. What is left for
//! this module is the translation, which adds nothing a client could use
//! to smuggle: the request line from `:method` and `:path`, `Host` from
//! `:authority`, the cookie crumbs joined (§8.2.3), and the framing of the
//! body made explicit. The HTTP/1.1 codec then parses the result with every
//! check it applies to a browser's own HTTP/1.1 request.

use http::header::{CONTENT_LENGTH, COOKIE, HOST, TE};

use crate::http::push_field as field;

/// How the request body reaches the phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// END_STREAM came with the headers.
    None,
    /// `content-length` bytes, exactly (the `h2` crate refuses DATA that
    /// disagrees).
    Length(u64),
    /// No length announced: chunked framing toward the phases.
    Chunked,
}

/// Writes the HTTP/1.1 head for `head` into `out`; `end_stream`: the
/// client sent no body. `None`: the request cannot be expressed (a length
/// announced on a request that ended with its headers).
pub fn translate(
    head: &http::request::Parts,
    end_stream: bool,
    out: &mut Vec<u8>,
) -> Option<Upload> {
    let uri = &head.uri;
    let authority = uri.authority().map(|a| a.as_str());
    let host_field = head.headers.get(HOST).map(|v| v.as_bytes());
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    // RFC 9113 §8.3.1: a Host field that names another origin than
    // :authority makes the request malformed. Written in absolute form,
    // the disagreement reaches the HTTP/1.1 codec, which refuses it (400,
    // logged) like the same request sent over HTTP/1.1.
    let disagree = matches!((authority, host_field), (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h));
    if disagree || head.method == http::Method::CONNECT {
        if head.method != http::Method::CONNECT {
            out.extend_from_slice(b"https://");
        }
        out.extend_from_slice(authority.unwrap_or_default().as_bytes());
    }
    if head.method != http::Method::CONNECT {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(path.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match (authority, host_field) {
        (_, Some(h)) => field(out, b"host", h),
        (Some(a), None) => field(out, b"host", a.as_bytes()),
        // Neither: the codec answers "missing Host".
        (None, None) => {}
    }
    let mut cookie: Option<Vec<u8>> = None;
    let mut length: Option<u64> = None;
    for (name, value) in &head.headers {
        if name == HOST {
            continue;
        }
        if name == COOKIE {
            // §8.2.3: crumbs in separate fields are joined with "; ".
            let joined = cookie.get_or_insert_with(Vec::new);
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(value.as_bytes());
            continue;
        }
        // `te: trailers` is hop-by-hop; HTTP/1.1 toward the app has no use
        // for it. `http2-settings` belongs to an HTTP/1.1 Upgrade to h2c
        // and is connection-specific (RFC 7540 §3.2.1): never forwarded.
        if name == TE || name.as_str() == "http2-settings" {
            continue;
        }
        if name == CONTENT_LENGTH {
            // The h2 crate parsed it (one value, digits only).
            length = std::str::from_utf8(value.as_bytes())
                .ok()?
                .trim()
                .parse()
                .ok();
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(c) = cookie {
        field(out, b"cookie", &c);
    }
    let upload = match (length, end_stream) {
        (Some(0), true) | (None, true) => Upload::None,
        (Some(_), true) => return None,
        (Some(n), false) => Upload::Length(n),
        (None, false) => {
            field(out, b"transfer-encoding", b"chunked");
            Upload::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    Some(upload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::Request<()>) -> (String, Option<Upload>, bool) {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        let upload = translate(&parts, true, &mut out);
        let mut out2 = Vec::new();
        let chunked = translate(&parts, false, &mut out2) == Some(Upload::Chunked);
        (String::from_utf8(out).unwrap(), upload, chunked)
    }

    #[test]
    fn authority_becomes_host_and_cookie_crumbs_are_joined() {
        let req = http::Request::get("https://box.com.proxy.test/a?b=1")
            .header("cookie", "a=1")
            .header("accept", "*/*")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (text, upload, chunked) = head(req);
        assert_eq!(
            text,
            "GET /a?b=1 HTTP/1.1\r\nhost: box.com.proxy.test\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n"
        );
        assert_eq!(upload, Some(Upload::None));
        assert!(
            chunked,
            "a body without a length is chunked toward the phases"
        );
    }

    #[test]
    fn a_host_that_disagrees_with_authority_reaches_the_codec_in_absolute_form() {
        let req = http::Request::get("https://box.com.proxy.test/")
            .header("host", "evil.test")
            .body(())
            .unwrap();
        let (text, _, _) = head(req);
        assert!(
            text.starts_with("GET https://box.com.proxy.test/ HTTP/1.1\r\nhost: evil.test\r\n"),
            "{text}"
        );
    }

    #[test]
    fn a_length_on_a_request_without_body_is_refused() {
        let req = http::Request::post("https://a.test/")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let (_, upload, _) = head(req);
        assert_eq!(upload, None);
    }
}
