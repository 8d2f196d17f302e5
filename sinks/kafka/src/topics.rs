//! Which topics the sink may produce to now: the ones metadata showed, the
//! ones that are missing or not authorised (and since when), and the cap on
//! how many distinct topics a template may reach.
//!
//! Pure bookkeeping with the clock passed in, so that the waiting rules are
//! tested without a broker or real time. The sink asks the broker; this
//! module decides what a record of each topic does:
//!
//! - **Ready**: the topic exists; produce.
//! - **Wait**: the topic is missing or not authorised since less than
//!   `missing_topic_timeout`; hold the record back and fail the batch, so
//!   that the pipeline retries it (nothing is acknowledged before the topic
//!   appears or the bound passes). Records for other topics are produced
//!   meanwhile and not again on the retry.
//! - **GiveUp**: missing for longer than that; reject the record (it goes
//!   to the dead-letter file with the reason). Later records of that topic
//!   are rejected at once, without a new wait, so one missing topic holds
//!   the sink up once, for at most the bound; the topic is looked up again
//!   every [`RECHECK_GIVEN_UP`] and used as soon as it exists.
//! - **OverCap**: the template already reached `max_topics` distinct
//!   topics; reject. Only topics counted under the cap are remembered, so
//!   memory and metadata requests stay bounded whatever the API sends.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;

/// How often a topic whose records wait is looked up again (at most; the
/// last wait ends at the deadline).
pub(crate) const RECHECK_WAITING: Duration = Duration::from_secs(5);

/// How often a topic whose records are being rejected is looked up again.
pub(crate) const RECHECK_GIVEN_UP: Duration = Duration::from_secs(30);

/// Error codes that mean "this topic can not be written now": its records
/// wait for a bounded time instead of failing the whole batch forever.
pub(crate) fn is_topic_problem(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
    )
}

/// A topic that metadata or the broker reported as unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Absent {
    /// What the broker said, last time.
    pub code: RDKafkaErrorCode,
    /// When it was first found unusable.
    pub since: Instant,
    /// When it was last looked up.
    checked: Instant,
}

/// What to do with a record of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Produce it.
    Ready,
    /// Hold it back until `until` (then it is given up).
    Wait {
        /// The deadline.
        until: Instant,
        /// Why.
        code: RDKafkaErrorCode,
    },
    /// Reject it: the topic stayed unusable for the whole bound.
    GiveUp(RDKafkaErrorCode),
    /// Reject it: one topic more than `max_topics`.
    OverCap,
}

/// The topics of one sink.
#[derive(Debug)]
pub(crate) struct Topics {
    /// The cap on distinct topics; `None` when the topic depends only on
    /// the source (bounded by the configuration itself).
    max: Option<usize>,
    timeout: Duration,
    /// Topics whose metadata showed they exist.
    known: HashSet<String>,
    /// Topics found missing or not authorised.
    absent: HashMap<String, Absent>,
}

impl Topics {
    /// Bookkeeping with at most `max` distinct topics (`None`: no cap) and
    /// records held back at most `timeout` for an unusable topic.
    pub(crate) fn new(max: Option<usize>, timeout: Duration) -> Self {
        Self {
            max,
            timeout,
            known: HashSet::new(),
            absent: HashMap::new(),
        }
    }

    fn counted(&self, topic: &str) -> bool {
        self.known.contains(topic) || self.absent.contains_key(topic)
    }

    /// Whether `topic` fits under the cap (already counted, or room left).
    pub(crate) fn admits(&self, topic: &str) -> bool {
        match self.max {
            None => true,
            Some(max) => self.counted(topic) || self.known.len() + self.absent.len() < max,
        }
    }

    /// Whether the broker should be asked about `topic` now.
    pub(crate) fn needs_lookup(&self, topic: &str, now: Instant) -> bool {
        if self.known.contains(topic) {
            return false;
        }
        match self.absent.get(topic) {
            None => true,
            Some(a) if now < a.since + self.timeout => true,
            Some(a) => now.saturating_duration_since(a.checked) >= RECHECK_GIVEN_UP,
        }
    }

    /// The broker showed `topic` with partitions.
    pub(crate) fn exists(&mut self, topic: &str) {
        self.absent.remove(topic);
        self.known.insert(topic.to_string());
    }

    /// The broker said `topic` can not be written (`code`). The wait starts
    /// now unless it is already running.
    pub(crate) fn absent(&mut self, topic: &str, code: RDKafkaErrorCode, now: Instant) {
        self.known.remove(topic);
        let entry = self.absent.entry(topic.to_string()).or_insert(Absent {
            code,
            since: now,
            checked: now,
        });
        entry.code = code;
        entry.checked = now;
    }

    /// What a record of `topic` does now.
    pub(crate) fn verdict(&self, topic: &str, now: Instant) -> Verdict {
        if self.known.contains(topic) {
            return Verdict::Ready;
        }
        match self.absent.get(topic) {
            Some(a) if now < a.since + self.timeout => Verdict::Wait {
                until: a.since + self.timeout,
                code: a.code,
            },
            Some(a) => Verdict::GiveUp(a.code),
            // Neither known nor absent: over the cap (never looked up).
            None => Verdict::OverCap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: RDKafkaErrorCode = RDKafkaErrorCode::UnknownTopicOrPartition;

    #[test]
    fn a_missing_topic_waits_for_the_bound_then_is_given_up_once() {
        let t0 = Instant::now();
        let mut topics = Topics::new(None, Duration::from_secs(60));
        assert!(topics.needs_lookup("a", t0));
        topics.absent("a", MISSING, t0);
        let until = t0 + Duration::from_secs(60);
        assert_eq!(
            topics.verdict("a", t0 + Duration::from_secs(59)),
            Verdict::Wait {
                until,
                code: MISSING
            }
        );
        // Looking it up again while waiting does not restart the wait.
        topics.absent("a", MISSING, t0 + Duration::from_secs(30));
        assert!(topics.needs_lookup("a", t0 + Duration::from_secs(31)));
        assert_eq!(topics.verdict("a", until), Verdict::GiveUp(MISSING));
        // Given up: no new wait, a lookup only every RECHECK_GIVEN_UP.
        topics.absent("a", MISSING, until);
        assert_eq!(
            topics.verdict("a", until + Duration::from_secs(1)),
            Verdict::GiveUp(MISSING)
        );
        assert!(!topics.needs_lookup("a", until + Duration::from_secs(1)));
        assert!(topics.needs_lookup("a", until + RECHECK_GIVEN_UP));
        // Once it exists it is used, and never looked up again.
        topics.exists("a");
        assert_eq!(topics.verdict("a", until), Verdict::Ready);
        assert!(!topics.needs_lookup("a", until + RECHECK_GIVEN_UP * 10));
    }

    #[test]
    fn a_topic_that_disappears_waits_again() {
        let t0 = Instant::now();
        let mut topics = Topics::new(None, Duration::from_secs(10));
        topics.exists("a");
        let later = t0 + Duration::from_secs(100);
        topics.absent("a", RDKafkaErrorCode::TopicAuthorizationFailed, later);
        assert!(matches!(
            topics.verdict("a", later + Duration::from_secs(9)),
            Verdict::Wait {
                code: RDKafkaErrorCode::TopicAuthorizationFailed,
                ..
            }
        ));
    }

    #[test]
    fn the_cap_counts_existing_and_missing_topics() {
        let now = Instant::now();
        let mut topics = Topics::new(Some(2), Duration::from_secs(10));
        assert!(topics.admits("a"));
        topics.exists("a");
        topics.absent("b", MISSING, now);
        assert!(topics.admits("a") && topics.admits("b"));
        assert!(!topics.admits("c"));
        assert_eq!(topics.verdict("c", now), Verdict::OverCap);
        // Without a cap (per-source templates) anything is admitted.
        let mut open = Topics::new(None, Duration::from_secs(10));
        for i in 0..1000 {
            open.exists(&format!("t{i}"));
        }
        assert!(open.admits("another"));
    }
}
