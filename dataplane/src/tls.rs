//! The TLS listener's configuration, built per core from each snapshot:
//! certificates chosen by SNI (`<app host>.<suffix>` → the app's
//! certificate, else the default), optional client certificates for managed
//! devices, and session resumption shared by every core and every snapshot
//! (one ticket key set and one session cache per process, so a client that
//! reconnects to another core, or after an apply, still resumes).
//!
//! Client certificates are requested but never required at the TLS layer: a
//! certificate that does not verify only makes the device `unmanaged`. The
//! handshake still checks the client's signature over the handshake (proof
//! that it holds the key); the chain itself is verified after the handshake
//! against the snapshot's roots (and CRLs).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use palisade_schema::access::CertifiedKeyPem;
use palisade_schema::policy::Policy;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Why the TLS material in a snapshot cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate chain or key (`what`: the default certificate or an
    /// app's) is not usable.
    Certificate { what: String, problem: PemProblem },
    /// The client-certificate roots do not parse or load.
    ClientRoots(String),
    /// The client-certificate revocation list does not parse.
    ClientCrl(std::io::Error),
    /// rustls refused the configuration.
    Config(rustls::Error),
}

/// What is wrong with a certificate chain and key.
#[derive(Debug)]
#[non_exhaustive]
pub enum PemProblem {
    CertificatePem(std::io::Error),
    NoCertificate,
    KeyPem(std::io::Error),
    NoPrivateKey,
    /// The key does not fit the certificate or is of an unsupported kind.
    Unusable(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Certificate { what, problem } => match problem {
                PemProblem::CertificatePem(e) => write!(f, "{what}: certificate PEM: {e}"),
                PemProblem::NoCertificate => write!(f, "{what}: no certificate"),
                PemProblem::KeyPem(e) => write!(f, "{what}: key PEM: {e}"),
                PemProblem::NoPrivateKey => write!(f, "{what}: no private key"),
                PemProblem::Unusable(e) => write!(f, "{what}: {e}"),
            },
            TlsError::ClientRoots(e) => write!(f, "client_ca: {e}"),
            TlsError::ClientCrl(e) => write!(f, "client_crl: {e}"),
            TlsError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Ticket keys and the stateful session cache, one per process: resumption
/// works across cores and across snapshot swaps. Touched once per
/// handshake, never per request.
struct Resumption {
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    cache: Arc<dyn rustls::server::StoresServerSessions>,
}

fn resumption() -> Option<&'static Resumption> {
    static SHARED: OnceLock<Option<Resumption>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Some(Resumption {
                ticketer: rustls::crypto::ring::Ticketer::new().ok()?,
                cache: rustls::server::ServerSessionMemoryCache::new(64 * 1024),
            })
        })
        .as_ref()
}

/// Parses a PEM chain and key into a signing certificate.
pub fn certified_key(pem: &CertifiedKeyPem, what: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |problem| TlsError::Certificate {
        what: what.to_string(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.chain_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| fail(PemProblem::CertificatePem(e)))?;
    if chain.is_empty() {
        return Err(fail(PemProblem::NoCertificate));
    }
    let key = rustls_pemfile::private_key(&mut pem.key_pem.as_slice())
        .map_err(|e| fail(PemProblem::KeyPem(e)))?
        .ok_or_else(|| fail(PemProblem::NoPrivateKey))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| fail(PemProblem::Unusable(e)))
}

/// SNI → certificate: the most specific app domain under the suffix, else
/// the default.
#[derive(Debug)]
struct SniResolver {
    /// `.` + suffix, lower case.
    dotted_suffix: String,
    /// App domain → certificate.
    by_domain: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let sni = sni.to_ascii_lowercase();
        if let Some(app_host) = sni.strip_suffix(self.dotted_suffix.as_str()) {
            // Walk from the full app host to its parents: the most specific
            // domain that has a certificate wins.
            let mut name = app_host;
            loop {
                if let Some(k) = self.by_domain.get(name) {
                    return Some(k.clone());
                }
                match name.split_once('.') {
                    Some((_, parent)) => name = parent,
                    None => break,
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(name) => self.lookup(name),
            None => self.default.clone(),
        }
    }
}

/// Offers client authentication, accepts any chain at the TLS layer (the
/// device check happens after the handshake), and delegates the handshake
/// signature checks to the WebPKI verifier.
#[derive(Debug)]
struct OptionalClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A snapshot's TLS listener configuration.
pub struct TlsServer {
    /// Offers ALPN `h2` and `http/1.1`.
    pub config: Arc<rustls::ServerConfig>,
    /// Offers `http/1.1` only (HTTP/2 turned off).
    pub config_http1: Arc<rustls::ServerConfig>,
    /// Verifies client certificate chains (managed devices); `None` when
    /// the policy names no client CA.
    devices: Option<Arc<dyn ClientCertVerifier>>,
}

impl TlsServer {
    /// Builds the configuration; `None` when the policy has no certificate
    /// at all (the TLS listener then refuses handshakes).
    pub fn build(policy: &Policy) -> Result<Option<TlsServer>, TlsError> {
        let mut by_domain = HashMap::new();
        for app in &policy.apps {
            if let Some(pem) = &app.certificate {
                let key = certified_key(pem, &format!("app {:?} certificate", app.name))?;
                for d in &app.domains {
                    by_domain.insert(d.as_str().to_string(), key.clone());
                }
            }
        }
        let default = match &policy.tls.default_certificate {
            Some(pem) => Some(certified_key(pem, "default certificate")?),
            None => None,
        };
        if by_domain.is_empty() && default.is_none() {
            return Ok(None);
        }
        let resolver = Arc::new(SniResolver {
            dotted_suffix: format!(".{}", policy.suffix),
            by_domain,
            default,
        });
        let devices = if policy.tls.client_ca_pem.is_empty() {
            None
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut policy.tls.client_ca_pem.as_slice()) {
                let cert = cert.map_err(|e| TlsError::ClientRoots(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientRoots(e.to_string()))?;
            }
            let crls = rustls_pemfile::crls(&mut policy.tls.client_crl_pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(TlsError::ClientCrl)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| TlsError::ClientRoots(e.to_string()))?;
            Some(verifier)
        };
        let verifier: Arc<dyn ClientCertVerifier> = match &devices {
            Some(inner) => Arc::new(OptionalClientCert {
                inner: inner.clone(),
            }),
            None => rustls::server::WebPkiClientVerifier::no_client_auth(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        if let Some(shared) = resumption() {
            config.ticketer = shared.ticketer.clone();
            config.session_storage = shared.cache.clone();
        }
        // RFC 7301: the server picks from the client's list in its own
        // order of preference, so h2 wins where the client offers it.
        let mut config_http1 = config.clone();
        config_http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(TlsServer {
            config: Arc::new(config),
            config_http1: Arc::new(config_http1),
            devices,
        }))
    }

    /// True when client certificates are requested.
    pub fn wants_client_certificates(&self) -> bool {
        self.devices.is_some()
    }

    /// Whether the chain a client presented verifies against the
    /// snapshot's device roots (and CRLs): a managed device.
    pub fn device_is_managed(&self, chain: Option<&[CertificateDer<'static>]>) -> bool {
        let (Some(verifier), Some(chain)) = (&self.devices, chain) else {
            return false;
        };
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return false;
        };
        verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok()
    }
}
