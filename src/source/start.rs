//! Starting one source: its cursor (loaded, or begun at `start_at`), its
//! client (from the shared pool), its enrichment and its pipeline, built
//! from the [`SourceContext`] every source of the daemon shares.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::poller::{Poller, PollerParts};
use crate::config::{SourceConfig, StateConfig};
use crate::cursor::store::{FileStore, StateStore, StoreError};
use crate::cursor::{Cursor, CursorState};
use crate::deadletter::DeadLetterFile;
use crate::http::{self, HttpPool};
use crate::logging::Console;
use crate::pipeline::{Pipeline, SinkHandle};
use crate::rate_limit;
use crate::telemetry::{Health, Metrics};

/// Where the cursors of the daemon's sources are kept.
#[derive(Clone, Debug)]
pub enum Stores {
    /// `[state] dir`: a snapshot and a journal per source, under the
    /// directory's lock (the default).
    Files,
    /// `[fleet]`: the compacted state topic, shared by the replicas.
    #[cfg(feature = "kafka")]
    Kafka(Arc<crate::fleet::store::StateTopic>),
}

impl Stores {
    /// Whether opening a store may wait on the network (then the
    /// supervisor opens it off the runtime's threads).
    pub fn blocks(&self) -> bool {
        !matches!(self, Stores::Files)
    }
}

/// What every source of the daemon shares, built once at start; the
/// supervisor hands it to each poller it starts. Cheap to clone.
#[derive(Clone)]
pub struct SourceContext {
    /// `[state]`: where dead letters (and, unless in fleet mode, cursors)
    /// are kept.
    pub state: StateConfig,
    /// Where cursors are kept.
    pub stores: Stores,
    /// HTTP clients shared by every source, with the cap on requests in
    /// flight.
    pub http: HttpPool,
    /// The running sinks.
    pub sinks: Vec<SinkHandle>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Health board.
    pub health: Health,
    /// Where backfill progress bars go (none: log lines).
    pub console: Console,
}

/// Why a source could not start (its cursor or its client); the other
/// sources run on.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}` can not start: {message}")]
pub struct StartError {
    /// Source name.
    pub source_name: String,
    /// Why.
    pub message: String,
}

/// Builds the poller of `source`: its cursor (loaded, or started at
/// `start_at`), client, enrichment and pipeline. `stop` drains it.
pub fn poller(
    source: &SourceConfig,
    context: &SourceContext,
    stop: &CancellationToken,
) -> Result<Poller, StartError> {
    let (store, state) = open_cursor(source, context)?;
    poller_with(source, context, stop, store, state)
}

/// Opens the cursor store of `source` and loads its state (or begins it at
/// `start_at`). In fleet mode this reads the state topic and claims the
/// source: call it off the runtime's threads.
pub fn open_cursor(
    source: &SourceConfig,
    context: &SourceContext,
) -> Result<(Box<dyn StateStore>, CursorState), StartError> {
    let fail = |message: String| StartError {
        source_name: source.name.clone(),
        message,
    };
    let mut store: Box<dyn StateStore> = match &context.stores {
        Stores::Files => Box::new(
            FileStore::open(&context.state.dir, &source.name).map_err(|e| fail(e.to_string()))?,
        ),
        #[cfg(feature = "kafka")]
        Stores::Kafka(topic) => Box::new(crate::fleet::store::KafkaStore::on(
            &source.name,
            Arc::clone(topic),
        )),
    };
    let state = load_or_init(store.as_mut(), source).map_err(|e| fail(e.to_string()))?;
    Ok((store, state))
}

/// Builds the poller of `source` on a cursor already opened
/// ([`open_cursor`]).
pub fn poller_with(
    source: &SourceConfig,
    context: &SourceContext,
    stop: &CancellationToken,
    store: Box<dyn StateStore>,
    state: CursorState,
) -> Result<Poller, StartError> {
    let fail = |message: String| StartError {
        source_name: source.name.clone(),
        message,
    };
    let cursor = Cursor::new(state, source.lookback);
    let limiter = rate_limit::limiter(source.requests_per_second, source.burst);
    let client = Arc::new(
        context
            .http
            .client(&source.endpoint(), Arc::clone(&limiter))
            .map_err(|e| {
                fail(format!(
                    "cannot build the HTTP client: {}",
                    http::error_chain(&e)
                ))
            })?,
    );
    let enricher = source.enrich.clone().map(|e| {
        crate::enrich::Enricher::new(
            &source.name,
            &source.base_url,
            e,
            Arc::clone(&client),
            context.metrics.clone(),
            context.health.clone(),
        )
    });
    let dead_letter = DeadLetterFile::new(&context.state.dead_letter_dir(), &source.name);
    let pipeline = Pipeline::new(
        &source.name,
        &context.sinks,
        dead_letter,
        context.metrics.clone(),
        source.retry,
        stop.clone(),
    );
    Ok(Poller::new(
        PollerParts {
            config: source.clone(),
            client,
            enricher,
            pipeline,
            metrics: context.metrics.clone(),
            health: context.health.clone(),
            console: context.console.clone(),
        },
        cursor,
        store,
    ))
}

/// The saved cursor, or a new one starting at `start_at` (saved at once, so
/// that "now" means the first start, not every restart).
pub fn load_or_init(
    store: &mut dyn StateStore,
    source: &SourceConfig,
) -> Result<CursorState, StoreError> {
    if let Some(state) = store.load()? {
        return Ok(state);
    }
    let state = CursorState::new(&source.name, source.start_at.resolve(Utc::now()));
    store.snapshot(&state)?;
    tracing::info!(source = %source.name, start = %source.start_at.resolve(Utc::now()), "new source: starting cursor");
    Ok(state)
}
