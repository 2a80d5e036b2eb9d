//! `controld` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_controld::commands;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile {
            policy,
            output,
            snapshot_version,
        } => commands::compile(&policy, &output, snapshot_version)
            .map(|p| format!("{} -> {}", commands::summary(&p), output.display())),
        Command::Validate { policy } => commands::validate(&policy).map(|p| commands::summary(&p)),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
