//! Palisade bench harness: the demo origin app and test servers (load
//! generation comes with the bench issue).

pub mod apply_latency;
pub mod origin;
pub mod policies;
pub mod tls;
