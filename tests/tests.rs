//! auditfwd's integration tests: one binary, one module per promise of the
//! README. Real components only: the simulated tenant over HTTP, real files,
//! the real `auditfwd` binary for crash tests.

mod support;

mod backpressure;
mod cli;
mod delivery;
mod enrich;
mod fairness;
mod features;
#[cfg(feature = "kafka")]
mod fleet;
#[cfg(feature = "kafka")]
mod fleet_replicas;
mod formats;
mod full_disk;
mod health;
mod hostile_pages;
mod http_client;
#[cfg(feature = "kafka")]
mod kafka;
mod layers;
mod packaging;
mod readme;
mod reload;
mod restart;
mod source_errors;
mod state_repair;
mod syslog;
mod tenants;
