//! The errors of the request path, one enum per boundary, and the one
//! shape the driver answers with ([`ExchangeError`]: status, who is to
//! blame, whether a retry is safe, what to say). Every boundary error
//! converts into it with `From`, so the status and wording of a failure
//! are decided in one place, not at each call site.

use std::fmt;
use std::io;
use std::rc::Rc;

use crate::body::RelayError;
use crate::metrics::UpstreamFailure;
use crate::upstream::ConnectError;

/// Who caused a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Downstream,
    Upstream,
    Internal,
}

/// A failed exchange, as the client is told about it.
#[derive(Debug)]
pub struct ExchangeError {
    pub status: u16,
    pub blame: Blame,
    /// Failed before any request byte reached the app (or on a reused
    /// connection before any response byte): replaying is safe for an
    /// idempotent request without a body.
    pub retry_safe: bool,
    pub detail: String,
    /// What failed, when it was the exchange with the app (counted in
    /// the metrics).
    pub upstream: Option<UpstreamFailure>,
}

impl ExchangeError {
    /// The client sent something the proxy cannot forward (400).
    pub fn downstream(detail: impl Into<String>) -> ExchangeError {
        ExchangeError {
            status: 400,
            blame: Blame::Downstream,
            retry_safe: false,
            detail: detail.into(),
            upstream: None,
        }
    }
}

/// Talking to the app failed: connect, send, or its response head.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The requested host is not a valid TLS server name.
    BadTarget { app: Rc<str>, reason: String },
    /// No connection could be made (`key`: the upstream address).
    Connect {
        app: Rc<str>,
        key: String,
        error: ConnectError,
    },
    /// Writing the request to the app failed.
    Send(io::Error),
    /// The app's response cannot be forwarded.
    Invalid {
        app: Rc<str>,
        error: crate::http::response::BadResponse,
        /// Nothing at all was received (a reused connection closed).
        retry_safe: bool,
    },
    /// Reading the response head failed.
    Receive {
        app: Rc<str>,
        error: io::Error,
        /// Nothing at all was received (a reused connection closed).
        retry_safe: bool,
    },
    /// No response head within the response timeout.
    NoAnswer { app: Rc<str> },
    /// The body the app sent cannot be rewritten, and nothing of the
    /// response reached the client yet.
    Unrewritable {
        app: Rc<str>,
        reason: crate::body::FilterError,
    },
    /// The body's chunked framing is broken, or the app closed or stalled
    /// before its end, and nothing of the response reached the client yet.
    BadBody { app: Rc<str>, error: RelayError },
    /// Session control could not complete its decision on the response.
    Session { app: Rc<str>, error: SessionError },
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::BadTarget { app, reason } => {
                write!(f, "app \"{app}\": bad upstream name: {reason}")
            }
            UpstreamError::Connect { app, key, error } => {
                write!(f, "app \"{app}\" ({key}): {error}")
            }
            UpstreamError::Send(e) => write!(f, "sending the request to the app failed: {e}"),
            UpstreamError::Invalid { app, error, .. } => {
                write!(f, "app \"{app}\" sent an invalid response: {error}")
            }
            UpstreamError::Receive { app, error, .. } => write!(
                f,
                "app \"{app}\" sent an invalid response: reading the response failed: {error}"
            ),
            UpstreamError::NoAnswer { app } => write!(f, "app \"{app}\" did not answer in time"),
            UpstreamError::Unrewritable { app, reason } => {
                write!(
                    f,
                    "app \"{app}\" sent a body that cannot be rewritten: {reason}"
                )
            }
            UpstreamError::BadBody { app, error } => match error {
                RelayError::Framing { error, .. } => {
                    write!(f, "app \"{app}\" sent an invalid response body: {error}")
                }
                RelayError::Source { error, .. } if error.kind() == io::ErrorKind::TimedOut => {
                    write!(f, "app \"{app}\" stopped sending its response body")
                }
                RelayError::Source { error, .. } => {
                    write!(f, "app \"{app}\" sent an incomplete response body: {error}")
                }
                other => write!(f, "app \"{app}\": {other:?}"),
            },
            UpstreamError::Session { app, error } => write!(f, "app \"{app}\": {error}"),
        }
    }
}

impl UpstreamError {
    /// The reason the metrics count it under.
    pub fn failure(&self) -> UpstreamFailure {
        match self {
            UpstreamError::Connect {
                error: ConnectError::TimedOut,
                ..
            } => UpstreamFailure::ConnectTimeout,
            UpstreamError::Connect { .. } | UpstreamError::BadTarget { .. } => {
                UpstreamFailure::Connect
            }
            UpstreamError::NoAnswer { .. } => UpstreamFailure::Timeout,
            UpstreamError::BadBody {
                error: RelayError::Source { error, .. },
                ..
            } if error.kind() == io::ErrorKind::TimedOut => UpstreamFailure::Timeout,
            UpstreamError::Send(_)
            | UpstreamError::Receive { .. }
            | UpstreamError::BadBody {
                error: RelayError::Source { .. } | RelayError::Sink(_),
                ..
            } => UpstreamFailure::Broken,
            UpstreamError::Invalid { .. }
            | UpstreamError::Unrewritable { .. }
            | UpstreamError::BadBody { .. }
            | UpstreamError::Session { .. } => UpstreamFailure::BadResponse,
        }
    }
}

impl From<UpstreamError> for ExchangeError {
    fn from(e: UpstreamError) -> ExchangeError {
        let (status, blame, retry_safe) = match &e {
            UpstreamError::BadTarget { .. } => (502, Blame::Internal, false),
            UpstreamError::Connect { error, .. } => {
                let status = if matches!(error, ConnectError::TimedOut) {
                    504
                } else {
                    502
                };
                (status, Blame::Upstream, true)
            }
            UpstreamError::Send(_) => (502, Blame::Upstream, true),
            UpstreamError::Invalid { retry_safe, .. }
            | UpstreamError::Receive { retry_safe, .. } => (502, Blame::Upstream, *retry_safe),
            UpstreamError::NoAnswer { .. } => (504, Blame::Upstream, false),
            UpstreamError::BadBody {
                error: RelayError::Source { error, .. },
                ..
            } if error.kind() == io::ErrorKind::TimedOut => (504, Blame::Upstream, false),
            UpstreamError::Unrewritable { .. }
            | UpstreamError::BadBody { .. }
            | UpstreamError::Session { .. } => (502, Blame::Upstream, false),
        };
        ExchangeError {
            status,
            blame,
            retry_safe,
            detail: e.to_string(),
            upstream: Some(e.failure()),
        }
    }
}

/// Forwarding the request body failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestBodyError {
    /// The client's chunked framing is broken.
    Framing(crate::http::chunked::ChunkError),
    /// Reading from the client failed.
    Read(io::Error),
    /// Writing to the app failed.
    Send(io::Error),
    /// Unwrapping proxy hosts in the body failed.
    Unwrap(crate::body::FilterError),
    /// Writing `100 Continue` or an interim response to the client failed.
    Interim(io::Error),
}

impl From<RelayError> for RequestBodyError {
    fn from(e: RelayError) -> RequestBodyError {
        match e {
            RelayError::Sink(e) => RequestBodyError::Send(e),
            RelayError::Framing { error, .. } => RequestBodyError::Framing(error),
            RelayError::Source { error, .. } => RequestBodyError::Read(error),
            RelayError::Filter { reason, .. } => RequestBodyError::Unwrap(reason),
        }
    }
}

impl From<RequestBodyError> for ExchangeError {
    fn from(e: RequestBodyError) -> ExchangeError {
        match e {
            RequestBodyError::Framing(e) => {
                ExchangeError::downstream(format!("bad request body: {e}"))
            }
            RequestBodyError::Read(e) => {
                ExchangeError::downstream(format!("reading the request body: {e}"))
            }
            RequestBodyError::Send(e) => UpstreamError::Send(e).into(),
            RequestBodyError::Unwrap(reason) => ExchangeError {
                status: 502,
                blame: Blame::Internal,
                retry_safe: false,
                detail: format!("rewriting the request body failed: {reason}"),
                upstream: None,
            },
            RequestBodyError::Interim(e) => {
                ExchangeError::downstream(format!("writing an interim response: {e}"))
            }
        }
    }
}

/// Session control could not complete a decision it made.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// Reading a download to inspect it failed.
    Hold(io::Error),
    /// Encrypting a protected file failed.
    Protect(crate::body::FilterError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Hold(e) => write!(f, "reading the download: {e}"),
            SessionError::Protect(e) => e.fmt(f),
        }
    }
}

impl From<crate::body::FilterError> for SessionError {
    fn from(e: crate::body::FilterError) -> SessionError {
        SessionError::Protect(e)
    }
}
