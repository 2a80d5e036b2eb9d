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
//! (queries read with `FINAL`). Alerts are shipped the same way, with
//! their own mark, into `alerts`. Nothing here is on the ingestion path.
//! [`export`], [`report`] and [`alerts`] answer the fleet-wide commands.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::progress::Progress;

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

/// The alerts table's columns, as in the store.
const ALERT_COLUMNS: [&str; 13] = [
    "id",
    "time_us",
    "policy",
    "severity",
    "record_id",
    "kind",
    "app",
    "user",
    "client_ip",
    "url",
    "activity",
    "action",
    "file_name",
];

/// ClickHouse's type for each column of the store's records.
fn column_type(column: &str) -> &'static str {
    match column {
        "id" | "time_us" | "request_id" | "bytes_up" | "bytes_down" | "duration_us"
        | "file_size" | "record_id" => "Int64",
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

    fn alerts_table(&self) -> String {
        format!("{}.alerts", self.target.database)
    }

    /// Creates the database and table when missing.
    pub fn prepare(&self) -> Result<(), String> {
        self.run(
            &format!("CREATE DATABASE IF NOT EXISTS {}", self.target.database),
            b"",
        )?;
        self.create_table(&self.table(), &RECORD_COLUMNS)?;
        self.create_table(&self.alerts_table(), &ALERT_COLUMNS)
    }

    /// A table of the store's `columns` plus `node` and a `date` partition
    /// key, one row per `(node, id)` once merged.
    fn create_table(&self, name: &str, columns: &[&str]) -> Result<(), String> {
        let columns: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} {}", column_type(c)))
            .collect();
        self.run(
            &format!(
                "CREATE TABLE IF NOT EXISTS {name} (node String, {}, date Date DEFAULT toDate(intDiv(time_us, 1000000))) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(date) ORDER BY (node, id)",
                columns.join(", ")
            ),
            b"",
        )?;
        // A table an older controld made gains the columns added since
        // (records' `protocol`). Asked of system.columns: ClickHouse
        // releases before 20.x have no `ADD COLUMN IF NOT EXISTS`.
        let (database, table) = name.split_once('.').unwrap_or(("default", name));
        let present = self.run(
            &format!(
                "SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}' FORMAT TabSeparated"
            ),
            b"",
        )?;
        let present: Vec<&str> = present.lines().collect();
        for column in &columns {
            let column_name = column.split(' ').next().unwrap_or_default();
            if !present.contains(&column_name) {
                self.run(&format!("ALTER TABLE {name} ADD COLUMN {column}"), b"")?;
            }
        }
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

/// How far the store is shipped: the last record and alert ids ClickHouse
/// took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    records: i64,
    alerts: i64,
}

impl Mark {
    fn load(path: &Path) -> Mark {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut mark = Mark::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("records", n)) => mark.records = n.trim().parse().unwrap_or(0),
                Some(("alerts", n)) => mark.alerts = n.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        mark
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        crate::commands::write_atomically(
            path,
            format!("records {}\nalerts {}\n", self.records, self.alerts).as_bytes(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Starts the shipper. `node` names this node's rows.
pub fn start(state_dir: &Path, target: Target, node: String) -> Result<Arc<Progress>, String> {
    let mark_path = state_dir.join("clickhouse.mark");
    let store = crate::logstore::path(state_dir);
    let progress = Arc::new(Progress {
        url: target.url.clone(),
        ..Progress::default()
    });
    let p = progress.clone();
    std::thread::Builder::new()
        .name("controld-clickhouse".into())
        .spawn(move || ship(Client::new(target), node, store, mark_path, &p))
        .map_err(|e| e.to_string())?;
    Ok(progress)
}

fn ship(client: Client, node: String, store: PathBuf, mark_path: PathBuf, progress: &Progress) {
    let mut mark = Mark::load(&mark_path);
    progress.mark_record.store(mark.records, Ordering::Relaxed);
    progress.mark_alert.store(mark.alerts, Ordering::Relaxed);
    let mut prepared = false;
    let mut failing = String::new();
    let mut wait = Duration::from_millis(250);
    let mut conn = None;
    let insert = format!(
        "INSERT INTO {} (node, {}) FORMAT TabSeparated",
        client.table(),
        RECORD_COLUMNS.join(", ")
    );
    let insert_alerts = format!(
        "INSERT INTO {} (node, {}) FORMAT TabSeparated",
        client.alerts_table(),
        ALERT_COLUMNS.join(", ")
    );
    let records_sql = format!(
        "SELECT {} FROM records_view WHERE id > ?1 ORDER BY id LIMIT ?2",
        RECORD_COLUMNS.join(", ")
    );
    let alerts_sql = format!(
        "SELECT {} FROM alerts WHERE id > ?1 ORDER BY id LIMIT ?2",
        ALERT_COLUMNS.join(", ")
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
            let (body, last, rows) = match batch(c, &records_sql, &node, mark.records) {
                Ok(b) => b,
                Err(e) => {
                    conn = None;
                    return Err(e);
                }
            };
            if rows > 0 {
                client.run(&insert, &body)?;
                if fault("kill-after-ship") {
                    // Fault injection for the tests: SIGKILL between the
                    // insert and its mark.
                    // SAFETY: raise has no preconditions; the process ends.
                    unsafe { libc::raise(libc::SIGKILL) };
                }
                mark.records = last;
                mark.save(&mark_path)?;
                progress.sent.fetch_add(rows as u64, Ordering::Relaxed);
                progress.mark_record.store(last, Ordering::Relaxed);
            }
            let (body, last, alerts) = match batch(c, &alerts_sql, &node, mark.alerts) {
                Ok(b) => b,
                Err(e) => {
                    conn = None;
                    return Err(e);
                }
            };
            if alerts > 0 {
                client.run(&insert_alerts, &body)?;
                mark.alerts = last;
                mark.save(&mark_path)?;
                progress.sent.fetch_add(alerts as u64, Ordering::Relaxed);
                progress.mark_alert.store(last, Ordering::Relaxed);
            }
            Ok(rows.max(alerts))
        })();
        match step {
            Ok(rows) => {
                if !failing.is_empty() {
                    progress.set_error("");
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
                progress.failures.fetch_add(1, Ordering::Relaxed);
                progress.set_error(&e);
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

/// The rows `sql` selects after `mark` (its first column the id), as
/// TabSeparated with the node first: (body, last id, rows).
fn batch(
    conn: &rusqlite::Connection,
    sql: &str,
    node: &str,
    mark: i64,
) -> Result<(Vec<u8>, i64, usize), String> {
    let mut st = conn.prepare_cached(sql).map_err(|e| e.to_string())?;
    let mut rows = st.query([mark, BATCH]).map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(1 << 20);
    let (mut last, mut n) = (mark, 0usize);
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        tsv(&mut body, node.as_bytes());
        for i in 0..r.as_ref().column_count() {
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
    let clause = conditions(filter, true);
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

/// The WHERE clause of a filter (time range, app, user, kind).
fn conditions(filter: &crate::logcli::Filter, records: bool) -> String {
    let mut parts = Vec::new();
    if let Some(t) = filter.from_us {
        parts.push(format!("time_us >= {t}"));
    }
    if let Some(t) = filter.to_us {
        parts.push(format!("time_us < {t}"));
    }
    if records {
        if let Some(app) = &filter.app {
            parts.push(format!("app = {}", literal(app)));
        }
        if let Some(user) = &filter.user {
            parts.push(format!("user = {}", literal(user)));
        }
        if let Some(kind) = filter.kind {
            parts.push(format!(
                "kind = '{}'",
                match kind {
                    crate::logcli::KindFilter::Traffic => "traffic",
                    crate::logcli::KindFilter::Activity => "activity",
                }
            ));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// `controld report --store clickhouse://…`: the traffic report over the
/// whole fleet, the same columns as the local one.
pub fn report(
    target: &Target,
    filter: &crate::logcli::Filter,
    by: crate::logcli::By,
) -> Result<Vec<crate::logcli::ReportRow>, String> {
    let client = Client::new(target.clone());
    let key = match by {
        crate::logcli::By::App => "app",
        crate::logcli::By::User => "user",
        crate::logcli::By::Ip => "client_ip",
    };
    let text = client.run(
        &format!(
            "SELECT {key}, countIf(kind = 'traffic'), uniqExactIf(user, user != ''), sumIf(bytes_up, kind = 'traffic'), sumIf(bytes_down, kind = 'traffic'), countIf(kind = 'traffic' AND action = 'block'), countIf(kind = 'activity'), countIf(kind = 'activity' AND activity = 'leak') FROM {} FINAL{} GROUP BY {key} ORDER BY 2 DESC, 1 FORMAT TabSeparated",
            client.table(),
            conditions(filter, true)
        ),
        b"",
    )?;
    text.lines()
        .map(|line| {
            let f: Vec<Vec<u8>> = line
                .as_bytes()
                .split(|b| *b == b'\t')
                .map(unescape)
                .collect();
            let n = |i: usize| -> Result<i64, String> {
                std::str::from_utf8(f.get(i).map(Vec::as_slice).unwrap_or(b""))
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| format!("{}: a report row it cannot read: {line}", target.url))
            };
            Ok(crate::logcli::ReportRow {
                key: String::from_utf8_lossy(&f[0]).into_owned(),
                requests: n(1)?,
                users: n(2)?,
                bytes_up: n(3)?,
                bytes_down: n(4)?,
                blocked: n(5)?,
                activities: n(6)?,
                leaks: n(7)?,
            })
        })
        .collect()
}

/// An alert and the node that raised it.
#[derive(serde::Serialize)]
pub struct FleetAlert {
    pub node: String,
    #[serde(flatten)]
    pub alert: crate::alerts::Alert,
}

/// `controld alerts --store clickhouse://…`: every node's alerts in the
/// time range, oldest first.
pub fn alerts(target: &Target, filter: &crate::logcli::Filter) -> Result<Vec<FleetAlert>, String> {
    let client = Client::new(target.clone());
    let text = client.run(
        &format!(
            "SELECT node, {} FROM {} FINAL{} ORDER BY time_us, node, id FORMAT TabSeparated",
            ALERT_COLUMNS.join(", "),
            client.alerts_table(),
            conditions(filter, false)
        ),
        b"",
    )?;
    text.lines()
        .map(|line| {
            let f: Vec<String> = line
                .as_bytes()
                .split(|b| *b == b'\t')
                .map(|v| String::from_utf8_lossy(&unescape(v)).into_owned())
                .collect();
            if f.len() != ALERT_COLUMNS.len() + 1 {
                return Err(format!(
                    "{}: an alert row it cannot read: {line}",
                    target.url
                ));
            }
            let n = |i: usize| f[i].parse::<i64>().unwrap_or(0);
            Ok(FleetAlert {
                node: f[0].clone(),
                alert: crate::alerts::Alert {
                    id: n(1),
                    time: crate::alerts::rfc3339(n(2)),
                    policy: f[3].clone(),
                    severity: f[4].clone(),
                    record_id: n(5),
                    kind: f[6].clone(),
                    app: f[7].clone(),
                    user: f[8].clone(),
                    client_ip: f[9].clone(),
                    url: f[10].clone(),
                    activity: f[11].clone(),
                    action: f[12].clone(),
                    file_name: f[13].clone(),
                },
            })
        })
        .collect()
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
