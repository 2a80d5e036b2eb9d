//! `controld` command line: the daemon and the operator commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use palisade_controld::{client, commands, server, socket};

/// Default control socket.
const DEFAULT_SOCKET: &str = "/run/palisade/control.sock";

#[derive(Parser)]
#[command(
    name = "controld",
    version,
    about = "Palisade control daemon and operator CLI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: compile the policy, keep the snapshot history, serve
    /// the control socket to data planes and operators.
    Serve {
        /// Policy source (TOML) to start with.
        #[arg(long)]
        policy: PathBuf,
        /// Control socket path.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Directory for the snapshot history.
        #[arg(long)]
        state_dir: PathBuf,
        /// Group whose members may use the socket (mode 0660 instead of 0600).
        #[arg(long)]
        socket_group: Option<String>,
        /// Further user ids allowed on the socket (the daemon's own uid and
        /// root always are).
        #[arg(long = "allow-uid")]
        allow_uids: Vec<u32>,
        /// Seconds `apply` waits for every core to acknowledge.
        #[arg(long, default_value_t = 5.0)]
        ack_timeout: f64,
    },
    /// Compile, validate and push a policy to every connected data plane.
    /// Exits non-zero if any core refused it.
    Apply {
        policy: PathBuf,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the data planes and cores connected, the version each holds, and
    /// the last push.
    Status {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier snapshot current again and push it (default: the
    /// version before the current one).
    Rollback {
        version: Option<u64>,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Compile a TOML policy into a snapshot file for the data plane.
    Compile {
        /// Policy source (TOML).
        policy: PathBuf,
        /// Snapshot file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Version number stamped into the snapshot.
        #[arg(long, default_value_t = 1)]
        snapshot_version: u64,
    },
    /// Check a TOML policy and report every error with file:line:column.
    Validate {
        /// Policy source (TOML).
        policy: PathBuf,
    },
}

fn print_applied(
    verb: &str,
    result: Result<client::Applied, String>,
    json: bool,
) -> Result<(), String> {
    let applied = result?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&applied).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", applied.render(verb));
    }
    if applied.all_ok() {
        Ok(())
    } else {
        Err(format!(
            "version {} was refused by at least one core",
            applied.version
        ))
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            policy,
            socket: path,
            state_dir,
            socket_group,
            allow_uids,
            ack_timeout,
        } => {
            let socket_gid = socket_group.as_deref().map(socket::group_id).transpose()?;
            let ack_timeout = Duration::try_from_secs_f64(ack_timeout)
                .map_err(|_| "--ack-timeout must be a positive number of seconds".to_string())?;
            let config = server::ServeConfig {
                policy,
                socket: path.clone(),
                state_dir,
                access: socket::Access {
                    uids: allow_uids,
                    gid: socket_gid,
                },
                socket_gid,
                ack_timeout,
            };
            server::serve(config, |version| {
                println!("controld: serving version {version} on {}", path.display());
            })
        }
        Command::Apply {
            policy,
            socket,
            json,
        } => print_applied("applied", client::apply(&socket, &policy), json),
        Command::Rollback {
            version,
            socket,
            json,
        } => print_applied(
            "rolled back to",
            client::rollback(&socket, version.unwrap_or(0)),
            json,
        ),
        Command::Status { socket, json } => {
            let status = client::status(&socket)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", status.render());
            }
            Ok(())
        }
        Command::Compile {
            policy,
            output,
            snapshot_version,
        } => commands::compile(&policy, &output, snapshot_version)
            .map(|p| println!("{} -> {}", commands::summary(&p), output.display())),
        Command::Validate { policy } => {
            commands::validate(&policy).map(|p| println!("{}", commands::summary(&p)))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
