//! One protected app: its domains, where the data plane connects, and what
//! access and session control say about it by default.

use super::access::{AccessAction, CertifiedKeyPem, Oidc};
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
    /// How the app's downloads, uploads and custom activities look.
    pub profile: AppProfile,
    /// Data responses rewritten anyway (by default data passes through).
    pub rewrite_data: DataRewrite,
}

/// The data responses of an app that are rewritten although scripts, not
/// the browser, read them: for apps that need their API's URLs rewritten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataRewrite {
    /// Path globs (`*`, `?`, starting with `/`) of the requests.
    pub paths: Vec<String>,
    /// Lower-case `type/subtype` without parameters.
    pub content_types: Vec<String>,
}

impl DataRewrite {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.content_types.is_empty()
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
            profile: AppProfile::default(),
            rewrite_data: DataRewrite::default(),
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
