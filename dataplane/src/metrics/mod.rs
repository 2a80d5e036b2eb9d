//! The data plane's metrics: counters each core writes alone and an
//! exporter thread reads ([`exporter`] serves them in the Prometheus text
//! format on `--metrics`).
//!
//! No two cores write one counter, so an increment is a relaxed load and a
//! relaxed store ([`Counter::add`]): no locked instruction, no cache line
//! bouncing between cores. The exporter sums the cores when it renders
//! (per-core values only where the core is the point: open connections
//! and the policy version). Per-app counters are found by the app's index
//! in the snapshot ([`crate::core::Core::install`] lines them up when a
//! snapshot is installed), so a request pays no lookup.
//!
//! Labels are bounded: the apps of the policy (an app removed keeps its
//! counters, as Prometheus expects of a counter), five status classes,
//! five actions, five upstream failure reasons.

pub mod exporter;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use palisade_schema::logrec::Action;

/// A counter with one writer (its core). Readers on other threads see
/// each value whole (a 64-bit atomic), perhaps a moment late.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core calls this: a load and a store
    /// instead of an atomic add, which would lock the bus for nothing.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts `n` (gauges).
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Status classes counted: `1xx`..`5xx`, and index 0 for an exchange
/// that ended without a status (the client left, or a tunnel).
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    }
}

/// The counters of one app on one core.
#[derive(Default)]
pub struct AppCounters {
    /// Requests by status class and action (`Action as usize`).
    requests: [[Counter; Action::ALL.len()]; STATUS_CLASSES.len()],
    /// Bytes received from clients (request heads and bodies).
    received: Counter,
    /// Bytes sent to clients.
    sent: Counter,
}

impl AppCounters {
    /// Counts one finished request.
    #[inline]
    pub fn request(&self, status: u16, action: Action, received: u64, sent: u64) {
        self.requests[status_class(status)][action as usize].add(1);
        self.received.add(received);
        self.sent.add(sent);
    }
}

/// Why an exchange with an app failed, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made (refused, unreachable, TLS failed).
    Connect = 0,
    /// Connecting took longer than the connect timeout.
    ConnectTimeout = 1,
    /// No response head, or no body byte, within its timeout.
    Timeout = 2,
    /// The response could not be forwarded (malformed head or body).
    BadResponse = 3,
    /// Sending the request failed, or the connection broke.
    Broken = 4,
}

impl UpstreamFailure {
    pub const LABELS: [&'static str; 5] = [
        "connect_error",
        "connect_timeout",
        "timeout",
        "bad_response",
        "broken",
    ];
}

/// Upper bounds of the request-duration histogram, microseconds (the
/// exporter writes them in seconds): 250 µs to 30 s.
pub const DURATION_BOUNDS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000, 30_000_000,
];

/// A histogram of durations with one writer: one counter per bucket (not
/// cumulative; the exporter adds them up), their sum and their count.
#[derive(Default)]
pub struct DurationHistogram {
    buckets: [Counter; DURATION_BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl DurationHistogram {
    #[inline]
    pub fn observe(&self, us: u64) {
        let i = DURATION_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].add(1);
        self.sum_us.add(us);
    }
}

/// One core's counters.
pub struct CoreMetrics {
    pub core: u32,
    /// Each app's counters by name, kept across snapshots. Locked when a
    /// snapshot is installed and when the exporter renders, never per
    /// request.
    apps: Mutex<Vec<(Box<str>, Arc<AppCounters>)>>,
    /// Requests refused before they were routed to an app.
    pub unrouted: AppCounters,
    pub duration: DurationHistogram,
    pub upstream_failures: [Counter; UpstreamFailure::LABELS.len()],
    /// TLS handshakes completed and failed.
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    /// Client connections open now (a gauge).
    pub connections_open: Counter,
    /// Client connections accepted.
    pub connections_accepted: Counter,
    /// Client connections that chose HTTP/2, and those sent GOAWAY
    /// ENHANCE_YOUR_CALM for resetting too many streams.
    pub http2_connections: Counter,
    pub http2_calm_down: Counter,
    /// The policy version this core serves (a gauge; 0: none yet).
    pub policy_version: Counter,
}

impl CoreMetrics {
    pub fn new(core: u32) -> CoreMetrics {
        CoreMetrics {
            core,
            apps: Mutex::new(Vec::new()),
            unrouted: AppCounters::default(),
            duration: DurationHistogram::default(),
            upstream_failures: Default::default(),
            tls_handshakes: Counter::default(),
            tls_handshake_failures: Counter::default(),
            connections_open: Counter::default(),
            connections_accepted: Counter::default(),
            http2_connections: Counter::default(),
            http2_calm_down: Counter::default(),
            policy_version: Counter::default(),
        }
    }

    /// The counters of each app in `names`, in that order (created for a
    /// name seen the first time).
    pub fn for_apps<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<Arc<AppCounters>> {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        names
            .map(|name| match apps.iter().find(|(n, _)| &**n == name) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = Arc::new(AppCounters::default());
                    apps.push((name.into(), c.clone()));
                    c
                }
            })
            .collect()
    }

    pub fn upstream_failure(&self, why: UpstreamFailure) {
        self.upstream_failures[why as usize].add(1);
    }
}

/// Every core's counters: what the exporter reads.
#[derive(Clone)]
pub struct Metrics {
    pub cores: Arc<[Arc<CoreMetrics>]>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics({} cores)", self.cores.len())
    }
}

impl Metrics {
    pub fn new(cores: usize) -> Metrics {
        Metrics {
            cores: (0..cores)
                .map(|i| Arc::new(CoreMetrics::new(i as u32)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::default();
        for us in [0, 250, 251, 30_000_000, 30_000_001, u64::MAX / 2] {
            h.observe(us);
        }
        let counts: Vec<u64> = h.buckets.iter().map(Counter::get).collect();
        assert_eq!(counts[0], 2, "0 and 250 µs are ≤ 250 µs");
        assert_eq!(counts[1], 1, "251 µs is ≤ 500 µs");
        assert_eq!(counts[DURATION_BOUNDS_US.len() - 1], 1, "30 s");
        assert_eq!(counts[DURATION_BOUNDS_US.len()], 2, "above every bound");
    }

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(599)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(0)], "none");
        assert_eq!(STATUS_CLASSES[status_class(600)], "none");
    }

    #[test]
    fn an_app_keeps_its_counters_across_snapshots() {
        let m = CoreMetrics::new(0);
        let first = m.for_apps(["a", "b"].into_iter());
        first[1].request(200, Action::Allow, 10, 20);
        let second = m.for_apps(["b", "c"].into_iter());
        assert!(Arc::ptr_eq(&first[1], &second[0]));
        assert_eq!(second[0].sent.get(), 20);
        assert_eq!(m.apps.lock().unwrap().len(), 3);
    }
}
