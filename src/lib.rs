//! auditfwd: an audit-log SIEM forwarder.
//!
//! It polls a SaaS tenant's `/api/v1/audit-logs` with a durable cursor,
//! normalizes every event and fans it out to sinks (files, stdout, Kafka,
//! syslog) under client-side rate limiting, without losing or forging an
//! event. The pipeline, in the order data flows:
//!
//! - [`model`]: the API's events as parsed, keyed for deduplication;
//! - [`http`]: the tenant HTTP client (limiter, key, status classes),
//!   shared by the poller and enrichment;
//! - [`source`]: the audit-log page, its parsing, the poll loop;
//! - [`cursor`]: which events are delivered; the delivery guarantee;
//! - [`normalize`]: the API's event to the canonical [`auditfwd_sink::Event`];
//! - [`enrich`]: the acting user resolved through the users API;
//! - [`format`]: encodings (json, raw, ...), chosen per sink;
//! - [`pipeline`]: fan-out to sinks and acknowledgements;
//! - [`deadletter`]: events that can not be forwarded, kept with the reason;
//! - [`app`]: wiring it all from a [`config::Config`];
//! - [`supervisor`]: the running sources, and reloads applied per source;
//!
//! Beside them: [`config`] (each component parses its own section),
//! [`values`] (durations, sizes, secrets), [`telemetry`] (metrics and
//! health) and [`logging`]. The modules form layers without cycles (README,
//! Layers; `tests/layers.rs`).
//!
//! The simulated tenant used by tests and the demo is its own crate,
//! `auditfwd-sim` (`sim/`), behind `auditfwd simulate` and `auditfwd demo`.
#![deny(missing_docs, unreachable_pub)]

pub mod app;
pub mod config;
pub mod cursor;
pub mod deadletter;
pub mod demo;
pub mod enrich;
pub mod filter;
pub mod fleet;
pub mod format;
pub mod http;
pub mod limits;
pub mod logging;
pub mod model;
pub mod normalize;
pub mod pidfile;
pub mod pipeline;
pub mod rate_limit;
pub mod retry;
pub mod sinks;
pub mod source;
pub mod state_cmd;
pub mod status_cmd;
pub mod supervisor;
pub mod telemetry;
pub mod values;
