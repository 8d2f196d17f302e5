//! The poll loop of one source: passes over the cursor's window, page by
//! page, each page delivered through the pipeline and checkpointed before
//! the next one counts.
//!
//! The cursor decides which offset to read and when a pass is over; the
//! poller does the I/O. While a page is delivered, the next one is already
//! being fetched (requested after the page before it arrived, so it chains
//! by timing), and up to `prefetch` more (as many as the rate limit × the
//! observed latency asks, see [`super::depth`]) are fetched ahead at offsets that
//! overlap a little; the cursor accepts those only when they provably
//! chain (see [`crate::cursor`]).
//!
//! The loop returns how long to wait after each pass (the poll interval once
//! caught up) and `select!`s that wait against shutdown. On shutdown it
//! finishes the batch in flight, saves the pass's position, and returns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use auditfwd_sink::Event;
use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::client::{FetchError, Fetched, PageQuery, audit_page};
use super::progress::{Progress, ProgressView};
use crate::config::SourceConfig;
use crate::cursor::store::StateStore;
use crate::cursor::{Admission, Batch, Checkpoint, Cursor, CursorError, Next, Outcome, PageIn};
use crate::deadletter::DeadLetter;
use crate::http::{ApiClient, HttpError};
use crate::logging::Console;
use crate::normalize::normalize;
use crate::pipeline::{Pipeline, PipelineError};
use crate::retry::Backoff;
use crate::telemetry::{Health, Metrics, SourceLabel, Status};

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
}

enum PassError {
    Shutdown,
    Fatal(SourceError),
}

/// Consecutive failures of one page after which the source reports itself
/// failed in `/health` (it keeps retrying).
const FAILED_AFTER: u32 = 10;

/// Fetches pages with retries; cheap to clone so prefetches can run as
/// their own tasks while the current page is delivered.
#[derive(Clone)]
struct Fetcher {
    client: Arc<ApiClient>,
    source: String,
    retry: crate::retry::RetryPolicy,
    metrics: Metrics,
    health: Health,
    /// Until when the API asked this source to wait (a 429's
    /// `Retry-After`): every request of the source waits, pages fetched
    /// ahead included, not only the one that drew it.
    hold: Arc<Mutex<Option<tokio::time::Instant>>>,
}

/// A page being fetched.
struct InFlight {
    offset: u64,
    /// How many pages of this pass had arrived when it was requested.
    after: u64,
    task: tokio::task::JoinHandle<Result<(Fetched, u32), PassError>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-source metric handles, resolved once.
struct SourceMetrics {
    received: prometheus_client::metrics::counter::Counter,
    delivered: prometheus_client::metrics::counter::Counter,
    duplicate: prometheus_client::metrics::counter::Counter,
    reused: prometheus_client::metrics::counter::Counter,
    out_of_window: prometheus_client::metrics::counter::Counter,
    tie_groups: prometheus_client::metrics::counter::Counter,
    pages: prometheus_client::metrics::counter::Counter,
    backlog: prometheus_client::metrics::gauge::Gauge,
    /// Created on the first report: a source starting at the beginning has
    /// no lag to tell before its first pass ends (absent, not 0).
    lag: Option<prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>>,
    lag_family: prometheus_client::metrics::family::Family<
        SourceLabel,
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    >,
    label: SourceLabel,
    up: prometheus_client::metrics::gauge::Gauge,
}

impl SourceMetrics {
    fn new(metrics: &Metrics, label: &SourceLabel) -> Self {
        Self {
            received: metrics.events_received.get_or_create(label).clone(),
            delivered: metrics.events_delivered.get_or_create(label).clone(),
            duplicate: metrics.events_duplicate.get_or_create(label).clone(),
            reused: metrics.events_reused_id.get_or_create(label).clone(),
            out_of_window: metrics.events_out_of_window.get_or_create(label).clone(),
            tie_groups: metrics.tie_groups_oversized.get_or_create(label).clone(),
            pages: metrics.pages_fetched.get_or_create(label).clone(),
            backlog: metrics.backlog_events.get_or_create(label).clone(),
            lag: None,
            lag_family: metrics.cursor_lag_seconds.clone(),
            label: label.clone(),
            up: metrics.source_up.get_or_create(label).clone(),
        }
    }
}

/// Everything one source's poll loop owns.
pub struct Poller {
    config: SourceConfig,
    fetcher: Fetcher,
    enricher: Option<crate::enrich::Enricher>,
    cursor: Cursor,
    store: Arc<Mutex<Box<dyn StateStore>>>,
    pipeline: Pipeline,
    counters: SourceMetrics,
    health: Health,
    console: Console,
    date_warned: bool,
    depth: super::depth::Depth,
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
        let fetcher = Fetcher {
            client,
            source: config.name.clone(),
            retry: config.retry,
            metrics: metrics.clone(),
            health: health.clone(),
            hold: Arc::default(),
        };
        let counters = SourceMetrics::new(&metrics, &Metrics::source(&config.name));
        let depth = super::depth::Depth::new(config.prefetch, config.requests_per_second);
        Self {
            config,
            fetcher,
            enricher,
            cursor,
            store: Arc::new(Mutex::new(store)),
            pipeline,
            counters,
            health,
            console,
            date_warned: false,
            depth,
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
            let wait = match self.pass(&shutdown).await {
                Ok(_) => self.config.poll_interval,
                Err(PassError::Shutdown) => break,
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

    fn spawn_fetch(&self, query: PageQuery, after: u64, shutdown: &CancellationToken) -> InFlight {
        let fetcher = self.fetcher.clone();
        let stop = shutdown.clone();
        let offset = query.offset;
        InFlight {
            offset,
            after,
            task: tokio::spawn(async move { fetcher.fetch(query, &stop).await }),
        }
    }

    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<Outcome, PassError> {
        let now = Utc::now();
        let kind = self.cursor.due(now, self.config.late_sweep);
        let plan = self.cursor.begin_pass(now, kind);
        tracing::debug!(source = %self.config.name, ?kind, since = %plan.since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "pass begins");
        if plan.resumed {
            tracing::info!(source = %self.config.name, offset = ?self.cursor.next(), "resuming the pass a restart interrupted");
        }
        let limit = self.config.page_size;
        let action = match self.config.actions.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let query = |offset| PageQuery {
            since: plan.since,
            limit,
            offset,
            action: action.clone(),
        };
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut arrived = 0u64;
        let mut progress = Progress::new(Instant::now());
        let mut view = ProgressView::new(self.console.clone(), &self.config.name);
        let outcome = loop {
            let offset = match self.cursor.next() {
                Next::Fetch(offset) => offset,
                Next::Done(outcome) => break outcome,
            };
            let (fetched, asked, sequential) = match inflight.pop_front() {
                Some(mut ahead) => {
                    let sequential = ahead.offset == offset && ahead.after >= arrived;
                    let result = (&mut ahead.task)
                        .await
                        .unwrap_or(Err(PassError::Shutdown))?;
                    let at = ahead.offset;
                    (result, at, sequential)
                }
                None => (
                    self.fetcher.fetch(query(offset), shutdown).await?,
                    offset,
                    true,
                ),
            };
            let ((fetched, used_limit), asked) = (fetched, asked);
            self.depth.observe(fetched.latency);
            arrived += 1;
            let returned = fetched.page.items.len() as u64;
            let total = fetched.page.total;
            let admission = self
                .cursor
                .admit(PageIn {
                    offset: asked,
                    limit: used_limit,
                    items: fetched.page.items,
                    total,
                    sequential,
                    now: Utc::now(),
                    server_date: fetched.server_date,
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
                    inflight.clear();
                    continue;
                }
            };
            tracing::debug!(source = %self.config.name, offset = asked, returned, total = ?total, sequential, next = ?batch.next(), "page");
            self.counters.pages.inc();
            self.counters.received.inc_by(returned);
            if let Some(total) = total {
                self.counters
                    .backlog
                    .set(total.saturating_sub(asked + returned) as i64);
            }
            let now = Instant::now();
            let due = progress.page(now, returned, total, u64::from(limit));
            if let Some(report) = view.page(&progress, now, due) {
                tracing::info!(source = %self.config.name, read = report.read, total = report.total, "backfill: {report}");
            }
            // Fetch what comes next while this page is delivered.
            match batch.next() {
                Next::Fetch(next) => {
                    // A page fetched ahead that starts at `next` or a little
                    // before it (lookahead leaves room for a witness) is
                    // kept: it counts if it chains, else it is read again.
                    let cap = self.cursor.page_cap().max(1);
                    if inflight
                        .front()
                        .is_none_or(|a| a.offset > next || a.offset + cap <= next)
                    {
                        inflight.clear();
                        inflight.push_back(self.spawn_fetch(query(next), arrived, shutdown));
                    }
                    let depth = self.depth.ahead();
                    let have = inflight.len().saturating_sub(1);
                    if depth > have {
                        let last = inflight.back().map_or(next, |a| a.offset);
                        for ahead in self.cursor.lookahead(&batch, last, depth - have) {
                            inflight.push_back(self.spawn_fetch(query(ahead), arrived, shutdown));
                        }
                    }
                }
                Next::Done(_) => inflight.clear(),
            }
            self.deliver(batch, shutdown).await?;
            if shutdown.is_cancelled() {
                // The batch in flight is delivered and saved; save where the
                // pass is, so the restart resumes it.
                drop(inflight);
                let checkpoint = self.cursor.finish_pass();
                self.commit(checkpoint, shutdown).await?;
                return Err(PassError::Shutdown);
            }
        };
        drop(inflight);
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
        view.finish();
        if progress.is_backfill() {
            let report = progress.report(Instant::now());
            tracing::info!(
                source = %self.config.name,
                "backfill pass done: read {} events in {} ({:.0} events/s)",
                report.read,
                humantime::format_duration(std::time::Duration::from_secs(progress.elapsed(Instant::now()).as_secs())),
                report.rate
            );
        }
        let checkpoint = self.cursor.finish_pass();
        tracing::debug!(source = %self.config.name, ?outcome, watermark_ms = ?self.cursor.state().watermark_ms, "pass ends");
        self.commit(checkpoint, shutdown).await?;
        Ok(outcome)
    }

    /// Delivers and checkpoints the new elements of one admitted page.
    async fn deliver(
        &mut self,
        mut batch: Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let stats = batch.stats.clone();
        self.counters.duplicate.inc_by(stats.duplicates);
        self.counters.reused.inc_by(stats.reused_ids);
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
        if let Some(group) = stats.tie_group {
            self.counters.tie_groups.inc();
            let at = chrono::DateTime::from_timestamp_millis(group.created_ms).unwrap_or_default();
            if group.confirmed {
                tracing::warn!(source = %self.config.name, size = group.size, created_at = %at, "more events share one created_at than fit in a page; read them by re-sampling the group (see README, the guarantee)");
            } else {
                tracing::warn!(source = %self.config.name, size = group.size, created_at = %at, "more events share one created_at than fit in a page and re-reading did not confirm every one was seen; some of this group may be missing");
            }
        }
        if batch.is_empty() {
            if let Some(checkpoint) = self.cursor.skip(batch) {
                self.commit(checkpoint, shutdown).await?;
            }
            return Ok(());
        }
        let received_at = Utc::now();
        let wanted = &self.config.actions;
        let mut events: Vec<Event> = std::mem::take(&mut batch.events)
            .into_iter()
            .map(|raw| normalize(&self.config.name, raw, received_at))
            // Several actions can not be asked for in one request; the rest
            // are dropped here by configuration (and still count as seen).
            .filter(|e| wanted.len() < 2 || wanted.contains(&e.action))
            .collect();
        if let Some(enricher) = &self.enricher {
            enricher.enrich(&mut events).await;
        }
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        let dead: Vec<DeadLetter> = batch
            .dead
            .iter()
            .map(|m| {
                tracing::warn!(source = %self.config.name, id = ?m.id, reason = %m.reason, "event can not be forwarded; it goes to the dead-letter file");
                DeadLetter {
                    id: m.id.clone(),
                    sink: None,
                    reason: m.reason.clone(),
                    raw: m.raw.clone(),
                }
            })
            .collect();
        let ack = match self.pipeline.deliver(batch.ticket(), &events, dead).await {
            Ok(ack) => ack,
            Err(PipelineError::Stopped(_)) => {
                debug_assert!(shutdown.is_cancelled());
                return Err(PassError::Shutdown);
            }
        };
        let delivered = events.len() as u64;
        let checkpoint = self.cursor.commit(batch, ack);
        self.commit(checkpoint, shutdown).await?;
        self.counters.delivered.inc_by(delivered);
        self.report_lag();
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
        let counters = &mut self.counters;
        counters
            .lag
            .get_or_insert_with(|| counters.lag_family.get_or_create(&counters.label).clone())
            .set(lag);
    }

    /// Makes a checkpoint durable; compacts the store when it asks. A
    /// store that fails (a full disk, an I/O error) is retried with backoff
    /// while the source shows degraded: the events are delivered already,
    /// so the only risk is sending them again after a crash, never losing
    /// them. A failed compaction is retried at the next commit.
    async fn commit(
        &mut self,
        checkpoint: Checkpoint,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let mut backoff = Backoff::new(self.config.retry);
        let checkpoint = Arc::new(checkpoint);
        let wants_snapshot = loop {
            let store = self.store.clone();
            let cp = checkpoint.clone();
            let result = tokio::task::spawn_blocking(move || {
                store.lock().unwrap_or_else(|p| p.into_inner()).commit(&cp)
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

impl Fetcher {
    fn component(&self) -> String {
        format!("source:{}", self.source)
    }

    /// Fetches one page, retrying transient failures with backoff (429
    /// honours `Retry-After`) until it succeeds, a fatal error, or shutdown.
    /// A body over `max_body` is asked again with half the `limit`. Returns
    /// the page and the `limit` that fetched it.
    async fn fetch(
        &self,
        mut query: PageQuery,
        shutdown: &CancellationToken,
    ) -> Result<(Fetched, u32), PassError> {
        let mut backoff = Backoff::new(self.retry);
        let mut failed = false;
        loop {
            let held = *self.hold.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = held {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.cancelled() => return Err(PassError::Shutdown),
                }
            }
            let result = tokio::select! {
                r = audit_page(&self.client, &query).fuse() => r,
                _ = shutdown.cancelled() => return Err(PassError::Shutdown),
            };
            match result {
                Ok(fetched) => {
                    self.metrics.request(&self.source, "ok");
                    if backoff.attempts() > 0 {
                        tracing::info!(source = %self.source, attempts = backoff.attempts() + 1, "API reachable again");
                    }
                    if backoff.attempts() >= 3 || failed {
                        self.health.set(&self.component(), Status::Ok);
                    }
                    return Ok((fetched, query.limit));
                }
                Err(error) => {
                    self.metrics.request(&self.source, error.label());
                    if !error.is_transient() {
                        return Err(PassError::Fatal(SourceError::Api {
                            source_name: self.source.clone(),
                            error,
                        }));
                    }
                    if matches!(error, FetchError::Http(HttpError::TooLarge { .. }))
                        && query.limit > 1
                    {
                        query.limit = query.limit.div_ceil(2);
                        tracing::warn!(source = %self.source, offset = query.offset, limit = query.limit, error = %error, "asking for a smaller page");
                        continue;
                    }
                    let delay = backoff.next_delay(error.retry_after());
                    if matches!(error, FetchError::Http(HttpError::RateLimited { .. })) {
                        let until = tokio::time::Instant::now() + delay;
                        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
                        *hold = Some(hold.map_or(until, |h| h.max(until)));
                    }
                    let attempt = backoff.attempts();
                    if attempt >= FAILED_AFTER
                        && matches!(
                            error,
                            FetchError::Body(_) | FetchError::Http(HttpError::TooLarge { .. })
                        )
                    {
                        // Retrying goes on, but an operator must know: this
                        // page blocks the source.
                        failed = true;
                        self.health.set(
                            &self.component(),
                            Status::Failed(format!(
                                "the page at offset {} can not be read ({attempt} attempts): {error}",
                                query.offset
                            )),
                        );
                        tracing::error!(source = %self.source, error = %error, attempt, offset = query.offset, retry_in = ?delay, "a page stays unreadable; retrying");
                    } else if attempt >= 3 {
                        tracing::warn!(source = %self.source, error = %error, attempt, retry_in = ?delay, "API request failed; retrying");
                        self.health.set(
                            &self.component(),
                            Status::Degraded(format!("retrying: {error}")),
                        );
                    } else {
                        tracing::debug!(source = %self.source, error = %error, attempt, retry_in = ?delay, "API request failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Err(PassError::Shutdown),
                    }
                }
            }
        }
    }
}
