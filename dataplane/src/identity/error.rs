//! The identity boundary's errors: why the snapshot's identity settings
//! cannot be used, why an ID token was refused, why a sign-in callback was
//! refused. The last two are shown to the user on the sign-in failure page
//! and logged, so their text says what happened in plain words.

use std::fmt;

pub use palisade_schema::jwt::{IdentityError, TokenError};

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
