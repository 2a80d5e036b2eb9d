//! Offline policy commands: compile a TOML policy to a snapshot file, or
//! only validate it.

use std::io::Write;
use std::path::Path;

use palisade_schema::access::{check_jwks, IdentityProvider};
use palisade_schema::policy::{compile_file, CompileOptions, Policy};
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
/// itself: an OIDC `jwks_url` is fetched here (the snapshot carries the key
/// set, so data planes never reach out to the provider).
pub fn compile_policy(path: &Path, options: &CompileOptions) -> Result<Policy, String> {
    let mut policy = compile_file(path, options).map_err(|d| d.to_string())?;
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
            let text =
                fetch_jwks(&url).map_err(|e| format!("{}: jwks_url {url}: {e}", path.display()))?;
            check_jwks(&text).map_err(|e| format!("{}: jwks_url {url}: {e}", path.display()))?;
            oidc.jwks = text;
        }
    }
    Ok(policy)
}

fn fetch_jwks(url: &str) -> Result<String, String> {
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
