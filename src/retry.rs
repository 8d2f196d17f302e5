//! One retry vocabulary: a capped, full-jitter exponential backoff.
//!
//! Every retry in auditfwd (API requests, sink deliveries) waits through
//! [`Backoff`]. Whether an error is worth retrying is decided where the error
//! is classified (`http` for HTTP, `SinkError::kind` for sinks);
//! this module only decides how long to wait.

use std::time::Duration;

use rand::Rng;

/// Backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upper bound of the first wait.
    pub initial: Duration,
    /// Cap of every wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// Production default: 500ms doubling to 60s.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(60),
    };

    /// For tests and the simulator demo: 5ms doubling to 200ms.
    pub const FAST: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(200),
    };
}

/// Successive waits: attempt *n* waits a uniformly random time in
/// `[0, min(max, initial * 2^n)]` ("full jitter", so that many clients
/// hitting the same outage do not retry in lockstep).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// A backoff at its first attempt.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// The ceiling of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max)
    }

    /// The next wait; at least `floor` (a server's `Retry-After`).
    pub fn next_delay(&mut self, floor: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jittered = rand::rng().random_range(Duration::ZERO..=ceiling);
        match floor {
            // Honour the server's wait, plus a little jitter so that
            // concurrent requests do not return at the same instant.
            Some(floor) => floor + jittered.min(Duration::from_millis(250)) / 4,
            None => jittered,
        }
    }

    /// The slowest wait, for errors that need an operator.
    pub fn max_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.policy.max
    }

    /// Number of retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_in_bounds() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut b = Backoff::new(policy);
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(None);
                assert!(d <= c);
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay(None);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(RetryPolicy::FAST);
        for _ in 0..20 {
            let d = b.next_delay(Some(Duration::from_secs(2)));
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_millis(2100),
                "{d:?}"
            );
        }
    }
}
