//! The audit-log listing as a hostile API pages it: the model behind both
//! the simulated tenant's `GET /audit-logs` and the cursor's property test,
//! so that what the test proves is what the simulator serves.
//!
//! Each knob is a way real APIs behave (README, "What the API may do, and
//! what it costs"):
//! - sort order newest-first, oldest-first, or by a hidden insertion
//!   sequence (either direction) whatever `created_at` says;
//! - `since` inclusive or exclusive, filtering on the stored time;
//! - events on one stored millisecond returned in a fresh random order on
//!   every request (SQL `ORDER BY created_at` without a tiebreaker), or in a
//!   stable order;
//! - a page cap below the requested `limit`;
//! - `pagination.total` exact, constant, capped, too low or absent.
//!
//! Events are only ever inserted (A2 of the cursor's argument).

use rand::Rng;
use rand::seq::SliceRandom;

/// Listing order of the audit-log API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortOrder {
    /// Newest `created_at` first.
    NewestFirst,
    /// Oldest `created_at` first.
    OldestFirst,
    /// By a hidden insertion sequence, first inserted first.
    InsertedFirst,
    /// By a hidden insertion sequence, last inserted first.
    InsertedLast,
}

/// How events on one stored millisecond are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieOrder {
    /// The same order on every request.
    Stable,
    /// A fresh random order on every request.
    Shuffled,
}

/// What `pagination.total` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TotalMode {
    /// The number of events matching the request.
    Exact,
    /// Always this number.
    Constant(u64),
    /// The exact number, but at most this.
    Capped(u64),
    /// Half the exact number.
    TooLow,
    /// No total at all.
    Absent,
}

impl std::str::FromStr for TotalMode {
    type Err = String;

    /// `exact`, `absent`, `too-low`, `constant:N`, `capped:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |n: &str| n.parse::<u64>().map_err(|e| format!("`{n}`: {e}"));
        match s.split_once(':') {
            None if s == "exact" => Ok(Self::Exact),
            None if s == "absent" => Ok(Self::Absent),
            None if s == "too-low" => Ok(Self::TooLow),
            Some(("constant", n)) => Ok(Self::Constant(number(n)?)),
            Some(("capped", n)) => Ok(Self::Capped(number(n)?)),
            _ => Err(format!(
                "`{s}`: use exact, absent, too-low, constant:N or capped:N"
            )),
        }
    }
}

/// How a listing pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingConfig {
    /// Sort order.
    pub order: SortOrder,
    /// Whether `since` includes events stored exactly at that instant.
    pub since_inclusive: bool,
    /// Order of events on one stored millisecond.
    pub ties: TieOrder,
    /// At most this many events per page, whatever `limit` says.
    pub page_cap: Option<usize>,
    /// What `pagination.total` says.
    pub total: TotalMode,
}

impl Default for ListingConfig {
    fn default() -> Self {
        Self {
            order: SortOrder::NewestFirst,
            since_inclusive: false,
            ties: TieOrder::Stable,
            page_cap: None,
            total: TotalMode::Exact,
        }
    }
}

/// One listed event: its stored time, its insertion sequence, the payload.
#[derive(Debug, Clone)]
struct Entry<T> {
    ms: i64,
    seq: u64,
    item: T,
}

/// The listing: every visible event, by stored time and in insertion order.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// By (stored ms, seq).
    sorted: Vec<Entry<T>>,
    /// By seq (insertion order).
    inserted: Vec<Entry<T>>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            inserted: Vec::new(),
        }
    }
}

impl<T: Clone> Listing<T> {
    /// Makes an event visible. `seq` must grow with every insert.
    pub fn insert(&mut self, stored_ms: i64, seq: u64, item: T) {
        let entry = Entry {
            ms: stored_ms,
            seq,
            item,
        };
        let pos = self
            .sorted
            .partition_point(|e| (e.ms, e.seq) < (stored_ms, seq));
        self.sorted.insert(pos, entry.clone());
        self.inserted.push(entry);
    }

    /// How many events are visible.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether none is visible.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Every visible event, oldest stored time first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.sorted.iter().map(|e| &e.item)
    }

    /// One page as the API serves it: the events stored after `since` (at
    /// or after, when inclusive) that pass `filter`, in the configured
    /// order, from `offset`, at most `limit` (and the page cap); with the
    /// total the configuration reports.
    pub fn page(
        &self,
        config: &ListingConfig,
        since_ms: Option<i64>,
        filter: Option<&dyn Fn(&T) -> bool>,
        offset: usize,
        limit: usize,
        rng: &mut impl Rng,
    ) -> (Vec<T>, Option<u64>) {
        let in_window = |e: &Entry<T>| match since_ms {
            None => true,
            Some(s) if config.since_inclusive => e.ms >= s,
            Some(s) => e.ms > s,
        };
        let passes = |e: &Entry<T>| filter.is_none_or(|f| f(&e.item));
        let sorted = matches!(
            config.order,
            SortOrder::NewestFirst | SortOrder::OldestFirst
        );
        // The listing in its order: a slice of the sorted events when it
        // can be, else the matching events collected.
        let view = if sorted {
            let start = match since_ms {
                None => 0,
                Some(s) if config.since_inclusive => self.sorted.partition_point(|e| e.ms < s),
                Some(s) => self.sorted.partition_point(|e| e.ms <= s),
            };
            let window = &self.sorted[start..];
            let newest_first = config.order == SortOrder::NewestFirst;
            match filter {
                None => View::Slice {
                    window,
                    newest_first,
                },
                Some(_) if newest_first => {
                    View::Picked(window.iter().rev().filter(|e| passes(e)).collect())
                }
                Some(_) => View::Picked(window.iter().filter(|e| passes(e)).collect()),
            }
        } else {
            let matching = |e: &&Entry<T>| in_window(e) && passes(e);
            if config.order == SortOrder::InsertedFirst {
                View::Picked(self.inserted.iter().filter(matching).collect())
            } else {
                View::Picked(self.inserted.iter().rev().filter(matching).collect())
            }
        };
        let count = view.len();
        let take = limit.min(config.page_cap.unwrap_or(usize::MAX));
        let from = offset.min(count);
        let to = offset.saturating_add(take).min(count);
        let page = if sorted && config.ties == TieOrder::Shuffled && from < to {
            // Extend to whole tie groups, shuffle each, cut the page.
            let mut lo = from;
            while lo > 0 && view.at(lo - 1).ms == view.at(from).ms {
                lo -= 1;
            }
            let mut hi = to;
            while hi < count && view.at(hi).ms == view.at(to - 1).ms {
                hi += 1;
            }
            let mut span: Vec<&Entry<T>> = (lo..hi).map(|i| view.at(i)).collect();
            let mut start = 0;
            while start < span.len() {
                let ms = span[start].ms;
                let end = start + span[start..].iter().take_while(|e| e.ms == ms).count();
                span[start..end].shuffle(rng);
                start = end;
            }
            span[from - lo..to - lo]
                .iter()
                .map(|e| e.item.clone())
                .collect()
        } else {
            (from..to).map(|i| view.at(i).item.clone()).collect()
        };
        let total = match config.total {
            TotalMode::Exact => Some(count as u64),
            TotalMode::Constant(n) => Some(n),
            TotalMode::Capped(n) => Some((count as u64).min(n)),
            TotalMode::TooLow => Some(count as u64 / 2),
            TotalMode::Absent => None,
        };
        (page, total)
    }
}

/// The listing in the order a request sees it.
enum View<'a, T> {
    /// The sorted events from the window start, read in either direction.
    Slice {
        window: &'a [Entry<T>],
        newest_first: bool,
    },
    /// The events picked, in order.
    Picked(Vec<&'a Entry<T>>),
}

impl<'a, T> View<'a, T> {
    fn len(&self) -> usize {
        match self {
            View::Slice { window, .. } => window.len(),
            View::Picked(v) => v.len(),
        }
    }

    fn at(&self, i: usize) -> &'a Entry<T> {
        match self {
            View::Slice {
                window,
                newest_first: true,
            } => &window[window.len() - 1 - i],
            View::Slice { window, .. } => &window[i],
            View::Picked(v) => v[i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn listing() -> Listing<u64> {
        let mut l = Listing::default();
        // Inserted out of time order: seq 0..6, times with a tie group at 20.
        for (seq, ms) in [10, 20, 20, 20, 5, 30].into_iter().enumerate() {
            l.insert(ms, seq as u64, seq as u64);
        }
        l
    }

    #[test]
    fn orders_since_and_caps() {
        let l = listing();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let all = |c: &ListingConfig, since| {
            l.page(
                c,
                since,
                None,
                0,
                100,
                &mut rand::rngs::StdRng::seed_from_u64(2),
            )
            .0
        };
        let mut c = ListingConfig::default();
        assert_eq!(all(&c, Some(10)), [5, 3, 2, 1]);
        c.since_inclusive = true;
        assert_eq!(all(&c, Some(10)), [5, 3, 2, 1, 0]);
        c.order = SortOrder::OldestFirst;
        assert_eq!(all(&c, None), [4, 0, 1, 2, 3, 5]);
        c.order = SortOrder::InsertedFirst;
        assert_eq!(all(&c, Some(10)), [0, 1, 2, 3, 5]);
        c.order = SortOrder::InsertedLast;
        assert_eq!(all(&c, Some(10)), [5, 3, 2, 1, 0]);
        c.page_cap = Some(2);
        let (page, total) = l.page(&c, None, None, 1, 100, &mut rng);
        assert_eq!((page, total), (vec![4, 3], Some(6)));
        c.total = TotalMode::Capped(4);
        assert_eq!(l.page(&c, None, None, 0, 1, &mut rng).1, Some(4));
        c.total = TotalMode::Absent;
        assert_eq!(l.page(&c, None, None, 0, 1, &mut rng).1, None);
    }

    #[test]
    fn shuffled_ties_change_order_between_requests_but_not_membership() {
        let l = listing();
        let c = ListingConfig {
            order: SortOrder::OldestFirst,
            ties: TieOrder::Shuffled,
            ..ListingConfig::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let (page, _) = l.page(&c, None, None, 2, 2, &mut rng);
            // Positions 2..4 lie inside the tie group {1, 2, 3}.
            assert!(page.iter().all(|x| [1, 2, 3].contains(x)), "{page:?}");
            orders.insert(page);
        }
        assert!(orders.len() > 3, "a fresh order per request: {orders:?}");
    }

    #[test]
    fn total_modes_parse() {
        assert_eq!("capped:10".parse::<TotalMode>(), Ok(TotalMode::Capped(10)));
        assert_eq!("exact".parse::<TotalMode>(), Ok(TotalMode::Exact));
        assert!("sometimes".parse::<TotalMode>().is_err());
    }
}
