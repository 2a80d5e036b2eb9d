//! The data plane's counters in the Prometheus text exposition format
//! (version 0.0.4): [`render`] sums the cores, [`spawn`] serves it on
//! `--metrics` through the endpoint both binaries share
//! ([`palisade_schema::metrics_http`]).

use std::fmt::Write as _;
use std::net::SocketAddr;

use palisade_schema::logrec::Action;
use palisade_schema::metrics_http::describe;

use super::{
    AppCounters, CoreMetrics, Counter, Metrics, UpstreamFailure, DURATION_BOUNDS_US, STATUS_CLASSES,
};

/// Serves `metrics` at `http://addr/metrics` from a thread of its own.
/// Returns the bound address (port 0 picks one).
pub fn spawn(addr: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    palisade_schema::metrics_http::serve(addr, move || Ok(render(&metrics)))
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escaped(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn sum(cores: &[std::sync::Arc<CoreMetrics>], f: impl Fn(&CoreMetrics) -> &Counter) -> u64 {
    cores.iter().map(|c| f(c).get()).sum()
}

/// Every metric, summed over the cores where no `core` label is given.
pub fn render(metrics: &Metrics) -> String {
    let cores = &metrics.cores[..];
    let mut out = String::with_capacity(4096);
    // Per app: the cores' counters for each name, unrouted requests as
    // app "".
    let mut apps: Vec<(String, Vec<std::sync::Arc<AppCounters>>)> = Vec::new();
    for core in cores {
        let held = core.apps.lock().unwrap_or_else(|e| e.into_inner());
        for (name, counters) in held.iter() {
            match apps.iter_mut().find(|(n, _)| **n == **name) {
                Some((_, list)) => list.push(counters.clone()),
                None => apps.push((name.to_string(), vec![counters.clone()])),
            }
        }
    }
    apps.sort_by(|a, b| a.0.cmp(&b.0));
    let per_app = |out: &mut String, app: &str, list: &[&AppCounters]| {
        for (class, class_name) in STATUS_CLASSES.iter().enumerate() {
            for action in Action::ALL {
                let n: u64 = list
                    .iter()
                    .map(|c| c.requests[class][action as usize].get())
                    .sum();
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "palisade_requests_total{{app=\"{}\",code_class=\"{class_name}\",action=\"{}\"}} {n}",
                        escaped(app),
                        action.as_str()
                    );
                }
            }
        }
    };
    let unrouted: Vec<&AppCounters> = cores.iter().map(|c| &c.unrouted).collect();
    describe(
        &mut out,
        "palisade_requests_total",
        "counter",
        "Requests finished, by app (\"\": refused before routing), status class and action.",
    );
    per_app(&mut out, "", &unrouted);
    for (name, list) in &apps {
        let list: Vec<&AppCounters> = list.iter().map(|c| &**c).collect();
        per_app(&mut out, name, &list);
    }
    for (metric, help, which) in [
        (
            "palisade_received_bytes_total",
            "Bytes received from clients (request heads and bodies), by app.",
            0,
        ),
        (
            "palisade_sent_bytes_total",
            "Bytes sent to clients, by app.",
            1,
        ),
    ] {
        describe(&mut out, metric, "counter", help);
        let pick = |c: &AppCounters| {
            if which == 0 {
                c.received.get()
            } else {
                c.sent.get()
            }
        };
        let _ = writeln!(
            out,
            "{metric}{{app=\"\"}} {}",
            unrouted.iter().map(|c| pick(c)).sum::<u64>()
        );
        for (name, list) in &apps {
            let n: u64 = list.iter().map(|c| pick(c)).sum();
            let _ = writeln!(out, "{metric}{{app=\"{}\"}} {n}", escaped(name));
        }
    }

    describe(
        &mut out,
        "palisade_request_duration_seconds",
        "histogram",
        "Time from a request's complete head to its exchange's end.",
    );
    let mut cumulative = 0u64;
    for (i, bound) in DURATION_BOUNDS_US.iter().enumerate() {
        cumulative += sum(cores, |c| &c.duration.buckets[i]);
        let _ = writeln!(
            out,
            "palisade_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    cumulative += sum(cores, |c| &c.duration.buckets[DURATION_BOUNDS_US.len()]);
    let _ = writeln!(
        out,
        "palisade_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\npalisade_request_duration_seconds_sum {}\npalisade_request_duration_seconds_count {cumulative}",
        sum(cores, |c| &c.duration.sum_us) as f64 / 1e6
    );

    describe(
        &mut out,
        "palisade_upstream_failures_total",
        "counter",
        "Exchanges with an app that failed, answered 502 or 504, by reason.",
    );
    for (i, reason) in UpstreamFailure::LABELS.iter().enumerate() {
        let _ = writeln!(
            out,
            "palisade_upstream_failures_total{{reason=\"{reason}\"}} {}",
            sum(cores, |c| &c.upstream_failures[i])
        );
    }
    describe(
        &mut out,
        "palisade_tls_handshakes_total",
        "counter",
        "TLS handshakes with clients, by result.",
    );
    let _ = writeln!(
        out,
        "palisade_tls_handshakes_total{{result=\"ok\"}} {}\npalisade_tls_handshakes_total{{result=\"failed\"}} {}",
        sum(cores, |c| &c.tls_handshakes),
        sum(cores, |c| &c.tls_handshake_failures)
    );
    for (metric, help, pick) in [
        (
            "palisade_connections_accepted_total",
            "Client connections accepted.",
            (|c: &CoreMetrics| &c.connections_accepted) as fn(&CoreMetrics) -> &Counter,
        ),
        (
            "palisade_http2_connections_total",
            "Client connections that chose HTTP/2 by ALPN.",
            |c: &CoreMetrics| &c.http2_connections,
        ),
        (
            "palisade_http2_calm_down_total",
            "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for resetting too many streams.",
            |c: &CoreMetrics| &c.http2_calm_down,
        ),
    ] {
        describe(&mut out, metric, "counter", help);
        let _ = writeln!(out, "{metric} {}", sum(cores, pick));
    }
    for (metric, help, pick) in [
        (
            "palisade_connections_open",
            "Client connections open, by core.",
            (|c: &CoreMetrics| c.connections_open.get()) as fn(&CoreMetrics) -> u64,
        ),
        (
            "palisade_core_policy_version",
            "The policy snapshot version each core serves (0: none yet).",
            |c: &CoreMetrics| c.policy_version.get(),
        ),
    ] {
        describe(&mut out, metric, "gauge", help);
        for c in cores {
            let _ = writeln!(out, "{metric}{{core=\"{}\"}} {}", c.core, pick(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_over_cores_and_cumulative_buckets() {
        let m = Metrics::new(2);
        let a0 = m.cores[0].for_apps(["mail \"x\""].into_iter());
        let a1 = m.cores[1].for_apps(["mail \"x\""].into_iter());
        a0[0].request(200, Action::Allow, 100, 1000);
        a1[0].request(204, Action::Allow, 50, 0);
        a1[0].request(403, Action::Block, 10, 20);
        m.cores[0].duration.observe(300);
        m.cores[1].duration.observe(40_000_000);
        m.cores[1].policy_version.set(7);
        let text = render(&m);
        for line in [
            "palisade_requests_total{app=\"mail \\\"x\\\"\",code_class=\"2xx\",action=\"allow\"} 2",
            "palisade_requests_total{app=\"mail \\\"x\\\"\",code_class=\"4xx\",action=\"block\"} 1",
            "palisade_received_bytes_total{app=\"mail \\\"x\\\"\"} 160",
            "palisade_sent_bytes_total{app=\"mail \\\"x\\\"\"} 1020",
            "palisade_request_duration_seconds_bucket{le=\"0.00025\"} 0",
            "palisade_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "palisade_request_duration_seconds_bucket{le=\"30\"} 1",
            "palisade_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "palisade_request_duration_seconds_count 2",
            "palisade_request_duration_seconds_sum 40.0003",
            "palisade_core_policy_version{core=\"0\"} 0",
            "palisade_core_policy_version{core=\"1\"} 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("code_class=\"5xx\""),
            "zero series are left out"
        );
    }
}
