//! Access control in the model: TLS material, identity (OpenID Connect or
//! trusted headers), session keys, the block page, and ordered access
//! policies over the [`Filters`] they share with session policies.

use super::names::IpRange;

/// What an access decision does, least restrictive first: the most
/// restrictive matching action wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessAction {
    #[default]
    Allow,
    /// Let through; log and alert.
    Audit,
    /// Let through under session control.
    Monitor,
    Block,
}

impl AccessAction {
    pub const ALL: [AccessAction; 4] = [
        AccessAction::Allow,
        AccessAction::Audit,
        AccessAction::Monitor,
        AccessAction::Block,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessAction::Allow => "allow",
            AccessAction::Audit => "audit",
            AccessAction::Monitor => "monitor",
            AccessAction::Block => "block",
        }
    }

    pub fn parse(text: &str) -> Option<AccessAction> {
        AccessAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// A certificate chain and its private key, both PEM, checked at compile
/// time to contain one of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedKeyPem {
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The TLS listener's material.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub default_certificate: Option<CertifiedKeyPem>,
    /// Roots for client certificates; empty: none are requested.
    pub client_ca_pem: Vec<u8>,
    pub client_crl_pem: Vec<u8>,
}

/// OpenID Connect relying-party settings (implicit flow, form_post).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oidc {
    pub issuer: String,
    pub client_id: String,
    pub authorization_endpoint: String,
    /// The JWKS document (JSON). Empty until controld fetched `jwks_url`.
    pub jwks: String,
    /// Where controld fetches the JWKS when no file is given.
    pub jwks_url: Option<String>,
    pub scopes: String,
}

/// The proxy as a SAML 2.0 service provider: the identity provider from
/// its metadata, and how an assertion becomes a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saml {
    pub idp_entity_id: String,
    /// The HTTP-Redirect single sign-on endpoint.
    pub sso_url: String,
    /// DER certificates the identity provider signs with.
    pub certificates: Vec<Vec<u8>>,
    /// Where controld fetches the metadata when no file is given (entity
    /// ID, SSO URL and certificates stay empty until it has).
    pub metadata_url: Option<String>,
    pub sp_entity_id: String,
    /// Accept identity-provider-initiated sign-in.
    pub allow_unsolicited: bool,
    /// The attribute naming the user; empty: the NameID.
    pub user_attribute: String,
    pub groups_attribute: String,
    /// Values of this attribute are device tags; empty: none.
    pub device_attribute: String,
    /// Signs the `AuthnRequest`s; its certificate goes in the proxy's
    /// metadata.
    pub request_signing: Option<CertifiedKeyPem>,
}

/// The proxy as an app's own SAML identity provider: the app is told the
/// proxy's metadata, and the proxy answers its sign-ins with assertions it
/// signs for the user signed in at the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamlRelay {
    /// The app's assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
    /// The app's entity ID (the audience).
    pub entity_id: String,
    pub name_id_format: String,
    /// The proxy's entity ID toward this app.
    pub idp_entity_id: String,
    pub signing: CertifiedKeyPem,
}

/// The NameID format used when the policy names none.
pub const NAME_ID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// Identity taken from headers set by an identity-aware proxy in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedHeader {
    pub user_header: String,
    pub groups_header: String,
    pub sources: Vec<IpRange>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IdentityProvider {
    #[default]
    None,
    Oidc(Oidc),
    TrustedHeader(TrustedHeader),
    Saml(Saml),
}

/// A key sealing proxy session cookies.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub id: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({:?}, <secret>)", self.id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub provider: IdentityProvider,
    /// The first seals; all open.
    pub session_keys: Vec<SessionKey>,
    pub session_lifetime_secs: u64,
}

/// Default session lifetime: a working day.
pub const DEFAULT_SESSION_LIFETIME_SECS: u64 = 8 * 3600;

/// What the block page says besides the policy's own message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockPage {
    pub message: String,
    pub support_url: String,
}

/// Client kinds an access policy can name.
pub const CLIENT_APPS: [&str; 2] = ["browser", "native"];

/// Who and where a policy applies to, shared by access and session
/// policies: a request matches when every non-empty filter matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub apps: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub ip_tags: Vec<String>,
    pub not_ip_tags: Vec<String>,
    pub ip_ranges: Vec<IpRange>,
    pub locations: Vec<String>,
    pub not_locations: Vec<String>,
    /// Device tags: `managed`, `unmanaged`, `compliant`, `domain_joined`.
    pub devices: Vec<String>,
    pub client_apps: Vec<String>,
    pub user_agent_contains: Vec<String>,
    pub user_agent_regex: String,
}

/// One ordered access policy: its filters and what it decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub name: String,
    pub filters: Filters,
    pub action: AccessAction,
    pub message: String,
    /// Alert severity; empty: no alert.
    pub alert_severity: String,
}

/// Device tags the data plane can attach.
pub const DEVICE_TAGS: [&str; 4] = ["managed", "unmanaged", "compliant", "domain_joined"];

/// Parses 64 hex digits into a key.
pub fn parse_key_hex(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a session key is 64 hex digits (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// Checks a JWKS document: JSON with a `keys` array of RSA or P-256 EC
/// public keys, each with a `kid`.
pub fn check_jwks(text: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no \"keys\" array")?;
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    for k in keys {
        let kid = k
            .get("kid")
            .and_then(|v| v.as_str())
            .ok_or("a key has no kid")?;
        match k.get("kty").and_then(|v| v.as_str()) {
            Some("RSA") => {
                for f in ["n", "e"] {
                    k.get(f)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| format!("RSA key {kid:?} has no {f}"))?;
                }
            }
            Some("EC") => {
                if k.get("crv").and_then(|v| v.as_str()) != Some("P-256") {
                    return Err(format!("EC key {kid:?}: only P-256 is supported"));
                }
                for f in ["x", "y"] {
                    k.get(f)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| format!("EC key {kid:?} has no {f}"))?;
                }
            }
            other => return Err(format!("key {kid:?}: unsupported kty {other:?}")),
        }
    }
    Ok(())
}

/// Checks a country database: it must open as MaxMind DB.
pub fn check_country_database(bytes: &[u8]) -> Result<(), String> {
    maxminddb::Reader::from_source(bytes)
        .map(|_| ())
        .map_err(|e| format!("not a MaxMind DB: {e}"))
}
