//! E-mailed alerts: one plain-text message per alert through an SMTP
//! relay (lettre), over STARTTLS (RFC 3207, the default), implicit TLS
//! (RFC 8314) or, on a trusted network only, in clear; with SMTP AUTH
//! (RFC 4954) when a credentials file is given. The alert delivery thread
//! calls [`Mailer::send`] and retries it like the webhook.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::alerts::Alert;

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS; refused if the relay does
    /// not offer it.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on the same host or a trusted network.
    None,
}

impl Security {
    pub fn parse(s: &str) -> Result<Security, String> {
        match s {
            "starttls" => Ok(Security::StartTls),
            "tls" => Ok(Security::Tls),
            "none" => Ok(Security::None),
            _ => Err(format!(
                "--alert-smtp-security {s:?}: expected starttls, tls or none"
            )),
        }
    }
}

/// The `--alert-smtp*` settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// A file holding `USER:PASSWORD` on its first line.
    pub credentials: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    /// PEM CA certificates trusted besides the system's.
    pub ca: Option<PathBuf>,
}

/// Sends alert mails.
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
    relay: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Why a send failed, and whether trying again can help (a 5xx answer such
/// as an unknown recipient cannot).
pub struct SendError {
    pub message: String,
    pub permanent: bool,
}

impl Mailer {
    /// Checks the settings (addresses, credentials file, CA) and builds
    /// the transport; nothing is sent yet.
    pub fn new(s: &Settings) -> Result<Mailer, String> {
        let mailbox = |flag: &str, a: &str| -> Result<Mailbox, String> {
            a.parse::<Mailbox>()
                .map_err(|e| format!("{flag} {a:?}: not an e-mail address ({e})"))
        };
        let from = mailbox("--alert-smtp-from", &s.from)?;
        if s.to.is_empty() {
            return Err("--alert-smtp needs at least one --alert-smtp-to".into());
        }
        let to =
            s.to.iter()
                .map(|a| mailbox("--alert-smtp-to", a))
                .collect::<Result<Vec<_>, _>>()?;
        let mut builder = SmtpTransport::builder_dangerous(s.host.as_str())
            .port(s.port)
            .timeout(Some(Duration::from_secs(20)));
        if s.security != Security::None {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("--alert-smtp-ca {}: {e}", ca.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("--alert-smtp-ca {}: {e}", ca.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("--alert-smtp TLS: {e}"))?;
            builder = builder.tls(match s.security {
                Security::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some(path) = &s.credentials {
            builder = builder.credentials(read_credentials(path)?);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            to,
            relay: format!("{}:{}", s.host, s.port),
        })
    }

    /// Sends one alert (one connection per alert: alerts are rare, and a
    /// relay that dropped an idle connection costs nothing).
    pub fn send(&self, alert: &Alert) -> Result<(), SendError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(body(alert)).map_err(|e| SendError {
            message: format!("composing the mail: {e}"),
            permanent: true,
        })?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| SendError {
                message: format!("{}: {e}", self.relay),
                permanent: e.is_permanent(),
            })
    }
}

/// `USER:PASSWORD` from the first line of `path`, which must not be
/// readable by everyone.
fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let bad = |why: String| format!("--alert-smtp-credentials {}: {why}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(bad(
            "readable by every user; make it 0600 or 0640 (chmod o-rwx)".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let line = text.lines().next().unwrap_or("");
    let (user, password) = line
        .split_once(':')
        .filter(|(u, _)| !u.is_empty())
        .ok_or_else(|| bad("expected USER:PASSWORD on the first line".into()))?;
    Ok(Credentials::new(user.to_string(), password.to_string()))
}

/// `[Palisade] high alert: POLICY (USER)`.
pub fn subject(a: &Alert) -> String {
    let who = if a.user.is_empty() {
        a.client_ip.as_str()
    } else {
        a.user.as_str()
    };
    format!("[Palisade] {} alert: {} ({who})", a.severity, a.policy)
}

/// The alert, one field per line.
pub fn body(a: &Alert) -> String {
    let mut out = String::new();
    for (name, value) in [
        ("Policy", a.policy.as_str()),
        ("Severity", a.severity.as_str()),
        ("Time", a.time.as_str()),
        ("User", a.user.as_str()),
        ("Client IP", a.client_ip.as_str()),
        ("App", a.app.as_str()),
        ("URL", a.url.as_str()),
        ("Activity", a.activity.as_str()),
        ("Action", a.action.as_str()),
        ("File", a.file_name.as_str()),
        ("Kind", a.kind.as_str()),
    ] {
        if !value.is_empty() {
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    out.push_str(&format!(
        "Alert: {} (record {})\n\n`controld alerts` on the node lists it; `controld logs export` has the record.\n",
        a.id, a.record_id
    ));
    out
}
