//! Fan-out with acknowledgements.
//!
//! Each sink runs in its own task behind a bounded channel, so a slow sink
//! slows only the sources feeding it, and memory stays bounded. A source's
//! [`Pipeline`] filters and encodes a batch for each sink and hands it to
//! all sinks at once ([`Pipeline::submit`]); the [`Delivery`] it returns
//! waits until **all** acknowledged, writes dead letters (events no sink
//! could take), and only then yields the [`Ack`]s, which are the poller's
//! permission to commit the cursor. A source keeps a few batches in flight
//! (`max_batches_in_flight`) and commits them in order. One batch may carry
//! the events of several cursor batches (pages fetched ahead that arrived
//! together): the sinks then write them with one write and one fsync, and
//! the delivery yields one [`Ack`] per cursor batch.
//!
//! A sink task starts the batches it receives in order ([`Sink::submit`]:
//! one at a time for most sinks; Kafka keeps producing while earlier
//! delivery reports are pending), at most [`SUBMITTED`] at once, and
//! answers them in the order it received them: a batch that fails is
//! retried before any later one is answered.
//!
//! A failing sink is retried here, forever, with backoff (the slowest
//! backoff for permanent errors, with the sink's health set to failed): an
//! event is never dropped because a destination is down. Only shutdown ends
//! the retrying, and then the batch is not acknowledged, so it is sent again
//! after the restart.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use auditfwd_sink::{Delivered, Event, Pending, Record, Sink, SinkError};
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
    records: Arc<[Record]>,
    reply: oneshot::Sender<Result<Delivered, Stopped>>,
}

/// A job its sink has started ([`Sink::submit`]), not yet answered.
struct Started {
    records: Arc<[Record]>,
    pending: Pending,
    reply: oneshot::Sender<Result<Delivered, Stopped>>,
}

/// Most batches one sink task has started and not yet answered (from all
/// the sources it serves); a source sending more waits.
pub const SUBMITTED: usize = 8;

/// The outcome of the oldest started job (never, while there is none).
async fn oldest(started: &mut VecDeque<Started>) -> Result<Delivered, SinkError> {
    match started.front_mut() {
        // Polled by reference: dropping this future keeps the job.
        Some(job) => (&mut job.pending).await,
        None => std::future::pending().await,
    }
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
        let mut started: VecDeque<Started> = VecDeque::new();
        loop {
            tokio::select! {
                // An answer first: a batch that failed is retried before
                // any more are started (its retry hint is fresh).
                biased;
                result = oldest(&mut started) => {
                    let job = started.pop_front().expect("the oldest job just answered");
                    let result = match result {
                        Ok(delivered) => {
                            self.succeeded(&job.records, &delivered, 0);
                            Ok(delivered)
                        }
                        Err(error) => self.retry(&job.records, error).await,
                    };
                    let _ = job.reply.send(result);
                }
                signal = control.recv() => {
                    if let Ok(Control::Reopen) = signal
                        && let Err(error) = self.sink.reopen().await
                    {
                        tracing::error!(sink = %self.route.name, error = %error, "cannot reopen");
                    }
                }
                _ = probe.tick() => {
                    if matches!(self.health.get(&self.component()), Some(Status::Degraded(_))) {
                        let status = match self.sink.healthcheck().await {
                            Ok(()) => Status::Ok,
                            Err(error) => Status::Degraded(format!("health check: {error}")),
                        };
                        self.health.set(&self.component(), status);
                    }
                }
                job = jobs.recv(), if started.len() < SUBMITTED => match job {
                    Some(job) => {
                        let pending = self.sink.submit(job.records.clone()).await;
                        started.push_back(Started {
                            records: job.records,
                            pending,
                            reply: job.reply,
                        });
                    }
                    // Nobody waits for the jobs still started: `close`
                    // finishes the sink's background work.
                    None => break,
                },
            }
        }
        drop(started);
        if let Err(error) = self.sink.close().await {
            tracing::error!(sink = %self.route.name, error = %error, "cannot close the sink");
        }
    }

    /// Counts an acknowledged batch and settles the sink's health.
    fn succeeded(&self, records: &[Record], delivered: &Delivered, retries: u32) {
        let accepted = records.len() - delivered.rejected.len();
        self.metrics
            .sink_records
            .get_or_create(&Metrics::sink(&self.route.name))
            .inc_by(accepted as u64);
        if retries > 0 {
            tracing::info!(sink = %self.route.name, attempts = retries + 1, "sink recovered");
        }
        self.health.set(&self.component(), Status::Ok);
    }

    /// Delivers a batch that failed with `error` again, until acknowledged;
    /// gives up only on shutdown.
    async fn retry(
        &mut self,
        records: &[Record],
        mut error: SinkError,
    ) -> Result<Delivered, Stopped> {
        let mut backoff = Backoff::new(self.retry);
        let label = Metrics::sink(&self.route.name);
        loop {
            self.metrics.sink_errors.get_or_create(&label).inc();
            let delay = self.failure(&error, &mut backoff);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return Err(Stopped),
            }
            match self.sink.deliver(records).await {
                Ok(delivered) => {
                    self.succeeded(records, &delivered, backoff.attempts());
                    return Ok(delivered);
                }
                Err(next) => error = next,
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

/// Proof that every sink took a batch: only [`Delivery::acknowledged`]
/// makes one, and [`crate::cursor::Cursor::commit`] requires it, so the
/// cursor can not move past events no sink acknowledged.
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

/// What the acknowledgement of a batch needs besides its sinks' answers.
struct Settling {
    source: String,
    dead_letter: DeadLetterFile,
    metrics: Metrics,
    retry: RetryPolicy,
    shutdown: CancellationToken,
}

/// The fan-out of one source.
pub struct Pipeline {
    sinks: Vec<SinkHandle>,
    settling: Arc<Settling>,
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
            sinks: sinks
                .iter()
                .filter(|s| {
                    s.route.sources.is_empty() || s.route.sources.iter().any(|x| x == source)
                })
                .cloned()
                .collect(),
            settling: Arc::new(Settling {
                source: source.to_string(),
                dead_letter,
                metrics,
                retry,
                shutdown,
            }),
        }
    }

    /// Hands `events` to every sink that wants them (waiting while a sink
    /// has [`SUBMITTED`] batches started), and returns the [`Delivery`]
    /// that waits for their acknowledgements. `dead` (plus anything a sink
    /// can not take) goes to the dead-letter file then. `tickets` name the
    /// cursor batches the events come from, in order: the delivery
    /// acknowledges each.
    pub async fn submit(
        &self,
        tickets: Vec<u64>,
        events: &[Arc<Event>],
        mut dead: Vec<DeadLetter>,
    ) -> Result<Delivery, PipelineError> {
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
                .send(Job {
                    records: records.into(),
                    reply,
                })
                .await
                .map_err(|_| Stopped)?;
            pending.push((route.name.clone(), sent, answer));
        }
        Ok(Delivery {
            tickets,
            pending,
            dead,
            settling: Arc::clone(&self.settling),
        })
    }

    /// [`Pipeline::submit`], then [`Delivery::acknowledged`]: one batch
    /// delivered and acknowledged by every sink.
    pub async fn deliver(
        &self,
        ticket: u64,
        events: &[Arc<Event>],
        dead: Vec<DeadLetter>,
    ) -> Result<Ack, PipelineError> {
        let mut acks = self
            .submit(vec![ticket], events, dead)
            .await?
            .acknowledged()
            .await?;
        Ok(acks.pop().expect("one ticket, one ack"))
    }
}

/// A batch handed to every sink of a source, not yet acknowledged by all.
/// It owns what it needs (no borrow of the pipeline), so a source can hold
/// several and await them in order.
#[must_use = "await its acknowledgement"]
pub struct Delivery {
    tickets: Vec<u64>,
    pending: Vec<Answer>,
    dead: Vec<DeadLetter>,
    settling: Arc<Settling>,
}

/// One sink's answer to a batch on its way: the sink, the events it was
/// sent (by record index), the reply.
type Answer = (
    String,
    Vec<Arc<Event>>,
    oneshot::Receiver<Result<Delivered, Stopped>>,
);

impl Delivery {
    /// Waits until every sink acknowledged the batch, writes its dead
    /// letters (what a sink refused or truncated among them), and returns
    /// the [`Ack`] of each cursor batch it was submitted for, in order.
    pub async fn acknowledged(self) -> Result<Vec<Ack>, PipelineError> {
        let Delivery {
            tickets,
            pending,
            mut dead,
            settling,
        } = self;
        for (sink, sent, answer) in pending {
            let delivered = answer.await.map_err(|_| Stopped)??;
            for truncated in delivered.truncated {
                let Some(event) = sent.get(truncated.index) else {
                    continue;
                };
                settling
                    .metrics
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
                tracing::warn!(source = %settling.source, sink = %sink, id = %event.id, reason = %rejected.reason, "sink refused an event; it goes to the dead-letter file");
                dead.push(DeadLetter {
                    id: Some(event.id.clone()),
                    sink: Some(sink.clone()),
                    reason: rejected.reason,
                    raw: event.raw.clone(),
                });
            }
        }
        settling.write_dead_letters(dead).await?;
        Ok(tickets.into_iter().map(|ticket| Ack { ticket }).collect())
    }
}

impl Settling {
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
