//! The floor under the backfill row of `scripts/bench.sh`: what a bare
//! HTTP client spends to read the same simulated tenant, before any
//! cursor, sink, journal or fsync. Two figures, in CPU-seconds per million
//! events of this process:
//!
//! - `fetch`: every page requested (limit 100, the API's maximum; 8
//!   requests in flight on keep-alive connections, reqwest on a
//!   two-worker tokio runtime as the daemon runs) and its body read;
//! - `fetch+value`: the same, each body also parsed into a
//!   `serde_json::Value` tree (what a forwarder built on serde_json's tree
//!   pays, before it looks at any event);
//! - `fetch+parse`: the same, each body parsed by the forwarder's own page
//!   parser instead (`auditfwd::source::page::parse`: every event checked,
//!   hashed and converted).
//!
//! ```sh
//! auditfwd simulate --port 8080 --backlog 300000 &
//! BENCH_URL=http://127.0.0.1:8080 BENCH_EVENTS=300000 cargo bench --bench floor
//! ```
//!
//! The forwarder cannot cost less than `fetch+parse` per event; the rest
//! of the row is what delivery with its guarantee adds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auditfwd::source::page::parse;

/// Requests in flight, as the daemon's default prefetch keeps them.
const IN_FLIGHT: usize = 8;
/// The API's largest page.
const PAGE: u64 = 100;

/// CPU-seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has a command")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// What is done with each body.
#[derive(Clone, Copy)]
enum Mode {
    Fetch,
    Value,
    Parse,
}

/// Reads every page once; returns the events seen.
async fn read_all(url: &str, events: u64, mode: Mode) -> u64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, next, seen) = (client.clone(), next.clone(), seen.clone());
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let offset = next.fetch_add(PAGE, Ordering::Relaxed);
                if offset >= events {
                    break;
                }
                loop {
                    let response = client
                        .get(format!("{url}/api/v1/audit-logs"))
                        .query(&[("limit", PAGE), ("offset", offset)])
                        .bearer_auth("sim-key")
                        .send()
                        .await;
                    let Ok(response) = response else { continue };
                    if !response.status().is_success() {
                        continue;
                    }
                    let Ok(body) = response.bytes().await else {
                        continue;
                    };
                    let n = match mode {
                        // The simulator answers full pages.
                        Mode::Fetch => PAGE.min(events - offset),
                        Mode::Value => match serde_json::from_slice::<serde_json::Value>(&body) {
                            Ok(page) => page["data"].as_array().map_or(0, Vec::len) as u64,
                            Err(_) => continue,
                        },
                        Mode::Parse => match parse(&body) {
                            Ok(page) => page.items.len() as u64,
                            Err(_) => continue,
                        },
                    };
                    seen.fetch_add(n, Ordering::Relaxed);
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    seen.load(Ordering::Relaxed)
}

fn main() {
    let Ok(url) = std::env::var("BENCH_URL") else {
        eprintln!(
            "floor: set BENCH_URL to a running `auditfwd simulate` (see the doc comment); nothing measured"
        );
        return;
    };
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, mode) in [
        ("fetch", Mode::Fetch),
        ("fetch+value", Mode::Value),
        ("fetch+parse", Mode::Parse),
    ] {
        let before = cpu_seconds();
        let seen = runtime.block_on(read_all(&url, events, mode));
        let cpu = cpu_seconds() - before;
        println!(
            "{name}: {:.2} CPU-s per million ({seen} events, {cpu:.2} CPU-s)",
            cpu / seen as f64 * 1e6
        );
    }
}
