//! Why a snapshot was refused.

use std::fmt;

use super::format::MAX_SNAPSHOT_BYTES;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a Palisade snapshot (wrong magic).
    NotASnapshot,
    /// Larger than [`MAX_SNAPSHOT_BYTES`].
    TooLarge(usize),
    /// Written for a schema revision this build does not know.
    FutureFormat { found: u32, supported: u32 },
    /// The Cap'n Proto message is malformed or exceeds the reader limits.
    Decode(String),
    /// Decoded, but a field is invalid.
    Invalid(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotASnapshot => f.write_str("not a Palisade snapshot (bad magic)"),
            SnapshotError::TooLarge(n) => {
                write!(f, "snapshot is {n} bytes (at most {MAX_SNAPSHOT_BYTES})")
            }
            SnapshotError::FutureFormat { found, supported } => write!(
                f,
                "snapshot format {found} is newer than this build understands ({supported}); upgrade the data plane"
            ),
            SnapshotError::Decode(e) => write!(f, "snapshot does not decode: {e}"),
            SnapshotError::Invalid(e) => write!(f, "snapshot is invalid: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<capnp::Error> for SnapshotError {
    fn from(e: capnp::Error) -> Self {
        SnapshotError::Decode(e.to_string())
    }
}
