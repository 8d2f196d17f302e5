//! The poll loop of one source: passes over the cursor's window, page by
//! page, each page delivered through the pipeline and checkpointed before
//! the next one counts.
//!
//! The loop returns how long to wait after each pass (the poll interval once
//! caught up) and `select!`s that wait against shutdown. On shutdown it
//! finishes the batch in flight, checkpoints, and returns.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use auditfwd_sink::Event;
use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::client::{ApiClient, FetchError, Fetched, PageQuery};
use super::progress::Progress;
use crate::config::SourceConfig;
use crate::cursor::store::{StateStore, StoreError};
use crate::cursor::{Checkpoint, Cursor};
use crate::deadletter::DeadLetter;
use crate::normalize::normalize;
use crate::pipeline::{Pipeline, PipelineError};
use crate::retry::Backoff;
use crate::telemetry::{Health, Metrics, Status};

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
    /// The cursor could not be saved: continuing would re-send or lose track.
    #[error("source `{source_name}` stopped: {error}")]
    Store {
        /// Source name.
        source_name: String,
        /// The failure.
        #[source]
        error: StoreError,
    },
}

enum PassError {
    Shutdown,
    Fatal(SourceError),
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    /// Reached a short page: caught up.
    Complete,
    /// Gave up on a listing that never ends (the API ignores `offset`?).
    Incomplete,
}

/// Fetches pages with retries; cheap to clone so prefetches can run as
/// their own tasks while the current page is delivered.
#[derive(Clone)]
struct Fetcher {
    client: Arc<ApiClient>,
    source: String,
    retry: crate::retry::RetryPolicy,
    metrics: Metrics,
    health: Health,
}

/// A page fetched ahead, with the offset it was asked for.
struct Ahead {
    offset: u64,
    task: tokio::task::JoinHandle<Result<Fetched, PassError>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
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
    metrics: Metrics,
    health: Health,
}

impl Poller {
    /// A poller over a loaded cursor.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: SourceConfig,
        client: Arc<ApiClient>,
        enricher: Option<crate::enrich::Enricher>,
        cursor: Cursor,
        store: Box<dyn StateStore>,
        pipeline: Pipeline,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        let fetcher = Fetcher {
            client,
            source: config.name.clone(),
            retry: config.retry,
            metrics: metrics.clone(),
            health: health.clone(),
        };
        Self {
            config,
            fetcher,
            enricher,
            cursor,
            store: Arc::new(Mutex::new(store)),
            pipeline,
            metrics,
            health,
        }
    }

    fn component(&self) -> String {
        format!("source:{}", self.config.name)
    }

    /// Polls until `shutdown` or a fatal error.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        let label = Metrics::source(&self.config.name);
        self.metrics.source_up.get_or_create(&label).set(1);
        self.health.set(&self.component(), Status::Ok);
        self.report_lag();
        tracing::info!(
            source = %self.config.name,
            window_start = %chrono::DateTime::from_timestamp_millis(self.cursor.state().window_start(self.config.lookback)).unwrap_or_default(),
            "polling"
        );
        loop {
            let wait = match self.pass(&shutdown).await {
                Ok(_) => self.config.poll_interval,
                Err(PassError::Shutdown) => break,
                Err(PassError::Fatal(error)) => {
                    tracing::error!(source = %self.config.name, error = %error, "source stopped; other sources continue");
                    self.metrics.source_up.get_or_create(&label).set(0);
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

    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<PassEnd, PassError> {
        let label = Metrics::source(&self.config.name);
        let query = self.cursor.begin_pass(Utc::now());
        let limit = self.config.page_size;
        let action = match self.config.actions.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let page_query = |offset| PageQuery {
            since: query.since,
            limit,
            offset,
            action: action.clone(),
        };
        let mut offset = 0u64;
        let mut pages = 0u64;
        let mut max_pages = u64::MAX;
        let mut previous_total: Option<u64> = None;
        let mut ahead: std::collections::VecDeque<Ahead> = std::collections::VecDeque::new();
        let mut progress = Progress::new(Instant::now());
        let end = loop {
            let fetched = match ahead.pop_front() {
                Some(mut prefetched) => {
                    debug_assert_eq!(prefetched.offset, offset);
                    let fetched = (&mut prefetched.task)
                        .await
                        .unwrap_or(Err(PassError::Shutdown))?;
                    // A page fetched ahead may have been served before the
                    // page before it. It continues that page only if both
                    // saw the same listing (same total: the listing only
                    // grows); otherwise ask again, now, after it.
                    match (fetched.page.total, previous_total) {
                        (Some(now), Some(before)) if now == before => fetched,
                        _ => {
                            ahead.clear();
                            tracing::debug!(source = %self.config.name, offset, "listing changed under a prefetched page; fetching it again");
                            self.fetcher.fetch(page_query(offset), shutdown).await?
                        }
                    }
                }
                None => self.fetcher.fetch(page_query(offset), shutdown).await?,
            };
            pages += 1;
            if pages == 1 {
                if let Some(date) = fetched.server_date {
                    self.cursor.observe_server_time(date);
                }
                // A listing can grow while we page, but not without bound: a
                // pass much longer than the first `total` means the API is
                // not honouring `offset`.
                if let Some(total) = fetched.page.total {
                    max_pages = (total / u64::from(limit) + 1) * 4 + 100;
                }
            }
            let returned = fetched.page.items.len() as u64;
            let effective_limit = fetched
                .page
                .limit
                .filter(|l| *l > 0 && *l <= u64::from(limit))
                .unwrap_or(u64::from(limit));
            previous_total = fetched.page.total;
            if let Some(report) = progress.page(
                Instant::now(),
                returned,
                fetched.page.total,
                effective_limit,
            ) {
                tracing::info!(source = %self.config.name, read = report.read, total = report.total, "backfill: {report}");
            }
            if let Some(total) = fetched.page.total {
                let remaining = total.saturating_sub(offset + returned);
                self.metrics
                    .backlog_events
                    .get_or_create(&label)
                    .set(remaining as i64);
                // Fetch the next pages while this one is delivered.
                if returned == effective_limit {
                    let mut next = offset + returned + ahead.len() as u64 * effective_limit;
                    while ahead.len() < self.config.prefetch as usize && next < total {
                        let fetcher = self.fetcher.clone();
                        let q = page_query(next);
                        let stop = shutdown.clone();
                        ahead.push_back(Ahead {
                            offset: next,
                            task: tokio::spawn(async move { fetcher.fetch(q, &stop).await }),
                        });
                        next += effective_limit;
                    }
                }
            }
            self.metrics.pages_fetched.get_or_create(&label).inc();
            self.metrics
                .events_received
                .get_or_create(&label)
                .inc_by(returned);

            self.deliver_page(fetched, shutdown).await?;

            offset += returned;
            if returned < effective_limit {
                break PassEnd::Complete;
            }
            if shutdown.is_cancelled() {
                // The batch in flight is delivered and saved; stop here. The
                // pass is incomplete, so the watermark stays.
                let checkpoint = self.cursor.finish_pass(false);
                self.commit(checkpoint).await?;
                return Err(PassError::Shutdown);
            }
            if pages >= max_pages {
                tracing::warn!(source = %self.config.name, pages, "the listing does not end; is the API ignoring `offset`? ending this pass without advancing");
                break PassEnd::Incomplete;
            }
            // Prefetched pages were asked at offsets assuming full pages of
            // `effective_limit`; drop them if that assumption broke.
            if ahead.front().is_some_and(|a| a.offset != offset) {
                ahead.clear();
            }
        };
        drop(ahead);
        self.metrics.backlog_events.get_or_create(&label).set(0);
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
        let checkpoint = self.cursor.finish_pass(end == PassEnd::Complete);
        self.commit(checkpoint).await?;
        Ok(end)
    }

    /// Admits, delivers and checkpoints the new events of one page.
    async fn deliver_page(
        &mut self,
        fetched: Fetched,
        shutdown: &CancellationToken,
    ) -> Result<(), PassError> {
        let label = Metrics::source(&self.config.name);
        let mut batch = self.cursor.admit(fetched.page.items);
        self.metrics
            .events_duplicate
            .get_or_create(&label)
            .inc_by(batch.stats.duplicates + batch.stats.before_window);
        if batch.is_empty() {
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
        match self.pipeline.deliver(&events, dead).await {
            Ok(()) => {}
            Err(PipelineError::Stopped(_)) => {
                debug_assert!(shutdown.is_cancelled());
                return Err(PassError::Shutdown);
            }
        }
        let delivered = events.len() as u64;
        let checkpoint = self.cursor.commit(&batch);
        self.commit(checkpoint).await?;
        self.report_lag();
        self.metrics
            .events_delivered
            .get_or_create(&label)
            .inc_by(delivered);
        Ok(())
    }

    /// Publishes how far the saved cursor is behind now: from the start, so
    /// a backfill shows its real lag, and after every checkpoint. A cursor
    /// that starts at the beginning of the tenant's history has no lag to
    /// tell until its first pass ends (the backlog gauge shows progress
    /// meanwhile), so the series appears only then.
    fn report_lag(&self) {
        if self.cursor.state().watermark_ms <= 0 {
            return;
        }
        self.metrics
            .cursor_lag_seconds
            .get_or_create(&Metrics::source(&self.config.name))
            .set(self.cursor.lag(Utc::now()).as_secs_f64());
    }

    /// Makes a checkpoint durable; compacts the store when it asks.
    async fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), PassError> {
        if checkpoint.covered.as_ref().is_some_and(Vec::is_empty) {
            tracing::warn!(
                source = %self.config.name,
                "the API's listing is not sorted newest-first after all; deduplicating by id alone from now on (more memory during a backfill, nothing is lost)"
            );
        }
        let store = self.store.clone();
        let wants_snapshot = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .commit(&checkpoint)
        })
        .await
        .expect("state store does not panic")
        .map_err(|error| self.store_error(error))?;
        if wants_snapshot {
            let store = self.store.clone();
            let state = self.cursor.state().clone();
            tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .snapshot(&state)
            })
            .await
            .expect("state store does not panic")
            .map_err(|error| self.store_error(error))?;
        }
        Ok(())
    }

    fn store_error(&self, error: StoreError) -> PassError {
        PassError::Fatal(SourceError::Store {
            source_name: self.config.name.clone(),
            error,
        })
    }
}

impl Fetcher {
    fn component(&self) -> String {
        format!("source:{}", self.source)
    }

    /// Fetches one page, retrying transient failures with backoff (429
    /// honours `Retry-After`) until it succeeds, a fatal error, or shutdown.
    async fn fetch(
        &self,
        query: PageQuery,
        shutdown: &CancellationToken,
    ) -> Result<Fetched, PassError> {
        let mut backoff = Backoff::new(self.retry);
        loop {
            let result = tokio::select! {
                r = self.client.audit_page(&query).fuse() => r,
                _ = shutdown.cancelled() => return Err(PassError::Shutdown),
            };
            match result {
                Ok(fetched) => {
                    self.metrics.request(&self.source, "ok");
                    if backoff.attempts() > 0 {
                        tracing::info!(source = %self.source, attempts = backoff.attempts() + 1, "API reachable again");
                        self.health.set(&self.component(), Status::Ok);
                    }
                    return Ok(fetched);
                }
                Err(error) => {
                    self.metrics.request(&self.source, error.label());
                    if !error.is_transient() {
                        return Err(PassError::Fatal(SourceError::Api {
                            source_name: self.source.clone(),
                            error,
                        }));
                    }
                    let delay = backoff.next_delay(error.retry_after());
                    let attempt = backoff.attempts();
                    if attempt >= 3 {
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
