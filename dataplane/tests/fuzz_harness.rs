//! Runs the fuzz harness (`palisade_dataplane::fuzz`) in normal CI: on every
//! stored regression input, and on random mutations of valid requests.

use palisade_dataplane::fuzz::{fuzz_routes, request_head_and_body, rewrite_split_invariance};
use proptest::prelude::*;

const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: demo.test.proxy.test\r\n\r\n",
    b"POST /x?r=https%3A%2F%2Fdemo.test.proxy.test HTTP/1.1\r\nHost: a.demo.test.proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nX: y\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: demo.test.proxy.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: upgrade, x\r\nUpgrade: websocket\r\n\r\nabc",
    b"GET http://demo.test.proxy.test/ HTTP/1.0\r\nHost: demo.test.proxy.test\r\nConnection: keep-alive\r\n\r\n",
];

#[test]
fn regression_inputs_do_not_panic() {
    let routes = fuzz_routes();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("regression dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        request_head_and_body(&routes, &std::fs::read(&path).expect("read"));
        count += 1;
    }
    for seed in SEEDS {
        request_head_and_body(&routes, seed);
    }
    assert!(count > 0, "the regression corpus is not empty");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_requests_do_not_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    ) {
        let routes = fuzz_routes();
        let mut input = SEEDS[seed].to_vec();
        for (pos, byte, kind) in edits {
            let at = pos % (input.len() + 1);
            match kind {
                0 => input.insert(at, byte),
                1 if at < input.len() => { input.remove(at); }
                _ if at < input.len() => input[at] = byte,
                _ => {}
            }
        }
        request_head_and_body(&routes, &input);
    }
}

/// Replays the `rewrite_stream` fuzz corpus (seeds and any saved crash
/// inputs): no panic and split invariance on each.
#[test]
fn rewrite_corpus_replays() {
    let routes = fuzz_routes();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/rewrite_stream");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        rewrite_split_invariance(&routes, &data);
        count += 1;
    }
    assert!(count >= 20, "the rewrite corpus has its seeds");
}
