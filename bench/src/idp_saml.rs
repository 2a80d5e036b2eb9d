//! `bench idp`'s SAML 2.0 identity provider, for the demo: metadata at
//! `/saml/metadata` (its entity ID is that URL), and single sign-on at
//! `/saml/sso` over the HTTP-Redirect binding, answered with the HTTP-POST
//! binding's auto-submitting form. A browser gets a login form (any user
//! name, optional groups); `login_hint` answers at once. Assertions are
//! signed with the provider's P-256 key (its ES256 key) and a self-signed
//! certificate made at start.
//!
//! It answers any service provider at the consumer service its request
//! names: a test provider, never to be exposed. The proxy's own checks are
//! tested against pysaml2, not against this.

use palisade_schema::saml::issue::{
    idp_metadata, read_redirect_request, signed_response, Issue, SigningKey,
};

/// The SAML signing key, from the provider's P-256 key (PKCS#8 DER).
pub fn signing_key(ec_pkcs8: &[u8]) -> Result<SigningKey, String> {
    let key = rcgen::KeyPair::try_from(ec_pkcs8).map_err(|e| format!("SAML key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench idp SAML signing");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    SigningKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

pub fn entity_id(issuer: &str) -> String {
    format!("{issuer}/saml/metadata")
}

pub fn metadata(issuer: &str, key: &SigningKey) -> String {
    idp_metadata(&entity_id(issuer), &format!("{issuer}/saml/sso"), key)
}

/// What `/saml/sso` answers: the login form (no user yet), the
/// auto-posting response page, or why the request is refused.
pub enum Answer {
    LoginForm(String),
    Post(String),
    Refused(String),
}

/// Answers a single sign-on request; `param` reads the request's
/// parameters (query and form).
pub fn sso(issuer: &str, key: &SigningKey, param: &dyn Fn(&str) -> String) -> Answer {
    let request = match read_redirect_request(&param("SAMLRequest")) {
        Ok(r) => r,
        Err(e) => return Answer::Refused(format!("SAMLRequest: {e}")),
    };
    let Some(acs) = request.acs_url.clone().filter(|a| a.starts_with("http")) else {
        return Answer::Refused("the request names no AssertionConsumerServiceURL".into());
    };
    let user = match (param("login_hint"), param("username")) {
        (hint, _) if !hint.is_empty() => hint,
        (_, name) if !name.is_empty() => name,
        _ => {
            return Answer::LoginForm(format!(
                concat!(
                    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Sign in (test SAML provider)</title></head>\n",
                    "<body><h1>Sign in with SAML</h1>\n<p>Test identity provider: any user name is accepted.</p>\n",
                    "<form method=\"post\" action=\"/saml/sso\">\n",
                    "<input type=\"hidden\" name=\"SAMLRequest\" value=\"{}\">\n",
                    "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">\n",
                    "<p><label>User <input name=\"username\" autofocus></label></p>\n",
                    "<p><label>Groups (comma-separated) <input name=\"groups\"></label></p>\n",
                    "<p><button type=\"submit\">Sign in</button></p>\n</form></body></html>\n"
                ),
                escape(&param("SAMLRequest")),
                escape(&param("RelayState")),
            ))
        }
    };
    let groups: Vec<String> = param("groups")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let attributes = if groups.is_empty() {
        Vec::new()
    } else {
        vec![("groups".to_string(), groups)]
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let id = format!("{:x}{:x}", now, std::process::id()) + &random_hex();
    let xml = match signed_response(
        &Issue {
            issuer: &entity_id(issuer),
            audience: &request.issuer,
            acs_url: &acs,
            in_response_to: Some(&request.id),
            name_id: &user,
            name_id_format: palisade_schema::access::NAME_ID_UNSPECIFIED,
            attributes: &attributes,
            now,
            id: &id,
        },
        key,
    ) {
        Ok(x) => x,
        Err(e) => return Answer::Refused(format!("signing: {e}")),
    };
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD.encode(xml);
    Answer::Post(format!(
        concat!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\n",
            "<body onload=\"document.forms[0].submit()\">\n<form method=\"post\" action=\"{}\">\n",
            "<input type=\"hidden\" name=\"SAMLResponse\" value=\"{}\">\n",
            "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">\n",
            "<noscript><button type=\"submit\">Continue</button></noscript>\n</form></body></html>\n"
        ),
        escape(&acs),
        value,
        escape(&param("RelayState")),
    ))
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn escape(text: &str) -> String {
    palisade_schema::saml::request::escape(text)
}
