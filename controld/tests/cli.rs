//! The `controld` binary's offline commands, run as an operator would.

use palisade_bench::testing::RunOk;
use std::path::PathBuf;
use std::process::Command;

fn controld() -> Command {
    Command::new(env!("CARGO_BIN_EXE_controld"))
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn minimal_policy_compiles_to_a_snapshot_the_data_plane_reads() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("minimal.snap");
    let run = controld()
        .arg("compile")
        .arg(example("minimal.toml"))
        .arg("-o")
        .arg(&out)
        .ran_ok("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("suffix proxy.test, 1 app(s), 2 domain(s)"),
        "{stdout}"
    );
    let policy =
        palisade_schema::snapshot::decode(&std::fs::read(&out).expect("read")).expect("decodes");
    assert_eq!(policy.apps[0].name, "demo");
    // No temp file is left behind by the atomic write.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.toml");
    let cases = [
        ("[proxy]\nsuffix = \"proxy.test\"\nmystery = 1\n", ":3:1: error: unknown field `mystery`"),
        ("[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"a\"\ndomains = [\"a..test\"]\n", ":5:12: error: bad domain"),
        (
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"a\"\ndomains = [\"a.test\"]\n[[app]]\nname = \"b\"\ndomains = [\"a.test\"]\n",
            ":8:12: error: duplicate domain a.test: already owned by app \"a\" (line 5)",
        ),
        (
            "[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"a\"\ndomains = [\"a.test\"]\nupstream = \"gopher://x\"\n",
            ":6:12: error: bad upstream URL \"gopher://x\"",
        ),
        ("[proxy]\nsuffix = \"proxy.test\"\n[[app]]\nname = \"a\"\n", "missing field `domains`"),
        ("[proxy\n", ":1:7: error:"),
    ];
    for (text, want) in cases {
        std::fs::write(&bad, text).expect("write");
        for cmd in ["validate", "compile"] {
            let mut c = controld();
            c.arg(cmd).arg(&bad);
            if cmd == "compile" {
                c.arg("-o").arg(dir.path().join("never.snap"));
            }
            let run = c.output().expect("run");
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(!run.status.success(), "{cmd} must fail for {text:?}");
            assert!(
                stderr.contains(&format!("{}{want}", bad.display())) || stderr.contains(want),
                "{cmd}: want {want:?} in {stderr:?}"
            );
            assert!(
                stderr.starts_with(&bad.display().to_string()),
                "{cmd}: message starts with the file: {stderr}"
            );
        }
        assert!(
            !dir.path().join("never.snap").exists(),
            "no snapshot written for a bad policy"
        );
    }
}
