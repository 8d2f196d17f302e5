//! The simulated tenant's data: a seeded, reproducible stream of audit
//! events, the listing the API pages over, and the users behind the events.
//!
//! Events are generated in schedule order from the seed alone, so two runs
//! with the same seed produce the same events; only *when* an event becomes
//! visible depends on the wall clock (live inserts happen at `insert_rate`).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use super::SimConfig;
use super::hostile;
use super::listing::Listing;

/// What the forwarder must do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Forward it to the sinks.
    Deliver,
    /// It has no usable id or `created_at`: dead-letter it.
    DeadLetter,
}

/// One event of the tenant.
#[derive(Debug, Clone, Serialize)]
pub struct SimEvent {
    /// Generation order (also `details.sim_seq` of dead-letter events).
    pub seq: u64,
    /// The id as served (`None` when the event is served without a usable id).
    pub id: Option<String>,
    /// The true creation time (ms), what `since` filters on.
    pub created_ms: i64,
    /// When the listing first showed it (ms): the first request after it
    /// was due.
    pub visible_ms: i64,
    /// The action as served (if a string).
    pub action: Option<String>,
    /// What the forwarder must do with it.
    pub expect: Expect,
    /// The acting user id, if a string.
    pub user_id: Option<String>,
    /// It reuses an earlier event's id with other content.
    pub reused: bool,
    /// The event's JSON as served (possibly not UTF-8).
    #[serde(skip)]
    pub json: Arc<[u8]>,
}

/// A user of the tenant, served by the users APIs.
#[derive(Debug, Clone, Serialize)]
pub struct SimUser {
    /// UUID.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role.
    pub role: String,
    /// Enabled (not suspended).
    pub enabled: bool,
}

/// Actions with their entity types; weights favour logins like a real
/// tenant.
const ACTIONS: &[(&str, &str, u32)] = &[
    ("USER_LOGIN", "user", 30),
    ("USER_LOGOUT", "user", 10),
    ("USER_LOGIN_FAILED", "user", 6),
    ("USER_CREATED", "user", 4),
    ("USER_UPDATED", "user", 4),
    ("USER_DELETED", "user", 2),
    ("ROLE_CHANGED", "user", 3),
    ("API_KEY_CREATED", "api_key", 2),
    ("API_KEY_REVOKED", "api_key", 1),
    ("CANDIDATE_CREATED", "candidate", 10),
    ("CANDIDATE_UPDATED", "candidate", 8),
    ("CANDIDATE_VIEWED", "candidate", 10),
    ("CANDIDATE_DELETED", "candidate", 3),
    ("EXPORT_DOWNLOADED", "export", 2),
    ("SETTINGS_CHANGED", "tenant", 1),
];

const ROLES: &[&str] = &["Recruiter", "HiringManager", "Interviewer", "Administrator"];
const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Donald",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Knuth",
];

/// The year 9999, where a far-future event is stored.
const FAR_FUTURE_MS: i64 = 253_402_300_799_000;

/// Bogus `created_at` texts an API may show for a correctly stored event.
const BOGUS_TIMES: &[&str] = &[
    "9999-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00.000Z",
    "0001-01-01T00:00:00Z",
];

/// The tenant's state.
pub struct World {
    config: SimConfig,
    rng: StdRng,
    /// Shuffles tie groups, per request.
    order_rng: StdRng,
    /// Every visible event.
    listing: Listing<Arc<SimEvent>>,
    /// Ids of deliverable string-id events, for reuse.
    reusable: Vec<String>,
    /// Next numeric id.
    next_number: u64,
    /// A string id that collides with a numeric one, for the next event.
    colliding: Option<String>,
    users: Vec<SimUser>,
    seq: u64,
    last_created_ms: i64,
    start_ms: i64,
    /// Live events generated so far.
    live: u64,
    frozen: bool,
}

fn uuid(rng: &mut impl Rng) -> String {
    let b: [u8; 16] = rng.random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

impl World {
    /// A world starting at `start_ms` with its backlog already visible.
    pub fn new(config: SimConfig, start_ms: i64) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let users = (0..config.users.max(1))
            .map(|i| {
                let first = FIRST[i % FIRST.len()].to_string();
                let last = LAST[(i / FIRST.len()) % LAST.len()].to_string();
                SimUser {
                    id: uuid(&mut rng),
                    email: format!(
                        "{}.{}{}@example.com",
                        first.to_lowercase(),
                        last.to_lowercase(),
                        i
                    ),
                    first_name: first,
                    last_name: last,
                    role: ROLES[i % ROLES.len()].to_string(),
                    enabled: i % 9 != 4,
                }
            })
            .collect();
        let span_ms = config.backlog_span.as_millis() as i64;
        let backlog = config.backlog;
        let order_rng = StdRng::seed_from_u64(config.seed ^ 0x0dde_7ede);
        let mut world = Self {
            config,
            rng,
            order_rng,
            listing: Listing::default(),
            reusable: Vec::new(),
            next_number: 1000,
            colliding: None,
            users,
            seq: 0,
            last_created_ms: start_ms - span_ms,
            start_ms,
            live: 0,
            frozen: false,
        };
        for i in 0..backlog {
            let at = start_ms - span_ms + (span_ms * i as i64) / backlog.max(1) as i64;
            let created = if i > 0 && world.rng.random_bool(world.config.tie_ratio) {
                world.last_created_ms
            } else {
                at
            };
            world.insert(created, start_ms - 1);
        }
        world
    }

    /// Makes every live event scheduled up to `now_ms` visible.
    pub fn advance(&mut self, now_ms: i64) {
        if self.frozen || self.config.insert_rate <= 0.0 {
            return;
        }
        loop {
            let due = self.start_ms
                + ((self.live as f64 + 1.0) * 1000.0 / self.config.insert_rate) as i64;
            if due > now_ms {
                break;
            }
            self.live += 1;
            if self
                .rng
                .random_bool(self.config.burst_ratio.clamp(0.0, 1.0))
            {
                // A bulk operation: many events on one millisecond.
                for _ in 0..self.config.burst_size {
                    self.insert(due, now_ms);
                }
                continue;
            }
            if self
                .rng
                .random_bool(self.config.future_ratio.clamp(0.0, 1.0))
            {
                self.insert(FAR_FUTURE_MS, now_ms);
                continue;
            }
            let created = if self.rng.random_bool(self.config.tie_ratio) {
                // A burst: same millisecond as the previous event (if that
                // one was late, no later than late_max allows).
                self.last_created_ms
                    .min(due)
                    .max(due - self.config.late_max.as_millis() as i64)
            } else if self.rng.random_bool(self.config.late_ratio) {
                // Late: created in the past, visible only now.
                let late = self
                    .rng
                    .random_range(0..=self.config.late_max.as_millis() as i64);
                due - late
            } else {
                due
            };
            self.insert(created, now_ms);
        }
    }

    /// Stops live inserts; the listing is final from now on.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Whether live inserts stopped.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    fn insert(&mut self, created_ms: i64, visible_ms: i64) {
        let seq = self.seq;
        self.seq += 1;
        if created_ms != FAR_FUTURE_MS {
            self.last_created_ms = created_ms;
        }
        let event = self.generate(seq, created_ms, visible_ms);
        self.listing.insert(created_ms, seq, Arc::new(event));
    }

    /// `created_at` as this tenant shows it.
    fn show_time(&mut self, created_ms: i64) -> String {
        let rng = &mut self.rng;
        if rng.random_bool(self.config.bogus_time_ratio.clamp(0.0, 1.0)) {
            return BOGUS_TIMES.choose(rng).expect("non-empty").to_string();
        }
        let precision = if self.config.coarse_time {
            chrono::SecondsFormat::Secs
        } else {
            chrono::SecondsFormat::Millis
        };
        let shown_ms = if self.config.coarse_time {
            created_ms.div_euclid(1000) * 1000
        } else {
            created_ms
        };
        let at = chrono::DateTime::from_timestamp_millis(shown_ms).expect("valid ms");
        // The same instant in several valid spellings.
        if rng.random_range(0..20) == 0 {
            at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
                .to_rfc3339_opts(precision, false)
        } else {
            at.to_rfc3339_opts(precision, true)
        }
    }

    fn generate(&mut self, seq: u64, created_ms: i64, visible_ms: i64) -> SimEvent {
        let rng = &mut self.rng;
        let weights: u32 = ACTIONS.iter().map(|a| a.2).sum();
        let mut pick = rng.random_range(0..weights);
        let (action, entity_type) = ACTIONS
            .iter()
            .find(|a| {
                if pick < a.2 {
                    true
                } else {
                    pick -= a.2;
                    false
                }
            })
            .map(|a| (a.0, a.1))
            .expect("weights cover the range");
        let mut id = json!(uuid(rng));
        let mut reused = false;
        if let Some(text) = self.colliding.take() {
            id = json!(text);
        } else if rng.random_bool(self.config.numeric_id_ratio.clamp(0.0, 1.0)) {
            let n = self.next_number;
            self.next_number += 1;
            id = json!(n);
            if rng.random_bool(0.5) {
                self.colliding = Some(n.to_string());
            }
        } else if !self.reusable.is_empty()
            && rng.random_bool(self.config.reuse_ratio.clamp(0.0, 1.0))
        {
            // Half reuse one of the last 20 ids (an object updated at once,
            // well inside any dedup memory: it must be marked), half any
            // earlier one (maybe long forgotten).
            let recent = self.reusable.len().saturating_sub(20);
            let pool = if rng.random_bool(0.5) {
                &self.reusable[recent..]
            } else {
                &self.reusable[..]
            };
            id = json!(pool.choose(rng).expect("non-empty").clone());
            reused = true;
        }
        let rng = &mut self.rng;
        let user_id = if rng.random_bool(0.1) {
            uuid(rng) // a user that no longer exists (404 on enrichment)
        } else {
            self.users.choose(rng).expect("users").id.clone()
        };
        let entity_id = uuid(rng);
        let ip = rng.random_range(1..255);
        let created_text = self.show_time(created_ms);
        let rng = &mut self.rng;
        let mut event = json!({
            "id": id,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "user_id": user_id,
            "details": { "ip": format!("198.51.100.{ip}"), "user_agent": "Mozilla/5.0" },
            "created_at": created_text,
        });
        if action == "ROLE_CHANGED" {
            event["details"]["new_role"] = json!(ROLES.choose(rng).expect("roles"));
        }
        let mut expect = Expect::Deliver;
        let mut invalid_utf8 = false;
        let roll: f64 = rng.random();
        if reused {
            // Other content under an old id: never malformed, never hostile.
            event["details"]["reused_from_seq"] = json!(seq);
        } else if roll < self.config.malformed_ratio {
            expect = Expect::DeadLetter;
            event["details"] = json!({ "sim_seq": seq });
            match rng.random_range(0..8) {
                0 => {
                    event.as_object_mut().expect("object").remove("id");
                }
                1 => event["id"] = Value::Null,
                2 => event["id"] = json!({ "uuid": id }),
                3 => event["id"] = json!(""),
                4 => {
                    event.as_object_mut().expect("object").remove("created_at");
                }
                5 => event["created_at"] = json!("not a date"),
                6 => event["created_at"] = json!(created_ms),
                // Not even an object.
                _ => event = json!(format!("garbage-{seq}")),
            }
        } else if roll < self.config.malformed_ratio + self.config.hostile_ratio {
            for field in ["action", "entity_type", "entity_id", "user_id"] {
                if rng.random_bool(0.5) {
                    event[field] = hostile::odd_value(rng);
                }
            }
            if rng.random_bool(0.2) {
                event.as_object_mut().expect("object").remove("entity_type");
            }
            event["details"] = hostile::details(rng);
        } else if roll
            < self.config.malformed_ratio
                + self.config.hostile_ratio
                + self.config.invalid_utf8_ratio
        {
            expect = Expect::DeadLetter;
            invalid_utf8 = true;
            event["details"] = json!({ "sim_seq": seq, "note": "bad@@BYTE@@byte" });
        } else if rng.random_bool(self.config.huge_ratio.clamp(0.0, 1.0)) {
            event["details"]["blob"] = json!("x".repeat(1 << 20));
        }
        let served_id = match &event["id"] {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) if expect == Expect::Deliver => Some(n.to_string()),
            _ => None,
        };
        if expect == Expect::Deliver
            && !reused
            && let Value::String(s) = &event["id"]
        {
            self.reusable.push(s.clone());
        }
        let mut json = event.to_string().into_bytes();
        if invalid_utf8 {
            let marker = b"@@BYTE@@";
            let at = json
                .windows(marker.len())
                .position(|w| w == marker)
                .expect("marker present");
            json.splice(at..at + marker.len(), [0xC3, 0x28]);
        }
        SimEvent {
            seq,
            id: served_id,
            created_ms,
            visible_ms,
            action: event["action"].as_str().map(str::to_string),
            expect,
            user_id: event["user_id"].as_str().map(str::to_string),
            reused,
            json: Arc::from(json),
        }
    }

    /// Every visible event, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Arc<SimEvent>> {
        self.listing.iter()
    }

    /// The tenant's users.
    pub fn users(&self) -> &[SimUser] {
        &self.users
    }

    /// One page of the listing as the configured API serves it, with the
    /// total it reports.
    pub fn page(
        &mut self,
        since_ms: Option<i64>,
        action: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> (Vec<Arc<SimEvent>>, Option<u64>) {
        let config = self.config.listing();
        let of_action = |e: &Arc<SimEvent>| action.is_none_or(|a| e.action.as_deref() == Some(a));
        self.listing.page(
            &config,
            since_ms,
            action
                .is_some()
                .then_some(&of_action as &dyn Fn(&Arc<SimEvent>) -> bool),
            offset,
            limit,
            &mut self.order_rng,
        )
    }
}
