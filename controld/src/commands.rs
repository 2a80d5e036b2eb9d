//! Offline policy commands: compile a TOML policy to a snapshot file, or
//! only validate it.

use std::io::Write;
use std::path::Path;

use palisade_schema::access::{check_jwks, IdentityProvider};
use palisade_schema::policy::{compile_file, compile_source, CompileOptions, Diagnostics, Policy};
use palisade_schema::snapshot;

/// Compiles `policy` and writes the snapshot to `out` atomically (temp file,
/// fsync, rename), so a reader never sees a partial snapshot.
pub fn compile(policy: &Path, out: &Path, version: u64) -> Result<Policy, String> {
    let options = CompileOptions {
        version,
        ..CompileOptions::default()
    };
    let compiled = compile_policy(policy, &options)?;
    let bytes = snapshot::encode(&compiled);
    write_atomically(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(compiled)
}

/// Compiles `policy` without writing anything.
pub fn validate(policy: &Path) -> Result<Policy, String> {
    compile_policy(policy, &CompileOptions::default())
}

/// Compiles a policy file and completes what the compiler cannot do
/// itself: an OIDC `jwks_url` and a SAML `idp_metadata_url` are fetched
/// here (the snapshot carries the key set and the metadata, so data planes
/// never reach out to the provider).
pub fn compile_policy(path: &Path, options: &CompileOptions) -> Result<Policy, String> {
    let policy = compile_file(path, options).map_err(|d| d.to_string())?;
    complete(policy, &path.display().to_string())
}

/// Why a policy text did not compile: located problems (shown at their
/// line) or a problem of the whole (a key set that could not be fetched).
#[derive(Debug)]
pub enum PolicyError {
    Located(Diagnostics),
    Whole(String),
}

impl From<String> for PolicyError {
    fn from(message: String) -> Self {
        PolicyError::Whole(message)
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Located(d) => write!(f, "{d}"),
            PolicyError::Whole(m) => f.write_str(m),
        }
    }
}

/// [`compile_policy`] for a text that is not (yet) a file: `label` names it
/// in messages, relative paths inside resolve against `base_dir`.
pub fn compile_policy_text(
    label: &str,
    text: &str,
    base_dir: &Path,
    options: &CompileOptions,
) -> Result<Policy, PolicyError> {
    let policy = compile_source(label, text, base_dir, options).map_err(PolicyError::Located)?;
    complete(policy, label).map_err(PolicyError::Whole)
}

/// Fetches the key set of every OIDC provider given by `jwks_url` and the
/// metadata of every SAML identity provider given by `idp_metadata_url`.
fn complete(mut policy: Policy, label: &str) -> Result<Policy, String> {
    let global_saml = match &mut policy.identity.provider {
        IdentityProvider::Saml(saml) => Some(saml),
        _ => None,
    };
    for saml in global_saml
        .into_iter()
        .chain(policy.apps.iter_mut().filter_map(|a| a.saml.as_mut()))
    {
        if let (true, Some(url)) = (saml.certificates.is_empty(), saml.metadata_url.clone()) {
            let text = fetch(&url).map_err(|e| format!("{label}: idp_metadata_url {url}: {e}"))?;
            let metadata = palisade_schema::saml::metadata::parse_idp_metadata(&text)
                .map_err(|e| format!("{label}: idp_metadata_url {url}: {e}"))?;
            saml.idp_entity_id = metadata.entity_id;
            saml.sso_url = metadata.sso_url;
            saml.certificates = metadata.certificates;
        }
    }
    let global = match &mut policy.identity.provider {
        IdentityProvider::Oidc(oidc) => Some(oidc),
        _ => None,
    };
    // The global provider and every app's own.
    for oidc in global
        .into_iter()
        .chain(policy.apps.iter_mut().filter_map(|a| a.oidc.as_mut()))
    {
        if let (true, Some(url)) = (oidc.jwks.is_empty(), oidc.jwks_url.clone()) {
            let text = fetch(&url).map_err(|e| format!("{label}: jwks_url {url}: {e}"))?;
            check_jwks(&text).map_err(|e| format!("{label}: jwks_url {url}: {e}"))?;
            oidc.jwks = text;
        }
    }
    Ok(policy)
}

/// A provider's document (JWKS, SAML metadata): 10 s, 1 MiB at most.
fn fetch(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` through a temp file in the same directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// One-line summary of a compiled policy for operators.
pub fn summary(p: &Policy) -> String {
    let domains: usize = p.apps.iter().map(|a| a.domains.len()).sum();
    format!(
        "policy version {}: suffix {}, {} app(s), {} domain(s)",
        p.version,
        p.suffix,
        p.apps.len(),
        domains
    )
}
