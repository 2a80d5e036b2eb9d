//! The log store: SQLite (bundled) in WAL mode under the state directory.
//!
//! Records are indexed by time (a B-tree on `time_us`) and by app and user
//! at batch granularity: `blocks` holds each stored batch's id and time
//! range, `block_apps` / `block_users` which apps and users occur in it. A
//! query for one app or user reads only the batches that contain it. A
//! per-row index on each would cost one B-tree insert per record per index
//! (ingestion measured 198k records/s with both, against ~1,000 times
//! fewer inserts this way; see BENCHMARKS.md).
//!
//! Low-cardinality strings (user agent, app, user, host, method, IP…) are
//! interned in `strings`; `records_view` shows records with their text.
//! Batches are inserted in one transaction per group (group commit), and a
//! batch counts as stored only once that transaction committed; the
//! (stream, seq) of every stored batch is committed with its records, so a
//! batch sent again after a lost ack is recognized and stored once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use palisade_schema::logrec::{BatchView, Field, RecordView};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags};
use rustc_hash::FxHashMap;

/// File name of the store inside the state directory.
pub const FILE_NAME: &str = "logs.db";

/// The store's path inside `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS strings (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind_id INTEGER NOT NULL,
    request_id INTEGER NOT NULL,
    client_ip_id INTEGER NOT NULL,
    client_port INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    user_agent_id INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    host_id INTEGER NOT NULL,
    method_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    status INTEGER NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    session_id_id INTEGER NOT NULL,
    device_tags_id INTEGER NOT NULL,
    tls INTEGER NOT NULL,
    policy_id INTEGER NOT NULL,
    action_id INTEGER NOT NULL,
    activity_id INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    core INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    protocol INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS records_time_cover ON records(time_us, id, kind_id, app_id, user_id, client_ip_id, action_id, activity_id, bytes_up, bytes_down);
CREATE TABLE IF NOT EXISTS blocks (
    first_id INTEGER PRIMARY KEY,
    last_id INTEGER NOT NULL,
    min_time_us INTEGER NOT NULL,
    max_time_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS block_apps (
    app_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    PRIMARY KEY (app_id, first_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS block_users (
    user_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, first_id)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS records_view AS SELECT
    r.id AS id, r.time_us AS time_us, kind.text AS kind, r.request_id AS request_id,
    ip.text AS client_ip, r.client_port AS client_port, user.text AS user,
    ua.text AS user_agent, app.text AS app, host.text AS host, method.text AS method,
    r.url AS url, r.status AS status, r.bytes_up AS bytes_up, r.bytes_down AS bytes_down,
    r.duration_us AS duration_us, session.text AS session_id, tags.text AS device_tags,
    r.tls AS tls, policy.text AS policy, action.text AS action, activity.text AS activity,
    r.file_name AS file_name, r.file_size AS file_size, r.core AS core, r.detail AS detail,
    CASE r.protocol WHEN 2 THEN 'HTTP/2' ELSE 'HTTP/1.1' END AS protocol,
    r.app_id AS app_id, r.user_id AS user_id, r.kind_id AS kind_id
  FROM records r
  JOIN strings kind ON kind.id = r.kind_id
  JOIN strings ip ON ip.id = r.client_ip_id
  JOIN strings user ON user.id = r.user_id
  JOIN strings ua ON ua.id = r.user_agent_id
  JOIN strings app ON app.id = r.app_id
  JOIN strings host ON host.id = r.host_id
  JOIN strings method ON method.id = r.method_id
  JOIN strings session ON session.id = r.session_id_id
  JOIN strings tags ON tags.id = r.device_tags_id
  JOIN strings policy ON policy.id = r.policy_id
  JOIN strings action ON action.id = r.action_id
  JOIN strings activity ON activity.id = r.activity_id;
CREATE TABLE IF NOT EXISTS streams (
    stream_id INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    ended_issued INTEGER,
    ended_dropped INTEGER,
    lost INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    day TEXT NOT NULL,
    policy TEXT NOT NULL,
    severity TEXT NOT NULL,
    record_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    app TEXT NOT NULL,
    user TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    url TEXT NOT NULL,
    activity TEXT NOT NULL,
    action TEXT NOT NULL,
    file_name TEXT NOT NULL,
    acked_by TEXT NOT NULL DEFAULT '',
    acked_at_us INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_day ON alerts(policy, day);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time_us);
";

/// Columns of `records_view`, in export order (shared with export).
pub const RECORD_COLUMNS: [&str; 27] = [
    "id",
    "time_us",
    "kind",
    "request_id",
    "client_ip",
    "client_port",
    "user",
    "user_agent",
    "app",
    "host",
    "method",
    "url",
    "status",
    "bytes_up",
    "bytes_down",
    "duration_us",
    "session_id",
    "device_tags",
    "tls",
    "policy",
    "action",
    "activity",
    "file_name",
    "file_size",
    "core",
    "detail",
    "protocol",
];

/// Rows per multi-row INSERT: one statement per this many records cuts
/// the per-statement cost; 25 parameters each stays far below SQLite's
/// parameter limit.
const ROWS_PER_INSERT: usize = 32;
/// Parameters per record.
const PARAMS: usize = 26;
/// Interned strings kept in memory; past this the map starts over (the
/// table keeps them all, lookups then go to SQLite until re-cached).
const MAX_CACHED_STRINGS: usize = 1 << 20;

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// fsync on every commit: an acknowledged batch survives power loss.
    Full,
    /// fsync at checkpoints: survives a crash of controld, not of the
    /// machine.
    Normal,
}

/// A writable store.
pub struct Store {
    conn: Connection,
    /// Last stored seq and records stored, per stream (mirrors the
    /// `streams` table).
    streams: HashMap<u64, StreamMark>,
    /// Records the ended streams lost (sum of `streams.lost`).
    lost_total: u64,
    /// Interned strings: text → id in `strings`. Low-cardinality fields
    /// (user agent, app, user, host…) are stored as ids: rows are a third
    /// of the size and the user index compares integers.
    interned: FxHashMap<Vec<u8>, i64>,
    /// Client addresses (as stored in records) → their text's string id.
    ips: FxHashMap<[u8; 16], i64>,
}

/// How far a stream is stored.
#[derive(Clone, Copy, Debug, Default)]
struct StreamMark {
    /// Last batch stored (end markers do not count: a batch of the killed
    /// run still on its way, read from the dead connection after the next
    /// run's marker arrived, is stored, not taken for a duplicate).
    last_seq: u64,
    records: u64,
    /// From the stream's end marker, once stored.
    end: Option<StreamEnd>,
}

impl StreamMark {
    /// Of what an ended stream made and did not drop, what is not stored.
    fn lost(&self) -> u64 {
        self.end
            .map_or(0, |e| e.issued.saturating_sub(e.dropped + self.records))
    }
}

/// A batch to store.
pub struct BatchRef<'a> {
    pub stream_id: u64,
    pub seq: u64,
    pub core: u32,
    pub view: BatchView<'a>,
    /// Set on a stream's end marker: what its ledger says it made.
    pub ends: Option<StreamEnd>,
}

/// An ended stream's totals, from its ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    pub issued: u64,
    pub dropped: u64,
}

/// What storing one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// New: its records are in, first row id given.
    Inserted { first_id: i64 },
    /// Already stored earlier (a resend after a lost ack).
    Duplicate,
    /// A stream's end marker: of what the stream made and did not drop,
    /// `lost` records never reached the store.
    Ended { lost: u64 },
}

impl Store {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path, sync: Sync) -> rusqlite::Result<Store> {
        // One thread uses the connection: SQLite's own locking is not
        // needed.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                Sync::Full => "FULL",
                Sync::Normal => "NORMAL",
            },
        )?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.execute_batch(SCHEMA)?;
        // Stores made before records had a `detail` column, or before
        // HTTP/2 (`protocol`: every record they hold came over HTTP/1.x),
        // gain the columns, and a view that shows them.
        let mut view_stale = false;
        for (column, definition) in [
            ("detail", "TEXT NOT NULL DEFAULT ''"),
            ("protocol", "INTEGER NOT NULL DEFAULT 1"),
        ] {
            let present = conn
                .prepare("SELECT 1 FROM pragma_table_info('records') WHERE name = ?1")?
                .exists([column])?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE records ADD COLUMN {column} {definition};"
                ))?;
                view_stale = true;
            }
        }
        if view_stale {
            conn.execute_batch("DROP VIEW IF EXISTS records_view;")?;
            conn.execute_batch(SCHEMA)?;
        }
        // Stores made before lost records were counted gain the columns.
        let has_lost = conn
            .prepare("SELECT 1 FROM pragma_table_info('streams') WHERE name = 'lost'")?
            .exists([])?;
        if !has_lost {
            conn.execute_batch(
                "ALTER TABLE streams ADD COLUMN records INTEGER NOT NULL DEFAULT 0; ALTER TABLE streams ADD COLUMN ended_issued INTEGER; ALTER TABLE streams ADD COLUMN ended_dropped INTEGER; ALTER TABLE streams ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        // Stores made before the covering time index lose the plain one
        // (the covering index starts with time, so it serves every range).
        conn.execute_batch("DROP INDEX IF EXISTS records_time;")?;
        // Stores made before the console acknowledged alerts gain who did
        // and when.
        let has_acked = conn
            .prepare("SELECT 1 FROM pragma_table_info('alerts') WHERE name = 'acked_by'")?
            .exists([])?;
        if !has_acked {
            conn.execute_batch(
                "ALTER TABLE alerts ADD COLUMN acked_by TEXT NOT NULL DEFAULT ''; ALTER TABLE alerts ADD COLUMN acked_at_us INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        let mut streams = HashMap::new();
        let mut lost_total = 0u64;
        {
            let mut st = conn.prepare(
                "SELECT stream_id, last_seq, records, ended_issued, ended_dropped FROM streams",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
            for row in rows {
                let (s, q, n, issued, dropped) = row?;
                let mark = StreamMark {
                    last_seq: q as u64,
                    records: n as u64,
                    end: issued.map(|i| StreamEnd {
                        issued: i as u64,
                        dropped: dropped.unwrap_or(0) as u64,
                    }),
                };
                lost_total += mark.lost();
                streams.insert(s as u64, mark);
            }
        }
        let mut interned = FxHashMap::default();
        {
            let mut st = conn.prepare("SELECT id, text FROM strings LIMIT ?1")?;
            let rows = st.query_map([MAX_CACHED_STRINGS as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, text) = row?;
                interned.insert(text.into_bytes(), id);
            }
        }
        Ok(Store {
            conn,
            streams,
            lost_total,
            interned,
            ips: FxHashMap::default(),
        })
    }

    /// Stores `batches` in one transaction; `each` sees every new record
    /// with its row id inside the transaction (alerts are written there).
    pub fn store_all(
        &mut self,
        batches: &[BatchRef<'_>],
        each: impl FnMut(&rusqlite::Transaction<'_>, i64, &RecordView<'_>) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<Vec<Stored>> {
        let result = self.try_store_all(batches, each);
        if result.is_err() {
            // Strings interned by the rolled-back transaction are gone
            // from the table: forget every cached id.
            self.interned.clear();
            self.ips.clear();
        }
        result
    }

    fn try_store_all(
        &mut self,
        batches: &[BatchRef<'_>],
        mut each: impl FnMut(&rusqlite::Transaction<'_>, i64, &RecordView<'_>) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<Vec<Stored>> {
        if self.interned.len() > MAX_CACHED_STRINGS {
            self.interned.clear();
            self.ips.clear();
        }
        let tx = self.conn.transaction()?;
        let mut results = Vec::with_capacity(batches.len());
        // Streams advanced by this transaction, and their new marks.
        let mut advanced: Vec<(u64, StreamMark)> = Vec::new();
        {
            let mut many = tx.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
            let mut one = tx.prepare_cached(&insert_sql(1))?;
            let mut add_string = tx.prepare_cached(
                "INSERT INTO strings (text) VALUES (?1) ON CONFLICT(text) DO UPDATE SET text = excluded.text RETURNING id",
            )?;
            let mut intern = |bytes: &[u8]| -> rusqlite::Result<i64> {
                if let Some(id) = self.interned.get(bytes) {
                    return Ok(*id);
                }
                let text = String::from_utf8_lossy(bytes);
                let id: i64 = add_string.query_row([text.as_ref()], |r| r.get(0))?;
                self.interned.insert(bytes.to_vec(), id);
                Ok(id)
            };
            let mut values: Vec<ToSqlOutput<'_>> = Vec::with_capacity(PARAMS * ROWS_PER_INSERT);
            let mut ip_text = String::with_capacity(46);
            let mut add_block = tx.prepare_cached(
                "INSERT INTO blocks (first_id, last_id, min_time_us, max_time_us) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut add_block_app = tx.prepare_cached(
                "INSERT OR IGNORE INTO block_apps (app_id, first_id) VALUES (?1, ?2)",
            )?;
            let mut add_block_user = tx.prepare_cached(
                "INSERT OR IGNORE INTO block_users (user_id, first_id) VALUES (?1, ?2)",
            )?;
            let mut apps = rustc_hash::FxHashSet::default();
            let mut users = rustc_hash::FxHashSet::default();
            for b in batches {
                let mark = advanced
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == b.stream_id)
                    .map(|(_, m)| *m)
                    .or_else(|| self.streams.get(&b.stream_id).copied())
                    .unwrap_or_default();
                if let Some(end) = b.ends {
                    if mark.end.is_some() {
                        results.push(Stored::Duplicate);
                        continue;
                    }
                    // Every batch of the stream that survived (sent, or
                    // spilled and sent by the next run) comes before its
                    // marker, but for one read late from the killed run's
                    // connection: stored later, it lowers the count.
                    let next = StreamMark {
                        end: Some(end),
                        ..mark
                    };
                    advanced.push((b.stream_id, next));
                    results.push(Stored::Ended { lost: next.lost() });
                    continue;
                }
                if b.seq <= mark.last_seq {
                    results.push(Stored::Duplicate);
                    continue;
                }
                let records: Vec<RecordView<'_>> = b.view.records().collect();
                let mut first_id = None;
                let mut last_row = 0;
                let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
                apps.clear();
                users.clear();
                for chunk in records.chunks(ROWS_PER_INSERT) {
                    values.clear();
                    for r in chunk {
                        use std::fmt::Write;
                        let f = r.fixed;
                        // Addresses are interned by their 16 bytes; the text
                        // is rendered only for a new one.
                        let ip = match self.ips.get(&f.client_ip) {
                            Some(id) => *id,
                            None => {
                                ip_text.clear();
                                let _ = write!(ip_text, "{}", r.client_ip());
                                let id = intern(ip_text.as_bytes())?;
                                self.ips.insert(f.client_ip, id);
                                id
                            }
                        };
                        let time = f.time_unix_us.get() as i64;
                        min_time = min_time.min(time);
                        max_time = max_time.max(time);
                        let (app, user) =
                            (intern(r.bytes(Field::App))?, intern(r.bytes(Field::User))?);
                        apps.insert(app);
                        users.insert(user);
                        values.extend([
                            int(time),
                            int(intern(r.kind().as_str().as_bytes())?),
                            int(f.request_id.get() as i64),
                            int(ip),
                            int(f.client_port.get() as i64),
                            int(user),
                            int(intern(r.bytes(Field::UserAgent))?),
                            int(app),
                            int(intern(r.bytes(Field::Host))?),
                            int(intern(r.bytes(Field::Method))?),
                            text(r.bytes(Field::Url)),
                            int(f.status.get() as i64),
                            int(f.bytes_up.get() as i64),
                            int(f.bytes_down.get() as i64),
                            int(f.duration_us.get() as i64),
                            int(intern(r.bytes(Field::SessionId))?),
                            int(intern(r.bytes(Field::DeviceTags))?),
                            int(f.tls as i64),
                            int(intern(r.bytes(Field::Policy))?),
                            int(intern(r.action().as_str().as_bytes())?),
                            int(intern(r.bytes(Field::Activity))?),
                            text(r.bytes(Field::FileName)),
                            int(f.file_size.get() as i64),
                            int(b.core as i64),
                            text(r.bytes(Field::Detail)),
                            int(if f.protocol == 2 { 2 } else { 1 }),
                        ]);
                    }
                    let statement = if chunk.len() == ROWS_PER_INSERT {
                        &mut many
                    } else {
                        &mut one
                    };
                    let mut last_id = 0;
                    if chunk.len() == ROWS_PER_INSERT {
                        statement.execute(rusqlite::params_from_iter(values.iter()))?;
                        last_id = tx.last_insert_rowid();
                    } else {
                        for row in values.chunks(PARAMS) {
                            statement.execute(rusqlite::params_from_iter(row.iter()))?;
                            last_id = tx.last_insert_rowid();
                        }
                    }
                    // One INSERT numbers its new rows consecutively.
                    let chunk_first = last_id - chunk.len() as i64 + 1;
                    first_id.get_or_insert(chunk_first);
                    last_row = last_id;
                    for (k, r) in chunk.iter().enumerate() {
                        each(&tx, chunk_first + k as i64, r)?;
                    }
                }
                if let Some(first) = first_id {
                    add_block.execute(params![first, last_row, min_time, max_time])?;
                    for app in &apps {
                        add_block_app.execute(params![app, first])?;
                    }
                    for user in &users {
                        add_block_user.execute(params![user, first])?;
                    }
                }
                let next = StreamMark {
                    last_seq: b.seq,
                    records: mark.records + records.len() as u64,
                    ..mark
                };
                advanced.push((b.stream_id, next));
                results.push(Stored::Inserted {
                    first_id: first_id.unwrap_or(0),
                });
            }
            let mut mark = tx.prepare_cached(
                "INSERT INTO streams (stream_id, last_seq, records, ended_issued, ended_dropped, lost) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(stream_id) DO UPDATE SET last_seq = excluded.last_seq, records = excluded.records, ended_issued = excluded.ended_issued, ended_dropped = excluded.ended_dropped, lost = excluded.lost",
            )?;
            for (s, m) in &advanced {
                mark.execute(params![
                    *s as i64,
                    m.last_seq as i64,
                    m.records as i64,
                    m.end.map(|e| e.issued as i64),
                    m.end.map(|e| e.dropped as i64),
                    m.lost() as i64
                ])?;
            }
        }
        tx.commit()?;
        for (s, m) in advanced {
            let before = self.streams.insert(s, m).map_or(0, |old| old.lost());
            self.lost_total = (self.lost_total + m.lost()).saturating_sub(before);
        }
        Ok(results)
    }

    /// Records the ended streams made and never delivered (lost with a
    /// killed process), over the store's life.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Deletes records (and alerts) older than `cutoff_us`; returns how
    /// many records went.
    pub fn expire(&mut self, cutoff_us: i64) -> rusqlite::Result<usize> {
        let n = self
            .conn
            .execute("DELETE FROM records WHERE time_us < ?1", [cutoff_us])?;
        self.conn
            .execute("DELETE FROM blocks WHERE max_time_us < ?1", [cutoff_us])?;
        self.conn.execute(
            "DELETE FROM block_apps WHERE first_id < (SELECT coalesce(min(first_id), 0) FROM blocks)",
            [],
        )?;
        self.conn.execute(
            "DELETE FROM block_users WHERE first_id < (SELECT coalesce(min(first_id), 0) FROM blocks)",
            [],
        )?;
        self.conn
            .execute("DELETE FROM alerts WHERE time_us < ?1", [cutoff_us])?;
        Ok(n)
    }

    /// Alerts already raised by `policy` on `day`.
    pub fn alerts_on(&self, policy: &str, day: &str) -> rusqlite::Result<u32> {
        self.conn.query_row(
            "SELECT count(*) FROM alerts WHERE policy = ?1 AND day = ?2",
            params![policy, day],
            |r| r.get(0),
        )
    }
}

fn int(v: i64) -> ToSqlOutput<'static> {
    ToSqlOutput::Borrowed(ValueRef::Integer(v))
}

/// Bytes as sent: SQLite does not check UTF-8, and readers show invalid
/// sequences as U+FFFD.
fn text(v: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(v))
}

/// `INSERT` of `rows` records.
fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; PARAMS].join(", "));
    format!(
        "INSERT INTO records (time_us, kind_id, request_id, client_ip_id, client_port, user_id, user_agent_id, app_id, host_id, method_id, url, status, bytes_up, bytes_down, duration_us, session_id_id, device_tags_id, tls, policy_id, action_id, activity_id, file_name, file_size, core, detail, protocol) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Opens the store for reading (export, tail, report, alerts), refusing to
/// create it.
pub fn open_read_only(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!(
            "{}: no log store (has controld served with this --state-dir?)",
            path.display()
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    // Readers wait for a writer's checkpoint instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_schema::logrec::{BatchBuilder, Record};
    use zerocopy::little_endian::U64;

    fn batch(urls: &[&str]) -> BatchBuilder {
        let mut b = BatchBuilder::default();
        for u in urls {
            let mut r = Record {
                time_unix_us: U64::new(1),
                ..Record::default()
            };
            r.strings[Field::Url as usize] = b.string(u.as_bytes());
            b.push(&r);
        }
        b
    }

    fn count(path: &Path) -> i64 {
        open_read_only(path)
            .unwrap()
            .query_row("SELECT count(*) FROM records_view", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_sent_again_is_stored_once_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let b1 = batch(&["/a", "/b"]);
        let b2 = batch(&["/c"]);
        fn at(seq: u64, b: &BatchBuilder) -> BatchRef<'_> {
            BatchRef {
                stream_id: u64::MAX - 1,
                seq,
                core: 0,
                view: BatchView::new(b.count(), b.records_bytes(), b.arena()).unwrap(),
                ends: None,
            }
        }
        {
            let mut store = Store::open(&path, Sync::Full).unwrap();
            let r = store
                .store_all(&[at(1, &b1), at(1, &b1)], |_, _, _| Ok(()))
                .unwrap();
            assert!(matches!(r[0], Stored::Inserted { .. }));
            assert_eq!(r[1], Stored::Duplicate);
        }
        assert_eq!(count(&path), 2);
        let mut store = Store::open(&path, Sync::Normal).unwrap();
        let r = store
            .store_all(&[at(1, &b1), at(2, &b2)], |_, _, _| Ok(()))
            .unwrap();
        assert_eq!(r[0], Stored::Duplicate);
        assert!(matches!(r[1], Stored::Inserted { .. }));
        assert_eq!(count(&path), 3);
    }

    #[test]
    fn an_end_marker_counts_what_its_stream_made_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let (b1, b3) = (batch(&["/a", "/b"]), batch(&["/c"]));
        let empty = BatchBuilder::default();
        fn at(seq: u64, b: &BatchBuilder, ends: Option<StreamEnd>) -> BatchRef<'_> {
            BatchRef {
                stream_id: 9,
                seq,
                core: 0,
                view: BatchView::new(b.count(), b.records_bytes(), b.arena()).unwrap(),
                ends,
            }
        }
        // The run made 8 records in batches 1–3 (2, 4 and 1 records) and
        // 1 it dropped and counted; only batch 1 is stored when its
        // marker arrives.
        let end = Some(StreamEnd {
            issued: 8,
            dropped: 1,
        });
        {
            let mut store = Store::open(&path, Sync::Full).unwrap();
            store
                .store_all(&[at(1, &b1, None)], |_, _, _| Ok(()))
                .unwrap();
            let r = store
                .store_all(&[at(4, &empty, end)], |_, _, _| Ok(()))
                .unwrap();
            assert_eq!(r[0], Stored::Ended { lost: 5 });
            assert_eq!(store.lost_total(), 5);
        }
        // Sent again after a lost ack: not counted twice, also after a
        // restart.
        let mut store = Store::open(&path, Sync::Full).unwrap();
        assert_eq!(store.lost_total(), 5);
        let r = store
            .store_all(&[at(4, &empty, end)], |_, _, _| Ok(()))
            .unwrap();
        assert_eq!(r[0], Stored::Duplicate);
        assert_eq!(store.lost_total(), 5);
        // Batch 3 read late from the killed run's connection (after the
        // marker): stored, and no longer lost; batch 2 died with it.
        let r = store
            .store_all(&[at(3, &b3, None)], |_, _, _| Ok(()))
            .unwrap();
        assert!(matches!(r[0], Stored::Inserted { .. }));
        assert_eq!(store.lost_total(), 4);
        assert_eq!(Store::open(&path, Sync::Full).unwrap().lost_total(), 4);
    }

    #[test]
    fn retention_deletes_old_records_and_their_block_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut store = Store::open(&path, Sync::Normal).unwrap();
        for (seq, time) in [(1u64, 100u64), (2, 200), (3, 300)] {
            let mut b = BatchBuilder::default();
            let mut r = Record {
                time_unix_us: U64::new(time),
                ..Record::default()
            };
            r.strings[Field::App as usize] = b.string(format!("app{seq}").as_bytes());
            b.push(&r);
            let view = BatchView::new(b.count(), b.records_bytes(), b.arena()).unwrap();
            store
                .store_all(
                    &[BatchRef {
                        stream_id: 5,
                        seq,
                        core: 0,
                        view,
                        ends: None,
                    }],
                    |_, _, _| Ok(()),
                )
                .unwrap();
        }
        assert_eq!(store.expire(250).unwrap(), 2);
        assert_eq!(count(&path), 1);
        let conn = open_read_only(&path).unwrap();
        let blocks: i64 = conn
            .query_row("SELECT count(*) FROM blocks", [], |r| r.get(0))
            .unwrap();
        let apps: i64 = conn
            .query_row("SELECT count(*) FROM block_apps", [], |r| r.get(0))
            .unwrap();
        assert_eq!((blocks, apps), (1, 1));
    }

    #[test]
    fn a_failed_transaction_stores_nothing_and_remembers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let b1 = batch(&["/a", "/b"]);
        let view = BatchView::new(b1.count(), b1.records_bytes(), b1.arena()).unwrap();
        let mut store = Store::open(&path, Sync::Full).unwrap();
        let refs = [BatchRef {
            stream_id: 7,
            seq: 1,
            core: 0,
            view,
            ends: None,
        }];
        let failed = store.store_all(&refs, |_, id, _| {
            if id == 2 {
                Err(rusqlite::Error::InvalidQuery)
            } else {
                Ok(())
            }
        });
        assert!(failed.is_err());
        assert_eq!(count(&path), 0);
        // The resend is stored, not taken for a duplicate.
        let r = store.store_all(&refs, |_, _, _| Ok(())).unwrap();
        assert!(matches!(r[0], Stored::Inserted { .. }));
        assert_eq!(count(&path), 2);
    }
}
