//! The SAML rig shared by the SAML tests: a proxy with SAML sign-in
//! through a SAML identity provider nobody here wrote (pysaml2 signing
//! through xmlsec1, `tests/saml/idp.py`), and a SAML app on python3-saml
//! (`tests/saml/app.py`) whose own sign-in the proxy relays; with helpers
//! that walk a browser's sign-in.

use std::net::SocketAddr;
use std::process::Command;

use super::https::{self, Client, Response};
use super::signin::{recording_origin, KEY_HEX};
use super::{Env, Origin, OriginConfig, Proc};

pub const SP_ENTITY: &str = "https://proxy.test/saml";
pub const BOX_ENTITY: &str = "https://proxy.test/saml/box";
pub const DEMO: &str = "demo.test.proxy.test";
pub const BOX: &str = "box.test.proxy.test";
/// The SAML app (python3-saml) whose own sign-in the proxy relays.
pub const CRM: &str = "crm.test.proxy.test";

pub struct Rig {
    pub env: Env,
    /// The multi-host SaaS app (`palisade_bench::saas`) of app `saas`.
    pub _saas: Origin,
    pub _idp: Proc,
    pub _app: Proc,
    pub idp: String,
    pub _controld: Proc,
    pub _dataplane: Proc,
    pub tls: SocketAddr,
    pub origin: Origin,
}

/// The proxy with SAML sign-in through the test identity provider: `demo`
/// through the global provider (identity-provider-initiated sign-in
/// allowed), `box` through its own `[app.saml]` (not allowed; its metadata
/// fetched by controld from the provider's URL; its requests signed), `crm` (a
/// SAML app on python3-saml, no proxy sign-in required) through the relay,
/// `saas` (the browser suite's multi-host app) through the global provider;
/// user `eve` is blocked by an access policy.
pub fn rig() -> Rig {
    let env = Env::new();
    env.app_certificates(
        "certs",
        &[
            ("demo", "demo.test"),
            ("box", "box.test"),
            ("crm", "crm.test"),
            ("saas", "saas.test"),
        ],
    );
    let saas = Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: palisade_bench::saas::saas_app("saas.test"),
        tls: None,
        split_writes: false,
        record: false,
    })
    .expect("saas origin");
    let saas_addr = saas.addr();
    let origin = recording_origin();
    let (idp_proc, port) = python(&env, "idp.py", &[]);
    let (app_proc, app_port) = python(&env, "app.py", &["crm.test"]);
    // The relay's signing key, as an operator makes it.
    let out = Command::new(super::controld_bin())
        .args(["certs", "saml", "--out"])
        .arg(env.path("saml"))
        .output()
        .expect("controld certs saml");
    assert!(out.status.success(), "{out:?}");
    let origin_addr = origin.addr();
    let policy = format!(
        r#"[proxy]
suffix = "proxy.test"

[identity]
provider = "saml"
idp_metadata_file = "idp.py/idp-metadata.xml"
sp_entity_id = "{SP_ENTITY}"
allow_unsolicited = true
groups_attribute = "groups"
device_attribute = "device"
session_keys = [{{ id = "k1", secret = "{KEY_HEX}" }}]

[[app]]
name = "demo"
domains = ["demo.test"]
upstream = "http://{origin_addr}"
tls_cert = "certs/demo.pem"
tls_key = "certs/demo.key"

[[app]]
name = "box"
domains = ["box.test"]
upstream = "http://{origin_addr}"
tls_cert = "certs/box.pem"
tls_key = "certs/box.key"

[app.saml]
idp_metadata_url = "http://127.0.0.1:{port}/metadata"
sp_entity_id = "{BOX_ENTITY}"
signing_cert = "idp.py/sp-rsa.pem"
signing_key = "idp.py/sp-rsa.key"

[[app]]
name = "crm"
domains = ["crm.test"]
upstream = "http://127.0.0.1:{app_port}"
tls_cert = "certs/crm.pem"
tls_key = "certs/crm.key"
login = false

[app.saml_relay]
acs_url = "https://crm.test/saml/acs"
entity_id = "https://crm.test/saml/metadata"
signing_cert = "saml/saml.pem"
signing_key = "saml/saml.key"

[[app]]
name = "saas"
domains = ["saas.test"]
upstream = "http://{saas_addr}"
tls_cert = "certs/saas.pem"
tls_key = "certs/saas.key"

[[access_policy]]
name = "eve stays out"
users = ["eve"]
action = "block"
message = "Not for eve."
"#
    );
    let path = env.path("policy.toml");
    std::fs::write(&path, policy).expect("policy");
    let controld = env.controld(&path, &[]);
    let (dataplane, _plain, tls) = env.dataplane_tls(1, &[]);
    env.wait_for_cores(1, 1);
    let rig = Rig {
        env,
        _saas: saas,
        _idp: idp_proc,
        _app: app_proc,
        idp: format!("http://127.0.0.1:{port}"),
        _controld: controld,
        _dataplane: dataplane,
        tls,
        origin,
    };
    // The identity provider is configured with the proxy's own metadata,
    // as an operator would load it.
    let client = rig.client();
    for (host, file, entity) in [
        (DEMO, "sp-metadata.xml", SP_ENTITY),
        (BOX, "sp-metadata-box.xml", BOX_ENTITY),
    ] {
        let r = rig.get(&client, host, "/.palisade/saml/metadata", "");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/samlmetadata+xml")
        );
        assert!(
            r.body.contains(&format!("entityID=\"{entity}\""))
                && r.body
                    .contains(&format!("Location=\"https://{host}/.palisade/saml/acs\"")),
            "{}",
            r.body
        );
        std::fs::write(rig.env.path(&format!("idp.py/{file}")), &r.body).expect("sp metadata");
    }
    // And the app with the proxy's identity-provider metadata.
    let r = rig.get(&client, CRM, "/.palisade/saml/idp/metadata", "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains(&format!(
            "Location=\"https://{CRM}/.palisade/saml/idp/sso\""
        )) && r.body.contains("X509Certificate"),
        "{}",
        r.body
    );
    std::fs::write(rig.env.path("app.py/idp-metadata.xml"), &r.body).expect("idp metadata");
    rig
}

/// Starts `tests/saml/SCRIPT` under Debian's python3 with a directory of
/// its own (`<env>/SCRIPT/`); returns it and the port it reports.
pub fn python(env: &Env, script: &str, args: &[&str]) -> (Proc, u16) {
    std::fs::create_dir_all(env.path(script)).expect("dir");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(format!(
        "{}/tests/saml/{script}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .arg(env.path(script))
    .args(args);
    let proc = Proc::spawn(cmd);
    let port = serde_json::from_str::<serde_json::Value>(&proc.first_line)
        .ok()
        .and_then(|v| v["port"].as_u64())
        .unwrap_or_else(|| panic!("{script} did not start: {:?}", proc.first_line));
    (proc, port as u16)
}

impl Rig {
    pub fn client(&self) -> Client {
        Client::new(&self.env.path("ca/ca.pem"), None)
    }

    pub fn get(&self, client: &Client, host: &str, target: &str, headers: &str) -> Response {
        client.request(
            self.tls,
            host,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"),
        )
    }

    /// Posts the identity provider's form to the proxy, with the login
    /// cookie the browser holds (if any).
    pub fn post(&self, client: &Client, form: &Form, login_cookie: Option<&str>) -> Response {
        let url = url::Url::parse(&form.action).expect("action");
        let host = url.host_str().expect("host");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", &form.response)
            .append_pair("RelayState", &form.relay_state)
            .finish();
        let cookie =
            login_cookie.map_or(String::new(), |c| format!("Cookie: palisade_login={c}\r\n"));
        client.request(
            self.tls,
            host,
            &format!(
                "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n{cookie}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                url.path(),
                body.len()
            ),
        )
    }

    /// A browser opening `host` without a session: the redirect to the
    /// identity provider and the login cookie set with it.
    pub fn start(&self, client: &Client, host: &str) -> (String, String) {
        let r = self.get(client, host, "/start?x=1", "");
        assert_eq!(r.status, 302, "unauthenticated navigation redirects: {r:?}");
        let location = r.header("location").expect("Location").to_string();
        assert!(
            location.starts_with(&format!("{}/sso?SAMLRequest=", self.idp))
                && location.contains("&RelayState="),
            "{location}"
        );
        let set_cookies = r.headers_named("set-cookie");
        let app_domain = host.trim_start_matches("www.");
        assert!(
            set_cookies.iter().any(|c| c.starts_with("palisade_login=")
                && c.contains("SameSite=None")
                && c.contains(&format!("Domain={app_domain};"))),
            "{set_cookies:?}"
        );
        let login = https::cookie(&set_cookies, "palisade_login").expect("login cookie");
        (location, login.to_string())
    }

    /// The identity provider's answer at `url`: its auto-posting form.
    pub fn idp_form(&self, url: &str) -> Form {
        let (status, page) = https::http_get(url);
        assert_eq!(status, 200, "{page}");
        Form::parse(&page)
    }
}

/// The HTTP-POST binding's form.
pub struct Form {
    pub action: String,
    pub response: String,
    pub relay_state: String,
}

impl Form {
    pub fn parse(page: &str) -> Form {
        let field = |start: &str| {
            let from = page
                .find(start)
                .unwrap_or_else(|| panic!("{start} in {page}"))
                + start.len();
            let value = &page[from..from + page[from..].find('"').expect("quote")];
            value
                .replace("&quot;", "\"")
                .replace("&#x27;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        };
        Form {
            action: field("action=\""),
            response: field("name=\"SAMLResponse\" value=\""),
            relay_state: field("name=\"RelayState\" value=\""),
        }
    }
}

/// The session cookie set by a completed sign-in, checked.
pub fn session_of(r: &Response, host: &str) -> String {
    assert_eq!(r.status, 303, "{r:?}");
    let set_cookies = r.headers_named("set-cookie");
    let line = set_cookies
        .iter()
        .find(|c| c.starts_with("palisade_session="))
        .unwrap_or_else(|| panic!("session cookie in {set_cookies:?}"));
    for attribute in [
        &format!("Domain={host}")[..],
        "Path=/",
        "Secure",
        "HttpOnly",
    ] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("palisade_login=;") && c.contains("Max-Age=0")),
        "the login cookie is cleared: {set_cookies:?}"
    );
    https::cookie(&set_cookies, "palisade_session")
        .expect("value")
        .to_string()
}

/// Waits for the `sign-in` activity record whose detail contains `needle`.
pub fn sign_in_record(env: &Env, needle: &str) -> serde_json::Value {
    let mut found = None;
    super::eventually(&format!("a sign-in record with {needle:?}"), || {
        found = env.export(&["--kind", "activity"]).into_iter().find(|r| {
            r["activity"] == "sign-in" && r["detail"].as_str().is_some_and(|d| d.contains(needle))
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

/// The path and query of a URL on a proxy host.
pub fn target_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Posts the relay's form to the app's ACS through the proxy with the
/// browser's cookies; returns the app's session cookie, checked to be
/// scoped to the proxy host.
pub fn post_to_app(rig: &Rig, client: &Client, form: &Form, cookies: &str) -> (Response, String) {
    assert_eq!(form.action, format!("https://{CRM}/saml/acs"));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", &form.response)
        .append_pair("RelayState", &form.relay_state)
        .finish();
    let r = client.request(
        rig.tls,
        CRM,
        &format!(
            "POST /saml/acs HTTP/1.1\r\nHost: {CRM}\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: {cookies}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(
        r.status, 302,
        "the app accepts what the proxy issued: {r:?}"
    );
    let set_cookies = r.headers_named("set-cookie");
    let line = set_cookies
        .iter()
        .find(|c| c.starts_with("app_session="))
        .unwrap_or_else(|| panic!("the app's session cookie in {set_cookies:?}"));
    assert!(
        line.contains(&format!("Domain={CRM}")),
        "the app's cookie is scoped to the proxy host: {line}"
    );
    let token = https::cookie(&set_cookies, "app_session")
        .expect("value")
        .to_string();
    (r, token)
}
