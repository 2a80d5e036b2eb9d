//! Regenerates the committed Rust code for `schema/capnp/*.capnp`.
//!
//! Needs the `capnp` compiler on PATH; run through `scripts/gen-schema`.
//! Usage: `gen_schema [OUT_DIR]` (default: `schema/src/generated`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("src/generated"));
    if let Err(e) = palisade_schema_gen::generate(&manifest, &out) {
        eprintln!("gen_schema: {e}");
        std::process::exit(1);
    }
    println!("generated Rust code in {}", out.display());
}

/// Shared with the staleness test (included from `tests/generated_is_fresh.rs`).
mod palisade_schema_gen {
    include!("../tests/support/gen.rs");
}
