//! The sink contract of auditfwd.
//!
//! Every output of auditfwd (file, stdout, Kafka, syslog) implements [`Sink`].
//! The core pipeline encodes each canonical [`Event`] into the sink's format and
//! hands the sink a batch of [`Record`]s; the sink moves bytes and says when
//! they are safe.
//!
//! # Acknowledgement
//!
//! [`Sink::deliver`] returns `Ok` only when **every** record of the batch is
//! durable in the sink's sense (file: written and flushed, fsynced per policy;
//! Kafka: delivery report with `acks=all`; syslog TCP/TLS: written to the
//! socket; UDP: sent). The source cursor advances past a batch only after all
//! sinks returned `Ok` for it, so a sink that returns early loses events on a
//! crash. A record the sink can never accept (too large, refused by the
//! receiver for its content) is reported in [`Delivered::rejected`] and ends up
//! in the dead-letter file; it is never silently dropped.
//!
//! On `Err`, the pipeline retries the whole batch (with backoff, forever for
//! transient errors), so a sink must tolerate seeing a batch again:
//! auditfwd is at-least-once and every record carries the event id for
//! downstream deduplication.
//!
//! # Configuration
//!
//! Each sink type is a [`SinkFactory`]: raw serde config → validated, typed
//! config (pure, every problem at once, as [`ConfigProblem`]s) → built
//! sink. The host registers each factory once in a [`Registry`]; see
//! `sinks/README.md` for adding a sink.
#![deny(missing_docs, unreachable_pub)]

pub mod config;
mod error;
mod event;
mod record;
mod registry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::ConfigProblem;
pub use error::{ErrorKind, SinkError};
pub use event::{Event, Field, SCHEMA_VERSION, UserInfo, format_millis};
pub use record::{Delivered, Record, Rejected, Severity};
pub use registry::{
    Descriptors, RawConfig, Registry, SinkContext, SinkFactory, SinkKind, SinkType,
};

use async_trait::async_trait;

/// An output of auditfwd. See the crate documentation for the contract.
#[async_trait]
pub trait Sink: Send {
    /// The sink's configured name, used in logs and metrics.
    fn name(&self) -> &str;

    /// Checks that the destination is reachable and usable (broker metadata,
    /// receiver connection, writable directory). Run at start-up and by
    /// `auditfwd check`; the error says what is wrong and what to do.
    async fn healthcheck(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers a batch and returns only once every record is acknowledged
    /// (see the crate documentation). Records the destination refused for
    /// their content are listed in the returned [`Delivered`].
    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError>;

    /// Closes what the sink holds: flushes and closes its files, closes
    /// its connections, waits for its background work (compression, a
    /// producer's queue). Called once on shutdown, after the last delivery.
    /// Acknowledged batches were durable already, so this only tidies up;
    /// a sink used again afterwards opens what it needs, as after
    /// [`Sink::reopen`].
    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Closes output files or connections so that the next delivery opens
    /// them again (SIGHUP, e.g. after logrotate moved the files).
    async fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
