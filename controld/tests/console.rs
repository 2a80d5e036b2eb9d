//! The admin console's gate, over HTTPS against a real controld: no page
//! without a genuine, unexpired session; no POST without the session's
//! CSRF token; the bootstrap token works once; provider groups map to the
//! admin and viewer roles and a viewer can change nothing; every admin
//! action is an activity record with the admin's name.

mod support;

use support::console::{console_policy, Console};
use support::signin::start_idp;
use support::{eventually, named_origin, Env};

fn version(env: &Env) -> u64 {
    env.status()["current_version"].as_u64().expect("version")
}

#[test]
fn the_console_admits_only_genuine_sessions_and_viewers_change_nothing() {
    let env = Env::new();
    let origin = named_origin("console");
    let idp = start_idp();
    let policy = console_policy(&env, origin.addr(), &idp);
    let controld = env.controld(&policy, &["--console", "127.0.0.1:0"]);
    let console = Console::of(&controld.first_line);

    // No session: pages send to sign-in, everything else is 401.
    let a = console.get("/", None);
    assert_eq!((a.status, a.location.as_str()), (303, "/signin"), "{a:?}");
    for path in ["/log", "/policies", "/exports", "/alerts", "/log/record/1"] {
        assert_eq!(console.get(path, None).status, 303, "{path}");
    }
    assert_eq!(console.get("/tail/events", None).status, 401);
    let a = console.post("/policies/rollback", None, &[("version", "1")]);
    assert_eq!(a.status, 401, "{a:?}");
    // Sign-in and the assets are open; other methods are not served.
    assert_eq!(console.get("/signin", None).status, 200);
    assert_eq!(console.get("/assets/console.js", None).status, 200);

    // The bootstrap token: wrong, then right, then spent.
    let a = console.post("/signin/token", None, &[("token", "guess")]);
    assert!(a.location.starts_with("/signin?error="), "{a:?}");
    assert!(a.session_cookie().is_none());
    let admin = console.sign_in_with_token(&env);
    let page = console.get("/", Some(&admin));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<span id=\"role\">admin</span>"));
    let spent = console.post("/signin/token", None, &[("token", "")]);
    assert!(spent.session_cookie().is_none(), "{spent:?}");
    // Security headers on every answer.
    assert!(page.set_cookies.is_empty());

    // A forged session: the payload edited, the MAC kept.
    let (name_payload, mac) = admin.split_once('.').expect("sealed cookie");
    let forged = format!("{}x.{mac}", name_payload);
    assert_eq!(console.get("/", Some(&forged)).status, 303);
    let (name, _) = admin.split_once('=').unwrap();
    assert_eq!(
        console.get("/", Some(&format!("{name}=garbage"))).status,
        303
    );

    // A POST without the CSRF token, or with another session's, changes
    // nothing.
    let csrf = console.csrf(&admin);
    let before = version(&env);
    let edited = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("name = \"demo\"", "name = \"demo2\"");
    let a = console.post("/policies/apply", Some(&admin), &[("text", &edited)]);
    assert_eq!(a.status, 403, "{a:?}");
    let a = console.post(
        "/policies/apply",
        Some(&admin),
        &[("text", &edited), ("csrf", "AAAA")],
    );
    assert_eq!(a.status, 403);
    assert_eq!(version(&env), before, "a refused POST applied something");

    // A viewer (provider group "viewers") reads but cannot apply, roll
    // back, export or acknowledge.
    let a = console.sign_in_oidc("vera", "viewers");
    assert_eq!(a.status, 200, "{a:?}");
    let viewer = a.session_cookie().expect("viewer session");
    let page = console.get("/policies", Some(&viewer));
    assert!(page.body.contains("<span id=\"role\">viewer</span>"));
    let vcsrf = console.csrf(&viewer);
    for (path, form) in [
        ("/policies/apply", vec![("text", edited.as_str())]),
        ("/policies/rollback", vec![("version", "1")]),
        ("/exports", vec![("from", "-1d")]),
        ("/alerts/1/ack", vec![]),
    ] {
        let mut form = form;
        form.push(("csrf", &vcsrf));
        let a = console.post(path, Some(&viewer), &form);
        assert_eq!(a.status, 403, "viewer POST {path}: {a:?}");
    }
    assert_eq!(version(&env), before);
    assert!(!console
        .get("/exports", Some(&admin))
        .body
        .contains("data-export="));
    // Someone in neither group gets no session; a callback without this
    // browser's sign-in cookie is refused.
    let a = console.sign_in_oidc("nobody", "staff");
    assert!(
        a.session_cookie().is_none() && a.location.starts_with("/signin?error="),
        "{a:?}"
    );
    let a = console.post(
        "/signin/oidc/callback",
        None,
        &[("id_token", "x"), ("state", "y")],
    );
    assert!(a.session_cookie().is_none() && a.location.starts_with("/signin?error="));

    // An admin (provider group "admins") applies; the apply is an
    // activity record with the admin's name.
    let a = console.sign_in_oidc("ada", "admins,staff");
    let ada = a.session_cookie().expect("admin session");
    let csrf_ada = console.csrf(&ada);
    let a = console.post(
        "/policies/apply",
        Some(&ada),
        &[("text", &edited), ("csrf", &csrf_ada)],
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(version(&env), before + 1);
    let records = env.export(&["--kind", "activity"]);
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r["app"] == "palisade-console")
        .map(|r| {
            (
                r["user"].as_str().unwrap_or(""),
                r["activity"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(mine.contains(&("bootstrap", "console sign-in")), "{mine:?}");
    assert!(mine.contains(&("vera", "console sign-in")), "{mine:?}");
    assert!(mine.contains(&("ada", "console apply")), "{mine:?}");
    assert!(!mine
        .iter()
        .any(|(u, a)| *u == "vera" && *a == "console apply"));

    // Signing out ends the session for good: the same cookie, replayed, is
    // refused though it has not expired; other sessions go on.
    let a = console.post("/signout", Some(&admin), &[("csrf", &csrf)]);
    assert_eq!((a.status, a.location.as_str()), (303, "/signin"), "{a:?}");
    assert_eq!(console.get("/", Some(&admin)).status, 303);
    assert_eq!(console.get("/", Some(&ada)).status, 200);
}

#[test]
fn console_sessions_expire() {
    let env = Env::new();
    let origin = named_origin("console-expiry");
    let idp = start_idp();
    let policy = console_policy(&env, origin.addr(), &idp);
    let controld = env.controld(
        &policy,
        &["--console", "127.0.0.1:0", "--console-session", "1s"],
    );
    let console = Console::of(&controld.first_line);
    let admin = console.sign_in_with_token(&env);
    // Valid when made (unless the machine stalled past its second), then
    // refused for good.
    eventually("the session expires", || {
        console.get("/", Some(&admin)).status == 303
    });
    let a = console.post("/alerts/1/ack", Some(&admin), &[("csrf", "x")]);
    assert_eq!(a.status, 401, "{a:?}");
}

#[test]
fn the_console_serves_the_certificate_it_is_given() {
    let env = Env::new();
    let origin = named_origin("console-cert");
    let idp = start_idp();
    let policy = console_policy(&env, origin.addr(), &idp);
    let pki = env.path("pki");
    let pki_text = pki.to_str().unwrap();
    let made = env.cli_offline(&["certs", "ca", "--out", pki_text]);
    assert!(made.status.success(), "{made:?}");
    let (ca, ca_key) = (pki.join("ca.pem"), pki.join("ca.key"));
    let made = env.cli_offline(&[
        "certs",
        "console",
        "--ca",
        ca.to_str().unwrap(),
        "--ca-key",
        ca_key.to_str().unwrap(),
        "127.0.0.1",
        "--out",
        pki_text,
    ]);
    assert!(made.status.success(), "{made:?}");
    let controld = env.controld(
        &policy,
        &[
            "--console",
            "127.0.0.1:0",
            "--console-cert",
            pki.join("console.pem").to_str().unwrap(),
            "--console-key",
            pki.join("console.key").to_str().unwrap(),
        ],
    );
    let console = Console::of(&controld.first_line);
    let agent = |roots: ureq::tls::RootCerts| -> ureq::Agent {
        ureq::Agent::config_builder()
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .http_status_as_error(false)
            .build()
            .into()
    };
    // Verified against the CA alone, for the address it was issued to.
    let ca_pem = std::fs::read(&ca).unwrap();
    let ca_cert = ureq::tls::Certificate::from_pem(&ca_pem)
        .unwrap()
        .to_owned();
    let trusting = agent(ureq::tls::RootCerts::new_with_certs(&[ca_cert]));
    let answer = trusting
        .get(&console.url("/signin"))
        .call()
        .expect("verified TLS");
    assert_eq!(answer.status().as_u16(), 200);
    // A client that does not trust the CA refuses the connection.
    let stranger = agent(ureq::tls::RootCerts::WebPki);
    assert!(stranger.get(&console.url("/signin")).call().is_err());
}
