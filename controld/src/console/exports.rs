//! Exports run from the console: each a background thread writing
//! `logs export`'s very output (same code, same bytes) to a file under
//! `<state>/console/exports/`, with its progress in memory and its
//! description next to it (`<id>.json`), so the "Exported reports" list
//! survives a restart. Finished exports are deleted after the keep time.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::logcli::{Filter, Format, KindFilter};

/// What an export was asked for and how it went.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExportInfo {
    pub id: String,
    pub requested_by: String,
    pub created_unix: i64,
    /// The range, filters and format asked for (trimmed; format `csv` or
    /// `jsonl`).
    #[serde(flatten)]
    pub asked: Request,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub rows: u64,
    pub bytes: u64,
    pub error: String,
}

impl ExportInfo {
    pub fn file_name(&self) -> String {
        format!("palisade-export-{}.{}", self.id, self.asked.format)
    }
}

/// Progress of a running export.
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

/// The exports of this console.
pub struct Exports {
    dir: PathBuf,
    state_dir: PathBuf,
    keep: Duration,
    running: Mutex<BTreeMap<String, Arc<Progress>>>,
}

/// An export request from the form.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Request {
    pub from: String,
    pub to: String,
    pub app: String,
    pub user: String,
    pub kind: String,
    pub format: String,
}

impl Exports {
    pub fn open(state_dir: &Path, keep: Duration) -> Result<Exports, String> {
        let dir = state_dir.join("console").join("exports");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Exports {
            dir,
            state_dir: state_dir.to_path_buf(),
            keep,
            running: Mutex::new(BTreeMap::new()),
        })
    }

    fn info_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The data file of an export (ids are checked: letters, digits, `-`).
    pub fn data_path(&self, info: &ExportInfo) -> PathBuf {
        self.dir.join(format!("{}.{}", info.id, info.asked.format))
    }

    fn save(&self, info: &ExportInfo) {
        let bytes = serde_json::to_vec_pretty(info).unwrap_or_default();
        if let Err(e) = crate::commands::write_atomically(&self.info_path(&info.id), &bytes) {
            crate::say(
                palisade_schema::systemd::Priority::Error,
                &format!("controld: console export {}: {e}", info.id),
                &[],
            );
        }
    }

    /// One export's description.
    pub fn get(&self, id: &str) -> Option<ExportInfo> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let text = std::fs::read(self.info_path(id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// (rows written, rows matching) of a running export.
    pub fn progress(&self, id: &str) -> Option<(u64, u64)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(id).map(|p| {
            (
                p.done.load(Ordering::Relaxed),
                p.total.load(Ordering::Relaxed),
            )
        })
    }

    /// Every export, newest first; expired ones are deleted on the way.
    pub fn list(&self) -> Vec<ExportInfo> {
        let now = super::auth::now_secs();
        let mut out: Vec<ExportInfo> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                self.get(id)
            })
            .filter(|info| {
                let expired =
                    info.state != "running" && now - info.created_unix > self.keep.as_secs() as i64;
                if expired {
                    let _ = std::fs::remove_file(self.data_path(info));
                    let _ = std::fs::remove_file(self.info_path(&info.id));
                }
                !expired
            })
            .collect();
        out.sort_by(|a, b| b.created_unix.cmp(&a.created_unix).then(b.id.cmp(&a.id)));
        out
    }

    /// Starts an export in the background; its id.
    pub fn start(
        self: &Arc<Self>,
        request: &Request,
        who: &str,
        id: String,
    ) -> Result<ExportInfo, String> {
        let format = match request.format.as_str() {
            "" | "csv" => Format::Csv,
            "jsonl" => Format::Jsonl,
            other => return Err(format!("unknown format {other:?} (csv, jsonl)")),
        };
        let time = crate::logcli::parse_optional_time;
        let filter = Filter {
            from_us: time(&request.from)?,
            to_us: time(&request.to)?,
            app: Some(request.app.trim().to_string()).filter(|s| !s.is_empty()),
            user: Some(request.user.trim().to_string()).filter(|s| !s.is_empty()),
            kind: match request.kind.as_str() {
                "" => None,
                "traffic" => Some(KindFilter::Traffic),
                "activity" => Some(KindFilter::Activity),
                other => return Err(format!("unknown kind {other:?} (traffic, activity)")),
            },
        };
        let info = ExportInfo {
            id,
            requested_by: who.to_string(),
            created_unix: super::auth::now_secs(),
            asked: Request {
                from: request.from.trim().to_string(),
                to: request.to.trim().to_string(),
                app: request.app.trim().to_string(),
                user: request.user.trim().to_string(),
                kind: request.kind.clone(),
                format: if format == Format::Csv {
                    "csv"
                } else {
                    "jsonl"
                }
                .to_string(),
            },
            state: "running".into(),
            rows: 0,
            bytes: 0,
            error: String::new(),
        };
        self.save(&info);
        let progress = Arc::new(Progress::default());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.id.clone(), progress.clone());
        let this = self.clone();
        let mut job = info.clone();
        std::thread::Builder::new()
            .name("controld-export".into())
            .spawn(move || {
                let path = this.data_path(&job);
                let result = (|| -> Result<u64, String> {
                    let file = std::fs::File::create(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let mut out = BufWriter::with_capacity(1 << 16, file);
                    let mut report = |done: u64, total: u64| {
                        progress.total.store(total, Ordering::Relaxed);
                        progress.done.store(done, Ordering::Relaxed);
                    };
                    let n = crate::logcli::export_with_progress(
                        &this.state_dir,
                        &filter,
                        format,
                        &mut out,
                        Some(&mut report),
                    )?;
                    out.flush().map_err(|e| e.to_string())?;
                    out.get_ref().sync_all().map_err(|e| e.to_string())?;
                    Ok(n)
                })();
                match result {
                    Ok(rows) => {
                        job.state = "done".into();
                        job.rows = rows;
                        job.bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    }
                    Err(e) => {
                        job.state = "failed".into();
                        job.error = e;
                        let _ = std::fs::remove_file(&path);
                    }
                }
                this.save(&job);
                this.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&job.id);
            })
            .map_err(|e| e.to_string())?;
        Ok(info)
    }
}
