//! The identity boundary's errors: why the snapshot's identity settings
//! cannot be used, why an ID token was refused, why a sign-in callback was
//! refused. The last two are shown to the user on the sign-in failure page
//! and logged, so their text says what happened in plain words.

use std::fmt;

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
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::JwksNotJson(e) => write!(f, "identity JWKS: {e}"),
            IdentityError::BadKey { kid, reason } => {
                write!(f, "identity JWKS: key {kid:?}: {reason}")
            }
            IdentityError::NoUsableKey => f.write_str("identity JWKS holds no RSA or P-256 key"),
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

/// Why a sign-in callback was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    /// The identity provider answered with an `error` parameter.
    ProviderSaid(String),
    NoState,
    NoIdToken,
    /// The sealed state does not open under any session key.
    ForgedState,
    /// The sign-in took longer than the state's lifetime.
    StateExpired,
    StateForAnotherHost,
    /// Replayed, or completed in another browser than it started in.
    StateReused,
    Token(TokenError),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::ProviderSaid(v) => write!(f, "the identity provider said: {v}"),
            LoginError::NoState => f.write_str("no state in the callback"),
            LoginError::NoIdToken => f.write_str("no id_token in the callback"),
            LoginError::ForgedState => f.write_str("state is forged or from an old key"),
            LoginError::StateExpired => f.write_str("sign-in took too long; start again"),
            LoginError::StateForAnotherHost => f.write_str("state belongs to another host"),
            LoginError::StateReused => {
                f.write_str("state was already used or belongs to another browser")
            }
            LoginError::Token(e) => write!(f, "id_token refused: {e}"),
        }
    }
}

impl std::error::Error for LoginError {}

impl From<TokenError> for LoginError {
    fn from(e: TokenError) -> Self {
        LoginError::Token(e)
    }
}
