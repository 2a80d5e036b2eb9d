//! `bench idp`: a small OpenID Connect provider for tests and the demo.
//!
//! Serves the discovery document, the JWKS, and an authorization endpoint
//! for the implicit flow with `response_mode=form_post`: a browser gets a
//! login form (any user name, optional groups and device claims); with
//! `login_hint` the token is issued at once (non-interactive test mode).
//! ID tokens are signed with keys it generates (RSA 2048 for RS256, P-256
//! for ES256), optionally kept in a directory across restarts.
//!
//! It is a SAML identity provider too (`idp_saml`): metadata at
//! `/saml/metadata`, single sign-on at `/saml/sso`.
//!
//! With `test_mode`, the authorization request may also ask for broken
//! tokens (`test_alg=none|HS256`, `test_kid`, `test_aud`, `test_iss`,
//! `test_exp`, `test_nonce`), which is how the proxy's refusals are tested.
//! Never expose a test-mode provider.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};

/// Provider settings.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    pub listen: SocketAddr,
    /// `iss` of the tokens and base of the endpoint URLs; default
    /// `http://<bound address>`.
    pub issuer: Option<String>,
    /// Accept the `test_*` parameters that produce broken tokens.
    pub test_mode: bool,
    /// Keep the signing keys here (created when missing).
    pub key_dir: Option<PathBuf>,
    /// Token lifetime (seconds).
    pub token_lifetime: u64,
}

struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    rng: SystemRandom,
    jwks: String,
    /// SAML signing: the P-256 key with a certificate.
    saml: palisade_schema::saml::issue::SigningKey,
}

/// A running provider (serves until the process exits).
pub struct Idp {
    pub addr: SocketAddr,
    pub issuer: String,
    /// The JWKS document it serves.
    pub jwks: String,
}

pub const RSA_KID: &str = "rs-1";
pub const EC_KID: &str = "es-1";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn load_or_generate(dir: Option<&Path>) -> Result<Keys, String> {
    let read = |name: &str| dir.and_then(|d| std::fs::read(d.join(name)).ok());
    let rsa_der = match read("rs256.pk8") {
        Some(der) => der,
        None => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| format!("RSA key generation: {e}"))?;
            key.to_pkcs8_der()
                .map_err(|e| format!("RSA key encoding: {e}"))?
                .as_bytes()
                .to_vec()
        }
    };
    let rng = SystemRandom::new();
    let ec_der = match read("es256.pk8") {
        Some(der) => der,
        None => {
            EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|e| format!("EC key generation: {e}"))?
                .as_ref()
                .to_vec()
        }
    };
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        for (name, der) in [("rs256.pk8", &rsa_der), ("es256.pk8", &ec_der)] {
            let path = d.join(name);
            if !path.exists() {
                std::fs::write(&path, der).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    let rsa = RsaKeyPair::from_pkcs8(&rsa_der).map_err(|e| format!("RSA key: {e}"))?;
    let ec = EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ec_der,
        &rng,
    )
    .map_err(|e| format!("EC key: {e}"))?;
    let (n, e) = {
        let public = rsa.public_key();
        let components: ring::rsa::PublicKeyComponents<Vec<u8>> = public.into();
        (components.n, components.e)
    };
    let point = ec.public_key().as_ref();
    let jwks = serde_json::json!({
        "keys": [
            {"kty": "RSA", "kid": RSA_KID, "use": "sig", "alg": "RS256", "n": b64(&n), "e": b64(&e)},
            {"kty": "EC", "kid": EC_KID, "use": "sig", "alg": "ES256", "crv": "P-256",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])}
        ]
    })
    .to_string();
    let saml = crate::idp_saml::signing_key(&ec_der)?;
    Ok(Keys {
        rsa,
        ec,
        rng,
        jwks,
        saml,
    })
}

impl Idp {
    pub fn start(config: IdpConfig) -> Result<Idp, String> {
        let keys = Arc::new(load_or_generate(config.key_dir.as_deref())?);
        let listener =
            TcpListener::bind(config.listen).map_err(|e| format!("bind {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let jwks = keys.jwks.clone();
        let shared = Arc::new((config, issuer.clone()));
        std::thread::Builder::new()
            .name("idp".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let keys = keys.clone();
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &keys, &shared.0, &shared.1);
                    });
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Idp { addr, issuer, jwks })
    }
}

struct HttpRequest {
    method: String,
    path: String,
    params: HashMap<String, String>,
}

fn read_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&head).ok()?;
    let length: usize = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    if length > 64 * 1024 {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let target = req.path?.to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    Some(HttpRequest {
        method: req.method?.to_string(),
        path: path.to_string(),
        params,
    })
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn serve(
    mut stream: TcpStream,
    keys: &Keys,
    config: &IdpConfig,
    issuer: &str,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
        );
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            let doc = serde_json::json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["id_token"],
                "response_modes_supported": ["form_post"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            });
            respond(&mut stream, "200 OK", "application/json", &doc.to_string())
        }
        ("GET", "/jwks") => respond(&mut stream, "200 OK", "application/json", &keys.jwks),
        (_, "/authorize") => authorize(&mut stream, &req, keys, config, issuer),
        ("GET", "/saml/metadata") => respond(
            &mut stream,
            "200 OK",
            "application/samlmetadata+xml",
            &crate::idp_saml::metadata(issuer, &keys.saml),
        ),
        (_, "/saml/sso") => {
            let param = |name: &str| req.params.get(name).cloned().unwrap_or_default();
            match crate::idp_saml::sso(issuer, &keys.saml, &param) {
                crate::idp_saml::Answer::LoginForm(page) | crate::idp_saml::Answer::Post(page) => {
                    respond(&mut stream, "200 OK", "text/html; charset=utf-8", &page)
                }
                crate::idp_saml::Answer::Refused(why) => respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    &format!("{why}\n"),
                ),
            }
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
    }
}

fn authorize(
    stream: &mut TcpStream,
    req: &HttpRequest,
    keys: &Keys,
    config: &IdpConfig,
    issuer: &str,
) -> std::io::Result<()> {
    let p = |name: &str| req.params.get(name).map(String::as_str).unwrap_or("");
    let redirect_uri = p("redirect_uri");
    let bad = |stream: &mut TcpStream, why: &str| {
        respond(stream, "400 Bad Request", "text/plain", &format!("{why}\n"))
    };
    match url::Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return bad(stream, "redirect_uri must be an http(s) URL"),
    }
    if p("response_type") != "id_token" || p("client_id").is_empty() || p("nonce").is_empty() {
        return bad(
            stream,
            "expected response_type=id_token, client_id and nonce",
        );
    }
    let user = match (p("login_hint"), p("username")) {
        (hint, _) if !hint.is_empty() => hint,
        (_, name) if !name.is_empty() => name,
        _ => return login_form(stream, req),
    };
    let token = issue(keys, config, issuer, req, user);
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\n<body onload=\"document.forms[0].submit()\">\n<form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"id_token\" value=\"{}\">\n<input type=\"hidden\" name=\"state\" value=\"{}\">\n<noscript><button type=\"submit\">Continue</button></noscript>\n</form></body></html>\n",
        escape(redirect_uri),
        escape(&token),
        escape(p("state"))
    );
    respond(stream, "200 OK", "text/html; charset=utf-8", &page)
}

fn login_form(stream: &mut TcpStream, req: &HttpRequest) -> std::io::Result<()> {
    let mut hidden = String::new();
    for (k, v) in &req.params {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(k),
            escape(v)
        ));
    }
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Sign in (test provider)</title></head>\n<body><h1>Sign in</h1>\n<p>Test identity provider: any user name is accepted.</p>\n<form method=\"post\" action=\"/authorize\">\n{hidden}<p><label>User <input name=\"username\" autofocus></label></p>\n<p><label>Groups (comma-separated) <input name=\"groups\"></label></p>\n<p><label><input type=\"checkbox\" name=\"compliant\" value=\"true\"> compliant device</label></p>\n<p><button type=\"submit\">Sign in</button></p>\n</form></body></html>\n"
    );
    respond(stream, "200 OK", "text/html; charset=utf-8", &page)
}

/// Signs an ID token for `user` (with the test overrides in test mode).
fn issue(keys: &Keys, config: &IdpConfig, issuer: &str, req: &HttpRequest, user: &str) -> String {
    let p = |name: &str| {
        req.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let test = |name: &str| if config.test_mode { p(name) } else { None };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let exp = match test("test_exp").and_then(|e| e.parse::<i64>().ok()) {
        Some(offset) => now + offset,
        None => now + config.token_lifetime as i64,
    };
    let groups: Vec<&str> = p("groups")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    let mut claims = serde_json::json!({
        "iss": test("test_iss").unwrap_or(issuer),
        "sub": user,
        "preferred_username": user,
        "aud": test("test_aud").unwrap_or(p("client_id").unwrap_or("")),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "nonce": test("test_nonce").unwrap_or(p("nonce").unwrap_or("")),
        "groups": groups,
    });
    for flag in ["compliant", "domain_joined"] {
        if p(flag) == Some("true") {
            claims[flag] = serde_json::Value::Bool(true);
        }
    }
    let alg = test("test_alg").or(p("alg")).unwrap_or("RS256");
    let kid = test("test_kid").unwrap_or(if alg == "ES256" { EC_KID } else { RSA_KID });
    let header = serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match alg {
        "ES256" => keys
            .ec
            .sign(&keys.rng, signing_input.as_bytes())
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default(),
        "none" => Vec::new(),
        // The classic confusion: HMAC keyed with the public key.
        "HS256" => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, keys.jwks.as_bytes());
            ring::hmac::sign(&key, signing_input.as_bytes())
                .as_ref()
                .to_vec()
        }
        _ => {
            let mut sig = vec![0; keys.rsa.public().modulus_len()];
            let _ = keys.rsa.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &keys.rng,
                signing_input.as_bytes(),
                &mut sig,
            );
            sig
        }
    };
    format!("{signing_input}.{}", b64(&signature))
}

/// The hidden `id_token` and `state` of a form_post page (for clients
/// that do not run scripts: tests, the demo's checks).
pub fn form_post_fields(page: &str) -> Option<(String, String, String)> {
    let attr = |from: &str, name: &str| -> Option<String> {
        let at = from.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
        let end = from[at..].find('"')? + at;
        Some(
            from[at..end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    let action_at = page.find("action=\"")? + 8;
    let action_end = page[action_at..].find('"')? + action_at;
    let action = page[action_at..action_end].replace("&amp;", "&");
    Some((action, attr(page, "id_token")?, attr(page, "state")?))
}
