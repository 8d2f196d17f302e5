//! The `auditfwd` command line. Thin: parses arguments, installs signal
//! handlers, calls the library, and maps errors to exit codes
//! (0 ok, 1 runtime failure, 2 configuration or usage error).
#![deny(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use auditfwd::app::App;
use auditfwd::config::{Config, ConfigError};
use auditfwd::pipeline::Control;
use auditfwd::{demo, logging, state_cmd, status_cmd, telemetry};
use auditfwd_sim::{SimConfig, Simulator};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "auditfwd",
    // `auditfwd 0.1.0 (a1b2c3d)`: the git revision comes from build.rs.
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AUDITFWD_GIT_REV"), ")"),
    about = "Audit-log SIEM forwarder: PeopleLens audit logs to Kafka, syslog and files, without loss",
    after_help = help::MAIN
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run against the built-in simulated tenant, writing to ./auditfwd-out/.
    #[command(after_help = help::DEMO)]
    Demo(demo::DemoOptions),
    /// Run the forwarder (the daemon).
    #[command(after_help = help::RUN)]
    Run {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate the configuration (and every tenant file) and reach every
    /// API, broker and receiver.
    #[command(after_help = help::CHECK)]
    Check {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Make the running daemon re-read its configuration (SIGHUP to the
    /// pid in the state directory), after checking the configuration.
    #[command(after_help = help::RELOAD)]
    Reload {
        /// Configuration file (the one the daemon runs with).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Ask the running daemon which tenants are furthest behind or not ok.
    #[command(after_help = help::STATUS)]
    Status {
        /// Configuration file (its telemetry.listen is asked).
        #[arg(short, long)]
        config: PathBuf,
        /// How many of the sources furthest behind to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Inspect or move cursors.
    #[command(after_help = help::STATE)]
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Serve the simulated tenant API on its own.
    #[command(after_help = help::SIMULATE)]
    Simulate {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[command(flatten)]
        tenant: Box<SimConfig>,
        /// Switch every adversity on: ties in a fresh order per request, bulk
        /// operations, late, bogus and far-future times, reused and numeric
        /// ids, hostile, malformed and non-UTF-8 events, 5xx, 429, drops,
        /// truncated and endless bodies (order, page cap and totals stay as
        /// given).
        #[arg(long)]
        chaos: bool,
    },
    /// GET an http(s) URL and exit 0 on a 2xx answer: a health check for
    /// images without curl.
    #[command(after_help = help::PROBE)]
    Probe {
        /// e.g. http://127.0.0.1:9898/livez
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Show each source's cursor (safe while the daemon runs).
    #[command(after_help = help::STATE_SHOW)]
    Show {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// Forget a source's cursor; the next run starts at start_at.
    #[command(after_help = help::STATE_RESET)]
    Reset {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The source.
        #[arg(long)]
        source: String,
    },
    /// Make the next run read events created from TIME (RFC 3339).
    #[command(after_help = help::STATE_SET_SINCE)]
    SetSince {
        /// Configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The source.
        #[arg(long)]
        source: String,
        /// e.g. 2026-11-01T00:00:00Z
        time: String,
    },
}

/// Examples shown after each command's options (`--help`); a unit test
/// parses every example line.
mod help {
    pub(crate) const MAIN: &str = "\
Examples:
  # Try it: the simulated tenant, output in ./auditfwd-out/, a verdict at the end
  auditfwd demo --duration 30s
  # Validate a configuration and reach every API and sink, then run
  auditfwd check -c /etc/auditfwd/auditfwd.toml
  auditfwd run -c /etc/auditfwd/auditfwd.toml
  # Where each source stands
  auditfwd state show -c /etc/auditfwd/auditfwd.toml

Each command has its own examples: auditfwd <COMMAND> --help";

    pub(crate) const DEMO: &str = "\
Examples:
  # 30 seconds against a well-behaved tenant, then the check against its ground truth
  auditfwd demo --duration 30s
  # Every adversity on, a bigger backlog, output elsewhere; stop with Ctrl-C
  auditfwd demo --chaos --backlog 20000 --out /tmp/auditfwd-demo";

    pub(crate) const RUN: &str = "\
Examples:
  auditfwd run -c /etc/auditfwd/auditfwd.toml
  # Debug logs from the poller only
  RUST_LOG=info,auditfwd::source=debug auditfwd run -c auditfwd.toml

Signals: SIGTERM or SIGINT finishes the batch in flight, saves the cursors and
exits (a second one exits at once); SIGHUP makes file sinks reopen their files
(after logrotate moved them) and re-reads the configuration: added, removed
and changed sources are started, drained or restarted, each alone (sinks,
[state] and [telemetry] need a restart). The pid is in {state.dir}/auditfwd.lock.

Exit status: 0 stopped by a signal, 1 runtime failure, 2 configuration error.";

    pub(crate) const CHECK: &str = "\
Examples:
  # Before a (re)start or reload: parse and validate the file and every tenant
  # file of its sources_dir (every problem of every file), reach every API,
  # broker and receiver
  auditfwd check -c /etc/auditfwd/auditfwd.toml

Exit status: 0 all reachable, 1 something failed (each line says what),
2 configuration error.";

    pub(crate) const RELOAD: &str = "\
Examples:
  # After adding, changing or removing a file in sources_dir
  auditfwd reload -c /etc/auditfwd/auditfwd.toml

An invalid configuration is reported (every problem, in every file) and not
sent; the daemon goes on with the old one either way.
Exit status: 0 sent, 1 no daemon found, 2 configuration error.";

    pub(crate) const STATUS: &str = "\
Examples:
  # The 10 tenants furthest behind, and every tenant not ok
  auditfwd status -c /etc/auditfwd/auditfwd.toml
  auditfwd status -c /etc/auditfwd/auditfwd.toml --top 50

Needs [telemetry] listen in the configuration and the daemon running.
Exit status: 0 answered, 1 no answer, 2 configuration error.";

    pub(crate) const STATE: &str = "\
Examples:
  auditfwd state show -c /etc/auditfwd/auditfwd.toml
  auditfwd state set-since -c /etc/auditfwd/auditfwd.toml --source acme 2026-11-01T00:00:00Z
  auditfwd state reset -c /etc/auditfwd/auditfwd.toml --source acme";

    pub(crate) const STATE_SHOW: &str = "\
Examples:
  # One line per source, furthest behind first: lag, watermark, delivered, dead letters, pass
  auditfwd state show -c /etc/auditfwd/auditfwd.toml
  # One source in detail
  auditfwd state show -c /etc/auditfwd/auditfwd.toml --source acme";

    pub(crate) const STATE_RESET: &str = "\
Examples:
  # The next run starts acme over at its start_at
  auditfwd state reset -c /etc/auditfwd/auditfwd.toml --source acme";

    pub(crate) const STATE_SET_SINCE: &str = "\
Examples:
  # Read acme again from the first of November (events already sent are sent again)
  auditfwd state set-since -c /etc/auditfwd/auditfwd.toml --source acme 2026-11-01T00:00:00Z";

    pub(crate) const SIMULATE: &str = "\
Examples:
  # A well-behaved tenant on http://127.0.0.1:8080
  auditfwd simulate --port 8080
  # Every adversity on, on a free port (printed at start)
  auditfwd simulate --port 0 --chaos";

    pub(crate) const PROBE: &str = "\
Examples:
  # Liveness (the Docker HEALTHCHECK): needs [telemetry] listen = \"0.0.0.0:9898\"
  auditfwd probe http://127.0.0.1:9898/livez
  # Readiness: fails with the component that is not ok
  auditfwd probe --timeout 2s http://127.0.0.1:9898/readyz

Exit status: 0 on a 2xx answer, 1 on any other answer or none, 2 on a bad URL.";
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    let config = Config::load(path).map_err(|e: ConfigError| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    for w in &config.warnings {
        eprintln!(
            "warning: {}: {}: {}",
            w.file_or(path).display(),
            w.key,
            w.message
        );
    }
    Ok(config)
}

/// Cancels `token` on SIGINT/SIGTERM; a second signal exits at once.
fn on_terminate(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        for round in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if round == 0 {
                tracing::info!(
                    "shutting down: finishing batches in flight and saving cursors (signal again to exit at once)"
                );
                token.cancel();
            } else {
                eprintln!(
                    "exiting without waiting; unsaved batches will be sent again on the next start"
                );
                std::process::exit(130);
            }
        }
    });
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(options) => {
            logging::init_logging(&auditfwd::config::TelemetryConfig {
                log_level: "error".into(),
                ..Default::default()
            });
            let interrupt = CancellationToken::new();
            on_terminate(interrupt.clone());
            let report = demo::run(options, interrupt).await?;
            Ok(if report.missing == 0 && report.duplicates == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run { config } => {
            let config_path = config;
            let config = match load(&config_path) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let console = logging::init_logging(&config.telemetry);
            if let Err(error) = auditfwd::limits::prepare(&config) {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(1));
            }
            let shutdown = CancellationToken::new();
            on_terminate(shutdown.clone());
            // `auditfwd reload` finds the daemon here. Another daemon on
            // this state directory is refused (its cursors are locked too);
            // a pid file that can not be written (a full disk) only costs
            // `auditfwd reload`: SIGHUP still works.
            let pid_file = match auditfwd::pidfile::PidFile::create(&config.state.dir) {
                Ok(pid_file) => Some(pid_file),
                Err(error @ auditfwd::pidfile::PidFileError::Taken { .. }) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(1));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "no pid file: `auditfwd reload` will not find this daemon; send SIGHUP to reload");
                    None
                }
            };
            let app = App::new(config)
                .with_console(console)
                .reload_from(&config_path);
            let control = app.control();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
                while hup.recv().await.is_some() {
                    tracing::info!(
                        "SIGHUP: reopening sink outputs and reloading the configuration"
                    );
                    let _ = control.send(Control::Reopen);
                    let _ = control.send(Control::Reload);
                }
            });
            let result = app.run(shutdown).await;
            drop(pid_file);
            result.context("auditfwd stopped")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            logging::init_logging(&auditfwd::config::TelemetryConfig {
                log_level: "warn".into(),
                ..Default::default()
            });
            let report = auditfwd::app::check(&config).await;
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Reload { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let pid = match auditfwd::pidfile::running(&config.state.dir) {
                Ok(pid) => pid,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(1));
                }
            };
            // SAFETY: kill(2) with a pid read from the locked pid file; no
            // memory is involved.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
                eprintln!(
                    "error: cannot signal auditfwd (pid {pid}): {}",
                    std::io::Error::last_os_error()
                );
                return Ok(ExitCode::from(1));
            }
            println!("sent SIGHUP to auditfwd (pid {pid}); its log says what the reload changed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, top } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match status_cmd::query(&c).await {
                Ok(sources) => {
                    print!("{}", status_cmd::report(&sources, top));
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(match error {
                        status_cmd::StatusError::NoListener
                        | status_cmd::StatusError::EphemeralPort { .. } => 2,
                        _ => 1,
                    }))
                }
            }
        }
        Command::State { action } => {
            let (config, result) = match action {
                StateAction::Show { config, source } => {
                    let c = match load(&config) {
                        Ok(c) => c,
                        Err(code) => return Ok(code),
                    };
                    let r = state_cmd::show(&c, source.as_deref());
                    (c, r)
                }
                StateAction::Reset { config, source } => {
                    let c = match load(&config) {
                        Ok(c) => c,
                        Err(code) => return Ok(code),
                    };
                    let r = state_cmd::reset(&c, &source);
                    (c, r)
                }
                StateAction::SetSince {
                    config,
                    source,
                    time,
                } => {
                    let c = match load(&config) {
                        Ok(c) => c,
                        Err(code) => return Ok(code),
                    };
                    let since = match chrono::DateTime::parse_from_rfc3339(&time) {
                        Ok(t) => t.with_timezone(&chrono::Utc),
                        Err(_) => {
                            eprintln!(
                                "error: `{time}` is not an RFC 3339 time such as 2026-11-01T00:00:00Z"
                            );
                            return Ok(ExitCode::from(2));
                        }
                    };
                    let r = state_cmd::set_since(&c, &source, since);
                    (c, r)
                }
            };
            drop(config);
            match result {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Probe { url, timeout } => match telemetry::probe(&url, timeout).await {
            Ok(line) => {
                println!("{line}");
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("error: {error}");
                Ok(ExitCode::from(match error {
                    telemetry::ProbeError::BadUrl { .. } => 2,
                    _ => 1,
                }))
            }
        },
        Command::Simulate {
            port,
            mut tenant,
            chaos,
        } => {
            logging::init_logging(&Default::default());
            if chaos {
                let chaotic = SimConfig::adversarial(tenant.seed);
                *tenant = SimConfig {
                    seed: tenant.seed,
                    api_key: tenant.api_key,
                    backlog: tenant.backlog,
                    backlog_span: tenant.backlog_span,
                    insert_rate: tenant.insert_rate,
                    order: tenant.order,
                    since_inclusive: tenant.since_inclusive,
                    page_cap: tenant.page_cap,
                    total: tenant.total,
                    coarse_time: tenant.coarse_time,
                    ignore_since: tenant.ignore_since,
                    bogus_date: tenant.bogus_date,
                    rate_limit: tenant.rate_limit,
                    users: tenant.users,
                    ..chaotic
                };
            }
            let sim = Simulator::start(*tenant, ([127, 0, 0, 1], port).into())
                .await
                .context("cannot start the simulated tenant")?;
            println!(
                "simulated tenant on {} (API key: {})",
                sim.base_url(),
                sim.api_key()
            );
            println!(
                "  GET  {}/api/v1/audit-logs?since=&limit=&offset=&action=",
                sim.base_url()
            );
            println!("  GET  {}/api/v1/users/{{id}}", sim.base_url());
            println!(
                "  GET  {}/_sim/truth   POST {}/_sim/freeze",
                sim.base_url(),
                sim.base_url()
            );
            let stop = CancellationToken::new();
            on_terminate(stop.clone());
            stop.cancelled().await;
            tokio::time::timeout(Duration::from_secs(5), sim.stop())
                .await
                .ok();
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, with its path (`["state", "show"]`).
    fn commands(command: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        let help = command
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        out.push((path.clone(), help));
        for sub in command.get_subcommands() {
            let mut path = path.clone();
            path.push(sub.get_name().to_string());
            commands(sub, path, out);
        }
    }

    #[test]
    fn every_command_has_examples_that_parse() {
        let mut all = Vec::new();
        commands(&Cli::command(), Vec::new(), &mut all);
        assert!(all.len() >= 10, "{} commands", all.len());
        for (path, help) in all {
            let name = format!("auditfwd {}", path.join(" "));
            let examples: Vec<Vec<&str>> = help
                .split_once("Examples:\n")
                .unwrap_or_else(|| panic!("`{name} --help` shows no examples"))
                .1
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .filter(|l| !l.trim_start().starts_with('#'))
                // Leading `VAR=value` assignments are the shell's.
                .map(|l| {
                    l.split_whitespace()
                        .skip_while(|word| word.contains('='))
                        .collect()
                })
                .collect();
            assert!(!examples.is_empty(), "`{name} --help`: no example lines");
            for words in examples {
                assert_eq!(words.first(), Some(&"auditfwd"), "{name}: {words:?}");
                assert!(
                    words[1..].starts_with(&path.iter().map(String::as_str).collect::<Vec<_>>()),
                    "an example of `{name}` runs another command: {words:?}"
                );
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!(
                        "example of `{name}` does not parse: {}\n{e}",
                        words.join(" ")
                    );
                }
            }
        }
    }
}
