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
//! # Several batches in flight
//!
//! A source may hand a sink its next batch before the last one is
//! acknowledged. By default the sink takes them one at a time
//! ([`Sink::submit`] runs [`Sink::deliver`]). A sink whose destination
//! acknowledges asynchronously (Kafka's delivery reports) overrides
//! [`Sink::submit`]: it starts the batch and returns a [`Pending`] that
//! resolves when the batch is durable, so the next batch is sent while the
//! acknowledgements of the last are on their way. The pipeline awaits the
//! pending batches in the order they were submitted; one that fails is
//! retried through [`Sink::deliver`], and no later batch is acknowledged to
//! the source before it.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

/// A batch a sink has started to deliver ([`Sink::submit`]): resolves, as
/// [`Sink::deliver`] returns, once every record is acknowledged. It must
/// not borrow the sink, so that the next batch can be submitted meanwhile.
pub type Pending = Pin<Box<dyn Future<Output = Result<Delivered, SinkError>> + Send + 'static>>;

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

    /// Starts delivering a batch; the returned [`Pending`] resolves once
    /// every record is acknowledged, exactly as [`Sink::deliver`] would
    /// return. The pipeline may submit further batches before it resolves,
    /// awaits them in submission order, and retries a failed one through
    /// [`Sink::deliver`] (so `deliver` must cope with records of that batch
    /// that did arrive: at-least-once, as after any error).
    ///
    /// The default delivers the batch before returning (one batch at a
    /// time, in order). Override it only when the destination can hold
    /// several batches at once and acknowledge them later.
    async fn submit(&mut self, batch: Arc<[Record]>) -> Pending {
        let result = self.deliver(&batch).await;
        Box::pin(std::future::ready(result))
    }

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
