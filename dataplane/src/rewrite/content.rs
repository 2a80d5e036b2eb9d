//! What a body is, from its media type (RFC 9110 §8.3.1): markup, scripts,
//! style sheets, JSON, XML (SVG included) and web manifests are text the
//! engine can rewrite; images, fonts, media and opaque binary data are not.
//! Whether a text body *is* rewritten depends on who consumes it
//! ([`super::consumer`]).

/// How a body of some media type is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// HTML or XHTML: URLs plus `integrity` attributes and meta CSP.
    Html,
    /// Scripts, stylesheets, JSON, XML, SVG, manifests: URLs.
    Other,
}

/// The text media the engine knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `text/html`, `application/xhtml+xml`.
    Html,
    /// Every JavaScript media type of RFC 9239 §6.
    Script,
    Css,
    /// `application/json`, `text/json`, `+json` (RFC 6838 §4.2.8).
    Json,
    /// `application/manifest+json` (a web app manifest the browser reads).
    Manifest,
    /// `image/svg+xml`.
    Svg,
    /// `text/xml`, `application/xml`, `+xml`.
    Xml,
}

impl Media {
    pub fn kind(self) -> TextKind {
        match self {
            Media::Html => TextKind::Html,
            _ => TextKind::Other,
        }
    }
}

/// The media of a `Content-Type` value, `None` for bodies left alone.
pub fn classify(content_type: &[u8]) -> Option<Media> {
    let essence = essence(content_type);
    let mut lower = [0u8; 96];
    if essence.len() > lower.len() {
        return None;
    }
    let lower = &mut lower[..essence.len()];
    lower.copy_from_slice(essence);
    lower.make_ascii_lowercase();
    let lower: &[u8] = lower;
    match lower {
        b"text/html" | b"application/xhtml+xml" => return Some(Media::Html),
        // Every JavaScript media type of RFC 9239 §6, plus the legacy
        // `application/x-javascript`.
        b"text/javascript"
        | b"application/javascript"
        | b"application/x-javascript"
        | b"application/ecmascript"
        | b"text/ecmascript"
        | b"text/x-javascript"
        | b"text/jscript"
        | b"text/livescript" => return Some(Media::Script),
        b"text/css" => return Some(Media::Css),
        b"application/json" | b"text/json" => return Some(Media::Json),
        b"application/manifest+json" => return Some(Media::Manifest),
        b"image/svg+xml" => return Some(Media::Svg),
        b"text/xml" | b"application/xml" => return Some(Media::Xml),
        _ => {}
    }
    // Structured syntax suffixes (RFC 6838 §4.2.8): `+json`, `+xml`
    // (`application/atom+xml`, `application/ld+json`).
    if lower.ends_with(b"+json") {
        return Some(Media::Json);
    }
    if lower.ends_with(b"+xml") {
        return Some(Media::Xml);
    }
    None
}

/// The `type/subtype` of a media type, without parameters or spaces.
pub fn essence(content_type: &[u8]) -> &[u8] {
    content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}
