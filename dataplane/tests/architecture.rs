//! The phase chart in `docs/ARCHITECTURE.md` and the phases the driver
//! runs (`palisade_dataplane::proxy::PHASES`) must agree: same names, same
//! order, same modules, and each named function defined in its module.

use std::path::Path;

use palisade_dataplane::proxy::PHASES;

/// The rows of the phase chart: (name, module, function).
fn documented_phases(doc: &str) -> Vec<(String, String, String)> {
    let start = doc
        .find("| # | phase | module | function |")
        .expect("the phase chart's header row");
    doc[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |c: &str| c.trim_matches('`').to_string();
            (unquote(cells[2]), unquote(cells[3]), unquote(cells[4]))
        })
        .collect()
}

#[test]
fn the_phase_chart_matches_the_driver() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc =
        std::fs::read_to_string(root.join("../docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let documented = documented_phases(&doc);
    let in_code: Vec<(String, String, String)> = PHASES
        .iter()
        .map(|p| {
            (
                p.name.to_string(),
                p.module.to_string(),
                p.function.to_string(),
            )
        })
        .collect();
    assert_eq!(
        documented, in_code,
        "docs/ARCHITECTURE.md's phase chart and proxy::PHASES differ"
    );
    for (name, module, function) in &in_code {
        let source = std::fs::read_to_string(root.join("src").join(module))
            .unwrap_or_else(|e| panic!("phase {name:?}: module {module}: {e}"));
        let defined = [format!("fn {function}("), format!("fn {function}<")]
            .iter()
            .any(|d| source.contains(d.as_str()));
        assert!(defined, "phase {name:?}: no `fn {function}` in {module}");
    }
}

#[test]
fn the_module_chart_in_the_driver_names_every_phase() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver = std::fs::read_to_string(root.join("src/proxy/mod.rs")).expect("proxy/mod.rs");
    for (i, p) in PHASES.iter().enumerate() {
        let row = format!("//! | {} | {} |", i + 1, p.name);
        assert!(driver.contains(&row), "proxy/mod.rs's chart lacks {row:?}");
    }
}
