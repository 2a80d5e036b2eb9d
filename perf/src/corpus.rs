//! The rewrite engine's corpora (`benches/rewrite.rs`, and the
//! `rewrite-instructions` binary that callgrind counts): 1 MiB documents
//! generated deterministically, and a routing table of `n` app domains.

use palisade_dataplane::body::FilterOutput;
use palisade_dataplane::rewrite::Rewriter;
use palisade_dataplane::snapshot::Snapshot;
use palisade_schema::policy::{compile_source, CompileOptions};

pub const CORPUS_BYTES: usize = 1 << 20;
pub const PIECE: usize = 16 * 1024;
pub const SUFFIX: &str = "proxy.test";

/// The app domains: `svc<k>.test`.
pub fn domains(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("svc{k}.test")).collect()
}

pub fn routes(n: usize) -> Snapshot {
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
pub fn dense(n_domains: usize) -> Vec<u8> {
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
pub fn page(n_domains: usize, app_hosts: bool) -> Vec<u8> {
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
pub fn engine(routes: &Snapshot, input: &[u8], pending: &mut Vec<u8>) -> usize {
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
            std::hint::black_box(&piece[range.clone()]);
        }
        std::hint::black_box(&out.bytes);
    }
    out.clear();
    r.finish(&mut out.bytes);
    total += out.len();
    *pending = std::mem::take(&mut out.bytes);
    total
}

/// The engine as the data plane runs it over HTML responses: a fresh
/// rewriter per response, with the client instrumentation's script
/// injected first in the head, each body fed in one piece (a small
/// response arrives in one read). Returns the bytes produced.
pub fn responses(routes: &Snapshot, bodies: &[Vec<u8>], pending: &mut Vec<u8>) -> usize {
    let tag = &routes.client.tag;
    let mut out = FilterOutput {
        bytes: std::mem::take(pending),
        ..FilterOutput::default()
    };
    let mut total = 0;
    for body in bodies {
        let mut r = Rewriter::new(&routes.hosts, true).with_injection(tag);
        out.clear();
        r.feed(body, &mut out);
        r.finish(&mut out);
        total += out.len();
        for (_, range) in &out.spans {
            std::hint::black_box(&body[range.clone()]);
        }
        std::hint::black_box(&out.bytes);
    }
    *pending = std::mem::take(&mut out.bytes);
    total
}

/// The engine writing everything into one buffer (every byte copied).
pub fn engine_to_vec(routes: &Snapshot, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut r = Rewriter::new(&routes.hosts, true);
    for piece in input.chunks(PIECE) {
        r.feed(piece, out);
    }
    r.finish(out);
}
