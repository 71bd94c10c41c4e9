//! Pacing: how fast requests start. Slots on an even grid so that no
//! one-second window, wherever it falls, holds more than `--rate` starts;
//! and, when the server answers 429, a pause of the whole pool and a lower
//! rate that grows back (AIMD), so the tool settles at the rate the server
//! allows instead of hammering it. Time is tokio's, so tests can check the
//! limit with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Every `--rate` starts span at least this long: one second plus a margin.
/// Requests leave a little after their slot, by varying amounts (timer
/// granularity is 1 ms); the margin keeps `rate + 1` of them from arriving
/// within one second at the server. It costs 0.4% of the rate.
pub const WINDOW: Duration = Duration::from_millis(1008);

/// After a 429 the rate is multiplied by this (at most once a second)...
pub const DECREASE: f64 = 0.7;
/// ...and then grows back by this share of the asked rate each second
/// without a 429.
pub const INCREASE_PER_SEC: f64 = 0.02;

/// Paces the starts of requests for a whole run.
///
/// Why not `governor` alone: its GCRA limiter re-anchors the schedule at the
/// moment a waiter wakes, so every late wake-up (up to 1 ms with tokio's
/// timer) is lost for good; at 200/s that is over 10% of the rate. Here each
/// waiter reserves the next slot on an even grid, so lateness never
/// accumulates, and no `rate + 1` slots fit into [`WINDOW`].
pub struct Pace {
    state: Mutex<State>,
}

struct State {
    /// The asked rate; `None` = no limit.
    asked: Option<f64>,
    /// The rate in force (lower than asked after 429s); `None` = no limit.
    current: Option<f64>,
    /// The next free slot.
    next: Option<Instant>,
    /// Nobody starts before this (a 429's `Retry-After`).
    paused_until: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Starts in the current second, to find a rate when none was asked.
    second_start: Instant,
    second_count: u64,
    last_second_count: u64,
}

impl Pace {
    /// `None` = no limit.
    pub fn new(rate: Option<u32>) -> Pace {
        let asked = rate.map(|r| f64::from(r.max(1)));
        Pace {
            state: Mutex::new(State {
                asked,
                current: asked,
                next: None,
                paused_until: None,
                last_decrease: None,
                second_start: Instant::now(),
                second_count: 0,
                last_second_count: 0,
            }),
        }
    }

    /// Waits until a request may start.
    pub async fn ready(&self) {
        if let Some(slot) = self.reserve().await {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Waits out a pause, then reserves the next slot and returns when it
    /// is (`None`: no limit, now). The caller must not start before it.
    pub async fn reserve(&self) -> Option<Instant> {
        loop {
            let until = self.lock().paused_until;
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        let slot = {
            let mut s = self.lock();
            let now = Instant::now();
            if now.duration_since(s.second_start) >= Duration::from_secs(1) {
                s.last_second_count = s.second_count;
                s.second_count = 0;
                s.second_start = now;
            }
            s.second_count += 1;
            match s.current {
                None => None,
                Some(rate) => {
                    let slot = s.next.map_or(now, |n| n.max(now));
                    s.next = Some(slot + WINDOW.div_f64(rate));
                    Some(slot)
                }
            }
        };
        slot
    }

    /// The server said 429: nobody starts before `retry_after`, and the rate
    /// comes down (at most once a second, so one burst of 429s counts once).
    pub fn too_many(&self, retry_after: Duration) {
        let mut s = self.lock();
        let now = Instant::now();
        // However long the server asks for, never an overflow.
        let t = now
            .checked_add(retry_after)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        if s.paused_until.is_none_or(|u| u < t) {
            s.paused_until = Some(t);
        }
        if s.last_decrease
            .is_some_and(|d| now.duration_since(d) < Duration::from_secs(1))
        {
            return;
        }
        s.last_decrease = Some(now);
        let observed = s.last_second_count.max(s.second_count).max(1) as f64;
        let base = s.current.unwrap_or(observed);
        s.current = Some((base * DECREASE).max(0.5));
        tracing::debug!(rate = s.current, "429 from the server: slowing down");
    }

    /// A request went through: grow the rate back towards the asked one.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        let Some(current) = s.current else { return };
        let target = s.asked.unwrap_or(f64::INFINITY);
        if current >= target {
            return;
        }
        // About `current` successes come each second, so each adds a
        // `1/current` share of the increase per second.
        let step = s.asked.unwrap_or(current) * INCREASE_PER_SEC / current;
        let grown = current + step.max(0.01);
        s.current = if grown >= target && s.asked.is_none() && grown > 1e6 {
            None
        } else {
            Some(grown.min(target))
        };
    }

    /// The rate in force, requests per second (`None` = no limit).
    pub fn current_rate(&self) -> Option<f64> {
        self.lock().current
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most events within any one-second window `[t, t + 1 s)`, wherever it
/// falls: how the rate limit is judged (by tests and the benchmark).
pub fn worst_window(times: &mut [Duration]) -> usize {
    times.sort();
    let (mut worst, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= Duration::from_secs(1) {
            lo += 1;
        }
        worst = worst.max(hi - lo + 1);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn starts(rate: u32, requests: usize, concurrency: usize) -> Vec<Duration> {
        let pace = Arc::new(Pace::new(Some(rate)));
        let t0 = tokio::time::Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::new();
        for _ in 0..requests {
            let (pace, sem) = (pace.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                pace.ready().await;
                let at = t0.elapsed();
                // A request that takes a while, as at 250 ms latency.
                tokio::time::sleep(Duration::from_millis(250)).await;
                at
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn no_one_second_window_exceeds_the_rate() {
        for rate in [1, 7, 50, 200] {
            let n = rate as usize * 4 + 3;
            let mut s = starts(rate, n, 1000).await;
            let worst = worst_window(&mut s);
            assert!(
                worst <= rate as usize,
                "rate {rate}: {worst} starts in one second"
            );
            // And it is not needlessly slow: all of them within n/rate seconds plus the margin.
            let last = *s.iter().max().unwrap();
            let ideal = WINDOW.mul_f64((n - 1) as f64 / f64::from(rate));
            assert!(
                last <= ideal + Duration::from_millis(2),
                "rate {rate}: took {last:?}, ideal {ideal:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_start() {
        let pace = Pace::new(None);
        let t0 = tokio::time::Instant::now();
        pace.too_many(Duration::from_secs(3));
        pace.too_many(Duration::from_secs(1)); // a shorter pause does not shorten it
        pace.ready().await;
        assert!(t0.elapsed() >= Duration::from_secs(3));
    }
}

#[cfg(test)]
mod adapt_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_429_cuts_the_rate_once_per_second_and_success_grows_it_back() {
        let pace = Pace::new(Some(100));
        assert_eq!(pace.current_rate(), Some(100.0));
        pace.too_many(Duration::ZERO);
        pace.too_many(Duration::ZERO); // the same burst: no second cut
        assert_eq!(pace.current_rate(), Some(70.0));
        tokio::time::advance(Duration::from_millis(1100)).await;
        pace.too_many(Duration::ZERO);
        assert!((pace.current_rate().unwrap() - 49.0).abs() < 1e-9);
        // About one second of successes at 49/s adds about 2% of 100.
        for _ in 0..49 {
            pace.succeeded();
        }
        let r = pace.current_rate().unwrap();
        assert!((50.9..51.1).contains(&r), "{r}");
        for _ in 0..100_000 {
            pace.succeeded();
        }
        assert_eq!(
            pace.current_rate(),
            Some(100.0),
            "never above the asked rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_a_429_sets_one_below_what_was_observed() {
        let pace = Pace::new(None);
        for _ in 0..40 {
            pace.ready().await;
        }
        pace.too_many(Duration::ZERO);
        assert_eq!(pace.current_rate(), Some(28.0));
    }
}
