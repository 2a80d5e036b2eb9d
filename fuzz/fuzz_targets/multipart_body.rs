//! Fuzzes the multipart upload parsers (file parts, file name, boundary)
//! and the text-field unwrapper: no panic, split invariance, a body with
//! no proxy host unchanged. Logic in `palisade_dataplane::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dataplane::fuzz::{fuzz_routes, multipart_body};
use palisade_dataplane::snapshot::Snapshot;

thread_local! {
    static ROUTES: Snapshot = fuzz_routes();
}

fuzz_target!(|data: &[u8]| ROUTES.with(|routes| multipart_body(routes, data)));
