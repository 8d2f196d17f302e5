//! `auditfwd demo`: the whole product on the built-in simulated tenant.
//!
//! Starts a simulated tenant in-process (with a backlog, live and late
//! inserts, ties, hostile and malformed events and a share of failures),
//! forwards it into `./auditfwd-out/` with a file sink (JSON, enriched with
//! the acting user) and an OCSF file sink, prints a live
//! summary, and at the end checks the output against the simulator's ground
//! truth: every event delivered, none twice, the malformed ones in the
//! dead-letter file.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::retry::RetryPolicy;
use crate::telemetry::Metrics;
use auditfwd_sim::{Expect, SimConfig, Simulator};

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Stop by itself after this long (e.g. "30s"); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Output directory (cleared at start if it holds an earlier demo).
    #[arg(long, default_value = "auditfwd-out")]
    pub out: PathBuf,
    /// Seed of the simulated tenant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Events already in the tenant when the demo starts.
    #[arg(long, default_value_t = 3000)]
    pub backlog: usize,
    /// New events per second.
    #[arg(long, default_value_t = 25.0)]
    pub insert_rate: f64,
    /// A nastier tenant still: pages capped at 40 events whatever `limit`
    /// asks, a `pagination.total` capped at 500, created_at shown to the
    /// second only, and more bulk operations and bogus times.
    #[arg(long)]
    pub chaos: bool,
}

/// What the demo verified at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    /// Events the tenant holds that must be delivered.
    pub expected: usize,
    /// Records found in the output.
    pub delivered: usize,
    /// Expected events not found.
    pub missing: usize,
    /// Ids found more often than the tenant holds them, or never served.
    pub duplicates: usize,
    /// Malformed events in the tenant.
    pub expected_dead: usize,
    /// Lines in the dead-letter file.
    pub dead_lines: usize,
}

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The output directory exists and is not an earlier demo's.
    #[error("{0} exists and was not made by `auditfwd demo`; remove it or pass --out DIR")]
    ForeignOut(PathBuf),
    /// File system trouble.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The simulator or the forwarder failed.
    #[error("{0}")]
    Run(String),
}

const MARKER: &str = ".auditfwd-demo";

fn prepare_out(out: &Path) -> Result<(), DemoError> {
    let io = |error| DemoError::Io {
        path: out.to_path_buf(),
        error,
    };
    if out.exists() {
        if !out.join(MARKER).exists() {
            return Err(DemoError::ForeignOut(out.to_path_buf()));
        }
        fs::remove_dir_all(out).map_err(io)?;
    }
    fs::create_dir_all(out).map_err(io)?;
    fs::write(
        out.join(MARKER),
        b"output of `auditfwd demo`; safe to delete\n",
    )
    .map_err(io)
}

/// The demo's tenant: adversarial but not hopeless (or hopeless with
/// `--chaos`).
fn tenant(options: &DemoOptions) -> SimConfig {
    let base = SimConfig {
        backlog: options.backlog,
        insert_rate: options.insert_rate,
        error_rate: 0.03,
        throttle_rate: 0.03,
        drop_rate: 0.01,
        truncate_rate: 0.01,
        latency: Duration::from_millis(20),
        ..SimConfig::adversarial(options.seed)
    };
    if !options.chaos {
        return base;
    }
    SimConfig {
        page_cap: Some(40),
        total: auditfwd_sim::TotalMode::Capped(500),
        coarse_time: true,
        burst_ratio: 0.01,
        bogus_time_ratio: 0.02,
        reuse_ratio: 0.01,
        ..base
    }
}

fn config_text(base_url: &str, api_key: &str, out: &Path) -> String {
    let out = out
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"
[state]
dir = "{out}/state"

[[source]]
name = "demo-tenant"
base_url = "{base_url}"
api_key = "{api_key}"
allow_http = true
start_at = "beginning"
poll_interval = "500ms"
lookback = "5s"
late_sweep = "3s"
rate_limit = {{ requests_per_second = 50, burst = 20 }}
retry = {{ initial_backoff = "20ms", max_backoff = "2s" }}

[source.enrich]
preset = "peoplelens-v1"
timeout = "1s"

[[sink]]
name = "files"
type = "file"
path = "{out}/{{source}}/%Y-%m-%d.jsonl"

[[sink]]
name = "ocsf-files"
type = "file"
format = "ocsf"
path = "{out}/ocsf/{{source}}/%Y-%m-%d.ocsf.jsonl"
"#
    )
}

/// Runs the demo; returns what it verified.
pub async fn run(
    options: DemoOptions,
    interrupt: CancellationToken,
) -> Result<DemoReport, DemoError> {
    prepare_out(&options.out)?;
    let sim = Simulator::start(tenant(&options), "127.0.0.1:0".parse().expect("addr"))
        .await
        .map_err(|e| DemoError::Run(format!("cannot start the simulated tenant: {e}")))?;
    let text = config_text(&sim.base_url(), &sim.api_key(), &options.out);
    let config = Config::parse(&text, Path::new("<demo>"), Path::new("."), &|_| None)
        .map_err(|e| DemoError::Run(e.to_string()))?;
    println!(
        "auditfwd demo: simulated tenant at {} ({} events in backlog, {} new/s, with ties in a fresh order per request, bulk operations, late events, bogus times, reused ids, hostile, malformed and non-UTF-8 events, 5xx, 429, drops, truncated and endless bodies{})",
        sim.base_url(),
        options.backlog,
        options.insert_rate,
        if options.chaos {
            "; pages capped at 40, totals capped at 500, times shown to the second"
        } else {
            ""
        }
    );
    println!(
        "forwarding into {}/demo-tenant/ (state in {}/state)",
        options.out.display(),
        options.out.display()
    );

    let app = App::new(config).with_sink_retry(RetryPolicy::FAST);
    let metrics = app.metrics();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = interrupt.cancelled() => break,
        }
        print_summary(&metrics, started.elapsed(), sim.truth().len());
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }

    // Stop the tenant's inserts and let the forwarder catch up, then check.
    sim.freeze();
    let truth = sim.truth();
    let expected: HashMap<&str, ()> = truth
        .iter()
        .filter(|e| e.expect == Expect::Deliver)
        .filter_map(|e| e.id.as_deref().map(|id| (id, ())))
        .collect();
    println!("stopping the tenant's inserts; waiting for the forwarder to catch up...");
    let catch_up = Instant::now();
    let mut report = verify(&options.out, &truth);
    while report.missing > 0
        && catch_up.elapsed() < Duration::from_secs(30)
        && !interrupt.is_cancelled()
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = verify(&options.out, &truth);
    }
    shutdown.cancel();
    match running.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(DemoError::Run(e.to_string())),
        Err(e) => return Err(DemoError::Run(e.to_string())),
    }
    sim.stop().await;
    let report = verify(&options.out, &truth);
    print_summary(&metrics, started.elapsed(), expected.len());
    println!(
        "\nverified against the tenant's ground truth: {} of {} events delivered, {} missing, {} duplicates; {} malformed events, {} dead-letter lines",
        report.delivered,
        report.expected,
        report.missing,
        report.duplicates,
        report.expected_dead,
        report.dead_lines
    );
    println!(
        "output: {out}/demo-tenant/*.jsonl (JSON, enriched)  {out}/ocsf/demo-tenant/*.ocsf.jsonl (OCSF 1.8.0)  dead letters: {out}/state/dead-letter/demo-tenant.jsonl",
        out = options.out.display()
    );
    Ok(report)
}

fn print_summary(metrics: &Metrics, elapsed: Duration, tenant_events: usize) {
    let src = Metrics::source("demo-tenant");
    let retries: u64 = [
        "rate_limited",
        "server_error",
        "timeout",
        "transport",
        "bad_body",
    ]
    .iter()
    .map(|o| {
        metrics
            .api_requests
            .get_or_create(&crate::telemetry::RequestLabel {
                source: "demo-tenant".into(),
                outcome: (*o).into(),
            })
            .get()
    })
    .sum();
    println!(
        "[{:>4}s] delivered {:>6} (tenant has {:>6}) | pages {:>5} | duplicates skipped {:>5} | dead letters {:>3} | retried requests {:>4} | backlog {:>6} | lag {:>6}",
        elapsed.as_secs(),
        metrics.events_delivered.get_or_create(&src).get(),
        tenant_events,
        metrics.pages_fetched.get_or_create(&src).get(),
        metrics.events_duplicate.get_or_create(&src).get(),
        metrics.events_dead_lettered.get_or_create(&src).get(),
        retries,
        metrics.backlog_events.get_or_create(&src).get(),
        metrics
            .cursor_lag_seconds
            .get(&src)
            .map_or_else(|| "-".to_string(), |lag| format!("{:.1}s", lag.get())),
    );
    let _ = std::io::stdout().flush();
}

/// Counts the ids in the demo output against the truth.
fn verify(out: &Path, truth: &[auditfwd_sim::TruthEvent]) -> DemoReport {
    let mut counts: HashMap<String, usize> = HashMap::new();
    // The JSON sink's files (the OCSF sink writes under out/ocsf/).
    if let Ok(entries) = fs::read_dir(out.join("demo-tenant")) {
        for entry in entries.flatten() {
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(id) = v.get("id").and_then(|i| i.as_str())
                {
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
        }
    }
    let verdict = auditfwd_sim::Verdict::of(truth, &counts);
    let dead_lines = fs::read_to_string(out.join("state/dead-letter/demo-tenant.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    DemoReport {
        expected: verdict.expected,
        delivered: counts.values().sum(),
        missing: verdict.missing.len(),
        duplicates: verdict.duplicates.len() + verdict.unexpected.len(),
        expected_dead: truth
            .iter()
            .filter(|e| e.expect == Expect::DeadLetter)
            .count(),
        dead_lines,
    }
}
