//! The fidelity walk: the same steps through the SaaS demo app's fidelity
//! pages (`saas_fidelity`), once directly against the app and once
//! through the proxy, and what the app received in each, normalised only
//! where a browser itself varies between two walks (a multipart
//! boundary), so the two can be compared byte for byte.
//!
//! The direct walk needs the app on HTTPS (its pages name `https://`
//! hosts): [`direct_origin`] serves it with any certificate, and the
//! browser maps `*.<domain>` to it (`--host-resolver-rules`) and ignores
//! certificate errors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::browser::Browser;
use crate::origin::{Origin, OriginConfig};

/// The editor's answers (`window.fidelity`) after loading `base/editor`;
/// the page stays open (for [`downloads`]).
pub fn editor(b: &mut Browser, base: &str) -> Result<Value, String> {
    b.navigate(&format!("{base}/editor"))?;
    b.wait_until("window.fidelity !== undefined", Duration::from_secs(20))?;
    b.eval("window.fidelity")
}

/// Clicks the link `name` on the page (an attachment of that file name)
/// and returns the bytes the browser saved.
pub fn download(b: &mut Browser, name: &str) -> Result<Vec<u8>, String> {
    let id = serde_json::to_string(name).map_err(|e| e.to_string())?;
    b.eval(&format!("document.getElementById({id}).click(); true"))?;
    let begun = b.wait_for(
        &format!("the download of {name}"),
        Duration::from_secs(20),
        |e| e["method"] == "Browser.downloadWillBegin" && e["params"]["suggestedFilename"] == name,
    )?;
    let guid = begun["params"]["guid"].clone();
    b.wait_for(
        &format!("{name} to complete"),
        Duration::from_secs(20),
        |e| {
            e["method"] == "Browser.downloadProgress"
                && e["params"]["guid"] == guid
                && e["params"]["state"] == "completed"
        },
    )?;
    std::fs::read(b.downloads.join(name)).map_err(|e| format!("{name}: {e}"))
}

/// The editor page's attachments as the browser saved them: `(name,
/// bytes)`.
pub fn downloads(b: &mut Browser, domain: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    crate::saas_fidelity::attachments(domain)
        .into_iter()
        .map(|(name, _, _)| Ok((name.to_string(), download(b, name)?)))
        .collect()
}

/// The builder's answers (`window.built`) after loading `base/builder`.
pub fn builder(b: &mut Browser, base: &str) -> Result<Value, String> {
    b.navigate(&format!("{base}/builder"))?;
    b.wait_until("window.built !== undefined", Duration::from_secs(20))?;
    b.eval("window.built")
}

/// The SaaS demo app for `domain` on HTTPS at a free loopback port,
/// recording what it receives.
pub fn direct_origin(domain: &str, tls: Arc<rustls::ServerConfig>) -> Result<Origin, String> {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        handler: crate::saas::saas_app(domain),
        tls: Some(tls),
        split_writes: false,
        record: true,
    })
    .map_err(|e| format!("the direct origin: {e}"))
}

/// One thing the app received: `(method, host, target)`.
pub type Received = (String, String, String);

/// The requests `origin` received after its first `since`, as a set,
/// leaving out what a browser sends or not depending on its history
/// rather than on the page: CORS preflights (cached per browser, Fetch
/// §4.8) and the favicon.
pub fn requests_since(origin: &Origin, since: usize) -> BTreeSet<Received> {
    origin
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.method != "OPTIONS" && r.target != "/favicon.ico")
        .map(|r| {
            let host = r.header("host").unwrap_or("").to_string();
            (r.method, host, r.target)
        })
        .collect()
}

/// What the app stored from each save (`/api/save/...` body by path) and
/// each WebSocket message, after the first `since` requests and
/// `since_messages` messages. A multipart body's boundary (random per
/// browser, RFC 7578 §4.1) is replaced by `BOUNDARY`; nothing else is
/// touched.
pub fn saves_since(origin: &Origin, since: usize, since_messages: usize) -> Vec<(String, Vec<u8>)> {
    let mut saves: Vec<(String, Vec<u8>)> = origin
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.method == "POST" && r.target.starts_with("/api/save/"))
        .map(|r| {
            let boundary = r
                .header("content-type")
                .and_then(|t| t.split_once("boundary="))
                .map(|(_, b)| b.trim_matches('"').to_string());
            let body = match boundary {
                Some(b) if !b.is_empty() => replace(&r.body, b.as_bytes(), b"BOUNDARY"),
                _ => r.body.clone(),
            };
            (r.target, body)
        })
        .collect();
    saves.sort();
    saves.extend(
        origin
            .messages()
            .into_iter()
            .skip(since_messages)
            .map(|m| (format!("websocket {}", m.target), m.payload)),
    );
    saves
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where `proxied` and `direct` differ, for a failure message.
pub fn differences<T: Ord + std::fmt::Debug>(
    proxied: &BTreeSet<T>,
    direct: &BTreeSet<T>,
) -> String {
    format!(
        "only through the proxy: {:?}; only direct: {:?}",
        proxied.difference(direct).collect::<Vec<_>>(),
        direct.difference(proxied).collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_every_occurrence() {
        assert_eq!(replace(b"--xy\r\na--xy--", b"xy", b"B"), b"--B\r\na--B--");
        assert_eq!(replace(b"none", b"xy", b"B"), b"none");
    }
}
