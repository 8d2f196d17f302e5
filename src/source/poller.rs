//! The poll loop of one source: passes over the cursor's window, page by
//! page, each page delivered through the pipeline and checkpointed in
//! order.
//!
//! The cursor decides which offset to read and when a pass is over; the
//! poller does the I/O. While pages are delivered the next ones are already
//! being fetched (`prefetch`); the cursor accepts a page fetched ahead only
//! when it provably chains (see [`crate::cursor`]). Pages that have
//! arrived by the time one is admitted are admitted with it and handed to
//! the pipeline as one batch (up to [`GROUP`]): the sinks write and fsync
//! them once. Up to `max_batches_in_flight` pages, grouped or not, are with
//! the sinks at once; each page is committed once every sink acknowledged
//! its batch and every page before it is committed, and the checkpoints of
//! pages acknowledged together are made durable with one write.
//!
//! The loop returns how long to wait after each pass (the poll interval once
//! caught up) and `select!`s that wait against shutdown. On shutdown it
//! finishes the batches in flight, saves the pass's position, and returns.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use auditfwd_sink::Event;
use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::client::{FetchError, PageQuery};
use super::depth::Depth;
use super::fetch::{Fetcher, Unfetched};
use super::prefetch::Prefetcher;
use super::progress::PassReport;
use crate::config::SourceConfig;
use crate::cursor::store::StateStore;
use crate::cursor::{Admission, Batch, Checkpoint, Cursor, CursorError, Next, Outcome, PageIn};
use crate::deadletter::DeadLetter;
use crate::http::ApiClient;
use crate::logging::Console;
use crate::normalize::normalize;
use crate::pipeline::{Ack, Pipeline, PipelineError};
use crate::retry::Backoff;
use crate::telemetry::{Health, Metrics, SourceMetrics, Status};

/// Why a source stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The API refused us in a way retrying can not fix.
    #[error("source `{source_name}` stopped: {error}")]
    Api {
        /// Source name.
        source_name: String,
        /// The refusal.
        #[source]
        error: FetchError,
    },
    /// The API's listing can not be paged safely.
    #[error("source `{source_name}` stopped: {error}")]
    Listing {
        /// Source name.
        source_name: String,
        /// What the cursor found.
        #[source]
        error: CursorError,
    },
    /// Fleet mode: another replica claimed the source; this one stopped
    /// after its batches in flight and leaves it to them.
    #[error("source `{source_name}` handed over: {by}")]
    Yielded {
        /// Source name.
        source_name: String,
        /// Who claimed it.
        by: String,
    },
}

enum PassError {
    Shutdown,
    Fatal(SourceError),
}

/// A batch's acknowledgement by every sink, on its way.
type Acknowledging = Pin<Box<dyn Future<Output = Result<Vec<Ack>, PipelineError>> + Send>>;

/// Where a batch handed to the pipeline stands.
enum Answer {
    /// Nothing to deliver: settled as soon as the batches before it are.
    Nothing,
    /// Waiting for the sinks.
    Waiting(Acknowledging),
    /// Every sink acknowledged it: one [`Ack`] per cursor batch.
    Acked(Vec<Ack>),
    /// Shutdown came while a sink was failing: it will never be.
    Stopped,
}

/// Admitted batches handed to the pipeline together (pages that had
/// arrived when the first was sent), not yet committed.
struct Sent {
    batches: Vec<Batch>,
    /// Events handed to the sinks (counted as delivered on commit).
    events: u64,
    answer: Answer,
}

impl Sent {
    /// Whether the pipeline has answered, looking without waiting.
    fn answered(&mut self) -> bool {
        if let Answer::Waiting(acknowledging) = &mut self.answer {
            match acknowledging.as_mut().now_or_never() {
                Some(result) => self.answer = Answer::from(result),
                None => return false,
            }
        }
        true
    }

    /// Waits for the pipeline's answer. Cancel-safe: the wait goes on at
    /// the next call.
    async fn answer(&mut self) {
        if let Answer::Waiting(acknowledging) = &mut self.answer {
            let result = acknowledging.await;
            self.answer = Answer::from(result);
        }
    }
}

impl From<Result<Vec<Ack>, PipelineError>> for Answer {
    fn from(result: Result<Vec<Ack>, PipelineError>) -> Self {
        match result {
            Ok(acks) => Answer::Acked(acks),
            Err(PipelineError::Stopped(_)) => Answer::Stopped,
        }
    }
}

/// How long the poller waits for a page (or for a sink to take a batch)
/// before it commits what the sinks acknowledged meanwhile. While pages
/// keep coming, commits wait for a full window and are written together.
const COMMIT_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Most pages handed to the pipeline as one batch: pages fetched ahead
/// that have all arrived are written (and fsynced, and checkpointed)
/// together, up to this many.
pub const GROUP: usize = 8;

/// Resolves once the poller has waited [`COMMIT_IDLE`] and the oldest
/// batch in flight is answered (never, while none is in flight).
async fn idle_then_answered(sent: &mut VecDeque<Sent>) {
    if sent.is_empty() {
        return std::future::pending().await;
    }
    tokio::time::sleep(COMMIT_IDLE).await;
    if let Some(oldest) = sent.front_mut() {
        oldest.answer().await;
    }
}

/// Everything one source's poll loop owns.
pub struct Poller {
    config: SourceConfig,
    prefetch: Prefetcher,
    enricher: Option<crate::enrich::Enricher>,
    cursor: Cursor,
    store: Arc<Mutex<Box<dyn StateStore>>>,
    pipeline: Arc<Pipeline>,
    counters: SourceMetrics,
    health: Health,
    console: Console,
    date_warned: bool,
    /// Batches handed to the pipeline and not yet committed, oldest first.
    sent: VecDeque<Sent>,
}

/// What a poller is built from, besides its cursor and store.
pub struct PollerParts {
    /// The source's configuration.
    pub config: SourceConfig,
    /// Its HTTP client (shared with enrichment).
    pub client: Arc<ApiClient>,
    /// User enrichment, when configured.
    pub enricher: Option<crate::enrich::Enricher>,
    /// The fan-out to the sinks.
    pub pipeline: Pipeline,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Health board.
    pub health: Health,
    /// Where backfill progress bars go (none: log lines).
    pub console: Console,
}

impl Poller {
    /// A poller over a loaded cursor.
    pub fn new(parts: PollerParts, cursor: Cursor, store: Box<dyn StateStore>) -> Self {
        let PollerParts {
            config,
            client,
            enricher,
            pipeline,
            metrics,
            health,
            console,
        } = parts;
        let counters = metrics.for_source(&config.name);
        let fetcher = Fetcher::new(
            client,
            &config.name,
            config.retry,
            counters.requests.clone(),
            health.clone(),
        );
        let depth = Depth::new(config.prefetch, config.requests_per_second);
        Self {
            config,
            prefetch: Prefetcher::new(fetcher, depth),
            enricher,
            cursor,
            store: Arc::new(Mutex::new(store)),
            pipeline: Arc::new(pipeline),
            counters,
            health,
            console,
            date_warned: false,
            sent: VecDeque::new(),
        }
    }

    fn component(&self) -> String {
        format!("source:{}", self.config.name)
    }

    /// Polls until `shutdown` or a fatal error.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        self.counters.up.set(1);
        self.health.set(&self.component(), Status::Ok);
        self.report_lag();
        tracing::info!(
            source = %self.config.name,
            window_start = %chrono::DateTime::from_timestamp_millis(self.cursor.state().window_start(self.cursor.lookback_ms())).unwrap_or_default(),
            resuming = self.cursor.state().pass.is_some(),
            "polling"
        );
        loop {
            let claimed = self.outclaimed();
            let passed = match claimed {
                Some(error) => Err(PassError::Fatal(error)),
                None => self.pass(&shutdown).await,
            };
            let wait = match passed {
                Ok(_) => self.config.poll_interval,
                Err(PassError::Shutdown) => break,
                Err(PassError::Fatal(error @ SourceError::Yielded { .. })) => {
                    tracing::warn!(source = %self.config.name, reason = %error, "another replica claimed this source; stopping here and leaving it to them (batches delivered by both meanwhile are duplicates)");
                    self.counters.up.set(0);
                    return Err(error);
                }
                Err(PassError::Fatal(error)) => {
                    tracing::error!(source = %self.config.name, error = %error, "source stopped; other sources continue");
                    self.counters.up.set(0);
                    self.health
                        .set(&self.component(), Status::Failed(error.to_string()));
                    return Err(error);
                }
            };
            self.report_lag();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!(source = %self.config.name, "stopped; cursor saved");
        Ok(())
    }

    /// [`SourceError::Yielded`] when another replica claimed the source.
    fn outclaimed(&self) -> Option<SourceError> {
        let by = self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outclaimed()?;
        Some(SourceError::Yielded {
            source_name: self.config.name.clone(),
            by,
        })
    }

    /// One pass over the cursor's window; the pages in flight are dropped
    /// however it ends.
    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<Outcome, PassError> {
        let now = Utc::now();
        let kind = self.cursor.due(now, self.config.late_sweep);
        let plan = self.cursor.begin_pass(now, kind);
        tracing::debug!(source = %self.config.name, ?kind, since = %plan.since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "pass begins");
        if plan.resumed {
            tracing::info!(source = %self.config.name, offset = ?self.cursor.next(), "resuming the pass a restart interrupted");
        }
        let action = match self.config.actions.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let query = PageQuery {
            since: plan.since,
            limit: self.config.page_size,
            offset: 0,
            action,
        };
        self.prefetch.begin(query, shutdown);
        let mut report = PassReport::new(self.console.clone(), &self.config.name);
        let read = self.pages(&mut report, shutdown).await;
        self.prefetch.clear();
        let outcome = read?;
        self.counters.backlog.set(0);
        if outcome == Outcome::OffsetIgnored {
            tracing::warn!(source = %self.config.name, "the API returned the same page for several offsets; it seems to ignore `offset`. Ending this pass without moving the watermark");
            self.health.set(
                &self.component(),
                Status::Degraded("the API seems to ignore `offset`".into()),
            );
        } else {
            self.health.set(&self.component(), Status::Ok);
        }
        report.finish();
        let checkpoint = self.cursor.finish_pass();
        tracing::debug!(source = %self.config.name, ?outcome, watermark_ms = ?self.cursor.state().watermark_ms, "pass ends");
        self.commit(vec![checkpoint], shutdown).await?;
        Ok(outcome)
    }

    /// Reads, delivers and checkpoints the pass page by page, until the
    /// cursor says it is done and every batch is committed. On shutdown the
    /// batches in flight are finished (committed as the sinks acknowledge
    /// them) and the pass's position is saved, for the restart to resume
    /// it; on a fatal error they are finished too.
    async fn pages(
        &mut self,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, PassError> {
        let read = self.read(report, shutdown).await;
        if read.is_err() {
            self.prefetch.clear();
            self.drain(shutdown).await;
        }
        if let Err(PassError::Shutdown) = read {
            let checkpoint = self.cursor.finish_pass();
            self.commit(vec![checkpoint], shutdown).await?;
        }
        read
    }

    async fn read(
        &mut self,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, PassError> {
        let most = self.config.max_batches_in_flight.max(1) as usize;
        // Admitted pages not yet handed to the pipeline: the pages that had
        // arrived by the time the first one was admitted, sent together.
        let mut group: Vec<Batch> = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                return Err(PassError::Shutdown);
            }
            let next = self.cursor.next();
            // Pages with the sinks or on their way: at most `most`, so that
            // a crash sends at most that many pages again.
            let pages = self.pages_in_flight() + group.len();
            let offset = match next {
                // The next page is here already: it joins the group.
                Next::Fetch(offset)
                    if !group.is_empty()
                        && group.len() < GROUP
                        && pages < most
                        && self.prefetch.ready() =>
                {
                    offset
                }
                _ if !group.is_empty() => {
                    self.send(std::mem::take(&mut group), shutdown).await?;
                    continue;
                }
                Next::Fetch(offset) if pages < most => offset,
                Next::Done(outcome) if self.sent.is_empty() => return Ok(outcome),
                // Enough in flight, or the pass is read: wait for the
                // oldest batch's acknowledgement, then commit it with every
                // batch acknowledged meanwhile (one write for all: while
                // pages keep coming, checkpoints are written in groups).
                _ => {
                    if let Some(oldest) = self.sent.front_mut() {
                        oldest.answer().await;
                    }
                    self.settle(shutdown).await?;
                    continue;
                }
            };
            // A page that is slow to come leaves time to commit what the
            // sinks acknowledged meanwhile.
            let page = loop {
                tokio::select! {
                    biased;
                    page = self.prefetch.page(offset) => break page,
                    () = idle_then_answered(&mut self.sent) => self.settle(shutdown).await?,
                }
            };
            let page = page.map_err(|e| self.unfetched(e))?;
            let asked = page.offset;
            let returned = page.fetched.page.items.len() as u64;
            let total = page.fetched.page.total;
            let admission = self
                .cursor
                .admit(PageIn {
                    offset: asked,
                    limit: page.limit,
                    items: page.fetched.page.items,
                    total,
                    sequential: page.sequential,
                    now: Utc::now(),
                    server_date: page.fetched.server_date,
                })
                .map_err(|error| {
                    PassError::Fatal(SourceError::Listing {
                        source_name: self.config.name.clone(),
                        error,
                    })
                })?;
            let batch = match admission {
                Admission::Batch(batch) => batch,
                Admission::Rejected => {
                    tracing::debug!(source = %self.config.name, offset = asked, "a prefetched page does not chain with the one before; reading sequentially");
                    self.prefetch.clear();
                    continue;
                }
            };
            tracing::debug!(source = %self.config.name, offset = asked, returned, total = ?total, sequential = page.sequential, next = ?batch.next(), in_flight = self.sent.len(), "page");
            self.counters.pages.inc();
            self.counters.received.inc_by(returned);
            if let Some(total) = total {
                self.counters
                    .backlog
                    .set(total.saturating_sub(asked + returned) as i64);
            }
            report.page(returned, total, u64::from(self.config.page_size));
            self.prefetch.ahead(&self.cursor, &batch);
            group.push(batch);
        }
    }

    /// Pages handed to the pipeline and not yet committed.
    fn pages_in_flight(&self) -> usize {
        self.sent.iter().map(|sent| sent.batches.len()).sum()
    }

    /// Commits the batches in flight as the sinks acknowledge them, until
    /// none is left or one never will be (shutdown while a sink fails).
    async fn drain(&mut self, shutdown: &CancellationToken) {
        while let Some(oldest) = self.sent.front_mut() {
            oldest.answer().await;
            if self.settle(shutdown).await.is_err() {
                break;
            }
        }
        self.sent.clear();
    }

    /// The pass error of a fetch that ended without its page.
    fn unfetched(&self, unfetched: Unfetched) -> PassError {
        match unfetched {
            Unfetched::Shutdown => PassError::Shutdown,
            Unfetched::Refused(error) => PassError::Fatal(SourceError::Api {
                source_name: self.config.name.clone(),
                error,
            }),
        }
    }

    /// Hands the new elements of admitted pages to the pipeline, as one
    /// batch (pages without any wait in line to be skipped).
    async fn send(
        &mut self,
        mut batches: Vec<Batch>,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        for batch in &batches {
            self.note(batch);
        }
        if batches.iter().all(Batch::is_empty) {
            self.sent.push_back(Sent {
                batches,
                events: 0,
                answer: Answer::Nothing,
            });
            return Ok(());
        }
        let received_at = Utc::now();
        let wanted = &self.config.actions;
        let mut events: Vec<Arc<Event>> =
            Vec::with_capacity(batches.iter().map(|b| b.events.len()).sum());
        let mut dead: Vec<DeadLetter> = Vec::new();
        for batch in &mut batches {
            let mut page: Vec<Event> = std::mem::take(&mut batch.events)
                .into_iter()
                .map(|raw| normalize(&self.config.name, raw, received_at))
                // Several actions can not be asked for in one request; the
                // rest are dropped here by configuration (and still count as
                // seen).
                .filter(|e| wanted.len() < 2 || wanted.contains(&e.action))
                .collect();
            // Page by page, so that each page's lookups get the whole
            // `timeout`, grouped or not.
            if let Some(enricher) = &self.enricher {
                enricher.enrich(&mut page).await;
            }
            events.extend(page.into_iter().map(Arc::new));
            dead.extend(batch.dead.iter().map(|m| {
                tracing::warn!(source = %self.config.name, id = ?m.id, reason = %m.reason, "event can not be forwarded; it goes to the dead-letter file");
                DeadLetter {
                    id: m.id.clone(),
                    sink: None,
                    reason: m.reason.clone(),
                    raw: m.raw.clone(),
                }
            }));
        }
        let count = events.len() as u64;
        let tickets = batches.iter().map(Batch::ticket).collect();
        let pipeline = Arc::clone(&self.pipeline);
        let submit = async move { pipeline.submit(tickets, &events, dead).await };
        tokio::pin!(submit);
        // A sink busy with earlier batches makes this wait: commit what the
        // sinks acknowledged meanwhile.
        let submitted = loop {
            tokio::select! {
                biased;
                submitted = &mut submit => break submitted,
                () = idle_then_answered(&mut self.sent) => self.settle(shutdown).await?,
            }
        };
        let delivery = match submitted {
            Ok(delivery) => delivery,
            Err(PipelineError::Stopped(_)) => return Err(PassError::Shutdown),
        };
        self.sent.push_back(Sent {
            batches,
            events: count,
            answer: Answer::Waiting(Box::pin(delivery.acknowledged())),
        });
        Ok(())
    }

    /// Counts what the cursor noticed in one admitted page, and warns of
    /// what an operator should know.
    fn note(&mut self, batch: &Batch) {
        let stats = &batch.stats;
        self.counters.duplicate.inc_by(stats.duplicates);
        self.counters.reused_id.inc_by(stats.reused_ids);
        self.counters.out_of_window.inc_by(stats.strays);
        if stats.strays > 0 {
            tracing::warn!(source = %self.config.name, count = stats.strays, "events dated far outside the window (a bogus clock?); delivered, they never move the cursor");
        }
        if let Some(skew) = stats.date_skew_ms
            && !self.date_warned
        {
            self.date_warned = true;
            tracing::warn!(source = %self.config.name, behind = %humantime::format_duration(std::time::Duration::from_secs((skew / 1000) as u64)), "the server's Date header is far behind the local clock; it is not used to place the cursor (event timestamps are)");
        }
        if let Some(group) = &stats.tie_group {
            self.counters.tie_groups.inc();
            let at = chrono::DateTime::from_timestamp_millis(group.created_ms).unwrap_or_default();
            if group.confirmed {
                tracing::warn!(source = %self.config.name, size = group.size, created_at = %at, "more events share one created_at than fit in a page; read them by re-sampling the group (see README, the guarantee)");
            } else {
                tracing::warn!(source = %self.config.name, size = group.size, created_at = %at, "more events share one created_at than fit in a page and re-reading did not confirm every one was seen; some of this group may be missing");
            }
        }
    }

    /// Commits, in order, every batch at the head of those in flight that
    /// the sinks have acknowledged (or that had nothing to deliver), and
    /// makes their checkpoints durable with one write. A batch that will
    /// never be acknowledged (shutdown while a sink fails) ends the pass:
    /// neither it nor any batch after it is committed.
    async fn settle(&mut self, shutdown: &CancellationToken) -> Result<(), PassError> {
        let mut checkpoints = Vec::new();
        let mut delivered = 0;
        let mut stopped = false;
        while let Some(oldest) = self.sent.front_mut()
            && oldest.answered()
        {
            let sent = self.sent.pop_front().expect("just looked at it");
            match sent.answer {
                Answer::Nothing => {
                    for batch in sent.batches {
                        checkpoints.extend(self.cursor.skip(batch));
                    }
                }
                Answer::Acked(acks) => {
                    delivered += sent.events;
                    assert_eq!(acks.len(), sent.batches.len(), "one ack per page");
                    for (batch, ack) in sent.batches.into_iter().zip(acks) {
                        checkpoints.push(self.cursor.commit(batch, ack));
                    }
                }
                Answer::Stopped => {
                    self.sent.clear();
                    stopped = true;
                }
                Answer::Waiting(_) => unreachable!("answered"),
            }
        }
        if !checkpoints.is_empty() {
            self.commit(checkpoints, shutdown).await?;
            self.counters.delivered.inc_by(delivered);
            self.report_lag();
        }
        if stopped {
            debug_assert!(shutdown.is_cancelled());
            return Err(PassError::Shutdown);
        }
        Ok(())
    }

    /// Publishes how far the saved cursor is behind now: from the start, so
    /// a backfill shows its real lag, and after every checkpoint. A cursor
    /// that starts at the beginning of the tenant's history has no lag to
    /// tell until its first pass ends (the backlog gauge shows progress
    /// meanwhile), so the series appears only then.
    fn report_lag(&mut self) {
        if self.cursor.state().watermark_ms <= 0 {
            return;
        }
        let lag = self.cursor.lag(Utc::now()).as_secs_f64();
        self.counters.set_lag(lag);
    }

    /// Makes checkpoints durable, in order and with one write; compacts the
    /// store when it asks. A
    /// store that fails (a full disk, an I/O error) is retried with backoff
    /// while the source shows degraded: the events are delivered already,
    /// so the only risk is sending them again after a crash, never losing
    /// them. A failed compaction is retried at the next commit.
    async fn commit(
        &mut self,
        checkpoints: Vec<Checkpoint>,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let mut backoff = Backoff::new(self.config.retry);
        let checkpoints = Arc::new(checkpoints);
        let wants_snapshot = loop {
            let store = self.store.clone();
            let cps = checkpoints.clone();
            let result = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .commit_all(&cps)
            })
            .await
            .expect("state store does not panic");
            match result {
                Ok(wants) => break wants,
                Err(error) => {
                    let delay = backoff.next_delay(None);
                    tracing::error!(source = %self.config.name, error = %error, retry_in = ?delay, "cannot save the cursor; delivered events are held until it is saved");
                    self.health.set(
                        &self.component(),
                        Status::Degraded(format!("cannot save the cursor, retrying: {error}")),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Err(PassError::Shutdown),
                    }
                }
            }
        };
        if backoff.attempts() > 0 {
            tracing::info!(source = %self.config.name, attempts = backoff.attempts() + 1, "cursor saved again");
            self.health.set(&self.component(), Status::Ok);
        }
        if let Some(error) = self.outclaimed() {
            return Err(PassError::Fatal(error));
        }
        if wants_snapshot {
            let store = self.store.clone();
            let state = self.cursor.state().clone();
            let result = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .snapshot(&state)
            })
            .await
            .expect("state store does not panic");
            if let Err(error) = result {
                // The checkpoint is in the journal; compaction can wait.
                tracing::warn!(source = %self.config.name, error = %error, "cannot compact the state; trying again at the next checkpoint");
            }
        }
        Ok(())
    }
}
