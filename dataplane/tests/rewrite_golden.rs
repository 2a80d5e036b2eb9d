//! The golden corpus: documents under `tests/rewrite_golden/` (HTML,
//! script, stylesheet, JSON, SVG) referencing app hosts in every encoding,
//! next to near misses that must not change. Each is rewritten whole, one
//! byte at a time and in odd-sized pieces; all must equal the reviewed
//! `<name>.expected` file.
//!
//! After a deliberate change of behaviour, regenerate with
//! `PALISADE_BLESS=1 cargo test -p palisade-dataplane --test rewrite_golden`
//! and review the diff of the `.expected` files line by line.

use std::path::Path;

use palisade_dataplane::fuzz::fuzz_routes;
use palisade_dataplane::rewrite::Rewriter;

fn rewrite_in_pieces(input: &[u8], html: bool, piece: usize) -> Vec<u8> {
    let routes = fuzz_routes();
    let mut out = Vec::new();
    let mut r = Rewriter::new(&routes.hosts, html);
    for p in input.chunks(piece.max(1)) {
        r.feed(p, &mut out);
    }
    r.finish(&mut out);
    out
}

#[test]
fn golden_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rewrite_golden");
    let bless = std::env::var_os("PALISADE_BLESS").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e != "expected"))
        .collect();
    entries.sort();
    for input_path in entries {
        let ext = input_path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        let html = ext == "html";
        let input = std::fs::read(&input_path).expect("read input");
        let expected_path = input_path.with_extension(format!("{ext}.expected"));
        let whole = rewrite_in_pieces(&input, html, input.len());
        if bless {
            std::fs::write(&expected_path, &whole).expect("write expected");
        }
        let expected = std::fs::read(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: bless and review it",
                expected_path.display()
            )
        });
        assert!(
            whole == expected,
            "{}: output differs from {}:\n{}",
            input_path.display(),
            expected_path.display(),
            String::from_utf8_lossy(&whole)
        );
        for piece in [1, 2, 7, 64, 1000] {
            assert!(
                rewrite_in_pieces(&input, html, piece) == expected,
                "{}: pieces of {piece} bytes differ",
                input_path.display()
            );
        }
        // Every golden document has something to rewrite.
        assert_ne!(input, expected, "{} changed nothing", input_path.display());
        checked += 1;
    }
    assert_eq!(checked, 5, "html, js, css, json and svg documents");
}
