//! Thread-per-core serving: one pinned glommio executor per core, each with
//! its own SO_REUSEPORT listener, routing table, upstream pool and buffers.
//! Nothing is shared between cores after start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;

use glommio::net::TcpListener;
use palisade_schema::snapshot;

use crate::control::{self, ControlConfig};
use crate::core::Core;
use crate::executor::{self, ExecutorConfig};
use crate::io::within;
use crate::limits::Limits;
use crate::proxy::serve_connection;
use crate::snapshot::{system_roots, SharedRoots, Snapshot, SnapshotError};
use crate::stream::{ClientIo, ServerTls};

/// Everything a data plane needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// HTTPS listener (certificates from the snapshot); `None`: plain only.
    pub tls_listen: Option<SocketAddr>,
    /// Executors to run, one pinned per CPU.
    pub cores: usize,
    /// CPU of each core (core i uses `cpus[i % len]`); empty: CPU i modulo
    /// the CPUs available.
    pub cpus: Vec<usize>,
    /// The snapshot to start from (every core decodes its own copy); `None`
    /// starts with no apps until controld pushes one.
    pub snapshot: Option<Arc<Vec<u8>>>,
    /// controld's socket: each core connects and takes pushed snapshots.
    pub control: Option<PathBuf>,
    /// Where pushed snapshots are kept for restarts without controld.
    pub snapshot_cache: Option<PathBuf>,
    pub limits: Limits,
    /// glommio's io memory per core (bytes), registered with each of its
    /// three io_uring rings; counts against RLIMIT_MEMLOCK (see
    /// [`crate::executor`]).
    pub io_memory: usize,
    /// Whether a core that finds locked memory taken waits for it (the
    /// run's own need fits RLIMIT_MEMLOCK; see [`crate::executor::build`]).
    pub wait_for_locked_memory: bool,
    /// Traffic and activity logging (sent to controld over `control`);
    /// `None`: off.
    pub log: Option<crate::logs::LogConfig>,
    /// The counters of each core (`cores` of them; see [`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
}

/// Why the data plane could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The snapshot given at start does not decode.
    SnapshotDecode(palisade_schema::snapshot::SnapshotError),
    /// It decodes but cannot be compiled for serving.
    SnapshotBuild(SnapshotError),
    /// Neither a snapshot nor a control socket to wait on.
    NoSnapshot,
    /// A listening socket could not be made (`what`: the step).
    Listen {
        addr: SocketAddr,
        what: &'static str,
        error: std::io::Error,
    },
    /// The bound address of a reserved port could not be read.
    NoBoundAddress,
    /// A core's thread or executor could not be started.
    Core { index: usize, error: String },
    /// A core failed while starting (`what`: its own start-up error).
    CoreStart { index: usize, what: Box<StartError> },
    /// A core stopped before saying whether it started.
    CoreLost,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::SnapshotDecode(e) => e.fmt(f),
            StartError::SnapshotBuild(e) => e.fmt(f),
            StartError::NoSnapshot => f.write_str(
                "no snapshot: give --snapshot, a --snapshot-cache holding one, or --control",
            ),
            StartError::Listen { addr, what, error } => match *what {
                "listen" => write!(f, "cannot listen on {addr}: {error}"),
                step => write!(f, "{step} {addr}: {error}"),
            },
            StartError::NoBoundAddress => f.write_str("cannot read the bound address"),
            StartError::Core { index, error } => write!(f, "cannot start core {index}: {error}"),
            StartError::CoreStart { index, what } => write!(f, "core {index}: {what}"),
            StartError::CoreLost => f.write_str("a core stopped during start-up"),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts every core and blocks until they all stop. `on_ready` runs once
/// every core listens, with the bound addresses (plain, TLS).
pub fn run(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<(), StartError> {
    // Decode once up front so a bad snapshot fails the start with a clear
    // message instead of inside a core.
    let roots: SharedRoots = Arc::new(system_roots());
    if let Some(bytes) = &config.snapshot {
        let policy = snapshot::decode(bytes).map_err(StartError::SnapshotDecode)?;
        Snapshot::build(&policy, &roots).map_err(StartError::SnapshotBuild)?;
    } else if config.control.is_none() {
        return Err(StartError::NoSnapshot);
    }

    // With port 0 every SO_REUSEPORT listener would get its own port: pick
    // one first, and hold it (bound, not listening) until the cores bind.
    let (listen, reservation) = reserve_port(config.listen)?;
    let (tls_listen, tls_reservation) = match config.tls_listen {
        Some(addr) => {
            let (a, r) = reserve_port(addr)?;
            (Some(a), r)
        }
        None => (None, None),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    let mut handles = Vec::new();
    for index in 0..config.cores.max(1) {
        let ready = ready_tx.clone();
        let bytes = config.snapshot.clone();
        let roots = roots.clone();
        let limits = config.limits.clone();
        let control = config.control.clone();
        let cache_dir = config.snapshot_cache.clone();
        let metrics = match config.metrics.cores.get(index) {
            Some(m) => m.clone(),
            None => Arc::new(crate::metrics::CoreMetrics::new(index as u32)),
        };
        let log = config.log.clone().filter(|_| config.control.is_some());
        let cores = config.cores.max(1) as u32;
        let cpu = if config.cpus.is_empty() {
            index % cpus
        } else {
            config.cpus[index % config.cpus.len()]
        };
        let executor_config = ExecutorConfig {
            index,
            cpu,
            io_memory: config.io_memory,
            wait_for_locked_memory: config.wait_for_locked_memory,
        };
        // The executor is built on its thread (it pins the thread to its
        // CPU), so that a failure reaches `ready` with its reason.
        let core_thread = move || {
            let executor = match executor::build(executor_config) {
                Ok(executor) => executor,
                Err(error) => {
                    let _ = ready.send(Err(StartError::Core { index, error }));
                    return;
                }
            };
            executor.run(async move {
                let start =
                    || -> Result<(TcpListener, Option<TcpListener>, Rc<Core>), StartError> {
                        let routes = match &bytes {
                            Some(bytes) => {
                                let policy =
                                    snapshot::decode(bytes).map_err(StartError::SnapshotDecode)?;
                                Snapshot::build(&policy, &roots)
                                    .map_err(StartError::SnapshotBuild)?
                            }
                            None => Snapshot::empty(),
                        };
                        let bind = |addr| {
                            bind_listener(addr).map_err(|error| StartError::Listen {
                                addr,
                                what: "bind",
                                error,
                            })
                        };
                        let listener = bind(listen)?;
                        let tls_listener = tls_listen.map(bind).transpose()?;
                        let mut core = Core::new(routes, limits, metrics);
                        if let Some(log) = log {
                            core = core.with_logs(crate::logs::LogShard::new(index as u32, log));
                        }
                        Ok((listener, tls_listener, Rc::new(core)))
                    };
                let (listener, tls_listener, core) = match start() {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready.send(Err(StartError::CoreStart {
                            index,
                            what: Box::new(e),
                        }));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                drop(ready);
                let awaits_first_snapshot = bytes.is_none() && control.is_some();
                if let Some(socket) = control {
                    let config = ControlConfig {
                        socket,
                        cache_dir,
                        core_index: index as u32,
                        cores,
                        roots,
                    };
                    glommio::spawn_local(control::run(core.clone(), config)).detach();
                }
                if awaits_first_snapshot {
                    // Started with neither a snapshot nor a cached one: until
                    // controld pushes the first, this core would answer
                    // every request 421. Its connections wait in the
                    // kernel's backlog instead (the listener is bound), and
                    // are served by the first policy.
                    let _ = core.snapshot_installed.acquire(1).await;
                }
                // Each connection holds a slot; at the limit, accepting
                // pauses and new connections wait in the kernel backlog.
                let slots = Rc::new(glommio::sync::Semaphore::new(
                    core.limits.max_connections.max(1) as u64,
                ));
                if let Some(tls_listener) = tls_listener {
                    let accepting =
                        accept(core.clone(), tls_listener, slots.clone(), Transport::Tls);
                    glommio::spawn_local(accepting).detach();
                }
                accept(core, listener, slots, Transport::Plain).await;
            })
        };
        let handle = std::thread::Builder::new()
            .name(format!("palisade-core{index}"))
            .spawn(core_thread)
            .map_err(|e| StartError::Core {
                index,
                error: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::CoreLost),
        }
    }
    drop(reservation);
    drop(tls_reservation);
    on_ready(listen, tls_listen);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// What a listener speaks.
#[derive(Clone, Copy)]
enum Transport {
    Plain,
    /// TLS, handshaken with the configuration of the snapshot current at
    /// accept time (so an apply rotates certificates for new connections
    /// while open ones keep theirs).
    Tls,
}

/// The accept loop of one listener of one core: each connection served
/// holds a slot. At the limit, the loop holds the one connection it
/// accepted until a slot frees, and further connections wait in the
/// kernel backlog. (A slot is taken after accepting, not before: the
/// plain and TLS listeners share the slots, and a loop that took the last
/// free slot before a client came would starve the other listener's
/// waiting client.)
async fn accept(
    core: Rc<Core>,
    listener: TcpListener,
    slots: Rc<glommio::sync::Semaphore>,
    transport: Transport,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            // Out of descriptors and the like: back off briefly instead of
            // spinning.
            Err(_) => {
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.acquire_static_permit(1).await else {
            break;
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let core = core.clone();
        core.metrics.connections_accepted.add(1);
        core.metrics.connections_open.add(1);
        glommio::spawn_local(async move {
            let _ = stream.set_nodelay(true);
            let metrics = core.metrics.clone();
            match transport {
                Transport::Plain => {
                    if core.limits.http2.cleartext
                        && crate::http2::opens_with_preface(&core, &stream).await
                    {
                        core.metrics.http2_connections.add(1);
                        crate::http2::serve_cleartext(core, stream, peer).await
                    } else {
                        serve_connection(core, ClientIo::Plain(stream), peer, false).await
                    }
                }
                Transport::Tls => match handshake(&core, stream).await {
                    Some((io, managed)) => {
                        core.metrics.tls_handshakes.add(1);
                        if io.get_ref().1.alpn_protocol() == Some(b"h2") {
                            core.metrics.http2_connections.add(1);
                            crate::http2::serve(core, io, peer, managed).await;
                        } else {
                            serve_connection(core, ClientIo::Tls(Box::new(io)), peer, managed)
                                .await;
                        }
                    }
                    None => core.metrics.tls_handshake_failures.add(1),
                },
            }
            metrics.connections_open.sub(1);
            drop(slot);
        })
        .detach();
    }
}

/// The TLS handshake of a new connection (under the header timeout);
/// `None` when there is no certificate to offer or it fails. `managed`:
/// the client certificate verifies against the device roots.
async fn handshake(core: &Core, stream: glommio::net::TcpStream) -> Option<(ServerTls, bool)> {
    let snap = core.snapshot.borrow().clone();
    let tls = snap.tls.as_ref()?;
    let config = if core.limits.http2.enabled {
        &tls.config
    } else {
        &tls.config_http1
    };
    let acceptor = futures_rustls::TlsAcceptor::from(config.clone());
    let stream = within(core.limits.header_timeout, async {
        acceptor.accept(stream).await
    })
    .await
    .ok()?;
    let managed = tls.wants_client_certificates()
        && tls.device_is_managed(stream.get_ref().1.peer_certificates());
    Some((stream, managed))
}

/// A listening socket for one core: SO_REUSEPORT so every core gets its
/// own accept queue, and SO_REUSEADDR so a restart can bind while
/// connections the previous process closed sit in TIME_WAIT (Linux only
/// allows that when both sides set it, hence not glommio's own `bind`).
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    // SAFETY: the fd is a freshly created, bound, listening TCP socket whose
    // ownership moves into the glommio listener.
    Ok(unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) })
}

fn reserve_port(addr: SocketAddr) -> Result<(SocketAddr, Option<socket2::Socket>), StartError> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share the port with another process of
        // the same user (say, a data plane left running) and silently split
        // the traffic: check with a plain bind that the port is free.
        //
        // A data plane that just exited can leave its listener behind for a
        // moment: io_uring tears a ring down asynchronously after the
        // process is gone, and the accept still armed on it keeps the socket
        // in LISTEN until then. So a port in use is retried briefly (a
        // restart) before it is reported (another server).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => return Ok((addr, None)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(StartError::Listen {
                        addr,
                        what: "listen",
                        error,
                    })
                }
            }
        }
    }
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let fail = |what| move |error| StartError::Listen { addr, what, error };
    let sock =
        socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(fail("socket for"))?;
    sock.set_reuse_port(true)
        .map_err(fail("SO_REUSEPORT for"))?;
    sock.bind(&addr.into()).map_err(fail("bind"))?;
    let bound = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or(StartError::NoBoundAddress)?;
    Ok((bound, Some(sock)))
}

/// Raises the soft open-files limit to the hard limit (every client and
/// upstream connection is a descriptor). Returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    raise_soft_limit(libc::RLIMIT_NOFILE, u64::MAX)
}

/// Raises the soft limit of `resource` toward `wanted`, at most to the hard
/// limit, when it is below. Returns the soft limit in force afterwards (0
/// when it cannot be read).
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t, wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(resource, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < wanted && lim.rlim_max > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max.min(wanted),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(resource, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}
