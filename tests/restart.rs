//! Crash at any instant (`kill -9`), restart, lose nothing; only events
//! that were in flight and unacknowledged may be sent again (README, "The
//! delivery guarantee").
//!
//! The real `auditfwd` binary runs against the in-process tenant and is
//! SIGKILLed at random points several times, then runs to the end and is
//! stopped with SIGTERM. A duplicate is allowed only if its first copy was
//! among the last batches written before a kill (those in flight: at most
//! `max_batches_in_flight`, default 4) and its second copy after the
//! restart.
//!
//! SIGTERM drains and checkpoints (README, Operations, "Signals"). Stopped
//! with SIGTERM at random points instead, the daemon finishes the batches
//! in flight and saves the cursor, so the restarts together deliver every
//! event exactly once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditfwd_sim::{SimConfig, Simulator, TruthEvent, Verdict};
use auditfwd_testkit::wait_for;
use rand::Rng;

use crate::support::*;

const PAGE: u32 = 50;

/// The default `max_batches_in_flight`: pages with the sinks and not yet
/// checkpointed, which a kill may send again.
const IN_FLIGHT: usize = 4;

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_auditfwd"))
        .args(["run", "-c"])
        .arg(config)
        // Every crate at debug, so that the secret check below sees the most
        // an operator could turn on.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("auditfwd binary starts")
}

/// Each complete output line as the event it carries: its id and its
/// content (an id may come in several versions), without what differs
/// between two deliveries of one event (`received_at`, the `id_reused`
/// mark).
fn output_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).expect("only complete records in the output");
            let record = v.as_object_mut().expect("records are objects");
            record.remove("received_at");
            record.remove("id_reused");
            v.to_string()
        })
        .collect()
}

/// One daemon setup against an adversarial tenant, run as a child process.
struct Daemon {
    sim: Simulator,
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    out: PathBuf,
}

impl Daemon {
    async fn new(seed: u64) -> Self {
        let sim = tenant(SimConfig {
            backlog: 3000,
            insert_rate: 60.0,
            ..adversarial(seed)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            page_size: PAGE,
            ..Setup::new(dir.path())
        };
        let config = dir.path().join("auditfwd.toml");
        std::fs::write(&config, config_text(&sim, dir.path(), &setup)).unwrap();
        Self {
            log: dir.path().join("auditfwd.log"),
            out: dir.path().join("out/tenant/events.jsonl"),
            sim,
            config,
            dir,
        }
    }

    fn spawn(&self) -> Child {
        spawn(&self.config, &self.log)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the daemon `times` times and stops each run after a random
    /// 0.3–1.6 s with `signal`; returns how many complete lines the output
    /// had after each stop.
    async fn stop_at_random_points(&self, times: usize, signal: i32) -> Vec<usize> {
        let mut rng = rand::rng();
        let mut boundaries = Vec::new();
        for stop in 0..times {
            let mut child = self.spawn();
            let delay = rng.random_range(300..1600);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            unsafe { libc::kill(child.id() as i32, signal) };
            let status = child.wait().unwrap();
            if signal == libc::SIGTERM {
                assert!(
                    status.success(),
                    "SIGTERM {stop}: {status:?}; log:\n{}",
                    self.log_text()
                );
            }
            let lines = output_lines(&self.out).len();
            eprintln!("signal {signal} #{stop} after {delay}ms: {lines} lines");
            boundaries.push(lines);
        }
        assert!(
            boundaries.last().copied().unwrap_or(0) > 0,
            "the runs delivered nothing; log:\n{}",
            self.log_text()
        );
        boundaries
    }

    /// A last run catches up with the frozen tenant and is stopped with
    /// SIGTERM, which must end it cleanly. Returns the ground truth.
    async fn catch_up(&self) -> Vec<TruthEvent> {
        let mut child = self.spawn();
        self.sim.freeze();
        let truth = self.sim.truth();
        let caught_up = wait_for(Duration::from_secs(60), || {
            let out = self.dir.path().join("out");
            Verdict::of(&truth, &id_counts(&read_lines(&out)))
                .missing
                .is_empty()
        })
        .await;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(caught_up, "did not catch up; log:\n{}", self.log_text());
        let (key, log) = (self.sim.api_key(), self.log_text());
        assert!(log.contains("DEBUG"), "the daemon logged at debug");
        assert!(
            !log.contains(&key),
            "the API key appears in the daemon's log"
        );
        assert!(
            status.success(),
            "SIGTERM ends the daemon cleanly: {status:?}"
        );
        truth
    }

    fn verdict(&self, truth: &[TruthEvent]) -> Verdict {
        Verdict::of(truth, &id_counts(&read_lines(&self.dir.path().join("out"))))
    }

    fn assert_dead_letters(&self, truth: &[TruthEvent]) {
        assert_dead_letters(
            truth,
            &self.dir.path().join("state/dead-letter/tenant.jsonl"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_at_random_points_loses_nothing() {
    let daemon = Daemon::new(21).await;
    let boundaries = daemon.stop_at_random_points(6, libc::SIGKILL).await;
    let truth = daemon.catch_up().await;

    let events = output_lines(&daemon.out);
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        positions.entry(event.as_str()).or_default().push(i);
    }
    let verdict = daemon.verdict(&truth);
    assert!(
        verdict.missing.is_empty(),
        "missing after restarts: {:?}",
        &verdict.missing[..verdict.missing.len().min(10)]
    );
    assert!(verdict.unexpected.is_empty());
    for (event, at) in &positions {
        for pair in at.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            // The copy before a kill must be in the last batches of that
            // run (those in flight), the resend after it.
            let justified = boundaries
                .iter()
                .any(|&b| first < b && first + IN_FLIGHT * PAGE as usize >= b && second >= b);
            assert!(
                justified,
                "{event} duplicated at lines {first} and {second}, not across a kill (kills at {boundaries:?})"
            );
        }
    }
    let dups = verdict.duplicates.len();
    assert!(
        dups <= boundaries.len() * IN_FLIGHT * PAGE as usize,
        "{dups} duplicates for {} kills",
        boundaries.len()
    );
    daemon.assert_dead_letters(&truth);
    eprintln!(
        "{} events, {} kills, {} resent after a kill (unacknowledged batches)",
        verdict.expected,
        boundaries.len(),
        dups
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_random_points_drains_and_checkpoints_without_duplicates() {
    let daemon = Daemon::new(22).await;
    let stops = daemon.stop_at_random_points(5, libc::SIGTERM).await;
    let truth = daemon.catch_up().await;
    let verdict = daemon.verdict(&truth);
    eprintln!(
        "{} events over {} graceful stops: {} missing, {} duplicates",
        verdict.expected,
        stops.len(),
        verdict.missing.len(),
        verdict.duplicates.len()
    );
    verdict.assert_exact();
    daemon.assert_dead_letters(&truth);
}
