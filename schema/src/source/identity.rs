//! `[identity]` and `[app.oidc]`: who the user is (OpenID Connect, SAML
//! (`saml.rs`) or headers from a trusted identity-aware proxy), the keys
//! sealing proxy sessions and their lifetime.
//!
//! ```toml
//! [identity]
//! provider = "oidc"
//! issuer = "https://idp.example"
//! client_id = "palisade"
//! authorization_endpoint = "https://idp.example/authorize"
//! jwks_file = "idp-jwks.json"     # or jwks_url (controld fetches it)
//! session_keys = [{ id = "k2", secret_file = "keys/k2" }, { id = "k1", secret_file = "keys/k1" }]
//! ```

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use super::saml::SamlSource;
use crate::model::access::{
    check_jwks, parse_key_hex, Identity, IdentityProvider, Oidc, SessionKey, TrustedHeader,
    DEFAULT_SESSION_LIFETIME_SECS,
};
use crate::model::names::IpRange;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentitySource {
    provider: Spanned<String>,
    issuer: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    authorization_endpoint: Option<Spanned<String>>,
    jwks_file: Option<Spanned<String>>,
    jwks_url: Option<Spanned<String>>,
    scopes: Option<Spanned<String>>,
    user_header: Option<Spanned<String>>,
    groups_header: Option<Spanned<String>>,
    #[serde(default)]
    trusted_sources: Vec<Spanned<String>>,
    #[serde(default)]
    session_keys: Vec<Spanned<SessionKeySource>>,
    session_lifetime: Option<Spanned<String>>,
    // provider = "saml" (see `saml.rs`).
    idp_metadata_file: Option<Spanned<String>>,
    idp_metadata_url: Option<Spanned<String>>,
    sp_entity_id: Option<Spanned<String>>,
    allow_unsolicited: Option<bool>,
    user_attribute: Option<Spanned<String>>,
    groups_attribute: Option<Spanned<String>>,
    device_attribute: Option<Spanned<String>>,
    signing_cert: Option<Spanned<String>>,
    signing_key: Option<Spanned<String>>,
}

impl IdentitySource {
    fn saml(&self) -> SamlSource {
        SamlSource {
            idp_metadata_file: self.idp_metadata_file.clone(),
            idp_metadata_url: self.idp_metadata_url.clone(),
            sp_entity_id: self.sp_entity_id.clone(),
            allow_unsolicited: self.allow_unsolicited,
            user_attribute: self.user_attribute.clone(),
            groups_attribute: self.groups_attribute.clone(),
            device_attribute: self.device_attribute.clone(),
            signing_cert: self.signing_cert.clone(),
            signing_key: self.signing_key.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionKeySource {
    id: Spanned<String>,
    /// 32 bytes as 64 hex digits.
    secret: Option<Spanned<String>>,
    /// A file holding the 64 hex digits.
    secret_file: Option<Spanned<String>>,
}
fn required<'s>(
    field: &'s Option<Spanned<String>>,
    name: &str,
    provider: &str,
    at: Range<usize>,
    report: Report<'_>,
) -> &'s str {
    match field {
        Some(v) if !v.get_ref().trim().is_empty() => v.get_ref().trim(),
        Some(v) => {
            report(v.span(), format!("{name} is empty"));
            ""
        }
        None => {
            report(at, format!("provider {provider:?} needs {name}"));
            ""
        }
    }
}

fn check_url(field: &Option<Spanned<String>>, name: &str, report: Report<'_>) {
    if let Some(v) = field {
        match url::Url::parse(v.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => report(v.span(), format!("{name}: not an http(s) URL")),
        }
    }
}

pub(crate) fn compile_identity(
    source: Option<&Spanned<IdentitySource>>,
    base_dir: &Path,
    report: Report<'_>,
) -> Identity {
    let Some(source) = source else {
        return Identity::default();
    };
    let at = source.span();
    let s = source.get_ref();
    let kind = s.provider.get_ref().as_str();
    if kind != "saml" && s.saml().any_set() {
        report(
            at.clone(),
            format!("SAML settings given, but provider is {kind:?} (set provider = \"saml\")"),
        );
    }
    let provider = match kind {
        "none" => IdentityProvider::None,
        "oidc" => IdentityProvider::Oidc(compile_oidc(
            &OidcFields {
                issuer: &s.issuer,
                client_id: &s.client_id,
                authorization_endpoint: &s.authorization_endpoint,
                jwks_file: &s.jwks_file,
                jwks_url: &s.jwks_url,
                scopes: &s.scopes,
            },
            at.clone(),
            base_dir,
            report,
        )),
        "saml" => IdentityProvider::Saml(s.saml().compile(at.clone(), base_dir, report)),
        "trusted_header" => {
            let user_header =
                required(&s.user_header, "user_header", kind, at.clone(), report).to_string();
            let groups_header = s
                .groups_header
                .as_ref()
                .map(|v| v.get_ref().trim().to_string())
                .unwrap_or_default();
            for h in [&user_header, &groups_header] {
                if h.bytes().any(|b| !(b.is_ascii_alphanumeric() || b == b'-')) {
                    report(at.clone(), format!("{h:?} is not a header field name"));
                }
            }
            if s.trusted_sources.is_empty() {
                report(
                    at.clone(),
                    "provider \"trusted_header\" needs trusted_sources (the identity proxy's addresses)".into(),
                );
            }
            let mut sources = Vec::new();
            for r in &s.trusted_sources {
                match IpRange::parse(r.get_ref()) {
                    Ok(range) => sources.push(range),
                    Err(e) => report(r.span(), format!("bad IP range: {e}")),
                }
            }
            IdentityProvider::TrustedHeader(TrustedHeader {
                user_header,
                groups_header,
                sources,
            })
        }
        other => {
            report(
                s.provider.span(),
                format!("unknown provider {other:?} (oidc, saml, trusted_header, none)"),
            );
            IdentityProvider::None
        }
    };
    let mut session_keys = Vec::new();
    for k in &s.session_keys {
        let k_src = k.get_ref();
        let id = k_src.id.get_ref().trim().to_string();
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            report(
                k_src.id.span(),
                "session key id: 1 to 32 letters, digits, '-' or '_'".into(),
            );
            continue;
        }
        if session_keys.iter().any(|s: &SessionKey| s.id == id) {
            report(k_src.id.span(), format!("duplicate session key id {id:?}"));
            continue;
        }
        let text = match (&k_src.secret, &k_src.secret_file) {
            (Some(s), None) => Some((s.get_ref().clone(), s.span())),
            (None, Some(f)) => match std::fs::read_to_string(base_dir.join(f.get_ref())) {
                Ok(t) => Some((t, f.span())),
                Err(e) => {
                    report(f.span(), format!("secret_file {}: {e}", f.get_ref()));
                    None
                }
            },
            _ => {
                report(
                    k.span(),
                    "a session key needs secret or secret_file (one of them)".into(),
                );
                None
            }
        };
        if let Some((text, span)) = text {
            match parse_key_hex(&text) {
                Ok(key) => session_keys.push(SessionKey { id, key }),
                Err(e) => report(span, e),
            }
        }
    }
    if provider != IdentityProvider::None && session_keys.is_empty() && s.session_keys.is_empty() {
        report(
            at.clone(),
            "identity needs session_keys to seal proxy sessions".into(),
        );
    }
    let session_lifetime_secs = match &s.session_lifetime {
        None => DEFAULT_SESSION_LIFETIME_SECS,
        Some(v) => match humantime_secs(v.get_ref()) {
            Some(secs) if (60..=30 * 86400).contains(&secs) => secs,
            _ => {
                report(
                    v.span(),
                    "session_lifetime: like \"8h\" or \"30m\", between 1m and 30d".into(),
                );
                DEFAULT_SESSION_LIFETIME_SECS
            }
        },
    };
    Identity {
        provider,
        session_keys,
        session_lifetime_secs,
    }
}

/// The OpenID Connect settings of `[identity]` or an app's `[app.oidc]`.
pub(crate) struct OidcFields<'a> {
    pub issuer: &'a Option<Spanned<String>>,
    pub client_id: &'a Option<Spanned<String>>,
    pub authorization_endpoint: &'a Option<Spanned<String>>,
    pub jwks_file: &'a Option<Spanned<String>>,
    pub jwks_url: &'a Option<Spanned<String>>,
    pub scopes: &'a Option<Spanned<String>>,
}

/// An app's own OpenID Connect provider (`[app.oidc]`), overriding the
/// global one for that app.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcSource {
    issuer: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    authorization_endpoint: Option<Spanned<String>>,
    jwks_file: Option<Spanned<String>>,
    jwks_url: Option<Spanned<String>>,
    scopes: Option<Spanned<String>>,
}

impl OidcSource {
    pub(crate) fn compile(&self, at: Range<usize>, base_dir: &Path, report: Report<'_>) -> Oidc {
        compile_oidc(
            &OidcFields {
                issuer: &self.issuer,
                client_id: &self.client_id,
                authorization_endpoint: &self.authorization_endpoint,
                jwks_file: &self.jwks_file,
                jwks_url: &self.jwks_url,
                scopes: &self.scopes,
            },
            at,
            base_dir,
            report,
        )
    }
}

fn compile_oidc(s: &OidcFields<'_>, at: Range<usize>, base_dir: &Path, report: Report<'_>) -> Oidc {
    let kind = "oidc";
    check_url(s.issuer, "issuer", report);
    check_url(s.authorization_endpoint, "authorization_endpoint", report);
    check_url(s.jwks_url, "jwks_url", report);
    let issuer = required(s.issuer, "issuer", kind, at.clone(), report).to_string();
    let client_id = required(s.client_id, "client_id", kind, at.clone(), report).to_string();
    let authorization_endpoint = required(
        s.authorization_endpoint,
        "authorization_endpoint",
        kind,
        at.clone(),
        report,
    )
    .to_string();
    let jwks = match (s.jwks_file, s.jwks_url) {
        (Some(f), None) => {
            let path = base_dir.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) => match check_jwks(&text) {
                    Ok(()) => text,
                    Err(e) => {
                        report(f.span(), format!("jwks_file {}: {e}", path.display()));
                        String::new()
                    }
                },
                Err(e) => {
                    report(f.span(), format!("jwks_file {}: {e}", path.display()));
                    String::new()
                }
            }
        }
        (None, Some(_)) => String::new(),
        (Some(f), Some(_)) => {
            report(f.span(), "give jwks_file or jwks_url, not both".into());
            String::new()
        }
        (None, None) => {
            report(at, "provider \"oidc\" needs jwks_file or jwks_url".into());
            String::new()
        }
    };
    Oidc {
        issuer,
        client_id,
        authorization_endpoint,
        jwks,
        jwks_url: s.jwks_url.as_ref().map(|u| u.get_ref().clone()),
        scopes: s
            .scopes
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_else(|| "openid profile email".into()),
    }
}

/// "90s", "30m", "8h", "2d".
fn humantime_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}
