//! A demo app that behaves like a multi-host SaaS app, for browser tests
//! and demos (`bench origin --app saas`). Hosts (under `domain`):
//!
//! - `app.`: the page (scripts and styles from `static.`, an iframe, a
//!   download link, an upload form, a settings form POST carrying a
//!   `return_to` URL, a link into a redirect chain across hosts), its
//!   JSON config (`{"apiBase":"https://api.<domain>", "wsUrl":…}`), and a
//!   session cookie set for `.<domain>`;
//! - `static.`: `app.js` (builds API URLs from the config, calls them with
//!   fetch and XHR, opens the WebSocket), `app.css`, the iframe page, one
//!   hop of the redirect chain;
//! - `api.`: JSON endpoints with CORS for `https://app.<domain>` (each
//!   reports whether the `.<domain>` cookie arrived), the download (a CSV
//!   with card numbers) and the upload endpoint;
//! - `ws.`: a WebSocket echo.
//!
//! Every URL the app writes is an absolute `https://<host>.<domain>` URL
//! or a relative one: the proxy must rewrite them all.

use std::sync::Arc;

use crate::origin::{Handler, Reply, Request};

fn reply(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.into(),
    }
}

fn with_headers(mut r: Reply, extra: Vec<(String, String)>) -> Reply {
    if let Reply::Full { headers, .. } = &mut r {
        headers.extend(extra);
    }
    r
}

fn redirect(status: u16, to: String) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Location".into(), to)],
        body: Vec::new(),
    }
}

/// The page of `app.<domain>`.
pub fn page(domain: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Files</title>
<link rel="stylesheet" href="https://static.{domain}/app.css">
<script src="https://static.{domain}/app.js" defer></script>
</head><body>
<header><h1>Acme Files</h1><span id="user"></span></header>
<main>
<p>Status: <b id="status">loading</b></p>
<ul>
<li>fetch: <span id="fetch">…</span></li>
<li>XHR: <span id="xhr">…</span></li>
<li>WebSocket: <span id="ws">…</span></li>
</ul>
<p><a id="download" href="https://api.{domain}/files/report.csv">Download report.csv</a></p>
<form id="upload" method="post" action="https://api.{domain}/upload" enctype="multipart/form-data">
<input type="file" name="file"> <button type="submit">Upload</button></form>
<form id="settings" method="post" action="https://app.{domain}/settings">
<input type="hidden" name="return_to" value="https://app.{domain}/saved">
<button type="submit">Save settings</button></form>
<p><a id="chain" href="https://app.{domain}/hop/1">Open the redirect chain</a></p>
<iframe id="frame" src="https://static.{domain}/frame.html" width="400" height="80"></iframe>
</main></body></html>
"#
    )
}

const SCRIPT: &str = r#"// Acme Files client: everything from the JSON config.
(async () => {
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  try {
    const config = await (await fetch('/config.json', { credentials: 'include' })).json();
    window.acmeConfig = config;
    const items = await (await fetch(config.apiBase + '/api/items', { credentials: 'include' })).json();
    show('fetch', items.items.length + ' items, cookie ' + (items.cookie ? 'seen' : 'missing'));
    window.acmeFetch = items;
    const xhr = await new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open('GET', config.apiBase + '/api/me');
      x.withCredentials = true;
      x.onload = () => resolve(JSON.parse(x.responseText));
      x.onerror = () => reject(new Error('xhr failed'));
      x.send();
    });
    show('user', xhr.user);
    show('xhr', 'user ' + xhr.user + ', cookie ' + (xhr.cookie ? 'seen' : 'missing'));
    window.acmeXhr = xhr;
    const echoed = await new Promise((resolve, reject) => {
      const ws = new WebSocket(config.wsUrl);
      ws.onopen = () => ws.send('ping from the page');
      ws.onmessage = (e) => { resolve(e.data); ws.close(); };
      ws.onerror = () => reject(new Error('websocket failed'));
    });
    show('ws', 'echo: ' + echoed);
    window.acmeWs = echoed;
    window.acmeReadyAt = performance.now();
    show('status', 'ready');
  } catch (e) {
    show('status', 'error: ' + e.message);
  }
})();
"#;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;background:#f7f7fb}header{display:flex;gap:1em;align-items:baseline}h1{color:#2b4eaa}#status{color:#1a7f37}iframe{border:1px solid #ccc}\n";

/// The app's JSON config: where the API and the WebSocket live.
pub fn config(domain: &str) -> String {
    serde_json::json!({
        "apiBase": format!("https://api.{domain}"),
        "wsUrl": format!("wss://ws.{domain}/socket"),
        "help": format!("https://app.{domain}/help"),
    })
    .to_string()
}

/// A downloadable text file holding the app's own URLs.
pub fn notes(domain: &str) -> String {
    format!("Notes\nSee https://app.{domain}/help and https:\\/\\/api.{domain}\\/x.\n")
}

fn has_session_cookie(req: &Request) -> bool {
    req.header("cookie")
        .is_some_and(|c| c.split(';').any(|p| p.trim() == "acme_sid=s3cr3t"))
}

/// The SaaS app's handler for every host under `domain`.
pub fn saas_app(domain: &str) -> Handler {
    let domain = domain.to_string();
    Arc::new(move |req: &Request| handle(&domain, req))
}

fn handle(domain: &str, req: &Request) -> Reply {
    let host = req
        .header("host")
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let sub = host
        .strip_suffix(&format!(".{domain}"))
        .unwrap_or(host.as_str())
        .to_string();
    let path = req.target.split('?').next().unwrap_or("");
    let cors = || {
        vec![
            (
                "Access-Control-Allow-Origin".into(),
                format!("https://app.{domain}"),
            ),
            ("Access-Control-Allow-Credentials".into(), "true".into()),
            ("Vary".into(), "Origin".into()),
        ]
    };
    use crate::saas_fidelity as fidelity;
    if sub == "api" && req.method == "OPTIONS" {
        // CORS preflight (Fetch §3.2.2) for the editor's JSON saves.
        let mut headers = cors();
        headers.push(("Access-Control-Allow-Methods".into(), "GET, POST".into()));
        headers.push(("Access-Control-Allow-Headers".into(), "content-type".into()));
        return with_headers(reply(204, "text/plain", Vec::new()), headers);
    }
    if sub == "api" && req.method == "POST" {
        if let Some(same) = fidelity::save_is_exact(domain, path, req) {
            return with_headers(fidelity::save_reply(same), cors());
        }
    }
    let html_page = |html: &str| {
        reply(
            200,
            "text/html; charset=utf-8",
            html.replace("__DOMAIN__", domain),
        )
    };
    match (sub.as_str(), path) {
        ("app", "/editor") => html_page(fidelity::EDITOR_PAGE),
        ("app", "/builder") => html_page(fidelity::BUILDER_PAGE),
        ("app", "/escape") => html_page(fidelity::ESCAPE_PAGE),
        ("app", "/worker.js") => reply(200, "text/javascript", fidelity::WORKER_SCRIPT),
        ("app", "/module-worker.js") => reply(200, "text/javascript", fidelity::MODULE_WORKER_SCRIPT),
        ("app", "/worker-lib.js") => reply(200, "text/javascript", fidelity::WORKER_LIB_SCRIPT),
        ("app", "/shared-worker.js") => reply(200, "text/javascript", fidelity::SHARED_WORKER_SCRIPT),
        ("app", "/sw.js") => reply(200, "text/javascript", "// no fetch handler\n"),
        ("app", "/navigate") => html_page(fidelity::NAVIGATE_PAGE),
        ("static", "/editor.js") => reply(200, "text/javascript", fidelity::EDITOR_SCRIPT),
        ("static", "/builder.js") => reply(200, "text/javascript", fidelity::BUILDER_SCRIPT),
        ("static", "/extra.js") => reply(200, "text/javascript", "window.builtExtra = true;\n"),
        ("static", "/pixel.png") => reply(200, "image/png", fidelity::PIXEL),
        ("api", "/api/doc") => with_headers(
            reply(200, "application/json", fidelity::document(domain)),
            cors(),
        ),
        ("api", "/api/events") => with_headers(
            reply(200, "text/event-stream", "data: hello\n\n"),
            cors(),
        ),
        ("api", "/api/beacon") => with_headers(reply(204, "text/plain", Vec::new()), cors()),
        ("api", "/files/notes.txt") => with_headers(
            Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "text/plain".into()),
                    ("Content-Disposition".into(), "attachment; filename=\"notes.txt\"".into()),
                ],
                body: notes(domain).into_bytes(),
            },
            cors(),
        ),
        ("app", "/") => with_headers(
            reply(200, "text/html; charset=utf-8", page(domain)),
            vec![(
                "Set-Cookie".into(),
                format!("acme_sid=s3cr3t; Domain=.{domain}; Path=/; Secure; HttpOnly; SameSite=Lax"),
            )],
        ),
        ("app", "/config.json") => reply(200, "application/json", config(domain)),
        ("app", "/settings") if req.method == "POST" => {
            // Back to where the form says, as apps do.
            let body = String::from_utf8_lossy(&req.body).to_string();
            let to = url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "return_to")
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| format!("https://app.{domain}/"));
            if !to.starts_with(&format!("https://app.{domain}/")) {
                return reply(400, "text/plain", format!("return_to {to:?} is not ours\n"));
            }
            redirect(303, to)
        }
        ("app", "/saved") => reply(
            200,
            "text/html; charset=utf-8",
            format!("<!doctype html><title>Saved</title><h1>Settings saved</h1><p><a href=\"https://app.{domain}/\">Back</a></p>"),
        ),
        ("app", "/hop/1") => redirect(302, format!("https://static.{domain}/hop/2")),
        ("static", "/hop/2") => redirect(302, format!("https://api.{domain}/hop/3")),
        ("api", "/hop/3") => redirect(302, format!("https://app.{domain}/landed")),
        ("app", "/landed") => reply(
            200,
            "text/html; charset=utf-8",
            format!("<!doctype html><title>Landed</title><h1>Redirect chain done</h1><p>cookie {}</p><a href=\"https://app.{domain}/\">Back</a>", if has_session_cookie(req) { "seen" } else { "missing" }),
        ),
        ("static", "/app.js") => reply(200, "text/javascript", SCRIPT),
        ("static", "/app.css") => reply(200, "text/css", STYLE),
        ("static", "/frame.html") => reply(
            200,
            "text/html; charset=utf-8",
            format!("<!doctype html><body style=\"margin:4px\">Embedded from static.{domain} · <a href=\"https://app.{domain}/help\" target=\"_top\">help</a></body>"),
        ),
        ("api", "/api/items") => with_headers(
            reply(
                200,
                "application/json",
                serde_json::json!({
                    "items": [
                        {"name": "report.csv", "url": format!("https://api.{domain}/files/report.csv")},
                        {"name": "notes.txt", "url": format!("https://api.{domain}/files/notes.txt")},
                    ],
                    "cookie": has_session_cookie(req),
                })
                .to_string(),
            ),
            cors(),
        ),
        ("api", "/api/me") => with_headers(
            reply(
                200,
                "application/json",
                serde_json::json!({"user": "alice", "cookie": has_session_cookie(req)}).to_string(),
            ),
            cors(),
        ),
        ("api", "/files/report.csv") => Reply::Full {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/csv".into()),
                ("Content-Disposition".into(), "attachment; filename=\"report.csv\"".into()),
            ],
            body: crate::samples::named("cards.csv").unwrap_or_default(),
        },
        ("api", "/upload") if req.method == "POST" => with_headers(
            reply(
                200,
                "application/json",
                serde_json::json!({"bytes": req.body.len()}).to_string(),
            ),
            cors(),
        ),
        ("ws", "/socket") => match req.header("sec-websocket-key") {
            Some(key) => Reply::WebSocketEcho {
                accept: crate::websocket::accept_value(key),
            },
            None => reply(400, "text/plain", "a WebSocket handshake is expected here\n"),
        },
        ("api", file) if file.starts_with("/files/") => {
            let name = &file["/files/".len()..];
            match fidelity::attachments(domain)
                .into_iter()
                .find(|(n, _, _)| *n == name)
            {
                Some((name, content_type, body)) => Reply::Full {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), content_type.into()),
                        ("Content-Disposition".into(), format!("attachment; filename=\"{name}\"")),
                    ],
                    body: body.into_bytes(),
                },
                None => reply(404, "text/plain", format!("no {path} on {host}\n")),
            }
        }
        (_, "/favicon.ico") => reply(204, "image/x-icon", Vec::new()),
        _ => reply(404, "text/plain", format!("no {path} on {host}\n")),
    }
}
