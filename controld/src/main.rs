//! `controld` command line: the daemon and the operator commands.

use std::process::ExitCode;
use std::time::Duration;

mod cli;

use clap::Parser;
use cli::*;
use palisade_controld::{alerts, certs, client, commands, fleet, logcli, logstore, server, socket};

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
