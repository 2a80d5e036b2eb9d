//! Fuzzes the snapshot decoder (what a data plane accepts over its control
//! socket or from its cache): no panic. Logic in `palisade_dataplane::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| palisade_dataplane::fuzz::snapshot_bytes(data));
