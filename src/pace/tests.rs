//! The rate: slots, windows and pauses.

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
async fn the_rate_holds_across_pauses_that_end_at_once() {
    // 429s with `Retry-After: 0` every 137 ms: each starts the grid
    // again, and slots already handed out still start. Two successes
    // counted per start keep every cut at the asked rate.
    let pace = Arc::new(Pace::new(Some(200)));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1500 {
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            pace.ready().await;
            pace.succeeded();
            pace.succeeded();
            t0.elapsed()
        }));
    }
    let mut cuts = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(137)).await;
        pace.too_many(tokio::time::Instant::now(), Duration::ZERO);
        cuts += 1;
    }
    let mut s = Vec::new();
    for t in tasks {
        s.push(t.await.unwrap());
    }
    assert!(cuts > 20);
    let worst = worst_window(&mut s);
    assert!(worst <= 200, "{worst} starts in one second");
    assert!(worst >= 190, "{worst}: the rate was cut");
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_every_start() {
    let pace = Pace::new(None);
    let t0 = tokio::time::Instant::now();
    pace.too_many(t0, Duration::from_secs(3));
    pace.too_many(t0, Duration::from_secs(1)); // a shorter pause does not shorten it
    pace.ready().await;
    assert!(t0.elapsed() >= Duration::from_secs(3));
}

// The answer to 429s, against a token bucket such as servers use.
mod adapt {
    use super::*;
    use std::sync::Arc;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_429s_costs_one_pause_and_one_cut() {
        let pace = Pace::new(Some(40));
        let t0 = Instant::now();
        pace.too_many(t0, SECOND);
        assert_eq!(pace.current_rate(), Some(20.0), "the first 429 halves it");
        // The answers to requests that left before the pause ended come
        // later: they neither cut the rate again nor lengthen the pause.
        for ms in [5, 100, 400, 900] {
            tokio::time::advance(Duration::from_millis(5)).await;
            pace.too_many(t0 + Duration::from_millis(ms), SECOND);
        }
        assert_eq!(pace.current_rate(), Some(20.0));
        pace.ready().await;
        assert_eq!(t0.elapsed(), SECOND, "one pause, from the first 429");
        // A request that left after the pause ended starts a new burst.
        let sent = Instant::now();
        pace.too_many(sent, SECOND);
        pace.ready().await;
        assert_eq!(sent.elapsed(), SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_that_falls_in_a_pause_is_given_up() {
        let pace = Arc::new(Pace::new(Some(40)));
        let t0 = Instant::now();
        // Twenty waiters take slots up to half a second ahead.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let pace = pace.clone();
            tasks.push(tokio::spawn(async move {
                pace.ready().await;
                t0.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pace.too_many(Instant::now(), SECOND);
        let mut started = Vec::new();
        for t in tasks {
            started.push(t.await.unwrap());
        }
        let during: Vec<_> = started
            .iter()
            .filter(|&&t| {
                t > Duration::from_millis(100) + LOOKAHEAD && t < Duration::from_millis(1100)
            })
            .collect();
        assert!(during.is_empty(), "started during the pause: {during:?}");
        assert!(started.iter().any(|&t| t >= Duration::from_millis(1100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_ends_in_a_429_goes_back_and_holds_longer() {
        let pace = Pace::new(Some(40));
        pace.too_many(Instant::now(), SECOND);
        // Held at 20 for HOLD after the pause, then probed upward, slowly at first.
        tokio::time::advance(SECOND + HOLD).await;
        assert_eq!(pace.current_rate(), Some(20.0));
        tokio::time::advance(SECOND).await;
        let r = pace.current_rate().unwrap();
        assert!((20.09..20.12).contains(&r), "{r}");
        tokio::time::advance(Duration::from_secs(9)).await;
        let probed = pace.current_rate().unwrap();
        assert!((22.1..22.2).contains(&probed), "{probed}");
        pace.too_many(Instant::now(), SECOND);
        // Back to 90% of the probe's rate, never below where it started.
        let back = pace.current_rate().unwrap();
        assert_eq!(back, 20.0);
        // Held eight times longer now.
        tokio::time::advance(SECOND + HOLD * HOLD_GROWTH).await;
        assert_eq!(pace.current_rate(), Some(back));
        tokio::time::advance(SECOND).await;
        assert!(pace.current_rate().unwrap() > back);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_after_going_back_above_the_start_goes_back_to_the_start() {
        let pace = Pace::new(Some(40));
        pace.too_many(Instant::now(), SECOND);
        tokio::time::advance(SECOND + HOLD + Duration::from_secs(20)).await;
        let probed = pace.current_rate().unwrap();
        assert!((30.0..31.0).contains(&probed), "{probed}");
        pace.too_many(Instant::now(), SECOND);
        assert_eq!(pace.current_rate(), Some(probed * PROBE_BACK));
        tokio::time::advance(Duration::from_secs(5)).await;
        pace.too_many(Instant::now(), SECOND);
        assert_eq!(pace.current_rate(), Some(20.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stray_429_after_a_long_hold_changes_nothing_but_a_second_one_cuts() {
        let pace = Pace::new(Some(40));
        pace.too_many(Instant::now(), SECOND);
        tokio::time::advance(SECOND + HOLD + Duration::from_secs(9)).await;
        pace.too_many(Instant::now(), SECOND);
        assert_eq!(pace.current_rate(), Some(20.0), "a failed probe");
        tokio::time::advance(SECOND + Duration::from_secs(30)).await;
        pace.too_many(Instant::now(), SECOND);
        assert_eq!(pace.current_rate(), Some(20.0), "a stray");
        // Held as long again.
        tokio::time::advance(SECOND + HOLD * HOLD_GROWTH).await;
        assert_eq!(pace.current_rate(), Some(20.0));
        // Another within a minute of the first: a cut.
        let pace = Pace::new(Some(40));
        pace.too_many(Instant::now(), SECOND);
        tokio::time::advance(SECOND + HOLD + Duration::from_secs(9)).await;
        pace.too_many(Instant::now(), SECOND);
        for expected in [20.0, 20.0 * STRAY_CUT] {
            tokio::time::advance(SECOND + HOLD).await;
            pace.too_many(Instant::now(), SECOND);
            assert_eq!(pace.current_rate(), Some(expected));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_soon_after_a_cut_cuts_to_seventy_percent() {
        let pace = Pace::new(Some(100));
        pace.too_many(Instant::now(), Duration::ZERO);
        assert_eq!(pace.current_rate(), Some(50.0));
        tokio::time::advance(SECOND).await;
        pace.too_many(Instant::now(), Duration::ZERO);
        assert_eq!(pace.current_rate(), Some(35.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cut_never_goes_below_what_the_server_accepted() {
        let pace = Pace::new(Some(100));
        // 300 accepted over three seconds: the server allows at least 75/s
        // even if its burst was a whole second's worth.
        for _ in 0..300 {
            pace.ready().await;
            pace.succeeded();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        pace.too_many(Instant::now(), SECOND);
        let r = pace.current_rate().unwrap();
        assert!(r > 70.0, "{r}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_a_429_sets_one_below_what_was_observed() {
        let pace = Pace::new(None);
        for _ in 0..40 {
            pace.ready().await;
        }
        pace.too_many(Instant::now(), Duration::ZERO);
        assert_eq!(pace.current_rate(), Some(20.0));
    }

    /// A server's token bucket on tokio's clock.
    struct Bucket {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: Instant,
    }

    impl Bucket {
        fn take(&mut self) -> bool {
            let now = Instant::now();
            let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.at = now;
            let ok = self.tokens >= 1.0;
            if ok {
                self.tokens -= 1.0;
            }
            ok
        }
    }

    struct Run {
        /// When each request left, and whether it was accepted.
        sent: Vec<(Duration, bool)>,
    }

    impl Run {
        /// Created per second over the run, as a share of what the server allows.
        fn goodput(&self, allowed: f64) -> f64 {
            let first = self.sent.iter().map(|s| s.0).min().unwrap();
            let last = self.sent.iter().map(|s| s.0).max().unwrap();
            let created = self.sent.iter().filter(|s| s.1).count();
            (created - 1) as f64 / (last - first).as_secs_f64() / allowed
        }

        fn share_429(&self) -> f64 {
            self.sent.iter().filter(|s| !s.1).count() as f64 / self.sent.len() as f64
        }

        fn worst_window(&self) -> usize {
            let mut times: Vec<_> = self.sent.iter().map(|s| s.0).collect();
            worst_window(&mut times)
        }
    }

    /// Sends `rows` requests at `asked` per second with `concurrency` in
    /// flight, as the workers do, to a server allowing `allowed` per second
    /// with a burst of `burst`, answering in `latency` (half of it on the
    /// way there), `Retry-After: 1` on every 429.
    async fn against_bucket(
        asked: u32,
        (allowed, burst): (f64, f64),
        rows: usize,
        latency: Duration,
    ) -> Run {
        let pace = Arc::new(Pace::new(Some(asked)));
        let bucket = Arc::new(Mutex::new(Bucket {
            rate: allowed,
            burst,
            tokens: burst,
            at: Instant::now(),
        }));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sem = Arc::new(tokio::sync::Semaphore::new(asked as usize / 2));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..rows {
            let (pace, bucket, sent, sem) =
                (pace.clone(), bucket.clone(), sent.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                loop {
                    pace.ready().await;
                    let at = Instant::now();
                    tokio::time::sleep(latency / 2).await;
                    let ok = bucket.lock().unwrap().take();
                    sent.lock().unwrap().push((at - t0, ok));
                    tokio::time::sleep(latency / 2).await;
                    if ok {
                        pace.succeeded();
                        return;
                    }
                    pace.too_many(at, SECOND);
                    tokio::time::sleep(SECOND).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sent = std::mem::take(&mut *sent.lock().unwrap());
        Run { sent }
    }

    #[tokio::test(start_paused = true)]
    async fn asked_twice_a_small_bursts_limit_it_settles_just_under_it() {
        // Many requests in flight when the first 429 comes back, or few.
        for latency in [2, 200] {
            let latency = Duration::from_millis(latency);
            let run = against_bucket(40, (20.0, 2.0), 1500, latency).await;
            let (goodput, share) = (run.goodput(20.0), run.share_429());
            assert!(goodput >= 0.95, "{latency:?}: goodput {goodput}");
            assert!(share < 0.03, "{latency:?}: 429s {share}");
            assert!(run.worst_window() <= 40);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn asked_twice_a_one_second_bursts_limit_it_settles_at_it() {
        let run = against_bucket(100, (50.0, 50.0), 1500, Duration::from_millis(2)).await;
        let (goodput, share) = (run.goodput(50.0), run.share_429());
        assert!(goodput >= 0.95, "goodput {goodput}");
        assert!(share < 0.03, "429s {share}");
        assert!(run.worst_window() <= 100);
    }
}
