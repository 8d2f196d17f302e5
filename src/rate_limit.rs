//! Client-side rate limiting: one governor quota per source, shared by every
//! request to that tenant (audit-log pages and enrichment lookups alike).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A source's request limiter.
pub type Limiter = DefaultDirectRateLimiter;

/// A limiter allowing `per_second` requests with bursts of `burst`.
pub fn limiter(per_second: NonZeroU32, burst: NonZeroU32) -> Arc<Limiter> {
    Arc::new(RateLimiter::direct(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn quota_allows_the_burst_then_the_rate() {
        // The same quota as `limiter`, on a fake clock: no real sleeping.
        let clock = FakeRelativeClock::default();
        let quota =
            Quota::per_second(NonZeroU32::new(5).unwrap()).allow_burst(NonZeroU32::new(2).unwrap());
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err(), "burst of 2 exhausted");
        clock.advance(Duration::from_millis(200));
        assert!(
            limiter.check().is_ok(),
            "one cell refills every 200ms at 5/s"
        );
        assert!(limiter.check().is_err());
    }
}
