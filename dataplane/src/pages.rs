//! Error responses the proxy writes itself: status line, a short HTML page
//! that says what went wrong and who is to blame, and `Connection: close`.

/// Reason phrase for the statuses the proxy emits.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
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
