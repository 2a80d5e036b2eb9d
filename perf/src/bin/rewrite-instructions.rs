//! Runs the rewrite engine over one corpus a given number of times, and
//! nothing else worth counting: the program `valgrind --tool=callgrind`
//! counts instructions of when timings are too noisy to compare builds.
//!
//! ```sh
//! cargo build --release -p palisade-perf --bin rewrite-instructions
//! valgrind --tool=callgrind --toggle-collect='palisade_perf::corpus::engine' \
//!     target/release/rewrite-instructions dense 3
//! ```
//!
//! Corpora: `dense`, `sparse`, `no_app_hosts` (256 app domains, as in
//! `benches/rewrite.rs`), and `dense_page`: the end-to-end benchmark's
//! dense page (`bench origin`), an app URL every ~125 bytes in twelve
//! encodings (plain, JS-escaped, `\u002F`, `\x2F`, percent, entities). It prints the corpus size and the number of
//! rewrites, so instructions per byte and per rewritten URL follow.
//! `dense/N` is the dense corpus over N app domains.
//!
//! `small_page` is the end-to-end benchmark's 4 KiB page 256 times as
//! separate responses, each through a fresh rewriter that injects the
//! client instrumentation (as the data plane does per HTML response);
//! count it with `--toggle-collect='palisade_perf::corpus::responses'`.

use palisade_perf::corpus::{dense, engine, page, responses, routes, SUFFIX};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "dense".into());
    let runs: usize = match args.next().map(|s| s.parse()) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("rewrite-instructions: bad run count: {e}");
            std::process::exit(2);
        }
    };
    // `dense/N`: the dense corpus over N app domains (as
    // `dense_by_domain_count`).
    let domains: usize = match name.strip_prefix("dense/").map(str::parse) {
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("rewrite-instructions: bad domain count in {name:?}");
            std::process::exit(2);
        }
        None => 256,
    };
    let routes = routes(domains);
    if name == "small_page" {
        let pages = vec![palisade_bench::origin::page_4k("svc0.test").into_bytes(); 256];
        let input_len: usize = pages.iter().map(Vec::len).sum();
        let mut pending = Vec::with_capacity(8192);
        let mut out_len = 0;
        for _ in 0..runs {
            out_len = responses(&routes, &pages, &mut pending);
        }
        let injected = pages.len() * routes.client.tag.len();
        println!(
            "{name}: {input_len} bytes in ({} responses), {out_len} bytes out, {} rewrites, {runs} runs",
            pages.len(),
            (out_len - input_len - injected) / (SUFFIX.len() + 1)
        );
        return;
    }
    let input = match name.as_str() {
        "dense" => dense(256),
        _ if name.starts_with("dense/") => dense(domains),
        "sparse" => page(256, true),
        "no_app_hosts" => page(256, false),
        // The end-to-end benchmark's dense page: twelve URL encodings.
        "dense_page" => palisade_bench::origin::dense_page("svc0.test", 256, 1 << 20).into_bytes(),
        other => {
            eprintln!(
                "rewrite-instructions: unknown corpus {other:?} (dense, dense/N, sparse, no_app_hosts, dense_page, small_page)"
            );
            std::process::exit(2);
        }
    };
    let mut pending = Vec::with_capacity(input.len() * 2);
    let mut out_len = 0;
    for _ in 0..runs {
        out_len = engine(&routes, &input, &mut pending);
    }
    println!(
        "{name}: {} bytes in, {out_len} bytes out, {} rewrites, {runs} runs",
        input.len(),
        (out_len - input.len()) / (SUFFIX.len() + 1)
    );
}
