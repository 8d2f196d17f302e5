//! The pages of a pass in flight. While pages are delivered, the next one
//! is already being fetched (requested after the page before it arrived,
//! so it chains by timing), and up to the adaptive depth more
//! ([`super::depth`]: the rate limit × the observed latency, at most
//! `prefetch`) at the offsets the cursor proposes
//! ([`Cursor::lookahead`]: overlapping a little, none past a trusted
//! total). A page fetched ahead counts only if the cursor finds that it
//! chains; otherwise every page in flight is dropped and the pass reads on
//! sequentially. A 429 holds all of them ([`Fetcher`]).

use std::collections::VecDeque;

use tokio_util::sync::CancellationToken;

use super::client::{Fetched, PageQuery};
use super::depth::Depth;
use super::fetch::{Fetcher, Unfetched};
use crate::cursor::{Batch, Cursor, Next};

/// A page being fetched.
struct InFlight {
    offset: u64,
    /// How many pages of this pass had arrived when it was requested.
    after: u64,
    task: tokio::task::JoinHandle<Result<(Fetched, u32), Unfetched>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A page that arrived, for [`Cursor::admit`].
pub(super) struct Arrived {
    /// The page.
    pub fetched: Fetched,
    /// The offset it was asked at.
    pub offset: u64,
    /// The `limit` that fetched it (smaller than `page_size` after a body
    /// over `max_body`).
    pub limit: u32,
    /// Requested after the page before it arrived, at the offset the
    /// cursor named: it chains by timing.
    pub sequential: bool,
}

/// Owns the pages in flight of one source, and how many to fetch ahead.
pub(super) struct Prefetcher {
    fetcher: Fetcher,
    depth: Depth,
    /// The query of the pass (its `offset` is set per page).
    query: PageQuery,
    shutdown: CancellationToken,
    inflight: VecDeque<InFlight>,
    /// Pages of this pass arrived so far.
    arrived: u64,
}

impl Prefetcher {
    /// Fetches through `fetcher`, at most `depth` pages ahead.
    pub(super) fn new(fetcher: Fetcher, depth: Depth) -> Self {
        Self {
            fetcher,
            depth,
            // Both set by `begin`.
            query: PageQuery {
                since: chrono::DateTime::UNIX_EPOCH,
                limit: 0,
                offset: 0,
                action: None,
            },
            shutdown: CancellationToken::new(),
            inflight: VecDeque::new(),
            arrived: 0,
        }
    }

    /// Starts a pass asking `query` (at each page's offset) until
    /// `shutdown`, with nothing in flight.
    pub(super) fn begin(&mut self, query: PageQuery, shutdown: &CancellationToken) {
        self.clear();
        self.query = query;
        self.shutdown = shutdown.clone();
        self.arrived = 0;
    }

    /// The page at `offset`: the first one in flight, whatever its offset
    /// (the cursor judges whether it chains), or else one fetched now.
    /// Cancel-safe: dropped before it returns, the request stays in flight
    /// and the next call takes it.
    pub(super) async fn page(&mut self, offset: u64) -> Result<Arrived, Unfetched> {
        if self.inflight.is_empty() {
            let now = self.spawn(offset);
            self.inflight.push_back(now);
        }
        let first = self.inflight.front_mut().expect("a page in flight");
        let result = (&mut first.task).await;
        let first = self.inflight.pop_front().expect("still in flight");
        let (fetched, limit) = result.unwrap_or(Err(Unfetched::Shutdown))?;
        let arrived = Arrived {
            fetched,
            offset: first.offset,
            limit,
            sequential: first.offset == offset && first.after >= self.arrived,
        };
        self.depth.observe(arrived.fetched.latency);
        self.arrived += 1;
        Ok(arrived)
    }

    /// Whether the next page has arrived: [`Prefetcher::page`] returns it
    /// without waiting.
    pub(super) fn ready(&self) -> bool {
        self.inflight.front().is_some_and(|f| f.task.is_finished())
    }

    /// After `batch` was admitted: fetches what comes next while it is
    /// delivered. A page fetched ahead that starts at the next offset or a
    /// little before it (lookahead leaves room for a witness) is kept: it
    /// counts if it chains, else it is read again.
    pub(super) fn ahead(&mut self, cursor: &Cursor, batch: &Batch) {
        let next = match batch.next() {
            Next::Fetch(next) => next,
            Next::Done(_) => return self.clear(),
        };
        let cap = cursor.page_cap().max(1);
        if self
            .inflight
            .front()
            .is_none_or(|a| a.offset > next || a.offset + cap <= next)
        {
            self.inflight.clear();
            let first = self.spawn(next);
            self.inflight.push_back(first);
        }
        let depth = self.depth.ahead();
        let have = self.inflight.len().saturating_sub(1);
        if depth > have {
            let last = self.inflight.back().map_or(next, |a| a.offset);
            for offset in cursor.lookahead(batch, last, depth - have) {
                let page = self.spawn(offset);
                self.inflight.push_back(page);
            }
        }
    }

    /// Drops every page in flight (their requests are aborted): one did
    /// not chain, or the pass ends.
    pub(super) fn clear(&mut self) {
        self.inflight.clear();
    }

    fn query_at(&self, offset: u64) -> PageQuery {
        PageQuery {
            offset,
            ..self.query.clone()
        }
    }

    fn spawn(&self, offset: u64) -> InFlight {
        let fetcher = self.fetcher.clone();
        let stop = self.shutdown.clone();
        let query = self.query_at(offset);
        InFlight {
            offset,
            after: self.arrived,
            task: tokio::spawn(async move { fetcher.fetch(query, &stop).await }),
        }
    }
}
