//! Pacing: how fast requests start. Slots on an even grid so that no
//! one-second window, wherever it falls, holds more than `--rate` starts;
//! and, when the server answers 429, one pause of the whole pool per burst
//! of 429s and a rate just under what the server was found to accept, held
//! for a while and then probed upward slowly (see `docs/design.md`, "Pacing
//! and pool size"). Time is tokio's, so tests can check the limit and the
//! adaptation with paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Every `--rate` starts span at least this long: one second plus a margin.
/// Requests leave a little after their slot, by varying amounts (timer
/// granularity is 1 ms); the margin keeps `rate + 1` of them from arriving
/// within one second at the server. It costs 0.8% of the rate.
pub const WINDOW: Duration = Duration::from_millis(1008);

/// A slot is handed out at most this long before it comes (enough for the
/// journal's sync before the first try), so that a 429 meanwhile holds back
/// every request that has not started yet.
pub const LOOKAHEAD: Duration = Duration::from_millis(50);

/// The first 429 of a run halves the rate (unless the server was seen to
/// accept more, see [`Accepted::floor`]): nothing is known yet of its limit
/// but that the asked rate is above it.
pub const FIRST_CUT: f64 = 0.5;
/// A 429 soon after a cut (the server's limit came down) cuts to this
/// share; unless the rate was the one a failed probe went back to, then it
/// goes back to the rate the probe started from.
pub const DECREASE: f64 = 0.7;
/// A 429 after a rate found by probing was held at least [`HOLD`] is most
/// likely a stray (requests bunched up on the way: a small bucket refuses
/// them at any rate near its limit, so slowing down would not help): the
/// rate and its long hold go on. Another within [`STRAY_MEMORY`] cuts to
/// [`STRAY_CUT`]; if the limit did come down, the next 429 after that comes
/// soon and cuts deeper.
pub const STRAY_MEMORY: Duration = Duration::from_secs(60);
pub const STRAY_CUT: f64 = 0.95;
/// After a 429 the new rate is held this long before probing upward; each
/// probe that ends in a 429 multiplies the hold by [`HOLD_GROWTH`], up to
/// [`HOLD_MAX`]: a rate just under the server's limit is worth keeping.
pub const HOLD: Duration = Duration::from_secs(10);
pub const HOLD_GROWTH: u32 = 8;
pub const HOLD_MAX: Duration = Duration::from_secs(600);
/// A probe starts by adding this share of the rate per second, and adds
/// twice as fast every [`PROBE_DOUBLING`]: slow near the known rate, quick
/// to find a limit far above it.
pub const PROBE_START: f64 = 0.005;
pub const PROBE_DOUBLING: Duration = Duration::from_secs(5);
/// A probe that ends in a 429 goes back to this share of the rate it had
/// reached, never below the rate it started from.
pub const PROBE_BACK: f64 = 0.9;
/// Successes are counted over this long to bound the server's rate from below.
pub const ACCEPTED_SPAN: Duration = Duration::from_secs(5);
/// The lowest rate the pacer ever comes down to.
pub const MIN_RATE: f64 = 0.5;
/// Without `--rate`, a probe this far up means no limit again.
const NO_LIMIT: f64 = 1e6;

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
    /// Since the first 429: the rate found, and how it is probed.
    plan: Option<Plan>,
    /// The next free slot.
    next: Option<Instant>,
    /// The latest slot handed out: after a pause the grid keeps its
    /// distance from it.
    last_given: Option<Instant>,
    /// When the last stray 429 came (see [`STRAY_MEMORY`]).
    last_stray: Option<Instant>,
    /// Nobody starts before this (a 429's `Retry-After`). A 429 to a
    /// request that left before it belongs to the burst that set it.
    paused_until: Option<Instant>,
    /// Bursts of 429s so far: a slot reserved before the latest is given up.
    bursts: u64,
    accepted: Accepted,
    /// Starts in the current second, to find a rate when none was asked.
    second_start: Instant,
    second_count: u64,
    last_second_count: u64,
}

/// The rate after a 429: `base` from `from` (the end of the pause), held,
/// then probed upward.
#[derive(Debug, Clone, Copy)]
struct Plan {
    base: f64,
    /// The rate the last probe started from, held a whole hold without a
    /// 429 (`base` itself, unless a probe went back above it).
    safe: f64,
    from: Instant,
    /// Probes that ended in a 429 since the server's limit last came down.
    failed: u32,
}

impl Plan {
    fn hold(&self) -> Duration {
        let mut hold = HOLD;
        for _ in 0..self.failed.min(16) {
            hold = hold.saturating_mul(HOLD_GROWTH);
        }
        hold.min(HOLD_MAX)
    }

    fn probing(&self, t: Instant) -> bool {
        t.saturating_duration_since(self.from) > self.hold()
    }

    /// The rate at `t`, before the asked rate caps it.
    fn rate_at(&self, t: Instant) -> f64 {
        let held = t.saturating_duration_since(self.from);
        let Some(probing) = held.checked_sub(self.hold()) else {
            return self.base;
        };
        // PROBE_START of the rate per second at first, twice as much every
        // PROBE_DOUBLING: the integral of that.
        let d = PROBE_DOUBLING.as_secs_f64();
        let added =
            PROBE_START * d / std::f64::consts::LN_2 * ((probing.as_secs_f64() / d).exp2() - 1.0);
        self.base * (1.0 + added)
    }
}

/// Successes over the last [`ACCEPTED_SPAN`], counted per tenth of a second.
struct Accepted {
    origin: Instant,
    tenths: VecDeque<(u64, u32)>,
}

impl Accepted {
    fn tenth(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.origin).as_millis() / 100) as u64
    }

    fn add(&mut self, now: Instant) {
        let i = self.tenth(now);
        match self.tenths.back_mut() {
            Some((j, n)) if *j == i => *n = n.saturating_add(1),
            _ => self.tenths.push_back((i, 1)),
        }
        let span = ACCEPTED_SPAN.as_millis() as u64 / 100;
        while self.tenths.front().is_some_and(|(j, _)| j + span < i) {
            self.tenths.pop_front();
        }
    }

    /// A rate the server surely allows, from what it accepted: a token
    /// bucket lets through at most its rate times the time plus its burst,
    /// and a burst is rarely more than a second's worth; so, over every
    /// span back to [`ACCEPTED_SPAN`], the count over the span plus a
    /// second, and the most of these.
    fn floor(&self, now: Instant) -> f64 {
        let first = now.checked_sub(ACCEPTED_SPAN).map_or(0, |t| self.tenth(t));
        let (mut count, mut most) = (0u64, 0f64);
        for &(j, n) in self.tenths.iter().rev().take_while(|(j, _)| *j >= first) {
            count += u64::from(n);
            let start = self.origin + Duration::from_millis(j * 100);
            let span = now.saturating_duration_since(start).as_secs_f64();
            most = most.max(count as f64 / (span + 1.0));
        }
        most
    }
}

impl State {
    /// The rate in force at `t` (`None` = no limit).
    fn rate_at(&self, t: Instant) -> Option<f64> {
        let Some(plan) = self.plan else {
            return self.asked;
        };
        let rate = plan.rate_at(t);
        match self.asked {
            Some(asked) => Some(rate.min(asked)),
            None => (rate < NO_LIMIT).then_some(rate),
        }
    }
}

impl Pace {
    /// `None` = no limit.
    pub fn new(rate: Option<u32>) -> Pace {
        let asked = rate.map(|r| f64::from(r.max(1)));
        let now = Instant::now();
        Pace {
            state: Mutex::new(State {
                asked,
                plan: None,
                next: None,
                last_given: None,
                last_stray: None,
                paused_until: None,
                bursts: 0,
                accepted: Accepted {
                    origin: now,
                    tenths: VecDeque::new(),
                },
                second_start: now,
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

    /// Waits out a pause, reserves the next slot, and returns when the slot
    /// is at most [`LOOKAHEAD`] away, with the slot (`None`: no limit, now).
    /// The caller must not start before it. A 429 while waiting gives the
    /// slot up: the caller waits out the pause and gets a new one.
    pub async fn reserve(&self) -> Option<Instant> {
        loop {
            loop {
                let until = self.lock().paused_until;
                match until {
                    Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                    _ => break,
                }
            }
            let (slot, bursts) = {
                let mut s = self.lock();
                let now = Instant::now();
                if now.duration_since(s.second_start) >= Duration::from_secs(1) {
                    s.last_second_count = s.second_count;
                    s.second_count = 0;
                    s.second_start = now;
                }
                s.second_count += 1;
                let rate = s.rate_at(now)?;
                let slot = s.next.map_or(now, |n| n.max(now));
                s.next = Some(slot + WINDOW.div_f64(rate));
                (slot, s.bursts)
            };
            if let Some(early) = slot.checked_sub(LOOKAHEAD) {
                tokio::time::sleep_until(early).await;
            }
            let mut s = self.lock();
            if s.bursts == bursts {
                s.last_given = Some(s.last_given.map_or(slot, |g| g.max(slot)));
                return Some(slot);
            }
        }
    }

    /// The server answered 429 to a request that left at `sent_at`. The
    /// first 429 of a burst pauses everyone for `retry_after` and sets the
    /// rate after the pause: half the rate on a run's first 429; 90% of a
    /// probe's rate, never below where it started; a rate held long stays
    /// (a stray, see [`STRAY_MEMORY`]); 70% of a rate soon after a cut;
    /// never below what the server was seen to accept (see
    /// [`Accepted::floor`]). The other 429s of the burst, answers to
    /// requests that left before the pause ended, change nothing: their
    /// retries wait their own `Retry-After`.
    pub fn too_many(&self, sent_at: Instant, retry_after: Duration) {
        let mut s = self.lock();
        if s.paused_until.is_some_and(|u| sent_at < u) {
            return;
        }
        let now = Instant::now();
        // However long the server asks for, never an overflow.
        let until = now
            .checked_add(retry_after)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let observed = s.last_second_count.max(s.second_count).max(1) as f64;
        let was = s.rate_at(sent_at).unwrap_or(observed);
        let floor = s.accepted.floor(now);
        let (rate, safe, failed) = match s.plan {
            None => {
                let rate = floor.max(was * FIRST_CUT);
                (rate, rate, 0)
            }
            Some(plan) if plan.probing(sent_at) => {
                let rate = plan.base.max(was * PROBE_BACK).max(floor);
                (rate, plan.base, plan.failed + 1)
            }
            Some(plan) if plan.base > plan.safe => (plan.safe, plan.safe, plan.failed),
            Some(plan) if sent_at.saturating_duration_since(plan.from) >= HOLD => {
                let again = s
                    .last_stray
                    .is_some_and(|t| now.saturating_duration_since(t) < STRAY_MEMORY);
                s.last_stray = Some(now);
                let rate = if again {
                    floor.max(was * STRAY_CUT)
                } else {
                    plan.base
                };
                (rate, rate, plan.failed)
            }
            Some(_) => {
                let rate = floor.max(was * DECREASE);
                (rate, rate, 0)
            }
        };
        let asked = s.asked;
        let cap = |r: f64| asked.map_or(r, |a| r.min(a)).max(MIN_RATE);
        let (rate, safe) = (cap(rate), cap(safe));
        let resume = s.paused_until.map_or(until, |u| u.max(until));
        s.paused_until = Some(resume);
        s.bursts += 1;
        s.plan = Some(Plan {
            base: rate,
            safe,
            from: resume,
            failed,
        });
        // Slots not handed out yet are given up (see `reserve`); the grid
        // starts again at the end of the pause, never closer to the last
        // slot handed out than the new rate allows.
        let after_last = s.last_given.map(|g| g + WINDOW.div_f64(rate));
        s.next = Some(after_last.map_or(resume, |a| a.max(resume)));
        tracing::debug!(
            rate,
            pause_ms = retry_after.as_millis() as u64,
            "429 from the server: pausing, then slowing down"
        );
    }

    /// A request went through: counted to tell what the server accepts.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.accepted.add(Instant::now());
    }

    /// The rate in force, requests per second (`None` = no limit).
    pub fn current_rate(&self) -> Option<f64> {
        self.lock().rate_at(Instant::now())
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
}

/// The answer to 429s, against a token bucket such as servers use.
#[cfg(test)]
mod adapt_tests {
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
