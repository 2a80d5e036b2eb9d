//! `--metrics` on both processes of a node, with a real push in between:
//! the data plane's endpoint sums its two cores and reports the version
//! each core serves (before and after an apply); controld's serves its
//! status (each core's version, log records stored) as `status
//! --prometheus` prints it. The Grafana dashboard in `docs/grafana/`
//! queries only metrics the two endpoints serve.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::*;

const HOST: &str = "demo.test.proxy.test";

/// The `/metrics` text at `addr`.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let (status, body) = parse_response(&raw).expect("response");
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of the samples of `metric` whose labels contain `labels`.
fn total(text: &str, metric: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(metric) && series.contains(labels))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// The values of `metric`'s samples, in order.
fn samples(text: &str, metric: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect()
}

/// The `http://ADDR/metrics` address in a ready line.
fn metrics_address(line: &str) -> SocketAddr {
    line.split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
}

#[test]
fn both_processes_serve_their_metrics_across_an_apply() {
    let env = Env::new();
    let origins = env.two_origins();
    let controld = env.controld(&origins.policy_a, &["--metrics", "127.0.0.1:0"]);
    let controld_metrics = metrics_address(&controld.first_line);
    let (dp, addr) = env.dataplane(2, &["--metrics", "127.0.0.1:0"]);
    let dp_metrics = metrics_address(&dp.first_line);
    env.wait_for_cores(2, 1);

    for _ in 0..20 {
        assert_eq!(fetch(addr, HOST).expect("request").0, 200);
    }
    // The data plane: both cores' requests in one sum, each core's version.
    eventually("20 requests counted", || {
        total(
            &scrape(dp_metrics),
            "palisade_requests_total",
            "app=\"demo\",code_class=\"2xx\",action=\"allow\"",
        ) == 20.0
    });
    let text = scrape(dp_metrics);
    for core in 0..2 {
        assert_eq!(
            total(
                &text,
                "palisade_core_policy_version",
                &format!("core=\"{core}\"")
            ),
            1.0,
            "{text}"
        );
    }
    // controld: the records stored from the cores, each core's version.
    eventually("20 log records stored", || {
        total(
            &scrape(controld_metrics),
            "palisade_log_records_stored_total",
            "",
        ) == 20.0
    });
    assert_eq!(
        samples(&scrape(controld_metrics), "palisade_core_policy_version"),
        [1.0, 1.0],
        "two cores at version 1"
    );

    // An apply: every core's gauge moves to version 2 on both endpoints.
    env.apply(&origins.policy_b, "metrics");
    env.wait_for_cores(2, 2);
    eventually("the data plane's cores report version 2", || {
        let text = scrape(dp_metrics);
        (0..2).all(|core| {
            total(
                &text,
                "palisade_core_policy_version",
                &format!("core=\"{core}\""),
            ) == 2.0
        })
    });
    let text = scrape(controld_metrics);
    assert_eq!(samples(&text, "palisade_policy_version"), [2.0]);
    assert_eq!(samples(&text, "palisade_core_policy_version"), [2.0, 2.0]);

    // Every metric the dashboard queries is served by one of the two.
    let served = format!("{}{text}", scrape(dp_metrics));
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/palisade.json"),
    )
    .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            queried.extend(
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("palisade_"))
                    .map(|w| w.trim_end_matches("_bucket").to_string()),
            );
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for metric in queried {
        assert!(
            served.contains(&format!("# TYPE {metric} ")),
            "the dashboard queries {metric}, which neither endpoint serves"
        );
    }
    drop(dp);
}
