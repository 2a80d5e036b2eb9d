//! The compiled snapshot a core serves from: the host map, each app's
//! upstream and settings, the TLS listener configuration, the sign-in
//! settings, access policies and session policies.
//!
//! Each core builds its own from the snapshot bytes (shared-nothing):
//! lookups touch no state shared with another core. A request holds an
//! `Rc` to the snapshot current when its head arrived until it ends.

use crate::hostmap::HostMap;
use crate::iptags::IpTagTable;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use palisade_schema::policy::{Policy, Scheme, Upstream, UpstreamHost};
use rustls::pki_types::ServerName;

/// Trust anchors shared read-only by every core (cloned into each core's
/// TLS configurations when a snapshot is compiled, never touched per
/// request).
pub type SharedRoots = Arc<rustls::RootCertStore>;

/// Where one app's requests go.
pub struct AppRoute {
    pub name: Rc<str>,
    pub upstream: UpstreamRoute,
    /// Text after which bare app hosts are rewritten in this app's
    /// responses (none configured: `None`).
    pub bare_host_contexts: Option<crate::rewrite::contexts::ContextPatterns>,
    /// Requests need a proxy session.
    pub login_required: bool,
    /// The app's own OpenID Connect provider (else the global one).
    pub oidc: Option<Box<crate::identity::OidcProvider>>,
    /// The app's own SAML identity provider (else the global one).
    pub saml: Option<Box<crate::identity::SamlProvider>>,
    /// The app's own SAML sign-in, answered by the proxy.
    pub saml_relay: Option<Box<crate::identity::saml_relay::SamlRelay>>,
    /// How the app's downloads, uploads and custom activities look.
    pub profile: palisade_schema::session::AppProfile,
    /// `[app.rewrite]`: data rewritten anyway, the leak guard.
    pub rewrite: palisade_schema::policy::RewriteSettings,
    /// The leak guard's header line for the app's documents (empty: off).
    pub leak_guard: Box<[u8]>,
}

impl AppRoute {
    /// Who signs users in for this app: its own provider, else the
    /// global one.
    pub fn sign_in<'a>(
        &'a self,
        global: &'a crate::identity::IdentityConfig,
    ) -> Option<crate::identity::SignInWith<'a>> {
        use crate::identity::SignInWith;
        match (&self.oidc, &self.saml) {
            (Some(o), _) => Some(SignInWith::Oidc(o)),
            (None, Some(s)) => Some(SignInWith::Saml(s)),
            (None, None) => global.sign_in_provider(),
        }
    }

    /// The app asks for data responses to requests for this path (the
    /// query is ignored) to be rewritten (`[app.rewrite] data_paths`).
    pub fn rewrites_data_at(&self, path_and_query: &[u8]) -> bool {
        let path = path_and_query
            .split(|b| *b == b'?')
            .next()
            .unwrap_or_default();
        self.rewrite
            .data_paths
            .iter()
            .any(|g| palisade_schema::session::glob_matches(g.as_bytes(), path, false))
    }
}

/// The connection target of an app, resolved as far as it can be ahead of
/// time.
pub enum UpstreamRoute {
    /// Connect to the requested app host itself: HTTPS, port 443.
    Direct { tls: UpstreamTls },
    /// Connect to this address for every host of the app.
    Fixed {
        /// Pool key, also used in error pages: `scheme://host:port`.
        key: Rc<str>,
        host: Rc<str>,
        ip: Option<IpAddr>,
        port: u16,
        /// `Some` for HTTPS upstreams.
        tls: Option<(UpstreamTls, ServerName<'static>)>,
    },
}

/// The TLS settings toward an app, in two ALPN flavours: offering `h2`
/// and `http/1.1` (the app picks), and `http/1.1` only (requests that
/// upgrade the connection, or HTTP/2 toward apps turned off).
#[derive(Clone)]
pub struct UpstreamTls {
    pub h2: Arc<rustls::ClientConfig>,
    pub http1: Arc<rustls::ClientConfig>,
}

impl UpstreamTls {
    fn new(roots: rustls::RootCertStore) -> UpstreamTls {
        let http1 = client_config(roots);
        let mut h2 = http1.clone();
        h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        UpstreamTls {
            h2: Arc::new(h2),
            http1: Arc::new(http1),
        }
    }

    /// The flavour for one request.
    pub fn pick(&self, http2: bool) -> &Arc<rustls::ClientConfig> {
        if http2 {
            &self.h2
        } else {
            &self.http1
        }
    }
}

/// Why a snapshot could not be compiled for serving.
#[derive(Debug)]
#[non_exhaustive]
pub enum SnapshotError {
    BadCaCertificates {
        app: String,
        reason: String,
    },
    /// An app's bare-host contexts cannot be searched for.
    BadContexts {
        app: String,
        error: aho_corasick::BuildError,
    },
    BadSuffix(crate::hostmap::BadSuffix),
    Tls(crate::tls::TlsError),
    /// The global identity provider (`app: None`) or an app's own.
    Identity {
        app: Option<String>,
        error: crate::identity::IdentityError,
    },
    Access(crate::access::AccessError),
    Session(crate::session_policy::SessionPolicyError),
    /// An app's SAML relay signing key.
    SamlRelay {
        app: String,
        error: String,
    },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::BadCaCertificates { app, reason } => {
                write!(f, "app {app:?}: bad CA certificates: {reason}")
            }
            SnapshotError::BadContexts { app, error } => {
                write!(f, "app {app:?}: bare_host_contexts: {error}")
            }
            SnapshotError::BadSuffix(e) => write!(f, "proxy suffix: {e}"),
            SnapshotError::Tls(e) => write!(f, "tls: {e}"),
            SnapshotError::Identity { app: None, error } => error.fmt(f),
            SnapshotError::Identity {
                app: Some(app),
                error,
            } => write!(f, "app {app:?}: {error}"),
            SnapshotError::Access(e) => write!(f, "access policies: {e}"),
            SnapshotError::Session(e) => e.fmt(f),
            SnapshotError::SamlRelay { app, error } => {
                write!(f, "app {app:?}: SAML relay signing key: {error}")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The proxy hosts (`<domain>.<suffix>`) of `apps`.
fn proxy_hosts<'a>(
    suffix: &str,
    apps: impl IntoIterator<Item = &'a palisade_schema::policy::App>,
) -> Vec<String> {
    apps.into_iter()
        .flat_map(|a| {
            a.domains
                .iter()
                .map(move |d| format!("{}.{suffix}", d.as_str()))
        })
        .collect()
}

impl From<crate::hostmap::BadSuffix> for SnapshotError {
    fn from(e: crate::hostmap::BadSuffix) -> Self {
        SnapshotError::BadSuffix(e)
    }
}

impl From<crate::tls::TlsError> for SnapshotError {
    fn from(e: crate::tls::TlsError) -> Self {
        SnapshotError::Tls(e)
    }
}

impl From<crate::identity::IdentityError> for SnapshotError {
    fn from(error: crate::identity::IdentityError) -> Self {
        SnapshotError::Identity { app: None, error }
    }
}

impl From<crate::access::AccessError> for SnapshotError {
    fn from(e: crate::access::AccessError) -> Self {
        SnapshotError::Access(e)
    }
}

impl From<crate::session_policy::SessionPolicyError> for SnapshotError {
    fn from(e: crate::session_policy::SessionPolicyError) -> Self {
        SnapshotError::Session(e)
    }
}

/// One compiled snapshot.
pub struct Snapshot {
    pub version: u64,
    /// Host → app, the proxy suffix (what the rewriter needs).
    pub hosts: HostMap,
    pub apps: Vec<AppRoute>,
    /// Client-address tags for access and session policies.
    pub ip_tags: IpTagTable,
    /// The TLS listener's configuration (`None`: no certificate).
    pub tls: Option<crate::tls::TlsServer>,
    /// How users sign in (the proxy's own session).
    pub sign_in: crate::identity::IdentityConfig,
    pub access: crate::access::AccessTable,
    pub block_page: palisade_schema::access::BlockPage,
    /// Session policies (their who/where filters live in `access`).
    pub session_policies: crate::session_policy::SessionPolicies,
    /// The script injected into rewritten documents.
    pub client: crate::client::Instrumentation,
    /// The installing core's counters of each app, by index in `apps`
    /// (empty until [`crate::core::Core::install`] lines them up).
    pub app_counters: Vec<std::sync::Arc<crate::metrics::AppCounters>>,
}

impl Snapshot {
    /// Compiles `policy`; `system_roots` are the trust anchors for HTTPS
    /// upstreams without (or in addition to) an app CA file.
    pub fn build(
        policy: &Policy,
        system_roots: &rustls::RootCertStore,
    ) -> Result<Snapshot, SnapshotError> {
        let mut apps = Vec::with_capacity(policy.apps.len());
        let default_tls = UpstreamTls::new(system_roots.clone());
        for app in &policy.apps {
            let tls = if app.ca_certificates_pem.is_empty() {
                default_tls.clone()
            } else {
                let mut roots = system_roots.clone();
                let mut reader = app.ca_certificates_pem.as_slice();
                let mut added = 0;
                for cert in rustls_pemfile::certs(&mut reader) {
                    let cert = cert.map_err(|e| SnapshotError::BadCaCertificates {
                        app: app.name.clone(),
                        reason: e.to_string(),
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| SnapshotError::BadCaCertificates {
                            app: app.name.clone(),
                            reason: e.to_string(),
                        })?;
                    added += 1;
                }
                if added == 0 {
                    return Err(SnapshotError::BadCaCertificates {
                        app: app.name.clone(),
                        reason: "no certificate in the PEM data".into(),
                    });
                }
                UpstreamTls::new(roots)
            };
            let upstream = match &app.upstream {
                Upstream::Direct => UpstreamRoute::Direct { tls },
                Upstream::Fixed { scheme, host, port } => {
                    let (host_text, ip) = match host {
                        UpstreamHost::Name(n) => (n.as_str().to_string(), None),
                        UpstreamHost::Ip(ip) => (ip.to_string(), Some(*ip)),
                    };
                    let tls = match scheme {
                        Scheme::Http => None,
                        Scheme::Https => {
                            let name = match ip {
                                Some(ip) => ServerName::IpAddress(ip.into()),
                                None => ServerName::try_from(host_text.clone()).map_err(|e| {
                                    SnapshotError::BadCaCertificates {
                                        app: app.name.clone(),
                                        reason: e.to_string(),
                                    }
                                })?,
                            };
                            Some((tls, name))
                        }
                    };
                    UpstreamRoute::Fixed {
                        key: format!("{}://{host}:{port}", scheme.as_str()).into(),
                        host: host_text.into(),
                        ip,
                        port: *port,
                        tls,
                    }
                }
            };
            apps.push(AppRoute {
                name: app.name.as_str().into(),
                upstream,
                bare_host_contexts: crate::rewrite::contexts::ContextPatterns::build(
                    &app.bare_host_contexts,
                )
                .map_err(|error| SnapshotError::BadContexts {
                    app: app.name.clone(),
                    error,
                })?,
                login_required: app.login_required,
                oidc: match &app.oidc {
                    Some(o) => Some(Box::new(crate::identity::OidcProvider::build(o).map_err(
                        |error| SnapshotError::Identity {
                            app: Some(app.name.clone()),
                            error,
                        },
                    )?)),
                    None => None,
                },
                saml: match &app.saml {
                    Some(s) => Some(Box::new(
                        crate::identity::SamlProvider::build(
                            s,
                            proxy_hosts(policy.suffix.as_str(), [app]),
                        )
                        .map_err(|error| SnapshotError::Identity {
                            app: Some(app.name.clone()),
                            error,
                        })?,
                    )),
                    None => None,
                },
                saml_relay: match &app.saml_relay {
                    Some(r) => Some(Box::new(
                        crate::identity::saml_relay::SamlRelay::build(r).map_err(|error| {
                            SnapshotError::SamlRelay {
                                app: app.name.clone(),
                                error,
                            }
                        })?,
                    )),
                    None => None,
                },
                profile: app.profile.clone(),
                rewrite: app.rewrite.clone(),
                leak_guard: crate::client::leak_guard_header(policy.suffix.as_str(), &app.rewrite)
                    .into_boxed_slice(),
            });
        }
        let app_domains = policy
            .apps
            .iter()
            .map(|a| a.domains.iter().map(|d| d.as_str().into()).collect())
            .collect();
        Ok(Snapshot {
            version: policy.version,
            hosts: HostMap::build(policy.suffix.as_str(), app_domains)?,
            ip_tags: IpTagTable::build(&policy.ip_tags),
            apps,
            tls: crate::tls::TlsServer::build(policy)?,
            sign_in: {
                let mut sign_in = crate::identity::IdentityConfig::build(&policy.identity)?;
                if let crate::identity::Provider::Saml(saml) = &mut sign_in.provider {
                    // Its metadata lists the apps it signs users in for.
                    saml.acs_hosts = proxy_hosts(
                        policy.suffix.as_str(),
                        policy
                            .apps
                            .iter()
                            .filter(|a| a.oidc.is_none() && a.saml.is_none()),
                    );
                }
                sign_in
            },
            access: crate::access::AccessTable::build(policy)?,
            block_page: policy.block_page.clone(),
            session_policies: crate::session_policy::SessionPolicies::build(policy)?,
            client: crate::client::Instrumentation::new(
                policy.version,
                policy.suffix.as_str(),
                policy
                    .apps
                    .iter()
                    .flat_map(|a| a.domains.iter().map(|d| d.as_str())),
            ),
            app_counters: Vec::new(),
        })
    }

    /// A snapshot with no apps, for a data plane waiting for its first
    /// snapshot from controld: every host gets 421.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            hosts: HostMap::empty(),
            apps: Vec::new(),
            ip_tags: IpTagTable::default(),
            tls: None,
            sign_in: crate::identity::IdentityConfig::none(),
            access: crate::access::AccessTable::empty(),
            block_page: Default::default(),
            session_policies: crate::session_policy::SessionPolicies::empty(),
            client: crate::client::Instrumentation::new(0, "", std::iter::empty()),
            app_counters: Vec::new(),
        }
    }
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    // The ring provider supports the default protocol versions.
    .expect("ring supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The machine's trust anchors (`/etc/ssl/certs` and friends). Unreadable
/// entries are skipped: an app that needs a private CA names it in policy.
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostmap::HostMapping;

    pub(crate) fn table() -> Snapshot {
        let p = crate::testing::policy(
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"demo\"\ndomains = [\"demo.test\", \"demo-cdn.test\"]\nupstream = \"http://127.0.0.1:1\"\n[[app]]\nname = \"api\"\ndomains = [\"api.demo.test\"]\nupstream = \"http://127.0.0.1:2\"\n",
        );
        Snapshot::build(&p, &rustls::RootCertStore::empty()).unwrap()
    }

    #[test]
    fn host_lookup_respects_label_boundaries() {
        let t = table();
        assert_eq!(t.hosts.app_for_host(b"demo.test"), Some(0));
        assert_eq!(t.hosts.app_for_host(b"A.B.Demo.TEST"), Some(0));
        assert_eq!(t.hosts.app_for_host(b"api.demo.test"), Some(1));
        assert_eq!(t.hosts.app_for_host(b"x.api.demo.test"), Some(1));
        assert_eq!(t.hosts.app_for_host(b"notdemo.test"), None);
        assert_eq!(t.hosts.app_for_host(b"demo.testing"), None);
        assert_eq!(t.hosts.app_for_host(b"demo.test.evil.net"), None);
        assert_eq!(t.hosts.app_for_host(b""), None);
    }

    #[test]
    fn proxy_host_mapping() {
        let t = table();
        assert_eq!(
            t.hosts.map_proxy_host(b"Www.Demo.Test.PROXY.test"),
            HostMapping::App {
                app_host: b"Www.Demo.Test",
                app: 0
            }
        );
        assert_eq!(
            t.hosts.map_proxy_host(b"other.test.proxy.test"),
            HostMapping::UnknownApp
        );
        assert_eq!(t.hosts.map_proxy_host(b"proxy.test"), HostMapping::NotOurs);
        assert_eq!(t.hosts.map_proxy_host(b"demo.test"), HostMapping::NotOurs);
        assert_eq!(
            t.hosts.map_proxy_host(b"demo.testproxy.test"),
            HostMapping::NotOurs
        );
        assert_eq!(t.hosts.map_proxy_host(b".proxy.test"), HostMapping::NotOurs);
    }
}
