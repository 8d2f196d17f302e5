//! User enrichment: resolves each event's `user_id` through the tenant's
//! users API (`preset`) to e-mail, name, role and enabled status.
//!
//! Lookups share the source's rate limiter and API key. Results are cached
//! (TTL for users found, a shorter one for 404s and one for failures, at
//! most `max_entries` users, least recently used evicted first). A batch
//! never waits longer than `timeout` for its lookups: whatever is not
//! resolved by then, or fails, is forwarded without enrichment and counted.
//! Enrichment can delay a batch by at most `timeout`; it never drops or
//! blocks an event.
//!
//! Each lookup's answer is a [`Lookup`]: the user, no such user (a 404,
//! remembered for `negative_ttl`), or a failure (remembered for
//! `error_ttl`). Its settings (`[source.enrich]`) are parsed in [`config`].

pub mod config;
pub mod preset;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use auditfwd_sink::{Event, UserInfo};
use futures_util::StreamExt;
use lru::LruCache;

use self::config::EnrichConfig;
use crate::http::{ApiClient, HttpError};
use crate::telemetry::{Health, Metrics, OutcomeCounters, Status};

/// How many lookups of one batch run at once.
const CONCURRENCY: usize = 4;

#[derive(Clone)]
struct Cached {
    user: Option<UserInfo>,
    until: Instant,
}

/// What one lookup of a user answered.
#[derive(Debug)]
pub enum Lookup {
    /// The users API knows the user.
    Found(UserInfo),
    /// It answered 404: no such user (deleted, or a wrong `url`).
    NotFound,
    /// No usable answer (an error status, a transport failure, a body
    /// without the configured fields), with the reason.
    Failed(String),
}

/// The enrichment of one source.
pub struct Enricher {
    source: String,
    client: Arc<ApiClient>,
    base: reqwest::Url,
    config: EnrichConfig,
    cache: Mutex<LruCache<String, Cached>>,
    lookups: OutcomeCounters,
    health: Health,
    tally: Mutex<Tally>,
}

/// Lookup outcomes so far, for health.
#[derive(Default)]
struct Tally {
    found: u64,
    not_found: u64,
    /// Failures since the users API last answered (found or not found).
    failing: u64,
}

/// 404s without a single user ever found, from which the lookups are taken
/// to be misconfigured (a wrong `url` or `base_url`) rather than asking for
/// deleted users.
const ALL_NOT_FOUND: u64 = 5;
/// Failed lookups in a row (errors, timeouts) that degrade enrichment.
const FAILING: u64 = 3;

impl Enricher {
    /// An enricher for the source `source`, sending through `client` (and
    /// so through the source's rate limiter and key). Lookups go to
    /// `config.base_url`, or else to the source's `base_url`.
    pub fn new(
        source: &str,
        base_url: &reqwest::Url,
        config: EnrichConfig,
        client: Arc<ApiClient>,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        let capacity = NonZeroUsize::new(config.max_entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            source: source.to_string(),
            base: config.base_url.clone().unwrap_or_else(|| base_url.clone()),
            client,
            cache: Mutex::new(LruCache::new(capacity)),
            config,
            lookups: metrics.lookups(source),
            health,
            tally: Mutex::default(),
        }
    }

    /// Shows in `/readyz` (component `enrich:<source>`) whether lookups
    /// work: failures in a row (a revoked key, a users API that is down),
    /// or 404s without any user ever found (a wrong URL), degrade it; an
    /// answer clears it.
    fn report(&self, found: u64, not_found: u64, failed: u64, reason: Option<String>) {
        let status = {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            t.found += found;
            t.not_found += not_found;
            t.failing = if found + not_found > 0 {
                failed
            } else {
                t.failing + failed
            };
            if t.failing >= FAILING {
                Status::Degraded(format!(
                    "user lookups fail ({} in a row), events go out without user details: {}",
                    t.failing,
                    reason.unwrap_or_else(|| "timed out".into())
                ))
            } else if t.found == 0 && t.not_found >= ALL_NOT_FOUND {
                Status::Degraded(format!(
                    "every user lookup so far ({}) answered 404; check `url` and `base_url` in [source.enrich]",
                    t.not_found
                ))
            } else if t.found > 0 || (t.failing == 0 && found + not_found > 0) {
                Status::Ok
            } else {
                return;
            }
        };
        let component = format!("enrich:{}", self.source);
        let previous = self.health.get(&component);
        if previous.as_ref() != Some(&status) {
            match &status {
                Status::Degraded(reason) => {
                    tracing::warn!(source = %self.source, reason = %reason, "enrichment degraded")
                }
                _ if previous.is_some() => {
                    tracing::info!(source = %self.source, "user lookups work again")
                }
                _ => {}
            }
            self.health.set(&component, status);
        }
    }

    fn count(&self, outcome: &'static str, n: u64) {
        if n > 0 {
            self.lookups.inc_by(outcome, n);
        }
    }

    /// The lookup URL of `user_id`; `None` for ids that can not be a path
    /// segment (empty, `.`, `..`, absurdly long).
    pub fn url_for(&self, user_id: &str) -> Option<reqwest::Url> {
        if user_id.is_empty() || user_id == "." || user_id == ".." || user_id.len() > 512 {
            return None;
        }
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().ok()?;
            segments.pop_if_empty();
            for part in self.config.preset.url.trim_start_matches('/').split('/') {
                // Each value is one percent-encoded segment: an id holding
                // `/` or `?` can not reach another path.
                segments.push(match part {
                    "{id}" => user_id,
                    "{customer_id}" => self.config.customer_id.as_deref().unwrap_or_default(),
                    literal => literal,
                });
            }
        }
        Some(url)
    }

    /// Asks the users API at `url` (one attempt).
    pub async fn lookup(&self, url: reqwest::Url) -> Lookup {
        match self.client.get(url).await {
            Ok(response) => match serde_json::from_slice::<serde_json::Value>(&response.body) {
                Ok(doc) => match self.config.preset.fields.extract(&doc) {
                    Some(user) => Lookup::Found(user),
                    None => Lookup::Failed("the response has none of the configured fields".into()),
                },
                Err(e) => Lookup::Failed(format!("the response is not JSON: {e}")),
            },
            Err(HttpError::NotFound { .. }) => Lookup::NotFound,
            Err(e) => Lookup::Failed(e.to_string()),
        }
    }

    /// Sets `user` on every event whose user could be resolved within the
    /// time budget; leaves the others as they are.
    pub async fn enrich(&self, events: &mut [Event]) {
        let started = Instant::now();
        let mut wanted: Vec<(String, reqwest::Url)> = Vec::new();
        let mut seen = HashSet::new();
        // This batch's answers (cache hits and lookups), applied whether or
        // not the bounded cache keeps them.
        let mut answers: HashMap<String, Option<UserInfo>> = HashMap::new();
        let mut hits = 0;
        let mut unusable = 0;
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for id in events.iter().filter_map(|e| e.user_id.as_deref()) {
                if !seen.insert(id.to_string()) {
                    continue;
                }
                match cache.get(id) {
                    Some(c) if c.until > started => {
                        hits += 1;
                        answers.insert(id.to_string(), c.user.clone());
                    }
                    _ => match self.url_for(id) {
                        Some(url) => wanted.push((id.to_string(), url)),
                        None => unusable += 1,
                    },
                }
            }
        }
        self.count("cache_hit", hits);
        self.count("unusable_id", unusable);
        if !wanted.is_empty() {
            let deadline = tokio::time::Instant::now() + self.config.timeout;
            let results: Vec<(String, Option<Lookup>)> = futures_util::stream::iter(wanted)
                .map(|(id, url)| async move {
                    let result = tokio::time::timeout_at(deadline, self.lookup(url))
                        .await
                        .ok();
                    (id, result)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let now = Instant::now();
            let (mut found, mut not_found, mut failed, mut last_reason) = (0u64, 0u64, 0u64, None);
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for (id, result) in results {
                let (user, ttl, outcome) = match result {
                    Some(Lookup::Found(user)) => {
                        found += 1;
                        (Some(user), self.config.ttl, "found")
                    }
                    Some(Lookup::NotFound) => {
                        not_found += 1;
                        (None, self.config.negative_ttl, "not_found")
                    }
                    Some(Lookup::Failed(reason)) => {
                        tracing::debug!(source = %self.source, reason = %reason, "user lookup failed; event forwarded without enrichment");
                        failed += 1;
                        last_reason = Some(reason);
                        (None, self.config.error_ttl, "error")
                    }
                    None => {
                        failed += 1;
                        (None, self.config.error_ttl, "timeout")
                    }
                };
                self.count(outcome, 1);
                answers.insert(id.clone(), user.clone());
                cache.put(
                    id,
                    Cached {
                        user,
                        until: now + ttl,
                    },
                );
            }
            drop(cache);
            self.report(found, not_found, failed, last_reason);
        }
        for event in events.iter_mut() {
            if let Some(user) = event.user_id.as_deref().and_then(|id| answers.get(id)) {
                event.user = user.clone();
            }
        }
    }

    /// Users in the cache.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use auditfwd_sim::{SimConfig, Simulator};
    use auditfwd_sink::testing::sample_events;

    #[tokio::test]
    async fn the_cache_is_bounded_and_ids_stay_one_path_segment() {
        let sim = Simulator::start(
            SimConfig {
                users: 10,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let text = format!(
            "[[source]]\nname = \"t\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\n[source.enrich]\npreset = \"peoplelens-v1\"\nmax_entries = 3\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n",
            sim.base_url(),
            sim.api_key()
        );
        let config = Config::parse(
            &text,
            std::path::Path::new("t.toml"),
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        let source = &config.sources[0];
        let limiter = crate::rate_limit::limiter(source.requests_per_second, source.burst);
        let pool = crate::http::HttpPool::new(crate::config::DEFAULT_MAX_REQUESTS_IN_FLIGHT, 1);
        let client = Arc::new(pool.client(&source.endpoint(), limiter).unwrap());
        let enricher = Enricher::new(
            &source.name,
            &source.base_url,
            source.enrich.clone().unwrap(),
            client,
            Metrics::new(),
            Health::default(),
        );
        let users = sim.users();
        let mut events = sample_events("t", users.len());
        for (e, u) in events.iter_mut().zip(&users) {
            e.user_id = Some(u.id.clone());
        }
        enricher.enrich(&mut events).await;
        assert!(
            events
                .iter()
                .all(|e| e.user.as_ref().and_then(|u| u.email.as_ref()).is_some())
        );
        assert_eq!(enricher.cached(), 3, "at most max_entries users are kept");

        let url = enricher.url_for("../../admin?x=1#y").unwrap();
        assert_eq!(url.path(), "/api/v1/users/..%2F..%2Fadmin%3Fx=1%23y");
        assert!(url.query().is_none());
        assert!(enricher.url_for("..").is_none() && enricher.url_for("").is_none());
    }
}
