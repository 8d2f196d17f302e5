//! Reading a tie group larger than a page: many events on one `created_at`
//! (a bulk operation), which the API may return in a new order on every
//! request, so that consecutive pages at increasing offsets can both miss a
//! member.
//!
//! The group is first read forward until a page shows where it ends. If it
//! spanned more than one page, pages inside it are then sampled at varying
//! offsets: with a fresh random order per request, every page samples the
//! group's members uniformly. Sampling stops once, since the last new
//! member, the members were seen [`GROUP_SIGHTINGS`] times over; a member
//! then escaped with probability about e^−14. The group's position is
//! re-estimated from every page (inserts ahead of it shift it later).

use super::{GROUP_SIGHTINGS, Shape};
use crate::model::{EventKey, KeySet};

/// The time of a "group" of elements whose time is unknown (a full page
/// without one usable `created_at`).
pub(super) const UNKNOWN_TIME: i64 = i64::MIN;

/// Which elements of a sample count, while a group is sampled.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    t: i64,
    lo: u64,
    hi: u64,
}

impl Sample {
    /// Whether a sample takes the element at `position` shown at `time`
    /// (`None`: unknown): members anywhere, and inside the group's
    /// positions what may be one (an element of unknown time; in a group
    /// of unknown time, anything). Other elements sort before or after the
    /// group and are read in order.
    pub(super) fn takes(&self, position: u64, time: Option<i64>) -> bool {
        let inside = (self.lo..self.hi).contains(&position);
        match time {
            Some(t) if t == self.t => true,
            None => inside,
            Some(_) => self.t == UNKNOWN_TIME && inside,
        }
    }
}

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

#[derive(Debug, Clone)]
enum Phase {
    /// Reading forward through the group.
    Scan { pages: u32 },
    /// Sampling inside it.
    Sample {
        lo: u64,
        hi: u64,
        since_new: u64,
        requests: u64,
        budget: u64,
    },
}

/// One oversized tie group being read.
#[derive(Debug, Clone)]
pub(super) struct Group {
    /// The shared `created_at` (epoch ms).
    t: i64,
    /// Offset of the first page inside the group: a restart reads the group
    /// again from here.
    pub(super) start: u64,
    members: KeySet,
    phase: Phase,
    /// Where the group ended: the page to continue from afterwards.
    end: Option<EndPage>,
    /// Whether times grow along the listing (seen where the group ended).
    ascending: Option<bool>,
    rng: u64,
}

/// The page where a group ended, to carry on from once it is read.
#[derive(Debug, Clone)]
pub(super) struct EndPage {
    pub(super) shape: Shape,
    pub(super) keys: Vec<EventKey>,
    pub(super) last_sane: Option<i64>,
}

/// What one page inside a group leads to.
pub(super) struct Step {
    /// The next offset to read inside the group; `None` once it is read.
    pub(super) next: Option<u64>,
    /// Set when the group is finished after sampling.
    pub(super) report: Option<GroupReport>,
}

impl Group {
    /// A group found at `offset`, where a full page held only time `t`;
    /// `ascending` is which way times ran on the pages read so far.
    pub(super) fn start(
        t: i64,
        offset: u64,
        keys: impl Iterator<Item = EventKey>,
        ascending: Option<bool>,
    ) -> Self {
        Self {
            t,
            start: offset,
            members: keys.collect(),
            phase: Phase::Scan { pages: 1 },
            end: None,
            ascending,
            rng: (t as u64 ^ offset.rotate_left(32)) | 1,
        }
    }

    /// The group's time.
    pub(super) fn time(&self) -> i64 {
        self.t
    }

    /// The group's estimated positions while it is sampled: elements a
    /// sample shows elsewhere are left to the pages read in order.
    pub(super) fn sampling(&self) -> Option<Sample> {
        match self.phase {
            Phase::Sample { lo, hi, .. } => Some(Sample { t: self.t, lo, hi }),
            Phase::Scan { .. } => None,
        }
    }

    /// The page where the group ended, once it did.
    pub(super) fn end(&self) -> Option<EndPage> {
        self.end.clone()
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

    /// A random offset whose page of `cap` overlaps the group's estimated
    /// positions `lo..hi`.
    fn sample_offset(&mut self, lo: u64, hi: u64, cap: u64) -> u64 {
        let from = lo.saturating_sub(cap.saturating_sub(1));
        let to = hi.saturating_sub(1).max(from);
        from + self.random() % (to - from + 1)
    }

    /// Whether an element shown at `time` is a member of the group: shown
    /// at its time, or (in a group of unknown time) without one.
    fn is_member(&self, time: Option<i64>) -> bool {
        if self.t == UNKNOWN_TIME {
            time.is_none()
        } else {
            time == Some(self.t)
        }
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
        match self.phase {
            Phase::Scan { pages } => {
                for i in &members {
                    self.members.insert(keys[*i]);
                }
                // The group goes on past a full page of members (and of
                // elements of unknown time, which may be members) that ends
                // on a member shown at its time. One ending on elements of
                // unknown time ends the scan here: they may tie with what
                // follows, and the page is read again as a boundary once the
                // group is.
                let all = shown.iter().all(|m| m.is_none() || self.is_member(*m));
                let ends_on_member =
                    self.t == UNKNOWN_TIME || shown.last() == Some(&Some(self.t));
                if page.n > 0 && all && !page.short && ends_on_member {
                    self.phase = Phase::Scan { pages: pages + 1 };
                    return Step {
                        next: Some(page.offset + page.n),
                        report: None,
                    };
                }
                // The first timed element after the group tells which way
                // times run along the listing.
                let after = members.last().map_or(0, |i| i + 1);
                if let Some(u) = shown[after..]
                    .iter()
                    .find_map(|m| *m)
                    .filter(|u| *u != self.t && self.t != UNKNOWN_TIME)
                {
                    self.ascending = Some(u > self.t);
                }
                self.end = Some(EndPage {
                    shape: *page,
                    keys: keys.to_vec(),
                    last_sane: shown.iter().rev().find_map(|m| *m),
                });
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
                let hi = page.offset + extent as u64;
                let budget = (40 * self.members.len() as u64 / cap.max(1)).max(20);
                let (lo, hi) = (self.start, hi.max(self.start + 1));
                self.phase = Phase::Sample {
                    lo,
                    hi,
                    since_new: 0,
                    requests: 0,
                    budget,
                };
                Step {
                    next: Some(self.sample_offset(lo, hi, cap)),
                    report: None,
                }
            }
            Phase::Sample {
                mut lo,
                mut hi,
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
                // Where the group is now: members tell; a page without one
                // lies before it (the group moved on, behind inserts) or
                // after it.
                match (members.first(), members.last()) {
                    (Some(first), Some(last)) => {
                        if *first > 0 && shown[*first - 1].is_some() {
                            lo = page.offset + *first as u64;
                        }
                        if *last + 1 < keys.len() && shown[*last + 1].is_some() {
                            hi = page.offset + *last as u64 + 1;
                        }
                    }
                    _ => {
                        // Only an element shown at a time tells the side; a
                        // group of unknown time has none.
                        let first = shown.iter().find_map(|m| *m);
                        let after = match (first, self.ascending) {
                            _ if self.t == UNKNOWN_TIME => None,
                            (Some(u), Some(ascending)) => Some((u > self.t) == ascending),
                            _ => None,
                        };
                        match after {
                            Some(true) => {
                                hi = hi.min(page.offset);
                                lo = lo.min(hi.saturating_sub(1));
                            }
                            Some(false) => lo = lo.max(page.offset + page.n),
                            None => {}
                        }
                    }
                }
                let hi = hi.max(lo + 1);
                let requests = requests + 1;
                let confirmed = since_new >= GROUP_SIGHTINGS * self.members.len() as u64;
                if confirmed || requests >= budget {
                    return Step {
                        next: None,
                        report: Some(GroupReport {
                            created_ms: self.t,
                            size: self.members.len(),
                            confirmed,
                        }),
                    };
                }
                self.phase = Phase::Sample {
                    lo,
                    hi,
                    since_new,
                    requests,
                    budget,
                };
                Step {
                    next: Some(self.sample_offset(lo, hi, cap)),
                    report: None,
                }
            }
        }
    }
}
