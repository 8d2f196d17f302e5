//! How many pages to fetch ahead during a backfill: Little's law on the
//! source's rate limit and the latency the API shows.
//!
//! To run at the rate limit `r` when each request takes `L` from sending to
//! the last byte, about `r × L` requests must be in flight. One of them is
//! the page the cursor asks for next; the others are fetched ahead. Pages
//! are taken in order, so one slow response holds back the ones behind it:
//! `L` is the moving average of what responses took plus twice their mean
//! deviation (as TCP sizes its retransmission timer), not the average
//! alone. The limiter's wait is excluded, so a backfill held back by its
//! own quota does not inflate it, and the depth is bounded by the
//! configured `prefetch`. The limiter
//! still gates every request, so a deeper queue never exceeds the quota; it
//! only keeps the quota used while responses are slow.

use std::num::NonZeroU32;
use std::time::Duration;

/// Weight of the newest latency in the moving average.
const ALPHA: f64 = 0.3;

/// The prefetch depth of one source.
#[derive(Debug, Clone)]
pub struct Depth {
    max: u32,
    per_second: f64,
    latency: Option<f64>,
    deviation: f64,
}

impl Depth {
    /// At most `max` pages ahead (0: none) for a source limited to
    /// `per_second` requests.
    pub fn new(max: u32, per_second: NonZeroU32) -> Self {
        Self {
            max,
            per_second: f64::from(per_second.get()),
            latency: None,
            deviation: 0.0,
        }
    }

    /// Takes the latency of one response.
    pub fn observe(&mut self, latency: Duration) {
        let secs = latency.as_secs_f64();
        self.latency = Some(match self.latency {
            Some(avg) => {
                self.deviation += ALPHA * ((secs - avg).abs() - self.deviation);
                avg + ALPHA * (secs - avg)
            }
            None => secs,
        });
    }

    /// Pages to keep in flight beyond the next one.
    pub fn ahead(&self) -> usize {
        if self.max == 0 {
            return 0;
        }
        let latency = self.latency.unwrap_or(0.0) + 2.0 * self.deviation;
        // A hair below: 10/s × 100 ms is one request, not 1.000…02.
        let want = (self.per_second * latency - 1e-6).ceil();
        // `want` is finite and non-negative; the cast saturates.
        (want as u32).clamp(1, self.max) as usize
    }

    /// The average latency so far.
    pub fn latency(&self) -> Option<Duration> {
        self.latency.map(Duration::from_secs_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(max: u32, rps: u32, latencies: &[u64]) -> usize {
        let mut d = Depth::new(max, NonZeroU32::new(rps).unwrap());
        for ms in latencies {
            d.observe(Duration::from_millis(*ms));
        }
        d.ahead()
    }

    #[test]
    fn the_depth_follows_the_rate_times_the_latency() {
        assert_eq!(depth(8, 10, &[]), 1, "one ahead before any response");
        assert_eq!(depth(8, 10, &[5, 5, 5]), 1, "a fast API needs one");
        assert_eq!(depth(8, 10, &[200; 20]), 2);
        assert_eq!(depth(8, 10, &[500; 20]), 5);
        // Uniform 0-400 ms: 200 ms on average, ±100 ms.
        let spread: Vec<u64> = (0..200).map(|i| (i * 37 % 401) as u64).collect();
        assert!(
            (3..=5).contains(&depth(8, 10, &spread)),
            "{}",
            depth(8, 10, &spread)
        );
        assert_eq!(depth(8, 10, &[5_000; 20]), 8, "bounded by prefetch");
        assert_eq!(depth(0, 10, &[500; 20]), 0, "prefetch = 0 turns it off");
        assert_eq!(depth(16, 100, &[100; 20]), 10);
    }

    #[test]
    fn the_average_moves_towards_new_latencies() {
        let mut d = Depth::new(8, NonZeroU32::new(10).unwrap());
        for _ in 0..30 {
            d.observe(Duration::from_millis(600));
        }
        assert_eq!(d.ahead(), 6);
        for _ in 0..30 {
            d.observe(Duration::from_millis(100));
        }
        assert!(
            d.ahead() <= 2,
            "the API got faster: fewer ahead ({})",
            d.ahead()
        );
    }
}
