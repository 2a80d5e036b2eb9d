//! SAML sign-in: the proxy as a SAML 2.0 service provider (Web Browser SSO
//! profile). A user without a session is redirected to the identity
//! provider with an `AuthnRequest` (HTTP-Redirect binding); the provider
//! posts a `Response` back to the proxy host's assertion consumer service
//! (`/.palisade/saml/acs`), which the schema crate's `saml::response`
//! validates strictly; the user then gets the same sealed session cookie an
//! OpenID Connect sign-in gives.
//!
//! What binds a response to the browser: the login cookie holds the
//! sealed request (its ID, the return path, the host, a relay token); the
//! provider returns the relay token as `RelayState` (at most 80 bytes,
//! SAML Bindings §3.4.3, so it cannot carry the state itself), and the
//! response's `InResponseTo` must name that request. A response without
//! one (identity-provider-initiated) is accepted only when the policy
//! allows it; its `RelayState` is then only a return path on this host.

use palisade_schema::saml::issue::SigningKey;
use palisade_schema::saml::request::{sp_metadata, AuthnRequest};
use palisade_schema::saml::response::{self, Assertion, Expect};
use palisade_schema::saml::SamlError;
use serde::{Deserialize, Serialize};

use super::{
    first_use, now_unix, safe_return_path, IdentityConfig, Session, UsedSet, LOGIN_WINDOW_SECS,
};

/// The assertion consumer service, on every proxy host.
pub const ACS_PATH: &str = "/.palisade/saml/acs";
/// The proxy's service-provider metadata, on every proxy host.
pub const METADATA_PATH: &str = "/.palisade/saml/metadata";

/// Bytes of SAML attributes kept in a session (the sealed cookie must
/// stay under the browsers' 4 KiB).
pub const MAX_SESSION_ATTRIBUTES: usize = 1024;

/// A SAML identity provider, as the snapshot configures it.
pub struct SamlProvider {
    pub settings: palisade_schema::access::Saml,
    /// Proxy hosts whose assertion consumer services the metadata lists
    /// (the apps signing in through this provider).
    pub acs_hosts: Vec<String>,
    /// Signs the `AuthnRequest`s, when the policy gives a key.
    signer: Option<SigningKey>,
}

/// A sign-in in progress, sealed into the login cookie.
#[derive(Serialize, Deserialize)]
struct SamlLogin {
    /// The `AuthnRequest` ID.
    q: String,
    /// Where to return: a path on `h`, or (when the sign-in started on
    /// another host of the app) that host's URL, made here.
    r: String,
    /// The proxy host of the ACS.
    h: String,
    /// The relay token sent as `RelayState`.
    s: String,
    /// Expiry, Unix seconds.
    x: i64,
}

const LOGIN_AAD: &[u8] = b"palisade-saml-login";

/// Why an assertion consumer service post was refused.
#[derive(Debug)]
pub enum AcsError {
    NoResponse,
    Saml(SamlError),
}

impl std::fmt::Display for AcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcsError::NoResponse => f.write_str("no SAMLResponse in the post"),
            AcsError::Saml(e) => e.fmt(f),
        }
    }
}

impl From<SamlError> for AcsError {
    fn from(e: SamlError) -> Self {
        AcsError::Saml(e)
    }
}

/// A completed SAML sign-in.
pub struct SamlSignIn {
    pub session: Session,
    pub return_to: String,
    pub solicited: bool,
    /// The `RelayState` posted with the response.
    pub relay_state: String,
}

impl SamlProvider {
    pub fn build(
        settings: &palisade_schema::access::Saml,
        acs_hosts: Vec<String>,
    ) -> Result<SamlProvider, super::IdentityError> {
        let signer = match &settings.request_signing {
            Some(k) => Some(
                SigningKey::from_pem(&k.chain_pem, &k.key_pem)
                    .map_err(super::IdentityError::SamlSigningKey)?,
            ),
            None => None,
        };
        Ok(SamlProvider {
            settings: settings.clone(),
            acs_hosts,
            signer,
        })
    }

    pub fn acs_url(scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}{ACS_PATH}")
    }

    /// The service-provider metadata, listing the ACS of `host` first.
    pub fn metadata(&self, scheme: &str, host: &str) -> String {
        let mut urls = vec![Self::acs_url(scheme, host)];
        for h in &self.acs_hosts {
            let url = Self::acs_url(scheme, h);
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        sp_metadata(&self.settings.sp_entity_id, &urls, self.signer.as_ref())
    }

    /// The identity provider URL to send a user to, and the login cookie
    /// to set with the redirect. The sign-in starts on `host` and comes
    /// back to the ACS of `acs_host`, the app domain's proxy host that
    /// the session cookie is set for (so the identity provider knows one
    /// ACS per app domain, whatever subdomain the user opened); the login
    /// cookie must then be set for that domain too.
    pub fn login_redirect(
        &self,
        sign_in: &IdentityConfig,
        scheme: &str,
        (host, acs_host): (&str, &str),
        return_to: &str,
    ) -> Option<(String, String)> {
        let sealer = &sign_in.sealer;
        let path = safe_return_path(return_to);
        let back = if host.eq_ignore_ascii_case(acs_host) {
            path.to_string()
        } else {
            format!("{scheme}://{host}{path}")
        };
        // An `xs:ID` starts with a letter or `_`.
        let login = SamlLogin {
            q: format!("_{}", sealer.random_token(16)),
            r: back,
            h: acs_host.to_string(),
            s: sealer.random_token(16),
            x: now_unix() + LOGIN_WINDOW_SECS,
        };
        let cookie = sealer.seal(&serde_json::to_vec(&login).ok()?, LOGIN_AAD)?;
        let request = AuthnRequest {
            id: &login.q,
            sp_entity_id: &self.settings.sp_entity_id,
            acs_url: &Self::acs_url(scheme, acs_host),
            destination: &self.settings.sso_url,
            now: now_unix(),
        };
        Some((
            request.signed_redirect_url(&login.s, self.signer.as_ref())?,
            cookie,
        ))
    }

    /// Completes a sign-in from the form posted to the ACS of `host`.
    pub fn complete_login(
        &self,
        sign_in: &IdentityConfig,
        (scheme, host): (&str, &str),
        form: &[u8],
        login_cookie: &[u8],
        now: i64,
    ) -> Result<SamlSignIn, AcsError> {
        let mut saml_response = None;
        let mut relay_state = String::new();
        for (k, v) in url::form_urlencoded::parse(form) {
            match &*k {
                "SAMLResponse" => saml_response = Some(v.into_owned()),
                "RelayState" => relay_state = v.into_owned(),
                _ => {}
            }
        }
        let xml = response::decode_form_value(&saml_response.ok_or(AcsError::NoResponse)?)?;
        // The request this browser started here, if the relay token is
        // its own.
        let pending = sign_in
            .sealer
            .open(login_cookie, LOGIN_AAD)
            .and_then(|p| serde_json::from_slice::<SamlLogin>(&p).ok())
            .filter(|l| l.x >= now && l.h.eq_ignore_ascii_case(host) && l.s == relay_state);
        let acs_url = Self::acs_url(scheme, host);
        let s = &self.settings;
        let assertion = response::validate(
            &xml,
            &Expect {
                idp_entity_id: &s.idp_entity_id,
                certificates: &s.certificates,
                sp_entity_id: &s.sp_entity_id,
                acs_url: &acs_url,
                request_id: pending.as_ref().map(|l| l.q.as_str()),
                allow_unsolicited: s.allow_unsolicited,
                now,
            },
        )?;
        let keep_until = assertion.not_on_or_after + palisade_schema::saml::SKEW_SECS;
        if !first_use(&USED_ASSERTIONS, &assertion.id, keep_until, now) {
            return Err(SamlError::Replayed.into());
        }
        let return_to = match (&pending, assertion.solicited) {
            (Some(l), true) => l.r.clone(),
            // Unsolicited: RelayState, if anything, is where to go.
            _ => safe_return_path(&relay_state).to_string(),
        };
        Ok(SamlSignIn {
            session: self.session(&assertion, now + sign_in.lifetime_secs as i64)?,
            return_to,
            solicited: assertion.solicited,
            relay_state,
        })
    }

    fn session(&self, a: &Assertion, expires_unix: i64) -> Result<Session, SamlError> {
        let s = &self.settings;
        let user = if s.user_attribute.is_empty() {
            a.name_id.clone()
        } else {
            a.values(&s.user_attribute)
                .find(|v| !v.is_empty())
                .ok_or(SamlError::NoNameId)?
                .to_string()
        };
        let list = |name: &str| -> Vec<String> {
            if name.is_empty() {
                return Vec::new();
            }
            a.values(name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        };
        // The rest travels in the session for apps whose own sign-in the
        // proxy relays, as far as it fits.
        let mut attributes = Vec::new();
        let mut room = MAX_SESSION_ATTRIBUTES;
        for (name, values) in &a.attributes {
            let size = name.len() + values.iter().map(|v| v.len() + 3).sum::<usize>() + 8;
            if size > room {
                break;
            }
            room -= size;
            attributes.push((name.clone(), values.clone()));
        }
        Ok(Session {
            name_id: if a.name_id == user {
                String::new()
            } else {
                a.name_id.clone()
            },
            user,
            groups: list(&s.groups_attribute),
            device_tags: list(&s.device_attribute),
            expires_unix,
            attributes,
        })
    }
}

/// Assertion IDs used, each kept until its assertion expires (plus the
/// skew the checks allow).
static USED_ASSERTIONS: UsedSet = std::sync::Mutex::new(None);
