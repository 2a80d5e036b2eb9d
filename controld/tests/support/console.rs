//! The admin console under test: controld serving `--console` on a free
//! loopback port, an HTTPS client that follows no redirect and keeps the
//! cookies by hand (so a test can drop, forge or replay them), and sign-in
//! through the bootstrap token or the test OpenID Connect provider.

use std::net::SocketAddr;
use std::path::PathBuf;

use palisade_bench::idp::{form_post_fields, Idp};

use super::Env;

/// The console of a running controld.
pub struct Console {
    pub addr: SocketAddr,
    agent: ureq::Agent,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    /// The `name=value` of the session cookie this answer sets.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie("__Host-palisade-console")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let pair = c.split(';').next()?.trim();
            let (k, v) = pair.split_once('=')?;
            (k == name && !v.is_empty()).then(|| pair.to_string())
        })
    }
}

/// A minimal policy whose identity provider is the test provider, with
/// one app `demo` on `origin`.
pub fn console_policy(env: &Env, origin: SocketAddr, idp: &Idp) -> PathBuf {
    console_policy_with(env, origin, idp, "", "")
}

/// [`console_policy`] with more settings of the app (`app_extra`) and
/// more tables after it (`extra`).
pub fn console_policy_with(
    env: &Env,
    origin: SocketAddr,
    idp: &Idp,
    app_extra: &str,
    extra: &str,
) -> PathBuf {
    std::fs::write(env.path("jwks.json"), &idp.jwks).expect("jwks");
    let issuer = &idp.issuer;
    let text = format!(
        r#"[proxy]
suffix = "proxy.test"

[identity]
provider = "oidc"
issuer = "{issuer}"
client_id = "palisade-console-test"
authorization_endpoint = "{issuer}/authorize"
jwks_file = "jwks.json"
session_keys = [{{ id = "k1", secret = "{}" }}]

[[app]]
name = "demo"
domains = ["demo.test"]
upstream = "http://{origin}"
{app_extra}{extra}"#,
        super::signin::KEY_HEX
    );
    let path = env.path("policy.toml");
    std::fs::write(&path, text).expect("policy");
    path
}

impl Console {
    /// The console address from controld's ready line.
    pub fn of(first_line: &str) -> Console {
        let addr = first_line
            .split("console on https://")
            .nth(1)
            .and_then(|rest| rest.trim().trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no console address in {first_line:?}"));
        let agent = palisade_bench::console::console_agent();
        Console { addr, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn read(mut response: ureq::http::Response<ureq::Body>) -> Answer {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let location = header("location");
        let content_type = header("content-type");
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap_or_default();
        Answer {
            status: response.status().as_u16(),
            location,
            set_cookies,
            content_type,
            body,
        }
    }

    pub fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = self.agent.get(&self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.call().expect("console GET"))
    }

    pub fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let mut req = self.agent.post(&self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.send_form(form.iter().copied()).expect("console POST"))
    }

    /// The CSRF token of a session, from a page's meta tag.
    pub fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/", Some(cookie));
        assert_eq!(page.status, 200, "{page:?}");
        let at = page
            .body
            .find("name=\"csrf-token\" content=\"")
            .expect("csrf meta")
            + 27;
        page.body[at..at + page.body[at..].find('"').expect("end")].to_string()
    }

    /// Signs in with a fresh bootstrap token: the session cookie.
    pub fn sign_in_with_token(&self, env: &Env) -> String {
        let token = env.cli_offline(&[
            "console-token",
            "--state-dir",
            env.path("state").to_str().expect("path"),
        ]);
        assert!(token.status.success(), "console-token: {token:?}");
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        let a = self.post("/signin/token", None, &[("token", &token)]);
        assert_eq!((a.status, a.location.as_str()), (303, "/"), "{a:?}");
        a.session_cookie().expect("session cookie")
    }

    /// Signs in through the provider as `user` in `groups` (comma
    /// separated); the answer of the console's callback.
    pub fn sign_in_oidc(&self, user: &str, groups: &str) -> Answer {
        let start = self.get("/signin/oidc", None);
        assert_eq!(start.status, 303, "{start:?}");
        let pending = start
            .cookie("__Host-palisade-console-signin")
            .expect("sign-in cookie");
        // The provider's form, answered non-interactively (login_hint).
        let mut url = url::Url::parse(&start.location).expect("authorize URL");
        url.query_pairs_mut()
            .append_pair("login_hint", user)
            .append_pair("groups", groups);
        let page = self
            .agent
            .get(url.as_str())
            .call()
            .expect("provider")
            .body_mut()
            .read_to_string()
            .expect("provider page");
        let (action, id_token, state) = form_post_fields(&page).expect("form_post page");
        assert_eq!(action, self.url("/signin/oidc/callback"));
        self.post(
            "/signin/oidc/callback",
            Some(&pending),
            &[("id_token", &id_token), ("state", &state)],
        )
    }
}

/// Stores `rows` synthetic traffic records straight into the log store of
/// `state_dir` (before controld starts), `step_us` apart from `first_us`:
/// apps `files` and `mail`, 97 users, a block every 50th.
pub fn fill_store(state_dir: &std::path::Path, rows: usize, first_us: u64, step_us: u64) {
    use palisade_controld::logstore::{self, BatchRef, Store, Sync};
    use palisade_schema::logrec::{Action, BatchBuilder, BatchView, Field, Record};
    use zerocopy::little_endian::{U16, U64};

    std::fs::create_dir_all(state_dir).expect("state dir");
    let mut store = Store::open(&logstore::path(state_dir), Sync::Normal).expect("store");
    let per_batch = 10_000;
    let mut b = BatchBuilder::default();
    let mut n = 0usize;
    let mut seq = 0u64;
    while n < rows {
        b.clear();
        for _ in 0..per_batch.min(rows - n) {
            let mut r = Record {
                time_unix_us: U64::new(first_us + n as u64 * step_us),
                request_id: U64::new(n as u64 + 1),
                bytes_up: U64::new(400),
                bytes_down: U64::new(12_000 + n as u64 % 1000),
                status: U16::new(if n.is_multiple_of(50) { 403 } else { 200 }),
                action: if n.is_multiple_of(50) {
                    Action::Block
                } else {
                    Action::Allow
                } as u8,
                tls: 1,
                ..Record::default()
            };
            let app: &[u8] = if n.is_multiple_of(3) {
                b"mail"
            } else {
                b"files"
            };
            r.strings[Field::App as usize] = b.string(app);
            r.strings[Field::Host as usize] = b.string(b"app.files.test.proxy.test");
            r.strings[Field::Method as usize] = b.string(b"GET");
            r.strings[Field::Url as usize] =
                b.string(format!("/folder/{n}/files?sort=name, \"quoted\"").as_bytes());
            r.strings[Field::User as usize] =
                b.string(format!("user{}@corp.example", n % 97).as_bytes());
            r.client_ip = palisade_schema::logrec::ip_bytes([10, 0, (n % 7) as u8, 9].into());
            b.push(&r);
            n += 1;
        }
        seq += 1;
        let view = BatchView::new(b.count(), b.records_bytes(), b.arena()).expect("batch");
        store
            .store_all(
                &[BatchRef {
                    stream_id: 0xF111,
                    seq,
                    core: 0,
                    view,
                    ends: None,
                }],
                |_, _, _| Ok(()),
            )
            .expect("store");
    }
}
