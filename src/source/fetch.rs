//! Fetching one page until it arrives: transient failures are retried with
//! backoff, a 429 holds every request of the source for its `Retry-After`,
//! a body over `max_body` is asked again with half the `limit`, and
//! `/readyz` shows a source whose page keeps failing. Only a refusal that
//! retrying can not fix (or shutdown) ends it without the page.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::client::{FetchError, Fetched, PageQuery, audit_page};
use crate::http::{ApiClient, HttpError};
use crate::retry::{Backoff, RetryPolicy};
use crate::telemetry::{Health, OutcomeCounters, Status};

/// Consecutive failures of one page after which the source reports itself
/// failed in `/health` (it keeps retrying).
const FAILED_AFTER: u32 = 10;

/// Why a fetch ended without its page.
#[derive(Debug)]
pub(super) enum Unfetched {
    /// Shutdown came first.
    Shutdown,
    /// The API refused in a way retrying can not fix; the source stops.
    Refused(FetchError),
}

/// Fetches pages with retries; cheap to clone so prefetches can run as
/// their own tasks while the current page is delivered.
#[derive(Clone)]
pub(super) struct Fetcher {
    client: Arc<ApiClient>,
    source: String,
    retry: RetryPolicy,
    requests: OutcomeCounters,
    health: Health,
    /// Until when the API asked this source to wait (a 429's
    /// `Retry-After`): every request of the source waits, pages fetched
    /// ahead included, not only the one that drew it.
    hold: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Fetcher {
    /// The fetcher of `source`, through `client`, counting every request
    /// into `requests`.
    pub(super) fn new(
        client: Arc<ApiClient>,
        source: &str,
        retry: RetryPolicy,
        requests: OutcomeCounters,
        health: Health,
    ) -> Self {
        Self {
            client,
            source: source.to_string(),
            retry,
            requests,
            health,
            hold: Arc::default(),
        }
    }

    fn component(&self) -> String {
        format!("source:{}", self.source)
    }

    /// Fetches one page, retrying transient failures with backoff (429
    /// honours `Retry-After`) until it succeeds, a fatal error, or shutdown.
    /// A body over `max_body` is asked again with half the `limit`. Returns
    /// the page and the `limit` that fetched it.
    pub(super) async fn fetch(
        &self,
        mut query: PageQuery,
        shutdown: &CancellationToken,
    ) -> Result<(Fetched, u32), Unfetched> {
        let mut backoff = Backoff::new(self.retry);
        let mut failed = false;
        loop {
            let held = *self.hold.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = held {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.cancelled() => return Err(Unfetched::Shutdown),
                }
            }
            let result = tokio::select! {
                r = audit_page(&self.client, &query).fuse() => r,
                _ = shutdown.cancelled() => return Err(Unfetched::Shutdown),
            };
            match result {
                Ok(fetched) => {
                    self.requests.inc("ok");
                    if backoff.attempts() > 0 {
                        tracing::info!(source = %self.source, attempts = backoff.attempts() + 1, "API reachable again");
                    }
                    if backoff.attempts() >= 3 || failed {
                        self.health.set(&self.component(), Status::Ok);
                    }
                    return Ok((fetched, query.limit));
                }
                Err(error) => {
                    self.requests.inc(error.label());
                    if !error.is_transient() {
                        return Err(Unfetched::Refused(error));
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
                        _ = shutdown.cancelled() => return Err(Unfetched::Shutdown),
                    }
                }
            }
        }
    }
}
