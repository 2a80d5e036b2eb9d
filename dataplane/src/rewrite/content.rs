//! Which bodies are rewritten, decided from the media type (RFC 9110
//! §8.3.1): markup, scripts, stylesheets, JSON, XML (SVG included) and web
//! manifests are; images, fonts, media and opaque binary data are not.

/// How a body of some media type is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// HTML or XHTML: URLs plus `integrity` attributes and meta CSP.
    Html,
    /// Scripts, stylesheets, JSON, XML, SVG, manifests: URLs.
    Other,
}

/// The rewrite kind for a `Content-Type` value, `None` for bodies left
/// alone.
pub fn classify(content_type: &[u8]) -> Option<TextKind> {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let mut lower = [0u8; 96];
    if essence.len() > lower.len() {
        return None;
    }
    let lower = &mut lower[..essence.len()];
    lower.copy_from_slice(essence);
    lower.make_ascii_lowercase();
    let lower: &[u8] = lower;
    match lower {
        b"text/html" | b"application/xhtml+xml" => return Some(TextKind::Html),
        // Every JavaScript media type of RFC 9239 §6, plus the legacy
        // `application/x-javascript`.
        b"text/javascript"
        | b"application/javascript"
        | b"application/x-javascript"
        | b"application/ecmascript"
        | b"text/ecmascript"
        | b"text/x-javascript"
        | b"text/jscript"
        | b"text/livescript"
        | b"text/css"
        | b"application/json"
        | b"text/json"
        | b"text/xml"
        | b"application/xml"
        | b"application/manifest+json" => return Some(TextKind::Other),
        _ => {}
    }
    // Structured syntax suffixes (RFC 6838 §4.2.8): `+json`, `+xml`
    // (`image/svg+xml`, `application/atom+xml`, `application/ld+json`).
    if lower.ends_with(b"+json") || lower.ends_with(b"+xml") {
        return Some(TextKind::Other);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_are_rewritten_and_binary_types_are_not() {
        for t in [
            "text/html",
            "Text/HTML; charset=utf-8",
            "application/xhtml+xml",
        ] {
            assert_eq!(classify(t.as_bytes()), Some(TextKind::Html), "{t}");
        }
        for t in [
            "text/javascript",
            "application/javascript; charset=utf-8",
            "application/x-javascript",
            "text/css",
            "application/json",
            "application/problem+json",
            "application/manifest+json",
            "text/xml",
            "application/atom+xml",
            "image/svg+xml",
        ] {
            assert_eq!(classify(t.as_bytes()), Some(TextKind::Other), "{t}");
        }
        for t in [
            "image/png",
            "font/woff2",
            "video/mp4",
            "application/octet-stream",
            "application/pdf",
            "text/plain",
            "",
        ] {
            assert_eq!(classify(t.as_bytes()), None, "{t}");
        }
    }
}
