//! Throughput of the streaming rewrite engine, per core, against two
//! baselines measured in the same run: `memcpy` of the same bytes (the
//! floor: the engine copies its output once), and
//! `aho_corasick::AhoCorasick::replace_all_with_bytes` over the same host
//! list (the generic approach).
//!
//! `engine` is the engine as the data plane drives it: output straight into
//! the pending write buffer, unchanged spans of 8 KiB or more by reference
//! to the read buffer (zero-copy). `engine_to_vec` copies every output
//! byte into one buffer.
//!
//! Corpora (1 MiB each, fed in 16 KiB pieces like socket reads):
//! - `dense`: HTML with an app URL every ~125 bytes;
//! - `sparse`: a real-looking article page, one URL per ~1.5 KiB, half of
//!   them app hosts;
//! - `no_app_hosts`: the sparse page with every app host replaced by a
//!   foreign one (its `//` anchors are still found and looked up).
//!
//! Groups `dense_256_domains`, `sparse_256_domains`, `no_app_hosts` and
//! `dense_by_domain_count` (1, 256, 1024 app domains).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_perf::corpus::{dense, domains, engine, engine_to_vec, page, routes};
use palisade_perf::corpus::{CORPUS_BYTES, SUFFIX};

fn aho_corasick_baseline(n: usize) -> aho_corasick::AhoCorasick {
    let d = domains(n);
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&d)
        .expect("automaton")
}

fn with_baselines(c: &mut Criterion, group: &str, n: usize, input: &[u8]) {
    let routes = routes(n);
    let ac = aho_corasick_baseline(n);
    let mut out = Vec::with_capacity(input.len() * 2);
    engine_to_vec(&routes, input, &mut out);
    assert_eq!(engine(&routes, input, &mut Vec::new()), out.len());
    eprintln!(
        "{group}: {} bytes in, {} bytes out ({} rewrites)",
        input.len(),
        out.len(),
        (out.len() - input.len()) / (SUFFIX.len() + 1)
    );
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("memcpy (baseline)", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(input));
            black_box(out.len())
        })
    });
    g.bench_function("aho_corasick_replace_all (baseline)", |b| {
        b.iter(|| {
            out.clear();
            ac.replace_all_with_bytes(black_box(input), &mut out, |m, matched, dst| {
                // The matched host keeps its letters and gains the suffix.
                dst.extend_from_slice(matched);
                dst.push(b'.');
                dst.extend_from_slice(SUFFIX.as_bytes());
                black_box(m.pattern());
                true
            });
            black_box(out.len())
        })
    });
    g.bench_function("engine", |b| {
        b.iter(|| black_box(engine(&routes, black_box(input), &mut out)))
    });
    g.bench_function("engine_to_vec", |b| {
        b.iter(|| {
            engine_to_vec(&routes, black_box(input), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    // The per-URL domain lookup alone (a subdomain of an app domain).
    let table = routes(256);
    let hosts: Vec<String> = domains(256).iter().map(|d| format!("www.{d}")).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(hosts.len() as u64));
    g.bench_function("app_for_host", |b| {
        b.iter(|| {
            hosts
                .iter()
                .filter(|h| table.hosts.app_for_host(black_box(h.as_bytes())).is_some())
                .count()
        })
    });
    g.finish();

    with_baselines(c, "dense_256_domains", 256, &dense(256));
    with_baselines(c, "sparse_256_domains", 256, &page(256, true));
    with_baselines(c, "no_app_hosts", 256, &page(256, false));

    let mut g = c.benchmark_group("dense_by_domain_count");
    g.throughput(Throughput::Bytes(CORPUS_BYTES as u64));
    for n in [1, 256, 1024] {
        let routes = routes(n);
        let input = dense(n);
        let mut out = Vec::with_capacity(input.len() * 2);
        g.bench_function(format!("engine/{n}"), |b| {
            b.iter(|| black_box(engine(&routes, black_box(&input), &mut out)))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = rewrite
}
criterion_main!(benches);
