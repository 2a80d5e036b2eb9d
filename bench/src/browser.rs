//! Headless Chromium driven over the DevTools protocol (CDP): launch with
//! a throw-away profile, attach to one page, navigate, evaluate script,
//! take screenshots, and record every network request the browser makes
//! (the browser's own `Network.*` events), downloads included.
//!
//! One WebSocket to the browser carries everything (flattened sessions);
//! events that arrive while waiting for a command's answer are kept in
//! order for [`Browser::events`].

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// How to start the browser.
pub struct Launch<'a> {
    /// `--host-resolver-rules` (e.g. `MAP *.proxy.test 127.0.0.1:8443`).
    pub host_resolver_rules: &'a str,
    /// Profile and downloads live here.
    pub dir: &'a Path,
    /// Accept the proxy's test certificates (a test-only flag).
    pub ignore_certificate_errors: bool,
}

/// A running headless browser with one page attached.
pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// The page's flattened session.
    session: String,
    /// Every event received so far, in order.
    events: Vec<Value>,
    pub downloads: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Browser {
    pub fn launch(l: &Launch<'_>) -> Result<Browser, String> {
        let profile = l.dir.join("profile");
        let downloads = l.dir.join("downloads");
        std::fs::create_dir_all(&downloads).map_err(err)?;
        let mut cmd = Command::new(chromium_binary());
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--host-resolver-rules={}", l.host_resolver_rules));
        if l.ignore_certificate_errors {
            cmd.arg("--ignore-certificate-errors");
        }
        cmd.arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", chromium_binary().display()))?;
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("ws://") {
                        let _ = tx.send(line[at..].trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "chromium did not print its DevTools address in 30 s".to_string())?;
        let rest = url.strip_prefix("ws://").ok_or("bad DevTools URL")?;
        let host = rest.split('/').next().ok_or("bad DevTools URL")?;
        let tcp = TcpStream::connect(host).map_err(err)?;
        tcp.set_nodelay(true).map_err(err)?;
        let (ws, _) = tungstenite::client(url.as_str(), tcp).map_err(err)?;
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            downloads,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or("no targetId")?
            .to_string();
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_string();
        b.call_browser(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": b.downloads.to_string_lossy(), "eventsEnabled": true}),
        )?;
        for method in ["Page.enable", "Network.enable", "Runtime.enable"] {
            b.call(method, json!({}))?;
        }
        Ok(b)
    }

    fn send(
        &mut self,
        session: Option<String>,
        method: &str,
        params: Value,
    ) -> Result<u64, String> {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = Value::String(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .map_err(err)?;
        Ok(self.next_id)
    }

    /// Reads one message (events are kept); `None` on timeout.
    fn read(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        self.ws
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(err)?;
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).map_err(err)?;
                if v.get("method").is_some() {
                    self.events.push(v.clone());
                }
                Ok(Some(v))
            }
            Ok(_) => Ok(Some(Value::Null)),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!("DevTools connection: {e}")),
        }
    }

    fn wait_answer(&mut self, id: u64, method: &str) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.read(deadline)? {
                Some(v) if v["id"].as_u64() == Some(id) => {
                    if let Some(e) = v.get("error") {
                        return Err(format!("{method}: {e}"));
                    }
                    return Ok(v["result"].clone());
                }
                Some(_) => {}
                None => return Err(format!("{method}: no answer in 60 s")),
            }
        }
    }

    /// A browser-level command.
    pub fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.send(None, method, params)?;
        self.wait_answer(id, method)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.send(Some(self.session.clone()), method, params)?;
        self.wait_answer(id, method)
    }

    /// Every event so far.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Waits until an event satisfying `pred` has arrived (earlier ones
    /// count), at most `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if let Some(v) = self.events[seen..].iter().find(|v| pred(v)) {
                return Ok(v.clone());
            }
            seen = self.events.len();
            if self.read(deadline)?.is_none() && Instant::now() >= deadline {
                return Err(format!("timed out waiting for {what}"));
            }
        }
    }

    /// Evaluates `expression` in the page (promises awaited) and returns
    /// its JSON value.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("script failed: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `condition` (a script expression) until it is true.
    pub fn wait_until(&mut self, condition: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(condition).ok() == Some(Value::Bool(true)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out waiting until {condition}"));
            }
            // Let events in meanwhile.
            let _ = self.read(Instant::now() + Duration::from_millis(50))?;
        }
    }

    /// Navigates and waits for the load event.
    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        let before = self.events.len();
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r.get("errorText") {
            return Err(format!("navigating to {url}: {e}"));
        }
        self.wait_load(before)
    }

    /// Waits for a load event after event index `since`.
    pub fn wait_load(&mut self, since: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.events[since..]
                .iter()
                .any(|e| e["method"] == "Page.loadEventFired")
            {
                return Ok(());
            }
            if self.read(deadline)?.is_none() && Instant::now() >= deadline {
                return Err("the page did not load in 30 s".into());
            }
        }
    }

    /// Index of the next event (for [`Browser::wait_load`]).
    pub fn mark(&self) -> usize {
        self.events.len()
    }

    /// Saves a PNG of the page.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().ok_or("no screenshot data")?)
            .map_err(err)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(path, data).map_err(err)
    }

    /// Every request URL the browser sent (`Network.requestWillBeSent`,
    /// redirects included) with the page (document URL) it came from, and
    /// WebSocket URLs.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Network.requestWillBeSent" => Some((
                    e["params"]["request"]["url"].as_str()?.to_string(),
                    e["params"]["documentURL"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )),
                "Network.webSocketCreated" => Some((
                    e["params"]["url"].as_str()?.to_string(),
                    e["params"]["initiator"]["url"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Every response the browser received (`Network.responseReceived`)
    /// with the protocol it came over as the browser reports it ("h2",
    /// "http/1.1", …).
    pub fn protocols(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.responseReceived")
            .filter_map(|e| {
                let response = &e["params"]["response"];
                Some((
                    response["url"].as_str()?.to_string(),
                    response["protocol"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// Failed requests: (URL, error text, page).
    pub fn failures(&self) -> Vec<(String, String, String)> {
        let url_of = |id: &str| {
            // The last one: a redirected request keeps its id.
            self.events
                .iter()
                .rev()
                .filter(|e| {
                    e["method"] == "Network.requestWillBeSent" && e["params"]["requestId"] == id
                })
                .map(|e| {
                    (
                        e["params"]["request"]["url"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        e["params"]["documentURL"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .next()
                .unwrap_or_default()
        };
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.loadingFailed")
            .map(|e| {
                let (url, page) = url_of(e["params"]["requestId"].as_str().unwrap_or(""));
                (
                    url,
                    e["params"]["errorText"].as_str().unwrap_or("").to_string(),
                    page,
                )
            })
            .collect()
    }
}
