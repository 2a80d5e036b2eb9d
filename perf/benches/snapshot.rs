//! Cost of taking a large policy from source to a per-core routing table:
//! 10,000 apps and 100,000 IP ranges (the scale `controld apply` must push
//! to every core in under 50 ms).
//!
//! Stages: `toml_compile` (controld: TOML → validated policy), `encode`
//! (controld: policy → snapshot bytes), `decode` (data plane: bytes →
//! validated policy), `decode_and_build` (data plane: … → routing table,
//! what each core does before it acks). Baseline: `capnp_traverse`, reading
//! every field of the message with no validation — the floor for any
//! Cap'n Proto decoder of this snapshot.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_dataplane::snapshot::Snapshot;
use palisade_schema::policy::{compile_source, CompileOptions};
use palisade_schema::{policy_capnp, snapshot};

fn large(c: &mut Criterion) {
    let toml =
        palisade_bench::policies::large_policy_toml(10_000, 100_000, "http://127.0.0.1:18080");
    let options = CompileOptions {
        version: 1,
        compiled_at_unix_ms: 0,
    };
    let policy = compile_source("large.toml", &toml, Path::new("."), &options).expect("compiles");
    let bytes = snapshot::encode(&policy);
    let roots = rustls::RootCertStore::empty();
    eprintln!(
        "large snapshot: {} bytes of TOML, {} bytes of snapshot",
        toml.len(),
        bytes.len()
    );

    let mut g = c.benchmark_group("snapshot_10k_apps_100k_ranges");
    g.sample_size(10);
    g.bench_function("capnp_traverse (baseline)", |b| {
        b.iter(|| {
            let mut slice = &bytes[snapshot::MAGIC.len()..];
            let mut opts = capnp::message::ReaderOptions::new();
            opts.traversal_limit_in_words(None);
            let msg =
                capnp::serialize::read_message_from_flat_slice(&mut slice, opts).expect("read");
            let snap = msg
                .get_root::<policy_capnp::snapshot::Reader>()
                .expect("root");
            let mut n = 0usize;
            for app in snap.get_apps().expect("apps").iter() {
                n += app.get_name().expect("name").len();
                for d in app.get_domains().expect("domains").iter() {
                    n += d.expect("domain").len();
                }
            }
            for t in snap.get_ip_tags().expect("tags").iter() {
                for r in t.get_ranges().expect("ranges").iter() {
                    n += r.get_address().expect("addr").len() + usize::from(r.get_prefix_length());
                }
            }
            black_box(n)
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(snapshot::decode(black_box(&bytes)).expect("decode")))
    });
    g.bench_function("decode_and_build", |b| {
        b.iter(|| {
            let p = snapshot::decode(black_box(&bytes)).expect("decode");
            black_box(Snapshot::build(&p, &roots).expect("build"))
        })
    });
    g.bench_function("encode", |b| {
        b.iter(|| black_box(snapshot::encode(black_box(&policy))))
    });
    g.bench_function("toml_parse_only (baseline for toml_compile)", |b| {
        b.iter(|| black_box(toml::from_str::<toml::Table>(black_box(&toml)).expect("parse")))
    });
    g.bench_function("toml_compile", |b| {
        b.iter(|| {
            black_box(
                compile_source("large.toml", black_box(&toml), Path::new("."), &options)
                    .expect("compile"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, large);
criterion_main!(benches);
