//! Metrics and health: the Prometheus registry every component counts
//! into, the health board, the HTTP listener serving `/metrics`, `/livez`
//! and `/readyz`, and the probe that asks it from outside (`auditfwd
//! probe`, the Docker health check). Log lines are [`crate::logging`]'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Labels of per-source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source name.
    pub source: String,
}

/// Labels of API request outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// Source name.
    pub source: String,
    /// `ok`, `rate_limited`, `server_error`, `timeout`, `transport`,
    /// `bad_body`, `unauthorized`, ...
    pub outcome: String,
}

/// Labels of outcomes without a source (configuration reloads).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `applied` or `refused`.
    pub outcome: String,
}

/// Labels of per-sink metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// Sink name.
    pub sink: String,
}

/// Every metric auditfwd exports. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Events returned by the API (before deduplication).
    pub events_received: Family<SourceLabel, Counter>,
    /// Events acknowledged by every sink and checkpointed.
    pub events_delivered: Family<SourceLabel, Counter>,
    /// Events skipped as already delivered.
    pub events_duplicate: Family<SourceLabel, Counter>,
    /// Elements written to the dead-letter file.
    pub events_dead_lettered: Family<SourceLabel, Counter>,
    /// Events delivered again because their id came back with new content.
    pub events_reused_id: Family<SourceLabel, Counter>,
    /// Events dated outside every window (far past or future), delivered.
    pub events_out_of_window: Family<SourceLabel, Counter>,
    /// Tie groups larger than a page, read by sampling.
    pub tie_groups_oversized: Family<SourceLabel, Counter>,
    /// Pages fetched.
    pub pages_fetched: Family<SourceLabel, Counter>,
    /// API requests by outcome.
    pub api_requests: Family<RequestLabel, Counter>,
    /// Seconds between now and the cursor's watermark.
    pub cursor_lag_seconds: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    /// Events still to read in the current pass (from `pagination.total`).
    pub backlog_events: Family<SourceLabel, Gauge>,
    /// 1 while the source polls, 0 once it stopped on an error.
    pub source_up: Family<SourceLabel, Gauge>,
    /// Records acknowledged by a sink.
    pub sink_records: Family<SinkLabel, Counter>,
    /// Failed delivery attempts of a sink (each is retried).
    pub sink_errors: Family<SinkLabel, Counter>,
    /// Records a sink delivered cut short (kept whole as dead letters).
    pub sink_truncated: Family<SinkLabel, Counter>,
    /// Enrichment lookups by source and outcome: `cache_hit`, `found`,
    /// `not_found`, `error`, `timeout`, `unusable_id` (see `enrich`).
    pub enrich_lookups: Family<RequestLabel, Counter>,
    /// Times a source's poller started: 1 at start, one more for each
    /// restart a reload caused (a changed source) or retried.
    pub source_starts: Family<SourceLabel, Counter>,
    /// Configuration reloads by outcome (`applied`, `refused`).
    pub config_reloads: Family<OutcomeLabel, Counter>,
    /// Fleet mode: coordination partitions this replica owns.
    pub fleet_partitions: Gauge,
    /// Fleet mode: configured sources this replica owns (polls).
    pub fleet_sources: Gauge,
    /// Fleet mode: ownership changes by `outcome` (`assigned`, `revoked`).
    pub fleet_rebalances: Family<OutcomeLabel, Counter>,
    /// Fleet mode: seconds from a revocation until its sources were
    /// drained and checkpointed (what the next owner waits for).
    pub fleet_drain_seconds: Histogram,
    /// Fleet mode: seconds to load and claim a source's cursor from the
    /// state topic when it is assigned.
    pub fleet_claim_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("auditfwd");
        macro_rules! reg {
            ($name:literal, $help:literal) => {{
                let family = Family::default();
                registry.register($name, $help, family.clone());
                family
            }};
        }
        let events_received = reg!(
            "events_received",
            "Events returned by the API, before deduplication"
        );
        let events_delivered = reg!(
            "events_delivered",
            "Events acknowledged by every sink and checkpointed"
        );
        let events_duplicate = reg!(
            "events_duplicate",
            "Events skipped because they were already delivered"
        );
        let events_dead_lettered = reg!(
            "events_dead_lettered",
            "Events written to the dead-letter file"
        );
        let events_reused_id = reg!(
            "events_reused_id",
            "Events delivered again because their id came back with other content"
        );
        let events_out_of_window = reg!(
            "events_out_of_window",
            "Events dated far outside the window (past or future), delivered and never moving the cursor"
        );
        let tie_groups_oversized = reg!(
            "tie_groups_oversized",
            "Groups of events on one created_at larger than a page, read by sampling"
        );
        let pages_fetched = reg!("pages_fetched", "Audit-log pages fetched");
        let api_requests = reg!("api_requests", "API requests by outcome");
        let cursor_lag_seconds = reg!(
            "cursor_lag_seconds",
            "Seconds between now and the cursor watermark"
        );
        let backlog_events = reg!("backlog_events", "Events still to read in the current pass");
        let source_up = reg!(
            "source_up",
            "1 while the source polls, 0 after it stopped on an error"
        );
        let sink_records = reg!("sink_records", "Records acknowledged by a sink");
        let sink_errors = reg!("sink_errors", "Failed sink delivery attempts (retried)");
        let sink_truncated = reg!(
            "sink_truncated",
            "Records delivered cut to a size limit (kept whole in the dead-letter file)"
        );
        let enrich_lookups = reg!("enrich_lookups", "User enrichment lookups by outcome");
        let source_starts = reg!(
            "source_starts",
            "Times a source's poller started (at start and when a reload restarted it)"
        );
        let config_reloads = reg!(
            "config_reloads",
            "Configuration reloads (SIGHUP) by outcome: applied, or refused (the old configuration stays)"
        );
        let fleet_partitions = Gauge::default();
        registry.register(
            "fleet_partitions",
            "Fleet mode: coordination partitions this replica owns",
            fleet_partitions.clone(),
        );
        let fleet_sources = Gauge::default();
        registry.register(
            "fleet_sources",
            "Fleet mode: configured sources this replica owns and polls",
            fleet_sources.clone(),
        );
        let fleet_rebalances = reg!(
            "fleet_rebalances",
            "Fleet mode: changes of this replica's partitions, by outcome: assigned, revoked"
        );
        let handover_buckets =
            || Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
        let fleet_drain_seconds = handover_buckets();
        registry.register(
            "fleet_drain_seconds",
            "Fleet mode: seconds from a revocation until its sources drained and checkpointed",
            fleet_drain_seconds.clone(),
        );
        let fleet_claim_seconds = handover_buckets();
        registry.register(
            "fleet_claim_seconds",
            "Fleet mode: seconds to load and claim a source's cursor from the state topic",
            fleet_claim_seconds.clone(),
        );
        Self {
            registry: Arc::new(registry),
            events_received,
            events_delivered,
            events_duplicate,
            events_dead_lettered,
            events_reused_id,
            events_out_of_window,
            tie_groups_oversized,
            pages_fetched,
            api_requests,
            cursor_lag_seconds,
            backlog_events,
            source_up,
            sink_records,
            sink_errors,
            sink_truncated,
            enrich_lookups,
            source_starts,
            config_reloads,
            fleet_partitions,
            fleet_sources,
            fleet_rebalances,
            fleet_drain_seconds,
            fleet_claim_seconds,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// The label of `source`.
    pub fn source(source: &str) -> SourceLabel {
        SourceLabel {
            source: source.to_string(),
        }
    }

    /// The label of `sink`.
    pub fn sink(sink: &str) -> SinkLabel {
        SinkLabel {
            sink: sink.to_string(),
        }
    }

    /// The metric handles of `source`, resolved now (its series appear,
    /// at 0, but for the lag and the outcome counters: those appear at
    /// their first count).
    pub fn for_source(&self, source: &str) -> SourceMetrics {
        let label = Self::source(source);
        SourceMetrics {
            received: self.events_received.get_or_create(&label).clone(),
            delivered: self.events_delivered.get_or_create(&label).clone(),
            duplicate: self.events_duplicate.get_or_create(&label).clone(),
            reused_id: self.events_reused_id.get_or_create(&label).clone(),
            out_of_window: self.events_out_of_window.get_or_create(&label).clone(),
            tie_groups: self.tie_groups_oversized.get_or_create(&label).clone(),
            pages: self.pages_fetched.get_or_create(&label).clone(),
            backlog: self.backlog_events.get_or_create(&label).clone(),
            up: self.source_up.get_or_create(&label).clone(),
            requests: OutcomeCounters::new(&self.api_requests, source),
            lag: None,
            lag_family: self.cursor_lag_seconds.clone(),
            label,
        }
    }

    /// The enrichment lookups of `source`, by outcome.
    pub fn lookups(&self, source: &str) -> OutcomeCounters {
        OutcomeCounters::new(&self.enrich_lookups, source)
    }
}

/// One source's metric handles, resolved once when its poller starts:
/// counting is then an atomic add, not a label built and looked up.
pub struct SourceMetrics {
    /// `events_received`.
    pub received: Counter,
    /// `events_delivered`.
    pub delivered: Counter,
    /// `events_duplicate`.
    pub duplicate: Counter,
    /// `events_reused_id`.
    pub reused_id: Counter,
    /// `events_out_of_window`.
    pub out_of_window: Counter,
    /// `tie_groups_oversized`.
    pub tie_groups: Counter,
    /// `pages_fetched`.
    pub pages: Counter,
    /// `backlog_events`.
    pub backlog: Gauge,
    /// `source_up`.
    pub up: Gauge,
    /// `api_requests`, by outcome.
    pub requests: OutcomeCounters,
    /// `cursor_lag_seconds`, created at the first report: a source starting
    /// at the beginning has no lag to tell before its first pass ends
    /// (absent, not 0).
    lag: Option<Gauge<f64, AtomicU64>>,
    lag_family: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    label: SourceLabel,
}

impl SourceMetrics {
    /// Sets `cursor_lag_seconds`, creating the series the first time.
    pub fn set_lag(&mut self, seconds: f64) {
        let (family, label) = (&self.lag_family, &self.label);
        self.lag
            .get_or_insert_with(|| family.get_or_create(label).clone())
            .set(seconds);
    }
}

/// One source's counters of a family labelled by outcome (API requests,
/// enrichment lookups). The outcomes are a small fixed set of names: each
/// is resolved at its first count (so only outcomes that happened have a
/// series), then reused. Cheap to clone; clones share the handles.
#[derive(Clone)]
pub struct OutcomeCounters {
    family: Family<RequestLabel, Counter>,
    source: String,
    resolved: Arc<Mutex<Vec<(&'static str, Counter)>>>,
}

impl OutcomeCounters {
    fn new(family: &Family<RequestLabel, Counter>, source: &str) -> Self {
        Self {
            family: family.clone(),
            source: source.to_string(),
            resolved: Arc::default(),
        }
    }

    /// Adds `n` to `outcome`.
    pub fn inc_by(&self, outcome: &'static str, n: u64) {
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        match resolved.iter().find(|(o, _)| *o == outcome) {
            Some((_, counter)) => {
                counter.inc_by(n);
            }
            None => {
                let counter = self
                    .family
                    .get_or_create(&RequestLabel {
                        source: self.source.clone(),
                        outcome: outcome.to_string(),
                    })
                    .clone();
                counter.inc_by(n);
                resolved.push((outcome, counter));
            }
        };
    }

    /// Adds one to `outcome`.
    pub fn inc(&self, outcome: &'static str) {
        self.inc_by(outcome, 1);
    }
}

/// The state of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Ok,
    /// Working around a problem (retrying).
    Degraded(String),
    /// Stopped; an operator must act.
    Failed(String),
}

/// Health of every source and sink, as `/health` reports it.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, Status>>>);

impl Health {
    /// Records the status of `component` (`source:acme`, `sink:files`).
    pub fn set(&self, component: &str, status: Status) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(component) != Some(&status) {
            map.insert(component.to_string(), status);
        }
    }

    /// Takes `component` off the board (a source a reload removed).
    pub fn remove(&self, component: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(component);
    }

    /// The status of `component`, if it reported one.
    pub fn get(&self, component: &str) -> Option<Status> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(component)
            .cloned()
    }

    /// True when every component works (none degraded or failed): what
    /// `/readyz` answers 200 to.
    pub fn is_ready(&self) -> bool {
        self.snapshot().values().all(|s| *s == Status::Ok)
    }

    /// Every component's status.
    pub fn snapshot(&self) -> BTreeMap<String, Status> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when no component has failed.
    pub fn is_healthy(&self) -> bool {
        !self
            .snapshot()
            .values()
            .any(|s| matches!(s, Status::Failed(_)))
    }
}

/// Serves `/metrics`, `/livez`, `/readyz` and `/health` (an alias of
/// `/readyz`) on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // Readiness: 200 when every source and sink works, 503 otherwise, with
    // each component's status and reason. `healthy` is false only when one
    // has failed for good (an operator must act).
    let ready = move || {
        let components = health.snapshot();
        let ready = components.values().all(|s| *s == Status::Ok);
        let healthy = !components.values().any(|s| matches!(s, Status::Failed(_)));
        let body =
            serde_json::json!({ "ready": ready, "healthy": healthy, "components": components });
        async move {
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, axum::Json(body))
        }
    };
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        // Liveness: the process answers. A revoked key or a dead sink is
        // not cured by a restart, so they never fail this probe.
        .route(
            "/livez",
            get(|| async { axum::Json(serde_json::json!({ "alive": true })) }),
        )
        .route("/readyz", get(ready.clone()))
        .route("/health", get(ready));
    tokio::spawn(accept_loop(listener, app, shutdown));
    Ok(bound)
}

/// Connections the telemetry listener serves at once; more are closed on
/// accept, so a flood of idle connections can not take the file
/// descriptors the sinks and the state need.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a connection may take to send its request headers (and how
/// long an idle keep-alive connection is kept).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest a connection lives, whatever it does.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // EMFILE and friends: wait instead of spinning.
                    tracing::warn!(error = %error, "telemetry listener cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    limit = MAX_CONNECTIONS,
                    "telemetry listener at its connection limit; closing new connections"
                );
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// Why `auditfwd probe` failed; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not an http(s) URL.
    #[error(
        "`{url}` is not an http:// or https:// URL; give one such as http://127.0.0.1:9898/livez"
    )]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// Nothing answered (connection refused, unknown host, TLS failure).
    #[error(
        "cannot reach {url}: {cause}; is auditfwd running, with [telemetry] listen set to this address?"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The innermost error.
        cause: String,
    },
    /// Connected, but no full answer in time.
    #[error(
        "{url} did not answer within {}; the process may be stuck (raise --timeout if it is only slow)",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The URL.
        url: String,
        /// The time allowed.
        timeout: std::time::Duration,
    },
    /// An answer other than 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The start of the body (`/readyz` names what is not ready).
        body: String,
    },
}

/// GETs `url` (the health check of a container image without curl):
/// `Ok` with the status line on a 2xx answer within `timeout`. Proxies from
/// the environment are ignored: the probe is meant for the local process.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<String, ProbeError> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ProbeError::BadUrl {
            url: url.to_string(),
        })?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|error| ProbeError::Unreachable {
            url: url.to_string(),
            cause: innermost(&error),
        })?;
    let failed = |error: reqwest::Error| {
        if error.is_timeout() {
            ProbeError::Timeout {
                url: url.to_string(),
                timeout,
            }
        } else {
            ProbeError::Unreachable {
                url: url.to_string(),
                cause: innermost(&error),
            }
        }
    };
    let response = client.get(parsed).send().await.map_err(failed)?;
    let status = response.status();
    if status.is_success() {
        return Ok(format!("{url}: {status}"));
    }
    let body = response.text().await.unwrap_or_default();
    let mut body: String = body.trim().chars().take(500).collect();
    if body.is_empty() {
        body = "(no body)".into();
    }
    Err(ProbeError::Status {
        url: url.to_string(),
        status,
        body,
    })
}

/// The last error of a chain: "Connection refused (os error 111)" rather
/// than "error sending request".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_labels() {
        let m = Metrics::new();
        m.events_delivered
            .get_or_create(&Metrics::source("acme"))
            .inc_by(3);
        let requests = m.for_source("acme").requests;
        requests.inc("rate_limited");
        requests.inc("rate_limited");
        let text = m.encode();
        assert!(
            text.contains("auditfwd_events_delivered_total{source=\"acme\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "auditfwd_api_requests_total{source=\"acme\",outcome=\"rate_limited\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn health_turns_red_on_failure() {
        let h = Health::default();
        h.set("source:acme", Status::Ok);
        assert!(h.is_healthy());
        h.set("sink:kafka", Status::Degraded("retrying".into()));
        assert!(h.is_healthy());
        h.set("source:acme", Status::Failed("401".into()));
        assert!(!h.is_healthy());
    }
}
