//! Fuzzes the streaming rewrite engine and the request-body unwrapper: no
//! panic, and output independent of how the body is split. The logic
//! lives in `palisade_dataplane::fuzz` so normal CI runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dataplane::fuzz::{fuzz_routes, rewrite_split_invariance};
use palisade_dataplane::snapshot::Snapshot;

thread_local! {
    static ROUTES: Snapshot = fuzz_routes();
}

fuzz_target!(|data: &[u8]| {
    ROUTES.with(|routes| rewrite_split_invariance(routes, data));
});
