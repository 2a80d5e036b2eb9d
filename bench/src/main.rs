//! `bench` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_bench::origin::{demo_app, Origin, OriginConfig};

#[derive(Parser)]
#[command(name = "bench", version, about = "Palisade bench harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
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
        Command::Origin {
            listen,
            domain,
            tls_cert,
            tls_key,
        } => {
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
                handler: demo_app(&domain),
                tls,
                split_writes: false,
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
