//! Shipping the log store to ClickHouse, for queries across a fleet.
//!
//! Records are stored locally first, as always (the data plane's batches
//! are acknowledged only after SQLite committed them), then one thread
//! ships them in batches over ClickHouse's HTTP interface into a
//! `ReplacingMergeTree` ordered by `(node, id)`: the row id in the node's
//! store is the record's identity. The thread keeps a shipped-up-to mark
//! (`<state-dir>/clickhouse.mark`, written atomically after ClickHouse
//! answered 200), so an outage only delays shipping (the store's retention
//! bounds how long), and a crash between an insert and its mark sends the
//! same rows again, which the engine folds into one per `(node, id)`
//! (queries read with `FINAL`). Nothing here is on the ingestion path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_schema::systemd::Priority;

use crate::logstore::RECORD_COLUMNS;

/// Rows per insert.
const BATCH: i64 = 20_000;
/// How often an idle shipper looks for new rows.
const POLL: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// `clickhouse://HOST:PORT/DB`: the HTTP interface (8123 by default) and a
/// database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub base: String,
    pub database: String,
}

impl Target {
    pub fn parse(spec: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("{spec:?}: {why}");
        let rest = spec
            .strip_prefix("clickhouse://")
            .ok_or_else(|| bad("expected clickhouse://HOST:PORT/DATABASE"))?;
        let (addr, database) = rest
            .split_once('/')
            .ok_or_else(|| bad("a database name is required (clickhouse://HOST:PORT/DATABASE)"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("a port is required (8123 is ClickHouse's HTTP port)"))?;
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be 1-65535"))?;
        if host.is_empty()
            || database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(
                "expected a host and a database name of letters, digits and _",
            ));
        }
        Ok(Target {
            url: spec.to_string(),
            base: format!("http://{host}:{port}/"),
            database: database.to_string(),
        })
    }
}

/// ClickHouse's type for each column of the store's records.
fn column_type(column: &str) -> &'static str {
    match column {
        "id" | "time_us" | "request_id" | "bytes_up" | "bytes_down" | "duration_us"
        | "file_size" => "Int64",
        "client_port" | "status" | "tls" | "core" => "Int32",
        _ => "String",
    }
}

/// A ClickHouse server, over HTTP.
pub struct Client {
    target: Target,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(target: Target) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Client { target, agent }
    }

    /// Runs `query` with `body` (data for an INSERT); the answer's text.
    pub fn run(&self, query: &str, body: &[u8]) -> Result<String, String> {
        let url = format!(
            "{}?query={}&output_format_json_quote_64bit_integers=0",
            self.target.base,
            url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        );
        let mut resp = self
            .agent
            .post(&url)
            .send(body)
            .map_err(|e| format!("{}: {e}", self.target.url))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{}: {e}", self.target.url))?;
        if status != 200 {
            return Err(format!(
                "{}: {status}: {}",
                self.target.url,
                text.lines().next().unwrap_or("")
            ));
        }
        Ok(text)
    }

    /// The table of records, fully qualified.
    pub fn table(&self) -> String {
        format!("{}.records", self.target.database)
    }

    /// Creates the database and table when missing.
    pub fn prepare(&self) -> Result<(), String> {
        self.run(
            &format!("CREATE DATABASE IF NOT EXISTS {}", self.target.database),
            b"",
        )?;
        let columns: Vec<String> = RECORD_COLUMNS
            .iter()
            .map(|c| format!("{c} {}", column_type(c)))
            .collect();
        self.run(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} (node String, {}, date Date DEFAULT toDate(intDiv(time_us, 1000000))) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(date) ORDER BY (node, id)",
                self.table(),
                columns.join(", ")
            ),
            b"",
        )?;
        Ok(())
    }
}

/// Appends `v` to a TabSeparated row: backslash, tab, line feed and
/// carriage return escaped as ClickHouse reads them.
fn tsv(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            b => out.push(b),
        }
    }
}

fn load_mark(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the shipper. `node` names this node's rows.
pub fn start(state_dir: &Path, target: Target, node: String) -> Result<(), String> {
    let mark_path = state_dir.join("clickhouse.mark");
    let store = crate::logstore::path(state_dir);
    std::thread::Builder::new()
        .name("controld-clickhouse".into())
        .spawn(move || ship(Client::new(target), node, store, mark_path))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn ship(client: Client, node: String, store: PathBuf, mark_path: PathBuf) {
    let mut mark = load_mark(&mark_path);
    let mut prepared = false;
    let mut failing = String::new();
    let mut wait = Duration::from_millis(250);
    let mut conn = None;
    let columns = RECORD_COLUMNS.join(", ");
    let insert = format!(
        "INSERT INTO {} (node, {columns}) FORMAT TabSeparated",
        client.table()
    );
    loop {
        let step = (|| -> Result<usize, String> {
            if !prepared {
                client.prepare()?;
                prepared = true;
            }
            if conn.is_none() {
                conn = Some(crate::logstore::open_read_only(&store)?);
            }
            let c = conn.as_ref().expect("just opened");
            let (body, last, rows) = batch(c, &node, mark).inspect_err(|_| conn = None)?;
            if rows == 0 {
                return Ok(0);
            }
            client.run(&insert, &body)?;
            if fault("exit-after-ship") {
                // Fault injection for the tests: die between the insert and
                // its mark, as a SIGKILL there would.
                std::process::abort();
            }
            crate::commands::write_atomically(&mark_path, format!("{last}\n").as_bytes())
                .map_err(|e| format!("{}: {e}", mark_path.display()))?;
            mark = last;
            Ok(rows)
        })();
        match step {
            Ok(rows) => {
                if !failing.is_empty() {
                    crate::say(
                        Priority::Notice,
                        &format!("controld: clickhouse {}: shipping again", client.target.url),
                        &[],
                    );
                    failing.clear();
                }
                wait = Duration::from_millis(250);
                if rows < BATCH as usize {
                    std::thread::sleep(POLL);
                }
            }
            Err(e) => {
                if failing != e {
                    crate::say(
                        Priority::Warning,
                        &format!(
                            "controld: clickhouse: {e}; the records wait in the store, retrying"
                        ),
                        &[],
                    );
                    failing = e;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Whether the fault `name` is injected (`PALISADE_FAULT`, tests only).
fn fault(name: &str) -> bool {
    std::env::var("PALISADE_FAULT").is_ok_and(|f| f == name)
}

/// The rows after `mark` as TabSeparated: (body, last id, rows).
fn batch(
    conn: &rusqlite::Connection,
    node: &str,
    mark: i64,
) -> Result<(Vec<u8>, i64, usize), String> {
    let sql = format!(
        "SELECT {} FROM records_view WHERE id > ?1 ORDER BY id LIMIT ?2",
        RECORD_COLUMNS.join(", ")
    );
    let mut st = conn.prepare_cached(&sql).map_err(|e| e.to_string())?;
    let mut rows = st.query([mark, BATCH]).map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(1 << 20);
    let (mut last, mut n) = (mark, 0usize);
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        tsv(&mut body, node.as_bytes());
        for i in 0..RECORD_COLUMNS.len() {
            body.push(b'\t');
            match r.get_ref(i).map_err(|e| e.to_string())? {
                rusqlite::types::ValueRef::Integer(v) => {
                    if i == 0 {
                        last = v;
                    }
                    body.extend_from_slice(v.to_string().as_bytes());
                }
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    tsv(&mut body, t)
                }
                rusqlite::types::ValueRef::Real(v) => {
                    body.extend_from_slice(v.to_string().as_bytes())
                }
                rusqlite::types::ValueRef::Null => {}
            }
        }
        body.push(b'\n');
        n += 1;
    }
    Ok((body, last, n))
}

/// A ClickHouse string literal.
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Reverses [`tsv`] for one field.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 1 < field.len() {
            out.push(match field[i + 1] {
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                b'0' => 0,
                b'b' => 8,
                b'f' => 12,
                other => other,
            });
            i += 2;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// `controld logs export --store clickhouse://…`: the fleet's records
/// (every node, each record once), oldest first, in the local export's
/// format with the node's name first; returns how many.
pub fn export(
    target: &Target,
    filter: &crate::logcli::Filter,
    format: crate::logcli::Format,
    out: &mut dyn std::io::Write,
) -> Result<u64, String> {
    use std::io::BufRead;
    let client = Client::new(target.clone());
    let mut conditions = Vec::new();
    if let Some(t) = filter.from_us {
        conditions.push(format!("time_us >= {t}"));
    }
    if let Some(t) = filter.to_us {
        conditions.push(format!("time_us < {t}"));
    }
    if let Some(app) = &filter.app {
        conditions.push(format!("app = {}", literal(app)));
    }
    if let Some(user) = &filter.user {
        conditions.push(format!("user = {}", literal(user)));
    }
    if let Some(kind) = filter.kind {
        conditions.push(format!(
            "kind = '{}'",
            match kind {
                crate::logcli::KindFilter::Traffic => "traffic",
                crate::logcli::KindFilter::Activity => "activity",
            }
        ));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let query = format!(
        "SELECT node, {} FROM {} FINAL{clause} ORDER BY time_us, node, id FORMAT TabSeparated",
        RECORD_COLUMNS.join(", "),
        client.table()
    );
    let url = format!(
        "{}?query={}",
        target.base,
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    let resp = client
        .agent
        .get(&url)
        .call()
        .map_err(|e| format!("{}: {e}", target.url))?;
    if resp.status() != 200 {
        let mut resp = resp;
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(format!(
            "{}: {}: {}",
            target.url,
            resp.status(),
            text.lines().next().unwrap_or("")
        ));
    }
    let mut columns = vec!["node"];
    columns.extend(crate::logcli::export_columns());
    let integer: Vec<bool> = std::iter::once(false)
        .chain(RECORD_COLUMNS.iter().map(|c| column_type(c) != "String"))
        .collect();
    crate::logcli::write_header(&columns, format, out)?;
    let reader = std::io::BufReader::with_capacity(1 << 16, resp.into_body().into_reader());
    let (mut n, mut line) = (0u64, Vec::with_capacity(1024));
    for row in reader.split(b'\n') {
        let row = row.map_err(|e| format!("{}: {e}", target.url))?;
        let fields: Vec<Vec<u8>> = row.split(|b| *b == b'\t').map(unescape).collect();
        if fields.len() != columns.len() {
            return Err(format!("{}: a row of {} fields", target.url, fields.len()));
        }
        let values: Vec<rusqlite::types::ValueRef<'_>> = fields
            .iter()
            .zip(&integer)
            .map(
                |(f, int)| match std::str::from_utf8(f).ok().and_then(|t| t.parse().ok()) {
                    Some(v) if *int => rusqlite::types::ValueRef::Integer(v),
                    _ => rusqlite::types::ValueRef::Text(f),
                },
            )
            .collect();
        crate::logcli::render_row(&columns, &values, format, &mut line)?;
        out.write_all(&line)
            .map_err(|e| format!("writing the export: {e}"))?;
        n += 1;
    }
    out.flush()
        .map_err(|e| format!("writing the export: {e}"))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_values_escape() {
        let t = Target::parse("clickhouse://127.0.0.1:8123/palisade").unwrap();
        assert_eq!(
            (t.base.as_str(), t.database.as_str()),
            ("http://127.0.0.1:8123/", "palisade")
        );
        for bad in [
            "http://a:1/db",
            "clickhouse://a:1",
            "clickhouse://a/db",
            "clickhouse://a:1/d-b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let mut out = Vec::new();
        tsv(&mut out, b"a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
    }
}
