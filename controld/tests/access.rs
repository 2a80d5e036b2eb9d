//! Identity, managed devices and access policies, end to end: real
//! `controld` and `dataplane` processes, a real origin, the test identity
//! provider (`bench idp`) and certificates made here. Every refusal is
//! checked on the wire and in the stored log.

mod support;

use std::io::Write;
use std::net::SocketAddr;

use support::https::{self, Client};
use support::signin::*;
use support::Env;

#[test]
fn sign_in_through_tls_with_rs256_and_es256_reaches_the_app_with_a_scoped_session() {
    let rig = rig("");
    let client = rig.client(None);
    for alg in ["RS256", "ES256"] {
        let s = begin_sign_in(
            &rig,
            &client,
            "demo.test.proxy.test",
            &format!("&alg={alg}"),
        );
        let r = post_callback(&rig, &client, &s);
        assert_eq!(r.status, 303, "{alg}: {r:?}");
        assert_eq!(
            r.header("location"),
            Some("/start?x=1"),
            "back to where the user started"
        );
        let set_cookies = r.headers_named("set-cookie");
        let session_line = set_cookies
            .iter()
            .find(|c| c.starts_with("palisade_session="))
            .expect("session cookie");
        for attribute in [
            "Domain=demo.test.proxy.test",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=",
        ] {
            assert!(
                session_line.contains(attribute),
                "{attribute} in {session_line}"
            );
        }
        assert!(
            set_cookies
                .iter()
                .any(|c| c.starts_with("palisade_login=;") && c.contains("Max-Age=0")),
            "the login cookie is cleared: {set_cookies:?}"
        );
        let session = https::cookie(&set_cookies, "palisade_session").expect("value");

        // The app, with the session; the proxy's cookies never reach it.
        let r = rig.get(
            &client,
            "www.demo.test.proxy.test",
            &format!("/app/{alg}"),
            &format!("Cookie: theme=dark; palisade_session={session}; lang=en\r\n"),
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, format!("app saw /app/{alg}"));
        let seen = rig
            .origin
            .requests()
            .into_iter()
            .find(|q| q.target == format!("/app/{alg}"))
            .expect("origin got the request");
        assert_eq!(seen.header("cookie"), Some("theme=dark; lang=en"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert!(
            rig.origin
                .requests()
                .iter()
                .all(|q| q.head.windows(8).all(|w| w != b"palisade")),
            "no proxy cookie or path ever reaches the app"
        );
    }

    // The app cannot set the proxy's cookies; its own pass.
    let session = sign_in(&rig, &client, "demo.test.proxy.test", "");
    let r = rig.get(
        &client,
        "demo.test.proxy.test",
        "/set-cookies",
        &format!("Cookie: palisade_session={session}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers_named("set-cookie"), vec!["theme=dark; Path=/"]);

    // API clients without a session get 401 JSON, not a redirect.
    let r = rig.get(
        &client,
        "demo.test.proxy.test",
        "/api",
        "Accept: application/json\r\n",
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("sign_in_required"), "{}", r.body);

    // Logout clears the cookie on the app's proxy domain.
    let r = rig.get(&client, "demo.test.proxy.test", "/.palisade/logout", "");
    assert_eq!(r.status, 200);
    let cleared = r.headers_named("set-cookie");
    assert!(
        cleared.iter().any(|c| c.starts_with("palisade_session=;")
            && c.contains("Max-Age=0")
            && c.contains("Domain=demo.test.proxy.test")),
        "{cleared:?}"
    );

    // The log names the user on the app's requests.
    let row = record_for(&rig.env, "/app/ES256");
    assert_eq!(row["user"], "alice", "{row}");
    assert_eq!(row["app"], "demo", "{row}");
    assert_eq!(row["action"], "allow", "{row}");
    assert_eq!(row["tls"], 1, "{row}");
    let protocol = if https::over_http2() {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    assert_eq!(row["protocol"], protocol, "{row}");
}

#[test]
fn refused_sign_ins_and_sessions_get_a_clear_answer_and_are_logged() {
    let rig = rig("");
    let client = rig.client(None);
    let host = "demo.test.proxy.test";
    // Tokens the provider can be asked to botch (test mode).
    let cases = [
        (
            "wrong audience",
            "&test_aud=someone-else",
            "another audience",
        ),
        ("wrong issuer", "&test_iss=http://evil.test", "wrong issuer"),
        ("alg none", "&test_alg=none", "is not accepted"),
        (
            "HMAC keyed with the public key",
            "&test_alg=HS256",
            "is not accepted",
        ),
        (
            "unknown kid",
            "&test_kid=rotated-away",
            "unknown signing key",
        ),
        ("expired token", "&test_exp=-3600", "expired"),
        ("nonce from another sign-in", "&test_nonce=abc", "nonce"),
    ];
    for (name, params, reason) in cases {
        let s = begin_sign_in(&rig, &client, host, params);
        let r = post_callback(&rig, &client, &s);
        assert_eq!(r.status, 403, "{name}: {r:?}");
        assert!(
            r.body.contains("Sign-in failed") && r.body.contains(reason),
            "{name}: {}",
            r.body
        );
        assert!(
            https::cookie(&r.headers_named("set-cookie"), "palisade_session").is_none(),
            "{name}: no session"
        );
    }
    // Each refusal is a `sign-in` record naming the provider and why.
    let issuer = rig.idp.issuer.clone();
    support::eventually("the refused sign-ins' records", || {
        let records: Vec<serde_json::Value> = rig
            .env
            .export(&["--kind", "activity"])
            .into_iter()
            .filter(|r| r["activity"] == "sign-in" && r["action"] == "block")
            .collect();
        cases.iter().all(|(_, _, reason)| {
            records.iter().any(|r| {
                r["detail"].as_str().is_some_and(|d| {
                    d.starts_with(&format!("oidc issuer={issuer} reason=")) && d.contains(reason)
                })
            })
        })
    });

    // Replayed state: the same form posted twice, even with the login
    // cookie, signs in only once.
    let s = begin_sign_in(&rig, &client, host, "");
    assert_eq!(post_callback(&rig, &client, &s).status, 303);
    let replay = post_callback(&rig, &client, &s);
    assert_eq!(replay.status, 403);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    // A state posted from a browser that did not start the sign-in.
    let s = begin_sign_in(&rig, &client, host, "");
    let stolen = SignIn {
        login_cookie: "not-this-browser".into(),
        ..s
    };
    assert_eq!(post_callback(&rig, &client, &stolen).status, 403);

    // Session cookies that must not open: tampered, expired, another app's.
    let good = sign_in(&rig, &client, host, "");
    let with = |cookie: &str| {
        rig.get(
            &client,
            host,
            "/private",
            &format!("Cookie: palisade_session={cookie}\r\nAccept: application/json\r\n"),
        )
    };
    assert_eq!(with(&good).status, 200);
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        with(&String::from_utf8(tampered).expect("ascii")).status,
        401,
        "tampered"
    );
    let sealer =
        palisade_dataplane::identity::IdentityConfig::build(&palisade_schema::access::Identity {
            provider: palisade_schema::access::IdentityProvider::None,
            session_keys: vec![palisade_schema::access::SessionKey {
                id: "k1".into(),
                key: palisade_schema::access::parse_key_hex(KEY_HEX).expect("key"),
            }],
            session_lifetime_secs: 3600,
        })
        .expect("sealer");
    let session = |expires_unix: i64| palisade_dataplane::identity::Session {
        user: "alice".into(),
        groups: vec![],
        device_tags: vec![],
        expires_unix,
        name_id: String::new(),
        attributes: vec![],
    };
    let now = palisade_dataplane::identity::now_unix();
    let expired = sealer
        .seal_session(&session(now - 10), "demo")
        .expect("seal");
    assert_eq!(with(&expired).status, 401, "expired session");
    let fresh = sealer
        .seal_session(&session(now + 600), "demo")
        .expect("seal");
    assert_eq!(
        with(&fresh).status,
        200,
        "the same key and a valid expiry open"
    );
    let other_app = sealer
        .seal_session(&session(now + 600), "box")
        .expect("seal");
    assert_eq!(with(&other_app).status, 401, "another app's cookie");
    // A browser with a bad cookie is sent to sign in again.
    let r = rig.get(
        &client,
        host,
        "/",
        &format!("Cookie: palisade_session={expired}\r\n"),
    );
    assert_eq!(r.status, 302);

    // Every refused callback is in the log as a blocked request.
    support::eventually("every refused callback in the log", || {
        let refused = rig
            .env
            .export(&["--kind", "traffic"])
            .iter()
            .filter(|r| {
                r["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/.palisade/callback"))
                    && r["status"] == 403
                    && r["action"] == "block"
            })
            .count();
        refused == cases.len() + 2
    });
    let row = record_for(&rig.env, "/private");
    assert_eq!(
        (row["status"].as_u64(), row["action"].as_str()),
        (Some(200), Some("allow")),
        "the first /private is the good cookie"
    );
}

#[test]
fn an_app_with_its_own_identity_provider_signs_in_there() {
    let own = start_idp();
    let env_dir_jwks = "hr-jwks.json";
    let extra = format!(
        r#"
[[app]]
name = "hr"
domains = ["hr.test"]
upstream = "http://ORIGIN"
tls_cert = "certs/hr.pem"
tls_key = "certs/hr.key"

[app.oidc]
issuer = "{0}"
client_id = "palisade-hr"
authorization_endpoint = "{0}/authorize"
jwks_file = "{env_dir_jwks}"
"#,
        own.issuer
    );
    // The app's JWKS file must exist before the rig compiles the policy.
    let env = Env::new();
    std::fs::write(env.path(env_dir_jwks), &own.jwks).expect("jwks");
    let rig = rig_in(env, &extra);
    let client = rig.client(None);
    let host = "hr.test.proxy.test";

    // The app's own provider signs its users in…
    let s = begin_sign_in_at(&rig, &client, host, &own.issuer, "");
    let r = post_callback(&rig, &client, &s);
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = https::cookie(&r.headers_named("set-cookie"), "palisade_session")
        .expect("session")
        .to_string();
    let r = rig.get(
        &client,
        host,
        "/people",
        &format!("Cookie: palisade_session={cookie}\r\n"),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // …and a token from the global provider, for the same sign-in, is refused.
    let r = rig.get(&client, host, "/start", "");
    let location = r.header("location").expect("Location").to_string();
    let login_cookie = https::cookie(&r.headers_named("set-cookie"), "palisade_login")
        .expect("login cookie")
        .to_string();
    let elsewhere = location.replacen(&own.issuer, &rig.idp.issuer, 1);
    let (_, page) = https::http_get(&format!("{elsewhere}&login_hint=mallory"));
    let (_, id_token, state) = https::form_post(&page);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token", &id_token)
        .append_pair("state", &state)
        .finish();
    let r = post_callback(
        &rig,
        &client,
        &SignIn {
            host: host.into(),
            login_cookie,
            form,
        },
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("id_token refused"), "{}", r.body);

    // The other apps keep the global provider.
    let s = begin_sign_in(&rig, &client, "demo.test.proxy.test", "");
    assert_eq!(post_callback(&rig, &client, &s).status, 303);
}

#[test]
fn managed_devices_are_told_by_client_certificate() {
    let rig = rig("");
    // (device certificate, expected status at box)
    let cases = [
        (Some("devices/laptop"), 200, "managed"),
        (Some("other/stranger"), 403, "unmanaged"),
        (Some("devices/expired"), 403, "unmanaged"),
        (Some("devices/revoked"), 403, "unmanaged"),
        (None, 403, "unmanaged"),
    ];
    for (i, (device, status, tag)) in cases.iter().enumerate() {
        let client = rig.client(*device);
        let cookie = sign_in(&rig, &client, "box.test.proxy.test", "");
        let r = rig.get(
            &client,
            "box.test.proxy.test",
            &format!("/files/{i}"),
            &format!("Cookie: palisade_session={cookie}\r\n"),
        );
        assert_eq!(r.status, *status, "{device:?}: {r:?}");
        if *status == 403 {
            assert!(r.body.contains("Box needs a managed device."), "{}", r.body);
            assert!(
                r.body.contains("Ask IT for a managed laptop."),
                "{}",
                r.body
            );
            assert!(r.body.contains("https://help.example/access"), "{}", r.body);
            assert!(r.body.contains("Request id: <code>"), "{}", r.body);
            // API clients get the same answer as JSON.
            let j = rig.get(
                &client,
                "box.test.proxy.test",
                "/api/files",
                &format!("Cookie: palisade_session={cookie}\r\nAccept: application/json\r\n"),
            );
            assert_eq!(j.status, 403);
            let v: serde_json::Value = serde_json::from_str(&j.body).expect("JSON block page");
            assert_eq!(v["error"], "access_blocked");
            assert_eq!(v["request_id"].as_str().map(str::len), Some(16));
        }
        // Unmanaged devices still reach the other app.
        let cookie = sign_in(&rig, &client, "demo.test.proxy.test", "");
        let r = rig.get(
            &client,
            "demo.test.proxy.test",
            "/",
            &format!("Cookie: palisade_session={cookie}\r\n"),
        );
        assert_eq!(r.status, 200, "{device:?} at demo ({tag})");
    }
    for (i, (_, status, tag)) in cases.iter().enumerate() {
        let row = record_for(&rig.env, &format!("/files/{i}"));
        assert_eq!(row["device_tags"], *tag, "{row}");
        assert_eq!(row["status"], *status);
        if *status == 403 {
            assert_eq!(row["action"], "block");
            assert_eq!(row["policy"], "unmanaged devices stay out of box");
        }
    }
}

/// A connection to the plain listener from `source` (any 127.0.0.0/8
/// address is local on Linux).
fn get_from(proxy: SocketAddr, source: &str, host: &str, target: &str, headers: &str) -> u16 {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{source}:0").parse().expect("source");
    socket.bind(&from.into()).expect("bind source");
    socket.connect(&proxy.into()).expect("connect");
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(support::DEADLINE))
        .expect("timeout");
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("send");
    https::read_response(&mut s).status
}

#[test]
fn access_policy_table() {
    let env = Env::new();
    let origin = recording_origin();
    let o = origin.addr();
    let text = format!(
        r#"[proxy]
suffix = "proxy.test"

[identity]
provider = "trusted_header"
user_header = "X-Auth-User"
groups_header = "X-Auth-Groups"
trusted_sources = ["127.0.0.0/25"]
session_keys = [{{ id = "k1", secret = "{KEY_HEX}" }}]

[geoip]
country_database = "countries.mmdb"

[[ip_tag]]
name = "risky"
ranges = ["127.0.0.66/32"]

[[location]]
name = "embargoed"
countries = ["KP", "RU"]

[[location]]
name = "office"
ranges = ["127.0.0.10/31"]

[[app]]
name = "crm"
domains = ["crm.test"]
upstream = "http://{o}"

[[app]]
name = "finance"
domains = ["finance.test"]
upstream = "http://{o}"

[[app]]
name = "vault"
domains = ["vault.test"]
upstream = "http://{o}"
access_default = "block"

[[app]]
name = "wiki"
domains = ["wiki.test"]
upstream = "http://{o}"
login = false

[[access_policy]]
name = "risky addresses"
ip_tags = ["risky"]
action = "block"

[[access_policy]]
name = "contractors are audited"
groups = ["contractors"]
action = "audit"
alert = {{ severity = "medium" }}

[[access_policy]]
name = "native clients on crm are monitored"
apps = ["crm"]
client_apps = ["native"]
action = "monitor"

[[access_policy]]
name = "scripts stay out of crm"
apps = ["crm"]
user_agent_contains = ["python-requests/"]
user_agent_regex = "^curl/[0-9]"
action = "block"

[[access_policy]]
name = "embargoed countries"
locations = ["embargoed"]
action = "block"

[[access_policy]]
name = "bob is suspended"
users = ["bob"]
action = "block"

[[access_policy]]
name = "finance only from the office"
apps = ["finance"]
not_locations = ["office"]
action = "block"

[[access_policy]]
name = "finance team"
apps = ["finance"]
groups = ["finance"]
action = "allow"

[[access_policy]]
name = "admins open the vault"
apps = ["vault"]
groups = ["admins"]
action = "allow"
"#
    );
    let policy = env.path("policy.toml");
    std::fs::write(&policy, text).expect("policy");
    // A MaxMind-format country database: 127.0.0.0/26 in Germany,
    // 127.0.0.64/26 in Russia.
    std::fs::write(
        env.path("countries.mmdb"),
        palisade_bench::mmdb::country_database(&[
            ("127.0.0.0".parse().expect("ip"), 26, "DE"),
            ("127.0.0.64".parse().expect("ip"), 26, "RU"),
        ]),
    )
    .expect("mmdb");
    let _controld = env.controld(&policy, &[]);
    let (_dataplane, plain) = env.dataplane(1, &[]);
    env.wait_for_cores(1, 1);

    let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36";
    // (case, source address, app, user, groups, user agent, status, logged action, deciding policy)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        u16,
        &'a str,
        &'a str,
    );
    let table: &[Case<'_>] = &[
        (
            "plain allow by default",
            "127.0.0.2",
            "crm",
            "alice",
            "",
            browser,
            200,
            "allow",
            "",
        ),
        (
            "ip tag blocks",
            "127.0.0.66",
            "crm",
            "alice",
            "",
            browser,
            403,
            "block",
            "risky addresses",
        ),
        (
            "group audited",
            "127.0.0.2",
            "crm",
            "carol",
            "contractors",
            browser,
            200,
            "audit",
            "contractors are audited",
        ),
        (
            "native client monitored",
            "127.0.0.2",
            "crm",
            "alice",
            "",
            "OneDriveSync/23.1",
            200,
            "monitor",
            "native clients on crm are monitored",
        ),
        (
            "user agent contains blocks",
            "127.0.0.2",
            "crm",
            "alice",
            "",
            "python-requests/2.31",
            403,
            "block",
            "scripts stay out of crm",
        ),
        (
            "user agent regex blocks",
            "127.0.0.2",
            "crm",
            "alice",
            "",
            "curl/8.5.0",
            403,
            "block",
            "scripts stay out of crm",
        ),
        (
            "user blocks",
            "127.0.0.2",
            "crm",
            "bob",
            "",
            browser,
            403,
            "block",
            "bob is suspended",
        ),
        (
            "location by country (GeoIP) blocks",
            "127.0.0.70",
            "crm",
            "alice",
            "",
            browser,
            403,
            "block",
            "embargoed countries",
        ),
        (
            "location: in the office",
            "127.0.0.11",
            "finance",
            "dana",
            "finance",
            browser,
            200,
            "allow",
            "finance team",
        ),
        (
            "most restrictive wins over an allow",
            "127.0.0.2",
            "finance",
            "dana",
            "finance",
            browser,
            403,
            "block",
            "finance only from the office",
        ),
        (
            "app default block",
            "127.0.0.2",
            "vault",
            "alice",
            "eng",
            browser,
            403,
            "block",
            "",
        ),
        (
            "group allow over a block default",
            "127.0.0.2",
            "vault",
            "erin",
            "eng,admins",
            browser,
            200,
            "allow",
            "admins open the vault",
        ),
        (
            "audit and block: block wins",
            "127.0.0.66",
            "crm",
            "carol",
            "contractors",
            browser,
            403,
            "block",
            "risky addresses",
        ),
        (
            "no login needed for this app",
            "127.0.0.2",
            "wiki",
            "",
            "",
            browser,
            200,
            "allow",
            "",
        ),
        (
            "identity headers from an untrusted source are ignored",
            "127.0.0.200",
            "crm",
            "alice",
            "",
            browser,
            401,
            "block",
            "",
        ),
        (
            "forged identity headers never reach the app",
            "127.0.0.200",
            "wiki",
            "mallory",
            "admins",
            browser,
            200,
            "allow",
            "",
        ),
    ];
    for (i, (case, source, app, user, groups, ua, status, _, _)) in table.iter().enumerate() {
        let mut headers = format!("User-Agent: {ua}\r\n");
        if !user.is_empty() {
            headers.push_str(&format!("X-Auth-User: {user}\r\n"));
        }
        if !groups.is_empty() {
            headers.push_str(&format!("X-Auth-Groups: {groups}\r\n"));
        }
        let got = get_from(
            plain,
            source,
            &format!("{app}.test.proxy.test"),
            &format!("/case/{i}"),
            &headers,
        );
        assert_eq!(got, *status, "{case}");
    }
    // Identity headers pass to the app from the trusted proxy only.
    let at_origin = |i: usize| {
        origin
            .requests()
            .into_iter()
            .find(|r| r.target == format!("/case/{i}"))
    };
    assert_eq!(
        at_origin(0)
            .and_then(|r| r.header("x-auth-user").map(str::to_string))
            .as_deref(),
        Some("alice")
    );
    let forged = at_origin(table.len() - 1).expect("wiki request forwarded");
    assert!(
        forged.header("x-auth-user").is_none() && forged.header("x-auth-groups").is_none(),
        "{forged:?}"
    );
    assert!(
        at_origin(table.len() - 2).is_none(),
        "a refused request never reaches the app"
    );
    for (i, (case, _, _, user, _, _, status, action, policy)) in table.iter().enumerate() {
        let row = record_for(&env, &format!("/case/{i}"));
        assert_eq!(row["action"], *action, "{case}: {row}");
        assert_eq!(row["policy"], *policy, "{case}: {row}");
        assert_eq!(row["status"], *status, "{case}: {row}");
        let trusted = !case.contains("untrusted") && !case.contains("forged");
        assert_eq!(
            row["user"],
            if trusted { *user } else { "" },
            "{case}: {row}"
        );
    }
    // The audit policy's alert: raised once, for the contractor's request
    // it decided (the blocked contractor request was decided by another).
    let alerts = env.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        alerts[0]["policy"],
        "access policy: contractors are audited"
    );
    assert_eq!(alerts[0]["severity"], "medium");
    assert!(
        alerts[0]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/case/2")),
        "{alerts:#?}"
    );
}

#[test]
fn certificates_rotate_by_apply_while_connections_stay_open() {
    let env = Env::new();
    make_certificates(&env, &[("demo", "demo.test")]);
    let origin = recording_origin();
    let write_policy = |cert_dir: &str| {
        let path = env.path("policy.toml");
        std::fs::write(
            &path,
            format!(
                "[proxy]\nsuffix = \"proxy.test\"\n\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\"]\nupstream = \"http://{}\"\ntls_cert = \"{cert_dir}/demo.pem\"\ntls_key = \"{cert_dir}/demo.key\"\n",
                origin.addr()
            ),
        )
        .expect("policy");
        path
    };
    let policy = write_policy("certs");
    let _controld = env.controld(&policy, &[]);
    let (_dataplane, _plain, tls) = env.dataplane_tls(1, &[]);
    env.wait_for_cores(1, 1);
    let client = Client::new(&env.path("ca/ca.pem"), None);
    let host = "demo.test.proxy.test";
    let leaf = |conn: &https::TlsConn| {
        conn.conn.peer_certificates().expect("server certificate")[0].to_vec()
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");

    let mut open = client.connect(tls, host).expect("connect");
    https::send(&mut open, &request);
    assert_eq!(https::read_response(&mut open).status, 200);
    let first = leaf(&open);

    // New certificates for the same names (new keys), applied live.
    env.app_certificates("certs2", &[("demo", "demo.test")]);
    let policy = write_policy("certs2");
    env.apply(&policy, "with new certificates");
    env.wait_for_cores(1, 2);

    // The open connection keeps working on its handshake…
    https::send(&mut open, &request);
    assert_eq!(https::read_response(&mut open).status, 200);
    assert_eq!(leaf(&open), first);
    // …and new connections get the new certificate (a new client: this
    // one would resume its session, which keeps the certificate of the
    // original handshake).
    let fresh = Client::new(&env.path("ca/ca.pem"), None)
        .connect(tls, host)
        .expect("connect after apply");
    let second = leaf(&fresh);
    assert_ne!(second, first, "the applied certificate is served");
    let expected = std::fs::read(env.path("certs2/demo.pem")).expect("pem");
    let expected_leaf = rustls_pemfile::certs(&mut expected.as_slice())
        .next()
        .expect("leaf")
        .expect("pem");
    assert_eq!(second, expected_leaf.to_vec());
}
