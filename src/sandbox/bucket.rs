//! The sandbox's rate limit.

use std::time::Duration;

/// The token bucket behind `--rate-limit`: `governor`'s GCRA with a burst of
/// `--rate-limit-burst` requests (default: one second's worth), refilled at
/// the rate.
pub struct Bucket {
    limiter: governor::DefaultDirectRateLimiter,
    clock: governor::clock::DefaultClock,
}

impl Bucket {
    pub fn new(rate: f64, burst: Option<u32>) -> Bucket {
        use std::num::NonZeroU32;
        let period = Duration::from_secs_f64(1.0 / rate);
        let burst = burst.unwrap_or(rate.floor().max(1.0) as u32);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        // A positive rate (checked by `validate`) always gives a non-zero period.
        let quota = governor::Quota::with_period(period)
            .unwrap_or(governor::Quota::per_second(NonZeroU32::MIN));
        Bucket {
            limiter: governor::RateLimiter::direct(quota.allow_burst(burst)),
            clock: Default::default(),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&self) -> Result<(), Duration> {
        use governor::clock::Clock;
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}
