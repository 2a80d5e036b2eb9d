//! The state directory: a numbered history of snapshots and a pointer to the
//! current one.
//!
//! ```text
//! DIR/snapshots/00000000000000000042.snap   one file per version
//! DIR/sources/00000000000000000042.toml     the policy text it came from
//! DIR/CURRENT                               the current version, as text
//! ```
//!
//! A version installed from the fleet has no source here (it was compiled
//! where `apply --fleet` ran).
//!
//! Every file is written atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash at any point leaves either the old or the new
//! file. Loading trusts nothing: a CURRENT that names a missing or
//! undecodable snapshot falls back to the newest snapshot that decodes, and
//! temp files (names starting with `.`) are never read.

use std::path::{Path, PathBuf};

use palisade_schema::policy::Policy;
use palisade_schema::snapshot;

use crate::commands::write_atomically;

/// A state directory.
pub struct StateDir {
    root: PathBuf,
}

/// A snapshot held in memory: its version, decoded policy and bytes.
#[derive(Clone)]
pub struct Stored {
    pub version: u64,
    pub policy: Policy,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

impl StateDir {
    /// Opens (creating if needed) the state directory at `root`.
    pub fn open(root: &Path) -> std::io::Result<StateDir> {
        std::fs::create_dir_all(root.join("snapshots"))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    fn snapshot_path(&self, version: u64) -> PathBuf {
        self.root
            .join("snapshots")
            .join(format!("{version:020}.snap"))
    }

    fn source_path(&self, version: u64) -> PathBuf {
        self.root
            .join("sources")
            .join(format!("{version:020}.toml"))
    }

    /// Keeps the policy text `version` was compiled from.
    pub fn store_source(&self, version: u64, text: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join("sources"))?;
        write_atomically(&self.source_path(version), text.as_bytes())
    }

    /// The policy text `version` was compiled from, when kept.
    pub fn source(&self, version: u64) -> Option<String> {
        std::fs::read_to_string(self.source_path(version)).ok()
    }

    /// Versions present in the history, ascending (temp files ignored).
    pub fn versions(&self) -> Vec<u64> {
        let mut out: Vec<u64> = std::fs::read_dir(self.root.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if name.starts_with('.') {
                    return None;
                }
                name.strip_suffix(".snap")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Reads and decodes one version.
    pub fn load(&self, version: u64) -> Result<Stored, String> {
        let path = self.snapshot_path(version);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let policy = snapshot::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if policy.version != version {
            return Err(format!(
                "{}: holds version {}",
                path.display(),
                policy.version
            ));
        }
        Ok(Stored {
            version,
            policy,
            bytes: std::sync::Arc::new(bytes),
        })
    }

    /// The current snapshot: the one CURRENT names if it loads, else the
    /// newest that does. `None` for an empty history.
    pub fn current(&self) -> Option<Stored> {
        let named = std::fs::read_to_string(self.root.join("CURRENT"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        if let Some(v) = named {
            if let Ok(s) = self.load(v) {
                return Some(s);
            }
        }
        self.versions()
            .into_iter()
            .rev()
            .find_map(|v| self.load(v).ok())
    }

    /// Stores `bytes` as `version` and makes it current.
    pub fn store(&self, version: u64, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.snapshot_path(version), bytes)?;
        self.set_current(version)
    }

    /// Points CURRENT at an existing version.
    pub fn set_current(&self, version: u64) -> std::io::Result<()> {
        write_atomically(
            &self.root.join("CURRENT"),
            format!("{version}\n").as_bytes(),
        )
    }

    /// The next free version number.
    pub fn next_version(&self) -> u64 {
        self.versions().last().map_or(1, |v| v + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_schema::policy::{compile_source, CompileOptions};

    fn snap(version: u64) -> Vec<u8> {
        let p = compile_source(
            "t.toml",
            "[proxy]\nsuffix = \"p.test\"\n[[app]]\nname = \"a\"\ndomains = [\"a.test\"]\n",
            Path::new("."),
            &CompileOptions {
                version,
                compiled_at_unix_ms: 0,
            },
        )
        .unwrap();
        snapshot::encode(&p)
    }

    #[test]
    fn history_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert!(s.current().is_none());
        assert_eq!(s.next_version(), 1);
        s.store(1, &snap(1)).unwrap();
        s.store(2, &snap(2)).unwrap();
        assert_eq!(s.versions(), vec![1, 2]);
        assert_eq!(s.current().unwrap().version, 2);
        s.set_current(1).unwrap();
        assert_eq!(s.current().unwrap().version, 1);
        assert_eq!(s.next_version(), 3);
    }

    #[test]
    fn torn_writes_never_become_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        s.store(1, &snap(1)).unwrap();
        // A crash while writing version 2: the temp file is truncated and
        // never renamed; CURRENT still says 1.
        let full = snap(2);
        std::fs::write(
            dir.path().join("snapshots/.00000000000000000002.snap.tmp1"),
            &full[..full.len() / 2],
        )
        .unwrap();
        assert_eq!(s.versions(), vec![1]);
        assert_eq!(s.current().unwrap().version, 1);
        // Even a truncated file under a real name (disk corruption) and a
        // CURRENT naming it fall back to the newest snapshot that decodes.
        std::fs::write(
            dir.path().join("snapshots/00000000000000000003.snap"),
            &full[..10],
        )
        .unwrap();
        std::fs::write(dir.path().join("CURRENT"), "3\n").unwrap();
        assert_eq!(s.current().unwrap().version, 1);
        std::fs::write(dir.path().join("CURRENT"), "garbage").unwrap();
        assert_eq!(s.current().unwrap().version, 1);
    }
}
