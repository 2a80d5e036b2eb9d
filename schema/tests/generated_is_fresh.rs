//! Fails when the committed generated code differs from what `capnp` makes
//! of the schemas today. Skipped (with a note) when `capnp` is not installed;
//! CI installs it so the check always runs there.

mod support {
    pub mod gen {
        include!("support/gen.rs");
    }
}

use std::path::PathBuf;

#[test]
fn committed_generated_code_matches_schemas() {
    if !support::gen::capnp_available() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must install capnproto so the generated-code check runs");
        }
        eprintln!("note: capnp not installed; skipping the generated-code staleness check");
        return;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    support::gen::generate(&manifest, dir.path()).expect("generate");
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read tempdir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        let fresh = std::fs::read_to_string(entry.path()).expect("read fresh");
        let committed_path = manifest.join("src/generated").join(&name);
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); run scripts/gen-schema",
                committed_path.display()
            )
        });
        assert!(
            fresh == committed,
            "{} is stale: run scripts/gen-schema and commit the result",
            committed_path.display()
        );
        compared += 1;
    }
    assert_eq!(
        compared,
        support::gen::SCHEMAS.len(),
        "one generated file per schema"
    );
}
