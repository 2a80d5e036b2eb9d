//! Runs the fuzz harness (`palisade_dataplane::fuzz`) in normal CI: on every
//! stored regression input, and on random mutations of valid requests.

use palisade_dataplane::fuzz::{
    chunked_body, fuzz_routes, multipart_body, request_head_and_body, response_head,
    rewrite_split_invariance, snapshot_bytes,
};
use proptest::prelude::*;

/// `seed` with `edits` applied: (position, byte, 0 insert / 1 remove /
/// 2 replace).
fn mutated(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for &(pos, byte, kind) in edits {
        let at = pos % (input.len() + 1);
        match kind {
            0 => input.insert(at, byte),
            1 if at < input.len() => {
                input.remove(at);
            }
            _ if at < input.len() => input[at] = byte,
            _ => {}
        }
    }
    input
}

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
        request_head_and_body(&routes, &mutated(SEEDS[seed], &edits));
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

/// Every input of the corpus `name` (seeds and saved finds).
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(name);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
        .collect();
    inputs.sort();
    inputs
}

/// Replays the `response_parser`, `chunked_body`, `snapshot_decode` and
/// `multipart_body` corpora (seeds and any saved finds).
#[test]
fn response_chunked_snapshot_and_multipart_corpora_replay() {
    let routes = fuzz_routes();
    let responses = corpus("response_parser");
    assert!(responses.len() >= 8, "the response corpus has its seeds");
    for data in &responses {
        response_head(&routes, data);
    }
    let bodies = corpus("chunked_body");
    assert!(bodies.len() >= 6, "the chunked corpus has its seeds");
    for data in &bodies {
        chunked_body(data);
    }
    let snapshots = corpus("snapshot_decode");
    assert!(snapshots.len() >= 3, "the snapshot corpus has its seeds");
    for data in &snapshots {
        snapshot_bytes(data);
    }
    // The seeds are real snapshots: they decode.
    assert!(snapshots
        .iter()
        .any(|s| palisade_schema::snapshot::decode(s).is_ok()));
    let uploads = corpus("multipart_body");
    assert!(uploads.len() >= 5, "the multipart corpus has its seeds");
    for data in &uploads {
        multipart_body(&routes, data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random edits of the response, chunked and multipart seeds, between
    /// fuzzing runs.
    #[test]
    fn mutated_responses_and_bodies_do_not_panic(
        which in 0usize..3,
        seed in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    ) {
        let routes = fuzz_routes();
        let name = ["response_parser", "chunked_body", "multipart_body"][which];
        let seeds = corpus(name);
        let input = mutated(&seeds[seed % seeds.len()], &edits);
        match which {
            0 => response_head(&routes, &input),
            1 => chunked_body(&input),
            _ => multipart_body(&routes, &input),
        }
    }
}
