//! Keys for protected downloads: a session policy with `action =
//! "protect"` encrypts files to `age` X25519 recipients. `controld
//! protect-key` makes an identity (kept by whoever may read protected
//! files) and prints its recipient for the policy; `controld unprotect`
//! decrypts a `<name>.age` file with it (the `age` tool does the same).

use std::io::Write;
use std::path::Path;

/// Writes a new identity to `out` (mode 0600, refusing to overwrite) and
/// returns its recipient (`age1…`).
pub fn make_identity(out: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = {
        use age::secrecy::ExposeSecret;
        identity.to_string().expose_secret().to_string()
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    writeln!(f, "# recipient: {recipient}\n{secret}")
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(recipient)
}

/// The recipient of the identity file at `path`.
pub fn recipient_of(path: &Path) -> Result<String, String> {
    Ok(read_identity(path)?.to_public().to_string())
}

fn read_identity(path: &Path) -> Result<age::x25519::Identity, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| format!("{}: no AGE-SECRET-KEY- line", path.display()))?
        .parse::<age::x25519::Identity>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Decrypts the protected file `input` with the identity at `identity`.
pub fn decrypt(identity: &Path, input: &Path) -> Result<Vec<u8>, String> {
    let id = read_identity(identity)?;
    let data = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    age::decrypt(&id, &data).map_err(|e| format!("{}: {e}", input.display()))
}
