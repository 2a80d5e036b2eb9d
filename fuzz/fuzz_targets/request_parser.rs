//! Fuzzes the request head parser and body framing. The logic lives in
//! `palisade_dataplane::fuzz` so normal CI compiles and exercises it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dataplane::fuzz::{fuzz_routes, request_head_and_body};
use palisade_dataplane::snapshot::Snapshot;

thread_local! {
    // Per-thread like a data-plane core: the table is not shared.
    static ROUTES: Snapshot = fuzz_routes();
}

fuzz_target!(|data: &[u8]| {
    ROUTES.with(|routes| request_head_and_body(routes, data));
});
