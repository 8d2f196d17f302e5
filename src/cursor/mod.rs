//! The durable cursor of one source: which events are delivered, which are
//! still to fetch, and how to page the API so that none is missed.
//!
//! # Delivery guarantee
//!
//! auditfwd is **at-least-once**: the cursor advances past an event only
//! after **every sink that must receive it acknowledged it** (and the
//! dead-letter file, for events that can not be forwarded, was fsynced).
//! The types fix the order: [`Cursor::admit`] hands out a [`Batch`];
//! [`Cursor::commit`] takes that batch together with the [`Ack`] that only
//! [`crate::pipeline::Delivery::acknowledged`] creates, once every sink
//! acknowledged it, and returns the [`Checkpoint`] to make durable. A crash
//! at any instant therefore re-sends at most the batches in flight.
//!
//! # Several batches in flight
//!
//! Admitting a page moves the pass past it at once (the next offset, the
//! boundary's witnesses, a tie group's sampling), so the poller can admit
//! and deliver page *N + 1* while the sinks still hold batch *N*. What a
//! checkpoint persists travels with its batch instead: its keys and the
//! pass's progress *as of its page*. Commits follow admission order (the
//! cursor asserts it, and a batch that fails holds back every later one),
//! so the durable state only ever moves to the state as of some batch *N*
//! with every batch up to *N* acknowledged. Keys of batches admitted but not
//! committed count as delivered for the dedup of later pages: those can
//! only be committed after them, and a crash drops both. An interrupted
//! pass saves the progress of its last committed batch, never a later one,
//! so a restart reads the unacknowledged pages again; a pass completes
//! (and moves the watermark) only once every batch it admitted is
//! committed.
//!
//! # What the API may do
//!
//! `GET /audit-logs?since&limit&offset` promises nothing about sort order,
//! `since` inclusivity, ties, page size, totals or late arrivals. The cursor
//! assumes only this:
//!
//! - **A1** every response is one consistent snapshot of a listing ordered by
//!   some key, where events with equal keys may come in any order, a fresh
//!   one on every request (SQL `ORDER BY created_at` without a tiebreaker);
//! - **A2** events are only ever inserted, never deleted or moved: an
//!   event's position can only grow over time;
//! - **A3** events with equal sort keys show equal `created_at` (the shown
//!   time is a function of the key: the key itself, or the key at a coarser
//!   precision, or a key the API does not show with no ties in it);
//! - **A4** `since` filters on the event's stored time, which `created_at`
//!   shows at a precision of 1 s or better ([`PRECISION_MARGIN_MS`]);
//! - **A5** an event becomes visible at most `lookback` after its
//!   `created_at` (which includes clock skew).
//!
//! Anything else is fair game: either order or an order by a hidden
//! sequence, page caps below `limit`, totals that lie, inserts between and
//! during requests, bogus timestamps, reused or numeric ids.
//!
//! # How a pass reads the window
//!
//! The cursor keeps a watermark *W*: every in-scope event created before
//! *W − lookback* has been delivered. A **pass** reads the window `since =
//! W − lookback` (one millisecond earlier, so both `since` semantics return
//! the boundary) from offset 0, page by page, and skips ids it already
//! delivered. It starts at local time *T0* (lowered to the server's `Date`
//! when that is sane); a complete pass moves *W* to *min(T0, newest event
//! read)*.
//!
//! **Step back over ties.** After page *i* at offset *Oᵢ* with *nᵢ* items,
//! let *Bᵢ* be its trailing items that share the last `created_at` (*kᵢ* of
//! them) and *Fᵢ* the rest. The next page is read at *Oᵢ + nᵢ − kᵢ*.
//!
//! *Claim:* every event visible at *T0* that sorts strictly before *Bᵢ* has
//! been returned by page *i* or earlier. *Proof sketch:* by A1/A3 the items
//! of *Fᵢ* sort strictly before those of *Bᵢ*, and the events sorting
//! strictly before *Bᵢ* filled exactly positions *0 … Oᵢ + nᵢ − kᵢ − 1* when
//! page *i* was served. By A2 they fill at least as many positions when page
//! *i + 1* is served later, so page *i + 1* starts at or before the first
//! event that sorts with or after *Bᵢ*, and (being a contiguous slice of
//! one snapshot) returns every event sorting before *Bᵢ₊₁* from there on,
//! whole tie groups included, whatever order they come in this time. By
//! induction nothing visible at *T0* is skipped; an event that becomes
//! visible later was created after *T0 − lookback* (A5) and is inside the
//! next pass's window, because *W* never passes *T0*.
//!
//! **Prefetched pages** are requested before the page before them arrived,
//! so the timing argument does not hold for them. One counts only if it
//! *chains*: it contains an event of *Fᵢ* (a witness). Every event sorting
//! at or after *Bᵢ* sorts strictly after the witness in every snapshot, so
//! it is in the prefetched page or after it. A page that does not chain is
//! dropped and read again at the right offset. Prefetching is only ever
//! a saving: no page is trusted for being fetched ahead, so fetching fewer
//! (none past the end a trusted `pagination.total` announces, which in
//! steady state would come back empty) can not lose an event; a total that
//! lies low only slows a pass down, and stops being trusted as soon as a
//! pass ends elsewhere.
//!
//! **A pass ends on evidence**: an empty page, or a page shorter than both
//! `limit` and the largest page the server has returned (its real cap) that
//! brings nothing unread: positions from the start of the last boundary to
//! the end of the listing were all returned. A short page with new events is
//! not trusted to be the end (the cap may vary), unless `pagination.total`
//! has agreed with where three earlier passes ended, and agrees again.
//!
//! **Tie groups larger than a page** (a page whose items all share one
//! `created_at`) can not be stepped over. The cursor reads forward until
//! the group ends, then samples pages inside the group at varying offsets
//! until it has seen every member [`GROUP_SIGHTINGS`] times over without
//! finding a new one (with a fresh random order per request, the chance that
//! a member escapes is below e^−14 ≈ 10⁻⁶). A round that shows every
//! member in the order of the reading before it ends this early: the order
//! is fixed, and a forward reading of a fixed order misses nothing (see
//! `group`). This is the one limit the
//! cursor can not beat: an API that returns a tie group larger than its
//! page in an order that depends on `offset` but never varies can hide
//! members for ever. Such groups are counted and logged.
//!
//! **Head passes between sweeps.** A pass as above is a *sweep*: it reads
//! the whole lookback window and is the only one that moves *W*. Between
//! sweeps (every `late_sweep`), a *head pass* reads only `since = H − 1 s`,
//! *H* the newest `created_at` delivered (no later than its pass's start):
//! new events, at the cost of what they are. The same paging rules hold
//! within it. It never moves *W*, so the next sweep still reads every
//! event visible after the last sweep started (A5 bounds how late it can
//! be): a late event arrives at most `late_sweep` plus one pass after it
//! became visible, and nothing the head passes missed is lost.
//!
//! **Progress is durable by position.** Each checkpoint saves the next
//! offset, the pass's `since` and *T0*. A restart resumes the pass there: by
//! A2 every event not yet read is still at or after that offset.
//!
//! # Bounded memory, whatever the timestamps
//!
//! `seen` keeps the ids the next pass can meet again (created after *W −
//! lookback* minus the precision margin), the ids of the last
//! [`RECENT_IDS`] ids this pass delivered (page shifts re-read those), and the
//! ids of earlier passes until this one ends. An event outside every window
//! (far past or far future: a bogus clock, or a listing that returns it on
//! every pass) is delivered, counted, and remembered among at most
//! [`STRAY_CAP`] strays; it never moves *W*. A backfill of any length in any
//! order therefore keeps the lookback window and a few pages.
//!
//! # Nothing silent
//!
//! Every element a page holds is delivered, or skipped as a repeat of a
//! delivered element with the same content, or dead-lettered with a reason.
//! An id that comes back with other content is delivered again, marked
//! `id_reused`. Ids keep their JSON type (`7` is not `"7"`); an element
//! without an id is keyed by a hash of its bytes. A page full of events
//! from before the window means the API ignores `since`: the source stops
//! with that error rather than replay the tenant's history.
//!
//! The cursor is pure logic without I/O, so it is unit- and property-tested
//! on its own (against the hostile listing model of
//! [`auditfwd_sim::listing`]); the [`store`] persists it.

mod group;
mod legacy;
pub mod state;
pub mod store;

use chrono::{DateTime, Utc};

use self::group::Group;
pub use self::group::GroupReport;
pub use self::state::{
    Acked, Checkpoint, CursorState, Entry, PRECISION_MARGIN_MS, PassEnd, PassKind, PassProgress,
    RECENT_IDS, STATE_VERSION, STRAY_CAP, UNKNOWN_CONTENT,
};
use crate::model::{EventKey, Item, KeyMap, KeySet, Malformed, RawEvent};
use crate::pipeline::Ack;

/// How far ahead of the local clock (or the server's `Date`) a `created_at`
/// may be and still count as the present (ms).
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// A `created_at` before 2000-01-01 is a bogus clock (an epoch-zero or
/// year-one default), not history: such an event is delivered and kept
/// among the strays whatever the window, and never suggests that the API
/// ignores `since`.
pub const PLAUSIBLE_SINCE_MS: i64 = 946_684_800_000;

/// A server `Date` further behind the local clock than this (ms) is not
/// used to lower the pass start (a broken header would freeze the
/// watermark); the events' own timestamps still bound it.
pub const MAX_DATE_SKEW_MS: i64 = 60 * 60 * 1000;

/// How many times over each member of an oversized tie group must have been
/// seen, since the last new one, before the group counts as read.
pub const GROUP_SIGHTINGS: u64 = 14;

/// After this many consecutive full pages with the same ids at growing
/// offsets the API is taken to ignore `offset`. (A few in a row happen
/// honestly: events inserted ahead of the read position can shift the
/// listing by exactly one step.)
const IDENTICAL_PAGES: u32 = 50;

/// A page of events ignoring `since`: this many before the window, and
/// nearly all of the page.
const IGNORED_SINCE_MIN: usize = 10;

/// Checkpoint progress without new events every this many pages.
const EMPTY_PAGE_CHECKPOINT: u64 = 16;

/// Why the cursor can not go on with this source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// A page held almost nothing but events from before the window.
    #[error(
        "the API returned {count} of {total} events created before since={since}; it ignores the `since` parameter (or shows created_at coarser than 1 s). auditfwd stopped this source instead of replaying the tenant's history; check base_url, or report it to the API's vendor"
    )]
    IgnoresSince {
        /// Events before the window in the page.
        count: usize,
        /// Timestamped events in the page.
        total: usize,
        /// The window start, RFC 3339.
        since: String,
    },
}

/// What a pass asks the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    /// `since` to send: one millisecond before the window start.
    pub since: DateTime<Utc>,
    /// The window start (epoch ms).
    pub window_start_ms: i64,
    /// Sweep or head pass.
    pub kind: PassKind,
    /// This pass continues one a restart interrupted.
    pub resumed: bool,
}

/// What to do next in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the page at this offset.
    Fetch(u64),
    /// The pass is over.
    Done(Outcome),
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything visible at the pass start was read.
    Complete,
    /// The API returns the same page at every offset; the watermark stays.
    OffsetIgnored,
}

/// One page as fetched, for [`Cursor::admit`].
#[derive(Debug)]
pub struct PageIn {
    /// The offset it was asked for.
    pub offset: u64,
    /// The `limit` it was asked for.
    pub limit: u32,
    /// Its elements, in order.
    pub items: Vec<Item>,
    /// `pagination.total`, if any.
    pub total: Option<u64>,
    /// Requested after the previous page's response had arrived (else it
    /// was prefetched and must chain).
    pub sequential: bool,
    /// Local time when it arrived.
    pub now: DateTime<Utc>,
    /// The response's `Date`, if any.
    pub server_date: Option<DateTime<Utc>>,
}

/// The answer to a page.
#[derive(Debug)]
pub enum Admission {
    /// The new elements of the page.
    Batch(Batch),
    /// A prefetched page that does not provably chain with the one before:
    /// nothing changed; read [`Cursor::next`] sequentially instead.
    Rejected,
}

/// What [`Cursor::admit`] found in a page, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdmitStats {
    /// Already delivered with the same content (or twice in this page).
    pub duplicates: u64,
    /// Delivered again: an id seen before with other content.
    pub reused_ids: u64,
    /// Outside every window (far past or far future), new.
    pub strays: u64,
    /// The server's `Date` is far behind the local clock (ms).
    pub date_skew_ms: Option<i64>,
    /// An oversized tie group finished: its time, size, and whether the
    /// sampling gave up before confirming it complete.
    pub tie_group: Option<GroupReport>,
}

/// New elements of one page, to deliver; commit it once acknowledged.
///
/// Admitting the page already moved the pass on (the next page can be
/// admitted before this one is acknowledged); the batch keeps what its
/// checkpoint must persist: its keys and the pass's progress *as of this
/// page*, so that committing it never records a later page's position.
#[derive(Debug)]
pub struct Batch {
    /// Events to deliver, in page order.
    pub events: Vec<RawEvent>,
    /// Elements to write to the dead-letter file.
    pub dead: Vec<Malformed>,
    /// What the page held besides.
    pub stats: AdmitStats,
    ticket: u64,
    acked: Vec<Acked>,
    /// What the page moved the pass to.
    after: Box<After>,
}

/// Where a page moved the pass: what its checkpoint persists, and what
/// comes next.
#[derive(Debug)]
struct After {
    /// The pass's progress once the batch is committed.
    progress: PassProgress,
    next: Next,
    ahead: Ahead,
}

impl Batch {
    /// Whether there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.dead.is_empty()
    }

    /// Names this batch to the pipeline, whose [`Ack`] must carry it back.
    /// Tickets count up in admission order; commits follow it.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// What the pass reads after this page: the poller may request it now,
    /// since this page has arrived.
    pub fn next(&self) -> Next {
        self.after.next
    }
}

/// What [`Cursor::lookahead`] needs of the page a batch came from.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    /// The pass pages forward normally after it (no tie group).
    normal: bool,
    /// The page was shorter than the server's page size.
    short: bool,
    /// The overlap its boundary asked for.
    overlap: u64,
    /// Its `pagination.total`, if any.
    total: Option<u64>,
}

/// How the pass reads.
#[derive(Debug, Clone)]
enum Mode {
    /// Page after page, stepping back over the boundary's ties.
    Normal,
    /// Inside a tie group larger than a page.
    Group(Box<Group>),
}

/// What the cursor learned of the server (not durable: relearned cheaply).
#[derive(Debug, Default, Clone)]
struct Learned {
    /// Largest page the server returned.
    cap: u64,
    /// Passes in a row whose end `pagination.total` predicted.
    total_agreements: u32,
    /// The overlap boundary ties asked for lately: the largest of recent
    /// pages, fading by one every [`TIES_FADE`] pages without one as large
    /// (what pages fetched ahead leave as a margin).
    ties: u64,
    /// Pages since `ties` last grew or faded.
    ties_age: u32,
}

/// Pages after which the prefetch margin forgets one tie of the largest
/// boundary group it met.
const TIES_FADE: u32 = 32;

impl Learned {
    fn total_trusted(&self) -> bool {
        self.total_agreements >= 3
    }
}

#[derive(Debug)]
struct Run {
    /// The progress as of the last page admitted.
    progress: PassProgress,
    /// The progress as of the last batch settled (committed or skipped):
    /// what an interrupted pass saves, since later batches may not have
    /// reached every sink.
    committed: PassProgress,
    /// Ticket of the last batch settled; the next one settled must be the
    /// one admitted after it.
    settled: u64,
    next: Next,
    mode: Mode,
    /// The last page's front, as event identities (key and content: a
    /// reused id is another event), witnesses for a prefetched page.
    front: KeySet,
    /// Sorted keys of the last page (to spot an API ignoring `offset`).
    page_keys: Vec<EventKey>,
    identical: u32,
    /// Offset of the last page admitted.
    last_offset: Option<u64>,
    /// Position (ms) of the last timestamped element, for untimed ones.
    last_ms: Option<i64>,
    /// Largest server `Date` seen (ms), for the future cutoff.
    server_ms: Option<i64>,
    /// The first response's `Date` was checked.
    date_checked: bool,
    /// Pages since the last durable checkpoint.
    unsaved: u64,
}

/// The cursor of one source (logic only; see the module documentation).
#[derive(Debug)]
pub struct Cursor {
    state: CursorState,
    lookback_ms: i64,
    /// [`PLAUSIBLE_SINCE_MS`], lowered by tests that use small times.
    plausible_since_ms: i64,
    run: Option<Run>,
    learned: Learned,
    /// Tickets handed out so far (the last batch admitted has this one).
    tickets: u64,
    /// Keys (and content) of batches admitted but not committed yet: they
    /// count as delivered for the dedup of later pages, which can only be
    /// committed after them.
    inflight: KeyMap<u64>,
}

impl Cursor {
    /// A cursor over `state` (ids already outside the window are dropped,
    /// unless a pass is in progress).
    pub fn new(mut state: CursorState, lookback: std::time::Duration) -> Self {
        let lookback_ms = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        if state.pass.is_none() {
            state.prune(lookback_ms);
        }
        Self {
            state,
            lookback_ms,
            plausible_since_ms: PLAUSIBLE_SINCE_MS,
            run: None,
            learned: Learned::default(),
            tickets: 0,
            inflight: KeyMap::default(),
        }
    }

    /// Takes times from `ms` on as plausible (tests use times near 1970).
    #[cfg(test)]
    pub(crate) fn with_plausible_since(mut self, ms: i64) -> Self {
        self.plausible_since_ms = ms;
        self
    }

    /// The current durable state.
    pub fn state(&self) -> &CursorState {
        &self.state
    }

    /// The lookback (ms).
    pub fn lookback_ms(&self) -> i64 {
        self.lookback_ms
    }

    /// Which pass is due at `now`: a sweep of the whole window when none
    /// ran for `late_sweep` (or none ever completed), else a head pass.
    pub fn due(&self, now: DateTime<Utc>, late_sweep: std::time::Duration) -> PassKind {
        let interval = i64::try_from(late_sweep.as_millis()).unwrap_or(i64::MAX);
        match (self.state.pass, self.state.head_ms, self.state.swept_ms) {
            (Some(pass), _, _) => pass.kind,
            (None, Some(_), Some(swept)) if now.timestamp_millis() - swept < interval => {
                PassKind::Head
            }
            _ => PassKind::Sweep,
        }
    }

    /// Starts a pass of `kind` at local time `now`, or resumes the one a
    /// restart interrupted (whatever `kind` says).
    pub fn begin_pass(&mut self, now: DateTime<Utc>, kind: PassKind) -> PassPlan {
        let window_start = self.state.window_start(self.lookback_ms);
        let (kind, since_ms) = match (kind, self.state.head_ms) {
            // A head pass reads from the newest delivered time, minus the
            // precision margin (an event shown at the same second may still
            // come), never before the window.
            (PassKind::Head, Some(head)) => (
                PassKind::Head,
                head.saturating_sub(PRECISION_MARGIN_MS).max(window_start),
            ),
            _ => (PassKind::Sweep, window_start),
        };
        let (progress, resumed) = match self.state.pass {
            Some(progress) => (progress, true),
            None => (
                PassProgress {
                    kind,
                    since_ms,
                    t0_ms: now.timestamp_millis(),
                    newest_ms: None,
                    offset: 0,
                    first_ack: self.state.acked_no,
                    lookback_ms: self.lookback_ms,
                    hold_ms: None,
                },
                false,
            ),
        };
        self.inflight.clear();
        self.run = Some(Run {
            progress,
            committed: progress,
            settled: self.tickets,
            next: Next::Fetch(progress.offset),
            mode: Mode::Normal,
            front: KeySet::default(),
            page_keys: Vec::new(),
            identical: 0,
            last_offset: None,
            last_ms: None,
            server_ms: None,
            date_checked: resumed,
            unsaved: 0,
        });
        PassPlan {
            since: DateTime::from_timestamp_millis(progress.since_ms.saturating_sub(1))
                .unwrap_or(DateTime::UNIX_EPOCH),
            window_start_ms: progress.since_ms,
            kind: progress.kind,
            resumed,
        }
    }

    /// What to read next in the pass (after the last page admitted).
    pub fn next(&self) -> Next {
        self.run.as_ref().expect("inside a pass").next
    }

    /// Batches of this pass admitted but not yet committed (or skipped).
    pub fn uncommitted(&self) -> u64 {
        self.run
            .as_ref()
            .map_or(0, |run| self.tickets - run.settled)
    }

    /// Offsets worth fetching ahead, once `batch` is committed, after a
    /// request at `after`: empty unless the pass pages forward normally.
    /// Each leaves some overlap with the page before it, so that it can
    /// carry a witness (see the module documentation).
    pub fn lookahead(&self, batch: &Batch, after: u64, count: usize) -> Vec<u64> {
        let cap = self.learned.cap;
        // Only a full page suggests more pages follow: a short one is
        // usually the end (one confirming request, no more).
        let ahead = batch.after.ahead;
        if !ahead.normal || !matches!(batch.after.next, Next::Fetch(_)) || ahead.short || cap < 2 {
            return Vec::new();
        }
        // A page fetched ahead must start at or before the offset the page
        // before it will name (the poller drops it otherwise): that one
        // steps back over its own boundary ties, unknown yet, so leave as
        // margin the largest overlap recent pages needed, plus one when
        // there were ties (re-reading a few events costs less than a
        // dropped page; without ties it stays 2).
        let ties = self.learned.ties;
        let margin = ahead.overlap.max(ties + u64::from(ties > 2));
        let step = cap.saturating_sub(margin.min(cap / 2)).max(1);
        // A trusted `total` says where the listing ends: a page past it
        // would come back empty (in steady state, one wasted request per
        // poll). Fetching less ahead never loses an event (see the module
        // documentation); a total that lies low only slows the pass.
        let end = match ahead.total {
            Some(total) if self.learned.total_trusted() => total,
            _ => u64::MAX,
        };
        (1..=count as u64)
            .map(|i| after + i * step)
            .take_while(|&offset| offset < end)
            .collect()
    }

    /// The largest page the server has returned so far.
    pub fn page_cap(&self) -> u64 {
        self.learned.cap
    }

    /// Picks the new elements of a page and moves the pass past it, so that
    /// the next page can be admitted at once. Nothing durable changes until
    /// the batch is [committed](Cursor::commit) (or [skipped](Cursor::skip)
    /// when empty), in admission order; until then its keys count as
    /// delivered for later pages (which are committed after it).
    pub fn admit(&mut self, page: PageIn) -> Result<Admission, CursorError> {
        let plausible_since = self.plausible_since_ms;
        let run = self.run.as_mut().expect("admit inside a pass");
        let expected = match run.next {
            Next::Fetch(offset) => offset,
            Next::Done(_) => panic!("admit after the pass ended"),
        };
        if page.sequential {
            debug_assert_eq!(page.offset, expected, "sequential pages come in order");
        } else if !matches!(run.mode, Mode::Normal)
            || !page
                .items
                .iter()
                .any(|i| run.front.contains(&i.key().version(i.content())))
        {
            return Ok(Admission::Rejected);
        }

        let mut stats = AdmitStats::default();
        let now_ms = page.now.timestamp_millis();
        if let Some(date) = page.server_date {
            let date_ms = date.timestamp_millis();
            run.server_ms = Some(run.server_ms.map_or(date_ms, |s| s.max(date_ms)));
            if !run.date_checked {
                run.date_checked = true;
                if date_ms < run.progress.t0_ms - MAX_DATE_SKEW_MS {
                    stats.date_skew_ms = Some(run.progress.t0_ms - date_ms);
                } else {
                    // `Date` has one-second resolution: use its start. The
                    // pass start only ever moves earlier, so batches
                    // admitted before this one may save it too.
                    run.progress.t0_ms = run.progress.t0_ms.min(date_ms / 1000 * 1000);
                    run.committed.t0_ms = run.progress.t0_ms;
                }
            }
        }
        let ceiling = now_ms.max(run.server_ms.unwrap_or(now_ms)) + FUTURE_TOLERANCE_MS;
        let keep_from = run.progress.since_ms.saturating_sub(PRECISION_MARGIN_MS);

        // Classify every element: new, repeat, reused id; in or out of
        // every window.
        let n = page.items.len();
        let mut sane_ms: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut pending: KeyMap<u64> = Default::default();
        let mut newest = run.progress.newest_ms;
        let mut last_ms = run.last_ms;
        let time_before_page = run.last_ms;
        let (mut past, mut timed) = (0usize, 0usize);
        let mut acked = Vec::new();
        let mut events = Vec::new();
        let mut dead = Vec::new();
        let mut keys = Vec::with_capacity(n);
        let mut identities = Vec::with_capacity(n);
        // Times first. An element without a usable time may have been
        // created any time up to now: it is remembered as if created now,
        // so that no window that can return it again forgets it.
        for item in &page.items {
            let shown = item.created_ms();
            let sane = match shown {
                Some(ms) if ms < plausible_since => {
                    timed += 1;
                    None
                }
                Some(ms) if ms < keep_from => {
                    past += 1;
                    timed += 1;
                    None
                }
                Some(ms) if ms > ceiling => {
                    timed += 1;
                    None
                }
                Some(ms) => {
                    timed += 1;
                    last_ms = Some(ms);
                    if matches!(item, Item::Event(_)) {
                        newest = Some(newest.map_or(ms, |x| x.max(ms)));
                    }
                    Some(ms)
                }
                None => None,
            };
            sane_ms.push(sane);
        }
        let takes: Option<Vec<bool>> = match &run.mode {
            Mode::Group(group) => Some(group.takes(page.offset, &sane_ms)),
            Mode::Normal => None,
        };
        for (index, item) in page.items.into_iter().enumerate() {
            let key = item.key();
            let content = item.content();
            keys.push(key);
            identities.push(key.version(content));
            let shown = item.created_ms();
            let stray = shown.is_some() && sane_ms[index].is_none();
            let ms = match (shown, sane_ms[index]) {
                (_, Some(ms)) => ms,
                (Some(ms), None) => ms,
                (None, None) => now_ms.max(keep_from),
            };
            if let Some(takes) = &takes
                && !takes[index]
            {
                // A sample is read for the group only: the pages around it
                // are read in order, before or after it.
                continue;
            }
            let verdict = judge(&self.state, &self.inflight, &pending, key, content);
            if let Verdict::New(k) | Verdict::Reused(k) = verdict {
                pending.insert(k, content);
            }
            match verdict {
                Verdict::Repeat => stats.duplicates += 1,
                Verdict::New(map_key) | Verdict::Reused(map_key) => {
                    let reused = matches!(verdict, Verdict::Reused(_));
                    if stray {
                        stats.strays += 1;
                    }
                    acked.push(Acked {
                        key: map_key,
                        ms,
                        content,
                        stray,
                    });
                    match item {
                        Item::Event(mut event) => {
                            if reused {
                                stats.reused_ids += 1;
                                event.id_reused = true;
                            }
                            events.push(event);
                        }
                        Item::Malformed(bad) => dead.push(bad),
                    }
                }
            }
        }
        if past >= IGNORED_SINCE_MIN && past * 10 >= timed * 9 {
            return Err(CursorError::IgnoresSince {
                count: past,
                total: timed,
                since: DateTime::from_timestamp_millis(run.progress.since_ms)
                    .map(|t| auditfwd_sink::format_millis(&t))
                    .unwrap_or_default(),
            });
        }
        let new_items = acked.len();

        // The boundary: trailing elements sharing the last shown time (and
        // untimed or out-of-window ones among them).
        let last_sane = sane_ms.iter().rev().find_map(|m| *m);
        let k = match last_sane {
            // Nothing tells where this page's elements sort: any of them
            // may tie with the next one.
            None => n,
            Some(t) => sane_ms
                .iter()
                .rev()
                .take_while(|m| m.is_none_or(|ms| ms == t))
                .count(),
        };
        let front: KeySet = identities[..n - k].iter().copied().collect();
        let cap_before = self.learned.cap;
        self.learned.cap = self.learned.cap.max(n as u64);
        let short = (n as u64) < u64::from(page.limit) && (n as u64) < cap_before;
        let total_matches = page.total == Some(page.offset + n as u64);

        let mut sorted_keys = identities.clone();
        sorted_keys.sort_unstable();
        let identical = if page.sequential
            && matches!(run.mode, Mode::Normal)
            && n >= 2
            && !short
            && run.last_offset != Some(page.offset)
            && sorted_keys == run.page_keys
        {
            run.identical + 1
        } else {
            0
        };

        let shape = Shape {
            offset: page.offset,
            n: n as u64,
            k: k as u64,
            short,
            new_items,
            unknown_tail: sane_ms.iter().rev().take_while(|m| m.is_none()).count() as u64,
        };
        let mut total_agreed = None;
        let trusted = self.learned.total_trusted();
        let (next, mode, resume_offset) = match &run.mode {
            Mode::Normal => {
                let (next, mode, resume) = decide(
                    &shape,
                    &keys,
                    last_sane,
                    total_matches && trusted,
                    time_before_page,
                );
                if let Next::Done(_) = next {
                    total_agreed = Some(total_matches);
                }
                (next, mode, resume)
            }
            Mode::Group(group) => {
                let mut group = group.clone();
                let step = group.page(&shape, &keys, &sane_ms, self.learned.cap.max(1));
                stats.tie_group = step.report;
                match step.next {
                    Some(offset) => {
                        let start = group.start;
                        (Next::Fetch(offset), Mode::Group(group), start)
                    }
                    None => {
                        // The group is read: go on by reading again the page
                        // where it ended (as it is now: what was there may
                        // have moved meanwhile).
                        let end = group.end().expect("a finished group has an end");
                        (Next::Fetch(end), Mode::Normal, end)
                    }
                }
            }
        };
        let next = if identical >= IDENTICAL_PAGES {
            Next::Done(Outcome::OffsetIgnored)
        } else {
            next
        };
        let overlap = (k as u64 + 1).max(2);
        // Only a page read in normal mode can vouch for the next one.
        let front = if matches!(mode, Mode::Normal) && matches!(run.mode, Mode::Normal) {
            front
        } else {
            KeySet::default()
        };

        // Move the pass past this page now; what the page's checkpoint
        // persists travels with the batch.
        let normal = matches!(mode, Mode::Normal);
        run.next = next;
        run.mode = mode;
        run.front = front;
        run.page_keys = sorted_keys;
        run.identical = identical;
        run.last_offset = Some(page.offset);
        run.last_ms = last_ms;
        run.progress.newest_ms = newest;
        run.progress.offset = resume_offset;
        if let Mode::Group(group) = &run.mode {
            run.progress.hold_ms = Some(group.time());
        }
        let progress = run.progress;
        let learned = &mut self.learned;
        if overlap >= learned.ties {
            learned.ties = overlap.min(learned.cap / 2);
            learned.ties_age = 0;
        } else {
            learned.ties_age += 1;
            if learned.ties_age >= TIES_FADE {
                learned.ties -= 1;
                learned.ties_age = 0;
            }
        }
        if let Some(agreed) = total_agreed {
            learned.total_agreements = if agreed {
                learned.total_agreements.saturating_add(1)
            } else {
                0
            };
        }
        for a in &acked {
            self.inflight.insert(a.key, a.content);
        }

        self.tickets += 1;
        Ok(Admission::Batch(Batch {
            events,
            dead,
            stats,
            ticket: self.tickets,
            acked,
            after: Box::new(After {
                progress,
                next,
                ahead: Ahead {
                    normal,
                    short,
                    overlap,
                    total: page.total,
                },
            }),
        }))
    }

    /// Records a batch every sink acknowledged (`ack` comes from the
    /// pipeline for this batch). Batches are committed in the order they
    /// were admitted (it panics otherwise). Returns the checkpoint to make
    /// durable before anything else happens: the batch's keys and the
    /// pass's progress as of its page, whatever was admitted since.
    pub fn commit(&mut self, batch: Batch, ack: Ack) -> Checkpoint {
        assert_eq!(
            ack.ticket(),
            batch.ticket,
            "an acknowledgement is for the batch it was given"
        );
        let dead_lettered = batch.dead.len() as u64;
        let delivered = batch.acked.len() as u64 - dead_lettered;
        self.settle(batch, delivered, dead_lettered, true)
            .expect("a commit always checkpoints")
    }

    /// Moves past a page that brought nothing to deliver, in admission
    /// order like [`Cursor::commit`]. Returns a checkpoint of the progress
    /// every few such pages (none is needed for correctness: a restart
    /// would only read them again).
    pub fn skip(&mut self, batch: Batch) -> Option<Checkpoint> {
        assert!(
            batch.acked.is_empty(),
            "only a batch without new elements can be skipped"
        );
        self.settle(batch, 0, 0, false)
    }

    fn settle(
        &mut self,
        batch: Batch,
        delivered: u64,
        dead_lettered: u64,
        force: bool,
    ) -> Option<Checkpoint> {
        let run = self.run.as_mut().expect("commit inside a pass");
        assert_eq!(
            batch.ticket,
            run.settled + 1,
            "batches are committed in the order they were admitted"
        );
        run.settled = batch.ticket;
        run.committed = batch.after.progress;
        run.unsaved += 1;
        if !force && run.unsaved < EMPTY_PAGE_CHECKPOINT {
            return None;
        }
        run.unsaved = 0;
        let checkpoint = Checkpoint {
            seq: self.state.seq + 1,
            acked: batch.acked,
            delivered,
            dead_lettered,
            pass: Some(batch.after.progress),
            end: None,
        };
        self.state.apply(&checkpoint);
        for a in &checkpoint.acked {
            self.inflight.remove(&a.key);
        }
        Some(checkpoint)
    }

    /// Ends the pass: complete after [`Next::Done`] once every batch is
    /// committed; else (shutdown, or batches admitted but never
    /// acknowledged) interrupted, keeping the position of the last batch
    /// committed for the restart, which reads the rest again. Returns the
    /// checkpoint to make durable.
    pub fn finish_pass(&mut self) -> Checkpoint {
        let run = self.run.take().expect("finish inside a pass");
        let uncommitted = self.tickets - run.settled;
        self.inflight.clear();
        let progress = run.committed;
        let sweep = progress.kind == PassKind::Sweep;
        let next = if uncommitted == 0 {
            debug_assert_eq!(run.progress, run.committed);
            run.next
        } else {
            Next::Fetch(progress.offset)
        };
        let end = match next {
            Next::Done(Outcome::Complete) => Some(PassEnd {
                watermark_ms: progress.end_watermark().filter(|_| sweep),
                lookback_ms: progress.lookback_ms,
                head_ms: progress.end_watermark(),
                swept_ms: sweep.then_some(progress.t0_ms),
            }),
            Next::Done(Outcome::OffsetIgnored) => Some(PassEnd {
                watermark_ms: None,
                lookback_ms: progress.lookback_ms,
                head_ms: None,
                swept_ms: None,
            }),
            // Interrupted: save where it was, to resume there.
            Next::Fetch(_) => None,
        };
        let checkpoint = Checkpoint {
            seq: self.state.seq + 1,
            acked: Vec::new(),
            delivered: 0,
            dead_lettered: 0,
            pass: if end.is_some() { None } else { Some(progress) },
            end,
        };
        self.state.apply(&checkpoint);
        checkpoint
    }

    /// How far behind now the watermark is.
    pub fn lag(&self, now: DateTime<Utc>) -> std::time::Duration {
        std::time::Duration::from_millis(
            (now.timestamp_millis() - self.state.watermark_ms).max(0) as u64
        )
    }
}

/// The shape of a page, for deciding where to read next.
#[derive(Debug, Clone, Copy)]
struct Shape {
    offset: u64,
    n: u64,
    k: u64,
    short: bool,
    new_items: usize,
    /// Trailing elements without a usable time.
    unknown_tail: u64,
}

/// Where a page read in normal mode leads: the next offset (stepping back
/// over its boundary), a tie group larger than a page (a full page whose
/// elements all share one time), or the end of the pass. Returns the next
/// step, the mode, and the offset a restart resumes at.
fn decide(
    p: &Shape,
    keys: &[EventKey],
    last_sane: Option<i64>,
    total_says_end: bool,
    time_before: Option<i64>,
) -> (Next, Mode, u64) {
    match normal_next(p, total_says_end) {
        Next::Fetch(_) if p.k == p.n && p.n > 0 && !p.short => {
            // A page without any usable time is a group of unknown time:
            // its members are the elements without one.
            let t = last_sane.unwrap_or(group::UNKNOWN_TIME);
            let group = Group::start(t, p.offset, keys.iter().copied(), time_before);
            // Read on from the page's end, but before its trailing elements of
            // unknown time: they may belong to what follows.
            let step = if p.unknown_tail < p.n {
                p.n - p.unknown_tail
            } else {
                p.n
            };
            (
                Next::Fetch(p.offset + step),
                Mode::Group(Box::new(group)),
                p.offset,
            )
        }
        Next::Fetch(offset) => (Next::Fetch(offset), Mode::Normal, offset),
        done => (done, Mode::Normal, p.offset),
    }
}

/// Where a page leads, tie groups aside.
fn normal_next(p: &Shape, total_says_end: bool) -> Next {
    if p.n == 0 {
        return Next::Done(Outcome::Complete);
    }
    if p.short && (p.new_items == 0 || total_says_end) {
        return Next::Done(Outcome::Complete);
    }
    Next::Fetch(p.offset + p.n - p.k)
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Delivered before with this content.
    Repeat,
    /// Never delivered: remember it under this key.
    New(EventKey),
    /// The id was delivered with other content: deliver this version too,
    /// remembered under a key of its own.
    Reused(EventKey),
}

/// Decides what an element with `key` and `content` is, given what the
/// state, the batches in flight and this page (`pending`: keys taken in
/// this page) hold.
fn judge(
    state: &CursorState,
    inflight: &KeyMap<u64>,
    pending: &KeyMap<u64>,
    key: EventKey,
    content: u64,
) -> Verdict {
    let known_as = |k: &EventKey| {
        pending
            .get(k)
            .or_else(|| inflight.get(k))
            .copied()
            .or_else(|| state.seen.get(k).map(|e| e.content))
            .or_else(|| state.strays.get(k))
    };
    let version = key.version(content);
    match known_as(&key) {
        // This version may be remembered under its own key, if the first
        // version's entry was pruned before it.
        None if known_as(&version).is_some() => Verdict::Repeat,
        None => Verdict::New(key),
        Some(c) if c == content || c == UNKNOWN_CONTENT => Verdict::Repeat,
        Some(_) if known_as(&version).is_some() => Verdict::Repeat,
        Some(_) => Verdict::Reused(version),
    }
}

#[cfg(test)]
mod tests;
