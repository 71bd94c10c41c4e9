//! Pool sizing: how many requests may be in flight. The pool starts at
//! `--concurrency` and grows, by Little's law, when the observed latency
//! needs more requests in flight to hold the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use crate::config::in_flight;
use crate::pace::Pace;

/// The size of the worker pool, which grows with observed latency.
pub(super) struct Pool {
    size: AtomicU64,
    max: usize,
    /// Answer latency, an exponentially weighted average in microseconds.
    pub(super) latency_us: AtomicU64,
}

impl Pool {
    pub(super) fn new(size: usize, max: usize) -> Pool {
        Pool {
            size: AtomicU64::new(size as u64),
            max: max.max(size),
            latency_us: AtomicU64::new(0),
        }
    }

    pub(super) fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed) as usize
    }
}

/// The growing pool keeps half again what the observed latency needs, for jitter.
pub const GROWTH_HEADROOM: f64 = 1.5;

/// Grows the pool when the observed latency needs more requests in flight
/// than it has, never past its cap. It never shrinks: the rate limit, not
/// the pool, decides how fast requests go.
pub(super) fn start(
    pace: &Arc<Pace>,
    semaphore: &Arc<Semaphore>,
    pool: &Arc<Pool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(size_pool(pace.clone(), semaphore.clone(), pool.clone()))
}

async fn size_pool(pace: Arc<Pace>, semaphore: Arc<Semaphore>, pool: Arc<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(rate) = pace.current_rate() else {
            return;
        };
        let latency = Duration::from_micros(pool.latency_us.load(Ordering::Relaxed));
        let want = in_flight(rate, latency, GROWTH_HEADROOM).min(pool.max);
        let have = pool.size();
        if want > have {
            semaphore.add_permits(want - have);
            pool.size.store(want as u64, Ordering::Relaxed);
            tracing::debug!(
                from = have,
                to = want,
                latency_ms = latency.as_millis() as u64,
                "more requests in flight"
            );
        }
    }
}

/// Folds one answer's latency into the running average (weight 1/16).
pub(super) fn record_latency(avg_us: &AtomicU64, took: Duration) {
    let sample = took.as_micros().min(u128::from(u64::MAX)) as u64;
    let _ = avg_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample
        } else {
            old - old / 16 + sample / 16
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_follows_littles_law() {
        let needed = |rate, latency| in_flight(rate, latency, GROWTH_HEADROOM);
        assert_eq!(needed(200.0, Duration::from_millis(250)), 75);
        assert_eq!(needed(50.0, Duration::from_millis(350)), 27);
        assert_eq!(needed(10.0, Duration::ZERO), 0);
        let avg = AtomicU64::new(0);
        record_latency(&avg, Duration::from_millis(100));
        assert_eq!(avg.load(Ordering::Relaxed), 100_000);
        for _ in 0..200 {
            record_latency(&avg, Duration::from_millis(300));
        }
        assert!((295_000..=300_000).contains(&avg.load(Ordering::Relaxed)));
    }
}
