//! Alerts: activity policies evaluated on every stored record. A match on a
//! policy with `alert` writes an alert row in the same transaction as the
//! record (at most `daily_limit` per policy per UTC day) and queues it for
//! delivery: a JSON-lines file, a webhook (HTTP POST of JSON) and e-mail
//! ([`crate::mail`]), the last two retried with backoff. Delivery runs on its own thread and never blocks log
//! ingestion: when its queue is full the alert stays in the store only.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade_schema::activity::{ActivityPolicy, Facts};
use palisade_schema::logrec::{Field, RecordView};
use palisade_schema::systemd::Priority;
use rusqlite::params;
use serde::Serialize;

/// Alerts waiting for delivery, at most.
const QUEUE: usize = 10_000;
/// Delivery attempts per alert and the first wait between them.
const ATTEMPTS: u32 = 7;
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Where alerts are delivered.
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    pub webhook: Option<String>,
    pub file: Option<PathBuf>,
    pub mail: Option<Arc<crate::mail::Mailer>>,
}

/// One alert as stored, listed and delivered.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub id: i64,
    pub time: String,
    pub policy: String,
    pub severity: String,
    pub record_id: i64,
    pub kind: String,
    pub app: String,
    pub user: String,
    pub client_ip: String,
    pub url: String,
    pub activity: String,
    pub action: String,
    pub file_name: String,
}

/// The policies in force, replaced on every apply or rollback.
pub type PolicySet = Arc<RwLock<Arc<Vec<ActivityPolicy>>>>;

/// Raises alerts for stored records.
pub struct Engine {
    policies: PolicySet,
    /// Per policy: (day, alerts raised that day).
    today: HashMap<String, (String, u32)>,
    queue: SyncSender<Alert>,
    pub stats: Arc<AlertStats>,
}

/// The alert pipeline's counts since controld started (`controld status`,
/// the metrics).
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Raised and stored.
    pub raised: AtomicU64,
    /// Waiting for delivery.
    pub pending: AtomicU64,
    /// Taken by every configured sink (file, webhook, e-mail).
    pub delivered: AtomicU64,
    /// Not delivered to a sink: its write failed, the webhook refused it
    /// through every retry, or the delivery queue was full. The alert
    /// stays in the store (`controld alerts`).
    pub failed: AtomicU64,
}

/// UTC date (YYYY-MM-DD) of a time in microseconds since the epoch.
pub fn day_of(time_us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(time_us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// RFC 3339 text of a time in microseconds since the epoch.
pub fn rfc3339(time_us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(time_us.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

impl Engine {
    /// An engine and the delivery thread for `sinks`.
    pub fn start(policies: PolicySet, sinks: Sinks) -> Engine {
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let stats = Arc::new(AlertStats::default());
        let s = stats.clone();
        let _ = std::thread::Builder::new()
            .name("controld-alerts".into())
            .spawn(move || deliver(rx, sinks, s));
        Engine {
            policies,
            today: HashMap::new(),
            queue,
            stats,
        }
    }

    /// Checks one new record (row `id`) inside the storing transaction.
    pub fn check(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        r: &RecordView<'_>,
    ) -> rusqlite::Result<()> {
        let policies = self
            .policies
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        if policies.is_empty() {
            return Ok(());
        }
        let policy = r.text(Field::Policy);
        let (app, user, activity, method, url) = (
            r.text(Field::App),
            r.text(Field::User),
            r.text(Field::Activity),
            r.text(Field::Method),
            r.text(Field::Url),
        );
        let facts = Facts {
            kind: r.kind().as_str(),
            app: &app,
            user: &user,
            activity: &activity,
            action: r.action().as_str(),
            method: &method,
            status: r.fixed.status.get(),
            url: &url,
            policy: &policy,
        };
        for p in policies.iter() {
            let Some(spec) = &p.alert else { continue };
            if !p.matches(&facts) {
                continue;
            }
            let time_us = r.fixed.time_unix_us.get() as i64;
            let day = day_of(time_us);
            let count = match self.today.get_mut(&p.name) {
                Some((d, n)) if *d == day => n,
                _ => {
                    let n: u32 = tx.query_row(
                        "SELECT count(*) FROM alerts WHERE policy = ?1 AND day = ?2",
                        params![p.name, day],
                        |row| row.get(0),
                    )?;
                    self.today.insert(p.name.clone(), (day.clone(), n));
                    &mut self.today.get_mut(&p.name).expect("just inserted").1
                }
            };
            if spec.daily_limit != 0 && *count >= spec.daily_limit {
                continue;
            }
            *count += 1;
            let mut alert = Alert {
                id: 0,
                time: rfc3339(time_us),
                policy: p.name.clone(),
                severity: spec.severity.clone(),
                record_id: id,
                kind: facts.kind.to_string(),
                app: app.to_string(),
                user: user.to_string(),
                client_ip: r.client_ip().to_string(),
                url: url.to_string(),
                activity: activity.to_string(),
                action: facts.action.to_string(),
                file_name: r.text(Field::FileName).to_string(),
            };
            tx.execute(
                "INSERT INTO alerts (time_us, day, policy, severity, record_id, kind, app, user, client_ip, url, activity, action, file_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    time_us,
                    day,
                    alert.policy,
                    alert.severity,
                    id,
                    alert.kind,
                    alert.app,
                    alert.user,
                    alert.client_ip,
                    alert.url,
                    alert.activity,
                    alert.action,
                    alert.file_name
                ],
            )?;
            alert.id = tx.last_insert_rowid();
            self.stats.raised.fetch_add(1, Ordering::Relaxed);
            self.stats.pending.fetch_add(1, Ordering::Relaxed);
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.queue.try_send(alert)
            {
                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The delivery thread: each alert to the file, then to the webhook.
fn deliver(rx: Receiver<Alert>, sinks: Sinks, stats: Arc<AlertStats>) {
    let mut file = sinks.file.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| {
                crate::say(
                    Priority::Error,
                    &format!("controld: alert file {}: {e}", p.display()),
                    &[("PALISADE_ALERT_SINK", "file")],
                )
            })
            .ok()
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    for alert in rx {
        let json = serde_json::to_string(&alert).unwrap_or_default();
        // A file that could not be opened at start fails every alert.
        let mut delivered = sinks.file.is_none() || file.is_some();
        if let Some(f) = &mut file {
            if let Err(e) = writeln!(f, "{json}").and_then(|_| f.flush()) {
                crate::say(
                    Priority::Error,
                    &format!("controld: alert file: {e}"),
                    &[("PALISADE_ALERT_SINK", "file")],
                );
                delivered = false;
            }
        }
        if let Some(url) = &sinks.webhook {
            delivered &= with_retries("webhook", alert.id, || post(&agent, url, &json));
        }
        if let Some(mailer) = &sinks.mail {
            delivered &= with_retries("mail", alert.id, || {
                mailer.send(&alert).map_err(|e| (e.message, e.permanent))
            });
        }
        stats.pending.fetch_sub(1, Ordering::Relaxed);
        let outcome = if delivered {
            &stats.delivered
        } else {
            &stats.failed
        };
        outcome.fetch_add(1, Ordering::Relaxed);
    }
}

/// One delivery attempt: done, or why not and whether it is final.
type Attempt = Result<(), (String, bool)>;

/// Runs `attempt` until it succeeds, fails for good or [`ATTEMPTS`] ran,
/// waiting from [`FIRST_RETRY`] doubling between tries; whether the sink
/// took the alert.
fn with_retries(sink: &str, id: i64, mut attempt: impl FnMut() -> Attempt) -> bool {
    let mut wait = FIRST_RETRY;
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(()) => return true,
            Err((why, permanent)) => {
                crate::say(
                    Priority::Warning,
                    &format!("controld: alert {id}: {sink}: {why} (attempt {n}/{ATTEMPTS})"),
                    &[
                        ("PALISADE_ALERT_ID", &id.to_string()),
                        ("PALISADE_ALERT_SINK", sink),
                    ],
                );
                if permanent {
                    break;
                }
            }
        }
        if n < ATTEMPTS {
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
    crate::say(
        Priority::Error,
        &format!("controld: alert {id}: {sink} delivery given up; it stays in `controld alerts`"),
        &[
            ("PALISADE_ALERT_ID", &id.to_string()),
            ("PALISADE_ALERT_SINK", sink),
        ],
    );
    false
}

/// POSTs one alert to the webhook.
fn post(agent: &ureq::Agent, url: &str, json: &str) -> Attempt {
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(json)
    {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err((format!("answered {}", resp.status()), false)),
        Err(e) => Err((e.to_string(), false)),
    }
}
