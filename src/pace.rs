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
mod tests;
