//! SAML sign-in end to end: real `controld` and `dataplane` processes, a
//! real origin, and a SAML identity provider nobody here wrote (pysaml2,
//! signing through xmlsec1; `tests/saml/idp.py`). Both flows
//! (service-provider and identity-provider initiated), every way a
//! response must be refused (XML Signature Wrapping XSW1–8 included), and
//! the log record of each outcome.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::https::{self, Client, Response};
use support::signin::{record_for, recording_origin, KEY_HEX};
use support::{Env, Origin, Proc};

const SP_ENTITY: &str = "https://proxy.test/saml";
const BOX_ENTITY: &str = "https://proxy.test/saml/box";
const DEMO: &str = "demo.test.proxy.test";
const BOX: &str = "box.test.proxy.test";
/// The SAML app (python3-saml) whose own sign-in the proxy relays.
const CRM: &str = "crm.test.proxy.test";

struct Rig {
    env: Env,
    _idp: Proc,
    _app: Proc,
    idp: String,
    _controld: Proc,
    _dataplane: Proc,
    tls: SocketAddr,
    origin: Origin,
}

/// The proxy with SAML sign-in through the test identity provider: `demo`
/// through the global provider (identity-provider-initiated sign-in
/// allowed), `box` through its own `[app.saml]` (not allowed; its metadata
/// fetched by controld from the provider's URL), `crm` (a
/// SAML app on python3-saml, no proxy sign-in required) through the relay;
/// user `eve` is blocked by an access policy.
fn rig() -> Rig {
    let env = Env::new();
    env.app_certificates(
        "certs",
        &[
            ("demo", "demo.test"),
            ("box", "box.test"),
            ("crm", "crm.test"),
        ],
    );
    let origin = recording_origin();
    let (idp_proc, port) = python(&env, "idp.py", &[]);
    let (app_proc, app_port) = python(&env, "app.py", &["crm.test"]);
    // The relay's signing key, as an operator makes it.
    let out = Command::new(support::controld_bin())
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
fn python(env: &Env, script: &str, args: &[&str]) -> (Proc, u16) {
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
    fn client(&self) -> Client {
        Client::new(&self.env.path("ca/ca.pem"), None)
    }

    fn get(&self, client: &Client, host: &str, target: &str, headers: &str) -> Response {
        client.request(
            self.tls,
            host,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"),
        )
    }

    /// Posts the identity provider's form to the proxy, with the login
    /// cookie the browser holds (if any).
    fn post(&self, client: &Client, form: &Form, login_cookie: Option<&str>) -> Response {
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
    fn start(&self, client: &Client, host: &str) -> (String, String) {
        let r = self.get(client, host, "/start?x=1", "");
        assert_eq!(r.status, 302, "unauthenticated navigation redirects: {r:?}");
        let location = r.header("location").expect("Location").to_string();
        assert!(
            location.starts_with(&format!("{}/sso?SAMLRequest=", self.idp))
                && location.contains("&RelayState="),
            "{location}"
        );
        let set_cookies = r.headers_named("set-cookie");
        assert!(
            set_cookies
                .iter()
                .any(|c| c.starts_with("palisade_login=") && c.contains("SameSite=None")),
            "{set_cookies:?}"
        );
        let login = https::cookie(&set_cookies, "palisade_login").expect("login cookie");
        (location, login.to_string())
    }

    /// The identity provider's answer at `url`: its auto-posting form.
    fn idp_form(&self, url: &str) -> Form {
        let (status, page) = https::http_get(url);
        assert_eq!(status, 200, "{page}");
        Form::parse(&page)
    }
}

/// The HTTP-POST binding's form.
struct Form {
    action: String,
    response: String,
    relay_state: String,
}

impl Form {
    fn parse(page: &str) -> Form {
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
fn session_of(r: &Response, host: &str) -> String {
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
fn sign_in_record(env: &Env, needle: &str) -> serde_json::Value {
    let mut found = None;
    support::eventually(&format!("a sign-in record with {needle:?}"), || {
        found = env.export(&["--kind", "activity"]).into_iter().find(|r| {
            r["activity"] == "sign-in" && r["detail"].as_str().is_some_and(|d| d.contains(needle))
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn both_saml_flows_sign_in_and_reach_the_app_with_a_scoped_session() {
    let rig = rig();
    let client = rig.client();
    // Service-provider initiated, with each way pysaml2 signs, and an
    // assertion signed with the identity provider's ECDSA P-256 key.
    for (i, params) in ["sign=assertion", "sign=response", "sign=both", "mutate=ec"]
        .iter()
        .enumerate()
    {
        let (location, login) = rig.start(&client, DEMO);
        let form = rig.idp_form(&format!(
            "{location}&user=alice&groups=eng,finance&{params}"
        ));
        assert_eq!(form.action, format!("https://{DEMO}/.palisade/saml/acs"));
        let r = rig.post(&client, &form, Some(&login));
        let session = session_of(&r, DEMO);
        assert_eq!(r.header("location"), Some("/start?x=1"), "{params}");
        let target = format!("/app/{i}");
        let r = rig.get(
            &client,
            &format!("www.{DEMO}"),
            &target,
            &format!("Cookie: theme=dark; palisade_session={session}\r\n"),
        );
        assert_eq!(r.status, 200, "{params}: {r:?}");
        assert_eq!(r.body, format!("app saw {target}"));
        let row = record_for(&rig.env, &target);
        assert_eq!(row["user"], "alice", "{row}");
        assert_eq!(row["action"], "allow", "{row}");
    }
    assert!(
        rig.origin
            .requests()
            .iter()
            .all(|q| q.head.windows(8).all(|w| w != b"palisade")),
        "no proxy cookie or path ever reaches the app"
    );
    let record = sign_in_record(&rig.env, "initiated by the service provider");
    assert_eq!(record["user"], "alice", "{record}");
    assert_eq!(record["action"], "allow", "{record}");
    assert_eq!(record["app"], "demo", "{record}");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("idp={}/metadata", rig.idp))),
        "{record}"
    );

    // Identity-provider initiated: no login cookie, RelayState is where
    // to go.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{DEMO}/.palisade/saml/acs&user=bob&relay=/welcome",
        rig.idp
    ));
    let r = rig.post(&client, &form, None);
    let session = session_of(&r, DEMO);
    assert_eq!(r.header("location"), Some("/welcome"));
    let r = rig.get(
        &client,
        DEMO,
        "/bob-was-here",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(record_for(&rig.env, "/bob-was-here")["user"], "bob");
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the identity provider")["user"],
        "bob"
    );

    // An app with its own provider entry signs in there (its own entity
    // ID and ACS).
    let (location, login) = rig.start(&client, BOX);
    let form = rig.idp_form(&format!("{location}&user=carol"));
    assert_eq!(form.action, format!("https://{BOX}/.palisade/saml/acs"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), BOX);
    let r = rig.get(
        &client,
        BOX,
        "/carol-in-box",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // The access policies see the SAML user: eve signs in, and is blocked.
    let (location, login) = rig.start(&client, DEMO);
    let form = rig.idp_form(&format!("{location}&user=eve"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), DEMO);
    let r = rig.get(
        &client,
        DEMO,
        "/eve-tries",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("Not for eve."), "{}", r.body);
    let row = record_for(&rig.env, "/eve-tries");
    assert_eq!(
        (row["user"].as_str(), row["action"].as_str()),
        (Some("eve"), Some("block"))
    );
}

#[test]
fn every_refused_saml_response_gets_its_reason_and_a_record_never_a_session() {
    let rig = rig();
    let client = rig.client();
    let refused = |r: &Response, reason: &str, what: &str| {
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert!(
            r.body.contains("Sign-in failed") && r.body.contains(reason),
            "{what}: expected {reason:?} in {}",
            r.body
        );
        assert!(
            !r.headers_named("set-cookie")
                .iter()
                .any(|c| c.starts_with("palisade_session=")),
            "{what}: no session"
        );
        let record = sign_in_record(&rig.env, reason);
        assert_eq!(record["action"], "block", "{what}: {record}");
        assert_eq!(record["user"], "", "{what}: {record}");
    };

    // Responses the identity provider signed, wrong in one way each, and
    // the attacks on signed responses.
    let cases: &[(&str, &str)] = &[
        ("mutate=expired", "the assertion has expired"),
        ("mutate=notyet", "the assertion is not yet valid"),
        ("mutate=audience", "the assertion is for another audience"),
        ("mutate=recipient", "the assertion is for another recipient"),
        (
            "mutate=unsigned",
            "neither the response nor the assertion is signed",
        ),
        ("mutate=othercert", "is not valid for the identity provider"),
        ("mutate=sha1", "weak signature algorithm"),
        ("mutate=tamper", "the signed content was changed"),
        ("mutate=xxe", "document type declaration"),
        ("mutate=comment&user=alice.evil", "contains a comment"),
    ];
    for (params, reason) in cases {
        let (location, login) = rig.start(&client, DEMO);
        let user = if params.contains("user=") {
            ""
        } else {
            "&user=alice"
        };
        let form = rig.idp_form(&format!("{location}{user}&{params}"));
        refused(&rig.post(&client, &form, Some(&login)), reason, params);
    }
    // XML Signature Wrapping: the signed original kept somewhere, an
    // evil assertion (for "mallory") where a careless reader looks.
    for variant in 1..=8 {
        let (location, login) = rig.start(&client, DEMO);
        let params = format!("mutate=xsw{variant}");
        let form = rig.idp_form(&format!("{location}&user=alice&{params}"));
        let r = rig.post(&client, &form, Some(&login));
        let reason = [
            "assertions, not one",
            "does not sign the element it is in",
            "names no element",
            "two elements share the signed ID",
            "the signed content was changed",
            "the signature is malformed",
        ]
        .into_iter()
        .find(|reason| r.body.contains(reason))
        .unwrap_or_else(|| panic!("{params}: a wrapping refusal in {r:?}"));
        eprintln!("{params}: {reason}");
        refused(&r, reason, &params);
        assert!(!r.body.contains("mallory"), "{params}: {}", r.body);
    }

    // A response answering another browser's request.
    let (location_a, _login_a) = rig.start(&client, DEMO);
    let (_location_b, login_b) = rig.start(&client, DEMO);
    let form = rig.idp_form(&format!("{location_a}&user=alice"));
    refused(
        &rig.post(&client, &form, Some(&login_b)),
        "answers a sign-in this browser did not start",
        "InResponseTo from another browser",
    );

    // Replay: an unsolicited response used once, then again.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{DEMO}/.palisade/saml/acs&user=dave",
        rig.idp
    ));
    session_of(&rig.post(&client, &form, None), DEMO);
    refused(
        &rig.post(&client, &form, None),
        "the assertion was already used",
        "replay",
    );

    // Unsolicited where the app's provider does not allow it.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{BOX}/.palisade/saml/acs&user=dave",
        rig.idp
    ));
    refused(
        &rig.post(&client, &form, None),
        "unsolicited responses are not accepted here",
        "unsolicited",
    );
}

/// The path and query of a URL on a proxy host.
fn target_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Posts the relay's form to the app's ACS through the proxy with the
/// browser's cookies; returns the app's session cookie, checked to be
/// scoped to the proxy host.
fn post_to_app(rig: &Rig, client: &Client, form: &Form, cookies: &str) -> (Response, String) {
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

#[test]
fn the_relay_answers_the_apps_own_saml_sign_in_on_the_proxy_host() {
    let rig = rig();
    let client = rig.client();

    // App-initiated: the app sends the browser to its identity provider,
    // the proxy, on the proxy host.
    let r = rig.get(&client, CRM, "/private", "");
    assert_eq!(r.status, 302, "{r:?}");
    let to_sso = r.header("location").expect("Location").to_string();
    assert!(
        to_sso.starts_with(&format!(
            "https://{CRM}/.palisade/saml/idp/sso?SAMLRequest="
        )),
        "{to_sso}"
    );
    let app_request = https::cookie(&r.headers_named("set-cookie"), "app_request")
        .expect("the app remembers its request")
        .to_string();
    let sso = target_of(&to_sso);
    // No proxy session yet: sign in at the proxy, which returns here.
    let r = rig.get(&client, CRM, &sso, "");
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("location").expect("Location").to_string();
    let login = https::cookie(&r.headers_named("set-cookie"), "palisade_login")
        .expect("login cookie")
        .to_string();
    let form = rig.idp_form(&format!("{location}&user=alice&groups=eng,finance"));
    let r = rig.post(&client, &form, Some(&login));
    let session = session_of(&r, CRM);
    assert_eq!(
        r.header("location"),
        Some(sso.as_str()),
        "back to the app's request"
    );
    // Signed in at the proxy: the answer for the app.
    let r = rig.get(
        &client,
        CRM,
        &sso,
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let form = Form::parse(&r.body);
    // The app gets its own RelayState back as it sent it (the proxy host
    // in the redirect was the proxy's rewriting of it).
    assert_eq!(form.relay_state, "https://crm.test/private");
    let cookies = format!("palisade_session={session}; app_request={app_request}");
    let (r, app_session) = post_to_app(&rig, &client, &form, &cookies);
    assert_eq!(
        r.header("location"),
        Some(format!("https://{CRM}/private").as_str())
    );
    let r = rig.get(
        &client,
        CRM,
        "/private",
        &format!("Cookie: palisade_session={session}; app_session={app_session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "signed in as alice groups=eng,finance");
    let record = sign_in_record(&rig.env, "initiated by the app");
    assert_eq!(
        (record["user"].as_str(), record["app"].as_str()),
        (Some("alice"), Some("crm"))
    );
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sp=https://crm.test/saml/metadata")),
        "{record}"
    );

    // Identity-provider initiated: the proxy signs in and, in the same
    // answer, sends the browser on to the app.
    let form = rig.idp_form(&format!(
        "{}/init?acs=https://{CRM}/.palisade/saml/acs&user=bob&groups=sales&relay=/private",
        rig.idp
    ));
    let r = rig.post(&client, &form, None);
    assert_eq!(r.status, 200, "{r:?}");
    let session = https::cookie(&r.headers_named("set-cookie"), "palisade_session")
        .expect("the proxy session comes with it")
        .to_string();
    let form = Form::parse(&r.body);
    assert_eq!(form.relay_state, "/private");
    let (_, app_session) =
        post_to_app(&rig, &client, &form, &format!("palisade_session={session}"));
    let r = rig.get(
        &client,
        CRM,
        "/private",
        &format!("Cookie: palisade_session={session}; app_session={app_session}\r\n"),
    );
    assert_eq!(r.body, "signed in as bob groups=sales", "{r:?}");
    assert_eq!(
        sign_in_record(&rig.env, "initiated by the identity provider")["user"],
        "bob"
    );

    // A user the access policies block gets the block page, and the app
    // gets nothing.
    let (location, login) = {
        let r = rig.get(&client, CRM, &sso, "");
        let location = r.header("location").expect("Location").to_string();
        let login = https::cookie(&r.headers_named("set-cookie"), "palisade_login")
            .expect("login")
            .to_string();
        (location, login)
    };
    let form = rig.idp_form(&format!("{location}&user=eve"));
    let session = session_of(&rig.post(&client, &form, Some(&login)), CRM);
    let r = rig.get(
        &client,
        CRM,
        &sso,
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body.contains("Not for eve.") && !r.body.contains("SAMLResponse"),
        "{}",
        r.body
    );
    assert_eq!(
        sign_in_record(&rig.env, "blocked by access policy")["user"],
        "eve"
    );

    // A request from another service provider is refused.
    let foreign = palisade_schema::saml::request::AuthnRequest {
        id: "_x1",
        sp_entity_id: "https://evil.test/saml",
        acs_url: "https://evil.test/acs",
        destination: &format!("https://{CRM}/.palisade/saml/idp/sso"),
        now: 0,
    }
    .redirect_url("")
    .expect("url");
    let r = rig.get(&client, CRM, &target_of(&foreign), "");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("not this app"), "{}", r.body);
}
