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
    /// When it became visible (ms).
    pub visible_ms: i64,
    /// The action as served (if a string).
    pub action: Option<String>,
    /// What the forwarder must do with it.
    pub expect: Expect,
    /// The acting user id, if a string.
    pub user_id: Option<String>,
    /// The event's JSON as served.
    #[serde(skip)]
    pub json: Arc<str>,
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

/// The tenant's state.
pub struct World {
    config: SimConfig,
    rng: StdRng,
    /// Visible events sorted by (created_ms, seq).
    listing: Vec<Arc<SimEvent>>,
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

fn iso(ms: i64) -> String {
    auditfwd_sink::format_millis(&chrono::DateTime::from_timestamp_millis(ms).expect("valid ms"))
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
        let mut world = Self {
            config,
            rng,
            listing: Vec::new(),
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
            self.insert(created, due);
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
        self.last_created_ms = created_ms;
        let event = self.generate(seq, created_ms, visible_ms);
        let pos = self
            .listing
            .partition_point(|e| (e.created_ms, e.seq) < (created_ms, seq));
        self.listing.insert(pos, Arc::new(event));
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
        let id = uuid(rng);
        let user_id = if rng.random_bool(0.1) {
            uuid(rng) // a user that no longer exists (404 on enrichment)
        } else {
            self.users.choose(rng).expect("users").id.clone()
        };
        // Timestamps in several valid spellings of the same instant, some
        // only to the second (as APIs that store less precision do).
        let created_text = match rng.random_range(0..20) {
            0 => chrono::DateTime::from_timestamp_millis(created_ms)
                .expect("valid")
                .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            1 => chrono::DateTime::from_timestamp_millis(created_ms)
                .expect("valid")
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            _ => iso(created_ms),
        };
        let mut event = json!({
            "id": id,
            "action": action,
            "entity_type": entity_type,
            "entity_id": uuid(rng),
            "user_id": user_id,
            "details": { "ip": format!("198.51.100.{}", rng.random_range(1..255)), "user_agent": "Mozilla/5.0" },
            "created_at": created_text,
        });
        if action == "ROLE_CHANGED" {
            event["details"]["new_role"] = json!(ROLES.choose(rng).expect("roles"));
        }
        let mut expect = Expect::Deliver;
        let roll: f64 = rng.random();
        if roll < self.config.malformed_ratio {
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
        }
        let served_id = match &event["id"] {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        SimEvent {
            seq,
            id: served_id,
            created_ms,
            visible_ms,
            action: event["action"].as_str().map(str::to_string),
            expect,
            user_id: event["user_id"].as_str().map(str::to_string),
            json: Arc::from(event.to_string()),
        }
    }

    /// Every visible event, oldest first.
    pub fn events(&self) -> &[Arc<SimEvent>] {
        &self.listing
    }

    /// The tenant's users.
    pub fn users(&self) -> &[SimUser] {
        &self.users
    }

    /// One page of the listing: events with `created_ms > since` (or `>=`
    /// when inclusive), optionally of one action, in the configured order.
    /// Returns the page and the total.
    pub fn page(
        &self,
        since_ms: Option<i64>,
        action: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> (Vec<Arc<SimEvent>>, usize) {
        let start = match since_ms {
            None => 0,
            Some(s) if self.config.since_inclusive => {
                self.listing.partition_point(|e| e.created_ms < s)
            }
            Some(s) => self.listing.partition_point(|e| e.created_ms <= s),
        };
        let window = &self.listing[start..];
        let matches = |e: &&Arc<SimEvent>| action.is_none_or(|a| e.action.as_deref() == Some(a));
        let total = if action.is_some() {
            window.iter().filter(matches).count()
        } else {
            window.len()
        };
        let page: Vec<Arc<SimEvent>> = if self.config.newest_first() {
            window
                .iter()
                .rev()
                .filter(matches)
                .skip(offset)
                .take(limit)
                .cloned()
                .collect()
        } else {
            window
                .iter()
                .filter(matches)
                .skip(offset)
                .take(limit)
                .cloned()
                .collect()
        };
        (page, total)
    }
}
