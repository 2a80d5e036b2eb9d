//! Who consumes a response, and so whether it is rewritten. The proxy
//! rewrites what the browser itself consumes (documents, frames, scripts,
//! style sheets, workers, manifests) and passes everything else through
//! byte for byte: data the page's scripts read (fetch, XHR: it goes back
//! to the app through channels nothing can unwrap, such as a WebSocket
//! message or a compressed save) and downloads (the user's copy must be the
//! app's). URLs in data are translated where scripts use them, by the
//! client instrumentation ([`crate::client`]).
//!
//! The request says where its response goes with `Sec-Fetch-Dest` (W3C
//! Fetch Metadata Request Headers §2.1, sent by Chromium, Firefox and
//! Safari to potentially trustworthy origins); without it the media type
//! alone decides: markup, scripts and style sheets are the browser's, JSON
//! and XML are data.

use super::content::Media;

/// The request's destination (`Sec-Fetch-Dest`), grouped by who reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FetchDest {
    /// Absent or a value this build does not know.
    #[default]
    Unknown,
    /// `document`, `iframe`, `frame`, `embed`, `object`, `fencedframe`.
    Document,
    /// `script`, `serviceworker`, `audioworklet`, `paintworklet`, `xslt`.
    Script,
    /// `worker`, `sharedworker`: a worker's own script, which gets the
    /// client instrumentation in front of it.
    Worker,
    /// `style`.
    Style,
    /// `manifest`.
    Manifest,
    /// `empty`: fetch, XHR, EventSource, beacons, WebSocket.
    Empty,
    /// Images, media, fonts, `json` modules, reports: rendered or read
    /// without being navigated to.
    Other,
}

impl FetchDest {
    pub fn parse(value: &[u8]) -> FetchDest {
        match value.trim_ascii() {
            b"document" | b"iframe" | b"frame" | b"embed" | b"object" | b"fencedframe" => {
                FetchDest::Document
            }
            b"script" | b"serviceworker" | b"audioworklet" | b"paintworklet" | b"xslt" => {
                FetchDest::Script
            }
            b"worker" | b"sharedworker" => FetchDest::Worker,
            b"style" => FetchDest::Style,
            b"manifest" => FetchDest::Manifest,
            b"empty" => FetchDest::Empty,
            b"image" | b"audio" | b"video" | b"track" | b"font" | b"json" | b"report"
            | b"webidentity" => FetchDest::Other,
            _ => FetchDest::Unknown,
        }
    }
}

/// Who reads a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// The browser renders or runs it: rewritten.
    Browser,
    /// The page's scripts read it: passed through unless the app asks.
    Data,
    /// The user saves it (`Content-Disposition: attachment`, RFC 6266
    /// §4.2): passed through, always.
    Download,
}

/// Who consumes a response of `media` to a request for `dest`.
pub fn consumer(dest: FetchDest, media: Media, attachment: bool) -> Consumer {
    if attachment {
        return Consumer::Download;
    }
    let browser = match dest {
        FetchDest::Document => matches!(media, Media::Html | Media::Svg | Media::Xml),
        FetchDest::Script | FetchDest::Worker => media == Media::Script,
        FetchDest::Style => media == Media::Css,
        FetchDest::Manifest => matches!(media, Media::Manifest | Media::Json),
        FetchDest::Empty | FetchDest::Other => false,
        FetchDest::Unknown => matches!(
            media,
            Media::Html | Media::Script | Media::Css | Media::Manifest
        ),
    };
    if browser {
        Consumer::Browser
    } else {
        Consumer::Data
    }
}

/// `Content-Disposition: attachment` (the disposition type is
/// case-insensitive, RFC 6266 §4.1).
pub fn is_attachment(content_disposition: &[u8]) -> bool {
    let value = content_disposition.trim_ascii_start();
    value.len() >= 10
        && value[..10].eq_ignore_ascii_case(b"attachment")
        && value[10..]
            .first()
            .is_none_or(|b| *b == b';' || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_consumes_what_it_renders_or_runs_and_nothing_else() {
        use Consumer::{Browser, Data, Download};
        use Media::*;
        // (Sec-Fetch-Dest, media, attachment, who)
        let cases = [
            ("document", Html, false, Browser),
            ("iframe", Html, false, Browser),
            ("document", Svg, false, Browser),
            ("document", Json, false, Data),
            ("script", Script, false, Browser),
            ("worker", Script, false, Browser),
            ("sharedworker", Script, false, Browser),
            ("worker", Json, false, Data),
            ("style", Css, false, Browser),
            ("manifest", Manifest, false, Browser),
            ("empty", Json, false, Data),
            ("empty", Html, false, Data),
            ("empty", Script, false, Data),
            ("image", Svg, false, Data),
            ("", Html, false, Browser),
            ("", Script, false, Browser),
            ("", Json, false, Data),
            ("", Xml, false, Data),
            ("document", Html, true, Download),
            ("", Json, true, Download),
            ("nonsense", Html, false, Browser),
            ("nonsense", Json, false, Data),
        ];
        for (dest, media, attachment, want) in cases {
            assert_eq!(
                consumer(FetchDest::parse(dest.as_bytes()), media, attachment),
                want,
                "{dest} {media:?} {attachment}"
            );
        }
    }

    #[test]
    fn attachments_are_recognized_by_their_disposition_type() {
        for (value, want) in [
            ("attachment", true),
            ("Attachment; filename=\"a.json\"", true),
            ("  attachment ;filename=a", true),
            ("inline", false),
            ("attachments", false),
            ("inline; filename=attachment", false),
            ("", false),
        ] {
            assert_eq!(is_attachment(value.as_bytes()), want, "{value:?}");
        }
    }
}
