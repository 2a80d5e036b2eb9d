//! Idle connections and a slowloris attack at once, with normal traffic
//! beside them (the short variant of `bench scenario slowloris`, which
//! measures the latency): every normal request is served, the idle
//! connections keep working, the proxy closes every slowloris connection
//! at its header timeout (the attack reopens them), and the data plane's
//! memory stays bounded. With `PALISADE_SOAK=1` it holds the scenario's
//! 10,000 idle and 500 slowloris connections instead.

mod support;

use std::sync::atomic::Ordering;

use palisade_bench::slowloris::Attack;
use support::*;

const H: &str = "demo.test.proxy.test";
/// Whether the long variant runs (`PALISADE_SOAK=1`).
fn soak() -> bool {
    std::env::var("PALISADE_SOAK").is_ok_and(|v| v == "1")
}

#[test]
fn idle_and_slowloris_connections_leave_normal_traffic_served() {
    // 1,000 idle connections, fewer where the open-files limit is lower
    // (this process and the data plane each hold one end of each).
    let (want_idle, slow) = if soak() { (10_000, 500) } else { (1000, 100) };
    let limit = palisade_bench::scenario::raise_nofile() as usize;
    let idle = want_idle.min(limit.saturating_sub(slow + 300));
    assert!(
        idle >= 100,
        "open-files limit {limit} is too low for this test"
    );
    let origin = origin(demo_app("demo.test"));
    let dp = Dataplane::start(
        &policy(&format!("http://{}", origin.addr()), ""),
        &["--header-timeout", "2"],
    );
    let before = palisade_bench::scenario::rss_kib(dp.pid()).expect("rss");
    let mut attack = Attack::start(dp.addr, H, idle, slow).expect("attack");
    // Normal traffic while the attack holds its connections.
    for i in 0..200 {
        let resp = request(&dp, &get(H, &format!("/?n={i}")));
        assert_eq!(resp.status, 200, "request {i}");
    }
    attack
        .idle_still_served(H, 50)
        .expect("idle connections served");
    // Every slowloris connection is closed at the header timeout.
    palisade_bench::testing::eventually_within(
        "the proxy closing the slowloris connections",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
        || attack.closed_by_proxy.load(Ordering::Relaxed) >= slow as u64,
    );
    let during = palisade_bench::scenario::rss_kib(dp.pid()).expect("rss");
    let per_connection = (during.saturating_sub(before)) * 1024 / (idle + slow) as u64;
    // Bounded: idle connections hold no read buffer (target ≤ 8 KiB each,
    // measured by `bench scenario idle-conns`); this only catches a leak.
    assert!(
        per_connection < 64 * 1024,
        "{per_connection} bytes per connection ({before} KiB before, {during} KiB during)"
    );
    drop(attack);
    assert_eq!(request(&dp, &get(H, "/?after")).status, 200);
}
