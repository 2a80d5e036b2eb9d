//! `bench` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_bench::origin::{demo_app_with_hosts, Origin, OriginConfig};

#[derive(Parser)]
#[command(name = "bench", version, about = "Palisade bench harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a named scenario against its own data plane and origin:
    /// small-page, dense-page, download, hot-swap, tls-handshake (new TLS
    /// connection per request, full and resumed), policy-heavy (1,000
    /// access policies and 100,000 IP ranges vs none), session-download (a
    /// 100 MB attachment under session policies that do not inspect it vs
    /// no policy), idle-conns, logging (small-page with logging on and off),
    /// page-load (the SaaS demo app's page in headless Chromium through
    /// the proxy vs direct), slowloris (open-loop latency of the 4 KB page
    /// alone and while 10,000 idle and 500 slowloris connections are held;
    /// each also aimed at a decoy, the machine's and harness's own cost).
    Scenario {
        name: String,
        /// Measured loads of each (page-load).
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Connections (idle-conns: 10,000 by default; load scenarios: 50).
        #[arg(long)]
        connections: Option<usize>,
        /// Measured seconds (load scenarios).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds of load before measuring (load scenarios).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Slowloris connections (slowloris).
        #[arg(long, default_value_t = 500)]
        slow: usize,
    },
    /// HTTP/1.1 keep-alive load: closed loop (maximum throughput) or open
    /// loop at a constant rate with coordinated-omission-correct latency.
    Load(LoadArgs),
    /// New-connection TLS load: connect, handshake (full or resumed), one
    /// GET, close; handshakes per second and latency percentiles.
    TlsHandshake {
        /// Server address (ip:port).
        target: SocketAddr,
        /// SNI name and Host.
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// Concurrent connections (one thread each).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Resume each connection from the previous one's session ticket.
        #[arg(long)]
        resume: bool,
        /// Offer only TLS 1.2.
        #[arg(long)]
        tls12: bool,
        /// Also write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A small OpenID Connect provider (discovery, JWKS, authorization
    /// endpoint with a login form and form_post) for tests and the demo.
    Idp {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Issuer URL (iss, and base of the endpoints) [default:
        /// http://<listen address>].
        #[arg(long)]
        issuer: Option<String>,
        /// Accept test_* parameters that produce broken tokens (tests only).
        #[arg(long)]
        test_mode: bool,
        /// Keep the signing keys in this directory across restarts.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Write the JWKS here (for a policy's jwks_file).
        #[arg(long)]
        jwks_out: Option<PathBuf>,
        /// ID token lifetime, seconds.
        #[arg(long, default_value_t = 3600)]
        token_lifetime: u64,
    },
    /// Measure `controld apply` → acks from every data-plane core for a
    /// large policy (real controld and dataplane processes).
    ApplyLatency {
        #[arg(long, default_value_t = 10_000)]
        apps: usize,
        #[arg(long, default_value_t = 100_000)]
        ip_ranges: usize,
        /// Data-plane cores.
        #[arg(long, default_value_t = 2)]
        cores: usize,
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// Measure `controld apply --fleet` to three nodes through a 3-member
    /// etcd cluster, CLI start to every core acknowledged.
    FleetApply {
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// Measure the admin console's pages over a large log store (timed
    /// from the HTTP client): the activity log's first page, one user over
    /// one day, the traffic report.
    Console {
        #[arg(long, default_value_t = 10_000_000)]
        records: usize,
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// Measure shipping one node's records to ClickHouse (records/s,
    /// controld CPU), then a fleet-wide report over ClickHouse.
    LogShip {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Rows generated in ClickHouse for the report (ten nodes').
        #[arg(long, default_value_t = 10_000_000)]
        report_rows: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Measure how many log records per second controld stores (real
    /// controld, connections acting as data-plane cores).
    LogIngest {
        #[arg(long, default_value_t = 2_000_000)]
        records: usize,
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        producers: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// controld's --log-sync: full or normal.
        #[arg(long, default_value = "full")]
        sync: String,
    },
    /// Run the demo origin app.
    Origin {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: SocketAddr,
        /// The app's main domain, used in links and cookies.
        #[arg(long, default_value = "demo.test")]
        domain: String,
        /// Serve HTTPS with this certificate chain (PEM)...
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// ...and this private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Threads (plain HTTP; one glommio executor each).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// App hosts (`h0.<domain>` … `h<N-1>.<domain>`) the dense documents
        /// reference (`/dense`, `/dense.js`, `/dense.css`, `/dense.json`;
        /// a request's `hosts=` overrides it).
        #[arg(long, default_value_t = 16)]
        hosts: usize,
        /// Which app: `demo` (pages, files, samples, dense documents) or
        /// `saas` (a multi-host app: app., static., api. and ws.<domain>).
        #[arg(long, default_value = "demo")]
        app: String,
    },
    /// A floor proxy: the least an HTTP/1.1 proxy does per request (bytes
    /// forwarded verbatim, message ends found), on one thread, over one
    /// I/O path: glommio, uring, uring-multishot or epoll.
    Floor {
        /// glommio, uring, uring-multishot or epoll.
        io: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18090")]
        listen: SocketAddr,
        /// Where to forward (plain HTTP).
        #[arg(long)]
        upstream: SocketAddr,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Scenario {
            name,
            connections,
            duration,
            warmup,
            rounds,
            slow,
        } => {
            let result = match name.as_str() {
                "idle-conns" => palisade_bench::scenario::idle_conns(connections.unwrap_or(10_000)),
                "page-load" => palisade_bench::page_load::page_load(rounds),
                "slowloris" => palisade_bench::slowloris::scenario(
                    2000.0,
                    duration,
                    connections.unwrap_or(10_000),
                    slow,
                ),
                other => {
                    let seconds =
                        |v: f64| std::time::Duration::try_from_secs_f64(v).unwrap_or_default();
                    let opts = palisade_bench::scenario::LoadScenario {
                        connections: connections.unwrap_or(50),
                        duration: seconds(duration),
                        warmup: seconds(warmup),
                    };
                    if other == "logging" {
                        palisade_bench::scenario::logging_overhead(&opts, 3)
                    } else {
                        palisade_bench::scenario::load_scenario(other, &opts)
                    }
                }
            };
            match result {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench scenario: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::TlsHandshake {
            target,
            host,
            path,
            connections,
            duration,
            warmup,
            resume,
            tls12,
            json,
        } => {
            let config = palisade_bench::handshake::HandshakeConfig {
                target,
                host,
                path,
                connections,
                duration: std::time::Duration::from_secs_f64(duration),
                warmup: std::time::Duration::from_secs_f64(warmup),
                resume,
                tls12,
            };
            match palisade_bench::handshake::run(&config) {
                Ok(r) => {
                    println!(
                        "{:.0} handshakes/s ({} in {:.1} s, {} resumed, {} errors{}); latency p50 {} us, p99 {} us, max {} us",
                        r.per_second,
                        r.handshakes,
                        r.seconds,
                        r.resumed,
                        r.errors,
                        if r.first_error.is_empty() { String::new() } else { format!(": {}", r.first_error) },
                        r.p50_us,
                        r.p99_us,
                        r.max_us
                    );
                    if let Some(path) = json {
                        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
                        if let Err(e) = std::fs::write(&path, text) {
                            eprintln!("bench tls-handshake: {}: {e}", path.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench tls-handshake: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Idp {
            listen,
            issuer,
            test_mode,
            keys,
            jwks_out,
            token_lifetime,
        } => {
            let started = palisade_bench::idp::Idp::start(palisade_bench::idp::IdpConfig {
                listen,
                issuer,
                test_mode,
                key_dir: keys,
                token_lifetime,
            });
            let idp = match started {
                Ok(idp) => idp,
                Err(e) => {
                    eprintln!("bench idp: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(path) = jwks_out {
                if let Err(e) = std::fs::write(&path, &idp.jwks) {
                    eprintln!("bench idp: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            println!("idp: listening on {} issuer {}", idp.addr, idp.issuer);
            loop {
                std::thread::park();
            }
        }
        Command::Load(args) => match load(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench load: {e}");
                ExitCode::FAILURE
            }
        },
        Command::FleetApply { rounds } => match palisade_bench::fleet::fleet_apply(rounds.max(1)) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench fleet-apply: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Console { records, rounds } => {
            match palisade_bench::console::run(records.max(1), rounds.max(1)) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench console: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::LogShip {
            records,
            report_rows,
            rounds,
        } => match palisade_bench::fleet::log_ship(records.max(1), report_rows, rounds.max(1)) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench log-ship: {e}");
                ExitCode::FAILURE
            }
        },
        Command::LogIngest {
            records,
            batch,
            producers,
            rounds,
            sync,
        } => {
            let cfg = palisade_bench::log_ingest::LogIngest {
                records,
                batch: batch.max(1),
                producers: producers.max(1),
                rounds: rounds.max(1),
                sync,
            };
            match palisade_bench::log_ingest::run(&cfg) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench log-ingest: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ApplyLatency {
            apps,
            ip_ranges,
            cores,
            rounds,
        } => {
            let cfg = palisade_bench::apply_latency::ApplyLatency {
                apps,
                ip_ranges,
                cores,
                rounds,
            };
            match palisade_bench::apply_latency::run(&cfg) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench apply-latency: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Floor {
            io,
            listen,
            upstream,
        } => {
            use palisade_bench::floor::{serve, Io};
            let Some(io) = Io::parse(&io) else {
                let names: Vec<_> = Io::ALL.iter().map(|io| io.name()).collect();
                eprintln!(
                    "bench floor: unknown I/O path {io:?} (one of {})",
                    names.join(", ")
                );
                return ExitCode::from(2);
            };
            let result = serve(io, listen, upstream, |addr| {
                println!(
                    "bench floor: {} proxy on http://{addr} to {upstream}",
                    io.name()
                );
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench floor: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Origin {
            listen,
            domain,
            tls_cert,
            tls_key,
            threads,
            hosts,
            app,
        } => {
            let handler = match app.as_str() {
                "demo" => demo_app_with_hosts(&domain, hosts.clamp(1, 4096)),
                "saas" => palisade_bench::saas::saas_app(&domain),
                other => {
                    eprintln!("bench origin: unknown app {other:?} (demo or saas)");
                    return ExitCode::FAILURE;
                }
            };
            if tls_cert.is_none() {
                let result = palisade_bench::fast_origin::serve(listen, handler, threads, |addr| {
                    println!("bench origin: serving {domain} on http://{addr}");
                });
                return match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("bench origin: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => match palisade_bench::tls::server_config_from_files(&c, &k) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("bench origin: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let config = OriginConfig {
                listen,
                handler,
                tls,
                split_writes: false,
                record: false,
            };
            match Origin::start(config) {
                Ok(origin) => {
                    println!(
                        "bench origin: serving {domain} on {scheme}://{}",
                        origin.addr()
                    );
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    eprintln!("bench origin: {listen}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `bench load` options.
#[derive(clap::Args)]
struct LoadArgs {
    /// Target URLs (http:// or https://host:port/path), used round-robin.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Open loop: total requests per second.
    #[arg(long, conflicts_with = "closed")]
    rate: Option<f64>,
    /// Closed loop: each connection sends as soon as its previous
    /// response is complete (the default when --rate is not given).
    #[arg(long)]
    closed: bool,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Load threads, one glommio executor each [default: all CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Host field to send (e.g. demo.test.proxy.test when the URL names
    /// the proxy by IP).
    #[arg(long)]
    host: Option<String>,
    /// Use TLS for every URL (https:// URLs always do); SNI is the
    /// Host field's host. The server's certificate is not verified.
    #[arg(long)]
    tls: bool,
    /// Also write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn load(a: LoadArgs) -> Result<(), String> {
    use palisade_bench::load::{run, LoadConfig, Target};
    use std::io::IsTerminal;
    let LoadArgs {
        urls,
        rate,
        connections,
        duration,
        warmup,
        threads,
        host,
        tls,
        json,
        closed: _,
    } = a;
    let targets = urls
        .iter()
        .map(|u| Target::parse_with(u, host.as_deref(), tls))
        .collect::<Result<Vec<_>, _>>()?;
    let seconds = |name: &str, v: f64| {
        std::time::Duration::try_from_secs_f64(v)
            .map_err(|_| format!("--{name} must be a number of seconds"))
    };
    if rate.is_some_and(|r| r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    let config = LoadConfig {
        targets,
        rate,
        connections: connections.max(1),
        threads: threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        duration: seconds("duration", duration)?,
        warmup: seconds("warmup", warmup)?,
        progress: std::io::stderr().is_terminal(),
    };
    let result = run(&config)?;
    println!("{}", result.render());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
