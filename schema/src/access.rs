//! Access control in the policy: TLS certificates, identity (OpenID Connect
//! or trusted headers), session keys, named locations, ordered access
//! policies and the block page.
//!
//! ```toml
//! [tls]
//! cert = "certs/default.pem"      # served when no app owns the SNI name
//! key = "certs/default.key"
//! client_ca = "certs/devices-ca.pem"   # optional: managed devices
//!
//! [identity]
//! provider = "oidc"
//! issuer = "https://idp.example"
//! client_id = "palisade"
//! authorization_endpoint = "https://idp.example/authorize"
//! jwks_file = "idp-jwks.json"     # or jwks_url (controld fetches it)
//! session_keys = [{ id = "k2", secret_file = "keys/k2" }, { id = "k1", secret_file = "keys/k1" }]
//!
//! [[location]]
//! name = "office"
//! ranges = ["192.0.2.0/24"]
//!
//! [[access_policy]]
//! name = "unmanaged devices stay out of box"
//! apps = ["box"]
//! devices = ["unmanaged"]
//! action = "block"
//! message = "Use a company laptop for Box."
//! ```

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::activity::SEVERITIES;
use crate::policy::{IpRange, IpTag};

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

/// One ordered access policy: matches when every non-empty filter matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub name: String,
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
    pub action: AccessAction,
    pub message: String,
    /// Alert severity; empty: no alert.
    pub alert_severity: String,
}

/// Device tags the data plane can attach.
pub const DEVICE_TAGS: [&str; 4] = ["managed", "unmanaged", "compliant", "domain_joined"];

// ---- TOML source -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSource {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    client_crl: Option<Spanned<String>>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockPageSource {
    #[serde(default)]
    message: String,
    #[serde(default)]
    support_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessPolicySource {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) apps: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) users: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) ip_tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) not_ip_tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) ip_ranges: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) locations: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) not_locations: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) devices: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) client_apps: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) user_agent_contains: Vec<Spanned<String>>,
    pub(crate) user_agent_regex: Option<Spanned<String>>,
    pub(crate) action: Spanned<String>,
    #[serde(default)]
    pub(crate) message: String,
    pub(crate) alert: Option<Spanned<AlertSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSource {
    severity: Spanned<String>,
}

/// Reports a problem at a source span.
pub(crate) type Report<'a> = &'a mut dyn FnMut(Range<usize>, String);

/// Reads a PEM file relative to the policy and checks it holds `marker`.
pub(crate) fn read_pem(
    base_dir: &Path,
    file: &Spanned<String>,
    what: &str,
    markers: &[&str],
    report: Report<'_>,
) -> Vec<u8> {
    let path = base_dir.join(file.get_ref());
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if markers.iter().any(|m| text.contains(m)) {
                bytes
            } else {
                report(
                    file.span(),
                    format!("{what} {}: no {} in it", path.display(), markers[0]),
                );
                Vec::new()
            }
        }
        Err(e) => {
            report(file.span(), format!("{what} {}: {e}", path.display()));
            Vec::new()
        }
    }
}

const CERT_MARKER: &str = "-----BEGIN CERTIFICATE-----";
const KEY_MARKERS: [&str; 3] = [
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
];

/// A certificate and key pair named in the policy.
pub(crate) fn certified_key(
    base_dir: &Path,
    cert: &Spanned<String>,
    key: &Spanned<String>,
    report: Report<'_>,
) -> Option<CertifiedKeyPem> {
    let chain_pem = read_pem(base_dir, cert, "certificate", &[CERT_MARKER], report);
    let key_pem = read_pem(base_dir, key, "private key", &KEY_MARKERS, report);
    (!chain_pem.is_empty() && !key_pem.is_empty()).then_some(CertifiedKeyPem { chain_pem, key_pem })
}

pub(crate) fn compile_tls(
    source: Option<&Spanned<TlsSource>>,
    base_dir: &Path,
    report: Report<'_>,
) -> TlsSettings {
    let Some(source) = source else {
        return TlsSettings::default();
    };
    let s = source.get_ref();
    let default_certificate = match (&s.cert, &s.key) {
        (Some(c), Some(k)) => certified_key(base_dir, c, k, report),
        (None, None) => None,
        _ => {
            report(source.span(), "[tls] needs both cert and key".into());
            None
        }
    };
    let client_ca_pem = s
        .client_ca
        .as_ref()
        .map(|f| read_pem(base_dir, f, "client_ca", &[CERT_MARKER], report))
        .unwrap_or_default();
    let client_crl_pem = match &s.client_crl {
        Some(f) => {
            if s.client_ca.is_none() {
                report(f.span(), "client_crl needs client_ca".into());
            }
            read_pem(
                base_dir,
                f,
                "client_crl",
                &["-----BEGIN X509 CRL-----"],
                report,
            )
        }
        None => Vec::new(),
    };
    TlsSettings {
        default_certificate,
        client_ca_pem,
        client_crl_pem,
    }
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
                format!("unknown provider {other:?} (oidc, trusted_header, none)"),
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

pub(crate) fn compile_block_page(source: Option<&BlockPageSource>) -> BlockPage {
    source
        .map(|s| BlockPage {
            message: s.message.clone(),
            support_url: s.support_url.clone(),
        })
        .unwrap_or_default()
}

/// `[geoip]`: a MaxMind-format country database (GeoLite2-Country or
/// compatible), carried in the snapshot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeoipSource {
    country_database: Spanned<String>,
}

/// Checks a country database: it must open as MaxMind DB.
pub fn check_country_database(bytes: &[u8]) -> Result<(), String> {
    maxminddb::Reader::from_source(bytes)
        .map(|_| ())
        .map_err(|e| format!("not a MaxMind DB: {e}"))
}

pub(crate) fn compile_geoip(
    source: Option<&Spanned<GeoipSource>>,
    locations: &[IpTag],
    base_dir: &Path,
    report: Report<'_>,
) -> Vec<u8> {
    let Some(source) = source else {
        if let Some(l) = locations.iter().find(|l| !l.countries.is_empty()) {
            report(
                0..0,
                format!(
                    "location {:?} lists countries: add [geoip] country_database",
                    l.name
                ),
            );
        }
        return Vec::new();
    };
    let file = &source.get_ref().country_database;
    let path = base_dir.join(file.get_ref());
    match std::fs::read(&path) {
        Ok(bytes) => match check_country_database(&bytes) {
            Ok(()) => bytes,
            Err(e) => {
                report(
                    file.span(),
                    format!("country_database {}: {e}", path.display()),
                );
                Vec::new()
            }
        },
        Err(e) => {
            report(
                file.span(),
                format!("country_database {}: {e}", path.display()),
            );
            Vec::new()
        }
    }
}

/// Names the access policies may refer to.
pub(crate) struct KnownNames<'a> {
    pub apps: &'a HashMap<String, usize>,
    pub ip_tags: &'a [IpTag],
    pub locations: &'a [IpTag],
}

pub(crate) fn compile_access_policies(
    sources: &[Spanned<AccessPolicySource>],
    known: &KnownNames<'_>,
    report: Report<'_>,
) -> Vec<AccessPolicy> {
    let mut out = Vec::with_capacity(sources.len());
    let mut names: HashMap<String, ()> = HashMap::new();
    for src in sources {
        let s = src.get_ref();
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty() {
            report(s.name.span(), "access_policy name is empty".into());
        } else if names.insert(name.clone(), ()).is_some() {
            report(s.name.span(), format!("duplicate access_policy {name:?}"));
        }
        let mut names_in = |list: &[Spanned<String>], what: &str, ok: &dyn Fn(&str) -> bool| {
            let mut v = Vec::with_capacity(list.len());
            for item in list {
                let text = item.get_ref().trim();
                if !ok(text) {
                    report(item.span(), format!("unknown {what} {text:?}"));
                } else {
                    v.push(text.to_string());
                }
            }
            v
        };
        let apps = names_in(&s.apps, "app", &|n| known.apps.contains_key(n));
        let has_tag = |n: &str| known.ip_tags.iter().any(|t| t.name == n);
        let has_location = |n: &str| known.locations.iter().any(|t| t.name == n);
        let ip_tags = names_in(&s.ip_tags, "ip_tag", &has_tag);
        let not_ip_tags = names_in(&s.not_ip_tags, "ip_tag", &has_tag);
        let locations = names_in(&s.locations, "location", &has_location);
        let not_locations = names_in(&s.not_locations, "location", &has_location);
        let devices = names_in(
            &s.devices,
            "device tag (managed, unmanaged, compliant, domain_joined)",
            &|n| DEVICE_TAGS.contains(&n),
        );
        let client_apps = names_in(&s.client_apps, "client app (browser, native)", &|n| {
            CLIENT_APPS.contains(&n)
        });
        let users = names_in(&s.users, "user", &|n| !n.is_empty());
        let groups = names_in(&s.groups, "group", &|n| !n.is_empty());
        let user_agent_contains = names_in(&s.user_agent_contains, "user agent text", &|n| {
            !n.is_empty()
        });
        let mut ip_ranges = Vec::new();
        for r in &s.ip_ranges {
            match IpRange::parse(r.get_ref()) {
                Ok(range) => ip_ranges.push(range),
                Err(e) => report(r.span(), format!("bad IP range: {e}")),
            }
        }
        let user_agent_regex = match &s.user_agent_regex {
            None => String::new(),
            Some(r) => match regex::Regex::new(r.get_ref()) {
                Ok(_) => r.get_ref().clone(),
                Err(e) => {
                    report(r.span(), format!("bad user_agent_regex: {e}"));
                    String::new()
                }
            },
        };
        let action = AccessAction::parse(s.action.get_ref()).unwrap_or_else(|| {
            report(
                s.action.span(),
                format!(
                    "unknown action {:?} (allow, audit, monitor, block)",
                    s.action.get_ref()
                ),
            );
            AccessAction::Allow
        });
        let alert_severity = match &s.alert {
            None => String::new(),
            Some(a) => {
                let sev = a.get_ref().severity.get_ref();
                if !SEVERITIES.contains(&sev.as_str()) {
                    report(
                        a.get_ref().severity.span(),
                        format!("unknown severity {sev:?} (low, medium, high)"),
                    );
                }
                sev.clone()
            }
        };
        out.push(AccessPolicy {
            name,
            apps,
            users,
            groups,
            ip_tags,
            not_ip_tags,
            ip_ranges,
            locations,
            not_locations,
            devices,
            client_apps,
            user_agent_contains,
            user_agent_regex,
            action,
            message: s.message.clone(),
            alert_severity,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::policy::{compile_source, CompileOptions, Diagnostics, Policy};
    use std::path::Path;

    const BASE: &str = "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"box\"\ndomains = [\"box.test\"]\n[[ip_tag]]\nname = \"corp\"\nranges = [\"10.0.0.0/8\"]\n";

    fn compile(extra: &str) -> Result<Policy, Diagnostics> {
        compile_source(
            "p.toml",
            &format!("{BASE}{extra}"),
            Path::new("."),
            &CompileOptions::default(),
        )
    }

    fn first_error(extra: &str) -> String {
        compile(extra).expect_err("must fail").0[0].to_string()
    }

    #[test]
    fn access_policies_compile_and_survive_a_snapshot() {
        let p = compile(
            "[[location]]\nname = \"office\"\nranges = [\"192.0.2.0/24\"]\n[[access_policy]]\nname = \"a\"\napps = [\"box\"]\nip_tags = [\"corp\"]\nnot_locations = [\"office\"]\ndevices = [\"unmanaged\"]\nclient_apps = [\"native\"]\nuser_agent_regex = \"^curl/\"\naction = \"block\"\nalert = { severity = \"high\" }\n",
        )
        .expect("compiles");
        assert_eq!(p.access_policies[0].action, super::AccessAction::Block);
        assert_eq!(p.locations[0].name, "office");
        // The alert becomes a log-stream rule for controld.
        assert_eq!(p.activity_policies[0].policies, vec!["a".to_string()]);
        let decoded = crate::snapshot::decode(&crate::snapshot::encode(&p)).expect("decodes");
        assert_eq!(decoded.access_policies, p.access_policies);
        assert_eq!(decoded.locations, p.locations);
        assert_eq!(decoded.activity_policies, p.activity_policies);
    }

    #[test]
    fn access_policy_mistakes_are_located() {
        // (the text after the base policy, what the first error starts with
        // or contains)
        let cases: &[(&str, &str)] = &[
            ("[[access_policy]]\nname = \"a\"\nip_tags = [\"nope\"]\naction = \"block\"\n", "p.toml:11:12: error: unknown ip_tag \"nope\""),
            ("[[access_policy]]\nname = \"a\"\naction = \"deny\"\n", "p.toml:11:10: error: unknown action \"deny\""),
            ("[[access_policy]]\nname = \"a\"\ndevices = [\"laptop\"]\naction = \"block\"\n", "unknown device tag"),
            ("[[access_policy]]\nname = \"a\"\nuser_agent_regex = \"(\"\naction = \"block\"\n", "p.toml:11:20: error: bad user_agent_regex"),
            ("[identity]\nprovider = \"oidc\"\nissuer = \"https://idp.test\"\nclient_id = \"c\"\nauthorization_endpoint = \"https://idp.test/a\"\njwks_file = \"missing.json\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "jwks_file ./missing.json: No such file"),
            ("[identity]\nprovider = \"trusted_header\"\nuser_header = \"X-User\"\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "needs trusted_sources"),
            ("[identity]\nprovider = \"trusted_header\"\nuser_header = \"X-User\"\ntrusted_sources = [\"10.0.0.0/8\"]\nsession_keys = [{ id = \"k1\", secret = \"00\" }]\n", "64 hex digits"),
            ("[app.oidc]\nissuer = \"https://idp.test\"\nclient_id = \"c\"\nauthorization_endpoint = \"https://idp.test/a\"\njwks_url = \"https://idp.test/jwks\"\n", "app \"box\" has its own oidc provider: [identity] session_keys are needed"),
            ("[app.oidc]\nissuer = \"https://idp.test\"\n", "provider \"oidc\" needs client_id"),
            ("[[location]]\nname = \"far\"\ncountries = [\"KP\"]\n", "location \"far\" lists countries: add [geoip] country_database"),
            ("[[location]]\nname = \"far\"\ncountries = [\"Korea\"]\n", "not a two-letter ISO 3166 country code"),
            ("[[ip_tag]]\nname = \"x\"\ncountries = [\"KP\"]\n", "countries are for locations"),
            ("[[app]]\nname = \"b\"\ndomains = [\"b.test\"]\ntls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n", "p.toml:12:12: error: certificate ./missing.pem: No such file"),
        ];
        for (extra, expected) in cases {
            let e = first_error(extra);
            let located = expected.starts_with("p.toml:");
            assert!(
                if located {
                    e.starts_with(expected)
                } else {
                    e.contains(expected)
                },
                "{extra:?}: {e}"
            );
        }
    }
}
