//! `controld` command line: the daemon and the operator commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use palisade_controld::{alerts, certs, client, commands, fleet, logcli, logstore, server, socket};

/// Default control socket.
const DEFAULT_SOCKET: &str = "/run/palisade/control.sock";
/// Default state directory (snapshot history and log store).
const DEFAULT_STATE_DIR: &str = "/var/lib/palisade";

/// Which records: time range, app, user, kind.
#[derive(clap::Args)]
struct FilterArgs {
    /// Start (inclusive): now, -2h, 2026-11-22, 2026-11-22T10:00:00Z or
    /// Unix seconds [default: the beginning].
    #[arg(long, allow_hyphen_values = true)]
    from: Option<String>,
    /// End (exclusive), same forms [default: now].
    #[arg(long, allow_hyphen_values = true)]
    to: Option<String>,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long, value_enum)]
    kind: Option<logcli::KindFilter>,
}

impl FilterArgs {
    fn filter(&self) -> Result<logcli::Filter, String> {
        Ok(logcli::Filter {
            from_us: self.from.as_deref().map(logcli::parse_time).transpose()?,
            to_us: self.to.as_deref().map(logcli::parse_time).transpose()?,
            app: self.app.clone(),
            user: self.user.clone(),
            kind: self.kind,
        })
    }
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Stream stored records as CSV or JSON lines (oldest first).
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "csv")]
        format: logcli::Format,
        /// Output file [default: standard output].
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Read the whole fleet's records from ClickHouse
        /// (clickhouse://HOST:PORT/DATABASE, what `serve --log-sink`
        /// ships to) instead of this node's store; a `node` column comes
        /// first.
        #[arg(long, value_name = "CLICKHOUSE")]
        store: Option<String>,
    },
    /// Follow new records as they are stored.
    Tail {
        #[arg(long)]
        app: Option<String>,
        /// `csv` prints one readable line per record; `jsonl` one JSON object.
        #[arg(long, value_enum, default_value = "csv")]
        format: logcli::Format,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

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

/// `controld serve`'s options.
#[derive(clap::Args)]
struct ServeArgs {
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
    /// `full`: every acknowledged log batch is fsynced (survives power
    /// loss); `normal`: survives a controld crash, not the machine's.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    log_sync: String,
    /// Days log records and alerts are kept (0: forever).
    #[arg(long, default_value_t = 30)]
    log_retention_days: u64,
    /// URL alerts are POSTed to as JSON (retried with backoff).
    #[arg(long)]
    alert_webhook: Option<String>,
    /// File alerts are appended to, one JSON object per line.
    #[arg(long)]
    alert_file: Option<PathBuf>,
    /// E-mail each alert through this SMTP relay (HOST:PORT; 587 for
    /// STARTTLS, 465 for TLS), retried with backoff.
    #[arg(long, value_name = "HOST:PORT")]
    alert_smtp: Option<String>,
    /// starttls (default: refuse a relay without it), tls (implicit,
    /// port 465) or none (a relay on this host or a trusted network).
    #[arg(long, default_value = "starttls", value_name = "starttls|tls|none")]
    alert_smtp_security: String,
    /// File with USER:PASSWORD on its first line (SMTP AUTH); must not
    /// be readable by every user.
    #[arg(long, value_name = "FILE")]
    alert_smtp_credentials: Option<PathBuf>,
    /// Sender address of alert mails.
    #[arg(long, value_name = "ADDRESS", default_value = "palisade@localhost")]
    alert_smtp_from: String,
    /// Recipient of alert mails (repeatable; at least one).
    #[arg(long = "alert-smtp-to", value_name = "ADDRESS")]
    alert_smtp_to: Vec<String>,
    /// PEM CA certificates trusted for the relay besides the system's.
    #[arg(long, value_name = "FILE")]
    alert_smtp_ca: Option<PathBuf>,
    /// Serve the status as Prometheus metrics at http://ADDR/metrics
    /// (what `status --prometheus` prints; e.g. 127.0.0.1:9465).
    /// Unauthenticated, as Prometheus expects: bind it to loopback or
    /// a management network.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Export every activity record and alert as CEF over RFC 5424
    /// syslog: syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT,
    /// syslog+udp://HOST:PORT or relp://HOST:PORT (repeatable). At least
    /// once from the log store: a receiver that is down delays the export,
    /// it loses nothing (UDP is best effort; RELP is acknowledged by the
    /// receiving application itself, TCP and TLS by its kernel).
    #[arg(long = "siem", value_name = "URL")]
    siem: Vec<String>,
    /// PEM CA certificates trusted for syslog+tls besides the system's.
    #[arg(long, value_name = "FILE")]
    siem_ca: Option<PathBuf>,
    /// Follow the fleet's policy in etcd (etcd://HOST:PORT[,…]): install
    /// every version `apply --fleet` publishes and report this node's
    /// cores. Local apply and rollback are then refused. --policy is where
    /// a node starts before it first reaches etcd.
    #[arg(long, value_name = "ETCD", requires = "node")]
    fleet: Option<String>,
    /// This node's name in the fleet and in the shipped logs (unique;
    /// default for --log-sink: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Ship every stored record to ClickHouse
    /// (clickhouse://HOST:PORT/DATABASE, its HTTP interface) for queries
    /// across the fleet (`logs export --store`). Records are stored here
    /// first; an outage delays shipping, a crash never duplicates.
    #[arg(long, value_name = "CLICKHOUSE")]
    log_sink: Option<String>,
    /// Serve the admin console over HTTPS at ADDR (e.g. 127.0.0.1:9443;
    /// keep it on loopback or a management network). Sign in with the
    /// policy's OpenID Connect provider or a `controld console-token`.
    #[arg(long, value_name = "ADDR")]
    console: Option<std::net::SocketAddr>,
    /// PEM certificate chain for the console (with --console-key; e.g.
    /// one `controld certs` issued). Default: a self-signed certificate
    /// kept in STATE_DIR/console/.
    #[arg(long, value_name = "FILE", requires = "console_key")]
    console_cert: Option<PathBuf>,
    /// PEM private key of --console-cert.
    #[arg(long, value_name = "FILE", requires = "console_cert")]
    console_key: Option<PathBuf>,
    /// Identity-provider group whose members are console admins.
    #[arg(long, default_value = "admins", value_name = "GROUP")]
    console_admin_group: String,
    /// Identity-provider group whose members may view the console.
    #[arg(long, default_value = "viewers", value_name = "GROUP")]
    console_viewer_group: String,
    /// How long a console session lasts (e.g. 8h, 30min).
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    console_session: Duration,
    /// Days finished console exports are kept.
    #[arg(long, default_value_t = 7)]
    console_export_keep_days: u64,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// The fleet's current version and the version every node's cores hold.
    Status {
        /// etcd://HOST:PORT[,…]
        #[arg(long, value_name = "ETCD")]
        fleet: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete old versions from etcd: all but the newest KEEP and the
    /// current one (their snapshots and metadata; rollback reaches only
    /// what is kept).
    Prune {
        /// etcd://HOST:PORT[,…]
        #[arg(long, value_name = "ETCD")]
        fleet: String,
        #[arg(long, default_value_t = 10)]
        keep: usize,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: compile the policy, keep the snapshot history, serve
    /// the control socket to data planes and operators.
    Serve(Box<ServeArgs>),
    /// Traffic and activity logs: export and tail.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// The traffic report: requests, users, bytes up and down, blocked
    /// requests and activities per app, user or client IP.
    Report {
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "app")]
        by: logcli::By,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Report over the whole fleet from ClickHouse
        /// (clickhouse://HOST:PORT/DATABASE) instead of this node's store.
        #[arg(long, value_name = "CLICKHOUSE")]
        store: Option<String>,
    },
    /// List the alerts activity policies raised.
    Alerts {
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Every node's alerts from ClickHouse
        /// (clickhouse://HOST:PORT/DATABASE), each with its node.
        #[arg(long, value_name = "CLICKHOUSE")]
        store: Option<String>,
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
        /// Publish to the fleet through etcd (etcd://HOST:PORT[,…]) instead
        /// of this node's controld; waits for every node's cores.
        #[arg(long, value_name = "ETCD")]
        fleet: Option<String>,
        /// With --fleet: the version this change is based on; refused when
        /// another is current (two operators racing: one wins).
        #[arg(long, value_name = "VERSION", requires = "fleet")]
        expect_version: Option<u64>,
        /// With --fleet: seconds to wait for the nodes' acknowledgements.
        #[arg(long, default_value_t = 30.0, requires = "fleet")]
        wait: f64,
    },
    /// The fleet: its current version and every node's cores.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Show the data planes and cores connected, the version each holds, and
    /// the last push.
    Status {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Print the status as Prometheus metrics (text exposition).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Make an earlier snapshot current again and push it (default: the
    /// version before the current one).
    Rollback {
        version: Option<u64>,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
        /// Roll the fleet back through etcd (etcd://HOST:PORT[,…]).
        #[arg(long, value_name = "ETCD")]
        fleet: Option<String>,
        /// With --fleet: seconds to wait for the nodes' acknowledgements.
        #[arg(long, default_value_t = 30.0, requires = "fleet")]
        wait: f64,
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
    /// Make an `age` identity for protected downloads (written 0600) and
    /// print its recipient for a session policy's `recipients`.
    ProtectKey {
        /// Identity file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt a file a session policy protected (`<name>.age`) with an
    /// identity from `protect-key`; writes the original to stdout or -o.
    Unprotect {
        #[arg(long)]
        identity: PathBuf,
        /// The protected file.
        file: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Certificates: a local CA, one certificate per app of a policy, and
    /// client certificates for managed devices.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print a one-time token that signs in to the console as admin (for
    /// the first sign-in, before identity-provider groups are set up).
    /// Replaces an unused earlier token.
    ConsoleToken {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Minutes the token stays valid.
        #[arg(long, default_value_t = 60)]
        valid_minutes: i64,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a CA: OUT/ca.pem and OUT/ca.key.
    Ca {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "Palisade local CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Mint a certificate per app of POLICY covering <domain>.<suffix> and
    /// *.<domain>.<suffix>: OUT/<app>.pem (chain) and OUT/<app>.key.
    Issue {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        ca_key: PathBuf,
        policy: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Mint the admin console's certificate for NAMEs (host names or IP
    /// addresses): OUT/console.pem (chain) and OUT/console.key, for
    /// `serve --console-cert/--console-key`.
    Console {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        ca_key: PathBuf,
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Make the key that signs the assertions the proxy issues to apps
    /// whose own SAML sign-in it relays ([app.saml_relay]): OUT/saml.pem
    /// (self-signed certificate, what the app's administrator uploads) and
    /// OUT/saml.key (ECDSA P-256, mode 0600).
    Saml {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "Palisade SAML signing")]
        name: String,
        #[arg(long, default_value_t = 1095)]
        days: u32,
    },
    /// Mint a client certificate for a managed device: OUT/<name>.pem and
    /// OUT/<name>.key (the policy's [tls] client_ca must be this CA).
    Device {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        ca_key: PathBuf,
        name: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
}

/// Prints `value` as pretty JSON (`--json`) or as `text` renders it.
fn print_json_or<T: serde::Serialize>(
    value: &T,
    json: bool,
    text: impl FnOnce(&T) -> String,
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

fn print_applied(
    verb: &str,
    result: Result<client::Applied, String>,
    json: bool,
) -> Result<(), String> {
    let applied = result?;
    print_json_or(&applied, json, |a| a.render(verb))?;
    if applied.all_ok() {
        Ok(())
    } else {
        Err(format!(
            "version {} was refused by at least one core",
            applied.version
        ))
    }
}

fn seconds(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| "--wait must be a positive number of seconds".to_string())
}

fn print_fleet(
    verb: &str,
    result: Result<fleet::cli::Outcome, String>,
    json: bool,
) -> Result<(), String> {
    let outcome = result?;
    print_json_or(&outcome, json, |o| o.render(verb))?;
    if outcome.all_ok {
        Ok(())
    } else {
        Err(format!(
            "version {} is not held by every core of every node (refused or no answer in time)",
            outcome.published.version
        ))
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => {
            let ServeArgs {
                policy,
                socket: path,
                state_dir,
                socket_group,
                allow_uids,
                ack_timeout,
                log_sync,
                log_retention_days,
                alert_webhook,
                alert_file,
                alert_smtp,
                alert_smtp_security,
                alert_smtp_credentials,
                alert_smtp_from,
                alert_smtp_to,
                alert_smtp_ca,
                metrics,
                siem,
                siem_ca,
                fleet,
                node,
                log_sink,
                console,
                console_cert,
                console_key,
                console_admin_group,
                console_viewer_group,
                console_session,
                console_export_keep_days,
            } = *args;
            let console = console.map(|listen| palisade_controld::console::Settings {
                listen,
                certificate: console_cert.zip(console_key),
                state_dir: state_dir.clone(),
                admin_group: console_admin_group,
                viewer_group: console_viewer_group,
                session_lifetime: console_session.max(Duration::from_secs(1)),
                export_keep: Duration::from_secs(console_export_keep_days.max(1) * 86400),
            });
            let log_sink = log_sink
                .as_deref()
                .map(palisade_controld::clickhouse::Target::parse)
                .transpose()
                .map_err(|e| format!("--log-sink {e}"))?
                .map(|t| {
                    let name = node
                        .clone()
                        .unwrap_or_else(palisade_controld::fleet::host_name);
                    (t, name)
                });
            if let Some(spec) = &fleet {
                // A bad endpoint list stops the start, not the follower.
                palisade_controld::fleet::etcd::parse_endpoints(spec)?;
            }
            let mail = match alert_smtp {
                Some(relay) => {
                    let (host, port) = relay
                        .rsplit_once(':')
                        .and_then(|(h, p)| {
                            Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?))
                        })
                        .filter(|(h, p)| !h.is_empty() && *p != 0)
                        .ok_or_else(|| format!("--alert-smtp {relay:?}: expected HOST:PORT"))?;
                    let settings = palisade_controld::mail::Settings {
                        host: host.to_string(),
                        port,
                        security: palisade_controld::mail::Security::parse(&alert_smtp_security)?,
                        credentials: alert_smtp_credentials,
                        from: alert_smtp_from,
                        to: alert_smtp_to,
                        ca: alert_smtp_ca,
                    };
                    Some(std::sync::Arc::new(palisade_controld::mail::Mailer::new(
                        &settings,
                    )?))
                }
                None => None,
            };
            let siem = palisade_controld::siem::Settings {
                destinations: siem
                    .iter()
                    .map(|u| palisade_controld::siem::Destination::parse(u))
                    .collect::<Result<_, _>>()?,
                ca: siem_ca,
            };
            // Each scrape asks the daemon over its own socket, as `status`
            // does: the endpoint sees exactly what an operator would.
            let metrics_line = match metrics {
                Some(addr) => {
                    let socket = path.clone();
                    let bound = palisade_schema::metrics_http::serve(addr, move || {
                        client::status(&socket).map(|s| s.render_prometheus())
                    })
                    .map_err(|e| format!("--metrics {addr}: {e}"))?;
                    format!("; metrics on http://{bound}/metrics")
                }
                None => String::new(),
            };
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
                logs: server::LogSettings {
                    sync: if log_sync == "normal" {
                        logstore::Sync::Normal
                    } else {
                        logstore::Sync::Full
                    },
                    retention: (log_retention_days > 0)
                        .then(|| Duration::from_secs(log_retention_days * 86400)),
                    sinks: alerts::Sinks {
                        webhook: alert_webhook,
                        file: alert_file,
                        mail,
                    },
                    siem,
                },
                fleet: fleet.zip(node),
                log_sink,
                console,
            };
            server::serve(config, |version, console| {
                let console_line = console
                    .map(|a| format!("; console on https://{a}/"))
                    .unwrap_or_default();
                println!(
                    "controld: serving version {version} on {}{metrics_line}{console_line}",
                    path.display()
                );
                // Type=notify: the data plane's unit starts after this.
                palisade_schema::systemd::notify_ready();
            })
        }
        Command::Apply {
            fleet: Some(spec),
            policy,
            json,
            expect_version,
            wait,
            ..
        } => print_fleet(
            "published",
            fleet::cli::apply(&policy, &spec, expect_version, seconds(wait)?),
            json,
        ),
        Command::Apply {
            policy,
            socket,
            json,
            ..
        } => print_applied("applied", client::apply(&socket, &policy), json),
        Command::Rollback {
            fleet: Some(spec),
            version,
            json,
            wait,
            ..
        } => print_fleet(
            "rolled the fleet back to",
            fleet::cli::rollback(version, &spec, seconds(wait)?),
            json,
        ),
        Command::Fleet {
            command: FleetCommand::Status { fleet: spec, json },
        } => print_json_or(&fleet::cli::status(&spec)?, json, |s| s.render()),
        Command::Fleet {
            command: FleetCommand::Prune { fleet: spec, keep },
        } => fleet::cli::prune(&spec, keep).map(|gone| {
            if gone.is_empty() {
                println!("nothing to prune: the fleet holds at most {keep} versions besides the current one");
            } else {
                let list: Vec<String> = gone.iter().map(u64::to_string).collect();
                println!("pruned version(s) {}", list.join(", "));
            }
        }),
        Command::Rollback {
            version,
            socket,
            json,
            ..
        } => print_applied(
            "rolled back to",
            client::rollback(&socket, version.unwrap_or(0)),
            json,
        ),
        Command::Status {
            socket,
            json,
            prometheus,
        } => {
            let status = client::status(&socket)?;
            if prometheus {
                print!("{}", status.render_prometheus());
            } else if json {
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
        Command::Logs { command } => match command {
            LogsCommand::Export {
                filter,
                format,
                output,
                state_dir,
                store,
            } => {
                let filter = filter.filter()?;
                let store = store
                    .as_deref()
                    .map(palisade_controld::clickhouse::Target::parse)
                    .transpose()
                    .map_err(|e| format!("--store {e}"))?;
                let export = |w: &mut dyn std::io::Write| match &store {
                    Some(target) => {
                        palisade_controld::clickhouse::export(target, &filter, format, w)
                    }
                    None => logcli::export(&state_dir, &filter, format, w),
                };
                let n = match &output {
                    Some(path) => {
                        let file = std::fs::File::create(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        export(&mut std::io::BufWriter::with_capacity(1 << 16, file))?
                    }
                    None => {
                        let stdout = std::io::stdout();
                        export(&mut std::io::BufWriter::with_capacity(
                            1 << 16,
                            stdout.lock(),
                        ))?
                    }
                };
                if let Some(path) = output {
                    eprintln!("exported {n} records to {}", path.display());
                }
                Ok(())
            }
            LogsCommand::Tail {
                app,
                format,
                state_dir,
            } => logcli::tail(&state_dir, app.as_deref(), format),
        },
        Command::Report {
            from,
            to,
            by,
            json,
            state_dir,
            store,
        } => {
            let filter = logcli::Filter {
                from_us: from.as_deref().map(logcli::parse_time).transpose()?,
                to_us: to.as_deref().map(logcli::parse_time).transpose()?,
                ..logcli::Filter::default()
            };
            let rows = match store {
                Some(spec) => palisade_controld::clickhouse::report(
                    &palisade_controld::clickhouse::Target::parse(&spec)
                        .map_err(|e| format!("--store {e}"))?,
                    &filter,
                    by,
                )?,
                None => logcli::report(&state_dir, &filter, by)?,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", logcli::render_report(&rows, by));
            }
            Ok(())
        }
        Command::Alerts {
            from,
            to,
            json,
            state_dir,
            store,
        } => {
            let filter = logcli::Filter {
                from_us: from.as_deref().map(logcli::parse_time).transpose()?,
                to_us: to.as_deref().map(logcli::parse_time).transpose()?,
                ..logcli::Filter::default()
            };
            if let Some(spec) = store {
                let target = palisade_controld::clickhouse::Target::parse(&spec)
                    .map_err(|e| format!("--store {e}"))?;
                let list = palisade_controld::clickhouse::alerts(&target, &filter)?;
                return print_json_or(&list, json, |list| {
                    if list.is_empty() {
                        return "no alerts\n".into();
                    }
                    list.iter()
                        .map(|a| {
                            format!(
                                "{}: {}",
                                a.node,
                                logcli::render_alerts(std::slice::from_ref(&a.alert))
                            )
                        })
                        .collect()
                });
            }
            let list = logcli::alerts(&state_dir, &filter)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", logcli::render_alerts(&list));
            }
            Ok(())
        }
        Command::ConsoleToken {
            state_dir,
            valid_minutes,
        } => palisade_controld::console::auth::make_bootstrap_token(
            &state_dir,
            valid_minutes.max(1) * 60,
        )
        .map(|token| println!("{token}")),
        Command::Certs { command } => match command {
            CertsCommand::Ca { out, name, days } => certs::make_ca(&out, &name, days).map(|()| {
                println!(
                    "CA written: {0}/ca.pem (certificate) and {0}/ca.key (key, mode 0600)",
                    out.display()
                )
            }),
            CertsCommand::Issue {
                ca,
                ca_key,
                policy,
                out,
                days,
            } => certs::app_names(&policy)
                .and_then(|p| certs::issue_app_certificates(&p, &ca, &ca_key, &out, days))
                .map(|written| {
                    println!("# add to each [[app]] of the policy:");
                    for (app, cert, key) in written {
                        println!("# app {app:?}\ntls_cert = {cert:?}\ntls_key = {key:?}");
                    }
                }),
            CertsCommand::Saml { out, name, days } => {
                certs::make_saml_signing_key(&out, &name, days).map(|()| {
                    println!(
                        "SAML signing key written: {0}/saml.pem (certificate, for the app) and {0}/saml.key (key, mode 0600)\n# in the app's [app.saml_relay]:\nsigning_cert = \"{0}/saml.pem\"\nsigning_key = \"{0}/saml.key\"",
                        out.display()
                    )
                })
            }
            CertsCommand::Console {
                ca,
                ca_key,
                names,
                out,
                days,
            } => certs::issue_console_certificate(&names, &ca, &ca_key, &out, days).map(|()| {
                println!(
                    "console certificate written: {0}/console.pem (chain) and {0}/console.key",
                    out.display()
                )
            }),
            CertsCommand::Device {
                ca,
                ca_key,
                name,
                out,
                days,
            } => certs::issue_device_certificate(&name, &ca, &ca_key, &out, days).map(|()| {
                println!(
                    "device certificate written: {0}/{name}.pem and {0}/{name}.key",
                    out.display()
                )
            }),
        },
        Command::ProtectKey { out } => palisade_controld::protect::make_identity(&out).map(|r| {
            println!("{r}");
        }),
        Command::Unprotect {
            identity,
            file,
            output,
        } => palisade_controld::protect::decrypt(&identity, &file).and_then(|plain| match output {
            Some(o) => std::fs::write(&o, plain).map_err(|e| format!("{}: {e}", o.display())),
            None => {
                std::io::Write::write_all(&mut std::io::stdout(), &plain).map_err(|e| e.to_string())
            }
        }),
        Command::Validate { policy } => {
            commands::validate(&policy).map(|p| println!("{}", commands::summary(&p)))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Operator commands behave like other Unix tools when their output
        // is cut short (`controld logs export | head`): end quietly. The
        // daemon keeps Rust's default (SIGPIPE ignored), so a peer closing
        // its socket can never stop it.
        // SAFETY: restoring the default disposition of one signal.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
