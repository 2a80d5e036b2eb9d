//! `[tls]` and the PEM files a policy names: the default certificate, the
//! client-certificate roots and CRL for managed devices, and each app's own
//! certificate. Files are read relative to the policy file and must hold the
//! PEM block they are for.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use crate::model::access::{CertifiedKeyPem, TlsSettings};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSource {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    client_crl: Option<Spanned<String>>,
}
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
