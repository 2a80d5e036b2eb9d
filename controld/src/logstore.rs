//! The log store: SQLite (bundled) in WAL mode under the state directory.
//! Batches are inserted in one transaction per group (group commit), and a
//! batch counts as stored only once that transaction committed; the
//! (stream, seq) of every stored batch is committed with its records, so a
//! batch sent again after a lost ack is recognized and stored once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use palisade_schema::logrec::{BatchView, Field, RecordView};
use rusqlite::{params, Connection, OpenFlags};

/// File name of the store inside the state directory.
pub const FILE_NAME: &str = "logs.db";

/// The store's path inside `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    client_port INTEGER NOT NULL,
    user TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    app TEXT NOT NULL,
    host TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    device_tags TEXT NOT NULL,
    tls INTEGER NOT NULL,
    policy TEXT NOT NULL,
    action TEXT NOT NULL,
    activity TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    core INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time_us);
CREATE INDEX IF NOT EXISTS records_app ON records(app, time_us);
CREATE INDEX IF NOT EXISTS records_user ON records(user, time_us);
CREATE TABLE IF NOT EXISTS streams (
    stream_id INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
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
    file_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_day ON alerts(policy, day);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time_us);
";

/// Column list of `records`, in insert order (shared with export).
pub const RECORD_COLUMNS: [&str; 25] = [
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
];

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
    /// Last stored seq per stream (mirrors the `streams` table).
    streams: HashMap<u64, u64>,
}

/// A batch to store.
pub struct BatchRef<'a> {
    pub stream_id: u64,
    pub seq: u64,
    pub core: u32,
    pub view: BatchView<'a>,
}

/// What storing one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// New: its records are in, first row id given.
    Inserted { first_id: i64 },
    /// Already stored earlier (a resend after a lost ack).
    Duplicate,
}

impl Store {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path, sync: Sync) -> rusqlite::Result<Store> {
        let conn = Connection::open(path)?;
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
        let mut streams = HashMap::new();
        {
            let mut st = conn.prepare("SELECT stream_id, last_seq FROM streams")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (s, q) = row?;
                streams.insert(s as u64, q as u64);
            }
        }
        Ok(Store { conn, streams })
    }

    /// Stores `batches` in one transaction; `each` sees every new record
    /// with its row id inside the transaction (alerts are written there).
    pub fn store_all(
        &mut self,
        batches: &[BatchRef<'_>],
        mut each: impl FnMut(&rusqlite::Transaction<'_>, i64, &RecordView<'_>) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<Vec<Stored>> {
        let tx = self.conn.transaction()?;
        let mut results = Vec::with_capacity(batches.len());
        let mut advanced: Vec<(u64, u64)> = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (time_us, kind, request_id, client_ip, client_port, user, user_agent, app, host, method, url, status, bytes_up, bytes_down, duration_us, session_id, device_tags, tls, policy, action, activity, file_name, file_size, core) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )?;
            let mut ip_text = String::with_capacity(46);
            for b in batches {
                let last = advanced
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == b.stream_id)
                    .map(|(_, q)| *q)
                    .or_else(|| self.streams.get(&b.stream_id).copied())
                    .unwrap_or(0);
                if b.seq <= last {
                    results.push(Stored::Duplicate);
                    continue;
                }
                let mut first_id = 0;
                for (i, r) in b.view.records().enumerate() {
                    let f = r.fixed;
                    ip_text.clear();
                    use std::fmt::Write;
                    let _ = write!(ip_text, "{}", r.client_ip());
                    insert.execute(params![
                        f.time_unix_us.get() as i64,
                        r.kind().as_str(),
                        f.request_id.get() as i64,
                        ip_text.as_str(),
                        f.client_port.get(),
                        r.text(Field::User),
                        r.text(Field::UserAgent),
                        r.text(Field::App),
                        r.text(Field::Host),
                        r.text(Field::Method),
                        r.text(Field::Url),
                        f.status.get(),
                        f.bytes_up.get() as i64,
                        f.bytes_down.get() as i64,
                        f.duration_us.get(),
                        r.text(Field::SessionId),
                        r.text(Field::DeviceTags),
                        f.tls,
                        r.text(Field::Policy),
                        r.action().as_str(),
                        r.text(Field::Activity),
                        r.text(Field::FileName),
                        f.file_size.get() as i64,
                        b.core,
                    ])?;
                    let id = tx.last_insert_rowid();
                    if i == 0 {
                        first_id = id;
                    }
                    each(&tx, id, &r)?;
                }
                advanced.push((b.stream_id, b.seq));
                results.push(Stored::Inserted { first_id });
            }
            let mut mark = tx.prepare_cached(
                "INSERT INTO streams (stream_id, last_seq) VALUES (?1, ?2) ON CONFLICT(stream_id) DO UPDATE SET last_seq = excluded.last_seq",
            )?;
            for (s, q) in &advanced {
                mark.execute(params![*s as i64, *q as i64])?;
            }
        }
        tx.commit()?;
        for (s, q) in advanced {
            self.streams.insert(s, q);
        }
        Ok(results)
    }

    /// Deletes records (and alerts) older than `cutoff_us`; returns how
    /// many records went.
    pub fn expire(&mut self, cutoff_us: i64) -> rusqlite::Result<usize> {
        let n = self
            .conn
            .execute("DELETE FROM records WHERE time_us < ?1", [cutoff_us])?;
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
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
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
