//! Reading a tie group larger than a page: many events on one `created_at`
//! (a bulk operation), which the API may return in a new order on every
//! request, so that consecutive pages at increasing offsets can both miss a
//! member.
//!
//! The group is first read forward until a page shows where it ends. If it
//! spanned more than one page it is then read again, round after round,
//! each round from a little before where it last began (at a varying
//! alignment) forward through its end. Inserts ahead of the group only move
//! it later, so a round that starts before it always walks into it, however
//! far it moved. With a fresh random order per request every page samples
//! the members uniformly; the rounds stop once, since the last new member,
//! the members were seen [`GROUP_SIGHTINGS`] times over (a member then
//! escaped with probability about e^−14).
//!
//! **A stable order ends the rounds early.** Many APIs break ties the same
//! way on every request (a hidden sequence, a primary key). When a round
//! reads every member again in exactly the order the reading before it
//! did, each page a run of consecutive members of that order, and one of
//! its pages held at least [`STABLE_RUN`] members, the listing showed one
//! fixed order to two readings at different alignments. A forward reading
//! of a fixed order misses nothing (inserts only move members later, so
//! consecutive pages overlap rather than gap), and the group is complete.
//! A fresh random order passes this test with probability below
//! 1 / [`STABLE_RUN`]! ≈ 3 × 10⁻⁷, the same order as the sightings rule.

use super::{GROUP_SIGHTINGS, Shape};
use crate::model::{EventKey, KeyMap, KeySet};

/// Members a round must see in one page, in the previous reading's order,
/// to take the order as fixed (see the module documentation).
pub(super) const STABLE_RUN: usize = 10;

/// One reading of the group (the scan, or a round): its members in the
/// order they came, compared with the reading before.
#[derive(Debug, Clone, Default)]
struct Reading {
    /// Members in first-seen order.
    order: Vec<EventKey>,
    seen: KeySet,
    /// Every member so far came in the previous reading's order, as
    /// consecutive runs without a gap.
    agrees: bool,
    /// The previous reading's rank expected next.
    expect: usize,
    /// A page showed at least [`STABLE_RUN`] members in agreement.
    long_run: bool,
}

impl Reading {
    fn new() -> Self {
        Self {
            agrees: true,
            ..Self::default()
        }
    }

    /// Takes one page's members, in page order, against `previous` (ranks
    /// of the previous reading; empty during the scan).
    fn page(&mut self, members: &[EventKey], previous: &KeyMap<usize>) {
        let mut run: Option<usize> = None;
        let mut length = 0usize;
        for key in members {
            if self.seen.insert(*key) {
                self.order.push(*key);
            }
            match previous.get(key) {
                Some(&rank) => {
                    let follows = match run {
                        // A page may start before where the last one
                        // ended (inserts ahead moved the group), never
                        // after it.
                        None => rank <= self.expect,
                        Some(last) => rank == last + 1,
                    };
                    self.agrees &= follows;
                    run = Some(rank);
                    length += 1;
                    self.expect = self.expect.max(rank + 1);
                }
                None => self.agrees = false,
            }
        }
        self.long_run |= self.agrees && length >= STABLE_RUN;
    }

    /// Whether this reading saw every member of `previous`, all in its
    /// order.
    fn confirms(&self, previous: &KeyMap<usize>) -> bool {
        self.agrees && self.long_run && self.expect == previous.len() && !previous.is_empty()
    }

    fn ranks(&self) -> KeyMap<usize> {
        self.order
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i))
            .collect()
    }
}

/// The time of a "group" of elements whose time is unknown (a full page
/// without one usable `created_at`).
pub(super) const UNKNOWN_TIME: i64 = i64::MIN;

/// A finished oversized tie group, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupReport {
    /// The shared `created_at` (epoch ms).
    pub created_ms: i64,
    /// Distinct members read.
    pub size: usize,
    /// Whether the sightings rule confirmed the group complete (else the
    /// request budget ran out first).
    pub confirmed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading forward through the group the first time.
    Scan { pages: u32 },
    /// Reading it again, round after round.
    Rounds {
        /// The current round has reached the group.
        inside: bool,
        /// Member sightings since the last new member.
        since_new: u64,
        /// Pages read in rounds.
        requests: u64,
        /// Most pages to spend on rounds.
        budget: u64,
    },
}

/// One oversized tie group being read.
#[derive(Debug, Clone)]
pub(super) struct Group {
    /// The shared `created_at` (epoch ms), or [`UNKNOWN_TIME`].
    t: i64,
    /// Offset of the first page inside the group: a restart reads the group
    /// again from here.
    pub(super) start: u64,
    /// Where the group began when last seen (a round starts before it).
    begins: u64,
    members: KeySet,
    /// In a group of unknown time: the times of the neighbouring elements,
    /// whose tie groups its elements may belong to (members too).
    neighbours: Vec<i64>,
    phase: Phase,
    /// Offset of the page where the group ended: read again afterwards.
    end: Option<u64>,
    rng: u64,
    /// The reading in progress (the scan, then each round).
    reading: Reading,
    /// Ranks of the members in the last complete reading.
    previous: KeyMap<usize>,
}

/// What one page inside a group leads to.
pub(super) struct Step {
    /// The next offset to read inside the group; `None` once it is read.
    pub(super) next: Option<u64>,
    /// Set when the group is finished after rounds.
    pub(super) report: Option<GroupReport>,
}

impl Group {
    /// A group found at `offset`, where a full page held only time `t`
    /// ([`UNKNOWN_TIME`]: no usable time; `before` is then the last time
    /// read before it).
    pub(super) fn start(
        t: i64,
        offset: u64,
        keys: impl Iterator<Item = EventKey>,
        before: Option<i64>,
    ) -> Self {
        let keys: Vec<EventKey> = keys.collect();
        let mut reading = Reading::new();
        reading.page(&keys, &KeyMap::default());
        Self {
            t,
            start: offset,
            begins: offset,
            members: keys.into_iter().collect(),
            reading,
            previous: KeyMap::default(),
            neighbours: if t == UNKNOWN_TIME {
                before.into_iter().collect()
            } else {
                Vec::new()
            },
            phase: Phase::Scan { pages: 1 },
            end: None,
            rng: (t as u64 ^ offset.rotate_left(32)) | 1,
        }
    }

    /// The group's time.
    pub(super) fn time(&self) -> i64 {
        self.t
    }

    /// The offset of the page where the group ended, once it did: the pass
    /// goes on by reading it again (what was there may have moved while
    /// the group was read).
    pub(super) fn end(&self) -> Option<u64> {
        self.end
    }

    /// Ends a reading: the next one is compared with it.
    fn next_reading(&mut self) {
        let done = std::mem::replace(&mut self.reading, Reading::new());
        self.previous = done.ranks();
    }

    fn random(&mut self) -> u64 {
        // xorshift64: deterministic, so a test replays the same requests.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether an element shown at `time` (`None`: unknown) is a member:
    /// shown at the group's time, or (in a group of unknown time) without
    /// one.
    fn is_member(&self, time: Option<i64>) -> bool {
        match time {
            None => self.t == UNKNOWN_TIME,
            Some(t) if self.t == UNKNOWN_TIME => self.neighbours.contains(&t),
            Some(t) => t == self.t,
        }
    }

    /// Which elements of the page at `offset` a round takes: members, and
    /// elements of unknown time from where the group began on until it
    /// ends (they may be members; one that is not was delivered already or
    /// is new, and nothing is lost by taking it). What sorts before or after
    /// the group is read in order by the pass. The first reading takes
    /// everything.
    pub(super) fn takes(&self, offset: u64, shown: &[Option<i64>]) -> Vec<bool> {
        let Phase::Rounds { inside, .. } = self.phase else {
            return vec![true; shown.len()];
        };
        let (mut inside, mut ended) = (inside, false);
        shown
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if self.is_member(*m) {
                    inside = true;
                    true
                } else if m.is_none() {
                    (inside || offset + i as u64 >= self.begins) && !ended
                } else {
                    ended |= inside;
                    false
                }
            })
            .collect()
    }

    /// The offset a new round starts at: before where the group began, at a
    /// varying alignment (an API whose order depends on `offset` then shows
    /// other members).
    fn round_start(&mut self, page: u64) -> u64 {
        let back = 1 + self.random() % page.max(1);
        self.begins.saturating_sub(back)
    }

    /// Takes one page read inside the group.
    pub(super) fn page(
        &mut self,
        page: &Shape,
        keys: &[EventKey],
        shown: &[Option<i64>],
        cap: u64,
    ) -> Step {
        let members: Vec<usize> = (0..keys.len())
            .filter(|i| self.is_member(shown[*i]))
            .collect();
        // A member not at the page's start, after an element shown at
        // another time: the group begins there now.
        if let Some(first) = members.first()
            && *first > 0
            && shown[*first - 1].is_some()
        {
            self.begins = page.offset + *first as u64;
        }
        // The group ends in this page: an element shown at another time
        // after its members (or after the page start, if none), or the end
        // of the listing.
        let ends_here = page.short
            || page.n == 0
            || shown[members.last().map_or(0, |i| i + 1)..]
                .iter()
                .any(|m| m.is_some() && !self.is_member(*m));
        match self.phase {
            Phase::Scan { pages } => {
                for i in &members {
                    self.members.insert(keys[*i]);
                }
                let member_keys: Vec<EventKey> = members.iter().map(|i| keys[*i]).collect();
                self.reading.page(&member_keys, &KeyMap::default());
                // The first reading goes on past a full page of members (and
                // of elements of unknown time, which may be members) that
                // ends on a member shown at its time. One ending on elements
                // of unknown time ends here: they may tie with what follows,
                // and the page is read again as a boundary once the group is.
                let all = shown.iter().all(|m| m.is_none() || self.is_member(*m));
                let ends_on_member = self.t == UNKNOWN_TIME || shown.last() == Some(&Some(self.t));
                if page.n > 0 && all && !page.short && ends_on_member {
                    self.phase = Phase::Scan { pages: pages + 1 };
                    return Step {
                        next: Some(page.offset + page.n),
                        report: None,
                    };
                }
                self.end = Some(page.offset);
                // Elements of unknown time may tie with what follows them.
                if self.t == UNKNOWN_TIME
                    && let Some(after) = shown.iter().find_map(|m| *m)
                    && !self.neighbours.contains(&after)
                {
                    self.neighbours.push(after);
                }
                // The group reaches up to the first element shown at another
                // time (elements of unknown time before it may be members).
                let extent = shown
                    .iter()
                    .position(|m| m.is_some() && !self.is_member(*m))
                    .unwrap_or(shown.len());
                if pages == 1 && extent == 0 {
                    // The group fitted in its first page after all.
                    return Step {
                        next: None,
                        report: None,
                    };
                }
                let budget =
                    (3 * (GROUP_SIGHTINGS + 2) * (self.members.len() as u64 / cap.max(1) + 2))
                        .max(40);
                self.next_reading();
                self.phase = Phase::Rounds {
                    inside: false,
                    since_new: 0,
                    requests: 0,
                    budget,
                };
                Step {
                    next: Some(self.round_start(cap)),
                    report: None,
                }
            }
            Phase::Rounds {
                mut inside,
                mut since_new,
                requests,
                budget,
            } => {
                for i in &members {
                    if self.members.insert(keys[*i]) {
                        since_new = 0;
                    } else {
                        since_new += 1;
                    }
                }
                // Unknown times can not be ranked: only groups of one known
                // time may end on a stable order.
                if self.t != UNKNOWN_TIME {
                    let member_keys: Vec<EventKey> = members.iter().map(|i| keys[*i]).collect();
                    self.reading.page(&member_keys, &self.previous);
                }
                inside |= !members.is_empty();
                let requests = requests + 1;
                let round_over = ends_here && (inside || page.n == 0 || page.short);
                let stable = round_over
                    && self.t != UNKNOWN_TIME
                    && self.reading.confirms(&self.previous)
                    && self.reading.order.len() == self.members.len();
                let confirmed = stable || since_new >= GROUP_SIGHTINGS * self.members.len() as u64;
                if round_over {
                    self.next_reading();
                }
                if round_over && confirmed || requests >= budget {
                    return Step {
                        next: None,
                        report: Some(GroupReport {
                            created_ms: self.t,
                            size: self.members.len(),
                            confirmed,
                        }),
                    };
                }
                let next = if round_over {
                    inside = false;
                    self.round_start(cap)
                } else {
                    page.offset + page.n.max(1)
                };
                self.phase = Phase::Rounds {
                    inside,
                    since_new,
                    requests,
                    budget,
                };
                Step {
                    next: Some(next),
                    report: None,
                }
            }
        }
    }
}
