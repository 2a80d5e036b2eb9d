//! The snapshot file format's constants: its magic, the schema layout
//! revision, and the size bound checked before decoding.

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"PLSDSNP\x01";

/// Schema layout revision this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Largest snapshot accepted (bytes), checked before decoding.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 20;
