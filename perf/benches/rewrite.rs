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
use palisade_dataplane::body::FilterOutput;
use palisade_dataplane::rewrite::Rewriter;
use palisade_dataplane::snapshot::Snapshot;
use palisade_schema::policy::{compile_source, CompileOptions};

const CORPUS_BYTES: usize = 1 << 20;
const PIECE: usize = 16 * 1024;
const SUFFIX: &str = "proxy.test";

/// The app domains: `svc<k>.test`.
fn domains(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("svc{k}.test")).collect()
}

fn routes(n: usize) -> Snapshot {
    let mut toml = format!("[proxy]\nsuffix = \"{SUFFIX}\"\n");
    for (k, d) in domains(n).iter().enumerate() {
        toml.push_str(&format!(
            "[[app]]\nname = \"app{k}\"\ndomains = [\"{d}\"]\nupstream = \"http://127.0.0.1:1\"\n"
        ));
    }
    let policy = compile_source(
        "bench.toml",
        &toml,
        std::path::Path::new("."),
        &CompileOptions::default(),
    )
    .expect("bench policy compiles");
    Snapshot::build(&policy, &rustls::RootCertStore::empty()).expect("routes")
}

/// A deterministic pseudo-random sequence (no dependency, same corpus
/// every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// HTML with an app URL every ~125 bytes.
fn dense(n_domains: usize) -> Vec<u8> {
    let d = domains(n_domains);
    let mut rng = Lcg(7);
    let mut out = String::with_capacity(CORPUS_BYTES + 256);
    out.push_str("<!doctype html><html><body><ul>\n");
    let mut n = 0;
    while out.len() < CORPUS_BYTES {
        let host = &d[rng.next(d.len())];
        out.push_str(&format!(
            "<li class=\"row\"><a href=\"https://www.{host}/items/{n}\">Item {n}</a> shipped today</li>\n"
        ));
        n += 1;
    }
    out.truncate(CORPUS_BYTES);
    out.into_bytes()
}

const WORDS: &[&str] = &[
    "the",
    "proxy",
    "keeps",
    "session",
    "inside",
    "policy",
    "report",
    "quarterly",
    "numbers",
    "customer",
    "download",
    "shared",
    "folder",
    "review",
    "meeting",
    "notes",
    "and",
    "with",
    "for",
    "team",
];

/// A real-looking article page: paragraphs, markup, a link every ~1.5 KiB
/// (half to app hosts when `app_hosts`, all foreign otherwise), scripts.
fn page(n_domains: usize, app_hosts: bool) -> Vec<u8> {
    let d = domains(n_domains);
    let mut rng = Lcg(11);
    let mut out = String::with_capacity(CORPUS_BYTES + 4096);
    out.push_str("<!doctype html><html><head><title>Quarterly report</title>\n<style>body{font:16px/1.5 system-ui;margin:0 auto;max-width:42em}</style></head><body>\n");
    while out.len() < CORPUS_BYTES {
        out.push_str("<p>");
        for _ in 0..220 {
            out.push_str(WORDS[rng.next(WORDS.len())]);
            out.push(' ');
        }
        let host = if app_hosts && rng.next(2) == 0 {
            format!("files.{}", d[rng.next(d.len())])
        } else {
            format!("cdn{}.example.org", rng.next(50))
        };
        out.push_str(&format!(
            "<a href=\"https://{host}/doc/{}\">details</a>.</p>\n<div class=\"meta\"><span>updated</span> <time>2026-11-22</time></div>\n",
            rng.next(100_000)
        ));
    }
    out.truncate(CORPUS_BYTES);
    out.into_bytes()
}

/// The engine as the data plane's body relay drives it: output straight
/// into the pending write buffer (cleared per read, as a write would),
/// unchanged spans of 8 KiB or more by reference to the read buffer.
/// Returns the bytes produced.
fn engine(routes: &Snapshot, input: &[u8], pending: &mut Vec<u8>) -> usize {
    let mut r = Rewriter::new(&routes.hosts, true);
    let mut out = FilterOutput {
        bytes: std::mem::take(pending),
        ..FilterOutput::default()
    };
    let mut total = 0;
    for piece in input.chunks(PIECE) {
        out.clear();
        r.feed(piece, &mut out);
        total += out.len();
        for (_, range) in &out.spans {
            black_box(&piece[range.clone()]);
        }
        black_box(&out.bytes);
    }
    out.clear();
    r.finish(&mut out.bytes);
    total += out.len();
    *pending = std::mem::take(&mut out.bytes);
    total
}

/// The engine writing everything into one buffer (every byte copied).
fn engine_to_vec(routes: &Snapshot, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut r = Rewriter::new(&routes.hosts, true);
    for piece in input.chunks(PIECE) {
        r.feed(piece, out);
    }
    r.finish(out);
}

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
