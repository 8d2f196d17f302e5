//! The poll loop of one source: passes over the cursor's window, page by
//! page, each page delivered through the pipeline and checkpointed before
//! the next one counts.
//!
//! The cursor decides which offset to read and when a pass is over; the
//! poller does the I/O. While a page is delivered the next ones are already
//! being fetched (`prefetch`); the cursor accepts a page fetched
//! ahead only when it provably chains (see [`crate::cursor`]).
//!
//! The loop returns how long to wait after each pass (the poll interval once
//! caught up) and `select!`s that wait against shutdown. On shutdown it
//! finishes the batch in flight, saves the pass's position, and returns.

use std::sync::{Arc, Mutex};

use auditfwd_sink::Event;
use chrono::Utc;
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
use crate::pipeline::{Pipeline, PipelineError};
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
}

enum PassError {
    Shutdown,
    Fatal(SourceError),
}

/// Everything one source's poll loop owns.
pub struct Poller {
    config: SourceConfig,
    prefetch: Prefetcher,
    enricher: Option<crate::enrich::Enricher>,
    cursor: Cursor,
    store: Arc<Mutex<Box<dyn StateStore>>>,
    pipeline: Pipeline,
    counters: SourceMetrics,
    health: Health,
    console: Console,
    date_warned: bool,
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
            pipeline,
            counters,
            health,
            console,
            date_warned: false,
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
        self.commit(checkpoint, shutdown).await?;
        Ok(outcome)
    }

    /// Reads, delivers and checkpoints the pass page by page, until the
    /// cursor says it is done (or shutdown: then the pass's position is
    /// saved, for the restart to resume it).
    async fn pages(
        &mut self,
        report: &mut PassReport,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, PassError> {
        loop {
            let offset = match self.cursor.next() {
                Next::Fetch(offset) => offset,
                Next::Done(outcome) => return Ok(outcome),
            };
            let page = self
                .prefetch
                .page(offset)
                .await
                .map_err(|e| self.unfetched(e))?;
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
            tracing::debug!(source = %self.config.name, offset = asked, returned, total = ?total, sequential = page.sequential, next = ?batch.next(), "page");
            self.counters.pages.inc();
            self.counters.received.inc_by(returned);
            if let Some(total) = total {
                self.counters
                    .backlog
                    .set(total.saturating_sub(asked + returned) as i64);
            }
            report.page(returned, total, u64::from(self.config.page_size));
            self.prefetch.ahead(&self.cursor, &batch);
            self.deliver(batch, shutdown).await?;
            if shutdown.is_cancelled() {
                // The batch in flight is delivered and saved; save where the
                // pass is, so the restart resumes it.
                self.prefetch.clear();
                let checkpoint = self.cursor.finish_pass();
                self.commit(checkpoint, shutdown).await?;
                return Err(PassError::Shutdown);
            }
        }
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

    /// Delivers and checkpoints the new elements of one admitted page.
    async fn deliver(
        &mut self,
        mut batch: Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let stats = batch.stats.clone();
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
        self.counters.set_lag(lag);
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
