//! Fan-out with acknowledgements.
//!
//! Each sink runs in its own task behind a bounded channel (one batch at a
//! time), so a slow sink slows only the sources feeding it, and memory stays
//! bounded: a source waits for every sink's answer before it fetches on.
//! A source's [`Pipeline`] filters and encodes a batch for each sink, hands
//! it to all sinks at once, waits until **all** acknowledged, writes dead
//! letters (events no sink could take), and only then returns, which is
//! the poller's permission to commit the cursor.
//!
//! A failing sink is retried here, forever, with backoff (the slowest
//! backoff for permanent errors, with the sink's health set to failed): an
//! event is never dropped because a destination is down. Only shutdown ends
//! the retrying, and then the batch is not acknowledged, so it is sent again
//! after the restart.

use std::sync::Arc;
use std::time::Duration;

use auditfwd_sink::{Delivered, Event, Record, Sink, SinkError};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::deadletter::{DeadLetter, DeadLetterFile};
use crate::filter::Filter;
use crate::format::{self, Format};
use crate::retry::{Backoff, RetryPolicy};
use crate::telemetry::{Health, Metrics, Status};

/// `event` encoded in `format`, as a sink receives it.
pub fn record(format: &Format, event: &Arc<Event>) -> Result<Record, format::EncodeError> {
    Ok(encoded(format, event, format.encode(event)?))
}

/// The record of `event` whose encoding in `format` is `payload`.
fn encoded(format: &Format, event: &Arc<Event>, payload: bytes::Bytes) -> Record {
    Record {
        payload,
        severity: format::severity(event),
        format: format.name(),
        event: event.clone(),
    }
}

/// What a sink receives: everything but the sink itself.
#[derive(Debug, Clone)]
pub struct Route {
    /// Sink name.
    pub name: String,
    /// The sink's encoding.
    pub format: Format,
    /// Which events it takes.
    pub filter: Filter,
    /// Which sources feed it (empty: all).
    pub sources: Vec<String>,
}

/// Signals to the running forwarder (SIGHUP sends both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Sinks reopen files and connections.
    Reopen,
    /// The sources are reconciled with the configuration file read again
    /// (see [`crate::supervisor`]); sinks ignore it.
    Reload,
}

/// The batch was not acknowledged because auditfwd is shutting down while a
/// sink was failing; it will be sent again after the restart.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shutting down before every sink acknowledged the batch")]
pub struct Stopped;

struct Job {
    records: Vec<Record>,
    reply: oneshot::Sender<Result<Delivered, Stopped>>,
}

/// A running sink: its route and the way into its task.
#[derive(Clone)]
pub struct SinkHandle {
    route: Arc<Route>,
    tx: mpsc::Sender<Job>,
}

impl SinkHandle {
    /// The sink's route.
    pub fn route(&self) -> &Route {
        &self.route
    }
}

/// Starts the task that owns `sink`. The task ends (closing the sink) once
/// every [`SinkHandle`] is dropped.
pub fn spawn_sink(
    sink: Box<dyn Sink>,
    route: Route,
    retry: RetryPolicy,
    metrics: Metrics,
    health: Health,
    control: broadcast::Receiver<Control>,
    shutdown: CancellationToken,
) -> (SinkHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1);
    let route = Arc::new(route);
    let task = SinkTask {
        sink,
        route: route.clone(),
        retry,
        metrics,
        health,
        shutdown,
    };
    let handle = tokio::spawn(task.run(rx, control));
    (SinkHandle { route, tx }, handle)
}

/// How often a sink whose health is degraded is checked again while idle.
pub const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct SinkTask {
    sink: Box<dyn Sink>,
    route: Arc<Route>,
    retry: RetryPolicy,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
}

impl SinkTask {
    fn component(&self) -> String {
        format!("sink:{}", self.route.name)
    }

    async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut control: broadcast::Receiver<Control>,
    ) {
        // The start-up health check set the first status. While it is
        // degraded and nothing is delivered, the check runs again now and
        // then, so a receiver that comes back shows without waiting for
        // events (a delivery settles the status too).
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        loop {
            tokio::select! {
                _ = probe.tick() => {
                    if matches!(self.health.get(&self.component()), Some(Status::Degraded(_))) {
                        let status = match self.sink.healthcheck().await {
                            Ok(()) => Status::Ok,
                            Err(error) => Status::Degraded(format!("health check: {error}")),
                        };
                        self.health.set(&self.component(), status);
                    }
                }
                job = jobs.recv() => match job {
                    Some(job) => {
                        let result = self.deliver(&job.records).await;
                        let _ = job.reply.send(result);
                    }
                    None => break,
                },
                signal = control.recv() => {
                    if let Ok(Control::Reopen) = signal
                        && let Err(error) = self.sink.reopen().await
                    {
                        tracing::error!(sink = %self.route.name, error = %error, "cannot reopen");
                    }
                }
            }
        }
        if let Err(error) = self.sink.close().await {
            tracing::error!(sink = %self.route.name, error = %error, "cannot close the sink");
        }
    }

    /// Delivers until acknowledged; gives up only on shutdown.
    async fn deliver(&mut self, records: &[Record]) -> Result<Delivered, Stopped> {
        let mut backoff = Backoff::new(self.retry);
        let label = Metrics::sink(&self.route.name);
        loop {
            match self.sink.deliver(records).await {
                Ok(delivered) => {
                    let accepted = records.len() - delivered.rejected.len();
                    self.metrics
                        .sink_records
                        .get_or_create(&label)
                        .inc_by(accepted as u64);
                    if backoff.attempts() > 0 {
                        tracing::info!(sink = %self.route.name, attempts = backoff.attempts() + 1, "sink recovered");
                    }
                    self.health.set(&self.component(), Status::Ok);
                    return Ok(delivered);
                }
                Err(error) => {
                    self.metrics.sink_errors.get_or_create(&label).inc();
                    let delay = self.failure(&error, &mut backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Err(Stopped),
                    }
                }
            }
        }
    }

    fn failure(&self, error: &SinkError, backoff: &mut Backoff) -> Duration {
        let attempt = backoff.attempts() + 1;
        if error.is_transient() {
            let delay = backoff.next_delay(error.retry_after());
            tracing::warn!(sink = %self.route.name, error = %error, attempt, retry_in = ?delay, "sink delivery failed; retrying, the source waits");
            self.health.set(
                &self.component(),
                Status::Degraded(format!("retrying: {error}")),
            );
            delay
        } else {
            let delay = backoff.max_delay();
            tracing::error!(sink = %self.route.name, error = %error, attempt, retry_in = ?delay, "sink delivery failed and needs an operator; retrying slowly, nothing is dropped");
            self.health
                .set(&self.component(), Status::Failed(error.to_string()));
            delay
        }
    }
}

/// Proof that every sink took a batch: only [`Pipeline::deliver`] makes
/// one, and [`crate::cursor::Cursor::commit`] requires it, so the cursor can
/// not move past events no sink acknowledged.
#[derive(Debug)]
#[must_use = "commit the batch with its acknowledgement"]
pub struct Ack {
    ticket: u64,
}

impl Ack {
    /// The batch this acknowledges ([`crate::cursor::Batch::ticket`]).
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// An acknowledgement without sinks, for the cursor's own tests.
    #[cfg(test)]
    pub(crate) fn for_test(ticket: u64) -> Self {
        Self { ticket }
    }
}

/// Why a batch could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Shutdown while a sink was failing.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// The fan-out of one source.
pub struct Pipeline {
    source: String,
    sinks: Vec<SinkHandle>,
    dead_letter: DeadLetterFile,
    metrics: Metrics,
    retry: RetryPolicy,
    shutdown: CancellationToken,
}

impl Pipeline {
    /// The pipeline of `source`: the sinks that accept it.
    pub fn new(
        source: &str,
        sinks: &[SinkHandle],
        dead_letter: DeadLetterFile,
        metrics: Metrics,
        retry: RetryPolicy,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            source: source.to_string(),
            sinks: sinks
                .iter()
                .filter(|s| {
                    s.route.sources.is_empty() || s.route.sources.iter().any(|x| x == source)
                })
                .cloned()
                .collect(),
            dead_letter,
            metrics,
            retry,
            shutdown,
        }
    }

    /// Delivers `events` to every sink that wants them and writes `dead`
    /// (plus anything a sink could not take) to the dead-letter file.
    /// Returns, once all of it is acknowledged, the [`Ack`] of the cursor
    /// batch `ticket`.
    pub async fn deliver(
        &self,
        ticket: u64,
        events: &[Arc<Event>],
        mut dead: Vec<DeadLetter>,
    ) -> Result<Ack, PipelineError> {
        let mut pending = Vec::with_capacity(self.sinks.len());
        for sink in &self.sinks {
            let route = &sink.route;
            let mut records = Vec::with_capacity(events.len());
            let wanted: Vec<&Arc<Event>> =
                events.iter().filter(|e| route.filter.matches(e)).collect();
            // One buffer for the batch's lines, shared by their payloads.
            let lines = route.format.encode_batch(wanted.iter().map(|e| &***e));
            for (event, line) in wanted.into_iter().zip(lines) {
                match line {
                    Ok(payload) => records.push(encoded(&route.format, event, payload)),
                    Err(error) => dead.push(DeadLetter {
                        id: Some(event.id.clone()),
                        sink: Some(route.name.clone()),
                        reason: error.to_string(),
                        raw: event.raw.clone(),
                    }),
                }
            }
            if records.is_empty() {
                continue;
            }
            let sent: Vec<Arc<Event>> = records.iter().map(|r| r.event.clone()).collect();
            let (reply, answer) = oneshot::channel();
            sink.tx
                .send(Job { records, reply })
                .await
                .map_err(|_| Stopped)?;
            pending.push((route.name.clone(), sent, answer));
        }
        for (sink, sent, answer) in pending {
            let delivered = answer.await.map_err(|_| Stopped)??;
            for truncated in delivered.truncated {
                let Some(event) = sent.get(truncated.index) else {
                    continue;
                };
                self.metrics
                    .sink_truncated
                    .get_or_create(&Metrics::sink(&sink))
                    .inc();
                dead.push(DeadLetter {
                    id: Some(event.id.clone()),
                    sink: Some(sink.clone()),
                    reason: format!("delivered truncated: {}", truncated.reason),
                    raw: event.raw.clone(),
                });
            }
            for rejected in delivered.rejected {
                let Some(event) = sent.get(rejected.index) else {
                    continue;
                };
                tracing::warn!(source = %self.source, sink = %sink, id = %event.id, reason = %rejected.reason, "sink refused an event; it goes to the dead-letter file");
                dead.push(DeadLetter {
                    id: Some(event.id.clone()),
                    sink: Some(sink.clone()),
                    reason: rejected.reason,
                    raw: event.raw.clone(),
                });
            }
        }
        self.write_dead_letters(dead).await?;
        Ok(Ack { ticket })
    }

    async fn write_dead_letters(&self, dead: Vec<DeadLetter>) -> Result<(), PipelineError> {
        if dead.is_empty() {
            return Ok(());
        }
        let count = dead.len() as u64;
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self.dead_letter.write(dead.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    let delay = backoff.next_delay(None);
                    tracing::error!(source = %self.source, error = %error, retry_in = ?delay, "cannot write dead letters; the source waits");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Err(Stopped.into()),
                    }
                }
            }
        }
        self.metrics
            .events_dead_lettered
            .get_or_create(&Metrics::source(&self.source))
            .inc_by(count);
        Ok(())
    }
}
