//! Sign-in rig shared by tests: a proxy with TLS and OpenID Connect
//! sign-in through the test identity provider (`bench idp`), the apps
//! `demo`, `box` and `hr` with certificates made here, and helpers that
//! walk a browser's sign-in.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::https::{self, Client, Response};
use super::{Env, Origin, OriginConfig, Proc, Reply, Request};
use palisade_bench::idp::{Idp, IdpConfig};
use palisade_controld::certs;

pub const KEY_HEX: &str = "8f1c0e5a3b2d4f6071829a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445";

/// A running proxy with TLS, OIDC sign-in and the test provider.
pub struct Rig {
    pub env: Env,
    pub _controld: Proc,
    pub _dataplane: Proc,
    pub tls: SocketAddr,
    pub origin: Origin,
    pub idp: Idp,
}

pub fn recording_origin() -> Origin {
    Origin::start(OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handler: std::sync::Arc::new(|r: &Request| {
            if r.target == "/set-cookies" {
                // An app trying to set the proxy's own cookies.
                return Reply::Full {
                    status: 200,
                    headers: vec![
                        (
                            "Set-Cookie".into(),
                            "palisade_session=forged; Path=/".into(),
                        ),
                        ("Set-Cookie".into(), "palisade_login=pinned; Path=/".into()),
                        ("Set-Cookie".into(), "theme=dark; Path=/".into()),
                    ],
                    body: b"cookies".to_vec(),
                };
            }
            Reply::text(200, format!("app saw {}", r.target))
        }),
        tls: None,
        split_writes: false,
        record: true,
    })
    .expect("origin")
}

/// Makes the CAs and certificates every test uses under the env dir:
/// `ca/` (serves the proxy names), `devices/` (managed devices) and
/// `other/` (a CA the proxy does not trust).
pub fn make_certificates(env: &Env, apps: &[(&str, &str)]) {
    env.app_certificates("certs", apps);
    // The device CA the policy trusts, and one it does not.
    for (dir, ca_name, device) in [
        ("devices", "device CA", "laptop"),
        ("other", "untrusted CA", "stranger"),
    ] {
        certs::make_ca(&env.path(dir), ca_name, 30).expect("device ca");
        certs::issue_device_certificate(
            device,
            &env.path(&format!("{dir}/ca.pem")),
            &env.path(&format!("{dir}/ca.key")),
            &env.path(dir),
            30,
        )
        .expect("device certificate");
    }
    expired_device_certificate(env);
    revoked_device_certificate(env);
}

/// The trusted device CA, as an issuer.
pub fn device_issuer(env: &Env) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(env.path("devices/ca.key")).expect("key"),
    )
    .expect("ca key");
    rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(env.path("devices/ca.pem")).expect("ca"),
        key,
    )
    .expect("issuer")
}

/// A client certificate `devices/<stem>.pem` (and `.key`) from the trusted
/// device CA, shaped by `adjust`.
pub fn device_certificate(
    env: &Env,
    stem: &str,
    adjust: impl FnOnce(&mut rcgen::CertificateParams),
) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, stem);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    adjust(&mut params);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &device_issuer(env)).expect("sign");
    std::fs::write(env.path(&format!("devices/{stem}.pem")), cert.pem()).expect("write");
    std::fs::write(
        env.path(&format!("devices/{stem}.key")),
        key.serialize_pem(),
    )
    .expect("write");
}

/// A device certificate revoked by the CRL `devices/crl.pem` that the
/// policy names.
pub fn revoked_device_certificate(env: &Env) {
    let serial = rcgen::SerialNumber::from(4242u64);
    device_certificate(env, "revoked", |p| p.serial_number = Some(serial.clone()));
    let now = std::time::SystemTime::now();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: (now - std::time::Duration::from_secs(3600)).into(),
        next_update: (now + std::time::Duration::from_secs(86400)).into(),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: serial,
            revocation_time: now.into(),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&device_issuer(env))
    .expect("crl");
    std::fs::write(env.path("devices/crl.pem"), crl.pem().expect("crl pem")).expect("write");
}

/// A device certificate that expired yesterday.
pub fn expired_device_certificate(env: &Env) {
    device_certificate(env, "expired", |p| {
        let now = std::time::SystemTime::now();
        p.not_before = (now - std::time::Duration::from_secs(10 * 86400)).into();
        p.not_after = (now - std::time::Duration::from_secs(86400)).into();
    });
}

/// Waits until the stored traffic log has a record whose URL ends with
/// `url_suffix`, and returns it.
pub fn record_for(env: &Env, url_suffix: &str) -> serde_json::Value {
    let mut found = None;
    super::eventually(&format!("a record for {url_suffix}"), || {
        found = env
            .export(&["--kind", "traffic"])
            .into_iter()
            .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with(url_suffix)));
        found.is_some()
    });
    found.unwrap_or_default()
}

pub fn start_idp() -> Idp {
    Idp::start(IdpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        issuer: None,
        test_mode: true,
        key_dir: None,
        token_lifetime: 600,
    })
    .expect("idp")
}

/// The policy: apps `demo` and `box` with their certificates, OIDC with
/// the test provider, unmanaged devices blocked from `box`.
pub fn oidc_policy(env: &Env, origin: SocketAddr, idp: &Idp, extra: &str) -> PathBuf {
    std::fs::write(env.path("jwks.json"), &idp.jwks).expect("jwks");
    let issuer = &idp.issuer;
    let text = format!(
        r#"[proxy]
suffix = "proxy.test"

[tls]
client_ca = "devices/ca.pem"
client_crl = "devices/crl.pem"

[identity]
provider = "oidc"
issuer = "{issuer}"
client_id = "palisade-test"
authorization_endpoint = "{issuer}/authorize"
jwks_file = "jwks.json"
session_keys = [{{ id = "k1", secret = "{KEY_HEX}" }}]

[block_page]
message = "Ask IT for a managed laptop."
support_url = "https://help.example/access"

[[app]]
name = "demo"
domains = ["demo.test"]
upstream = "http://{origin}"
tls_cert = "certs/demo.pem"
tls_key = "certs/demo.key"

[[app]]
name = "box"
domains = ["box.test"]
upstream = "http://{origin}"
tls_cert = "certs/box.pem"
tls_key = "certs/box.key"

[[access_policy]]
name = "unmanaged devices stay out of box"
apps = ["box"]
devices = ["unmanaged"]
action = "block"
message = "Box needs a managed device."
{extra}"#
    );
    let path = env.path("policy.toml");
    std::fs::write(&path, text).expect("policy");
    path
}

pub fn rig(extra: &str) -> Rig {
    rig_in(Env::new(), extra)
}

/// [`rig`] in an env the caller prepared; `ORIGIN` in `extra` becomes the
/// origin's address.
pub fn rig_in(env: Env, extra: &str) -> Rig {
    rig_with(env, extra, &[])
}

/// [`rig_in`] with further `controld serve` arguments.
pub fn rig_with(env: Env, extra: &str, controld_args: &[&str]) -> Rig {
    make_certificates(
        &env,
        &[
            ("demo", "demo.test"),
            ("box", "box.test"),
            ("hr", "hr.test"),
        ],
    );
    let origin = recording_origin();
    let idp = start_idp();
    let extra = extra.replace("ORIGIN", &origin.addr().to_string());
    let policy = oidc_policy(&env, origin.addr(), &idp, &extra);
    let controld = env.controld(&policy, controld_args);
    let (dataplane, _plain, tls) = env.dataplane_tls(1, &[]);
    env.wait_for_cores(1, 1);
    Rig {
        env,
        _controld: controld,
        _dataplane: dataplane,
        tls,
        origin,
        idp,
    }
}

impl Rig {
    pub fn client(&self, device: Option<&str>) -> Client {
        let ca = self.env.path("ca/ca.pem");
        match device {
            None => Client::new(&ca, None),
            Some(stem) => {
                let cert = self.env.path(&format!("{stem}.pem"));
                let key = self.env.path(&format!("{stem}.key"));
                Client::new(&ca, Some((cert.as_path(), key.as_path())))
            }
        }
    }

    pub fn get(&self, client: &Client, host: &str, target: &str, headers: &str) -> Response {
        client.request(
            self.tls,
            host,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"),
        )
    }
}

/// A sign-in in progress: what the browser holds after the provider's
/// form_post page.
pub struct SignIn {
    pub host: String,
    pub login_cookie: String,
    pub form: String,
}

/// Starts a sign-in at `host` (an unauthenticated GET), asks the provider
/// for a token (`idp_params` adds test parameters), and returns what the
/// browser would post back.
pub fn begin_sign_in(rig: &Rig, client: &Client, host: &str, idp_params: &str) -> SignIn {
    begin_sign_in_at(rig, client, host, &rig.idp.issuer, idp_params)
}

/// [`begin_sign_in`] at an app whose provider is `issuer`.
pub fn begin_sign_in_at(
    rig: &Rig,
    client: &Client,
    host: &str,
    issuer: &str,
    idp_params: &str,
) -> SignIn {
    let r = rig.get(client, host, "/start?x=1", "");
    assert_eq!(r.status, 302, "unauthenticated navigation redirects: {r:?}");
    let location = r.header("location").expect("Location").to_string();
    assert!(
        location.starts_with(&format!("{issuer}/authorize?")),
        "{location}"
    );
    assert!(
        location.contains("response_mode=form_post")
            && location.contains("nonce=")
            && location.contains("state="),
        "{location}"
    );
    let set_cookies = r.headers_named("set-cookie");
    let login_cookie = https::cookie(&set_cookies, "palisade_login")
        .expect("login cookie")
        .to_string();
    let (status, page) = https::http_get(&format!(
        "{location}&login_hint=alice&groups=eng,finance{idp_params}"
    ));
    assert_eq!(status, 200, "{page}");
    let (action, id_token, state) = https::form_post(&page);
    assert_eq!(action, format!("https://{host}/.palisade/callback"));
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token", &id_token)
        .append_pair("state", &state)
        .finish();
    SignIn {
        host: host.to_string(),
        login_cookie,
        form,
    }
}

pub fn post_callback(rig: &Rig, client: &Client, s: &SignIn) -> Response {
    client.request(
        rig.tls,
        &s.host,
        &format!(
            "POST /.palisade/callback HTTP/1.1\r\nHost: {}\r\nCookie: palisade_login={}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
            s.host,
            s.login_cookie,
            s.form.len(),
            s.form
        ),
    )
}

/// Signs in at `host` and returns the session cookie value.
pub fn sign_in(rig: &Rig, client: &Client, host: &str, idp_params: &str) -> String {
    let s = begin_sign_in(rig, client, host, idp_params);
    let r = post_callback(rig, client, &s);
    assert_eq!(r.status, 303, "sign-in completes: {r:?}");
    https::cookie(&r.headers_named("set-cookie"), "palisade_session")
        .expect("session cookie")
        .to_string()
}
