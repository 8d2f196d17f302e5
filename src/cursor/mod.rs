//! The durable cursor of one source: which events are delivered, which are
//! still to fetch, and how to page the API so that none is missed.
//!
//! # Delivery guarantee
//!
//! auditfwd is **at-least-once**: the cursor advances past an event only
//! after **every sink that must receive it acknowledged it** (and the
//! dead-letter file, for events that can not be forwarded, was fsynced).
//! The order is fixed by the types: [`Cursor::admit`] hands out a [`Batch`];
//! only [`Cursor::commit`] of that batch (called by the poller after the
//! pipeline returned the acknowledgements) records it, and only the
//! resulting [`Checkpoint`], once durably written by the
//! [`store::StateStore`], survives a restart. A crash at any instant
//! therefore re-sends at most the batch that was in flight.
//!
//! # How the API is paged
//!
//! The API offers `since`, `limit` and `offset`, and promises nothing about
//! sort order, `since` inclusivity, ties or late arrivals. The cursor keeps:
//!
//! - `floor`: events created before it are out of scope (`start_at`,
//!   `state set-since`);
//! - `watermark` *W*: every in-scope event created before *W − lookback*
//!   has been delivered;
//! - `seen`: the ids delivered with `created_at ≥ W − lookback`.
//!
//! A **pass** reads the window `created_at ≥ L` with `L = max(W − lookback,
//! floor)`, from offset 0 until a short page. It asks for `since = L − 1 ms`,
//! so that an exclusive and an inclusive `since` both return everything at
//! `L`, and drops what is older than `L` (already covered). An id already in
//! `seen` (or earlier in the batch) is a duplicate and skipped: that covers
//! page shifts, ties on one millisecond, inclusive `since` and the lookback
//! overlap.
//!
//! Why a pass misses nothing that was visible when it started: events are
//! only ever inserted, so an event's position in the listing only grows
//! while we page, and reading consecutive pages with increasing offsets
//! until a short page must meet it (an insertion before it shows as a
//! duplicate, never a gap). An event inserted *behind* our read position
//! during the pass (a late event, or a new one in a newest-first listing) is
//! met by the next pass, because the next window still starts at or before
//! its `created_at`: *W* only advances to `min(newest created_at seen, T0)`
//! where *T0* is the pass start, and an event that becomes visible after
//! *T0* was created after *T0 − lookback* (that is what `lookback` means).
//!
//! The price: a pass re-reads what arrived during the previous pass (found
//! in `seen` and skipped). Reading must therefore outpace arrival more than
//! twice over; at 100 events per request and `q` requests per second that is
//! up to `50 × q` events per second, e.g. 500/s at the default 10 req/s.
//!
//! For an oldest-first listing (detected: timestamps never decrease across
//! the pass), *W* also advances after each page to the last event read, so
//! a long backfill keeps `seen` and the state file small.
//!
//! A newest-first listing can not advance *W* before the pass ends, so a
//! long backfill would keep every id of the pass. Instead the pass records
//! the time range it has read through, `(p + margin, T0 − lookback −
//! margin]` with *p* the last event of the last page delivered: every
//! event created in it was visible when the pass started (that is what
//! `lookback` means), so it was met, and none can still appear there. Ids
//! inside a `covered` range are forgotten (a few pages behind the read
//! position, so that page shifts still find them) and events that fall in
//! one are skipped: on either order `seen` holds the lookback window, what
//! arrives during the pass and a few pages, not the history. A range is
//! only claimed on evidence: timestamps decreasing within a page, never
//! increasing by more than the precision margin; and a new event above the
//! range's lower end (impossible in a sorted listing) withdraws every
//! range, falling back to ids (duplicates, never loss).
//!
//! The cursor is pure logic without I/O, so it is unit- and property-tested
//! on its own; the [`store`] persists it.

pub mod store;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::source::page::{Item, Malformed, RawEvent};

/// Version of the state file layout.
pub const STATE_VERSION: u32 = 1;

/// Tolerance below the window start, in ms. An API may display
/// `created_at` at a coarser precision than it filters `since` on (seconds
/// instead of milliseconds); events shown up to this much before the window
/// start are still checked against `seen` rather than dropped, and `seen`
/// keeps ids that far back.
pub const PRECISION_MARGIN_MS: i64 = 1000;

/// The persistent part of the cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorState {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// The source this state belongs to.
    pub source: String,
    /// Events created before this (epoch ms) are out of scope.
    pub floor_ms: i64,
    /// Every in-scope event created before `watermark_ms - lookback` is
    /// delivered.
    pub watermark_ms: i64,
    /// Delivered ids with their `created_at` (epoch ms), for deduplication.
    #[serde(with = "seen_list")]
    pub seen: HashMap<String, i64>,
    /// Events acknowledged by every sink since this state was created.
    #[serde(default)]
    pub delivered_total: u64,
    /// Events sent to the dead-letter file since this state was created.
    #[serde(default)]
    pub dead_lettered_total: u64,
    /// Time ranges `(lo, hi]` (epoch ms) that newest-first passes read
    /// through: every in-scope event created in one is delivered and no new
    /// one can appear there, so their ids need not be kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covered: Vec<(i64, i64)>,
}

impl CursorState {
    /// A fresh state: nothing delivered, scope starting at `floor`.
    pub fn new(source: &str, floor: DateTime<Utc>) -> Self {
        let floor_ms = floor.timestamp_millis();
        Self {
            version: STATE_VERSION,
            source: source.to_string(),
            floor_ms,
            watermark_ms: floor_ms,
            seen: HashMap::new(),
            delivered_total: 0,
            dead_lettered_total: 0,
            covered: Vec::new(),
        }
    }

    /// Applies a durable checkpoint (used when replaying the journal).
    pub fn apply(&mut self, checkpoint: &Checkpoint) {
        for (key, ms) in &checkpoint.acked {
            self.seen.insert(key.clone(), *ms);
        }
        self.watermark_ms = self.watermark_ms.max(checkpoint.watermark_ms);
        self.delivered_total += checkpoint.delivered;
        self.dead_lettered_total += checkpoint.dead_lettered;
        if let Some(covered) = &checkpoint.covered {
            self.covered = covered.clone();
        }
        if let Some(range) = checkpoint.forget {
            self.forget(range);
        }
    }

    /// Forgets the ids created inside `(lo, hi]`, a covered range.
    fn forget(&mut self, (lo, hi): (i64, i64)) {
        self.seen.retain(|_, ms| *ms <= lo || *ms > hi);
    }

    /// Whether `ms` lies in a covered range.
    pub fn is_covered(&self, ms: i64) -> bool {
        in_ranges(&self.covered, ms)
    }

    /// Start of the window a pass reads: `max(W - lookback, floor)`.
    pub fn window_start(&self, lookback: Duration) -> i64 {
        let lookback_ms = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        self.watermark_ms
            .saturating_sub(lookback_ms)
            .max(self.floor_ms)
    }

    /// Forgets ids that no pass can return any more: older than
    /// `window_start` minus the precision margin.
    pub fn prune(&mut self, window_start: i64) {
        let keep_from = window_start.saturating_sub(PRECISION_MARGIN_MS);
        self.seen.retain(|_, ms| *ms >= keep_from);
        self.covered.retain(|(_, hi)| *hi >= keep_from);
    }
}

fn in_ranges(ranges: &[(i64, i64)], ms: i64) -> bool {
    ranges.iter().any(|(lo, hi)| *lo < ms && ms <= *hi)
}

/// Sorted, with overlapping or touching ranges merged.
fn merge_ranges(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// `seen` as a list of `[id, created_ms]`, oldest first, so the state file
/// is stable and readable.
mod seen_list {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seen: &HashMap<String, i64>, s: S) -> Result<S::Ok, S::Error> {
        let mut list: Vec<(&String, &i64)> = seen.iter().collect();
        list.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
        s.collect_seq(list)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, i64>, D::Error> {
        Ok(Vec::<(String, i64)>::deserialize(d)?.into_iter().collect())
    }
}

/// A change to the cursor that must be made durable before it counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Keys acknowledged by every sink, with their `created_at` (ms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked: Vec<(String, i64)>,
    /// The watermark after this change.
    pub watermark_ms: i64,
    /// How many events of `acked` went through the sinks (or were left out
    /// by the source's `actions` filter).
    #[serde(default)]
    pub delivered: u64,
    /// How many of `acked` went to the dead-letter file.
    #[serde(default)]
    pub dead_lettered: u64,
    /// The covered ranges after this change, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<Vec<(i64, i64)>>,
    /// Ids created in this range are forgotten (it is covered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget: Option<(i64, i64)>,
}

/// The query of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassQuery {
    /// `since` to send: one millisecond before the window start.
    pub since: DateTime<Utc>,
    /// The window start.
    pub window_start_ms: i64,
}

/// New events of one page, to deliver; commit it once acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events to deliver, in page order.
    pub events: Vec<RawEvent>,
    /// Elements to write to the dead-letter file.
    pub dead: Vec<Malformed>,
    /// Dedup keys of both, with the `created_at` used for pruning.
    keys: Vec<(String, i64)>,
    /// Indices in the page of the items taken, while selecting.
    chosen: Vec<usize>,
    /// Position (created ms) of the last event in the page, for the
    /// oldest-first watermark advance.
    last_position_ms: Option<i64>,
    /// Counters for metrics.
    pub stats: AdmitStats,
}

impl Batch {
    /// Whether there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.dead.is_empty()
    }
}

/// What [`Cursor::admit`] skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdmitStats {
    /// Already delivered (or twice in this page).
    pub duplicates: u64,
    /// Older than the window start.
    pub before_window: u64,
}

/// Observed sort order of the listing within a pass.
#[derive(Debug, Default, Clone, Copy)]
struct Order {
    increases: u64,
    decreases: u64,
    last_ms: Option<i64>,
}

impl Order {
    fn observe(&mut self, ms: i64) {
        if let Some(last) = self.last_ms {
            if ms > last {
                self.increases += 1;
            } else if ms < last {
                self.decreases += 1;
            }
        }
        self.last_ms = Some(ms);
    }

    /// Oldest-first as far as we can tell: some increase, never a decrease.
    fn oldest_first(&self) -> bool {
        self.increases > 0 && self.decreases == 0
    }
}

/// How many pages behind the read position ids are forgotten in a covered
/// range: a page shift of up to this many pages still finds its repeats in
/// `seen` (a larger one looks like disorder and costs duplicates, not loss).
const FORGET_DELAY_PAGES: usize = 8;

/// What a newest-first pass has read through (see the module docs).
#[derive(Debug, Default)]
struct Descending {
    /// Ranges of earlier passes, trusted for skipping.
    base: Vec<(i64, i64)>,
    /// Lower end of this pass's range (exclusive), once claimed.
    lo: Option<i64>,
    /// Lower ends of the last pages, oldest first, for the forget delay.
    recent: std::collections::VecDeque<i64>,
    /// Some page had strictly decreasing timestamps.
    evidence: bool,
    /// The listing is not sorted newest-first: claim and skip nothing.
    not_newest_first: bool,
}

#[derive(Debug)]
struct Pass {
    /// Events created before this are covered already (window start minus
    /// the precision margin).
    keep_from_ms: i64,
    /// Pass start: the local clock, lowered to the server's `Date` if that
    /// is earlier (a fast local clock must not advance the watermark).
    t0_ms: i64,
    newest_ms: Option<i64>,
    order: Order,
    desc: Descending,
}

/// The cursor of one source (logic only; see the module documentation).
#[derive(Debug)]
pub struct Cursor {
    state: CursorState,
    lookback: Duration,
    pass: Option<Pass>,
}

impl Cursor {
    /// A cursor over `state` (a replayed journal may hold ids that are
    /// already outside the window; they are dropped here).
    pub fn new(mut state: CursorState, lookback: Duration) -> Self {
        state.prune(state.window_start(lookback));
        Self {
            state,
            lookback,
            pass: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> &CursorState {
        &self.state
    }

    /// Starts a pass at local time `now`; returns what to ask the API.
    pub fn begin_pass(&mut self, now: DateTime<Utc>) -> PassQuery {
        let window_start_ms = self.state.window_start(self.lookback);
        self.pass = Some(Pass {
            keep_from_ms: window_start_ms.saturating_sub(PRECISION_MARGIN_MS),
            t0_ms: now.timestamp_millis(),
            newest_ms: None,
            order: Order::default(),
            desc: Descending {
                base: self.state.covered.clone(),
                ..Descending::default()
            },
        });
        PassQuery {
            since: DateTime::from_timestamp_millis(window_start_ms - 1)
                .unwrap_or(DateTime::UNIX_EPOCH),
            window_start_ms,
        }
    }

    /// Lowers the pass start to the server's clock reading (first response's
    /// `Date`, one-second resolution, so its start is used).
    pub fn observe_server_time(&mut self, server_now: DateTime<Utc>) {
        if let Some(pass) = &mut self.pass {
            let server_ms = server_now.timestamp_millis() / 1000 * 1000;
            pass.t0_ms = pass.t0_ms.min(server_ms);
        }
    }

    /// Picks the events of a page that are new. Nothing changes in the
    /// durable state until the batch is [committed](Cursor::commit).
    pub fn admit(&mut self, items: Vec<Item>) -> Batch {
        let lookback_ms = i64::try_from(self.lookback.as_millis()).unwrap_or(i64::MAX);
        let pass = self.pass.as_mut().expect("admit inside a pass");
        // A page is one snapshot of the listing: its own order is evidence.
        let mut previous: Option<i64> = None;
        for item in &items {
            if let Item::Event(event) = item {
                let ms = event.created_ms();
                // Timestamps shown at a coarser precision than the listing
                // sorts on may rise by less than the margin.
                match previous {
                    Some(p) if ms > p.saturating_add(PRECISION_MARGIN_MS) => {
                        pass.desc.not_newest_first = true
                    }
                    Some(p) if ms < p => pass.desc.evidence = true,
                    _ => {}
                }
                previous = Some(ms);
            }
        }
        let hi = pass
            .t0_ms
            .saturating_sub(lookback_ms)
            .saturating_sub(PRECISION_MARGIN_MS);
        let (order, newest) = (pass.order, pass.newest_ms);
        let mut batch = loop {
            match Self::select(&self.state, pass, &items, hi) {
                Some(batch) => break batch,
                None => {
                    // Disorder found midway: select again trusting no range.
                    pass.desc.not_newest_first = true;
                    (pass.order, pass.newest_ms) = (order, newest);
                }
            }
        };
        let mut chosen = std::mem::take(&mut batch.chosen).into_iter().peekable();
        for (index, item) in items.into_iter().enumerate() {
            if chosen.next_if_eq(&index).is_none() {
                continue;
            }
            match item {
                Item::Event(event) => batch.events.push(event),
                Item::Malformed(bad) => batch.dead.push(bad),
            }
        }
        batch
    }

    /// Picks the new items of a page (their indices in `chosen`); `None`
    /// when the page shows the listing is not sorted newest-first although
    /// the pass trusted it to be.
    fn select(state: &CursorState, pass: &mut Pass, items: &[Item], hi: i64) -> Option<Batch> {
        let mut batch = Batch::default();
        let mut in_batch = std::collections::HashSet::new();
        let trusted = !pass.desc.not_newest_first;
        for (index, item) in items.iter().enumerate() {
            match item {
                Item::Event(event) => {
                    let ms = event.created_ms();
                    pass.order.observe(ms);
                    batch.last_position_ms = Some(ms);
                    pass.newest_ms = Some(pass.newest_ms.map_or(ms, |n| n.max(ms)));
                    if ms < pass.keep_from_ms {
                        batch.stats.before_window += 1;
                    } else if state.seen.contains_key(&event.id)
                        || !in_batch.insert(event.id.clone())
                        || (trusted && in_ranges(&pass.desc.base, ms))
                    {
                        batch.stats.duplicates += 1;
                    } else if trusted && pass.desc.lo.is_some_and(|lo| lo < ms && ms <= hi) {
                        // A new event inside what this pass read through:
                        // impossible in a newest-first listing.
                        return None;
                    } else {
                        batch.keys.push((event.id.clone(), ms));
                        batch.chosen.push(index);
                    }
                }
                Item::Malformed(bad) => {
                    let key = bad.dedup_key();
                    // Without a usable created_at the element is kept in
                    // `seen` as if it sat at the last position read, which is
                    // where the listing put it.
                    let ms = bad
                        .created_at
                        .map(|t| t.timestamp_millis())
                        .or(pass.order.last_ms)
                        .unwrap_or(pass.keep_from_ms)
                        .max(pass.keep_from_ms);
                    if state.seen.contains_key(&key)
                        || !in_batch.insert(key.clone())
                        || (trusted && in_ranges(&pass.desc.base, ms))
                    {
                        batch.stats.duplicates += 1;
                    } else {
                        batch.keys.push((key, ms));
                        batch.chosen.push(index);
                    }
                }
            }
        }
        Some(batch)
    }

    /// Records a batch whose events every sink acknowledged. Returns the
    /// checkpoint to persist before anything else happens.
    pub fn commit(&mut self, batch: &Batch) -> Checkpoint {
        let lookback_ms = i64::try_from(self.lookback.as_millis()).unwrap_or(i64::MAX);
        let pass = self.pass.as_mut().expect("commit inside a pass");
        for (key, ms) in &batch.keys {
            self.state.seen.insert(key.clone(), *ms);
        }
        // Counted from the keys: the poller moves `events` out to deliver them.
        let dead_lettered = batch.dead.len() as u64;
        let delivered = batch.keys.len() as u64 - dead_lettered;
        self.state.delivered_total += delivered;
        self.state.dead_lettered_total += dead_lettered;
        if pass.order.oldest_first()
            && let Some(position) = batch.last_position_ms
        {
            // Everything before this position was read (oldest first), and
            // whatever still arrives behind it was created after
            // position - lookback: safe to advance.
            let to = position.min(pass.t0_ms);
            self.advance(to);
        }
        let (covered, forget) = self.cover(batch.last_position_ms, lookback_ms);
        Checkpoint {
            acked: batch.keys.clone(),
            watermark_ms: self.state.watermark_ms,
            delivered,
            dead_lettered,
            covered,
            forget,
        }
    }

    /// Extends this newest-first pass's covered range down to `position`
    /// (the last event of a delivered page) and forgets the ids a few pages
    /// behind it; or withdraws every range once the listing proved not to
    /// be sorted. Returns the checkpoint's `covered` and `forget`.
    #[allow(clippy::type_complexity)]
    fn cover(
        &mut self,
        position: Option<i64>,
        lookback_ms: i64,
    ) -> (Option<Vec<(i64, i64)>>, Option<(i64, i64)>) {
        let pass = self.pass.as_mut().expect("inside a pass");
        let desc = &mut pass.desc;
        if desc.not_newest_first {
            desc.base.clear();
            if self.state.covered.is_empty() {
                return (None, None);
            }
            self.state.covered.clear();
            return (Some(Vec::new()), None);
        }
        let hi = pass
            .t0_ms
            .saturating_sub(lookback_ms)
            .saturating_sub(PRECISION_MARGIN_MS);
        let Some(position) = position else {
            return (None, None);
        };
        // Events shown up to the precision margin above the last one may
        // still sort after it: the range starts above them.
        let position = position.saturating_add(PRECISION_MARGIN_MS);
        if !desc.evidence || pass.order.oldest_first() || position >= hi {
            return (None, None);
        }
        let lo = desc.lo.map_or(position, |lo| lo.min(position));
        desc.lo = Some(lo);
        desc.recent.push_back(lo);
        let mut ranges = desc.base.clone();
        ranges.push((lo, hi));
        self.state.covered = merge_ranges(ranges);
        let forget = if desc.recent.len() > FORGET_DELAY_PAGES {
            let behind = desc.recent.pop_front().expect("not empty");
            Some((behind, hi))
        } else {
            None
        };
        if let Some(range) = forget {
            self.state.forget(range);
        }
        (Some(self.state.covered.clone()), forget)
    }

    /// Ends a pass. `complete` means the pass reached a short page; only a
    /// complete pass may advance the watermark.
    pub fn finish_pass(&mut self, complete: bool) -> Checkpoint {
        let pass = self.pass.take().expect("finish inside a pass");
        if complete && let Some(newest) = pass.newest_ms {
            self.advance(newest.min(pass.t0_ms));
        }
        let covered = if pass.desc.not_newest_first && !self.state.covered.is_empty() {
            self.state.covered.clear();
            Some(Vec::new())
        } else {
            None
        };
        Checkpoint {
            acked: Vec::new(),
            watermark_ms: self.state.watermark_ms,
            delivered: 0,
            dead_lettered: 0,
            covered,
            forget: None,
        }
    }

    fn advance(&mut self, to_ms: i64) {
        if to_ms > self.state.watermark_ms {
            self.state.watermark_ms = to_ms;
            let start = self.state.window_start(self.lookback);
            self.state.prune(start);
            // Ids below the new start were just forgotten; the rest of this
            // pass must treat such events as covered, not as new.
            if let Some(pass) = &mut self.pass {
                pass.keep_from_ms = pass
                    .keep_from_ms
                    .max(start.saturating_sub(PRECISION_MARGIN_MS));
            }
        }
    }

    /// How far behind the newest delivered window the cursor is.
    pub fn lag(&self, now: DateTime<Utc>) -> Duration {
        Duration::from_millis((now.timestamp_millis() - self.state.watermark_ms).max(0) as u64)
    }
}

#[cfg(test)]
mod tests;
