//! ID token verification, shared by the data plane's sign-in and the
//! console's (OpenID Connect Core §3.2.2.11, RFC 7519 JWT,
//! RFC 7515 JWS compact form). Only RS256 and ES256 are accepted, and each
//! only with a key of its own type found by `kid` in the snapshot's JWKS:
//! `alg: none` and the HMAC-with-a-public-key confusion have no path in.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// Longest ID token accepted (bytes).
pub const MAX_ID_TOKEN: usize = 16 * 1024;
/// Clock skew allowed on `exp` and `nbf` (seconds).
pub const SKEW_SECS: i64 = 60;

/// Why the identity settings of a snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The JWKS document is not JSON.
    JwksNotJson(String),
    /// A key in it is malformed.
    BadKey { kid: String, reason: TokenError },
    /// It holds no RSA or P-256 key this build can use.
    NoUsableKey,
    /// The key a SAML service provider signs its requests with.
    SamlSigningKey(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::JwksNotJson(e) => write!(f, "identity JWKS: {e}"),
            IdentityError::BadKey { kid, reason } => {
                write!(f, "identity JWKS: key {kid:?}: {reason}")
            }
            IdentityError::NoUsableKey => f.write_str("identity JWKS holds no RSA or P-256 key"),
            IdentityError::SamlSigningKey(e) => write!(f, "SAML request signing key: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Why an ID token was refused (OpenID Connect Core §3.2.2.11).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    TooLong,
    /// Not three dot-separated parts (RFC 7515 §7.1).
    NotCompact,
    NotBase64 {
        part: &'static str,
    },
    NotJson {
        part: &'static str,
    },
    UnknownKey {
        kid: String,
    },
    /// RS256 with an EC key or ES256 with an RSA key.
    AlgorithmDoesNotFitKey {
        alg: String,
        kid: String,
    },
    /// Anything but RS256 and ES256 (`none`, HMAC, …).
    AlgorithmNotAccepted {
        alg: String,
    },
    BadSignature,
    /// A P-256 key whose coordinates are not 32 bytes each.
    BadCoordinates,
    WrongIssuer {
        found: String,
    },
    WrongAudience,
    Expired,
    NoExpiry,
    NotYetValid,
    NonceMismatch,
    NoUser,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => f.write_str("token too long"),
            TokenError::NotCompact => f.write_str("not a signed JWT (three dot-separated parts)"),
            TokenError::NotBase64 { part } => write!(f, "{part} is not base64url"),
            TokenError::NotJson { part } => write!(f, "{part} is not JSON"),
            TokenError::UnknownKey { kid } => write!(f, "unknown signing key (kid {kid:?})"),
            TokenError::AlgorithmDoesNotFitKey { alg, kid } => {
                write!(f, "alg {alg} does not fit key {kid:?}")
            }
            TokenError::AlgorithmNotAccepted { alg } => {
                write!(f, "alg {alg:?} is not accepted (RS256, ES256)")
            }
            TokenError::BadSignature => f.write_str("bad signature"),
            TokenError::BadCoordinates => f.write_str("bad P-256 coordinates"),
            TokenError::WrongIssuer { found } => write!(f, "wrong issuer {found:?}"),
            TokenError::WrongAudience => f.write_str("token is for another audience"),
            TokenError::Expired => f.write_str("token expired"),
            TokenError::NoExpiry => f.write_str("token has no exp"),
            TokenError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            TokenError::NonceMismatch => f.write_str("nonce does not match this sign-in"),
            TokenError::NoUser => f.write_str("token names no user"),
        }
    }
}

impl std::error::Error for TokenError {}

enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point (0x04 ‖ x ‖ y).
    P256(Vec<u8>),
}

/// The provider's keys by `kid`.
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

fn b64(part: &'static str, text: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| TokenError::NotBase64 { part })
}

impl KeySet {
    /// Parses a JWKS document; keys of unsupported types are skipped.
    pub fn parse(jwks: &str) -> Result<KeySet, IdentityError> {
        let doc: serde_json::Value =
            serde_json::from_str(jwks).map_err(|e| IdentityError::JwksNotJson(e.to_string()))?;
        let mut keys = HashMap::new();
        for k in doc
            .get("keys")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let field = |name: &str| k.get(name).and_then(|v| v.as_str());
            let Some(kid) = field("kid") else { continue };
            let bad = |reason| IdentityError::BadKey {
                kid: kid.to_string(),
                reason,
            };
            let key = match (field("kty"), field("crv")) {
                (Some("RSA"), _) => match (field("n"), field("e")) {
                    (Some(n), Some(e)) => PublicKey::Rsa {
                        n: b64("n", n).map_err(bad)?,
                        e: b64("e", e).map_err(bad)?,
                    },
                    _ => continue,
                },
                (Some("EC"), Some("P-256")) => match (field("x"), field("y")) {
                    (Some(x), Some(y)) => {
                        let (x, y) = (b64("x", x).map_err(bad)?, b64("y", y).map_err(bad)?);
                        if x.len() != 32 || y.len() != 32 {
                            return Err(bad(TokenError::BadCoordinates));
                        }
                        let mut point = vec![4u8];
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        PublicKey::P256(point)
                    }
                    _ => continue,
                },
                _ => continue,
            };
            keys.insert(kid.to_string(), key);
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What the relying party expects of a token.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub nonce: &'a str,
    pub now_unix: i64,
}

/// The verified identity in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    pub groups: Vec<String>,
    /// `compliant`, `domain_joined` when the token says so.
    pub device_tags: Vec<String>,
}

/// Verifies signature, `iss`, `aud`, `exp`, `nbf` and `nonce`.
pub fn verify(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Result<Claims, TokenError> {
    if token.len() > MAX_ID_TOKEN {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotCompact);
    };
    let header: serde_json::Value = serde_json::from_slice(&b64("header", h)?)
        .map_err(|_| TokenError::NotJson { part: "header" })?;
    let alg = header.get("alg").and_then(|v| v.as_str()).unwrap_or("");
    let kid = header.get("kid").and_then(|v| v.as_str()).unwrap_or("");
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let sig = b64("signature", s)?;
    let key = keys.keys.get(kid).ok_or_else(|| TokenError::UnknownKey {
        kid: kid.to_string(),
    })?;
    let ok = match (alg, key) {
        ("RS256", PublicKey::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
            .is_ok(),
        ("ES256", PublicKey::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &sig)
                .is_ok()
        }
        ("RS256" | "ES256", _) => {
            return Err(TokenError::AlgorithmDoesNotFitKey {
                alg: alg.to_string(),
                kid: kid.to_string(),
            })
        }
        _ => {
            return Err(TokenError::AlgorithmNotAccepted {
                alg: alg.to_string(),
            })
        }
    };
    if !ok {
        return Err(TokenError::BadSignature);
    }
    let claims: serde_json::Value = serde_json::from_slice(&b64("payload", p)?)
        .map_err(|_| TokenError::NotJson { part: "payload" })?;
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
    let number = |name: &str| claims.get(name).and_then(|v| v.as_i64());
    if text("iss") != Some(expect.issuer) {
        return Err(TokenError::WrongIssuer {
            found: text("iss").unwrap_or("").to_string(),
        });
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == expect.audience,
        Some(serde_json::Value::Array(list)) => {
            list.iter().any(|a| a.as_str() == Some(expect.audience))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    match number("exp") {
        Some(exp) if expect.now_unix < exp + SKEW_SECS => {}
        Some(_) => return Err(TokenError::Expired),
        None => return Err(TokenError::NoExpiry),
    }
    if let Some(nbf) = number("nbf") {
        if expect.now_unix + SKEW_SECS < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if text("nonce") != Some(expect.nonce) {
        return Err(TokenError::NonceMismatch);
    }
    let user = text("preferred_username")
        .or_else(|| text("email"))
        .or_else(|| text("sub"))
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .ok_or(TokenError::NoUser)?
        .to_string();
    let groups = claims
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|g| g.as_str())
                .filter(|g| g.len() <= 256)
                .take(256)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut device_tags = Vec::new();
    for tag in ["compliant", "domain_joined"] {
        if claims.get(tag).and_then(|v| v.as_bool()) == Some(true) {
            device_tags.push(tag.to_string());
        }
    }
    Ok(Claims {
        user,
        groups,
        device_tags,
    })
}
