//! What auditfwd's tests and benches share that is not about the forwarder
//! itself, for the root crate's tests and the sink crates' tests and
//! benches alike (dev-only, never published):
//!
//! - real services, each started on its own free loopback port and stopped
//!   when dropped: a Kafka-protocol broker ([`Tansu`]) read back with a real
//!   consumer ([`consume`]), an [`Rsyslog`] receiver, and the test PKI they
//!   and the HTTP client tests use ([`make_certs`]); the binaries are
//!   installed by `scripts/services.sh`;
//! - polling until a condition holds ([`wait_for`]);
//! - the pages a simulated tenant serves, fetched as they are
//!   ([`sim_pages`]);
//! - what the sink benches measure with: records as the pipeline hands
//!   them to a sink ([`json_record`]) and the peak memory of the process.
#![deny(missing_docs)]

mod bench;
mod kafka;
mod pki;
mod rsyslog;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use bench::{json_record, peak_rss_kib, run_mode, timed};
pub use kafka::{Consumed, Tansu, consume, consume_everything};
pub use pki::{Certs, make_certs};
pub use rsyslog::Rsyslog;

/// The first `events` events of a simulated tenant as its
/// `/api/v1/audit-logs` serves them: one response body per page of 100.
pub async fn sim_pages(sim: &auditfwd_sim::Simulator, events: usize) -> Vec<Vec<u8>> {
    let client = reqwest::Client::new();
    let mut pages = Vec::new();
    for offset in (0..events).step_by(100) {
        let body = client
            .get(format!(
                "{}/api/v1/audit-logs?limit=100&offset={offset}",
                sim.base_url()
            ))
            .bearer_auth(sim.api_key())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        pages.push(body.to_vec());
    }
    pages
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The installed `name` (or the path in `$env`); panics with the fix when
/// it is missing.
pub fn find_binary(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let cargo_bin = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cargo/bin")
        .join(name);
    if cargo_bin.exists() {
        return cargo_bin;
    }
    // sbin is often missing from a user's PATH (logrotate, rsyslogd).
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    for dir in path.split(':') {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed; run scripts/services.sh (or set {env})");
}

/// Polls `check` every 50ms until it holds or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`wait_for`] with an async check.
pub async fn wait_for_async<F: Future<Output = bool>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
