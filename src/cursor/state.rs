//! The durable part of a cursor, and the checkpoints that change it.
//!
//! A [`CursorState`] changes **only** through [`CursorState::apply`] of a
//! [`Checkpoint`]: the live cursor applies each checkpoint it hands to the
//! store, and a restart replays the same checkpoints onto the last snapshot.
//! Replay therefore rebuilds exactly the state the live cursor had, pruning
//! included. Every checkpoint carries a sequence number; one the state
//! already holds (a journal replayed onto a newer snapshot after a crash
//! during compaction) is skipped, so nothing is counted twice and an older
//! checkpoint never overwrites a newer one.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{EventKey, KeyMap};

/// Version of the state layout. 2: 128-bit keys, content hashes, pass
/// progress and sequence numbers.
pub const STATE_VERSION: u32 = 2;

/// Tolerance below the window start, in ms. An API may show `created_at`
/// at a coarser precision than it filters `since` on (seconds instead of
/// milliseconds): events shown up to this much before the window start are
/// in the window, and `seen` keeps ids that far back.
pub const PRECISION_MARGIN_MS: i64 = 1000;

/// How many of the ids a pass acknowledged last are kept whatever their
/// time. An id is met again within a pass only when events inserted ahead
/// of it pushed it back past the read position; forgetting it only after
/// this many newer ids were delivered tolerates inserts of up to about this
/// many events between two requests. Counted in ids, not pages, so that a
/// pass that re-reads without delivering (a tie group sampled, a listing
/// shifting under small pages) forgets nothing.
pub const RECENT_IDS: u64 = 2000;

/// Most ids kept for events outside every window (a `created_at` far in the
/// past or future, which a listing may return on every pass). The oldest is
/// forgotten first; such an event may then be delivered again.
pub const STRAY_CAP: usize = 10_000;

/// The content hash of ids carried over from layout 1, which did not
/// record content: it matches any content.
pub const UNKNOWN_CONTENT: u64 = u64::MAX;

/// A delivered id and what the cursor remembers of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `created_at` (epoch ms) used for pruning.
    pub ms: i64,
    /// Content hash, to tell a reused id from a repeat.
    pub content: u64,
    /// Its number among all acknowledged ids ([`CursorState::acked_no`]).
    pub n: u64,
}

/// What a pass reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    /// The whole lookback window: finds late events, moves the watermark.
    #[default]
    Sweep,
    /// Only what is newer than the newest event delivered (minus the
    /// precision margin): cheap, run between sweeps.
    Head,
}

/// The pass in progress, saved with every checkpoint so that a restart
/// resumes it instead of reading the window again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassProgress {
    /// Sweep or head pass.
    #[serde(default)]
    pub kind: PassKind,
    /// Window start (epoch ms); `since` is one millisecond earlier.
    pub since_ms: i64,
    /// Pass start (local clock, lowered to the server's `Date`).
    pub t0_ms: i64,
    /// Newest trustworthy `created_at` read in this pass.
    pub newest_ms: Option<i64>,
    /// Next offset to read: every event visible at the pass start and
    /// listed before it has been delivered.
    pub offset: u64,
    /// [`CursorState::acked_no`] when this pass began; ids acknowledged
    /// before it are kept until the pass ends.
    pub first_ack: u64,
    /// The lookback this pass runs with (ms).
    pub lookback_ms: i64,
    /// The time of the last oversized tie group read in this pass: ids
    /// created then are kept until the pass ends, however many they are
    /// (sampling re-reads the group out of order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<i64>,
}

impl PassProgress {
    /// The watermark this pass can set when it ends: its start, but no later
    /// than the newest event it read (the API's own clock).
    pub fn end_watermark(&self) -> Option<i64> {
        self.newest_ms.map(|n| n.min(self.t0_ms))
    }
}

/// Ids of events outside every window, oldest first, at most [`STRAY_CAP`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Strays {
    content: KeyMap<u64>,
    order: VecDeque<EventKey>,
}

impl Strays {
    /// The content hash of a known stray.
    pub fn get(&self, key: &EventKey) -> Option<u64> {
        self.content.get(key).copied()
    }

    /// Remembers (or updates) a stray.
    pub fn insert(&mut self, key: EventKey, content: u64) {
        if self.content.insert(key, content).is_none() {
            self.order.push_back(key);
            while self.order.len() > STRAY_CAP {
                if let Some(old) = self.order.pop_front() {
                    self.content.remove(&old);
                }
            }
        }
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Serialize for Strays {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.order.iter().map(|k| (k, self.content[k])))
    }
}

impl<'de> Deserialize<'de> for Strays {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut strays = Strays::default();
        for (key, content) in Vec::<(EventKey, u64)>::deserialize(d)? {
            strays.insert(key, content);
        }
        Ok(strays)
    }
}

/// The persistent part of the cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorState {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// The source this state belongs to.
    pub source: String,
    /// Sequence number of the last checkpoint applied.
    #[serde(default)]
    pub seq: u64,
    /// Events created before this (epoch ms) are out of scope.
    pub floor_ms: i64,
    /// Every in-scope event created before `watermark_ms - lookback` is
    /// delivered.
    pub watermark_ms: i64,
    /// The newest `created_at` delivered (no later than its pass's start):
    /// head passes read from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_ms: Option<i64>,
    /// When the last complete sweep started (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept_ms: Option<i64>,
    /// Ids acknowledged so far (all passes): numbers them, oldest first.
    #[serde(default)]
    pub acked_no: u64,
    /// Delivered ids, for deduplication.
    #[serde(with = "seen_list")]
    pub seen: KeyMap<Entry>,
    /// Delivered ids of events outside every window.
    #[serde(default, skip_serializing_if = "Strays::is_empty")]
    pub strays: Strays,
    /// The pass in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassProgress>,
    /// Events acknowledged by every sink since this state was created.
    #[serde(default)]
    pub delivered_total: u64,
    /// Events sent to the dead-letter file since this state was created.
    #[serde(default)]
    pub dead_lettered_total: u64,
}

/// `seen` as a list of `[key, ms, content, n]`, oldest first, so the
/// state file is stable.
mod seen_list {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Entry;
    use crate::model::{EventKey, KeyMap};

    pub(super) fn serialize<S: Serializer>(seen: &KeyMap<Entry>, s: S) -> Result<S::Ok, S::Error> {
        let mut list: Vec<(&EventKey, &Entry)> = seen.iter().collect();
        list.sort_unstable_by(|a, b| a.1.ms.cmp(&b.1.ms).then_with(|| a.0.cmp(b.0)));
        s.collect_seq(list.into_iter().map(|(k, e)| (k, e.ms, e.content, e.n)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyMap<Entry>, D::Error> {
        Ok(Vec::<(EventKey, i64, u64, u64)>::deserialize(d)?
            .into_iter()
            .map(|(k, ms, content, n)| (k, Entry { ms, content, n }))
            .collect())
    }
}

/// One acknowledged key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// The key.
    pub key: EventKey,
    /// `created_at` used for pruning (ms).
    pub ms: i64,
    /// Content hash.
    pub content: u64,
    /// Outside every window: kept among the strays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stray: bool,
}

/// A change to the cursor that must be made durable before it counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number: one more than the state's before it.
    pub seq: u64,
    /// Keys acknowledged by every sink (or the dead-letter file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked: Vec<Acked>,
    /// How many of `acked` went through the sinks (or were left out by the
    /// source's `actions` filter).
    #[serde(default)]
    pub delivered: u64,
    /// How many of `acked` went to the dead-letter file.
    #[serde(default)]
    pub dead_lettered: u64,
    /// The pass in progress after this change (`None`: no pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassProgress>,
    /// The pass ended with this change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<PassEnd>,
}

/// How a pass ended, in a [`Checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassEnd {
    /// The new watermark, when a sweep completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_ms: Option<i64>,
    /// The lookback the pass ran with (ms), for pruning.
    pub lookback_ms: i64,
    /// The newest `created_at` the pass delivered (no later than its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_ms: Option<i64>,
    /// A sweep completed that started then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept_ms: Option<i64>,
}

impl CursorState {
    /// A fresh state: nothing delivered, scope starting at `floor`.
    pub fn new(source: &str, floor: DateTime<Utc>) -> Self {
        let floor_ms = floor.timestamp_millis();
        Self {
            version: STATE_VERSION,
            source: source.to_string(),
            seq: 0,
            floor_ms,
            watermark_ms: floor_ms,
            head_ms: None,
            swept_ms: None,
            acked_no: 0,
            seen: KeyMap::default(),
            strays: Strays::default(),
            pass: None,
            delivered_total: 0,
            dead_lettered_total: 0,
        }
    }

    /// Start of the window a pass reads: `max(W - lookback, floor)`.
    pub fn window_start(&self, lookback_ms: i64) -> i64 {
        self.watermark_ms
            .saturating_sub(lookback_ms)
            .max(self.floor_ms)
    }

    /// Applies a durable checkpoint; one already applied (by sequence) is
    /// ignored. Returns whether it was applied.
    pub fn apply(&mut self, checkpoint: &Checkpoint) -> bool {
        if checkpoint.seq <= self.seq {
            return false;
        }
        self.seq = checkpoint.seq;
        for acked in &checkpoint.acked {
            self.acked_no += 1;
            if acked.stray {
                self.strays.insert(acked.key, acked.content);
            } else {
                self.seen.insert(
                    acked.key,
                    Entry {
                        ms: acked.ms,
                        content: acked.content,
                        n: self.acked_no,
                    },
                );
            }
        }
        self.delivered_total += checkpoint.delivered;
        self.dead_lettered_total += checkpoint.dead_lettered;
        self.pass = checkpoint.pass;
        if let Some(end) = checkpoint.end {
            if let Some(w) = end.watermark_ms {
                self.watermark_ms = self.watermark_ms.max(w);
            }
            if let Some(h) = end.head_ms {
                self.head_ms = Some(self.head_ms.map_or(h, |old| old.max(h)));
            }
            if let Some(t) = end.swept_ms {
                self.swept_ms = Some(self.swept_ms.map_or(t, |old| old.max(t)));
            }
            self.pass = None;
            self.prune(end.lookback_ms);
        } else if let Some(pass) = self.pass {
            self.prune_pass(pass);
        }
        true
    }

    /// Forgets ids no pass can return any more: created before the window
    /// start minus the precision margin.
    pub fn prune(&mut self, lookback_ms: i64) {
        let keep_from = self
            .window_start(lookback_ms)
            .saturating_sub(PRECISION_MARGIN_MS);
        self.seen.retain(|_, e| e.ms >= keep_from);
    }

    /// During a pass: forgets the ids this pass acknowledged before its
    /// last [`RECENT_IDS`] that the next pass's window will not hold either.
    /// Ids of earlier passes stay until this one ends: it may still meet
    /// them.
    fn prune_pass(&mut self, pass: PassProgress) {
        // The watermark this pass will set is at least what it could set now
        // (a head pass sets none: the next window is the current one).
        let watermark = match pass.kind {
            PassKind::Sweep => pass
                .end_watermark()
                .map_or(self.watermark_ms, |w| w.max(self.watermark_ms)),
            PassKind::Head => self.watermark_ms,
        };
        let keep_from = watermark
            .saturating_sub(pass.lookback_ms)
            .max(self.floor_ms)
            .saturating_sub(PRECISION_MARGIN_MS);
        let recent_from = self.acked_no.saturating_sub(RECENT_IDS);
        self.seen.retain(|_, e| {
            e.ms >= keep_from
                || e.n <= pass.first_ack
                || e.n > recent_from
                || Some(e.ms) == pass.hold_ms
        });
    }
}
