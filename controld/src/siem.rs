//! SIEM export: every activity record and alert in the log store, as CEF
//! (the Common Event Format SIEMs parse) inside RFC 5424 syslog messages,
//! to a syslog receiver over TLS (RFC 5425), TCP (RFC 6587 octet counting)
//! or UDP (RFC 5426).
//!
//! Delivery is at least once, from the store: one forwarder thread per
//! destination reads the rows after its mark (a file under
//! `<state-dir>/siem/`), sends them, and moves the mark only once the
//! receiver's TCP stack acknowledged every byte (the socket's send queue is
//! empty and the connection still established). A receiver that is down,
//! refuses or drops the connection delays the export; the rows stay after
//! the mark and are sent again once it is back, so a receiver may see a
//! row twice, never zero times. The one window plain syslog leaves (no
//! application-level acknowledgement exists in it) is data the receiver's
//! kernel acknowledged and its process never read; UDP has no
//! acknowledgement at all and is best effort, as syslog over UDP always is.
//!
//! A new destination starts at the end of the store: it receives what is
//! stored from then on, not the history.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use palisade_schema::systemd::Priority;
use rusqlite::Connection;

/// Rows read (and sent before one confirmation) per round.
const BATCH: i64 = 500;
/// How often an idle forwarder looks for new rows.
const POLL: Duration = Duration::from_millis(200);
/// Waits between failed attempts: from the first, doubling to the last.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long the receiver may take to acknowledge a round's bytes.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message sent over UDP (RFC 5426 §3.2: IPv4 allows 65,507
/// bytes of payload); longer ones are cut.
const MAX_DATAGRAM: usize = 65_000;
/// Syslog facility: local0 (RFC 5424 §6.2.1).
const FACILITY: u8 = 16;

/// How a destination is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Tcp,
    Udp,
    /// RELP over TCP: every message acknowledged by the receiving
    /// application ([`crate::relp`]).
    Relp,
}

/// One `--siem` destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// As given, for messages.
    pub url: String,
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// Parses `syslog+tls://HOST:PORT`, `syslog+tcp://HOST:PORT` or
    /// `syslog+udp://HOST:PORT` (an IPv6 host in brackets).
    pub fn parse(url: &str) -> Result<Destination, String> {
        let bad = |why: &str| format!("--siem {url:?}: {why}");
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected syslog+tls://HOST:PORT (or +tcp, +udp, or relp://)"))?;
        let transport = match scheme {
            "syslog+tls" => Transport::Tls,
            "syslog+tcp" => Transport::Tcp,
            "syslog+udp" => Transport::Udp,
            "relp" => Transport::Relp,
            _ => {
                return Err(bad(
                    "the scheme is syslog+tls, syslog+tcp, syslog+udp or relp",
                ))
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("a port is required (6514 is syslog over TLS)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err(bad("expected a host name or address"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be 1-65535"))?;
        Ok(Destination {
            url: url.to_string(),
            transport,
            host: host.to_string(),
            port,
        })
    }

    /// The mark file's name: the destination in characters any file
    /// system takes.
    fn mark_name(&self) -> String {
        let scheme = match self.transport {
            Transport::Tls => "tls",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Relp => "relp",
        };
        let host: String = self
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{scheme}-{host}-{}.mark", self.port)
    }
}

/// The export settings of `controld serve`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub destinations: Vec<Destination>,
    /// PEM certificates trusted for TLS destinations besides the system's.
    pub ca: Option<PathBuf>,
}

/// How far a destination has been sent: the last record and alert ids the
/// receiver acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    record: i64,
    alert: i64,
}

impl Mark {
    fn load(path: &Path) -> Option<Mark> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut mark = Mark::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("records", n)) => mark.record = n.trim().parse().ok()?,
                Some(("alerts", n)) => mark.alert = n.trim().parse().ok()?,
                _ => {}
            }
        }
        Some(mark)
    }

    /// Writes the mark so that a crash leaves the old or the new one
    /// whole: a temporary file, fsynced, renamed over the mark.
    fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("mark.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "records {}\nalerts {}", self.record, self.alert)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Starts one forwarder thread per destination. The store must exist.
pub fn start(state_dir: &Path, settings: &Settings) -> Result<Vec<Arc<Progress>>, String> {
    let mut all = Vec::new();
    if settings.destinations.is_empty() {
        return Ok(all);
    }
    let tls = if settings
        .destinations
        .iter()
        .any(|d| d.transport == Transport::Tls)
    {
        Some(Arc::new(tls_config(settings.ca.as_deref())?))
    } else {
        None
    };
    let dir = state_dir.join("siem");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let store = crate::logstore::path(state_dir);
    for dest in &settings.destinations {
        let mark_path = dir.join(dest.mark_name());
        let mark = match Mark::load(&mark_path) {
            Some(m) => m,
            None => {
                let conn = crate::logstore::open_read_only(&store)?;
                let end = |table: &str| -> Result<i64, String> {
                    conn.query_row(
                        &format!("SELECT coalesce(max(id), 0) FROM {table}"),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(|e| format!("{}: {e}", store.display()))
                };
                let m = Mark {
                    record: end("records")?,
                    alert: end("alerts")?,
                };
                m.save(&mark_path)
                    .map_err(|e| format!("{}: {e}", mark_path.display()))?;
                m
            }
        };
        let stats = Arc::new(Progress {
            url: dest.url.clone(),
            ..Progress::default()
        });
        stats.mark_record.store(mark.record, Ordering::Relaxed);
        stats.mark_alert.store(mark.alert, Ordering::Relaxed);
        all.push(stats.clone());
        let forwarder = Forwarder {
            stats,
            dest: dest.clone(),
            tls: tls.clone(),
            store: store.clone(),
            mark_path,
            mark,
            host: hostname(),
        };
        std::thread::Builder::new()
            .name("controld-siem".into())
            .spawn(move || forwarder.run())
            .map_err(|e| format!("--siem: {e}"))?;
    }
    Ok(all)
}

/// Sends one destination everything after its mark, for ever.
struct Forwarder {
    stats: Arc<Progress>,
    dest: Destination,
    tls: Option<Arc<rustls::ClientConfig>>,
    store: PathBuf,
    mark_path: PathBuf,
    mark: Mark,
    host: String,
}

/// A connection to the receiver.
enum Link {
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Tcp(TcpStream),
    Udp(UdpSocket),
    Relp(Box<crate::relp::Session>, TcpStream),
}

/// Rows read for one round: messages, and the mark once they are sent.
struct Round {
    messages: Vec<Vec<u8>>,
    next: Mark,
}

impl Forwarder {
    fn run(mut self) {
        let mut link: Option<Link> = None;
        let mut conn: Option<Connection> = None;
        let mut wait = FIRST_RETRY;
        // The failure being retried, said once until it changes.
        let mut failing = String::new();
        loop {
            let round = match self.read(&mut conn) {
                Ok(r) => r,
                Err(e) => {
                    conn = None;
                    self.trouble(&mut failing, format!("reading the log store: {e}"));
                    std::thread::sleep(MAX_RETRY);
                    continue;
                }
            };
            if round.messages.is_empty() {
                std::thread::sleep(POLL);
                continue;
            }
            match self.send(&mut link, &round.messages) {
                Ok(()) => {
                    if !failing.is_empty() {
                        crate::say(
                            Priority::Notice,
                            &format!("controld: siem {}: delivering again", self.dest.url),
                            &[("PALISADE_SIEM_DESTINATION", &self.dest.url)],
                        );
                        failing.clear();
                        self.stats.set_error("");
                    }
                    wait = FIRST_RETRY;
                    self.mark = round.next;
                    let s = &self.stats;
                    s.sent
                        .fetch_add(round.messages.len() as u64, Ordering::Relaxed);
                    s.mark_record.store(self.mark.record, Ordering::Relaxed);
                    s.mark_alert.store(self.mark.alert, Ordering::Relaxed);
                    if let Err(e) = self.mark.save(&self.mark_path) {
                        // The rows are sent again after a restart: a
                        // duplicate, never a loss.
                        crate::say(
                            Priority::Warning,
                            &format!(
                                "controld: siem {}: {}: {e}",
                                self.dest.url,
                                self.mark_path.display()
                            ),
                            &[("PALISADE_SIEM_DESTINATION", &self.dest.url)],
                        );
                    }
                    // A full round: more may be waiting.
                }
                Err(e) => {
                    link = None;
                    self.trouble(&mut failing, e);
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    fn trouble(&self, failing: &mut String, what: String) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.set_error(&what);
        if *failing != what {
            crate::say(
                Priority::Warning,
                &format!(
                    "controld: siem {}: {what}; retrying (the rows wait in the store)",
                    self.dest.url
                ),
                &[("PALISADE_SIEM_DESTINATION", &self.dest.url)],
            );
            *failing = what;
        }
    }

    /// The records and alerts after the mark, as syslog messages.
    fn read(&self, conn: &mut Option<Connection>) -> Result<Round, String> {
        if conn.is_none() {
            *conn = Some(crate::logstore::open_read_only(&self.store)?);
        }
        let conn = conn.as_ref().expect("just opened");
        let mut messages = Vec::new();
        let mut next = self.mark;
        let pid = std::process::id();
        let db = |e: rusqlite::Error| e.to_string();
        {
            let mut st = conn
                .prepare_cached(
                    "SELECT id, time_us, kind, client_ip, client_port, user, user_agent, app, host, method, url, status, bytes_up, bytes_down, duration_us, session_id, device_tags, tls, policy, action, activity, file_name, file_size, detail FROM records_view WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db)?;
            let mut rows = st.query([self.mark.record, BATCH]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let rec = RecordRow {
                    id: r.get(0).map_err(db)?,
                    time_us: r.get(1).map_err(db)?,
                    kind: r.get(2).map_err(db)?,
                    client_ip: r.get(3).map_err(db)?,
                    client_port: r.get(4).map_err(db)?,
                    user: r.get(5).map_err(db)?,
                    user_agent: r.get(6).map_err(db)?,
                    app: r.get(7).map_err(db)?,
                    host: r.get(8).map_err(db)?,
                    method: r.get(9).map_err(db)?,
                    url: r.get(10).map_err(db)?,
                    status: r.get(11).map_err(db)?,
                    bytes_up: r.get(12).map_err(db)?,
                    bytes_down: r.get(13).map_err(db)?,
                    duration_us: r.get(14).map_err(db)?,
                    session_id: r.get(15).map_err(db)?,
                    device_tags: r.get(16).map_err(db)?,
                    tls: r.get::<_, i64>(17).map_err(db)? != 0,
                    policy: r.get(18).map_err(db)?,
                    action: r.get(19).map_err(db)?,
                    activity: r.get(20).map_err(db)?,
                    file_name: r.get(21).map_err(db)?,
                    file_size: r.get(22).map_err(db)?,
                    detail: r.get(23).map_err(db)?,
                };
                next.record = rec.id;
                messages.push(syslog(
                    rec.syslog_severity(),
                    rec.time_us,
                    &self.host,
                    pid,
                    &rec.kind,
                    &rec.cef(),
                ));
            }
        }
        let mut st = conn
            .prepare_cached(
                "SELECT id, time_us, policy, severity, record_id, kind, app, user, client_ip, url, activity, action, file_name FROM alerts WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(db)?;
        let mut rows = st.query([self.mark.alert, BATCH]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let time_us: i64 = r.get(1).map_err(db)?;
            let a = AlertRow {
                time_us,
                alert: crate::alerts::Alert {
                    id: r.get(0).map_err(db)?,
                    time: crate::alerts::rfc3339(time_us),
                    policy: r.get(2).map_err(db)?,
                    severity: r.get(3).map_err(db)?,
                    record_id: r.get(4).map_err(db)?,
                    kind: r.get(5).map_err(db)?,
                    app: r.get(6).map_err(db)?,
                    user: r.get(7).map_err(db)?,
                    client_ip: r.get(8).map_err(db)?,
                    url: r.get(9).map_err(db)?,
                    activity: r.get(10).map_err(db)?,
                    action: r.get(11).map_err(db)?,
                    file_name: r.get(12).map_err(db)?,
                },
            };
            next.alert = a.alert.id;
            messages.push(syslog(
                a.syslog_severity(),
                a.time_us,
                &self.host,
                pid,
                "alert",
                &a.cef(),
            ));
        }
        Ok(Round { messages, next })
    }

    /// Sends a round and waits until the receiver acknowledged it.
    fn send(&self, link: &mut Option<Link>, messages: &[Vec<u8>]) -> Result<(), String> {
        // A connection the receiver closed since the last round takes
        // writes into the void: reconnect first.
        if link.as_ref().is_some_and(|l| l.peer_closed()) {
            *link = None;
        }
        if link.is_none() {
            *link = Some(self.connect()?);
        }
        let l = link.as_mut().expect("just connected");
        l.send(messages)?;
        l.confirm()
    }

    fn connect(&self) -> Result<Link, String> {
        let addrs: Vec<_> = (self.dest.host.as_str(), self.dest.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", self.dest.host))?
            .collect();
        let mut last = format!("{} has no address", self.dest.host);
        for addr in addrs {
            if self.dest.transport == Transport::Udp {
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(local).map_err(|e| format!("udp socket: {e}"))?;
                match sock.connect(addr) {
                    Ok(()) => return Ok(Link::Udp(sock)),
                    Err(e) => last = format!("connecting to {addr}: {e}"),
                }
                continue;
            }
            let tcp = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(s) => s,
                Err(e) => {
                    last = format!("connecting to {addr}: {e}");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tcp.set_write_timeout(Some(IO_TIMEOUT))
                .and_then(|_| tcp.set_read_timeout(Some(IO_TIMEOUT)))
                .map_err(|e| e.to_string())?;
            if self.dest.transport == Transport::Relp {
                let probe = tcp.try_clone().map_err(|e| e.to_string())?;
                let session = crate::relp::Session::open(tcp)
                    .map_err(|e| format!("opening a RELP session with {addr}: {e}"))?;
                return Ok(Link::Relp(Box::new(session), probe));
            }
            let Some(tls) = &self.tls else {
                return Ok(Link::Tcp(tcp));
            };
            let name = rustls::pki_types::ServerName::try_from(self.dest.host.clone())
                .map_err(|e| format!("{}: {e}", self.dest.host))?;
            let client = rustls::ClientConnection::new(tls.clone(), name)
                .map_err(|e| format!("TLS: {e}"))?;
            let mut stream = rustls::StreamOwned::new(client, tcp);
            // The handshake now, so that a certificate problem is reported
            // as one and not as a failed write.
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
            }
            return Ok(Link::Tls(Box::new(stream)));
        }
        Err(last)
    }
}

impl Link {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Link::Tls(s) => Some(&s.sock),
            Link::Tcp(s) => Some(s),
            Link::Relp(_, s) => Some(s),
            Link::Udp(_) => None,
        }
    }

    /// Whether the receiver shut the connection down (FIN or RST seen).
    fn peer_closed(&self) -> bool {
        let Some(tcp) = self.tcp() else { return false };
        let mut p = libc::pollfd {
            fd: tcp.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n < 0 || p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    fn send(&mut self, messages: &[Vec<u8>]) -> Result<(), String> {
        let failed = |e: std::io::Error| format!("sending: {e}");
        match self {
            // RFC 6587 §3.4.1 / RFC 5425 §4.3: each message preceded by its
            // length in octets and a space.
            Link::Tls(s) => {
                for m in messages {
                    write!(s, "{} ", m.len()).map_err(failed)?;
                    s.write_all(m).map_err(failed)?;
                }
                s.flush().map_err(failed)
            }
            Link::Tcp(s) => {
                let mut framed = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                for m in messages {
                    let _ = write!(framed, "{} ", m.len());
                    framed.extend_from_slice(m);
                }
                s.write_all(&framed).map_err(failed)
            }
            // Returns once the receiver answered every message.
            Link::Relp(session, _) => session.send_all(messages).map_err(|e| e.to_string()),
            // RFC 5426 §3.1: one message per datagram.
            Link::Udp(s) => {
                for m in messages {
                    s.send(&m[..m.len().min(MAX_DATAGRAM)]).map_err(failed)?;
                }
                Ok(())
            }
        }
    }

    /// Waits until the receiver's TCP acknowledged every byte sent, on a
    /// connection still established.
    fn confirm(&self) -> Result<(), String> {
        // RELP's answers already confirmed the round.
        if matches!(self, Link::Relp(..)) {
            return Ok(());
        }
        let Some(tcp) = self.tcp() else { return Ok(()) };
        let fd = tcp.as_raw_fd();
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        loop {
            if self.peer_closed() || tcp_state(fd) != Some(TCP_ESTABLISHED) {
                return Err("the receiver closed the connection".into());
            }
            let mut queued: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int: bytes sent and not yet
            // acknowledged, or not yet sent.
            if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
                return Err(format!("TIOCOUTQ: {}", std::io::Error::last_os_error()));
            }
            if queued == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{queued} bytes not acknowledged in {}s",
                    CONFIRM_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `TCP_ESTABLISHED` of the kernel's TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;

/// The TCP state of a socket (`tcpi_state`), if it can be read.
fn tcp_state(fd: i32) -> Option<u8> {
    // SAFETY: tcp_info is plain data; the kernel writes at most `len`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.tcpi_state)
}

/// The client configuration for TLS destinations: the system's roots and
/// the `--siem-ca` certificates.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| format!("--siem-ca {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("--siem-ca {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--siem-ca {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "--siem-ca {}: no PEM certificate in it",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// This machine's name for the syslog header (RFC 5424 §6.2.4: printable
/// US-ASCII, at most 255 characters; `-` when unknown).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer's length is passed; the name is NUL-terminated
    // when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if rc != 0 || name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
/// STRUCTURED-DATA MSG`, without structured data, the CEF text as MSG.
pub fn syslog(severity: u8, time_us: i64, host: &str, pid: u32, msgid: &str, msg: &str) -> Vec<u8> {
    let pri = FACILITY as u32 * 8 + severity as u32;
    let time = crate::alerts::rfc3339(time_us);
    format!("<{pri}>1 {time} {host} palisade {pid} {msgid} - {msg}").into_bytes()
}

/// A CEF header field (`|` and `\` escaped; no line breaks).
fn header(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Appends ` key=value` to a CEF extension (`\`, `=` and line breaks
/// escaped); empty values are left out.
fn ext(out: &mut String, key: &str, v: &str) {
    if v.is_empty() {
        return;
    }
    if !out.ends_with('|') {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `CEF:0|Palisade|Palisade|VERSION|CLASS|NAME|SEVERITY|`: the extension
/// follows.
fn cef_start(class: &str, name: &str, severity: u8) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("CEF:0|Palisade|Palisade|");
    header(&mut out, env!("CARGO_PKG_VERSION"));
    out.push('|');
    header(&mut out, class);
    out.push('|');
    header(&mut out, name);
    out.push('|');
    out.push_str(&severity.to_string());
    out.push('|');
    out
}

/// One stored record.
pub struct RecordRow {
    pub id: i64,
    pub time_us: i64,
    pub kind: String,
    pub client_ip: String,
    pub client_port: i64,
    pub user: String,
    pub user_agent: String,
    pub app: String,
    pub host: String,
    pub method: String,
    pub url: String,
    pub status: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub duration_us: i64,
    pub session_id: String,
    pub device_tags: String,
    pub tls: bool,
    pub policy: String,
    pub action: String,
    pub activity: String,
    pub file_name: String,
    pub file_size: i64,
    pub detail: String,
}

impl RecordRow {
    /// CEF severity (0–10): blocked requests stand out.
    fn cef_severity(&self) -> u8 {
        match self.action.as_str() {
            "block" => 7,
            "protect" => 5,
            _ => 3,
        }
    }

    /// Syslog severity: notice for blocked, informational otherwise.
    fn syslog_severity(&self) -> u8 {
        if self.action == "block" {
            5
        } else {
            6
        }
    }

    /// The record in CEF: standard keys where CEF has one (rt, src, spt,
    /// suser, request, requestMethod, dhost, act, in, out, fname, fsize,
    /// requestClientApplication, msg), labelled custom fields for the
    /// rest (app, policy, activity, HTTP status, duration, device tags).
    pub fn cef(&self) -> String {
        let name = if self.activity.is_empty() {
            format!("{} {}", self.kind, self.action)
        } else {
            format!("{} {}", self.activity, self.action)
        };
        let mut out = cef_start(&self.kind, &name, self.cef_severity());
        ext(&mut out, "rt", &(self.time_us / 1000).to_string());
        ext(&mut out, "externalId", &self.id.to_string());
        ext(&mut out, "src", &self.client_ip);
        ext(&mut out, "spt", &self.client_port.to_string());
        ext(&mut out, "suser", &self.user);
        ext(&mut out, "dhost", &self.host);
        ext(&mut out, "app", if self.tls { "HTTPS" } else { "HTTP" });
        ext(&mut out, "requestMethod", &self.method);
        ext(&mut out, "request", &self.url);
        ext(&mut out, "requestClientApplication", &self.user_agent);
        ext(&mut out, "act", &self.action);
        ext(&mut out, "in", &self.bytes_up.to_string());
        ext(&mut out, "out", &self.bytes_down.to_string());
        ext(&mut out, "fname", &self.file_name);
        if self.file_size > 0 || !self.file_name.is_empty() {
            ext(&mut out, "fsize", &self.file_size.to_string());
        }
        ext(&mut out, "cs1Label", "app");
        ext(&mut out, "cs1", &self.app);
        if !self.policy.is_empty() {
            ext(&mut out, "cs2Label", "policy");
            ext(&mut out, "cs2", &self.policy);
        }
        if !self.activity.is_empty() {
            ext(&mut out, "cs3Label", "activity");
            ext(&mut out, "cs3", &self.activity);
        }
        if !self.device_tags.is_empty() {
            ext(&mut out, "cs4Label", "deviceTags");
            ext(&mut out, "cs4", &self.device_tags);
        }
        if !self.session_id.is_empty() {
            ext(&mut out, "cs5Label", "session");
            ext(&mut out, "cs5", &self.session_id);
        }
        ext(&mut out, "cn1Label", "httpStatus");
        ext(&mut out, "cn1", &self.status.to_string());
        ext(&mut out, "cn2Label", "durationMicroseconds");
        ext(&mut out, "cn2", &self.duration_us.to_string());
        ext(&mut out, "msg", &self.detail);
        out
    }
}

/// One stored alert, with its time in microseconds for `rt`.
pub struct AlertRow {
    pub time_us: i64,
    pub alert: crate::alerts::Alert,
}

impl AlertRow {
    fn cef_severity(&self) -> u8 {
        match self.alert.severity.as_str() {
            "high" => 8,
            "medium" => 6,
            _ => 4,
        }
    }

    /// Syslog severity: critical, error or warning.
    fn syslog_severity(&self) -> u8 {
        match self.alert.severity.as_str() {
            "high" => 2,
            "medium" => 3,
            _ => 4,
        }
    }

    /// The alert in CEF; `cn3` is the record that raised it (its
    /// `externalId`).
    pub fn cef(&self) -> String {
        let name = format!("alert: {}", self.alert.policy);
        let mut out = cef_start("alert", &name, self.cef_severity());
        ext(&mut out, "rt", &(self.time_us / 1000).to_string());
        ext(&mut out, "externalId", &self.alert.id.to_string());
        ext(&mut out, "src", &self.alert.client_ip);
        ext(&mut out, "suser", &self.alert.user);
        ext(&mut out, "request", &self.alert.url);
        ext(&mut out, "act", &self.alert.action);
        ext(&mut out, "fname", &self.alert.file_name);
        ext(&mut out, "cs1Label", "app");
        ext(&mut out, "cs1", &self.alert.app);
        ext(&mut out, "cs2Label", "policy");
        ext(&mut out, "cs2", &self.alert.policy);
        if !self.alert.activity.is_empty() {
            ext(&mut out, "cs3Label", "activity");
            ext(&mut out, "cs3", &self.alert.activity);
        }
        ext(&mut out, "cs6Label", "severity");
        ext(&mut out, "cs6", &self.alert.severity);
        ext(&mut out, "cs4Label", "kind");
        ext(&mut out, "cs4", &self.alert.kind);
        ext(&mut out, "cn3Label", "recordId");
        ext(&mut out, "cn3", &self.alert.record_id.to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_bad_ones_say_why() {
        let d = Destination::parse("syslog+tls://siem.example:6514").unwrap();
        assert_eq!(
            (d.transport, d.host.as_str(), d.port),
            (Transport::Tls, "siem.example", 6514)
        );
        let d = Destination::parse("syslog+udp://[::1]:514").unwrap();
        assert_eq!(
            (d.transport, d.host.as_str(), d.port),
            (Transport::Udp, "::1", 514)
        );
        assert_eq!(d.mark_name(), "udp-__1-514.mark");
        for bad in [
            "syslog://h:1",
            "syslog+tcp://h",
            "syslog+tcp://h:0",
            "syslog+tcp://:5",
            "h:5",
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert!(e.starts_with("--siem"), "{bad}: {e}");
        }
    }

    #[test]
    fn cef_escapes_what_would_split_a_field() {
        let mut out = cef_start("tr|affic", "a\\b", 3);
        ext(&mut out, "request", "http://x/?a=b\nc\\d");
        assert_eq!(
            out,
            format!(
                "CEF:0|Palisade|Palisade|{}|tr\\|affic|a\\\\b|3|request=http://x/?a\\=b\\nc\\\\d",
                env!("CARGO_PKG_VERSION")
            )
        );
        let m = syslog(6, 1_000_000, "node1", 42, "traffic", &out);
        assert!(String::from_utf8(m)
            .unwrap()
            .starts_with("<134>1 1970-01-01T00:00:01.000000Z node1 palisade 42 traffic - CEF:0|"));
    }

    #[test]
    fn a_mark_survives_being_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mark");
        assert_eq!(Mark::load(&path), None);
        let m = Mark {
            record: 41,
            alert: 7,
        };
        m.save(&path).unwrap();
        assert_eq!(Mark::load(&path), Some(m));
    }
}
