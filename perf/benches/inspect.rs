//! Content inspection throughput on plain text (`session::detect::scan`,
//! all five built-in detectors: payment cards with Luhn, US SSN, IBAN with
//! mod-97, AWS access keys, private-key blocks).
//!
//! Corpus: 8 MiB of English-like prose with the digits real documents
//! carry (dates, amounts, phone numbers, order ids) and a few true
//! positives per MiB. Baselines in the same run: `memchr` counting
//! newlines (the memory-bandwidth floor of one pass) and the obvious
//! implementation, one `regex` per detector run over the whole text with
//! the checksums applied to each match.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_dataplane::session_policy::detect;

const WORDS: [&str; 24] = [
    "the",
    "quarterly",
    "report",
    "shows",
    "revenue",
    "growth",
    "in",
    "our",
    "regional",
    "offices",
    "and",
    "customers",
    "renewed",
    "their",
    "contracts",
    "before",
    "the",
    "deadline",
    "while",
    "support",
    "tickets",
    "fell",
    "sharply",
    "overall",
];

fn corpus(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut n = 0u64;
    while out.len() < size {
        let r = next();
        n += 1;
        let token = match r % 40 {
            0 => format!("{}", 2000 + r % 30),
            1 => format!("${}.{:02}", r % 10_000, r % 100),
            2 => format!("555-{:04}", r % 10_000),
            3 => format!("#{}", r % 1_000_000),
            4 => format!("{}%", r % 100),
            _ => WORDS[(r >> 8) as usize % WORDS.len()].to_string(),
        };
        out.extend_from_slice(token.as_bytes());
        out.push(if n.is_multiple_of(15) { b'\n' } else { b' ' });
        if n.is_multiple_of(40_000) {
            out.extend_from_slice(b"card 4111 1111 1111 1111, ssn 123-45-6789, iban GB82 WEST 1234 5698 7654 32, key AKIAIOSFODNN7EXAMPLE\n");
        }
    }
    out
}

/// The obvious implementation: a regex per detector, checksums on matches.
struct Naive {
    card: regex::bytes::Regex,
    ssn: regex::bytes::Regex,
    iban: regex::bytes::Regex,
    aws: regex::bytes::Regex,
    key: regex::bytes::Regex,
}

impl Naive {
    fn new() -> Naive {
        let r = |p: &str| regex::bytes::Regex::new(p).expect("regex");
        Naive {
            card: r(r"\b[2-6](?:[ -]?[0-9]){12,18}\b"),
            ssn: r(r"\b[0-9]{3}([- ])[0-9]{2}([- ])[0-9]{4}\b"),
            iban: r(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"),
            aws: r(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
            key: r(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        }
    }

    fn scan(&self, text: &[u8]) -> u32 {
        let digits = |m: &[u8]| {
            m.iter()
                .filter(|b| b.is_ascii_digit())
                .copied()
                .collect::<Vec<u8>>()
        };
        let mut n = 0;
        n += self
            .card
            .find_iter(text)
            .filter(|m| detect::luhn_valid(&digits(m.as_bytes())))
            .count();
        n += self.ssn.find_iter(text).count();
        n += self.iban.find_iter(text).count();
        n += self.aws.find_iter(text).count();
        n += self.key.find_iter(text).count();
        n as u32
    }
}

fn bench(c: &mut Criterion) {
    let text = corpus(8 << 20);
    let mut g = c.benchmark_group("inspect_plain_text_8MiB");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    g.bench_function("builtin detectors (all five)", |b| {
        b.iter(|| black_box(detect::scan(black_box(&text))))
    });
    g.bench_function("memchr newline count (bandwidth floor)", |b| {
        b.iter(|| black_box(memchr::memchr_iter(b'\n', black_box(&text)).count()))
    });
    g.bench_function("digit-run starts only (no detector work)", |b| {
        b.iter(|| {
            let mut n = 0usize;
            detect::for_each_run_start(black_box(&text), |_| n += 1);
            black_box(n)
        })
    });
    let naive = Naive::new();
    g.bench_function("naive: a regex per detector (baseline)", |b| {
        b.iter(|| black_box(naive.scan(black_box(&text))))
    });
    g.finish();
    let found = detect::scan(&text);
    assert!(found.credit_card > 0 && found.ssn > 0 && found.iban > 0 && found.aws_key > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
