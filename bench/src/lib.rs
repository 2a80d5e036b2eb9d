//! Palisade bench harness: the load generator, the demo origin app and
//! test servers, generated policies and the apply-latency measurement.

pub mod apply_latency;
pub mod browser;
pub mod console;
pub mod fast_origin;
pub mod fidelity_walk;
pub mod fleet;
pub mod floor;
pub mod h2client;
pub mod handshake;
pub mod idp;
pub mod idp_saml;
pub mod load;
pub mod log_ingest;
pub mod mmdb;
pub mod origin;
pub mod page_load;
pub mod policies;
pub mod procs;
pub mod saas;
pub mod saas_fidelity;
pub mod samples;
pub mod scenario;
pub mod slowloris;
pub mod testing;
pub mod tls;
pub mod websocket;
