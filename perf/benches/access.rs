//! Access policy evaluation at scale: 1,000 access policies and 100,000
//! IP ranges (`palisade_bench::policies::access_policy_toml`).
//!
//! - `evaluate`: the per-request work on a kept-alive connection (its IP
//!   sets and user-agent kind cached): the policies of the request's app
//!   and the global ones, most restrictive first.
//! - `new_connection_and_evaluate`: adds what a new connection pays once:
//!   the address lookup (one binary search over every range edge) and the
//!   user-agent match.
//! - `evaluate, all 1,000 policies on the request's app`: the worst case,
//!   where one app carries every app-specific policy.
//! - `naive (baseline)`: the obvious implementation, every policy in order
//!   with its ranges scanned linearly, strings compared.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_dataplane::access::{self, AccessTable, Subject};
use palisade_schema::access::{AccessAction, AccessPolicy};
use palisade_schema::policy::Policy;

struct Request {
    app: usize,
    ip: IpAddr,
    user: &'static str,
    groups: [&'static str; 2],
    user_agent: &'static [u8],
}

fn requests() -> Vec<Request> {
    // Spread over apps, inside and outside the tagged ranges.
    (0..64)
        .map(|i: u32| Request {
            app: (i as usize * 7) % 100,
            ip: IpAddr::from([
                10 + (i % 3) as u8,
                (i * 37 % 256) as u8,
                (i * 11 % 256) as u8,
                9,
            ]),
            user: ["user3", "user17", "alice", "bob"][i as usize % 4],
            groups: [
                ["group1", "group5"],
                ["group2", "staff"],
                ["eng", "ops"],
                ["group30", "group31"],
            ][i as usize % 4],
            user_agent: if i.is_multiple_of(3) {
                b"OneDriveSync/23.1"
            } else {
                b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
            },
        })
        .collect()
}

/// The obvious evaluation: every policy, in order; IP sets scanned.
fn naive(policy: &Policy, r: &Request, devices: &[&str]) -> AccessAction {
    let in_set = |names: &[String]| {
        names.iter().any(|n| {
            policy
                .ip_tags
                .iter()
                .chain(&policy.locations)
                .filter(|t| &t.name == n)
                .any(|t| {
                    t.ranges.iter().any(|range| {
                        let (lo, hi) = range.bounds();
                        let v = match r.ip {
                            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
                            IpAddr::V6(a) => u128::from(a),
                        };
                        (lo..=hi).contains(&v)
                    })
                })
        })
    };
    let kind = if access::client_kind(r.user_agent) == access::CLIENT_BROWSER {
        "browser"
    } else {
        "native"
    };
    let app = &policy.apps[r.app].name;
    let mut best: Option<AccessAction> = None;
    for p in &policy.access_policies {
        let m = |policy: &AccessPolicy| {
            let p = &policy.filters;
            (p.apps.is_empty() || p.apps.contains(app))
                && (p.users.is_empty() || p.users.iter().any(|u| u == r.user))
                && (p.groups.is_empty() || p.groups.iter().any(|g| r.groups.contains(&g.as_str())))
                && (p.devices.is_empty() || p.devices.iter().any(|d| devices.contains(&d.as_str())))
                && (p.client_apps.is_empty() || p.client_apps.iter().any(|c| c == kind))
                && (p.ip_tags.is_empty() || in_set(&p.ip_tags))
                && !in_set(&p.not_ip_tags)
        };
        if m(p) {
            best = Some(best.map_or(p.action, |b| b.max(p.action)));
        }
    }
    best.unwrap_or(policy.apps[r.app].access_default)
}

/// What a connection computes once: (IP set list, user id, group ids,
/// client kind, user-agent bits).
type Prepared = (u32, Option<u32>, Vec<u32>, u8, u64);

fn prepare(table: &AccessTable, requests: &[Request]) -> Vec<Prepared> {
    requests
        .iter()
        .map(|r| {
            let mut groups = Vec::new();
            table.group_ids(r.groups.iter().copied(), &mut groups);
            (
                table.ip_sets_id(r.ip),
                table.user_id(r.user),
                groups,
                access::client_kind(r.user_agent),
                table.user_agent_bits(r.user_agent),
            )
        })
        .collect()
}

fn evaluation(c: &mut Criterion) {
    let policy = palisade_bench::policies::access_policy(1_000, 100_000, 100);
    let table = AccessTable::build(&policy).expect("builds");
    let requests = requests();
    // Per-connection state, computed once per request here for the steady
    // state benchmark.
    let prepared = prepare(&table, &requests);
    // Same answers as the naive evaluation.
    for (r, (sets, user, groups, kind, ua)) in requests.iter().zip(&prepared) {
        let fast = table.evaluate(&Subject {
            app: r.app,
            user: *user,
            groups,
            ip_sets: table.ip_sets(*sets),
            devices: access::DEVICE_UNMANAGED,
            client_kind: *kind,
            user_agent_bits: *ua,
        });
        assert_eq!(
            fast.action,
            naive(&policy, r, &["unmanaged"]),
            "app {} ip {}",
            r.app,
            r.ip
        );
    }

    let mut g = c.benchmark_group("access_1000_policies_100k_ranges");
    let mut i = 0usize;
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            let (sets, user, groups, kind, ua) = &prepared[i];
            black_box(table.evaluate(&Subject {
                app: requests[i].app,
                user: *user,
                groups,
                ip_sets: table.ip_sets(*sets),
                devices: access::DEVICE_UNMANAGED,
                client_kind: *kind,
                user_agent_bits: *ua,
            }))
        })
    });
    g.bench_function("new_connection_and_evaluate", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            let r = &requests[i];
            let (_, user, groups, _, _) = &prepared[i];
            let sets = table.ip_sets_id(black_box(r.ip));
            black_box(table.evaluate(&Subject {
                app: r.app,
                user: *user,
                groups,
                ip_sets: table.ip_sets(sets),
                devices: access::DEVICE_UNMANAGED,
                client_kind: access::client_kind(r.user_agent),
                user_agent_bits: table.user_agent_bits(r.user_agent),
            }))
        })
    });
    // Worst case: every app-specific policy names app0, and every request
    // goes to app0.
    let crowded = palisade_bench::policies::access_policy(1_000, 100_000, 1);
    let crowded_table = AccessTable::build(&crowded).expect("builds");
    let crowded_prepared = prepare(&crowded_table, &requests);
    g.bench_function("evaluate, all 1,000 policies on the request's app", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            let (sets, user, groups, kind, ua) = &crowded_prepared[i];
            black_box(crowded_table.evaluate(&Subject {
                app: 0,
                user: *user,
                groups,
                ip_sets: crowded_table.ip_sets(*sets),
                devices: access::DEVICE_UNMANAGED,
                client_kind: *kind,
                user_agent_bits: *ua,
            }))
        })
    });
    g.sample_size(10);
    g.bench_function("naive (baseline)", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(naive(&policy, &requests[i], &["unmanaged"]))
        })
    });
    g.finish();
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
