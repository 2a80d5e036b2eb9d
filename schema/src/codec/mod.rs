//! The Cap'n Proto snapshot codec: a [`Policy`](crate::model::policy::Policy)
//! to snapshot bytes and back. Decoding validates every field again, as the
//! compiler did, because snapshot bytes are untrusted input.
//!
//! `snapshot` is the driver (framing, limits, top-level fields); `app`,
//! `access`, `session` and `activity` encode their parts of the model;
//! `fields` holds the helpers they share. Dependencies point one way, from
//! the driver down.

mod access;
mod activity;
mod app;
mod error;
mod fields;
mod format;
mod session;
mod snapshot;

pub use error::SnapshotError;
pub use format::{FORMAT_VERSION, MAGIC, MAX_SNAPSHOT_BYTES};
pub use snapshot::{decode, encode, encode_with_format};
