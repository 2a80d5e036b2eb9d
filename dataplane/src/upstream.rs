//! Upstream connections: plain TCP or TLS (rustls), opened with a deadline,
//! and a per-core keep-alive pool keyed by upstream address.
//!
//! The pool belongs to one core and is only touched from that core's
//! executor, so it needs no lock.

use std::borrow::Cow;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::io::{within, BufferPool, Inbound};
use crate::snapshot::{AppRoute, UpstreamRoute};

/// Read buffer per upstream connection.
pub const UPSTREAM_BUFFER: usize = 16 * 1024;

pub use crate::stream::UpstreamStream;

impl UpstreamStream {
    /// True when the socket has nothing to read and is not closed: safe to
    /// send a new request on. The readiness poll glommio arms after a short
    /// read answers without a system call: not fired as of the executor's
    /// last turn means nothing arrived since the response was read (the
    /// view nginx and HAProxy have of an idle connection through their
    /// event loops; a close after it is caught by the retry of an
    /// idempotent request, as a close after any check would be). Without
    /// an armed poll, a non-blocking `MSG_PEEK` asks the kernel.
    pub fn is_idle_and_open(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(tcp) = self.tcp() else {
            return false;
        };
        if let Some(quiet) = tcp.quiet_since_last_read() {
            return quiet;
        }
        let fd = tcp.as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: recv writes at most 1 byte into `byte`, which outlives the
        // call; the fd is owned by this stream and open.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            )
    }
}

/// A pooled connection with its read buffer.
pub type UpstreamConn = Inbound<UpstreamStream>;

/// Where to connect for one request: borrowed from the app route (no
/// allocation or reference-count traffic per request), except for Direct
/// upstreams whose address depends on the requested host.
pub struct Target<'a> {
    /// Pool key and the name shown in error pages.
    pub key: Cow<'a, str>,
    host: &'a str,
    ip: Option<IpAddr>,
    port: u16,
    tls: Option<(&'a Arc<rustls::ClientConfig>, Cow<'a, ServerName<'static>>)>,
}

impl<'a> Target<'a> {
    /// Whether the connection will be TLS (the only way to HTTP/2).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `http2`: offer `h2` by ALPN (the app may still choose HTTP/1.1).
    pub fn for_request(
        route: &'a AppRoute,
        app_host: &'a str,
        http2: bool,
    ) -> Result<Target<'a>, String> {
        match &route.upstream {
            UpstreamRoute::Fixed {
                key,
                host,
                ip,
                port,
                tls,
            } => Ok(Target {
                key: Cow::Borrowed(key),
                host,
                ip: *ip,
                port: *port,
                tls: tls
                    .as_ref()
                    .map(|(config, name)| (config.pick(http2), Cow::Borrowed(name))),
            }),
            UpstreamRoute::Direct { tls } => {
                let name = ServerName::try_from(app_host.to_string()).map_err(|e| e.to_string())?;
                Ok(Target {
                    key: Cow::Owned(format!("https://{app_host}:443")),
                    host: app_host,
                    ip: None,
                    port: 443,
                    tls: Some((tls.pick(http2), Cow::Owned(name))),
                })
            }
        }
    }
}

/// Why an upstream connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    Resolve(String),
    Connect(io::Error),
    TimedOut,
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "cannot resolve the upstream: {e}"),
            ConnectError::Connect(e) => write!(f, "cannot connect to the upstream: {e}"),
            ConnectError::TimedOut => f.write_str("connecting to the upstream timed out"),
            ConnectError::Tls(e) => write!(f, "TLS handshake with the upstream failed: {e}"),
        }
    }
}

/// Opens a new connection to `target` within `timeout` (DNS, TCP and TLS).
pub async fn connect(
    target: &Target<'_>,
    timeout: Duration,
    buffers: &Rc<BufferPool>,
) -> Result<UpstreamConn, ConnectError> {
    let deadline = Instant::now() + timeout;
    let addr = match target.ip {
        Some(ip) => SocketAddr::new(ip, target.port),
        None => {
            // getaddrinfo blocks: run it on glommio's blocking thread pool.
            let query = format!("{}:{}", target.host, target.port);
            let resolved = within(timeout, async {
                Ok(glommio::executor()
                    .spawn_blocking(move || query.to_socket_addrs().map(|mut a| a.next()))
                    .await)
            })
            .await
            .map_err(|_| ConnectError::TimedOut)?;
            match resolved {
                Ok(Some(a)) => a,
                Ok(None) => return Err(ConnectError::Resolve("no address".into())),
                Err(e) => return Err(ConnectError::Resolve(e.to_string())),
            }
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnectError::TimedOut);
    }
    let tcp = TcpStream::connect_timeout(addr, left).await.map_err(|e| {
        let e: io::Error = e.into();
        if e.kind() == io::ErrorKind::TimedOut {
            ConnectError::TimedOut
        } else {
            ConnectError::Connect(e)
        }
    })?;
    let _ = tcp.set_nodelay(true);
    let stream = match &target.tls {
        None => UpstreamStream::Plain(tcp),
        Some((config, name)) => {
            let connector = futures_rustls::TlsConnector::from(Arc::clone(config));
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let tls = within(left, connector.connect(name.clone().into_owned(), tcp))
                .await
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::TimedOut {
                        ConnectError::TimedOut
                    } else {
                        ConnectError::Tls(e)
                    }
                })?;
            UpstreamStream::Tls(Box::new(tls))
        }
    };
    Ok(Inbound::with_pooled_buffer(stream, buffers.clone()))
}

/// Idle keep-alive connections of one core, per upstream.
pub struct Pool {
    /// Keyed by upstream (names from the policy, not from clients, so a
    /// fast hash without flooding resistance is safe: one per request).
    /// Oldest first: connections are put at the back and taken from the
    /// back (the most recently used), and expire from the front, so
    /// neither step scans or shifts the list (a core proxying many
    /// concurrent exchanges keeps hundreds idle per upstream).
    idle: rustc_hash::FxHashMap<Box<str>, std::collections::VecDeque<(UpstreamConn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: rustc_hash::FxHashMap::default(),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently used idle connection to `key`, if one is fresh.
    pub fn take(&mut self, key: &str) -> Option<UpstreamConn> {
        let list = self.idle.get_mut(key)?;
        while let Some((mut conn, since)) = list.pop_back() {
            if since.elapsed() < self.idle_timeout {
                conn.reattach();
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse, unless it holds unread bytes (an upstream
    /// that sent more than the response) or the pool is full.
    pub fn put(&mut self, key: &str, mut conn: UpstreamConn) {
        if !conn.buffered().is_empty() || self.max_idle == 0 {
            return;
        }
        // An idle connection holds no read buffer (it goes back to the
        // core's upstream buffers; one grown to hold a file under
        // inspection is dropped), so idle connections cost their socket.
        conn.release_if_idle();
        let list = match self.idle.get_mut(key) {
            Some(list) => list,
            None => self.idle.entry(key.into()).or_default(),
        };
        let now = Instant::now();
        while list
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) >= self.idle_timeout)
        {
            list.pop_front();
        }
        if list.len() >= self.max_idle {
            list.pop_front();
        }
        list.push_back((conn, now));
    }
}
