//! Who the user is: the proxy session cookie, OpenID Connect sign-in
//! (redirect to the provider, `form_post` back to a reserved path on the
//! same proxy host), or identity headers from a trusted identity-aware
//! proxy in front.
//!
//! Built per core from each snapshot ([`IdentityConfig::build`]); the
//! request path only reads it.

mod error;
pub mod jwt;
pub mod saml;
pub mod saml_relay;
pub mod seal;

use std::net::IpAddr;

use palisade_schema::access::{Identity, IdentityProvider, DEFAULT_SESSION_LIFETIME_SECS};
use serde::{Deserialize, Serialize};

pub use error::{IdentityError, LoginError, TokenError};
pub use saml::SamlProvider;
use seal::Sealer;

/// The proxy session cookie.
pub const SESSION_COOKIE: &[u8] = b"palisade_session";
/// Binds a sign-in in progress to the browser that started it.
pub const LOGIN_COOKIE: &[u8] = b"palisade_login";
/// Acknowledges the monitoring notice for one session and app.
pub const NOTICE_COOKIE: &[u8] = b"palisade_notice";
/// Paths under this prefix are the proxy's own, never forwarded.
pub const RESERVED_PREFIX: &[u8] = b"/.palisade/";
pub const CALLBACK_PATH: &str = "/.palisade/callback";
/// The login cookie's path: the sign-in callbacks under it (OpenID
/// Connect's and SAML's), and nothing an app serves.
pub const LOGIN_COOKIE_PATH: &str = "/.palisade/";
pub const LOGOUT_PATH: &str = "/.palisade/logout";
/// How long a sign-in may take from redirect to callback.
pub(crate) const LOGIN_WINDOW_SECS: i64 = 600;

/// A signed-in user, as sealed in the session cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    /// Device tags from the token (`compliant`, `domain_joined`).
    #[serde(rename = "t", default)]
    pub device_tags: Vec<String>,
    /// Expiry, Unix seconds.
    #[serde(rename = "x")]
    pub expires_unix: i64,
    /// The SAML NameID, when it differs from `user` (what a relayed SAML
    /// sign-in names the user by).
    #[serde(rename = "n", default, skip_serializing_if = "String::is_empty")]
    pub name_id: String,
    /// SAML attributes (name, values) beyond user and groups, for relayed
    /// sign-ins; bounded by [`saml::MAX_SESSION_ATTRIBUTES`].
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, Vec<String>)>,
}

/// A sign-in in progress, sealed into the `state` parameter.
#[derive(Serialize, Deserialize)]
struct LoginState {
    /// Expected `nonce` claim.
    n: String,
    /// Path (and query) to return to, on the same host.
    r: String,
    /// Proxy host the sign-in started on.
    h: String,
    /// Value of the login cookie set with the redirect.
    l: String,
    /// Expiry, Unix seconds.
    x: i64,
}

/// An OpenID Connect provider, ready to verify its tokens.
pub struct OidcProvider {
    issuer: String,
    client_id: String,
    authorization_endpoint: String,
    scopes: String,
    keys: jwt::KeySet,
}

impl OidcProvider {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn build(o: &palisade_schema::access::Oidc) -> Result<OidcProvider, IdentityError> {
        let keys = jwt::KeySet::parse(&o.jwks)?;
        if keys.is_empty() {
            return Err(IdentityError::NoUsableKey);
        }
        Ok(OidcProvider {
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            authorization_endpoint: o.authorization_endpoint.clone(),
            scopes: o.scopes.clone(),
            keys,
        })
    }
}

pub enum Provider {
    None,
    Oidc(OidcProvider),
    Saml(Box<SamlProvider>),
    TrustedHeader {
        /// Lower case.
        user_header: Box<[u8]>,
        groups_header: Box<[u8]>,
        /// Inclusive intervals in the IPv6 number space.
        sources: Vec<(u128, u128)>,
    },
}

/// Who signs a user in for an app: its own provider or the global one.
#[derive(Clone, Copy)]
pub enum SignInWith<'a> {
    Oidc(&'a OidcProvider),
    Saml(&'a SamlProvider),
}

pub struct IdentityConfig {
    pub provider: Provider,
    pub sealer: Sealer,
    pub lifetime_secs: u64,
}

/// The IPv6-space number of an address (IPv4 as `::ffff:a.b.c.d`).
pub fn ip_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(a),
        },
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl IdentityConfig {
    pub fn build(identity: &Identity) -> Result<IdentityConfig, IdentityError> {
        let provider = match &identity.provider {
            IdentityProvider::None => Provider::None,
            IdentityProvider::Oidc(o) => Provider::Oidc(OidcProvider::build(o)?),
            IdentityProvider::Saml(s) => {
                Provider::Saml(Box::new(SamlProvider::build(s, Vec::new())?))
            }
            IdentityProvider::TrustedHeader(t) => Provider::TrustedHeader {
                user_header: t.user_header.to_ascii_lowercase().into_bytes().into(),
                groups_header: t.groups_header.to_ascii_lowercase().into_bytes().into(),
                sources: t.sources.iter().map(|r| r.bounds()).collect(),
            },
        };
        Ok(IdentityConfig {
            provider,
            sealer: Sealer::new(&identity.session_keys),
            lifetime_secs: if identity.session_lifetime_secs == 0 {
                DEFAULT_SESSION_LIFETIME_SECS
            } else {
                identity.session_lifetime_secs
            },
        })
    }

    pub fn none() -> IdentityConfig {
        IdentityConfig {
            provider: Provider::None,
            sealer: Sealer::new(&[]),
            lifetime_secs: DEFAULT_SESSION_LIFETIME_SECS,
        }
    }

    /// The trusted-header names (lower case), when that provider is on.
    pub fn trusted_headers(&self) -> Option<(&[u8], &[u8])> {
        match &self.provider {
            Provider::TrustedHeader {
                user_header,
                groups_header,
                ..
            } => Some((user_header, groups_header)),
            _ => None,
        }
    }

    /// Whether `ip` may assert identity by header.
    pub fn is_trusted_source(&self, ip: IpAddr) -> bool {
        match &self.provider {
            Provider::TrustedHeader { sources, .. } => {
                let n = ip_number(ip);
                sources.iter().any(|(lo, hi)| (*lo..=*hi).contains(&n))
            }
            _ => false,
        }
    }

    /// The global sign-in provider (OpenID Connect or SAML).
    pub fn sign_in_provider(&self) -> Option<SignInWith<'_>> {
        match &self.provider {
            Provider::Oidc(o) => Some(SignInWith::Oidc(o)),
            Provider::Saml(s) => Some(SignInWith::Saml(s)),
            _ => None,
        }
    }

    fn session_aad(app: &str) -> Vec<u8> {
        let mut aad = b"palisade-session|".to_vec();
        aad.extend_from_slice(app.as_bytes());
        aad
    }

    /// The session in a cookie value, if it was sealed for `app` by a
    /// current key and has not expired.
    pub fn open_session(&self, value: &[u8], app: &str, now: i64) -> Option<Session> {
        let plain = self.sealer.open(value, &Self::session_aad(app))?;
        let session: Session = serde_json::from_slice(&plain).ok()?;
        (session.expires_unix > now).then_some(session)
    }

    pub fn seal_session(&self, session: &Session, app: &str) -> Option<String> {
        let plain = serde_json::to_vec(session).ok()?;
        self.sealer.seal(&plain, &Self::session_aad(app))
    }

    /// The provider URL to send a user to, and the login cookie value to
    /// set with the redirect. `return_to` is the path (and query) on
    /// `host` to come back to.
    pub fn login_redirect(
        &self,
        oidc: &OidcProvider,
        scheme: &str,
        host: &str,
        return_to: &str,
    ) -> Option<(String, String)> {
        let OidcProvider {
            client_id,
            authorization_endpoint,
            scopes,
            ..
        } = oidc;
        let login = self.sealer.random_token(16);
        let state = LoginState {
            n: self.sealer.random_token(16),
            r: safe_return_path(return_to).to_string(),
            h: host.to_string(),
            l: login.clone(),
            x: now_unix() + LOGIN_WINDOW_SECS,
        };
        let sealed = self
            .sealer
            .seal(&serde_json::to_vec(&state).ok()?, b"palisade-state")?;
        let mut url = url::Url::parse(authorization_endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("response_type", "id_token")
            .append_pair("response_mode", "form_post")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &format!("{scheme}://{host}{CALLBACK_PATH}"))
            .append_pair("scope", scopes)
            .append_pair("state", &sealed)
            .append_pair("nonce", &state.n);
        Some((url.to_string(), login))
    }

    /// Completes a sign-in: the form posted by the provider (`id_token`,
    /// `state`) on `host`, with the browser's login cookie. Returns the new
    /// session and where to send the user.
    pub fn complete_login(
        &self,
        oidc: &OidcProvider,
        host: &str,
        form: &[u8],
        login_cookie: &[u8],
        now: i64,
    ) -> Result<(Session, String), LoginError> {
        let OidcProvider {
            issuer,
            client_id,
            keys,
            ..
        } = oidc;
        let mut id_token = None;
        let mut state = None;
        for (k, v) in url::form_urlencoded::parse(form) {
            match &*k {
                "id_token" => id_token = Some(v.into_owned()),
                "state" => state = Some(v.into_owned()),
                "error" => return Err(LoginError::ProviderSaid(v.into_owned())),
                _ => {}
            }
        }
        let state = state.ok_or(LoginError::NoState)?;
        let id_token = id_token.ok_or(LoginError::NoIdToken)?;
        let state: LoginState = self
            .sealer
            .open(state.as_bytes(), b"palisade-state")
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(LoginError::ForgedState)?;
        if state.x < now {
            return Err(LoginError::StateExpired);
        }
        if !state.h.eq_ignore_ascii_case(host) {
            return Err(LoginError::StateForAnotherHost);
        }
        // The login cookie is cleared when a sign-in completes: a replayed
        // state (same browser or another one) finds no matching cookie.
        if login_cookie.is_empty() || login_cookie != state.l.as_bytes() {
            return Err(LoginError::StateReused);
        }
        let claims = jwt::verify(
            &id_token,
            keys,
            &jwt::Expect {
                issuer,
                audience: client_id,
                nonce: &state.n,
                now_unix: now,
            },
        )?;
        if !first_use(&USED_STATES, &state.n, state.x, now) {
            return Err(LoginError::StateReused);
        }
        let session = Session {
            user: claims.user,
            groups: claims.groups,
            device_tags: claims.device_tags,
            expires_unix: now + self.lifetime_secs as i64,
            name_id: String::new(),
            attributes: Vec::new(),
        };
        Ok((session, safe_return_path(&state.r).to_string()))
    }
}

/// One-time values seen (key → until when it is kept, Unix seconds).
pub(crate) type UsedSet = std::sync::Mutex<Option<std::collections::HashMap<String, i64>>>;

/// Sign-in nonces used (OpenID Connect `state`).
static USED_STATES: UsedSet = std::sync::Mutex::new(None);

/// Records `key` as used until `until`; false when it already was. The
/// sets are process-wide (a replay may reach another core) and touched
/// only by sign-in callbacks; entries leave once expired.
pub(crate) fn first_use(set: &UsedSet, key: &str, until: i64, now: i64) -> bool {
    let mut guard = set.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(Default::default);
    if used.len() > 4096 {
        used.retain(|_, exp| *exp >= now);
    }
    used.insert(key.to_string(), until).is_none()
}

/// A return path that stays on the same host: it must start with one `/`
/// (not `//host` or `/\host`, which browsers read as another host), and
/// must not point back into the reserved paths.
pub fn safe_return_path(path: &str) -> &str {
    let b = path.as_bytes();
    // The one proxy path a sign-in returns to: the SAML relay's SSO,
    // which answers the app once the user is signed in.
    let relay_sso = b.starts_with(saml_relay::SSO_PATH.as_bytes())
        && b.get(saml_relay::SSO_PATH.len()) == Some(&b'?');
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && (!b.starts_with(RESERVED_PREFIX) || relay_sso)
        && !b.iter().any(|c| c.is_ascii_control());
    if ok {
        path
    } else {
        "/"
    }
}

/// True when a Set-Cookie value sets one of the proxy's cookies (its name,
/// RFC 6265 §4.1.1, before the first `=`).
pub fn is_proxy_cookie(set_cookie: &[u8]) -> bool {
    let name = set_cookie
        .split(|b| *b == b'=')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    name == SESSION_COOKIE || name == LOGIN_COOKIE || name == NOTICE_COOKIE
}

/// The value of cookie `name` in a Cookie field value (RFC 6265 §4.2.1).
pub fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_the_host() {
        assert_eq!(safe_return_path("/a?b=c"), "/a?b=c");
        let relay = "/.palisade/saml/idp/sso?SAMLRequest=x";
        assert_eq!(safe_return_path(relay), relay);
        for bad in [
            "//evil.test/",
            "/\\evil.test",
            "https://evil.test/",
            "",
            "/.palisade/logout",
            "/a\r\nb",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn apps_cannot_set_the_proxy_cookies() {
        assert!(is_proxy_cookie(b"palisade_session=x; Path=/"));
        assert!(is_proxy_cookie(b" palisade_login =y"));
        assert!(!is_proxy_cookie(b"palisade_session_app=x"));
        assert!(!is_proxy_cookie(b"sid=palisade_session"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = b"a=1; palisade_session=xyz; palisade_session_x=2";
        assert_eq!(cookie_value(h, SESSION_COOKIE), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(b"xpalisade_session=1", SESSION_COOKIE), None);
    }
}
