//! Palisade data plane: a thread-per-core (glommio) HTTP/1.1 reverse proxy
//! that serves apps under a proxy suffix (`<app host>.<suffix>`), rewrites
//! hosts in headers both ways, and streams bodies through a filter hook.
//!
//! Module map, in request order: [`server`] (cores, listeners; [`tls`]
//! handshakes, [`stream`] plain or TLS) → [`proxy`] (the phases of one
//! connection) → [`http`] (strict parsing) → [`routes`] / [`hosts`]
//! (mapping and rewriting) → [`gate`] (identity through [`identity`],
//! access policies through [`access`], the block page) → [`upstream`]
//! (connect, pool) → [`body`] (streaming transfer). [`control`] keeps each core's
//! connection to controld, swaps pushed snapshots in and sends the core's
//! [`logs`] batches; [`metrics`] counts per core and serves `/metrics`.
//! [`fuzz`] holds the
//! harness the fuzz targets call.

/// Logs one line (a warning: the data plane says something only when
/// something needs attention): to stderr, or to the journal with
/// `PRIORITY` and `SYSLOG_IDENTIFIER` when run by systemd
/// ([`palisade_schema::systemd::log`]). Failures are ignored: `eprintln!`
/// panics when the write fails, and stderr redirected to a file on a full
/// disk (or past a file-size limit) must not take a core down with it.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        palisade_schema::systemd::log(
            "palisade-dataplane",
            palisade_schema::systemd::Priority::Warning,
            &format!($($arg)*),
            &[],
        );
    }};
}

pub mod access;
pub mod activity;
pub mod answers;
pub mod body;
pub mod client;
pub mod control;
pub mod core;
pub mod deadline;
pub mod domains;
pub mod executor;
pub mod fuzz;
pub mod hostmap;
pub mod hosts;
pub mod http;
pub mod http2;
pub mod identity;
pub mod io;
pub mod iptags;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod proxy;
pub mod rewrite;
pub mod server;
pub mod session_policy;
pub mod shutdown;
pub mod simd;
pub mod snapshot;
pub mod stream;
pub mod tls;
pub mod upstream;

/// Helpers for the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Compiles a policy text the tests know to be valid.
    pub fn policy(text: &str) -> palisade_schema::policy::Policy {
        palisade_schema::policy::compile_source(
            "test.toml",
            text,
            std::path::Path::new("."),
            &palisade_schema::policy::CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("test policy: {e}"))
    }

    /// The rows of a case table (`testdata/*_cases.txt`): lines that are
    /// neither blank nor `#` comments.
    pub fn rows(table: &str) -> impl Iterator<Item = &str> {
        table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }
}
