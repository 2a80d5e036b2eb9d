// Code generation shared by `examples/gen_schema.rs` and the staleness test.

use std::path::Path;

/// The schema files, relative to the schema crate.
pub const SCHEMAS: &[&str] = &["capnp/policy.capnp", "capnp/control.capnp"];

/// Runs `capnp compile -orust` on every schema, writing into `out`.
pub fn generate(manifest: &Path, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix(manifest.join("capnp"))
        .output_path(out)
        .default_parent_module(vec!["generated".into()]);
    for schema in SCHEMAS {
        cmd.file(manifest.join(schema));
    }
    cmd.run().map_err(|e| format!("capnp compile failed: {e}"))
}

/// True when the `capnp` compiler is on PATH.
#[allow(dead_code)] // used by the test, not the example
pub fn capnp_available() -> bool {
    std::process::Command::new("capnp")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
