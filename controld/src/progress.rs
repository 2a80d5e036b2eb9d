//! How far an export from the log store has got (a SIEM destination, the
//! ClickHouse sink), shared between its thread and `controld status`.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Mutex;

/// One export's progress.
#[derive(Debug, Default)]
pub struct Progress {
    pub url: String,
    /// Messages the receiver acknowledged since start.
    pub sent: AtomicU64,
    /// Failed connect or send attempts since start.
    pub failures: AtomicU64,
    /// Why the last attempt failed; empty while delivering.
    pub last_error: Mutex<String>,
    /// The persisted mark.
    pub mark_record: AtomicI64,
    pub mark_alert: AtomicI64,
}

impl Progress {
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn set_error(&self, what: &str) {
        let mut e = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        e.clear();
        e.push_str(what);
    }
}
