//! Palisade's schemas and the policy compiler shared by `controld` and the
//! data plane: generated Cap'n Proto code, the snapshot file framing, and the
//! TOML policy-source compiler.

pub mod access;
mod access_codec;
pub mod activity;
pub mod frame;
pub mod generated;
pub mod logrec;
pub mod policy;
pub mod session;
mod session_codec;
pub mod snapshot;

pub use generated::{control_capnp, policy_capnp};
