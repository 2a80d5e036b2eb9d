//! `bench load`: an HTTP/1.1 keep-alive load generator.
//!
//! Thread-per-core like the data plane: each thread runs a glommio executor
//! owning its share of the connections and its own HdrHistogram; results
//! are merged at the end. Two modes:
//!
//! * closed loop (`--closed`): every connection sends its next request as
//!   soon as the previous response is complete — maximum throughput;
//! * open loop (`--rate R`): requests are scheduled at a constant total rate
//!   and latency is measured from each request's *intended* send time, so a
//!   stalled server is charged for the requests that queued behind it
//!   (coordinated-omission correction, as wrk2 does).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use serde::Serialize;

/// One target: where to connect and the request bytes to send.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    pub url: String,
    /// TLS: the SNI name (the Host field's host).
    pub tls: Option<ServerName<'static>>,
}

/// A load connection: TCP or TLS over it.
trait Conn: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin {}
impl<T: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> Conn for T {}

impl Target {
    /// Parses `http://host:port/path`; `host_header` overrides the Host
    /// field (to reach `<app>.<suffix>` through a proxy by IP).
    pub fn parse(url: &str, host_header: Option<&str>) -> Result<Target, String> {
        Target::parse_with(url, host_header, false)
    }

    /// [`Target::parse`]; `tls` forces TLS for an `http://` URL
    /// (`https://` URLs always use it).
    pub fn parse_with(url: &str, host_header: Option<&str>, tls: bool) -> Result<Target, String> {
        let (rest, tls, default_port) =
            match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
                (Some(r), _) => (r, tls, 80),
                (_, Some(r)) => (r, true, 443),
                _ => {
                    return Err(format!(
                        "{url}: only http:// and https:// URLs are supported"
                    ))
                }
            };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = match authority.parse() {
            Ok(a) => a,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(
                &(if authority.contains(':') {
                    authority.to_string()
                } else {
                    format!("{authority}:{default_port}")
                }),
            )
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?,
        };
        let host = host_header.unwrap_or(authority);
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: palisade-bench\r\n\r\n")
                .into_bytes();
        let tls = if tls {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
            Some(
                ServerName::try_from(name.to_string())
                    .map_err(|e| format!("{url}: TLS server name {name:?}: {e}"))?,
            )
        } else {
            None
        };
        Ok(Target {
            addr,
            request,
            url: url.to_string(),
            tls,
        })
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub targets: Vec<Target>,
    /// Total requests per second (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Print a progress line every second (on a terminal).
    pub progress: bool,
}

/// Errors by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub status: u64,
    pub parse: u64,
}

impl Errors {
    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.status += o.status;
        self.parse += o.parse;
    }
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.status + self.parse
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The result of a run (also the `--json` document).
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    pub mode: String,
    pub targets: Vec<String>,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: f64,
    /// Requests completed that were sent (open loop: scheduled) in the
    /// measured period, after the warm-up.
    pub requests: u64,
    /// Requests completed that were sent (scheduled) during the warm-up
    /// (not in the statistics).
    pub warmup_requests: u64,
    pub requests_per_s: f64,
    /// Response bytes (head and body) per second.
    pub bytes_per_s: f64,
    pub latency_us: Percentiles,
    pub errors: Errors,
}

impl LoadResult {
    pub fn render(&self) -> String {
        format!(
            "{} for {:.1} s, {} connections, {} threads\n  requests: {} ({:.0}/s), {:.1} MB/s\n  latency µs: p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.0})\n  errors: {} (connect {}, read {}, write {}, timeout {}, status {}, parse {})",
            self.mode,
            self.duration_s,
            self.connections,
            self.threads,
            self.requests,
            self.requests_per_s,
            self.bytes_per_s / 1e6,
            self.latency_us.p50,
            self.latency_us.p90,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max,
            self.latency_us.mean,
            self.errors.total(),
            self.errors.connect,
            self.errors.read,
            self.errors.write,
            self.errors.timeout,
            self.errors.status,
            self.errors.parse
        )
    }
}

/// What one thread measured.
struct ThreadResult {
    histogram: Histogram<u64>,
    requests: u64,
    warmup_requests: u64,
    bytes: u64,
    errors: Errors,
}

/// Per-connection I/O deadline.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(IO_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

/// Appends one read to `buf`; the end of the stream is an error here.
async fn read_more(
    stream: &mut dyn Conn,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), ErrorKind> {
    let n = within(stream.read(chunk))
        .await
        .map_err(ErrorKind::from_io)?;
    if n == 0 {
        return Err(ErrorKind::Read);
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads one response; returns its total size. `buf` keeps read-ahead.
async fn read_response(stream: &mut dyn Conn, buf: &mut Vec<u8>) -> Result<(u16, u64), ErrorKind> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = r.code.unwrap_or(0);
                let mut length: Option<usize> = None;
                let mut chunked = false;
                for h in r.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = true;
                    }
                }
                let body = if chunked {
                    read_chunked(stream, buf, head).await?
                } else {
                    let len = length.unwrap_or(0);
                    while buf.len() < head + len {
                        read_more(stream, buf, &mut chunk).await?;
                    }
                    buf.drain(..head + len);
                    len
                };
                return Ok((status, (head + body) as u64));
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ErrorKind::Parse),
        }
        read_more(stream, buf, &mut chunk).await?;
    }
}

async fn read_chunked(
    stream: &mut dyn Conn,
    buf: &mut Vec<u8>,
    head: usize,
) -> Result<usize, ErrorKind> {
    let mut pos = head;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((used, size))) => {
                let size = size as usize;
                if size == 0 {
                    // Trailer section: up to an empty line.
                    loop {
                        let rest = &buf[pos + used..];
                        if rest.starts_with(b"\r\n") {
                            let end = pos + used + 2;
                            buf.drain(..end);
                            return Ok(end - head);
                        }
                        if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                            let end = pos + used + i + 4;
                            buf.drain(..end);
                            return Ok(end - head);
                        }
                        read_more(stream, buf, &mut chunk).await?;
                    }
                }
                while buf.len() < pos + used + size + 2 {
                    read_more(stream, buf, &mut chunk).await?;
                }
                pos += used + size + 2;
            }
            Ok(httparse::Status::Partial) => {
                read_more(stream, buf, &mut chunk).await?;
            }
            Err(_) => return Err(ErrorKind::Parse),
        }
    }
}

#[derive(Clone, Copy)]
enum ErrorKind {
    Connect,
    Read,
    Write,
    Timeout,
    Parse,
}

impl ErrorKind {
    fn from_io(e: io::Error) -> ErrorKind {
        if e.kind() == io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Read
        }
    }
    fn count(self, errors: &mut Errors) {
        match self {
            ErrorKind::Connect => errors.connect += 1,
            ErrorKind::Read => errors.read += 1,
            ErrorKind::Write => errors.write += 1,
            ErrorKind::Timeout => errors.timeout += 1,
            ErrorKind::Parse => errors.parse += 1,
        }
    }
}

/// How long past the end an open loop still makes the sends it scheduled
/// before the end but could not make in time (a server that far behind has
/// failed the run anyway).
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(10);

/// Shared per-thread state for its connections.
struct Shared {
    result: std::cell::RefCell<ThreadResult>,
    measure_from: Instant,
    stop_at: Instant,
    progress: Arc<AtomicU64>,
}

/// One connection's loop. `interval`: open-loop spacing for this
/// connection; `first`: its first intended send time.
async fn connection(
    shared: Rc<Shared>,
    targets: Rc<Vec<Target>>,
    index: usize,
    interval: Option<Duration>,
    first: Instant,
) {
    let mut stream: Option<Box<dyn Conn>> = None;
    let tls = crate::tls::load_client_config();
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut next = index;
    let mut intended = first;
    // Every connection starts at its first slot (closed loop: all at the
    // common start), so nothing completes before measuring begins.
    let now = Instant::now();
    if first > now {
        glommio::timer::sleep(first - now).await;
    }
    loop {
        if interval.is_some() {
            let now = Instant::now();
            if intended > now {
                glommio::timer::sleep(intended - now).await;
            }
        }
        let start = match interval {
            Some(_) => intended,
            None => Instant::now(),
        };
        // Open loop: every send scheduled before the end is made, however
        // late (dropping the late ones would hide exactly the latency an
        // open loop exists to show), up to a grace period; closed loop:
        // no new request once the time is up.
        let now = Instant::now();
        let ended = match interval {
            Some(_) => start >= shared.stop_at || now >= shared.stop_at + OPEN_LOOP_GRACE,
            None => now >= shared.stop_at,
        };
        if ended {
            break;
        }
        let target = &targets[next % targets.len()];
        next += 1;
        if stream.is_none() {
            let connected = within(async {
                let tcp = TcpStream::connect(target.addr)
                    .await
                    .map_err(io::Error::from)?;
                let _ = tcp.set_nodelay(true);
                Ok(match &target.tls {
                    None => Box::new(tcp) as Box<dyn Conn>,
                    Some(name) => Box::new(
                        futures_rustls::TlsConnector::from(tls.clone())
                            .connect(name.clone(), tcp)
                            .await?,
                    ),
                })
            })
            .await;
            match connected {
                Ok(s) => {
                    buf.clear();
                    stream = Some(s);
                }
                Err(_) => {
                    ErrorKind::Connect.count(&mut shared.result.borrow_mut().errors);
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    if let Some(iv) = interval {
                        intended += iv;
                    }
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let outcome = match within(async {
            s.write_all(&target.request).await?;
            s.flush().await
        })
        .await
        {
            Err(_) => Err(ErrorKind::Write),
            Ok(()) => read_response(s.as_mut(), &mut buf).await,
        };
        let done = Instant::now();
        let mut r = shared.result.borrow_mut();
        match outcome {
            Ok((status, bytes)) => {
                // A request belongs to the period its send was scheduled
                // in (sent in, for a closed loop), whenever it completes:
                // which side of the warm-up a slow response lands on must
                // not change the count.
                if start < shared.measure_from {
                    r.warmup_requests += 1;
                } else {
                    let micros = done.saturating_duration_since(start).as_micros() as u64;
                    let _ = r.histogram.record(micros.max(1));
                    r.requests += 1;
                    r.bytes += bytes;
                    if !(200..400).contains(&status) {
                        r.errors.status += 1;
                    }
                    shared.progress.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(kind) => {
                kind.count(&mut r.errors);
                stream = None;
            }
        }
        drop(r);
        if let Some(iv) = interval {
            intended += iv;
        }
    }
}

/// Runs the load and returns the merged result.
pub fn run(config: &LoadConfig) -> Result<LoadResult, String> {
    if config.targets.is_empty() {
        return Err("no URL given".into());
    }
    let threads = config.threads.clamp(1, config.connections.max(1));
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + config.warmup;
    let stop_at = measure_from + config.duration;
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<usize> = (0..config.connections)
            .filter(|c| c % threads == t)
            .collect();
        let targets = config.targets.clone();
        let rate = config.rate;
        let total_conns = config.connections.max(1);
        let progress = progress.clone();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("bench-load{t}"))
            .io_memory(512 * 1024)
            .spawn(move || async move {
                let shared = Rc::new(Shared {
                    result: std::cell::RefCell::new(ThreadResult {
                        // 1 µs to 1 hour, 3 significant digits.
                        histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                            .expect("histogram bounds"),
                        requests: 0,
                        warmup_requests: 0,
                        bytes: 0,
                        errors: Errors::default(),
                    }),
                    measure_from,
                    stop_at,
                    progress,
                });
                let targets = Rc::new(targets);
                let mut tasks = Vec::new();
                for c in conns {
                    // Open loop: each connection carries rate/C requests per
                    // second, staggered so sends spread evenly.
                    let interval =
                        rate.map(|r| Duration::from_secs_f64(total_conns as f64 / r.max(0.001)));
                    let first = start
                        + interval.map_or(Duration::ZERO, |iv| {
                            iv.mul_f64(c as f64 / total_conns as f64)
                        });
                    tasks.push(glommio::spawn_local(connection(
                        shared.clone(),
                        targets.clone(),
                        c,
                        interval,
                        first,
                    )));
                }
                for t in tasks {
                    t.await;
                }
                let r = shared.result.borrow();
                let mut h =
                    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
                let _ = h.add(&r.histogram);
                ThreadResult {
                    histogram: h,
                    requests: r.requests,
                    warmup_requests: r.warmup_requests,
                    bytes: r.bytes,
                    errors: r.errors.clone(),
                }
            })
            .map_err(|e| format!("cannot start load thread: {e}"))?;
        handles.push(handle);
    }
    if config.progress {
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            while Instant::now() < stop_at {
                std::thread::sleep(Duration::from_secs(1));
                let now = progress.load(Ordering::Relaxed);
                let left = stop_at.saturating_duration_since(Instant::now()).as_secs();
                eprint!("\r  {} requests, {}/s, {left} s left   ", now, now - last);
                last = now;
            }
            eprintln!();
        });
    }
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?;
    let (mut requests, mut warmup_requests, mut bytes, mut errors) = (0, 0, 0, Errors::default());
    for h in handles {
        let r = h.join().map_err(|e| format!("load thread failed: {e:?}"))?;
        histogram.add(&r.histogram).map_err(|e| e.to_string())?;
        requests += r.requests;
        warmup_requests += r.warmup_requests;
        bytes += r.bytes;
        errors.add(&r.errors);
    }
    let secs = config.duration.as_secs_f64();
    Ok(LoadResult {
        mode: match config.rate {
            Some(r) => format!("open loop at {r} requests/s"),
            None => "closed loop".into(),
        },
        targets: config.targets.iter().map(|t| t.url.clone()).collect(),
        connections: config.connections,
        threads,
        duration_s: secs,
        requests,
        warmup_requests,
        requests_per_s: requests as f64 / secs,
        bytes_per_s: bytes as f64 / secs,
        latency_us: Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        },
        errors,
    })
}
