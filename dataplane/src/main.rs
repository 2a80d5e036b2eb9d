//! `dataplane` command line: loads a snapshot and serves it on every core.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use palisade_dataplane::executor;
use palisade_dataplane::limits::{Http2Limits, Limits};
use palisade_dataplane::logs::LogConfig;
use palisade_dataplane::metrics::{exporter, Metrics};
use palisade_dataplane::server::{self, ServerConfig};

/// mimalloc rather than the C library's allocator: an HTTP/2 stream
/// allocates and frees its task, stream state and head copies per
/// request, and glibc's bins cost the data plane about 8% of its CPU there
/// (mimalloc about 3.5%; BENCHMARKS.md, "HTTP/2"). Its per-thread heaps
/// suit the thread-per-core model: a core's frees stay on its own heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dataplane",
    version,
    about = "Palisade data plane: session-control reverse proxy"
)]
struct Args {
    /// Policy snapshot written by `controld compile`. With
    /// --snapshot-cache, the newer of this and the cache's newest is used.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// controld's control socket: every core connects, reports its version
    /// and installs the snapshots controld pushes.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Directory keeping pushed snapshots, so a restart without controld
    /// serves the newest one.
    #[arg(long)]
    snapshot_cache: Option<PathBuf>,
    /// Address for plain HTTP/1.1 (e.g. 0.0.0.0:8080; port 0 picks one).
    #[arg(long)]
    listen: SocketAddr,
    /// Address for HTTPS (TLS 1.2/1.3, ALPN http/1.1); certificates come
    /// from the snapshot, chosen by SNI, and rotate with each apply.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// Cores to serve on, one pinned executor each [default: all CPUs].
    #[arg(long)]
    cores: Option<usize>,
    /// CPUs to pin the cores to, in order (e.g. `1` or `0,2`); core i uses
    /// entry i modulo the list [default: 0, 1, 2, …].
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// glommio's io memory per core, KiB: buffers for its direct file I/O,
    /// which the data plane does not use (sockets read into their own
    /// buffers). Registered with each of a core's three io_uring rings, so
    /// 3 × this per core counts against RLIMIT_MEMLOCK; 64 is glommio's
    /// floor.
    #[arg(long, default_value_t = 64)]
    io_memory_kib: usize,
    /// Longest request line, bytes (over: 414).
    #[arg(long, default_value_t = Limits::default().max_request_line)]
    max_request_line: usize,
    /// Largest request header section, bytes (over: 431).
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most header fields per request, at most 256 (over: 431).
    #[arg(long, default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Seconds to receive a whole request head (over: 408).
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Seconds a keep-alive connection may idle between requests.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// Seconds allowed between two reads of a body.
    #[arg(long, default_value_t = Limits::default().body_timeout.as_secs_f64())]
    body_timeout: f64,
    /// Seconds to connect to an upstream, TLS included (over: 504).
    #[arg(long, default_value_t = Limits::default().connect_timeout.as_secs_f64())]
    connect_timeout: f64,
    /// Seconds to wait for an upstream's response head (over: 504).
    #[arg(long, default_value_t = Limits::default().response_timeout.as_secs_f64())]
    response_timeout: f64,
    /// Largest upstream response header section, bytes (over: 502).
    #[arg(long, default_value_t = Limits::default().max_response_header_bytes)]
    max_response_header_bytes: usize,
    /// Idle upstream connections kept per upstream and core.
    #[arg(long, default_value_t = Limits::default().pool_max_idle)]
    pool_max_idle: usize,
    /// Client connections served at once per core (more wait in the
    /// accept queue).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds an Upgrade tunnel (WebSocket) may carry no byte either way.
    #[arg(long, default_value_t = Limits::default().tunnel_idle_timeout.as_secs_f64())]
    tunnel_idle_timeout: f64,
    /// Seconds an idle upstream connection is kept.
    #[arg(long, default_value_t = Limits::default().pool_idle_timeout.as_secs_f64())]
    pool_idle_timeout: f64,
    /// Forward response bodies without the rewrite engine. For measuring
    /// the engine's cost only: users then leave the proxied session on the
    /// first absolute link.
    #[arg(long)]
    no_body_rewrite: bool,
    /// Offer HTTP/2 (ALPN h2) on the TLS listener: on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    http2: String,
    /// Offer HTTP/2 (ALPN h2) to HTTPS apps and use it where they choose
    /// it: on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    upstream_http2: String,
    /// Cleartext HTTP/2 with prior knowledge on the plain listener (a
    /// connection that opens with the HTTP/2 preface): on or off.
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    h2c: String,
    /// HTTP/2: streams open at once per connection.
    #[arg(long, default_value_t = Http2Limits::default().max_streams)]
    h2_max_streams: u32,
    /// HTTP/2: receive window per stream, bytes (request body buffered
    /// ahead of the app).
    #[arg(long, default_value_t = Http2Limits::default().stream_window)]
    h2_stream_window: u32,
    /// HTTP/2: receive window per connection, bytes.
    #[arg(long, default_value_t = Http2Limits::default().connection_window)]
    h2_connection_window: u32,
    /// HTTP/2: response bytes queued per stream ahead of the client's
    /// window.
    #[arg(long, default_value_t = Http2Limits::default().send_buffer)]
    h2_send_buffer: usize,
    /// HTTP/2: streams a client may reset before their response is whole
    /// (leaking a tenth per second); past it, GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, default_value_t = Http2Limits::default().max_resets)]
    h2_max_resets: u32,
    /// Do not log requests (logging is on whenever --control is given).
    #[arg(long)]
    no_log: bool,
    /// Directory for log batches controld has not acknowledged once the
    /// memory budget is full [default: <snapshot-cache>/logs].
    #[arg(long)]
    log_spill_dir: Option<PathBuf>,
    /// Unacknowledged log batches kept in memory per core, KiB.
    #[arg(long, default_value_t = 32 * 1024)]
    log_memory_kib: u64,
    /// Log spill files per core, MiB (past memory and disk, records are
    /// dropped and counted).
    #[arg(long, default_value_t = 1024)]
    log_disk_mib: u64,
    /// Records per log batch.
    #[arg(long, default_value_t = 1024)]
    log_batch_records: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9464). Unauthenticated, as Prometheus expects: bind it to
    /// loopback or a management network.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{name} must be a positive number of seconds"))
}

fn main() -> ExitCode {
    // A file-size limit (RLIMIT_FSIZE) makes a write fail with EFBIG, like
    // a full disk, instead of killing the process: a spill file that
    // cannot be written is a batch dropped and counted, never a crash.
    // SAFETY: setting a signal's disposition to ignore, before any thread
    // starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let a = Args::parse();
    match start(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            palisade_dataplane::say!("dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(a: Args) -> Result<(), String> {
    let limits = Limits {
        max_request_line: a.max_request_line,
        max_header_bytes: a.max_header_bytes,
        max_headers: a.max_headers.clamp(1, 256),
        header_timeout: seconds("header-timeout", a.header_timeout)?,
        idle_timeout: seconds("idle-timeout", a.idle_timeout)?,
        body_timeout: seconds("body-timeout", a.body_timeout)?,
        connect_timeout: seconds("connect-timeout", a.connect_timeout)?,
        response_timeout: seconds("response-timeout", a.response_timeout)?,
        max_response_header_bytes: a.max_response_header_bytes,
        pool_max_idle: a.pool_max_idle,
        pool_idle_timeout: seconds("pool-idle-timeout", a.pool_idle_timeout)?,
        max_connections: a.max_connections.max(1),
        tunnel_idle_timeout: seconds("tunnel-idle-timeout", a.tunnel_idle_timeout)?,
        rewrite_bodies: !a.no_body_rewrite,
        http2: Http2Limits {
            enabled: a.http2 == "on",
            upstream: a.upstream_http2 == "on",
            cleartext: a.h2c == "on",
            max_streams: a.h2_max_streams.max(1),
            // RFC 9113 §6.5.2: windows above 2^31-1 are a protocol error.
            stream_window: a.h2_stream_window.clamp(65_535, (1 << 31) - 1),
            connection_window: a.h2_connection_window.clamp(65_535, (1 << 31) - 1),
            send_buffer: a.h2_send_buffer.clamp(16 * 1024, u32::MAX as usize),
            max_resets: a.h2_max_resets.max(1),
        },
    };
    if a.no_body_rewrite {
        palisade_dataplane::say!(
            "dataplane: --no-body-rewrite: response bodies are NOT rewritten (measurement mode)"
        );
    }
    let given = match &a.snapshot {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let version = palisade_schema::snapshot::decode(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .version;
            Some((version, bytes, path.display().to_string()))
        }
        None => None,
    };
    let cached = a
        .snapshot_cache
        .as_deref()
        .and_then(palisade_dataplane::control::cache_newest)
        .map(|(v, bytes)| (v, bytes, "the snapshot cache".to_string()));
    let initial = match (given, cached) {
        (Some(g), Some(c)) => Some(if c.0 > g.0 { c } else { g }),
        (g, c) => g.or(c),
    };
    let source = initial
        .as_ref()
        .map(|(v, _, from)| format!("snapshot version {v} from {from}"))
        .unwrap_or_else(|| "no snapshot yet (waiting for controld)".into());
    let cores = a.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let io_memory = a.io_memory_kib.max(64) * 1024;
    let nofile = server::raise_nofile();
    let wanted = (cores * limits.max_connections) as u64;
    if nofile < wanted {
        palisade_dataplane::say!(
            "dataplane: note: open-files limit is {nofile}, below {cores} cores × --max-connections {}; accepts fail beyond it",
            limits.max_connections
        );
    }
    let per_core = executor::locked_bytes_per_core(io_memory);
    let memlock = executor::ensure_memlock(cores as u64 * per_core);
    let fits = memlock >= cores as u64 * per_core;
    if !fits {
        palisade_dataplane::say!(
            "dataplane: note: RLIMIT_MEMLOCK is {} KiB, below {cores} cores × ~{} KiB of io_uring rings and io memory; cores that do not fit fail to start",
            memlock / 1024,
            per_core / 1024,
        );
    }
    let metrics = Metrics::new(cores);
    let metrics_line = match a.metrics {
        Some(addr) => match exporter::spawn(addr, metrics.clone()) {
            Ok(bound) => format!("; metrics on http://{bound}/metrics"),
            Err(e) => return Err(format!("--metrics {addr}: {e}")),
        },
        None => String::new(),
    };
    let config = ServerConfig {
        listen: a.listen,
        tls_listen: a.tls_listen,
        cores,
        cpus: a.cpus.clone(),
        snapshot: initial.map(|(_, bytes, _)| Arc::new(bytes)),
        control: a.control.clone(),
        snapshot_cache: a.snapshot_cache.clone(),
        limits,
        io_memory,
        wait_for_locked_memory: fits,
        log: (!a.no_log).then(|| LogConfig {
            batch_records: a.log_batch_records.max(1),
            memory_budget: (a.log_memory_kib << 10) as usize,
            spill_dir: a
                .log_spill_dir
                .clone()
                .or_else(|| a.snapshot_cache.as_ref().map(|d| d.join("logs"))),
            disk_budget: a.log_disk_mib << 20,
        }),
        metrics,
    };
    // SIGTERM / SIGINT: cores write their unacknowledged log batches to
    // disk before the process exits.
    let logging_cores = if config.log.is_some() && config.control.is_some() {
        cores
    } else {
        0
    };
    palisade_dataplane::shutdown::install(logging_cores);
    server::run(config, |addr, tls| {
        match tls {
            Some(tls) => println!(
                "dataplane: listening on {addr} ({cores} cores, {source}); https on {tls}{metrics_line}"
            ),
            None => {
                println!("dataplane: listening on {addr} ({cores} cores, {source}){metrics_line}")
            }
        }
        // Type=notify: systemd counts the service started from here.
        palisade_schema::systemd::notify_ready();
    })
    .map_err(|e| e.to_string())
}
