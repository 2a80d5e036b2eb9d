//! One protected app: its domains, where the data plane connects, and what
//! access and session control say about it by default.

use super::access::{AccessAction, CertifiedKeyPem, Oidc, Saml, SamlRelay};
use super::names::{DnsName, Upstream};
use super::session::AppProfile;

/// One protected app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// Non-empty; each owns all its subdomains.
    pub domains: Vec<DnsName>,
    pub upstream: Upstream,
    /// Extra trust anchors (PEM) for an HTTPS upstream; empty for system roots.
    pub ca_certificates_pem: Vec<u8>,
    /// Literal text after which a bare app host is rewritten in this app's
    /// responses (see [`MAX_BARE_HOST_CONTEXTS`]).
    pub bare_host_contexts: Vec<String>,
    /// Served for `<domain>.<suffix>` and its subdomains; `None`: the
    /// default certificate.
    pub certificate: Option<CertifiedKeyPem>,
    /// What happens when no access policy matches.
    pub access_default: AccessAction,
    /// Requests need a proxy session (identity is configured and the app
    /// did not turn login off).
    pub login_required: bool,
    /// The app's own OpenID Connect provider (else the global one).
    pub oidc: Option<Oidc>,
    /// The app's own SAML identity provider, overriding the global one.
    pub saml: Option<Saml>,
    /// The app's own SAML sign-in, answered by the proxy.
    pub saml_relay: Option<SamlRelay>,
    /// How the app's downloads, uploads and custom activities look.
    pub profile: AppProfile,
    /// `[app.rewrite]`: data rewritten anyway, the leak guard.
    pub rewrite: RewriteSettings,
}

/// How an app's responses are rewritten beyond the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteSettings {
    /// Path globs (`*`, `?`, starting with `/`) of requests whose data
    /// responses (what scripts read) are rewritten although data passes
    /// through by default: for apps that need their API's URLs rewritten.
    pub data_paths: Vec<String>,
    /// Lower-case `type/subtype` of data responses rewritten anyway.
    pub data_content_types: Vec<String>,
    pub leak_guard: LeakGuard,
    /// Further Content-Security-Policy sources the leak guard allows.
    pub leak_allow: Vec<String>,
}

/// The Content-Security-Policy the proxy adds to an app's documents: it
/// allows network destinations on proxy hosts only, so a URL that
/// escaped every rewriting is reported (or blocked), never silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeakGuard {
    /// `Content-Security-Policy-Report-Only`: escapes are logged.
    #[default]
    Report,
    /// `Content-Security-Policy`: escapes are blocked and logged.
    Enforce,
    Off,
}

impl LeakGuard {
    pub fn parse(text: &str) -> Option<LeakGuard> {
        Some(match text {
            "report" => LeakGuard::Report,
            "enforce" => LeakGuard::Enforce,
            "off" => LeakGuard::Off,
            _ => return None,
        })
    }
}

impl RewriteSettings {
    pub fn is_default(&self) -> bool {
        *self == RewriteSettings::default()
    }
}

impl App {
    /// The one way an app is made (by the compiler and by the snapshot
    /// decoder alike): a name, its domains and its upstream, with every
    /// other setting at its default (no own certificate or provider, access
    /// allowed when no policy matches, login required, an empty profile).
    /// Callers then set what their source says.
    pub fn new(name: String, domains: Vec<DnsName>, upstream: Upstream) -> App {
        App {
            name,
            domains,
            upstream,
            ca_certificates_pem: Vec::new(),
            bare_host_contexts: Vec::new(),
            certificate: None,
            access_default: AccessAction::Allow,
            login_required: true,
            oidc: None,
            saml: None,
            saml_relay: None,
            profile: AppProfile::default(),
            rewrite: RewriteSettings::default(),
        }
    }
}

/// Most bare-host context patterns per app.
pub const MAX_BARE_HOST_CONTEXTS: usize = 32;
/// Longest bare-host context pattern (bytes).
pub const MAX_BARE_HOST_CONTEXT_LEN: usize = 64;

/// Checks one bare-host context pattern.
pub fn check_bare_host_context(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("bare_host_contexts: empty pattern".into());
    }
    if pattern.len() > MAX_BARE_HOST_CONTEXT_LEN {
        return Err(format!(
            "bare_host_contexts: pattern {pattern:?} is longer than {MAX_BARE_HOST_CONTEXT_LEN} bytes"
        ));
    }
    if pattern.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "bare_host_contexts: control character in {pattern:?}"
        ));
    }
    Ok(())
}
