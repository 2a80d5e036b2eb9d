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
pub mod clickhouse;
pub mod client;
pub mod commands;
pub mod console;
pub mod fleet;
pub mod ingest;
pub mod logcli;
pub mod logstore;
pub mod mail;
pub mod progress;
pub mod protect;
pub mod relp;
pub mod server;
pub mod siem;
pub mod socket;
pub mod state;

use palisade_schema::systemd::Priority;

/// Logs one daemon line: to stderr, or to the journal with its priority and
/// `PALISADE_*` fields when run by systemd.
pub fn say(priority: Priority, message: &str, fields: &[(&str, &str)]) {
    palisade_schema::systemd::log("palisade-controld", priority, message, fields);
}
