//! Who may use the console: sessions, CSRF tokens, the one-time bootstrap
//! token and sign-in through the policy's OpenID Connect provider.
//!
//! A session is a cookie holding `payload.mac`: the payload (user, role,
//! expiry, a random session id) in base64url JSON, the MAC an HMAC-SHA256
//! under a key this daemon run draws at start. A forged or altered cookie
//! fails the MAC; an expired one its expiry; a restart of controld ends
//! every session. The cookie is `__Host-` prefixed, `Secure; HttpOnly;
//! SameSite=Strict` (RFC 6265bis §4.1.3.2): browsers send it only to this
//! origin and never on a cross-site request. Every POST must also carry
//! the session's CSRF token (an HMAC of the session id), in a form field or
//! the `x-csrf-token` header.
//!
//! The bootstrap token (`controld console-token`) lets the first admin in
//! before any identity provider group is mapped: its SHA-256 is kept in the
//! state directory with an expiry, and the file is removed by the sign-in
//! that uses it, so it works once.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The session cookie's name (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-palisade-console";
/// The sign-in state cookie (nonce and state of an OIDC sign-in under
/// way). `SameSite=None`: the provider posts the token back cross-site.
pub const SIGNIN_COOKIE: &str = "__Host-palisade-console-signin";
/// How long a sign-in may take at the provider.
const SIGNIN_LIFETIME_SECS: i64 = 600;

/// What a signed-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: apply, rollback, export, acknowledge.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// A verified session.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "r")]
    pub role: Role,
    /// Expiry (Unix seconds).
    #[serde(rename = "e")]
    pub expires: i64,
    /// Random id; the CSRF token is derived from it.
    #[serde(rename = "s")]
    pub id: String,
    /// How the user signed in: `bootstrap` or the provider's issuer.
    #[serde(rename = "p")]
    pub provider: String,
}

/// An OIDC sign-in under way.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub nonce: String,
    pub state: String,
    pub expires: i64,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs and checks cookies with this daemon run's key.
pub struct Keys {
    mac: hmac::Key,
    rng: SystemRandom,
}

impl Keys {
    pub fn generate() -> Result<Keys, String> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "no randomness for the console key".to_string())?;
        Ok(Keys { mac: key, rng })
    }

    /// `n` random bytes, base64url.
    pub fn random(&self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        // SystemRandom reads getrandom(2); failure means no kernel RNG.
        self.rng.fill(&mut bytes).expect("kernel randomness");
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn seal<T: serde::Serialize>(&self, purpose: &str, value: &T) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default());
        let tag = hmac::sign(&self.mac, format!("{purpose}.{payload}").as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn open<T: serde::de::DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.mac, format!("{purpose}.{payload}").as_bytes(), &tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// A new session's cookie value.
    pub fn session_cookie(&self, session: &Session) -> String {
        self.seal("session", session)
    }

    /// The session a cookie value holds, if genuine and not expired.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        self.open::<Session>("session", cookie)
            .filter(|s| s.expires > now_secs())
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session: &Session) -> String {
        let tag = hmac::sign(&self.mac, format!("csrf.{}", session.id).as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `token` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        hmac::verify(&self.mac, format!("csrf.{}", session.id).as_bytes(), &tag).is_ok()
    }

    pub fn pending_cookie(&self, pending: &Pending) -> String {
        self.seal("signin", pending)
    }

    pub fn pending(&self, cookie: &str) -> Option<Pending> {
        self.open::<Pending>("signin", cookie)
            .filter(|p| p.expires > now_secs())
    }

    pub fn new_pending(&self) -> Pending {
        Pending {
            nonce: self.random(16),
            state: self.random(16),
            expires: now_secs() + SIGNIN_LIFETIME_SECS,
        }
    }
}

fn bootstrap_path(state_dir: &Path) -> PathBuf {
    state_dir.join("console").join("bootstrap-token")
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `controld console-token`: makes a one-time token valid for
/// `valid_secs`, keeps its hash in the state directory (mode 0600) and
/// returns it. A new token replaces an unused one.
pub fn make_bootstrap_token(state_dir: &Path, valid_secs: i64) -> Result<String, String> {
    let keys = Keys::generate()?;
    let token = keys.random(24);
    let path = bootstrap_path(state_dir);
    let dir = path.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = format!("{} {}\n", sha256_hex(&token), now_secs() + valid_secs);
    crate::commands::write_atomically(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

/// Why a bootstrap sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BootstrapError {
    /// No unused token (never made, used already, or removed).
    NoToken,
    Expired,
    Wrong,
}

impl std::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BootstrapError::NoToken => {
                "no bootstrap token is waiting (make one with `controld console-token`)"
            }
            BootstrapError::Expired => {
                "the bootstrap token has expired (make a new one with `controld console-token`)"
            }
            BootstrapError::Wrong => "wrong bootstrap token",
        })
    }
}

/// Uses the bootstrap token: right and unexpired, it is removed (so it
/// works once) and the sign-in goes on.
pub fn use_bootstrap_token(state_dir: &Path, token: &str) -> Result<(), BootstrapError> {
    let path = bootstrap_path(state_dir);
    let text = std::fs::read_to_string(&path).map_err(|_| BootstrapError::NoToken)?;
    let mut parts = text.split_whitespace();
    let (Some(hash), Some(expiry)) = (parts.next(), parts.next()) else {
        return Err(BootstrapError::NoToken);
    };
    let expiry: i64 = expiry.parse().map_err(|_| BootstrapError::NoToken)?;
    // Compared as hashes, in constant time.
    if !same(hash.as_bytes(), sha256_hex(token.trim()).as_bytes()) {
        return Err(BootstrapError::Wrong);
    }
    if expiry <= now_secs() {
        return Err(BootstrapError::Expired);
    }
    // Whoever removes the file first has used it: two racing sign-ins
    // with the same token get one session.
    std::fs::remove_file(&path).map_err(|_| BootstrapError::NoToken)
}

/// Whether two secrets are equal, in time independent of where they
/// differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Set-Cookie for a session.
pub fn session_set_cookie(value: &str, max_age: i64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
    )
}

/// Set-Cookie removing the session.
pub fn session_clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

pub fn pending_set_cookie(value: &str) -> String {
    format!("{SIGNIN_COOKIE}={value}; Path=/; Max-Age={SIGNIN_LIFETIME_SECS}; Secure; HttpOnly; SameSite=None")
}

pub fn pending_clear_cookie() -> String {
    format!("{SIGNIN_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=None")
}

/// A cookie's value from a Cookie header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: i64) -> Session {
        Session {
            user: "ana".into(),
            role: Role::Admin,
            expires,
            id: "abc".into(),
            provider: "bootstrap".into(),
        }
    }

    #[test]
    fn sessions_verify_and_refuse_forgery_expiry_and_other_keys() {
        let keys = Keys::generate().unwrap();
        let cookie = keys.session_cookie(&session(now_secs() + 60));
        assert_eq!(keys.session(&cookie).map(|s| s.user), Some("ana".into()));
        // The payload altered (role viewer → admin style edits) fails the MAC.
        let (payload, tag) = cookie.split_once('.').unwrap();
        let mut forged: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        forged["u"] = "mallory".into();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert!(keys.session(&forged).is_none());
        assert!(keys
            .session(&keys.session_cookie(&session(now_secs() - 1)))
            .is_none());
        assert!(Keys::generate().unwrap().session(&cookie).is_none());
        // A sign-in cookie is not a session, though made with the same key.
        let pending = keys.pending_cookie(&keys.new_pending());
        assert!(keys.session(&pending).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let keys = Keys::generate().unwrap();
        let a = session(now_secs() + 60);
        let mut b = a.clone();
        b.id = "other".into();
        assert!(keys.csrf_ok(&a, &keys.csrf(&a)));
        assert!(!keys.csrf_ok(&b, &keys.csrf(&a)));
        assert!(!keys.csrf_ok(&a, ""));
    }

    #[test]
    fn the_bootstrap_token_works_once_and_not_when_wrong_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            use_bootstrap_token(dir.path(), "x"),
            Err(BootstrapError::NoToken)
        );
        let token = make_bootstrap_token(dir.path(), 60).unwrap();
        assert_eq!(
            use_bootstrap_token(dir.path(), "wrong"),
            Err(BootstrapError::Wrong)
        );
        assert_eq!(use_bootstrap_token(dir.path(), &token), Ok(()));
        assert_eq!(
            use_bootstrap_token(dir.path(), &token),
            Err(BootstrapError::NoToken)
        );
        let old = make_bootstrap_token(dir.path(), -1).unwrap();
        assert_eq!(
            use_bootstrap_token(dir.path(), &old),
            Err(BootstrapError::Expired)
        );
    }
}
