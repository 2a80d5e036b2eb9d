//! Fuzzes the chunked decoder: no panic, split invariance, re-encoding
//! round trip. Logic in `palisade_dataplane::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| palisade_dataplane::fuzz::chunked_body(data));
