//! The simulated tenant: a PeopleLens-style audit-log and users API on
//! loopback, seeded and reproducible, as hostile as the switches say.
//!
//! It serves `GET /api/v1/audit-logs` (`since`, `limit` ≤ 100, `offset`,
//! `action`) and the users API in every shape of the seeds, with Bearer
//! auth: `/api/v1/users/{id}` (peoplelens-v1), `/api/users/{id}`
//! (peoplelens-legacy), `/demo-docs/api/v1/users/{id}` (demo-docs, under a
//! prefix because its path is v1's), `/api/v1/customers/{cid}/users/{id}`
//! (customer-scoped) and `/users/{id}` (jsonapi). It can
//! sort either way, treat `since` as inclusive or exclusive, insert events
//! live and late, put many events on one millisecond, serve hostile and
//! malformed events, add latency, fail with 5xx and 429, drop connections,
//! truncate bodies, and rate-limit. Its ground truth (every visible event and
//! what the forwarder must do with it) is available in-process through
//! [`Simulator::truth`] and over HTTP at `GET /_sim/truth`; `POST
//! /_sim/freeze` stops live inserts so a test can wait for the catch-up.
//! Every audit-log request is logged as it arrives, with its user agent
//! ([`Simulator::requests`]): fleet tests read from it which replica polled
//! which tenant when ([`requests`]).
//!
//! Tests and the demo run it in-process; `auditfwd simulate` runs it alone.
//! It depends on nothing of auditfwd: the product is tested against it, so
//! it must not share the product's parsing or its mistakes.
#![deny(missing_docs)]

mod hostile;
pub mod listing;
pub mod requests;
mod server;
pub mod verdict;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use hostile::NASTY;
pub use listing::{ListingConfig, SortOrder, TieOrder, TotalMode};
pub use requests::{Polling, RequestRecord};
pub use verdict::Verdict;
use world::World;
pub use world::{Expect, SimEvent, SimUser};

/// How the simulated tenant behaves. Every switch is also a flag of
/// `auditfwd simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Seed of the event stream (same seed, same events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The API key clients must send as `Authorization: Bearer <key>`.
    #[arg(long, default_value = "sim-key")]
    pub api_key: String,
    /// Events that exist before the simulator starts.
    #[arg(long, default_value_t = 500)]
    pub backlog: usize,
    /// How far back the backlog reaches.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub backlog_span: Duration,
    /// New events per second while running.
    #[arg(long, default_value_t = 2.0)]
    pub insert_rate: f64,
    /// Listing order (`inserted-*`: by a hidden sequence, whatever
    /// created_at says).
    #[arg(long, value_enum, default_value_t = SortOrder::NewestFirst)]
    pub order: SortOrder,
    /// Whether `since` includes events created exactly at that instant.
    #[arg(long)]
    pub since_inclusive: bool,
    /// Order of events on one millisecond: a fresh random one per request
    /// (SQL ORDER BY without a tiebreaker) or stable.
    #[arg(long, value_enum, default_value_t = TieOrder::Shuffled)]
    pub ties: TieOrder,
    /// At most this many events per page, whatever `limit` asks.
    #[arg(long)]
    pub page_cap: Option<usize>,
    /// What `pagination.total` says: exact, absent, too-low, constant:N,
    /// capped:N.
    #[arg(long, default_value = "exact")]
    pub total: TotalMode,
    /// Show created_at to the second only (stored and filtered to the ms).
    #[arg(long)]
    pub coarse_time: bool,
    /// Ignore the `since` parameter (every request lists the whole history).
    #[arg(long)]
    pub ignore_since: bool,
    /// Send a `Date` header from 1970 (a server with a broken clock).
    #[arg(long)]
    pub bogus_date: bool,
    /// Share of events created on the same millisecond as the previous one.
    #[arg(long, default_value_t = 0.0)]
    pub tie_ratio: f64,
    /// Share of live inserts that are a bulk operation: `burst_size` events
    /// on one millisecond.
    #[arg(long, default_value_t = 0.0)]
    pub burst_ratio: f64,
    /// Events of one bulk operation.
    #[arg(long, default_value_t = 150)]
    pub burst_size: usize,
    /// Share of events whose created_at is shown as a bogus time (9999,
    /// 1970, 0001) while stored correctly.
    #[arg(long, default_value_t = 0.0)]
    pub bogus_time_ratio: f64,
    /// Share of live events stored in the year 9999 (in every window).
    #[arg(long, default_value_t = 0.0)]
    pub future_ratio: f64,
    /// Share of events that reuse an earlier event's id with new content
    /// (half of them one of the last 20 ids, half any earlier one).
    #[arg(long, default_value_t = 0.0)]
    pub reuse_ratio: f64,
    /// Share of events with a numeric id (half of them colliding with a
    /// string id of the same digits).
    #[arg(long, default_value_t = 0.0)]
    pub numeric_id_ratio: f64,
    /// Share of events holding a byte that is not UTF-8 (dead letters).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_utf8_ratio: f64,
    /// Share of events with about 1 MiB of details.
    #[arg(long, default_value_t = 0.0)]
    pub huge_ratio: f64,
    /// Share of live events that appear late (created in the past).
    #[arg(long, default_value_t = 0.0)]
    pub late_ratio: f64,
    /// How late a late event can be.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub late_max: Duration,
    /// Share of events with hostile or oddly typed fields (still forwardable).
    #[arg(long, default_value_t = 0.0)]
    pub hostile_ratio: f64,
    /// Share of events without a usable id or created_at (dead letters).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// Maximum random latency added to each response.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Share of requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests answered with a 429 and Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Share of responses whose connection drops mid-body.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Share of responses whose body is cut short (valid framing).
    #[arg(long, default_value_t = 0.0)]
    pub truncate_rate: f64,
    /// Share of requests that hang (no response for a minute), to trip the
    /// client's timeout.
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    /// Share of responses whose body never ends.
    #[arg(long, default_value_t = 0.0)]
    pub endless_rate: f64,
    /// Share of users-API requests answered with a 5xx (instead of
    /// error_rate).
    #[arg(long, default_value_t = 0.0)]
    pub users_error_rate: f64,
    /// Share of users-API requests that hang (instead of stall_rate).
    #[arg(long, default_value_t = 0.0)]
    pub users_stall_rate: f64,
    /// The customer id the customer-scoped users API accepts.
    #[arg(long, default_value = "5f1e0c0a0b0c0d0e0f101112")]
    pub customer_id: String,
    /// Server-side rate limit in requests per second (429 beyond it).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Number of users behind the events.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            api_key: "sim-key".into(),
            backlog: 500,
            backlog_span: Duration::from_secs(3600),
            insert_rate: 2.0,
            order: SortOrder::NewestFirst,
            since_inclusive: false,
            ties: TieOrder::Shuffled,
            page_cap: None,
            total: TotalMode::Exact,
            coarse_time: false,
            ignore_since: false,
            bogus_date: false,
            tie_ratio: 0.0,
            burst_ratio: 0.0,
            burst_size: 150,
            bogus_time_ratio: 0.0,
            future_ratio: 0.0,
            reuse_ratio: 0.0,
            numeric_id_ratio: 0.0,
            invalid_utf8_ratio: 0.0,
            huge_ratio: 0.0,
            late_ratio: 0.0,
            late_max: Duration::from_secs(2),
            hostile_ratio: 0.0,
            malformed_ratio: 0.0,
            latency: Duration::ZERO,
            error_rate: 0.0,
            throttle_rate: 0.0,
            drop_rate: 0.0,
            truncate_rate: 0.0,
            stall_rate: 0.0,
            endless_rate: 0.0,
            users_error_rate: 0.0,
            users_stall_rate: 0.0,
            customer_id: "5f1e0c0a0b0c0d0e0f101112".into(),
            rate_limit: None,
            users: 40,
        }
    }
}

impl SimConfig {
    /// A quiet tenant: `backlog` events already there and no new ones, no
    /// adversity.
    pub fn quiet(backlog: usize) -> Self {
        Self {
            backlog,
            insert_rate: 0.0,
            ..Self::default()
        }
    }

    /// Every adversity switched on at once: ties in a fresh order per
    /// request, bulk operations larger than a page, late events, bogus and
    /// far-future timestamps, reused and numeric ids, hostile, malformed and
    /// non-UTF-8 events, latency, 5xx, 429, dropped connections, truncated
    /// and endless bodies. Order, `since` semantics, page cap and totals are
    /// left to the caller.
    pub fn adversarial(seed: u64) -> Self {
        Self {
            seed,
            ties: TieOrder::Shuffled,
            tie_ratio: 0.3,
            burst_ratio: 0.002,
            burst_size: 130,
            late_ratio: 0.15,
            late_max: Duration::from_millis(1500),
            bogus_time_ratio: 0.005,
            future_ratio: 0.001,
            reuse_ratio: 0.005,
            numeric_id_ratio: 0.01,
            invalid_utf8_ratio: 0.003,
            hostile_ratio: 0.05,
            malformed_ratio: 0.01,
            latency: Duration::from_millis(15),
            error_rate: 0.05,
            throttle_rate: 0.05,
            drop_rate: 0.03,
            truncate_rate: 0.03,
            endless_rate: 0.01,
            ..Self::default()
        }
    }

    /// How the listing pages.
    pub fn listing(&self) -> ListingConfig {
        ListingConfig {
            order: self.order,
            since_inclusive: self.since_inclusive,
            ties: self.ties,
            page_cap: self.page_cap,
            total: self.total,
        }
    }
}

/// One event of the ground truth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TruthEvent {
    /// Generation order; dead-letter events carry it as `details.sim_seq`
    /// (or as `garbage-<seq>` when they are not even objects).
    pub seq: u64,
    /// The id as served, when usable.
    pub id: Option<String>,
    /// True creation time, epoch ms.
    pub created_ms: i64,
    /// When the listing first showed it, epoch ms.
    pub visible_ms: i64,
    /// What the forwarder must do with it.
    pub expect: Expect,
    /// The action as served, when a string.
    pub action: Option<String>,
    /// It reuses the id of an earlier event, with other content: it must be
    /// delivered too, marked `id_reused`.
    pub reused: bool,
}

/// Counters of what the simulator answered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SimStats {
    /// Requests to the API routes.
    pub requests: u64,
    /// 2xx page responses served in full.
    pub pages_served: u64,
    /// Injected 5xx.
    pub errors: u64,
    /// 429s (random and rate limit).
    pub throttled: u64,
    /// Dropped connections.
    pub dropped: u64,
    /// Truncated bodies.
    pub truncated: u64,
    /// Bodies that never end.
    pub endless: u64,
    /// Requests left hanging.
    pub stalled: u64,
    /// 401s.
    pub unauthorized: u64,
    /// 400s.
    pub bad_requests: u64,
    /// Users lookups served.
    pub user_lookups: u64,
    /// The most audit-log requests that were in progress at once (prefetch
    /// shows as more than one).
    pub max_in_flight: u64,
}

pub(crate) struct Shared {
    pub(crate) config: Mutex<SimConfig>,
    pub(crate) world: Mutex<World>,
    pub(crate) faults: Mutex<rand::rngs::StdRng>,
    pub(crate) stats: Mutex<SimStats>,
    pub(crate) limiter: Option<governor::DefaultDirectRateLimiter>,
    pub(crate) in_flight: std::sync::atomic::AtomicU64,
    pub(crate) requests: Mutex<requests::RequestLog>,
}

/// A running simulated tenant.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Simulator {
    /// Starts the tenant on `bind` (use port 0 for a free port).
    pub async fn start(config: SimConfig, bind: SocketAddr) -> std::io::Result<Self> {
        use rand::SeedableRng;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let limiter = config
            .rate_limit
            .and_then(std::num::NonZeroU32::new)
            .map(|rps| {
                governor::RateLimiter::direct(governor::Quota::per_second(rps).allow_burst(rps))
            });
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(config.clone(), now_ms())),
            faults: Mutex::new(rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5eed_fa17)),
            stats: Mutex::default(),
            in_flight: Default::default(),
            requests: Mutex::default(),
            config: Mutex::new(config),
            limiter,
        });
        let shutdown = CancellationToken::new();
        let app = server::router(shared.clone());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(error = %error, "simulator stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> String {
        self.shared.config.lock().unwrap().api_key.clone()
    }

    /// Every event visible now, oldest first.
    pub fn truth(&self) -> Vec<TruthEvent> {
        let mut world = self.shared.world.lock().unwrap();
        world.advance(now_ms());
        world
            .events()
            .map(|e| TruthEvent {
                seq: e.seq,
                id: e.id.clone(),
                created_ms: e.created_ms,
                visible_ms: e.visible_ms,
                expect: e.expect,
                action: e.action.clone(),
                reused: e.reused,
            })
            .collect()
    }

    /// The users behind the events.
    pub fn users(&self) -> Vec<SimUser> {
        self.shared.world.lock().unwrap().users().to_vec()
    }

    /// Stops live inserts (after making everything due visible).
    pub fn freeze(&self) {
        let mut world = self.shared.world.lock().unwrap();
        world.advance(now_ms());
        world.freeze();
    }

    /// What the simulator answered so far.
    pub fn stats(&self) -> SimStats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// Every request to the audit-log endpoint so far (the newest
    /// [`requests::LOG_CAPACITY`]), in arrival order: when, from which user
    /// agent, with which `since`, `offset` and `limit`.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap().snapshot()
    }

    /// Changes fault rates while running (the event stream is unaffected).
    pub fn update(&self, change: impl FnOnce(&mut SimConfig)) {
        change(&mut self.shared.config.lock().unwrap());
    }

    /// Stops serving (hanging requests are cut off after a second).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
