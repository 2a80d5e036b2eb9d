//! `controld`'s command line, as clap parses it: the daemon's options
//! (`serve`) and every operator command. `main.rs` runs them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use palisade_controld::logcli;

/// Default control socket.
pub(crate) const DEFAULT_SOCKET: &str = "/run/palisade/control.sock";
/// Default state directory (snapshot history and log store).
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/palisade";

/// Which records: time range, app, user, kind.
#[derive(clap::Args)]
pub(crate) struct FilterArgs {
    /// Start (inclusive): now, -2h, 2026-11-22, 2026-11-22T10:00:00Z or
    /// Unix seconds [default: the beginning].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) from: Option<String>,
    /// End (exclusive), same forms [default: now].
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) to: Option<String>,
    #[arg(long)]
    pub(crate) app: Option<String>,
    #[arg(long)]
    pub(crate) user: Option<String>,
    #[arg(long, value_enum)]
    pub(crate) kind: Option<logcli::KindFilter>,
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> Result<logcli::Filter, String> {
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
pub(crate) enum LogsCommand {
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `controld serve`'s options.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Policy source (TOML) to start with.
    #[arg(long)]
    pub(crate) policy: PathBuf,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Directory for the snapshot history.
    #[arg(long)]
    pub(crate) state_dir: PathBuf,
    /// Group whose members may use the socket (mode 0660 instead of 0600).
    #[arg(long)]
    pub(crate) socket_group: Option<String>,
    /// Further user ids allowed on the socket (the daemon's own uid and
    /// root always are).
    #[arg(long = "allow-uid")]
    pub(crate) allow_uids: Vec<u32>,
    /// Seconds `apply` waits for every core to acknowledge.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) ack_timeout: f64,
    /// `full`: every acknowledged log batch is fsynced (survives power
    /// loss); `normal`: survives a controld crash, not the machine's.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub(crate) log_sync: String,
    /// Days log records and alerts are kept (0: forever).
    #[arg(long, default_value_t = 30)]
    pub(crate) log_retention_days: u64,
    /// URL alerts are POSTed to as JSON (retried with backoff).
    #[arg(long)]
    pub(crate) alert_webhook: Option<String>,
    /// File alerts are appended to, one JSON object per line.
    #[arg(long)]
    pub(crate) alert_file: Option<PathBuf>,
    /// E-mail each alert through this SMTP relay (HOST:PORT; 587 for
    /// STARTTLS, 465 for TLS), retried with backoff.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) alert_smtp: Option<String>,
    /// starttls (default: refuse a relay without it), tls (implicit,
    /// port 465) or none (a relay on this host or a trusted network).
    #[arg(long, default_value = "starttls", value_name = "starttls|tls|none")]
    pub(crate) alert_smtp_security: String,
    /// File with USER:PASSWORD on its first line (SMTP AUTH); must not
    /// be readable by every user.
    #[arg(long, value_name = "FILE")]
    pub(crate) alert_smtp_credentials: Option<PathBuf>,
    /// Sender address of alert mails.
    #[arg(long, value_name = "ADDRESS", default_value = "palisade@localhost")]
    pub(crate) alert_smtp_from: String,
    /// Recipient of alert mails (repeatable; at least one).
    #[arg(long = "alert-smtp-to", value_name = "ADDRESS")]
    pub(crate) alert_smtp_to: Vec<String>,
    /// PEM CA certificates trusted for the relay besides the system's.
    #[arg(long, value_name = "FILE")]
    pub(crate) alert_smtp_ca: Option<PathBuf>,
    /// Serve the status as Prometheus metrics at http://ADDR/metrics
    /// (what `status --prometheus` prints; e.g. 127.0.0.1:9465).
    /// Unauthenticated, as Prometheus expects: bind it to loopback or
    /// a management network.
    #[arg(long)]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Export every activity record and alert as CEF over RFC 5424
    /// syslog: syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT,
    /// syslog+udp://HOST:PORT or relp://HOST:PORT (repeatable). At least
    /// once from the log store: a receiver that is down delays the export,
    /// it loses nothing (UDP is best effort; RELP is acknowledged by the
    /// receiving application itself, TCP and TLS by its kernel).
    #[arg(long = "siem", value_name = "URL")]
    pub(crate) siem: Vec<String>,
    /// PEM CA certificates trusted for syslog+tls besides the system's.
    #[arg(long, value_name = "FILE")]
    pub(crate) siem_ca: Option<PathBuf>,
    /// Follow the fleet's policy in etcd (etcd://HOST:PORT[,…]): install
    /// every version `apply --fleet` publishes and report this node's
    /// cores. Local apply and rollback are then refused. --policy is where
    /// a node starts before it first reaches etcd.
    #[arg(long, value_name = "ETCD", requires = "node")]
    pub(crate) fleet: Option<String>,
    /// This node's name in the fleet and in the shipped logs (unique;
    /// default for --log-sink: the host name).
    #[arg(long, value_name = "NAME")]
    pub(crate) node: Option<String>,
    /// Ship every stored record to ClickHouse
    /// (clickhouse://HOST:PORT/DATABASE, its HTTP interface) for queries
    /// across the fleet (`logs export --store`). Records are stored here
    /// first; an outage delays shipping, a crash never duplicates.
    #[arg(long, value_name = "CLICKHOUSE")]
    pub(crate) log_sink: Option<String>,
    /// Serve the admin console over HTTPS at ADDR (e.g. 127.0.0.1:9443;
    /// keep it on loopback or a management network). Sign in with the
    /// policy's OpenID Connect provider or a `controld console-token`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) console: Option<std::net::SocketAddr>,
    /// PEM certificate chain for the console (with --console-key; e.g.
    /// one `controld certs` issued). Default: a self-signed certificate
    /// kept in STATE_DIR/console/.
    #[arg(long, value_name = "FILE", requires = "console_key")]
    pub(crate) console_cert: Option<PathBuf>,
    /// PEM private key of --console-cert.
    #[arg(long, value_name = "FILE", requires = "console_cert")]
    pub(crate) console_key: Option<PathBuf>,
    /// Identity-provider group whose members are console admins.
    #[arg(long, default_value = "admins", value_name = "GROUP")]
    pub(crate) console_admin_group: String,
    /// Identity-provider group whose members may view the console.
    #[arg(long, default_value = "viewers", value_name = "GROUP")]
    pub(crate) console_viewer_group: String,
    /// How long a console session lasts (e.g. 8h, 30min).
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    pub(crate) console_session: Duration,
    /// Days finished console exports are kept.
    #[arg(long, default_value_t = 7)]
    pub(crate) console_export_keep_days: u64,
}

#[derive(Subcommand)]
pub(crate) enum FleetCommand {
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
pub(crate) enum Command {
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
pub(crate) enum CertsCommand {
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
