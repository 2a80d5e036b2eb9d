//! The fidelity pages of the SaaS demo app (`saas`): what the app hands
//! out must come back exactly as it would without a proxy.
//!
//! - `app./editor`: an editor script loads a document (JSON holding HTML
//!   with the app's URLs and code that calls the app) from `api.`, changes
//!   one word and saves it back through every channel a real app uses: a
//!   JSON fetch, a form post by XHR, a multipart upload, a WebSocket
//!   message, and the document deflated by the page (`CompressionStream`)
//!   and base64-encoded (`btoa`). `api.` compares each save with the edit
//!   made to its own copy and answers `{"same": …}`; the page collects the
//!   answers in `window.fidelity`. It links to two attachments (an SVG
//!   and a JSON file holding the app's URLs) the browser downloads.
//! - `app./builder`: a script that builds the app's URLs from pieces
//!   (concatenation, template literals, `new URL`, JSON data, `atob`) and
//!   uses them through fetch, `Request`, XHR, WebSocket, EventSource,
//!   `sendBeacon`, classic, module and shared workers (each building an
//!   app URL itself), a service worker registration, `window.open` into a
//!   frame, a frame navigating itself by `location.href`, element
//!   properties and attributes (`a`, `img`, and a `script`, `link`,
//!   `iframe` and `video` `source` made by script), `srcset`, `innerHTML`, `outerHTML`,
//!   `insertAdjacentHTML`, `document.write`, `history.replaceState` and
//!   `pushState`, `postMessage` to the app's origin, a cookie for the
//!   app's domain and `document.domain`; every request must land on a
//!   proxy host.

use crate::origin::{Reply, Request};

/// The document the editor loads (the word `draft` is what it changes).
pub fn document(domain: &str) -> String {
    serde_json::json!({
        "html": format!("<p>Read the <a href=\"https://app.{domain}/help\">help</a> and see https://static.{domain}/logo.png; status: draft.</p>"),
        "code": format!("fetch('https://api.{domain}/api/run', {{method: 'POST'}})"),
    })
    .to_string()
}

/// The document after the editor's one-word change.
pub fn edited(domain: &str) -> String {
    document(domain).replace("draft", "final")
}

/// Attachments the editor page links to, downloaded by the browser
/// itself: `(file name, content type, body)`. Both are types a page
/// rewriter would rewrite, and both hold the app's URLs.
pub fn attachments(domain: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "diagram.svg",
            "image/svg+xml",
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"10\" height=\"10\"><a xlink:href=\"https://app.{domain}/help\"><image href=\"https://static.{domain}/pixel.png\" width=\"10\" height=\"10\"/></a></svg>\n"),
        ),
        (
            "export.json",
            "application/json",
            format!("{{\"links\":[\"https://app.{domain}/help\",\"https:\\/\\/api.{domain}\\/api\\/me\"]}}\n"),
        ),
    ]
}

pub const EDITOR_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Editor</title>
<script src="https://static.__DOMAIN__/editor.js" defer></script>
</head><body><h1>Acme Editor</h1><p>Saves: <b id="saves">pending</b></p>
<p><a id="diagram.svg" href="https://api.__DOMAIN__/files/diagram.svg">diagram.svg</a>
<a id="export.json" href="https://api.__DOMAIN__/files/export.json">export.json</a></p></body></html>
"#;

pub const EDITOR_SCRIPT: &str = r#"// Acme Editor: load, change one word, save through every channel.
(async () => {
  const api = 'https://api.' + location.hostname.split('.').slice(1, 3).join('.');
  const results = {};
  try {
    const text = await (await fetch(api + '/api/doc', { credentials: 'include' })).text();
    const doc = JSON.parse(text);
    doc.html = doc.html.replace('draft', 'final');
    const body = JSON.stringify(doc);
    const check = async (r) => (await r.json()).same;
    results.json = await check(await fetch(api + '/api/save/json', {
      method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body }));
    results.form = await new Promise((resolve) => {
      const x = new XMLHttpRequest();
      x.open('POST', api + '/api/save/form');
      x.withCredentials = true;
      x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
      x.onload = () => resolve(JSON.parse(x.responseText).same);
      x.onerror = () => resolve('xhr failed');
      x.send(new URLSearchParams({ doc: body }).toString());
    });
    const form = new FormData();
    form.append('doc', new Blob([body], { type: 'application/json' }), 'doc.json');
    results.multipart = await check(await fetch(api + '/api/save/multipart', {
      method: 'POST', credentials: 'include', body: form }));
    const deflated = await new Response(new Blob([body]).stream()
      .pipeThrough(new CompressionStream('deflate-raw'))).arrayBuffer();
    let binary = '';
    for (const b of new Uint8Array(deflated)) binary += String.fromCharCode(b);
    results.compressed = await check(await fetch(api + '/api/save/compressed', {
      method: 'POST', credentials: 'include', headers: { 'Content-Type': 'text/plain' },
      body: 'rawdeflate,' + btoa(binary) }));
    results.websocket = await new Promise((resolve) => {
      const ws = new WebSocket(api.replace('https://api.', 'wss://ws.') + '/socket');
      ws.onopen = () => ws.send(body);
      ws.onmessage = (e) => { resolve(e.data === body); ws.close(); };
      ws.onerror = () => resolve('websocket failed');
    });
    results.download = await (await fetch(api + '/files/notes.txt', { credentials: 'include' })).text();
  } catch (e) {
    results.error = String(e);
  }
  window.fidelity = results;
  document.getElementById('saves').textContent = JSON.stringify(results);
})();
"#;

pub const BUILDER_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Builder</title>
<script src="https://static.__DOMAIN__/builder.js" defer></script>
</head><body><h1>Acme Builder</h1><div id="out"></div><a id="link">link</a><img id="pic" alt=""><img id="pic2" alt="">
<script>document.write('<img src="https://static.' + location.hostname.split('.').slice(1, 3).join('.') + '/pixel.png?via=write" alt="">');</script>
<iframe name="target" src="about:blank" width="80" height="40"></iframe>
<iframe src="https://app.__DOMAIN__/navigate" width="80" height="40"></iframe></body></html>
"#;

/// A frame whose script sends itself to another app URL it builds.
pub const NAVIGATE_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Navigate</title></head><body>
<script>location.href = 'https://app.' + location.hostname.split('.').slice(1, 3).join('.') + '/help?via=location';</script>
</body></html>
"#;

pub const BUILDER_SCRIPT: &str = r#"// Acme Builder: the app's URLs built from pieces, used through every API.
(async () => {
  const done = {};
  try {
  const domain = location.hostname.split('.').slice(1, 3).join('.');
  const parts = ['https:', '//', 'api', '.', domain];
  const api = parts.join('');
  const fromJson = JSON.parse('{"u":"https:\\/\\/api.' + domain + '\\/api\\/me"}').u;
  const fromAtob = atob(btoa('https://api.' + domain + '/api/items'));
  const made = new URL('/api/me?via=url', `https://api.${domain}`).href;
  const ok = async (p) => { try { const r = await p; return r.ok === undefined ? true : r.ok; } catch (e) { return String(e); } };
  done.concat = await ok(fetch(api + '/api/me', { credentials: 'include' }));
  done.template = await ok(fetch(`https://api.${domain}/api/items`, { credentials: 'include' }));
  done.json = await ok(fetch(fromJson, { credentials: 'include' }));
  done.atob = await ok(fetch(fromAtob, { credentials: 'include' }));
  done.request = await ok(fetch(new Request(made, { credentials: 'include' })));
  done.xhr = await new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('GET', api + '/api/me?via=xhr');
    x.withCredentials = true;
    x.onload = () => resolve(x.status === 200);
    x.onerror = () => resolve('xhr failed');
    x.send();
  });
  done.websocket = await new Promise((resolve) => {
    const ws = new WebSocket('wss://ws.' + domain + '/socket');
    ws.onopen = () => ws.send('built');
    ws.onmessage = (e) => { resolve(e.data === 'built'); ws.close(); };
    ws.onerror = () => resolve('websocket failed');
  });
  done.eventsource = await new Promise((resolve) => {
    const es = new EventSource('https://api.' + domain + '/api/events', { withCredentials: true });
    es.onmessage = (e) => { resolve(e.data === 'hello'); es.close(); };
    es.onerror = () => { resolve('eventsource failed'); es.close(); };
  });
  done.beacon = navigator.sendBeacon(api + '/api/beacon', 'seen');
  done.worker = await new Promise((resolve) => {
    const w = new Worker('https://app.' + domain + '/worker.js');
    w.onmessage = (e) => resolve(e.data);
    w.onerror = () => resolve('worker failed');
  });
  done.moduleWorker = await new Promise((resolve) => {
    const w = new Worker('https://app.' + domain + '/module-worker.js', { type: 'module' });
    w.onmessage = (e) => resolve(e.data);
    w.onerror = () => resolve('module worker failed');
  });
  done.sharedWorker = await new Promise((resolve) => {
    const w = new SharedWorker('https://app.' + domain + '/shared-worker.js');
    w.port.onmessage = (e) => resolve(e.data);
    w.onerror = () => resolve('shared worker failed');
    w.port.start();
  });
  done.serviceWorker = await navigator.serviceWorker.register('/sw.js')
    .then(() => 'registered', (e) => e.name);
  window.open('https://app.' + domain + '/help?via=open', 'target');
  done.postMessage = await new Promise((resolve) => {
    window.addEventListener('message', (e) => { if (e.data === 'to-self') resolve(true); });
    window.postMessage('to-self', 'https://app.' + domain);
    setTimeout(() => resolve('not delivered'), 5000);
  });
  document.cookie = 'built=1; domain=.' + domain + '; path=/';
  done.cookie = document.cookie.split('; ').includes('built=1');
  done.domain = (() => { try { document.domain = domain; return true; } catch (e) { return e.name; } })();
  const pic = document.getElementById('pic');
  pic.src = 'https://static.' + domain + '/pixel.png?via=src';
  document.getElementById('pic2')
    .setAttribute('srcset', 'https://static.' + domain + '/pixel.png?via=srcset 1x');
  const link = document.getElementById('link');
  link.href = 'https://app.' + domain + '/help';
  link.setAttribute('href', 'https://app.' + domain + '/help?via=attribute');
  // Elements made by script, their URL set by property.
  const script = document.createElement('script');
  done.script = await new Promise((resolve) => {
    script.onload = () => resolve(window.builtExtra === true);
    script.onerror = () => resolve('script failed');
    script.src = 'https://static.' + domain + '/extra.js';
    document.head.appendChild(script);
  });
  const sheet = document.createElement('link');
  done.link = await new Promise((resolve) => {
    sheet.onload = () => resolve(true);
    sheet.onerror = () => resolve('style sheet failed');
    sheet.rel = 'stylesheet';
    sheet.href = 'https://static.' + domain + '/app.css?via=link';
    document.head.appendChild(sheet);
  });
  const frame = document.createElement('iframe');
  done.iframe = await new Promise((resolve) => {
    frame.onload = () => resolve(true);
    frame.src = 'https://static.' + domain + '/frame.html?via=iframe';
    document.body.appendChild(frame);
  });
  const video = document.createElement('video');
  const source = document.createElement('source');
  source.src = 'https://static.' + domain + '/pixel.png?via=source';
  video.preload = 'auto';
  video.appendChild(source);
  document.body.appendChild(video);
  const out = document.getElementById('out');
  out.innerHTML = '<img src="https://static.' + domain + '/pixel.png?via=html" alt=""><span></span>';
  out.querySelector('span').outerHTML =
    '<img src="https://static.' + domain + '/pixel.png?via=outer" alt="">';
  out.insertAdjacentHTML('beforeend', '<img src="https://static.' + domain + '/pixel.png?via=adjacent" alt="">');
  history.replaceState({}, '', 'https://app.' + domain + '/builder?replaced=1');
  done.replaced = location.search === '?replaced=1';
  history.pushState({}, '', 'https://app.' + domain + '/builder?pushed=1');
  done.href = link.href;
  done.location = location.href;
  } catch (e) {
    done.error = String(e);
  }
  window.built = done;
  document.getElementById('out').setAttribute('data-done', JSON.stringify(done));
})();
"#;

/// A page whose inline script deliberately escapes to a host that is no
/// app's (nothing can translate it): the leak guard must report it.
pub const ESCAPE_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Escape</title></head><body><h1>Escape</h1>
<script>
fetch('https://escape.example/beacon', { mode: 'no-cors' }).catch(() => {}).finally(() => { window.escaped = true; });
</script></body></html>
"#;

/// A classic worker asking the API for its user, by a URL it builds.
pub const WORKER_SCRIPT: &str = r#"'use strict';
const domain = self.location.hostname.split('.').slice(1, 3).join('.');
fetch('https://api.' + domain + '/api/me?via=worker', { credentials: 'include' })
  .then((r) => postMessage(r.ok ? 'ran' : 'status ' + r.status), (e) => postMessage(String(e)));
"#;

/// The same from a module worker, which imports how it finds the app's
/// domain.
pub const MODULE_WORKER_SCRIPT: &str = r#"import { appDomain } from './worker-lib.js';
const r = await fetch(`https://api.${appDomain()}/api/me?via=module-worker`, { credentials: 'include' });
postMessage(r.ok ? 'ran' : 'status ' + r.status);
"#;

/// The module the module worker imports.
pub const WORKER_LIB_SCRIPT: &str = r#"export const appDomain = () => self.location.hostname.split('.').slice(1, 3).join('.');
"#;

/// The same from a shared worker, answering each page that connects.
pub const SHARED_WORKER_SCRIPT: &str = r#"onconnect = (event) => {
  const port = event.ports[0];
  const domain = self.location.hostname.split('.').slice(1, 3).join('.');
  fetch('https://api.' + domain + '/api/me?via=shared-worker', { credentials: 'include' })
    .then((r) => port.postMessage(r.ok ? 'ran' : 'status ' + r.status), (e) => port.postMessage(String(e)));
};
"#;

/// One pixel (PNG).
pub const PIXEL: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xff, 0xff, 0x3f,
    0x00, 0x05, 0xfe, 0x02, 0xfe, 0xa7, 0x35, 0x81, 0x84, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Whether a save (`path`, request body) holds exactly the edited
/// document.
pub fn save_is_exact(domain: &str, path: &str, req: &Request) -> Option<bool> {
    let want = edited(domain);
    let body = &req.body;
    Some(match path {
        "/api/save/json" => body.as_slice() == want.as_bytes(),
        "/api/save/form" => url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "doc")
            .is_some_and(|(_, v)| v == want),
        "/api/save/multipart" => {
            let text = String::from_utf8_lossy(body);
            text.contains(&format!("\r\n\r\n{want}\r\n--"))
        }
        "/api/save/compressed" => {
            let text = String::from_utf8_lossy(body);
            let Some(b64) = text.strip_prefix("rawdeflate,") else {
                return Some(false);
            };
            use base64::Engine;
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                return Some(false);
            };
            let mut out = Vec::new();
            use std::io::Read;
            flate2::read::DeflateDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .is_ok()
                && out == want.as_bytes()
        }
        _ => return None,
    })
}

/// The answer to a save: whether it was exact.
pub fn save_reply(same: bool) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::json!({ "same": same }).to_string().into_bytes(),
    }
}
