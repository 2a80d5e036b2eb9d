//! Fuzzes the request head parser and body framing. The logic lives in
//! `palisade_dataplane::fuzz` so normal CI compiles and exercises it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_dataplane::fuzz::{fuzz_routes, request_head_and_body};
use palisade_dataplane::routes::RouteTable;

static ROUTES: OnceLock<RouteTable> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    request_head_and_body(ROUTES.get_or_init(fuzz_routes), data);
});
