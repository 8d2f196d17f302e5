//! Wiring: builds the sinks and what every source shares from a validated
//! [`Config`] and runs them until shutdown.
//!
//! `App::run(shutdown)` is the whole daemon. Sinks are built once; the
//! sources run under a [`crate::supervisor::Supervisor`], which starts each
//! one ([`crate::source::start`]) and applies reloads ([`Control::Reload`])
//! source by source. On shutdown every
//! source finishes the batch in flight and checkpoints, then every sink
//! closes.

use std::path::PathBuf;

use auditfwd_sink::Sink;
use chrono::Utc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, HttpPool};
use crate::logging::Console;
use crate::pipeline::{self, Control, Route, SinkHandle};
use crate::rate_limit;
use crate::retry::RetryPolicy;
use crate::sinks;
use crate::source::start::{SourceContext, Stores};
use crate::supervisor::{Supervisor, SupervisorError, SupervisorParts};
use crate::telemetry::{self, Health, Metrics, Status};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A sink could not be built.
    #[error(transparent)]
    Sink(#[from] sinks::BuildError),
    /// Every source stopped on an error; nothing is left to do.
    #[error(transparent)]
    Sources(#[from] SupervisorError),
    /// Fleet mode: the topics, the state topic or the group failed.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The metrics listener could not bind.
    #[error("cannot listen on {addr} for metrics ({error}); change telemetry.listen")]
    Listen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
}

/// The daemon.
pub struct App {
    config: Config,
    extra_sinks: Vec<(Route, Box<dyn Sink>)>,
    metrics: Metrics,
    health: Health,
    control: broadcast::Sender<Control>,
    sink_retry: RetryPolicy,
    console: Console,
    reload_from: Option<PathBuf>,
}

impl App {
    /// An app for `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            extra_sinks: Vec::new(),
            metrics: Metrics::new(),
            health: Health::default(),
            control: broadcast::channel(4).0,
            sink_retry: RetryPolicy::DEFAULT,
            console: Console::default(),
            reload_from: None,
        }
    }

    /// Re-reads `file` (the file `config` came from, with its
    /// `sources_dir`) on [`Control::Reload`]. Without it a reload is
    /// refused with a warning.
    pub fn reload_from(mut self, file: impl Into<PathBuf>) -> Self {
        self.reload_from = Some(file.into());
        self
    }

    /// Adds a sink built elsewhere (tests, embedding).
    pub fn with_sink(mut self, route: Route, sink: Box<dyn Sink>) -> Self {
        self.extra_sinks.push((route, sink));
        self
    }

    /// Uses `policy` for sink retries (tests use [`RetryPolicy::FAST`]).
    pub fn with_sink_retry(mut self, policy: RetryPolicy) -> Self {
        self.sink_retry = policy;
        self
    }

    /// Shows backfill progress as bars on `console` when it draws them
    /// (the daemon on a terminal); without, progress is logged.
    pub fn with_console(mut self, console: Console) -> Self {
        self.console = console;
        self
    }

    /// The metrics every component counts into.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The health board.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Sends signals: reopen to every sink, reload to the sources.
    pub fn control(&self) -> broadcast::Sender<Control> {
        self.control.clone()
    }

    /// Runs until `shutdown` is cancelled (or every source failed).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let App {
            config,
            extra_sinks,
            metrics,
            health,
            control,
            sink_retry,
            console,
            reload_from,
        } = self;

        if let Some(addr) = config.telemetry.listen {
            let bound = telemetry::serve(addr, metrics.clone(), health.clone(), shutdown.clone())
                .await
                .map_err(|error| AppError::Listen { addr, error })?;
            tracing::info!(%bound, "serving /metrics, /livez, /readyz and /health");
        }

        // Sinks: build, health-check, start.
        let mut built: Vec<(Route, Box<dyn Sink>)> = Vec::new();
        for sink_config in &config.sinks {
            let sources = feeding(&config, sink_config);
            built.push((
                sinks::route(sink_config),
                sinks::build(sink_config, sources)?,
            ));
        }
        built.extend(extra_sinks);
        // Sinks stop only when no source needs them any more, so they are
        // not tied to `shutdown` except for abandoning retries.
        let mut sink_tasks = Vec::new();
        let mut handles: Vec<SinkHandle> = Vec::new();
        for (route, mut sink) in built {
            let status = match sink.healthcheck().await {
                Ok(()) => Status::Ok,
                Err(error) => {
                    tracing::error!(sink = %route.name, error = %error, "sink health check failed; deliveries will retry until it works");
                    Status::Degraded(format!("health check: {error}"))
                }
            };
            health.set(&format!("sink:{}", route.name), status);
            let (handle, task) = pipeline::spawn_sink(
                sink,
                route,
                sink_retry,
                metrics.clone(),
                health.clone(),
                control.subscribe(),
                shutdown.clone(),
            );
            handles.push(handle);
            sink_tasks.push(task);
        }

        // Sources: the supervisor owns the sink handles, so the sinks stop
        // once it returned (every poller ended) and dropped them.
        // Sources share HTTP clients and the cap on requests in flight.
        // Fleet mode: join the group; the supervisor runs the sources of
        // the partitions it is given, with cursors on the state topic.
        #[cfg(feature = "kafka")]
        let joined = match &config.fleet {
            Some(fleet) => Some(crate::fleet::join(fleet).await?),
            None => None,
        };
        #[cfg(feature = "kafka")]
        let (stores, fleet, member) = match joined {
            Some(j) => (
                Stores::Kafka(j.state),
                Some(crate::supervisor::Fleet::new(j.events, j.partitions)),
                Some(j.member),
            ),
            None => (Stores::Files, None, None),
        };
        #[cfg(not(feature = "kafka"))]
        let (stores, fleet) = (Stores::Files, None);
        let mut http = HttpPool::new(
            config.limits.max_requests_in_flight,
            crate::limits::api_hosts(&config),
        );
        if let Some(fleet) = &config.fleet {
            http = http.for_replica(&fleet.replica);
        }
        let sources = SourceContext {
            state: config.state.clone(),
            stores,
            http,
            sinks: handles,
            metrics,
            health,
            console,
        };
        let supervisor = Supervisor::new(SupervisorParts {
            config,
            sources,
            shutdown,
            reload_from,
            fleet,
        });
        let result = supervisor.run(control.subscribe()).await;
        // Every source drained and checkpointed: leave the group now, so
        // the others take the sources over at once.
        #[cfg(feature = "kafka")]
        drop(member);
        for task in sink_tasks {
            let _ = task.await;
        }
        result.map_err(AppError::from)
    }
}

/// What `auditfwd check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Everything reachable and usable.
    pub ok: bool,
    /// One line per check.
    pub text: String,
}

/// Checks a configuration against the world: each source's API answers and
/// accepts the key, the state directory is writable, each sink is healthy.
pub async fn check(config: &Config) -> CheckReport {
    use crate::source::client::{PageQuery, audit_page};
    let mut ok = true;
    let mut text = String::from("configuration: valid\n");
    let pool = HttpPool::new(
        config.limits.max_requests_in_flight,
        crate::limits::api_hosts(config),
    );
    for source in &config.sources {
        let limiter = rate_limit::limiter(source.requests_per_second, source.burst);
        let line = match pool.client(&source.endpoint(), limiter) {
            Err(e) => Err(format!(
                "cannot build the HTTP client: {}",
                http::error_chain(&e)
            )),
            Ok(client) => {
                let query = PageQuery {
                    since: source.start_at.resolve(Utc::now()),
                    limit: 1,
                    offset: 0,
                    action: None,
                };
                match audit_page(&client, &query).await {
                    Ok(fetched) => Ok(match fetched.page.total {
                        Some(total) => {
                            format!("API reachable, key accepted, {total} events since start_at")
                        }
                        None => "API reachable, key accepted".to_string(),
                    }),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match line {
            Ok(msg) => text.push_str(&format!("source {}: ok: {msg}\n", source.name)),
            Err(msg) => {
                ok = false;
                text.push_str(&format!("source {}: FAILED: {msg}\n", source.name));
            }
        }
    }
    match writable_dir(&config.state.dir) {
        Ok(()) => text.push_str(&format!("state dir {}: ok\n", config.state.dir.display())),
        Err(e) => {
            ok = false;
            text.push_str(&format!(
                "state dir {}: FAILED: {e}; create it and let the auditfwd user write it\n",
                config.state.dir.display()
            ));
        }
    }
    for sink_config in &config.sinks {
        let result = match sinks::build(sink_config, feeding(config, sink_config)) {
            Ok(mut sink) => sink.healthcheck().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => text.push_str(&format!(
                "sink {} ({}): ok\n",
                sink_config.name,
                sink_config.kind.type_name()
            )),
            Err(msg) => {
                ok = false;
                text.push_str(&format!(
                    "sink {} ({}): FAILED: {msg}\n",
                    sink_config.name,
                    sink_config.kind.type_name()
                ));
            }
        }
    }
    CheckReport { ok, text }
}

/// The names of the sources a sink takes events from.
fn feeding(config: &Config, sink: &crate::config::SinkConfig) -> Vec<String> {
    config
        .sources
        .iter()
        .filter(|s| sink.accepts_source(&s.name))
        .map(|s| s.name.clone())
        .collect()
}

fn writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => return Ok(()),
        }
    }
    let probe = existing.join(format!(".auditfwd-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}
