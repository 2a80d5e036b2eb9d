//! The console's reads of the log store: the activity log (filters, keyset
//! pagination newest first), one record whole, the overview's series and
//! top lists, alerts and their acknowledgement. Every query runs on a
//! connection of its own (read-only except acknowledging an alert), so the
//! storage thread is never held up by a page.
//!
//! Pagination is by the key (time_us, id), the order of the `records_time`
//! index (SQLite keeps the rowid in it), so the next page is an index seek
//! wherever it is: no OFFSET scans.

use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::alerts::rfc3339;
use crate::logstore::{self, RECORD_COLUMNS};

/// Rows per activity-log page.
pub const PAGE_ROWS: usize = 50;

/// The activity log's filters (every one optional; text is a substring of
/// the URL).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct LogFilter {
    pub from: String,
    pub to: String,
    pub kind: String,
    pub app: String,
    pub user: String,
    pub ip: String,
    pub action: String,
    pub policy: String,
    pub activity: String,
    pub status: String,
    pub text: String,
    /// Continue after this key: `TIME_US:ID` (the last row of a page).
    pub after: String,
}

/// A row of the activity log table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub time_us: i64,
    pub time: String,
    pub kind: String,
    pub user: String,
    pub client_ip: String,
    pub app: String,
    pub method: String,
    pub host: String,
    pub url: String,
    pub status: i64,
    pub action: String,
    pub policy: String,
    pub activity: String,
}

const ROW_COLUMNS: &str =
    "id, time_us, kind, user, client_ip, app, method, host, url, status, action, policy, activity";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    let time_us: i64 = r.get(1)?;
    Ok(LogRow {
        id: r.get(0)?,
        time_us,
        time: rfc3339(time_us),
        kind: r.get(2)?,
        user: r.get(3)?,
        client_ip: r.get(4)?,
        app: r.get(5)?,
        method: r.get(6)?,
        host: r.get(7)?,
        url: r.get(8)?,
        status: r.get(9)?,
        action: r.get(10)?,
        policy: r.get(11)?,
        activity: r.get(12)?,
    })
}

/// Opens the store read-only.
pub fn open(state_dir: &Path) -> Result<Connection, String> {
    logstore::open_read_only(&logstore::path(state_dir))
}

/// A filter's WHERE clause over `records_view` and its parameters.
/// String-valued filters compare interned ids (one lookup each), so the
/// scan never joins text it does not show.
fn clause(filter: &LogFilter) -> Result<(String, Vec<Value>), String> {
    let mut parts: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(t) = crate::logcli::parse_optional_time(&filter.from)? {
        parts.push("time_us >= ?".into());
        values.push(Value::Integer(t));
    }
    if let Some(t) = crate::logcli::parse_optional_time(&filter.to)? {
        parts.push("time_us < ?".into());
        values.push(Value::Integer(t));
    }
    // Interned columns: the records table's id column, through the text.
    for (value, column) in [
        (&filter.kind, "kind_id"),
        (&filter.app, "app_id"),
        (&filter.user, "user_id"),
        (&filter.ip, "client_ip_id"),
        (&filter.action, "action_id"),
        (&filter.policy, "policy_id"),
        (&filter.activity, "activity_id"),
    ] {
        let v = value.trim();
        if !v.is_empty() {
            parts.push(format!(
                "{column} = (SELECT id FROM strings WHERE text = ?)"
            ));
            values.push(Value::Text(v.to_string()));
        }
    }
    if !filter.status.trim().is_empty() {
        let status: i64 = filter
            .status
            .trim()
            .parse()
            .map_err(|_| format!("status {:?} is not a number", filter.status))?;
        parts.push("status = ?".into());
        values.push(Value::Integer(status));
    }
    if !filter.text.is_empty() {
        parts.push("instr(url, ?) > 0".into());
        values.push(Value::Text(filter.text.clone()));
    }
    if !filter.after.is_empty() {
        let (t, id) = filter
            .after
            .split_once(':')
            .and_then(|(t, i)| Some((t.parse::<i64>().ok()?, i.parse::<i64>().ok()?)))
            .ok_or("bad page key")?;
        parts.push("(time_us, id) < (?, ?)".into());
        values.push(Value::Integer(t));
        values.push(Value::Integer(id));
    }
    let mut out = String::new();
    if !parts.is_empty() {
        out.push_str(" WHERE ");
        out.push_str(&parts.join(" AND "));
    }
    Ok((out, values))
}

/// One page of the activity log, newest first; the key of its last row
/// when there may be more.
pub fn log_page(
    conn: &Connection,
    filter: &LogFilter,
) -> Result<(Vec<LogRow>, Option<String>), String> {
    let (where_, values) = clause(filter)?;
    // The filters read the records table itself (interned ids), walking the
    // time index backwards from the key; the view supplies the text only
    // for the page's rows.
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM records_view WHERE id IN (
           SELECT id FROM records{} ORDER BY time_us DESC, id DESC LIMIT {}
         ) ORDER BY time_us DESC, id DESC",
        where_,
        PAGE_ROWS + 1
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut rows: Vec<LogRow> = st
        .query_map(rusqlite::params_from_iter(values.iter()), row_of)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let more = rows.len() > PAGE_ROWS;
    rows.truncate(PAGE_ROWS);
    let next = more.then(|| {
        let last = &rows[rows.len() - 1];
        format!("{}:{}", last.time_us, last.id)
    });
    Ok((rows, next))
}

/// Records stored after `after_id` (oldest first, at most `limit`): what
/// live tail sends.
pub fn since(conn: &Connection, after_id: i64, limit: usize) -> Result<Vec<LogRow>, String> {
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM records_view WHERE id > ? ORDER BY id LIMIT {limit}");
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = st
        .query_map([after_id], row_of)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string());
    rows
}

/// The newest record id (0 for an empty store).
pub fn last_id(conn: &Connection) -> Result<i64, String> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM records", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// Every field of one record, in export order, as text.
pub fn record(conn: &Connection, id: i64) -> Result<Option<Vec<(&'static str, String)>>, String> {
    let sql = format!(
        "SELECT {} FROM records_view WHERE id = ?",
        RECORD_COLUMNS.join(", ")
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let mut rows = st.query([id]).map_err(|e| e.to_string())?;
    let Some(row) = rows.next().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(RECORD_COLUMNS.len());
    for (i, name) in RECORD_COLUMNS.iter().enumerate() {
        let v = row.get_ref(i).map_err(|e| e.to_string())?;
        let text = match (*name, v) {
            ("time_us", ValueRef::Integer(t)) => rfc3339(t),
            ("request_id", ValueRef::Integer(r)) => format!("{:016x}", r as u64),
            (_, ValueRef::Integer(n)) => n.to_string(),
            (_, ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        };
        out.push((if *name == "time_us" { "time" } else { name }, text));
    }
    Ok(Some(out))
}

/// Requests, blocked requests and activities per time bucket.
#[derive(Debug, Default, serde::Serialize)]
pub struct Series {
    /// Bucket starts (Unix seconds).
    pub t: Vec<i64>,
    pub requests: Vec<i64>,
    pub blocked: Vec<i64>,
    pub activities: Vec<i64>,
    pub alerts: Vec<i64>,
}

fn string_id(conn: &Connection, text: &str) -> Result<i64, String> {
    conn.query_row(
        "SELECT coalesce((SELECT id FROM strings WHERE text = ?), -1)",
        [text],
        |r| r.get(0),
    )
    .map_err(|e| e.to_string())
}

/// The overview's series over the last `span_secs`, in `buckets` buckets.
pub fn series(
    conn: &Connection,
    now_us: i64,
    span_secs: i64,
    buckets: i64,
) -> Result<Series, String> {
    let width_us = span_secs * 1_000_000 / buckets;
    let start_us = now_us - span_secs * 1_000_000;
    let block = string_id(conn, "block")?;
    let activity = string_id(conn, "activity")?;
    let traffic = string_id(conn, "traffic")?;
    let mut out = Series::default();
    for i in 0..buckets {
        out.t.push((start_us + i * width_us) / 1_000_000);
    }
    out.requests = vec![0; buckets as usize];
    out.blocked = vec![0; buckets as usize];
    out.activities = vec![0; buckets as usize];
    out.alerts = vec![0; buckets as usize];
    // Counted here from a scan of the covering time index: SQLite would
    // sort every row of the range to group it by bucket.
    let mut st = conn
        .prepare("SELECT time_us, kind_id, action_id FROM records WHERE time_us >= ?1")
        .map_err(|e| e.to_string())?;
    let mut rows = st.query([start_us]).map_err(|e| e.to_string())?;
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let n = |i: usize| r.get::<_, i64>(i).map_err(|e| e.to_string());
        let Some(i) = usize::try_from((n(0)? - start_us) / width_us)
            .ok()
            .filter(|i| *i < buckets as usize)
        else {
            continue;
        };
        let kind = n(1)?;
        if kind == traffic {
            out.requests[i] += 1;
            if n(2)? == block {
                out.blocked[i] += 1;
            }
        } else if kind == activity {
            out.activities[i] += 1;
        }
    }
    let mut st = conn
        .prepare(
            "SELECT (time_us - ?1) / ?2 AS b, count(*) FROM alerts WHERE time_us >= ?1 GROUP BY b",
        )
        .map_err(|e| e.to_string())?;
    let rows = st
        .query_map([start_us, width_us], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(|e| e.to_string())?;
    for row in rows {
        let (b, n) = row.map_err(|e| e.to_string())?;
        if let Some(i) = usize::try_from(b).ok().filter(|i| *i < buckets as usize) {
            out.alerts[i] = n;
        }
    }
    Ok(out)
}

/// The apps, users and client IPs with the most requests since `from_us`
/// (at most `limit` each, with their traffic record counts), from one scan of the covering
/// time index counted in hash maps.
pub fn tops(conn: &Connection, from_us: i64, limit: usize) -> Result<Tops, String> {
    let traffic = string_id(conn, "traffic")?;
    let mut counts: [rustc_hash::FxHashMap<i64, i64>; 3] = Default::default();
    let mut st = conn
        .prepare(
            "SELECT app_id, user_id, client_ip_id FROM records WHERE time_us >= ?1 AND kind_id = ?2",
        )
        .map_err(|e| e.to_string())?;
    let mut rows = st.query([from_us, traffic]).map_err(|e| e.to_string())?;
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        for (i, c) in counts.iter_mut().enumerate() {
            *c.entry(r.get::<_, i64>(i).map_err(|e| e.to_string())?)
                .or_default() += 1;
        }
    }
    let mut text = conn
        .prepare("SELECT text FROM strings WHERE id = ?")
        .map_err(|e| e.to_string())?;
    let mut top = |c: &rustc_hash::FxHashMap<i64, i64>| -> Result<Vec<(String, i64)>, String> {
        let mut v: Vec<(i64, i64)> = c.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(limit)
            .map(|(k, n)| {
                Ok((
                    text.query_row([k], |r| r.get(0))
                        .map_err(|e| e.to_string())?,
                    n,
                ))
            })
            .collect()
    };
    Ok((top(&counts[0])?, top(&counts[1])?, top(&counts[2])?))
}

/// Top apps, users and client IPs.
pub type Tops = (Vec<(String, i64)>, Vec<(String, i64)>, Vec<(String, i64)>);

/// An alert as the console lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub time: String,
    pub policy: String,
    pub severity: String,
    pub record_id: i64,
    pub app: String,
    pub user: String,
    pub activity: String,
    pub url: String,
    pub acked_by: String,
    pub acked_at: String,
}

/// The newest alerts (at most `limit`).
pub fn alerts(conn: &Connection, limit: usize) -> Result<Vec<AlertRow>, String> {
    let sql = format!(
        "SELECT id, time_us, policy, severity, record_id, app, user, activity, url, acked_by, acked_at_us
           FROM alerts ORDER BY time_us DESC, id DESC LIMIT {limit}"
    );
    let mut st = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = st
        .query_map([], |r| {
            let acked_at: i64 = r.get(10)?;
            Ok(AlertRow {
                id: r.get(0)?,
                time: rfc3339(r.get(1)?),
                policy: r.get(2)?,
                severity: r.get(3)?,
                record_id: r.get(4)?,
                app: r.get(5)?,
                user: r.get(6)?,
                activity: r.get(7)?,
                url: r.get(8)?,
                acked_by: r.get(9)?,
                acked_at: if acked_at > 0 {
                    rfc3339(acked_at)
                } else {
                    String::new()
                },
            })
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string());
    rows
}

/// Marks an alert acknowledged by `admin`; false when there is no such
/// alert or it was acknowledged before.
pub fn acknowledge(state_dir: &Path, id: i64, admin: &str, now_us: i64) -> Result<bool, String> {
    let path = logstore::path(state_dir);
    let conn = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let n = conn
        .execute(
            "UPDATE alerts SET acked_by = ?, acked_at_us = ? WHERE id = ? AND acked_by = ''",
            rusqlite::params![admin, now_us, id],
        )
        .map_err(|e| e.to_string())?;
    Ok(n == 1)
}
