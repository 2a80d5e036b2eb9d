//! Operator commands over the log store: `logs export`, `logs tail`,
//! `report` and `alerts`. They read the SQLite store directly (read-only,
//! concurrent with the daemon writing it), so they work while controld is
//! down; access is the store file's permissions (owner only).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::Serialize;

use crate::alerts::{rfc3339, Alert};
use crate::logstore::{self, RECORD_COLUMNS};

/// Output formats of `logs export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// `report` groupings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    App,
    User,
    Ip,
}

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindFilter {
    Traffic,
    Activity,
}

/// What a filter's FROM clause reads.
#[derive(Clone, Copy)]
enum Relation {
    /// `records_view`: every column as text.
    View,
    /// `records`: strings as interned ids.
    Table,
}

/// Which records a command looks at.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub app: Option<String>,
    pub user: Option<String>,
    pub kind: Option<KindFilter>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Parses a time: `now`, `-15m` / `-2h` / `-7d` (before now), an RFC 3339
/// time (`2026-11-22T10:00:00Z`), a date (`2026-11-22`, midnight UTC) or
/// Unix seconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_us());
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = humantime::parse_duration(ago).map_err(|e| format!("time {s:?}: {e}"))?;
        return Ok(now_us() - d.as_micros() as i64);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1_000_000);
    }
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&text).map_err(|e| {
        format!("time {s:?}: {e} (use now, -2h, 2026-11-22, 2026-11-22T10:00:00Z or Unix seconds)")
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0))
}

/// [`parse_time`] of a form field or option that may be empty (`None`).
pub fn parse_optional_time(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        Ok(None)
    } else {
        parse_time(s).map(Some)
    }
}

impl Filter {
    /// The FROM and WHERE clauses and their parameters. A filter on app or
    /// user reads only the batches that contain it (the store's block
    /// index), then checks each row; CROSS JOIN makes SQLite start from
    /// the blocks (without statistics it would scan the time index).
    fn source(&self) -> (String, Vec<rusqlite::types::Value>) {
        self.source_over(Relation::View)
    }

    /// [`Filter::source`] over the view (text columns) or the records
    /// table itself (interned ids: no join per row).
    fn source_over(&self, relation: Relation) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let name = match relation {
            Relation::View => "records_view",
            Relation::Table => "records",
        };
        let mut parts = Vec::new();
        let mut values = Vec::new();
        let keyed = self.app.is_some() || self.user.is_some();
        let mut from = if keyed {
            format!(
                " FROM blocks CROSS JOIN {name} ON id BETWEEN blocks.first_id AND blocks.last_id"
            )
        } else {
            format!(" FROM {name}")
        };
        for (value, table, column) in [
            (&self.app, "block_apps", "app_id"),
            (&self.user, "block_users", "user_id"),
        ] {
            if let Some(v) = value {
                parts.push(format!(
                    "blocks.first_id IN (SELECT first_id FROM {table} WHERE {column} = (SELECT id FROM strings WHERE text = ?))"
                ));
                values.push(Value::Text(v.clone()));
                parts.push(format!(
                    "{column} = (SELECT id FROM strings WHERE text = ?)"
                ));
                values.push(Value::Text(v.clone()));
            }
        }
        if let Some(t) = self.from_us {
            if keyed {
                parts.push("blocks.max_time_us >= ?".into());
                values.push(Value::Integer(t));
            }
            parts.push("time_us >= ?".into());
            values.push(Value::Integer(t));
        }
        if let Some(t) = self.to_us {
            if keyed {
                parts.push("blocks.min_time_us < ?".into());
                values.push(Value::Integer(t));
            }
            parts.push("time_us < ?".into());
            values.push(Value::Integer(t));
        }
        if let Some(k) = self.kind {
            parts.push(match relation {
                Relation::View => "kind = ?".into(),
                Relation::Table => "kind_id = (SELECT id FROM strings WHERE text = ?)".into(),
            });
            values.push(Value::Text(
                match k {
                    KindFilter::Traffic => "traffic",
                    KindFilter::Activity => "activity",
                }
                .into(),
            ));
        }
        if !parts.is_empty() {
            from.push_str(" WHERE ");
            from.push_str(&parts.join(" AND "));
        }
        (from, values)
    }
}

/// Exported column names: the stored ones, with `time_us` shown as `time`.
pub fn export_columns() -> Vec<&'static str> {
    RECORD_COLUMNS
        .iter()
        .map(|c| if *c == "time_us" { "time" } else { c })
        .collect()
}

/// The CSV header line (JSON lines have none).
pub fn write_header(columns: &[&str], format: Format, out: &mut dyn Write) -> Result<(), String> {
    if format == Format::Csv {
        out.write_all(columns.join(",").as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| format!("writing the export: {e}"))?;
    }
    Ok(())
}

/// One exported record as a CSV or JSON line (into `line`, cleared first):
/// `time` as RFC 3339, `request_id` as 16 hex digits, other integers as
/// numbers.
pub fn render_row(
    columns: &[&str],
    values: &[ValueRef<'_>],
    format: Format,
    line: &mut Vec<u8>,
) -> Result<(), String> {
    line.clear();
    let mut json = serde_json::Map::new();
    for (i, (name, value)) in columns.iter().zip(values).enumerate() {
        let text: String = match (*name, *value) {
            ("time", ValueRef::Integer(t)) => rfc3339(t),
            ("request_id", ValueRef::Integer(v)) => format!("{:016x}", v as u64),
            (_, ValueRef::Integer(v)) => v.to_string(),
            (_, ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        };
        match format {
            Format::Csv => {
                if i > 0 {
                    line.push(b',');
                }
                csv_field(line, &text).map_err(|e| e.to_string())?;
            }
            Format::Jsonl => {
                let v = match value {
                    ValueRef::Integer(v) if !matches!(*name, "time" | "request_id") => {
                        serde_json::Value::from(*v)
                    }
                    _ => serde_json::Value::from(text),
                };
                json.insert(name.to_string(), v);
            }
        }
    }
    if format == Format::Jsonl {
        serde_json::to_writer(&mut *line, &json).map_err(|e| e.to_string())?;
    }
    line.push(b'\n');
    Ok(())
}

fn csv_field(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    if text.contains([',', '"', '\n', '\r']) {
        out.write_all(b"\"")?;
        out.write_all(text.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(text.as_bytes())
    }
}

/// Streams matching records to `out`, oldest first; returns how many.
/// On a terminal, a progress bar on stderr.
pub fn export(
    state_dir: &Path,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, String> {
    if !std::io::stderr().is_terminal() {
        return export_with_progress(state_dir, filter, format, out, None);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut show = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let n = export_with_progress(state_dir, filter, format, out, Some(&mut show))?;
    bar.finish_and_clear();
    Ok(n)
}

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 4096;

/// [`export`] reporting (rows written, rows matching) to `progress` every
/// few thousand rows and at the end; the count costs one more query, so
/// it is made only when someone watches.
pub fn export_with_progress(
    state_dir: &Path,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
    mut progress: Option<&mut dyn FnMut(u64, u64)>,
) -> Result<u64, String> {
    let conn = logstore::open_read_only(&logstore::path(state_dir))?;
    let (clause, values) = filter.source();
    let total = match progress {
        Some(_) => conn
            .query_row(
                &format!("SELECT count(*){clause}"),
                rusqlite::params_from_iter(values.iter()),
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| e.to_string())? as u64,
        None => 0,
    };
    if let Some(p) = progress.as_mut() {
        p(0, total);
    }
    let sql = format!(
        "SELECT {}{clause} ORDER BY time_us, id",
        RECORD_COLUMNS.join(", ")
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut rows = st
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| e.to_string())?;
    let columns = export_columns();
    let io = |e: std::io::Error| format!("writing the export: {e}");
    write_header(&columns, format, out)?;
    let mut n = 0u64;
    let mut line = Vec::with_capacity(1024);
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        render_row(&columns, &values, format, &mut line)?;
        out.write_all(&line).map_err(io)?;
        n += 1;
        if n.is_multiple_of(PROGRESS_EVERY) {
            if let Some(p) = progress.as_mut() {
                p(n, total.max(n));
            }
        }
    }
    out.flush().map_err(io)?;
    if let Some(p) = progress.as_mut() {
        p(n, total.max(n));
    }
    Ok(n)
}

/// Prints new records as they are stored, until interrupted.
pub fn tail(state_dir: &Path, app: Option<&str>, format: Format) -> Result<(), String> {
    let conn = logstore::open_read_only(&logstore::path(state_dir))?;
    let mut last: i64 = conn
        .query_row("SELECT coalesce(max(id), 0) FROM records_view", [], |r| {
            r.get(0)
        })
        .map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    loop {
        let filter = Filter {
            app: app.map(str::to_string),
            ..Filter::default()
        };
        let mut out = stdout.lock();
        last = print_after(&conn, last, &filter, format, &mut out)?;
        drop(out);
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Prints records with id > `after` (oldest first); returns the last id.
fn print_after(
    conn: &Connection,
    after: i64,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> Result<i64, String> {
    let (clause, mut values) = filter.source();
    let clause = if clause.contains(" WHERE ") {
        format!("{clause} AND id > ?")
    } else {
        format!("{clause} WHERE id > ?")
    };
    values.push(rusqlite::types::Value::Integer(after));
    let sql = format!(
        "SELECT id, time_us, kind, client_ip, user, method, url, status, bytes_up, bytes_down, app, action, activity, file_name, policy, detail{clause} ORDER BY id LIMIT 10000"
    );
    let mut st = conn.prepare_cached(&sql).map_err(|e| e.to_string())?;
    let mut rows = st
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| e.to_string())?;
    let mut last = after;
    let io = |e: std::io::Error| e.to_string();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let g = |i: usize| -> String {
            match r.get_ref(i) {
                Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                Ok(ValueRef::Integer(v)) => v.to_string(),
                _ => String::new(),
            }
        };
        last = r.get(0).map_err(|e| e.to_string())?;
        let time = rfc3339(r.get(1).map_err(|e| e.to_string())?);
        match format {
            Format::Jsonl => {
                let v = serde_json::json!({
                    "id": last, "time": time, "kind": g(2), "client_ip": g(3), "user": g(4),
                    "method": g(5), "url": g(6), "status": r.get::<_, i64>(7).unwrap_or(0),
                    "bytes_up": r.get::<_, i64>(8).unwrap_or(0),
                    "bytes_down": r.get::<_, i64>(9).unwrap_or(0),
                    "app": g(10), "action": g(11), "activity": g(12), "file_name": g(13),
                    "policy": g(14), "detail": g(15),
                });
                writeln!(out, "{v}").map_err(io)?;
            }
            Format::Csv => {
                let user = g(4);
                let what = if g(2) == "activity" {
                    format!("{} {:?}", g(12), g(13))
                } else {
                    format!("{} {} {}", g(5), g(6), g(7))
                };
                writeln!(
                    out,
                    "{time} {ip} {user} [{app}] {what} up={up} down={down} {action}",
                    ip = g(3),
                    user = if user.is_empty() { "-" } else { &user },
                    app = g(10),
                    up = g(8),
                    down = g(9),
                    action = g(11),
                )
                .map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(last)
}

/// One row of the traffic report.
#[derive(Debug, Serialize)]
pub struct ReportRow {
    pub key: String,
    pub requests: i64,
    pub users: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub blocked: i64,
    pub activities: i64,
    /// Requests the leak guard saw escape the proxy (`leak` activities).
    pub leaks: i64,
}

/// Requests, users, bytes and blocked counts per app, user or IP.
pub fn report(state_dir: &Path, filter: &Filter, by: By) -> Result<Vec<ReportRow>, String> {
    let conn = logstore::open_read_only(&logstore::path(state_dir))?;
    // The rows' interned ids are read straight from the covering time
    // index and summed here in hash maps: SQLite would sort every row of
    // the range to group it (and keep a B-tree per group for the distinct
    // users); a scan and a hash lookup per row cost a fraction of that.
    let (clause, values) = filter.source_over(Relation::Table);
    let key = match by {
        By::App => "app_id",
        By::User => "user_id",
        By::Ip => "client_ip_id",
    };
    let id = |text: &str| -> Result<i64, String> {
        conn.query_row(
            "SELECT coalesce((SELECT id FROM strings WHERE text = ?), -1)",
            [text],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())
    };
    let (traffic, activity, block, leak, nobody) = (
        id("traffic")?,
        id("activity")?,
        id("block")?,
        id("leak")?,
        id("")?,
    );
    #[derive(Default)]
    struct Sums {
        requests: i64,
        users: rustc_hash::FxHashSet<i64>,
        bytes_up: i64,
        bytes_down: i64,
        blocked: i64,
        activities: i64,
        leaks: i64,
    }
    let mut groups: rustc_hash::FxHashMap<i64, Sums> = Default::default();
    let sql = format!(
        "SELECT {key}, user_id, kind_id, action_id, activity_id, bytes_up, bytes_down{clause}"
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut rows = st
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| e.to_string())?;
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let n = |i: usize| r.get::<_, i64>(i).map_err(|e| e.to_string());
        let g = groups.entry(n(0)?).or_default();
        let user = n(1)?;
        if user != nobody {
            g.users.insert(user);
        }
        let kind = n(2)?;
        if kind == traffic {
            g.requests += 1;
            g.bytes_up += n(5)?;
            g.bytes_down += n(6)?;
            if n(3)? == block {
                g.blocked += 1;
            }
        } else if kind == activity {
            g.activities += 1;
            if n(4)? == leak {
                g.leaks += 1;
            }
        }
    }
    let mut text = conn
        .prepare("SELECT text FROM strings WHERE id = ?")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(groups.len());
    for (k, g) in groups {
        out.push(ReportRow {
            key: text
                .query_row([k], |r| r.get(0))
                .map_err(|e| e.to_string())?,
            requests: g.requests,
            users: g.users.len() as i64,
            bytes_up: g.bytes_up,
            bytes_down: g.bytes_down,
            blocked: g.blocked,
            activities: g.activities,
            leaks: g.leaks,
        });
    }
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

/// The report as a table.
pub fn render_report(rows: &[ReportRow], by: By) -> String {
    let head = match by {
        By::App => "app",
        By::User => "user",
        By::Ip => "client ip",
    };
    let mut out = format!(
        "{head:<28} {:>10} {:>6} {:>14} {:>14} {:>8} {:>10} {:>6}\n",
        "requests", "users", "bytes up", "bytes down", "blocked", "activities", "leaks"
    );
    for r in rows {
        let key = if r.key.is_empty() { "-" } else { &r.key };
        out.push_str(&format!(
            "{key:<28} {:>10} {:>6} {:>14} {:>14} {:>8} {:>10} {:>6}\n",
            r.requests, r.users, r.bytes_up, r.bytes_down, r.blocked, r.activities, r.leaks
        ));
    }
    out
}

/// Alerts raised in the filter's time range, oldest first.
pub fn alerts(state_dir: &Path, filter: &Filter) -> Result<Vec<Alert>, String> {
    let conn = logstore::open_read_only(&logstore::path(state_dir))?;
    let time_only = Filter {
        from_us: filter.from_us,
        to_us: filter.to_us,
        ..Filter::default()
    };
    let (clause, values) = time_only.source();
    // Same time conditions, over the alerts table.
    let clause = clause.replacen(" FROM records_view", " FROM alerts", 1);
    let sql = format!(
        "SELECT id, time_us, policy, severity, record_id, kind, app, user, client_ip, url, activity, action, file_name{clause} ORDER BY time_us, id"
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = st
        .query_map(rusqlite::params_from_iter(values.iter()), |r| {
            Ok(Alert {
                id: r.get(0)?,
                time: rfc3339(r.get(1)?),
                policy: r.get(2)?,
                severity: r.get(3)?,
                record_id: r.get(4)?,
                kind: r.get(5)?,
                app: r.get(6)?,
                user: r.get(7)?,
                client_ip: r.get(8)?,
                url: r.get(9)?,
                activity: r.get(10)?,
                action: r.get(11)?,
                file_name: r.get(12)?,
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// Alerts as lines.
pub fn render_alerts(list: &[Alert]) -> String {
    let mut out = String::new();
    for a in list {
        let what = if a.activity.is_empty() {
            a.url.clone()
        } else {
            format!("{} {:?}", a.activity, a.file_name)
        };
        out.push_str(&format!(
            "{} [{}] {} app={} user={} ip={} {} (record {})\n",
            a.time,
            a.severity,
            a.policy,
            a.app,
            if a.user.is_empty() { "-" } else { &a.user },
            a.client_ip,
            what,
            a.record_id
        ));
    }
    if list.is_empty() {
        out.push_str("no alerts\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstore::{BatchRef, Store, Sync};
    use palisade_schema::logrec::{BatchBuilder, BatchView, Field, Record};
    use zerocopy::little_endian::U64;

    /// Three batches: (app, user) pairs at increasing times.
    fn store(dir: &Path) {
        let mut store = Store::open(&logstore::path(dir), Sync::Normal).unwrap();
        let batches = [
            vec![("box", "ann"), ("box", "bob"), ("drive", "ann")],
            vec![("drive", "bob"), ("drive", "bob")],
            vec![("box", "cid"), ("mail", "ann")],
        ];
        let mut t = 1_000_000;
        for (seq, rows) in batches.iter().enumerate() {
            let mut b = BatchBuilder::default();
            for (app, user) in rows {
                t += 1_000_000;
                let mut r = Record {
                    time_unix_us: U64::new(t),
                    ..Record::default()
                };
                r.strings[Field::App as usize] = b.string(app.as_bytes());
                r.strings[Field::User as usize] = b.string(user.as_bytes());
                r.strings[Field::Url as usize] = b.string(format!("/{app}/{user}/{t}").as_bytes());
                b.push(&r);
            }
            let view = BatchView::new(b.count(), b.records_bytes(), b.arena()).unwrap();
            store
                .store_all(
                    &[BatchRef {
                        stream_id: 9,
                        seq: seq as u64 + 1,
                        core: 0,
                        view,
                        ends: None,
                    }],
                    |_, _, _| Ok(()),
                )
                .unwrap();
        }
    }

    fn pairs(dir: &Path, filter: Filter) -> Vec<(String, String)> {
        let mut out = Vec::new();
        export(dir, &filter, Format::Jsonl, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["app"].as_str().unwrap().to_string(),
                    v["user"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn app_and_user_filters_use_the_block_index_and_check_every_row() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path());
        let p = |s: &[(&str, &str)]| -> Vec<(String, String)> {
            s.iter()
                .map(|(a, u)| (a.to_string(), u.to_string()))
                .collect()
        };
        let app = |a: &str| Filter {
            app: Some(a.into()),
            ..Filter::default()
        };
        assert_eq!(
            pairs(dir.path(), app("box")),
            p(&[("box", "ann"), ("box", "bob"), ("box", "cid")])
        );
        assert_eq!(
            pairs(dir.path(), app("drive")),
            p(&[("drive", "ann"), ("drive", "bob"), ("drive", "bob")])
        );
        let ann = Filter {
            user: Some("ann".into()),
            ..Filter::default()
        };
        assert_eq!(
            pairs(dir.path(), ann),
            p(&[("box", "ann"), ("drive", "ann"), ("mail", "ann")])
        );
        let both = Filter {
            app: Some("drive".into()),
            user: Some("bob".into()),
            ..Filter::default()
        };
        assert_eq!(
            pairs(dir.path(), both),
            p(&[("drive", "bob"), ("drive", "bob")])
        );
        // Time bounds cut inside a block.
        let window = Filter {
            app: Some("box".into()),
            from_us: Some(3_000_000),
            to_us: Some(7_000_000),
            ..Filter::default()
        };
        assert_eq!(pairs(dir.path(), window), p(&[("box", "bob")]));
        assert!(pairs(dir.path(), app("nothing")).is_empty());
        assert_eq!(pairs(dir.path(), Filter::default()).len(), 7);
        let rows = report(dir.path(), &Filter::default(), By::User).unwrap();
        let ann = rows.iter().find(|r| r.key == "ann").unwrap();
        assert_eq!((ann.requests, ann.users), (3, 1));
    }
}
