//! Workers get the client instrumentation too: a dedicated or shared
//! worker's script (`Sec-Fetch-Dest: worker` / `sharedworker`) comes back
//! rewritten with one statement in front that loads the script
//! (`importScripts`, guarded, for a classic worker; an `import`
//! declaration for a module, told by its first statement), placed after
//! the script's directive prologue so a `"use strict"` stays a directive;
//! and under the leak guard. Other scripts get nothing added.

mod support;

use support::*;

const H: &str = "demo.test.proxy.test";

const WORKER: &str =
    "// a worker\n'use strict';\nfetch('https://api.demo.test/x').then(() => postMessage('ran'));\n";
const MODULE: &str =
    "/* a module */\nimport { a } from './a.js';\nfetch('https://api.demo.test/x');\n";

/// A GET for `path` as a browser makes it for `dest`.
fn fetch_script(dp: &Dataplane, path: &str, dest: &str) -> Response {
    request(
        dp,
        format!("GET {path} HTTP/1.1\r\nHost: {H}\r\nSec-Fetch-Dest: {dest}\r\n\r\n").as_bytes(),
    )
}

fn proxied(script: &str) -> String {
    script.replace("api.demo.test", "api.demo.test.proxy.test")
}

/// `script` rewritten, with `statement` inserted at `at`.
fn with(script: &str, at: usize, statement: &str) -> String {
    let mut s = proxied(script);
    s.insert_str(at, statement);
    s
}

#[test]
fn worker_scripts_load_the_instrumentation_after_their_directives() {
    let origin = origin(always(|req| Reply::Full {
        status: 200,
        headers: vec![("Content-Type".into(), "text/javascript".into())],
        body: if req.target == "/module.js" {
            MODULE
        } else {
            WORKER
        }
        .as_bytes()
        .to_vec(),
    }));
    let dp = Dataplane::start(&policy(&format!("http://{}", origin.addr()), ""), &[]);
    let classic = "try { importScripts(\"/.palisade/client.js?v=1\"); } catch {}";
    let after_directive = "// a worker\n'use strict';".len();
    // (path, Sec-Fetch-Dest, the body expected)
    let cases = [
        (
            "/worker.js",
            "worker",
            with(WORKER, after_directive, classic),
        ),
        (
            "/worker.js",
            "sharedworker",
            with(WORKER, after_directive, classic),
        ),
        (
            "/module.js",
            "worker",
            with(MODULE, 0, "import \"/.palisade/client.js?v=1\";"),
        ),
        // A page's script: rewritten, nothing added (the page has the
        // instrumentation already).
        ("/worker.js", "script", proxied(WORKER)),
        // Read as data by a script: untouched.
        ("/worker.js", "empty", WORKER.to_string()),
    ];
    for (path, dest, want) in cases {
        let resp = fetch_script(&dp, path, dest);
        assert_eq!(resp.status, 200, "{path} {dest}");
        assert_eq!(resp.text(), want, "{path} {dest}");
        let guarded = resp.header("content-security-policy-report-only").is_some();
        assert_eq!(
            guarded,
            dest.ends_with("worker"),
            "{path} {dest}: leak guard"
        );
    }
}
