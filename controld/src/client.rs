//! The operator side of the control socket: `apply`, `status`, `rollback`.

use std::os::unix::net::UnixStream;
use std::path::Path;

use capnp::message::Builder;
use palisade_schema::control_capnp::{request, response};
use palisade_schema::frame::{self, MAX_FRAME_BYTES};
use serde::Serialize;

/// One core's answer to a push.
#[derive(Debug, Serialize)]
pub struct CoreAck {
    pub pid: u32,
    pub core: u32,
    pub ok: bool,
    pub error: String,
}

/// Outcome of `apply` or `rollback`.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub version: u64,
    pub acks: Vec<CoreAck>,
    /// controld's time to read, compile and store the policy (µs).
    pub compile_micros: u64,
    /// From the first push byte to the last core's ack (µs).
    pub push_micros: u64,
}

impl Applied {
    /// True when every connected core took the snapshot.
    pub fn all_ok(&self) -> bool {
        self.acks.iter().all(|a| a.ok)
    }

    pub fn render(&self, verb: &str) -> String {
        let mut out = format!(
            "{verb} version {}: {} core(s) connected\n",
            self.version,
            self.acks.len()
        );
        for a in &self.acks {
            if a.ok {
                out.push_str(&format!("  pid {} core {}: ok\n", a.pid, a.core));
            } else {
                out.push_str(&format!(
                    "  pid {} core {}: REFUSED: {}\n",
                    a.pid, a.core, a.error
                ));
            }
        }
        out
    }
}

/// One connected core in `status`.
#[derive(Debug, Serialize)]
pub struct CoreStatus {
    pub pid: u32,
    pub core: u32,
    pub version: u64,
    pub last_error: String,
    pub connected_for_ms: u64,
    /// Log records this core dropped (memory and disk budgets exhausted).
    pub log_dropped: u64,
    /// Log records from this core stored since it connected.
    pub log_stored: u64,
}

/// `controld status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub current_version: u64,
    pub history_versions: Vec<u64>,
    pub cores: Vec<CoreStatus>,
    pub last_push_version: u64,
    pub last_push_unix_ms: i64,
    pub last_push_result: String,
    pub log_backlog: u64,
    pub log_stored: u64,
    /// Log records data-plane runs lost when killed holding them in
    /// memory (from the ended streams' ledgers), over the store's life.
    pub log_lost: u64,
    pub alerts_pending: u64,
    pub alerts_raised: u64,
    pub alerts_delivered: u64,
    pub alerts_failed: u64,
    pub siem: Vec<ExportStatus>,
    /// The ClickHouse log sink, when set (at most one).
    pub log_sink: Vec<ExportStatus>,
}

/// How far one export from the log store has got (a SIEM destination, the
/// ClickHouse sink).
#[derive(Debug, Serialize)]
pub struct ExportStatus {
    pub destination: String,
    /// Messages the receiver acknowledged since controld started.
    pub sent: u64,
    /// Failed connect or send attempts since controld started.
    pub failures: u64,
    /// Why the last attempt failed; empty while delivering.
    pub last_error: String,
    /// Last record and alert ids acknowledged.
    pub mark_record: i64,
    pub mark_alert: i64,
}

impl Status {
    /// The status as Prometheus text exposition (for a node exporter's
    /// textfile collector or a scrape wrapper).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            palisade_schema::metrics_http::describe(&mut out, name, kind, help);
            for l in lines {
                out.push_str(&format!("{name}{l}\n"));
            }
        };
        let per_core = |f: &dyn Fn(&CoreStatus) -> u64| -> Vec<String> {
            self.cores
                .iter()
                .map(|c| format!("{{pid=\"{}\",core=\"{}\"}} {}", c.pid, c.core, f(c)))
                .collect()
        };
        metric(
            "palisade_policy_version",
            "gauge",
            "Current policy version.",
            vec![format!(" {}", self.current_version)],
        );
        metric(
            "palisade_core_policy_version",
            "gauge",
            "Policy version each data-plane core holds.",
            per_core(&|c| c.version),
        );
        metric(
            "palisade_log_records_dropped_total",
            "counter",
            "Log records a core dropped because its memory and disk budgets were full.",
            per_core(&|c| c.log_dropped),
        );
        metric(
            "palisade_log_records_stored_total",
            "counter",
            "Log records from each core stored since it connected.",
            per_core(&|c| c.log_stored),
        );
        metric(
            "palisade_log_records_lost_total",
            "counter",
            "Log records data-plane runs made and never delivered because they were killed holding them in memory.",
            vec![format!(" {}", self.log_lost)],
        );
        metric(
            "palisade_log_backlog_records",
            "gauge",
            "Log records received and waiting for storage.",
            vec![format!(" {}", self.log_backlog)],
        );
        metric(
            "palisade_alerts_pending",
            "gauge",
            "Alerts waiting for webhook delivery.",
            vec![format!(" {}", self.alerts_pending)],
        );
        for (name, help, value) in [
            (
                "palisade_alerts_raised_total",
                "Alerts raised and stored since controld started.",
                self.alerts_raised,
            ),
            (
                "palisade_alerts_delivered_total",
                "Alerts every configured sink (file, webhook) took.",
                self.alerts_delivered,
            ),
            (
                "palisade_alerts_failed_total",
                "Alerts a sink did not take (write failed, webhook refused through every retry, queue full); they stay in the store.",
                self.alerts_failed,
            ),
        ] {
            metric(name, "counter", help, vec![format!(" {value}")]);
        }
        for (exports, prefix, what) in [
            (&self.siem, "palisade_siem", "a SIEM destination"),
            (
                &self.log_sink,
                "palisade_log_sink",
                "the ClickHouse log sink",
            ),
        ] {
            let per_destination = |f: &dyn Fn(&ExportStatus) -> u64| -> Vec<String> {
                exports
                    .iter()
                    .map(|d| format!("{{destination=\"{}\"}} {}", label(&d.destination), f(d)))
                    .collect()
            };
            metric(
                &format!("{prefix}_messages_sent_total"),
                "counter",
                &format!("Records and alerts {what} acknowledged."),
                per_destination(&|d| d.sent),
            );
            metric(
                &format!("{prefix}_send_failures_total"),
                "counter",
                &format!("Failed connect or send attempts to {what}."),
                per_destination(&|d| d.failures),
            );
            metric(
                &format!("{prefix}_failing"),
                "gauge",
                &format!("1 while the last attempt to {what} failed (its rows wait in the store)."),
                per_destination(&|d| u64::from(!d.last_error.is_empty())),
            );
        }
        out
    }

    pub fn render(&self) -> String {
        let mut out = format!("current version: {}\n", self.current_version);
        out.push_str(&format!(
            "history: {}\n",
            self.history_versions
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let pids: std::collections::BTreeSet<u32> = self.cores.iter().map(|c| c.pid).collect();
        out.push_str(&format!(
            "data planes: {} ({} cores connected)\n",
            pids.len(),
            self.cores.len()
        ));
        for c in &self.cores {
            out.push_str(&format!(
                "  pid {} core {}: version {}{} (connected {} s; logs: {} stored, {} dropped)\n",
                c.pid,
                c.core,
                c.version,
                if c.last_error.is_empty() {
                    String::new()
                } else {
                    format!(", last error: {}", c.last_error)
                },
                c.connected_for_ms / 1000,
                c.log_stored,
                c.log_dropped
            ));
        }
        if self.last_push_version > 0 {
            out.push_str(&format!(
                "last push: version {} at {} (unix ms): {}\n",
                self.last_push_version, self.last_push_unix_ms, self.last_push_result
            ));
        } else {
            out.push_str("last push: none since controld started\n");
        }
        out.push_str(&format!(
            "logs: {} records stored since start, {} waiting for storage, {} lost with killed data-plane runs\nalerts since start: {} raised, {} delivered, {} not delivered, {} waiting\n",
            self.log_stored,
            self.log_backlog,
            self.log_lost,
            self.alerts_raised,
            self.alerts_delivered,
            self.alerts_failed,
            self.alerts_pending
        ));
        for (kind, d) in self
            .siem
            .iter()
            .map(|d| ("siem", d))
            .chain(self.log_sink.iter().map(|d| ("log sink", d)))
        {
            out.push_str(&format!(
                "{kind} {}: {} sent since start, acknowledged through record {} and alert {}{}\n",
                d.destination,
                d.sent,
                d.mark_record,
                d.mark_alert,
                if d.last_error.is_empty() {
                    String::new()
                } else {
                    format!("; failing ({} attempts): {}", d.failures, d.last_error)
                }
            ));
        }
        out
    }
}

/// A text field, empty when missing or not UTF-8.
fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> String {
    t.ok()
        .and_then(|t| t.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Exports' progress as controld sent it.
fn exports(
    list: capnp::Result<
        capnp::struct_list::Reader<'_, palisade_schema::control_capnp::export_status::Owned>,
    >,
) -> Result<Vec<ExportStatus>, String> {
    Ok(list
        .map_err(|e| e.to_string())?
        .iter()
        .map(|d| ExportStatus {
            destination: text(d.get_destination()),
            sent: d.get_sent(),
            failures: d.get_failures(),
            last_error: text(d.get_last_error()),
            mark_record: d.get_mark_record(),
            mark_alert: d.get_mark_alert(),
        })
        .collect())
}

/// A Prometheus label value: backslash, quote and line feed escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn exchange(
    socket: &Path,
    message: &Builder<capnp::message::HeapAllocator>,
) -> Result<Vec<u8>, String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach controld at {}: {e}", socket.display()))?;
    frame::write_blocking(&mut stream, message).map_err(|e| format!("sending to controld: {e}"))?;
    frame::read_blocking(&mut stream, MAX_FRAME_BYTES)
        .map_err(|e| format!("reading controld's answer: {e}"))
}

fn applied_from(body: &[u8]) -> Result<Applied, String> {
    let msg = frame::decode(body).map_err(|e| e.to_string())?;
    let resp = msg
        .get_root::<response::Reader>()
        .map_err(|e| e.to_string())?;
    match resp.which().map_err(|e| e.to_string())? {
        response::Applied(a) => {
            let a = a.map_err(|e| e.to_string())?;
            let mut acks = Vec::new();
            for c in a.get_acks().map_err(|e| e.to_string())?.iter() {
                acks.push(CoreAck {
                    pid: c.get_pid(),
                    core: c.get_core(),
                    ok: c.get_ok(),
                    error: c
                        .get_error()
                        .ok()
                        .and_then(|t| t.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                });
            }
            Ok(Applied {
                version: a.get_version(),
                acks,
                compile_micros: a.get_compile_micros(),
                push_micros: a.get_push_micros(),
            })
        }
        response::Error(e) => Err(e
            .ok()
            .and_then(|t| t.to_str().ok())
            .unwrap_or("error")
            .to_string()),
        _ => Err("unexpected answer from controld".into()),
    }
}

/// Asks the daemon to compile, store and push the policy at `policy`.
pub fn apply(socket: &Path, policy: &Path) -> Result<Applied, String> {
    let absolute =
        std::fs::canonicalize(policy).map_err(|e| format!("{}: {e}", policy.display()))?;
    let mut m = Builder::new_default();
    m.init_root::<request::Builder>()
        .init_apply()
        .set_policy_path(absolute.to_string_lossy().as_ref());
    applied_from(&exchange(socket, &m)?)
}

/// Asks the daemon to make `version` (0: the previous one) current again.
pub fn rollback(socket: &Path, version: u64) -> Result<Applied, String> {
    let mut m = Builder::new_default();
    m.init_root::<request::Builder>()
        .init_rollback()
        .set_version(version);
    applied_from(&exchange(socket, &m)?)
}

/// Reads the daemon's status.
pub fn status(socket: &Path) -> Result<Status, String> {
    let mut m = Builder::new_default();
    m.init_root::<request::Builder>().set_status(());
    let body = exchange(socket, &m)?;
    let msg = frame::decode(&body).map_err(|e| e.to_string())?;
    let resp = msg
        .get_root::<response::Reader>()
        .map_err(|e| e.to_string())?;
    match resp.which().map_err(|e| e.to_string())? {
        response::Status(s) => {
            let s = s.map_err(|e| e.to_string())?;
            let mut cores = Vec::new();
            for c in s.get_cores().map_err(|e| e.to_string())?.iter() {
                cores.push(CoreStatus {
                    pid: c.get_pid(),
                    core: c.get_core(),
                    version: c.get_version(),
                    last_error: text(c.get_last_error()),
                    connected_for_ms: c.get_connected_for_ms(),
                    log_dropped: c.get_log_dropped(),
                    log_stored: c.get_log_stored(),
                });
            }
            Ok(Status {
                current_version: s.get_current_version(),
                history_versions: s
                    .get_history_versions()
                    .map_err(|e| e.to_string())?
                    .iter()
                    .collect(),
                cores,
                last_push_version: s.get_last_push_version(),
                last_push_unix_ms: s.get_last_push_unix_ms(),
                last_push_result: text(s.get_last_push_result()),
                log_backlog: s.get_log_backlog(),
                log_stored: s.get_log_stored(),
                log_lost: s.get_log_lost(),
                alerts_pending: s.get_alerts_pending(),
                alerts_raised: s.get_alerts_raised(),
                alerts_delivered: s.get_alerts_delivered(),
                alerts_failed: s.get_alerts_failed(),
                siem: exports(s.get_siem())?,
                log_sink: exports(s.get_log_sink())?,
            })
        }
        response::Error(e) => Err(text(e)),
        _ => Err("unexpected answer from controld".into()),
    }
}
