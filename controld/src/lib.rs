//! controld: the Palisade control daemon and operator CLI.
//!
//! [`server`] is the daemon (`controld serve`): it keeps the snapshot
//! history in a [`state`] directory and serves the control [`socket`] to
//! data-plane cores and operators. [`client`] is the operator side (`apply`,
//! `status`, `rollback`); [`commands`] the offline `compile` and `validate`.
//! Stored logs leave through [`alerts`] (file, webhook, e-mail) and
//! [`siem`] (CEF over syslog).

pub mod alerts;
pub mod certs;
pub mod client;
pub mod commands;
pub mod ingest;
pub mod logcli;
pub mod logstore;
pub mod mail;
pub mod protect;
pub mod server;
pub mod siem;
pub mod socket;
pub mod state;
