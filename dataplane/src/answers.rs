//! Every response the proxy writes itself, in one place: error pages
//! (4xx, 502, 504: what went wrong and who is to blame, then
//! `Connection: close`), the block page, the sign-in redirect and its
//! refusals, the monitoring notice, the replacement for a blocked download,
//! the head of a protected download and `100 Continue`. Phases decide
//! *whether* to answer; this module decides *what the bytes are*, so the
//! wording, headers and caching rules of synthesised answers never drift
//! apart.

use crate::identity;

/// The interim response that asks a client for its body
/// (RFC 9110 §10.1.1, §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Reason phrase for the statuses the proxy emits.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        302 => "Found",
        303 => "See Other",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Writes a complete error response into `out`. `with_body` is false for
/// HEAD requests (RFC 9110 §9.3.2).
pub fn error_response(out: &mut Vec<u8>, status: u16, detail: &str, with_body: bool) {
    let phrase = reason_phrase(status);
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{status} {phrase}</title></head>\n<body><h1>{status} {phrase}</h1>\n<p>{}</p>\n<p><small>Palisade</small></p></body></html>\n",
        escape_html(detail)
    );
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
}

/// A page or JSON document the proxy answers itself (sign-in, block),
/// keeping the connection open. `headers` are extra header lines, each
/// ending in CRLF.
pub fn own_response(
    out: &mut Vec<u8>,
    (status, headers): (u16, &str),
    json: bool,
    body: &str,
    with_body: bool,
) {
    let kind = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    typed_response(out, (status, headers), kind, body, with_body);
}

/// [`own_response`] with any content type.
fn typed_response(
    out: &mut Vec<u8>,
    (status, headers): (u16, &str),
    kind: &str,
    body: &str,
    with_body: bool,
) {
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{headers}\r\n",
            reason_phrase(status),
            body.len()
        )
        .as_bytes(),
    );
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
}

/// 204 No Content (a report received).
pub fn no_content(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n\r\n");
}

/// The client instrumentation script. Its URL carries the snapshot
/// version, so it may be cached for good; private: it is the same for
/// every user but lists the policy's app domains.
pub fn client_script(out: &mut Vec<u8>, script: &[u8], with_body: bool) {
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: private, max-age=31536000, immutable\r\nX-Content-Type-Options: nosniff\r\n\r\n",
            script.len()
        )
        .as_bytes(),
    );
    if with_body {
        out.extend_from_slice(script);
    }
}

/// A simple HTML page: a title and paragraphs (already escaped).
pub fn html_page(title: &str, paragraphs: &[String]) -> String {
    let mut body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head>\n<body><h1>{0}</h1>\n",
        escape_html(title)
    );
    for p in paragraphs {
        body.push_str("<p>");
        body.push_str(p);
        body.push_str("</p>\n");
    }
    body.push_str("<p><small>Palisade</small></p></body></html>\n");
    body
}

/// What a block page says: which app, what was refused, why.
pub struct Blocked<'a> {
    pub app: &'a str,
    /// What a session policy refused (an upload, `share`…); `None` for
    /// access to the whole app.
    pub activity: Option<&'a str>,
    /// The deciding policy's message.
    pub policy_message: &'a str,
    /// Quoted to support (the log record's request id).
    pub request_id: u64,
    /// Answer in JSON (an API client).
    pub json: bool,
}

/// The block page (RFC 9110 §15.5.4 403): the policy's and the operator's
/// messages, a support link and the request id to quote; JSON for API
/// clients.
pub fn block_page(
    out: &mut Vec<u8>,
    what: &Blocked<'_>,
    page: &palisade_schema::access::BlockPage,
    with_body: bool,
) {
    let request_id = format!("{:016x}", what.request_id);
    let (app, activity, policy_message) = (what.app, what.activity, what.policy_message);
    let body = if what.json {
        serde_json::json!({
            "error": if activity.is_some() { "activity_blocked" } else { "access_blocked" },
            "app": app,
            "activity": activity,
            "message": policy_message,
            "operator_message": page.message,
            "support_url": page.support_url,
            "request_id": request_id,
        })
        .to_string()
    } else {
        let mut paragraphs = vec![match activity {
            None => format!(
                "Access to {} is blocked by your organization's policy.",
                escape_html(app)
            ),
            Some(a) => format!(
                "This {} in {} is blocked by your organization's policy.",
                escape_html(a),
                escape_html(app)
            ),
        }];
        for m in [policy_message, page.message.as_str()] {
            if !m.is_empty() {
                paragraphs.push(escape_html(m));
            }
        }
        if !page.support_url.is_empty() {
            let url = escape_html(&page.support_url);
            paragraphs.push(format!("Need help? <a href=\"{url}\">{url}</a>"));
        }
        paragraphs.push(format!(
            "Request id: <code>{}</code>",
            escape_html(&request_id)
        ));
        html_page(
            if activity.is_some() {
                "Action blocked"
            } else {
                "Access blocked"
            },
            &paragraphs,
        )
    };
    own_response(out, (403, ""), what.json, &body, with_body);
}

/// A short HTML page with one paragraph, as the proxy's own answer.
pub fn simple_page(out: &mut Vec<u8>, status: u16, (title, text): (&str, &str), with_body: bool) {
    let body = html_page(title, &[escape_html(text)]);
    own_response(out, (status, ""), false, &body, with_body);
}

/// `/.palisade/logout`: the session cookie cleared for `domain`.
pub fn signed_out(out: &mut Vec<u8>, domain: &str, with_body: bool) {
    let headers = format!(
        "Set-Cookie: {}=; Domain={domain}; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax\r\n",
        String::from_utf8_lossy(identity::SESSION_COOKIE)
    );
    let body = html_page("Signed out", &["You have signed out of this app.".into()]);
    own_response(out, (200, &headers), false, &body, with_body);
}

/// The redirect to the identity provider, with the login cookie that binds
/// the sign-in to this browser.
pub fn sign_in_redirect(
    out: &mut Vec<u8>,
    url: &str,
    (login_cookie, domain): (&str, Option<&str>),
    with_body: bool,
) {
    // The provider posts back cross-site: the login cookie must be
    // SameSite=None to come along (it holds no identity). With a domain,
    // the callback is on another host of the app's domain.
    let domain = domain.map_or(String::new(), |d| format!("; Domain={d}"));
    let headers = format!(
        "Location: {url}\r\nSet-Cookie: {}={login_cookie}{domain}; Path={}; Max-Age=600; Secure; HttpOnly; SameSite=None\r\n",
        String::from_utf8_lossy(identity::LOGIN_COOKIE),
        identity::LOGIN_COOKIE_PATH
    );
    let body = html_page(
        "Sign in",
        &[format!(
            "Continue to <a href=\"{0}\">sign in</a>.",
            escape_html(url)
        )],
    );
    own_response(out, (302, &headers), false, &body, with_body);
}

/// 401 for a request without a session that cannot be redirected (an API
/// client, or no provider to send it to).
pub fn sign_in_required(out: &mut Vec<u8>, message: &str, json: bool, with_body: bool) {
    if json {
        let body = serde_json::json!({"error": "sign_in_required", "message": message}).to_string();
        own_response(out, (401, ""), true, &body, with_body);
    } else {
        let body = html_page("Sign-in required", &[escape_html(message)]);
        own_response(out, (401, ""), false, &body, with_body);
    }
}

/// The session cookie of a completed sign-in, and the login cookie
/// cleared: host-only (OpenID Connect sets it so) and on the app domain
/// (SAML, whose callback may be on another host of it).
fn session_cookies(s: &SignedIn<'_>) -> String {
    let login = String::from_utf8_lossy(identity::LOGIN_COOKIE);
    let path = identity::LOGIN_COOKIE_PATH;
    format!(
        concat!(
            "Set-Cookie: {}={}; Domain={}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax\r\n",
            "Set-Cookie: {login}=; Path={path}; Max-Age=0; Secure; HttpOnly; SameSite=None\r\n",
            "Set-Cookie: {login}=; Domain={}; Path={path}; Max-Age=0; Secure; HttpOnly; SameSite=None\r\n"
        ),
        String::from_utf8_lossy(identity::SESSION_COOKIE),
        s.cookie,
        s.domain,
        s.lifetime_secs,
        s.domain,
        login = login,
        path = path,
    )
}

/// A completed sign-in: the session cookie, the login cookie cleared, and
/// a redirect back to where the user started.
pub struct SignedIn<'a> {
    pub return_to: &'a str,
    pub cookie: &'a str,
    pub domain: &'a str,
    pub lifetime_secs: u64,
}

pub fn signed_in(out: &mut Vec<u8>, s: &SignedIn<'_>) {
    let headers = format!("Location: {}\r\n{}", s.return_to, session_cookies(s));
    let body = html_page(
        "Signed in",
        &[format!(
            "Continue to <a href=\"{0}\">{0}</a>.",
            escape_html(s.return_to)
        )],
    );
    own_response(out, (303, &headers), false, &body, true);
}

/// The proxy's SAML service-provider metadata (SAML Metadata §4.1.1:
/// `application/samlmetadata+xml`).
pub fn saml_metadata(out: &mut Vec<u8>, xml: &str, with_body: bool) {
    typed_response(
        out,
        (200, ""),
        "application/samlmetadata+xml",
        xml,
        with_body,
    );
}

/// The HTTP-POST binding (SAML Bindings §3.5.4): a page whose form the
/// browser posts to the app's assertion consumer service at once, with the
/// session cookie when the proxy's own sign-in just completed.
pub fn saml_post_form(
    out: &mut Vec<u8>,
    (action, saml_response, relay_state): (&str, &str, &str),
    session: Option<&SignedIn<'_>>,
) {
    let headers = session.map_or(String::new(), session_cookies);
    let body = format!(
        concat!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\n",
            "<body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">",
            "<input type=\"hidden\" name=\"SAMLResponse\" value=\"{}\">",
            "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">",
            "<noscript><button>Continue</button></noscript></form></body></html>\n"
        ),
        escape_html(action),
        escape_html(saml_response),
        escape_html(relay_state),
    );
    own_response(out, (200, &headers), false, &body, true);
}

/// A refused sign-in: the reason, and how to start again.
pub fn sign_in_failed(out: &mut Vec<u8>, status: u16, reason: &str) {
    let mut paragraphs = vec![escape_html(reason)];
    if status == 403 {
        paragraphs.push("Close this tab and open the app again to sign in.".into());
    }
    let body = html_page("Sign-in failed", &paragraphs);
    own_response(out, (status, ""), false, &body, true);
}

/// Path of the notice's continue link.
pub const NOTICE_PATH: &str = "/.palisade/notice";

/// The monitoring notice: the operator's text and a continue button that
/// records the acknowledgement and returns to `path`.
pub fn notice_page(out: &mut Vec<u8>, (text, app): (&str, &str), path: &[u8], with_body: bool) {
    let text = if text.is_empty() {
        "Your organization monitors this session: downloads, uploads and other activities may be logged or restricted."
    } else {
        text
    };
    let back = identity::safe_return_path(std::str::from_utf8(path).unwrap_or("/"));
    let encoded = percent_encode(back, b"-._~/");
    let body = html_page(
        "This session is monitored",
        &[
            escape_html(text),
            format!("App: {}", escape_html(app)),
            format!(
                "<a id=\"continue\" href=\"{NOTICE_PATH}?return={encoded}\">Continue to {}</a>",
                escape_html(app)
            ),
        ],
    );
    own_response(
        out,
        (200, "X-Palisade-Session: notice\r\n"),
        false,
        &body,
        with_body,
    );
}

/// The notice acknowledged: back to `back`, with the sealed cookie that
/// remembers it (when a key could seal one).
pub fn notice_acknowledged(
    out: &mut Vec<u8>,
    back: &str,
    cookie: Option<(&str, &str, bool)>,
    with_body: bool,
) {
    let mut headers = format!("Location: {back}\r\n");
    if let Some((token, domain, secure)) = cookie {
        let secure = if secure { "; Secure" } else { "" };
        headers.push_str(&format!(
            "Set-Cookie: {}={token}; Domain={domain}; Path=/; HttpOnly; SameSite=Lax{secure}\r\n",
            String::from_utf8_lossy(identity::NOTICE_COOKIE)
        ));
    }
    own_response(out, (303, &headers), false, "", with_body);
}

/// A `Content-Disposition` value naming `name` (RFC 6266 §4.3: a plain
/// ASCII fallback and the RFC 8187 UTF-8 form).
fn disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encode(name, b"-._~");
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The file that replaces a blocked download: `<name>.blocked.txt` with
/// the operator's message (the page itself is [`Blocked`]'s fields).
pub fn blocked_download(out: &mut Vec<u8>, file: &str, what: &Blocked<'_>, keep_alive: bool) {
    let file = if file.is_empty() { "download" } else { file };
    let message = what.policy_message;
    let body = format!(
        "Download restricted\r\n\r\n{file} was not downloaded: your organization's policy for {app} blocks it.\r\n{message}\r\n\r\nRequest id: {request_id:016x}\r\n",
        app = what.app,
        request_id = what.request_id,
        message = if message.is_empty() { "Contact your administrator if you need this file." } else { message }
    );
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Palisade-Session: download-restricted\r\n{}\r\n",
            disposition(&format!("{file}.blocked.txt")),
            body.len(),
            if keep_alive { "" } else { "Connection: close\r\n" }
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

/// How a protected download's body is delimited.
pub enum ProtectedFraming {
    Length(usize),
    Chunked,
    UntilClose,
}

/// The head of a protected download (`<name>.age`); the encrypted body
/// follows.
pub fn protected_head(out: &mut Vec<u8>, name: &str, framing: ProtectedFraming, keep_alive: bool) {
    let file = if name.is_empty() { "download" } else { name };
    let framing = match framing {
        ProtectedFraming::Length(n) => format!("Content-Length: {n}\r\n"),
        ProtectedFraming::Chunked => "Transfer-Encoding: chunked\r\n".into(),
        ProtectedFraming::UntilClose => String::new(),
    };
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Disposition: {}\r\nCache-Control: no-store\r\nX-Palisade-Session: protected\r\n{framing}{}\r\n",
            disposition(&format!("{file}.age")),
            if keep_alive { "" } else { "Connection: close\r\n" }
        )
        .as_bytes(),
    );
}

/// Percent-encodes every byte of `text` but ASCII alphanumerics and
/// `keep` (RFC 3986 §2.1).
pub fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for an HTML element body.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_download_names_the_replacement() {
        let mut out = Vec::new();
        let what = Blocked {
            app: "files",
            activity: Some("download"),
            policy_message: "",
            request_id: 7,
            json: false,
        };
        blocked_download(&mut out, "Q3 report.docx", &what, true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("filename=\"Q3 report.docx.blocked.txt\""),
            "{text}"
        );
        assert!(text.contains("Download restricted"));
    }
}
