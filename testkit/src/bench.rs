//! What the sink throughput benches share: JSON records as the pipeline
//! hands them to a sink, and each mode measured in a process of its own
//! (so that its peak resident memory is its own): the bench runs itself
//! again with `BENCH_MODE` set ([`run_mode`]), and the child reports how
//! long the mode took ([`timed`]).

use std::process::Command;
use std::time::Instant;

use auditfwd::format::Format;
use auditfwd_sink::{Event, Record};

/// `event` encoded as the `json` format, as the pipeline hands it to a sink.
pub fn json_record(event: Event) -> Record {
    auditfwd::pipeline::record(&Format::Json, &std::sync::Arc::new(event))
        .expect("events encode as json")
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In the child: prints the seconds since `started` and the peak RSS in
/// KiB, for [`run_mode`].
pub fn timed(started: Instant) {
    println!("{} {}", started.elapsed().as_secs_f64(), peak_rss_kib());
}

/// Runs this executable again with `BENCH_MODE=mode` and `env`; returns
/// the seconds and the peak RSS (KiB) the child reported with [`timed`].
pub fn run_mode(mode: &str, env: &[(&str, String)]) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_MODE", mode)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    let rss: u64 = parts.next().unwrap().parse().unwrap();
    (secs, rss)
}
