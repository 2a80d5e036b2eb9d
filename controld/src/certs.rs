//! `controld certs`: a local CA for the proxy's names, a certificate per
//! app covering `<domain>.<suffix>` and `*.<domain>.<suffix>` for each of
//! its domains, client certificates for managed devices, and the key the
//! SAML relay signs with.
//!
//! Keys are ECDSA P-256 (rcgen); key files are written mode 0600.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use palisade_schema::policy::{DnsName, Policy};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes a CA: `<out>/ca.pem` and `<out>/ca.key`.
pub fn make_ca(out: &Path, name: &str, days: u32) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_file(&out.join("ca.pem"), &cert.pem(), false)?;
    write_file(&out.join("ca.key"), &key.serialize_pem(), true)
}

/// Makes the SAML relay's signing key: a self-signed certificate
/// `<out>/saml.pem` and its ECDSA P-256 key `<out>/saml.key` (PKCS#8).
/// Apps trust the certificate itself (SAML metadata carries it), so no CA
/// is involved.
pub fn make_saml_signing_key(out: &Path, name: &str, days: u32) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_file(&out.join("saml.pem"), &cert.pem(), false)?;
    write_file(&out.join("saml.key"), &key.serialize_pem(), true)
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86400)).into();
}

fn load_issuer(ca: &Path, ca_key: &Path) -> Result<Issuer<'static, KeyPair>, String> {
    let ca_pem = std::fs::read_to_string(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let key_pem =
        std::fs::read_to_string(ca_key).map_err(|e| format!("{}: {e}", ca_key.display()))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", ca_key.display()))?;
    Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| format!("{}: {e}", ca.display()))
}

/// The suffix and each app's name and domains from a policy file. Read
/// directly (not compiled), so certificates can be issued before the
/// policy names them.
pub fn app_names(path: &Path) -> Result<AppNames, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let suffix = doc
        .get("proxy")
        .and_then(|p| p.get("suffix"))
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("{}: no [proxy] suffix", path.display()))?;
    let suffix = DnsName::parse(suffix).map_err(|e| format!("{}: suffix: {e}", path.display()))?;
    let mut apps = Vec::new();
    for app in doc
        .get("app")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let name = app
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string();
        let mut domains = Vec::new();
        for d in app
            .get("domains")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            let d = d.as_str().unwrap_or("");
            domains.push(
                DnsName::parse(d).map_err(|e| format!("{}: app {name:?}: {e}", path.display()))?,
            );
        }
        if name.is_empty() || domains.is_empty() {
            return Err(format!(
                "{}: every [[app]] needs a name and domains",
                path.display()
            ));
        }
        apps.push((name, domains));
    }
    Ok(AppNames { suffix, apps })
}

/// What certificates are issued for.
pub struct AppNames {
    pub suffix: DnsName,
    pub apps: Vec<(String, Vec<DnsName>)>,
}

impl From<&Policy> for AppNames {
    fn from(p: &Policy) -> AppNames {
        AppNames {
            suffix: p.suffix.clone(),
            apps: p
                .apps
                .iter()
                .map(|a| (a.name.clone(), a.domains.clone()))
                .collect(),
        }
    }
}

/// One certificate per app of `policy`: `<out>/<app>.pem` (leaf then CA)
/// and `<out>/<app>.key`. Returns the files written, per app.
pub fn issue_app_certificates(
    policy: &AppNames,
    ca: &Path,
    ca_key: &Path,
    out: &Path,
    days: u32,
) -> Result<Vec<(String, String, String)>, String> {
    let issuer = load_issuer(ca, ca_key)?;
    let ca_pem = std::fs::read_to_string(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    for (app_name, domains) in &policy.apps {
        let mut names = Vec::new();
        for d in domains {
            names.push(format!("{d}.{}", policy.suffix));
            names.push(format!("*.{d}.{}", policy.suffix));
        }
        let mut params = CertificateParams::new(names).map_err(|e| e.to_string())?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{}.{}", domains[0], policy.suffix),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, days);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        let file_stem: String = app_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cert_path = out.join(format!("{file_stem}.pem"));
        let key_path = out.join(format!("{file_stem}.key"));
        write_file(&cert_path, &format!("{}{ca_pem}", cert.pem()), false)?;
        write_file(&key_path, &key.serialize_pem(), true)?;
        written.push((
            app_name.clone(),
            cert_path.display().to_string(),
            key_path.display().to_string(),
        ));
    }
    Ok(written)
}

/// A server certificate for the admin console: `<out>/console.pem` (leaf
/// then CA) and `<out>/console.key`, for `names` (DNS names or IP
/// addresses).
pub fn issue_console_certificate(
    names: &[String],
    ca: &Path,
    ca_key: &Path,
    out: &Path,
    days: u32,
) -> Result<(), String> {
    if names.is_empty() {
        return Err("name the console by at least one host name or address".into());
    }
    let issuer = load_issuer(ca, ca_key)?;
    let ca_pem = std::fs::read_to_string(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // rcgen makes an IP address SAN of a name that parses as one.
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    write_file(
        &out.join("console.pem"),
        &format!("{}{ca_pem}", cert.pem()),
        false,
    )?;
    write_file(&out.join("console.key"), &key.serialize_pem(), true)
}

/// A client certificate for a managed device: `<out>/<name>.pem`,
/// `<out>/<name>.key`.
pub fn issue_device_certificate(
    name: &str,
    ca: &Path,
    ca_key: &Path,
    out: &Path,
    days: u32,
) -> Result<(), String> {
    let issuer = load_issuer(ca, ca_key)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    write_file(&out.join(format!("{name}.pem")), &cert.pem(), false)?;
    write_file(&out.join(format!("{name}.key")), &key.serialize_pem(), true)
}
