//! A whole validated policy: what a snapshot carries and both binaries act on.

use super::access::{AccessPolicy, BlockPage, Identity, TlsSettings};
use super::activity::ActivityPolicy;
use super::app::App;
use super::names::{DnsName, IpTag};
use super::session::SessionPolicy;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub version: u64,
    pub compiled_at_unix_ms: i64,
    pub source: String,
    pub suffix: DnsName,
    pub apps: Vec<App>,
    pub ip_tags: Vec<IpTag>,
    /// Rules controld evaluates on the log stream (alerts).
    pub activity_policies: Vec<ActivityPolicy>,
    pub tls: TlsSettings,
    pub identity: Identity,
    pub locations: Vec<IpTag>,
    pub access_policies: Vec<AccessPolicy>,
    pub block_page: BlockPage,
    /// A MaxMind-format country database (bytes) for locations by country;
    /// empty: none.
    pub geoip_country_database: Vec<u8>,
    /// What users may do inside apps.
    pub session_policies: Vec<SessionPolicy>,
    /// The operator's text on the monitoring notice (empty: a default).
    pub monitoring_notice: String,
}
