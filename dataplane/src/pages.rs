//! Error responses the proxy writes itself: status line, a short HTML page
//! that says what went wrong and who is to blame, and `Connection: close`.

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
    status: u16,
    headers: &str,
    json: bool,
    body: &str,
    with_body: bool,
) {
    out.clear();
    let kind = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
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

/// The access block page (RFC 9110 §15.5.4 403): the policy's and the
/// operator's messages, a support link and the request id to quote; JSON
/// for API clients. `activity`: what a session policy refused (an upload,
/// `share`…); `None` for access to the whole app.
#[allow(clippy::too_many_arguments)]
pub fn block_page(
    out: &mut Vec<u8>,
    json: bool,
    app: &str,
    activity: Option<&str>,
    policy_message: &str,
    page: &palisade_schema::access::BlockPage,
    request_id: &str,
    with_body: bool,
) {
    let body = if json {
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
            escape_html(request_id)
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
    own_response(out, 403, "", json, &body, with_body);
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
