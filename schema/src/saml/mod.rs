//! SAML 2.0 for the proxy as a service provider (Web Browser SSO profile,
//! SAML Profiles §4.1): the identity provider's metadata
//! ([`metadata`]), the `AuthnRequest` sent over the HTTP-Redirect binding
//! and the proxy's own metadata ([`request`]), and the strict validation of
//! the `Response` posted back ([`response`]) with its XML signature
//! ([`dsig`], over [`c14n`]).
//!
//! Shared by the policy compiler (metadata) and the data plane (sign-in),
//! as the ID token checks are.

pub mod c14n;
pub mod dsig;
pub mod issue;
pub mod metadata;
pub mod request;
pub mod response;

use std::fmt;

pub const PROTOCOL_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const METADATA_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Largest `SAMLResponse` accepted, decoded (bytes). Real responses are
/// a few KiB; the bound comes before any parsing.
pub const MAX_RESPONSE: usize = 48 * 1024;
/// Most XML nodes parsed from one message.
pub const MAX_NODES: u32 = 4096;
/// Clock skew allowed on every time bound (seconds).
pub const SKEW_SECS: i64 = 120;

/// Why a SAML message was refused. The text is shown on the refusal page
/// and recorded in the log, so it says what happened in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamlError {
    TooLarge,
    NotBase64,
    /// Not well-formed XML (or over the node bound).
    NotXml(String),
    /// A document type declaration: entities (XXE, expansion) have no way in.
    Dtd,
    NotAResponse,
    /// The identity provider's status was not Success.
    Status(String),
    /// Assertions in the message other than one (signature wrapping
    /// smuggles a second one in).
    AssertionCount(usize),
    Encrypted,
    Unsigned,
    MalformedSignature(&'static str),
    UnsupportedAlgorithm(String),
    WeakAlgorithm(String),
    ReferenceNotFound,
    /// Two elements share an `ID`: the reference is ambiguous.
    DuplicateId,
    /// The signature does not sign the element it is placed in.
    NotEnveloped,
    DigestMismatch,
    /// No certificate from the metadata verifies the signature.
    BadSignature,
    /// A comment or processing instruction inside the assertion (they
    /// are not signed, and have truncated names elsewhere).
    Comment,
    WrongIssuer,
    WrongDestination,
    /// A signed response without a `Destination`.
    NoDestination,
    WrongAudience,
    WrongRecipient,
    NoBearerConfirmation,
    Expired,
    NotYetValid,
    BadTime(String),
    /// An unsolicited response where the policy does not allow them.
    Unsolicited,
    /// `InResponseTo` names no sign-in this browser started.
    InResponseTo,
    NoNameId,
    Replayed,
}

impl fmt::Display for SamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SamlError::*;
        match self {
            TooLarge => f.write_str("the SAML response is too large"),
            NotBase64 => f.write_str("the SAML response is not base64"),
            NotXml(e) => write!(f, "the SAML response is not well-formed XML: {e}"),
            Dtd => f.write_str("the SAML response has a document type declaration (refused)"),
            NotAResponse => f.write_str("the message is not a SAML Response"),
            Status(s) => write!(f, "the identity provider refused the sign-in ({s})"),
            AssertionCount(n) => write!(f, "the response carries {n} assertions, not one"),
            Encrypted => f.write_str("encrypted assertions are not supported"),
            Unsigned => f.write_str("neither the response nor the assertion is signed"),
            MalformedSignature(part) => write!(f, "the signature is malformed ({part})"),
            UnsupportedAlgorithm(a) => write!(f, "unsupported signature algorithm {a}"),
            WeakAlgorithm(a) => write!(f, "weak signature algorithm {a} (SHA-256 or stronger)"),
            ReferenceNotFound => f.write_str("the signature's reference names no element"),
            DuplicateId => f.write_str("two elements share the signed ID"),
            NotEnveloped => f.write_str("the signature does not sign the element it is in"),
            DigestMismatch => f.write_str("the signed content was changed (digest mismatch)"),
            BadSignature => {
                f.write_str("the signature is not valid for the identity provider's certificate")
            }
            Comment => f.write_str("the assertion contains a comment or processing instruction"),
            WrongIssuer => f.write_str("the assertion is from another issuer"),
            WrongDestination => f.write_str("the response is addressed to another destination"),
            NoDestination => f.write_str("the signed response names no destination"),
            WrongAudience => f.write_str("the assertion is for another audience"),
            WrongRecipient => f.write_str("the assertion is for another recipient"),
            NoBearerConfirmation => f.write_str("the assertion has no usable bearer confirmation"),
            Expired => f.write_str("the assertion has expired"),
            NotYetValid => f.write_str("the assertion is not yet valid"),
            BadTime(t) => write!(f, "bad time {t:?} in the assertion"),
            Unsolicited => f.write_str("unsolicited responses are not accepted here"),
            InResponseTo => {
                f.write_str("the response answers a sign-in this browser did not start")
            }
            NoNameId => f.write_str("the assertion names no subject"),
            Replayed => f.write_str("the assertion was already used"),
        }
    }
}

impl std::error::Error for SamlError {}

/// An `xs:dateTime` in UTC (SAML Core §1.3.3: no time zone but `Z`) as
/// Unix seconds; fractions of a second are dropped.
pub fn parse_instant(text: &str) -> Result<i64, SamlError> {
    let bad = || SamlError::BadTime(text.chars().take(40).collect());
    let t = text.trim();
    let t = t.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let time = time.split('.').next().ok_or_else(bad)?;
    let num = |s: &str| -> Result<i64, SamlError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let mut d = date.split('-');
    let (y, m, day) = (
        num(d.next().unwrap_or(""))?,
        num(d.next().unwrap_or(""))?,
        num(d.next().unwrap_or(""))?,
    );
    let mut c = time.split(':');
    let (hh, mm, ss) = (
        num(c.next().unwrap_or(""))?,
        num(c.next().unwrap_or(""))?,
        num(c.next().unwrap_or(""))?,
    );
    if d.next().is_some()
        || c.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, day) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Unix seconds as an `xs:dateTime` in UTC.
pub fn format_instant(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Inverse of days_from_civil.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses a message with the limits every SAML document gets: no
/// document type declaration at all, a bounded node count.
pub fn parse_document(text: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    // roxmltree refuses DTDs with declarations; an empty `<!DOCTYPE x>`
    // is refused here too (SAML messages never carry one).
    if memchr_ci(text.as_bytes(), b"<!doctype") || text.contains("<!ENTITY") {
        return Err(SamlError::Dtd);
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::Dtd,
        other => SamlError::NotXml(other.to_string()),
    })
}

fn memchr_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        for t in [0, 951_782_400, 1_922_918_400, 4_102_444_799] {
            assert_eq!(parse_instant(&format_instant(t)).unwrap(), t);
        }
        assert_eq!(
            parse_instant("2026-12-08T01:02:03.123Z").unwrap(),
            1_796_691_723
        );
        for bad in [
            "2026-12-08T01:02:03",
            "2026-12-08T01:02:03+01:00",
            "x",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn document_types_are_refused() {
        for xml in [
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
            "<!doctype r><r/>",
        ] {
            assert_eq!(parse_document(xml).unwrap_err(), SamlError::Dtd);
        }
    }
}
