//! Fuzzes the app's response head parser: no panic, and an accepted head
//! becomes a valid client head. Logic in `palisade_dataplane::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dataplane::fuzz::{fuzz_routes, response_head};
use palisade_dataplane::snapshot::Snapshot;

thread_local! {
    static ROUTES: Snapshot = fuzz_routes();
}

fuzz_target!(|data: &[u8]| {
    ROUTES.with(|routes| response_head(routes, data));
});
