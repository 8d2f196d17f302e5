//! Shared test support: the simulated tenant, forwarder configs pointing at
//! it, reading what sinks wrote, and comparing it with the ground truth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditfwd::app::{App, AppError};
use auditfwd::config::Config;
use auditfwd::retry::RetryPolicy;
use auditfwd::telemetry::{Health, Metrics};
use auditfwd_sim::{Expect, SimConfig, Simulator, TruthEvent, Verdict};
use auditfwd_testkit::wait_for;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod binary;
pub mod http;

/// Starts a simulated tenant on a free loopback port.
pub async fn tenant(config: SimConfig) -> Simulator {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Logs to stderr when `AUDITFWD_TEST_LOG` holds a filter (e.g.
/// `auditfwd=debug`), to see what the forwarder did in a failing test.
pub fn log_if_asked() {
    if let Ok(filter) = std::env::var("AUDITFWD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Prints, for each missing id, when the tenant created it and when its
/// listing first showed it (relative to `since_ms`), to tell a late event
/// from a lost one.
pub fn explain_missing(truth: &[TruthEvent], missing: &[String], since_ms: i64) {
    for id in missing {
        for e in truth.iter().filter(|e| e.id.as_deref() == Some(id)) {
            eprintln!(
                "missing {id}: seq {}, created at +{} ms, shown at +{} ms ({} ms late){}",
                e.seq,
                e.created_ms - since_ms,
                e.visible_ms - since_ms,
                e.visible_ms - e.created_ms,
                if e.reused { ", reuses an id" } else { "" }
            );
        }
    }
}

/// Settings of a test forwarder config.
pub struct Setup<'a> {
    pub source: &'a str,
    pub page_size: u32,
    pub lookback: &'a str,
    pub poll_interval: &'a str,
    pub out_path: String,
    pub rate_limit: &'a str,
    pub extra_source: &'a str,
    pub extra: &'a str,
}

impl<'a> Setup<'a> {
    pub fn new(dir: &Path) -> Self {
        Self {
            source: "tenant",
            page_size: 100,
            lookback: "4s",
            poll_interval: "100ms",
            out_path: format!("{}/out/{{source}}/events.jsonl", dir.display()),
            rate_limit: "{ requests_per_second = 1000, burst = 100 }",
            extra_source: "",
            extra: "",
        }
    }
}

/// A forwarder config (TOML) for `sim`, writing to `dir`.
pub fn config_text(sim: &Simulator, dir: &Path, setup: &Setup<'_>) -> String {
    format!(
        r#"
[state]
dir = "{dir}/state"

[[source]]
name = "{source}"
base_url = "{base}"
api_key = "{key}"
allow_http = true
start_at = "beginning"
page_size = {page_size}
poll_interval = "{poll}"
lookback = "{lookback}"
late_sweep = "1s"
request_timeout = "5s"
rate_limit = {rate_limit}
retry = {{ initial_backoff = "5ms", max_backoff = "200ms" }}
{extra_source}

[[sink]]
name = "files"
type = "file"
path = "{out}"
{extra}
"#,
        dir = dir.display(),
        source = setup.source,
        base = sim.base_url(),
        key = sim.api_key(),
        page_size = setup.page_size,
        poll = setup.poll_interval,
        lookback = setup.lookback,
        rate_limit = setup.rate_limit,
        extra_source = setup.extra_source,
        out = setup.out_path,
        extra = setup.extra,
    )
}

pub fn parse_config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml"), Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A forwarder running in this process.
pub struct Forwarder {
    pub metrics: Metrics,
    pub health: Health,
    /// What SIGHUP sends: `Control::Reopen`, `Control::Reload`.
    pub control: tokio::sync::broadcast::Sender<auditfwd::pipeline::Control>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
}

impl Forwarder {
    pub fn start(app: App) -> Self {
        log_if_asked();
        let app = app.with_sink_retry(RetryPolicy::FAST);
        let shutdown = CancellationToken::new();
        let metrics = app.metrics();
        let health = app.health();
        let control = app.control();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            metrics,
            health,
            control,
            shutdown,
            task,
        }
    }

    /// A forwarder with `setup`, reading `sim` into `dir`.
    pub fn with_setup(sim: &Simulator, dir: &Path, setup: &Setup<'_>) -> Self {
        Self::start(App::new(parse_config(&config_text(sim, dir, setup))))
    }

    /// A forwarder with the default test setup and `extra` after its file
    /// sink's table (more keys of it, more tables), reading `sim` into `dir`.
    pub fn with_extra(sim: &Simulator, dir: &Path, extra: &str) -> Self {
        let setup = Setup {
            extra,
            ..Setup::new(dir)
        };
        Self::with_setup(sim, dir, &setup)
    }

    /// A forwarder with the default test setup, reading `sim` into `dir`.
    pub fn for_tenant(sim: &Simulator, dir: &Path) -> Self {
        Self::with_setup(sim, dir, &Setup::new(dir))
    }

    /// Whether `run` is still going (it has not stopped on an error).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Graceful shutdown; returns how `run` ended.
    pub async fn stop(self) -> Result<(), AppError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("forwarder stops within 30s")
            .expect("forwarder task does not panic")
    }
}

/// A forwarder of a tenant with `config` serving telemetry on
/// 127.0.0.1:`listen`; the tenant and the directory live as long as it.
pub async fn forwarder_with_telemetry(
    config: SimConfig,
    listen: u16,
) -> (Simulator, tempfile::TempDir, Forwarder) {
    let sim = tenant(config).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("\n[telemetry]\nlisten = \"127.0.0.1:{listen}\"\n");
    let fwd = Forwarder::with_extra(&sim, dir.path(), &extra);
    (sim, dir, fwd)
}

/// Every `*.jsonl` file under `dir`, recursively, in path order.
pub fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every complete JSON line written under `dir` (a line still being
/// written is skipped).
pub fn read_lines(dir: &Path) -> Vec<Value> {
    jsonl_files(dir)
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How often each id appears in `lines`.
pub fn id_counts(lines: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        let id = line["id"]
            .as_str()
            .expect("every record carries the event id")
            .to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

pub fn deliverable(truth: &[TruthEvent]) -> Vec<&str> {
    truth
        .iter()
        .filter(|e| e.expect == Expect::Deliver)
        .map(|e| e.id.as_deref().expect("deliverable events have ids"))
        .collect()
}

/// Waits until every deliverable event of `truth` is among the records
/// under `out`; returns whether that happened within `timeout`.
pub async fn all_delivered(truth: &[TruthEvent], out: &Path, timeout: Duration) -> bool {
    wait_for(timeout, || {
        Verdict::of(truth, &id_counts(&read_lines(out)))
            .missing
            .is_empty()
    })
    .await
}

/// Checks that the records under `out` hold every deliverable event of
/// `truth` exactly once, and nothing else.
pub fn assert_exactly_once(truth: &[TruthEvent], out: &Path) {
    Verdict::of(truth, &id_counts(&read_lines(out))).assert_exact();
}

/// Waits (`timeout` at most) until every deliverable event of `truth` is
/// among the records under `out`, stops `fwd`, and checks that each arrived
/// exactly once ([`assert_exactly_once`]).
pub async fn stop_once_delivered(
    fwd: Forwarder,
    truth: &[TruthEvent],
    out: &Path,
    timeout: Duration,
) {
    assert!(
        all_delivered(truth, out, timeout).await,
        "not every deliverable event arrived within {timeout:?}"
    );
    fwd.stop().await.unwrap();
    assert_exactly_once(truth, out);
}

/// Checks the `id_reused` marks: only an id the tenant reused (served
/// again with other content) is ever marked, and when versions of an id
/// were created close together (inside the dedup memory), the later
/// delivery is marked. The number `7` and the string `"7"` are two ids
/// (their records both say `"7"`): neither is a reuse of the other.
pub fn assert_reused_ids_marked(truth: &[TruthEvent], lines: &[Value]) {
    let mut versions: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut reused: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for e in truth.iter().filter(|e| e.expect == Expect::Deliver) {
        if let Some(id) = e.id.as_deref() {
            versions.entry(id).or_default().push(e.created_ms);
            if e.reused {
                reused.insert(id);
            }
        }
    }
    let marked: Vec<&str> = lines
        .iter()
        .filter(|l| l["id_reused"] == Value::Bool(true))
        .filter_map(|l| l["id"].as_str())
        .collect();
    for id in &marked {
        assert!(
            reused.contains(id),
            "{id} is marked id_reused but the tenant never reused it"
        );
    }
    let close: Vec<(&str, &Vec<i64>)> = versions
        .iter()
        .filter(|(id, v)| {
            reused.contains(*id) && v.iter().max().unwrap() - v.iter().min().unwrap() < 1000
        })
        .map(|(id, v)| (*id, v))
        .collect();
    for (id, v) in &close {
        let delivered: Vec<String> = lines
            .iter()
            .filter(|l| l["id"].as_str() == Some(id))
            .map(|l| format!("{} id_reused={}", l["created_at"], l["id_reused"]))
            .collect();
        assert!(
            marked.contains(id),
            "{id} came back with new content within a second ({v:?}) and no delivery is marked id_reused: {delivered:?}"
        );
    }
}

/// Checks that every malformed event of the tenant is in the dead-letter
/// file with a reason, and that no deliverable event is.
pub fn assert_dead_letters(truth: &[TruthEvent], dead_letter_file: &Path) {
    let text = std::fs::read_to_string(dead_letter_file).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letters are JSON"))
        .collect();
    for line in &lines {
        assert!(
            line["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "dead letter without reason: {line}"
        );
    }
    let seq_of = |line: &Value| -> Option<u64> {
        let event = &line["event"];
        event["details"]["sim_seq"].as_u64().or_else(|| {
            let text = event.as_str()?;
            // Garbage elements, and events kept as text because they held
            // bytes that are not UTF-8.
            text.strip_prefix("garbage-")
                .or_else(|| text.split("\"sim_seq\":").nth(1))
                .map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|digits| digits.parse().ok())
        })
    };
    let found: std::collections::HashSet<u64> = lines.iter().filter_map(seq_of).collect();
    let expected: Vec<u64> = truth
        .iter()
        .filter(|e| e.expect == Expect::DeadLetter)
        .map(|e| e.seq)
        .collect();
    let missing: Vec<_> = expected.iter().filter(|s| !found.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} malformed events not dead-lettered: {missing:?}",
        missing.len(),
        expected.len()
    );
    let deliverable: std::collections::HashSet<&str> = deliverable(truth).into_iter().collect();
    for line in &lines {
        if let Some(id) = line["id"].as_str() {
            let malformed = line["event"]["details"]["sim_seq"].is_u64();
            assert!(
                malformed || !deliverable.contains(id),
                "deliverable event {id} was dead-lettered: {line}"
            );
        }
    }
}

/// A base tenant for delivery tests: all adversity on, a live stream.
pub fn adversarial(seed: u64) -> SimConfig {
    SimConfig {
        backlog: 1200,
        insert_rate: 40.0,
        ..SimConfig::adversarial(seed)
    }
}
