//! The worker: sends one row with its tries, a full-jitter backoff between
//! them and a circuit breaker shared by all workers, and hands the row's
//! outcome to the results file (or, on a stop, leaves it for `--resume`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::api::{StopKind, Verdict};
use crate::config::SendSettings;
use crate::journal::Journal;
use crate::pace::Pace;
use crate::results::{self, Counters, Outcome, Status};
use crate::transport::{Attempt, Client};

use super::pool::{record_latency, Pool};
use super::{Ended, SendItem, Stop};

/// The circuit breaker opens after this many consecutive transient failures...
pub const BREAKER_FAILURES: u64 = 50;
/// ...spread over at least this long without a single success.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(30);

/// Backoff between tries: full jitter over `BASE × 2^(try-1)`, capped.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Pause of the whole pool after a 429 without `Retry-After`.
pub const DEFAULT_429_PAUSE: Duration = Duration::from_secs(1);

/// Consecutive transient failures, for the circuit breaker: a service that
/// fails [`BREAKER_FAILURES`] tries in a row, with no success for
/// [`BREAKER_WINDOW`], is taken to be down, and the run stops (exit 3)
/// instead of turning every remaining row into `failed`.
struct Breaker {
    failures: AtomicU64,
    last_success: Mutex<tokio::time::Instant>,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            failures: AtomicU64::new(0),
            last_success: Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// Records a failure; true when the breaker opens.
    fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= BREAKER_FAILURES
            && self
                .last_success
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= BREAKER_WINDOW
    }
}

/// What workers share.
pub(super) struct Ctx {
    client: Client,
    pub(super) pace: Arc<Pace>,
    pub(super) pool: Arc<Pool>,
    breaker: Breaker,
    pub(super) stop: Stop,
    pub(super) journal: Arc<Mutex<Journal>>,
    pub(super) writer: Arc<results::Shared>,
    counters: Arc<Counters>,
    max_attempts: u32,
    /// Rows dropped by a stop before they were created (left for `--resume`).
    pub(super) abandoned: AtomicU64,
    /// Rows in flight when a previous run died, recorded `unknown` by the reader.
    pub(super) resumed_unknown: AtomicU64,
}

impl Ctx {
    /// What the workers of a run share: its client and rate, its journal
    /// and results file.
    pub(super) fn new(
        client: Client,
        settings: &SendSettings,
        stop: &Stop,
        (journal, writer): (Journal, results::Writer),
        counters: &Arc<Counters>,
    ) -> Arc<Ctx> {
        Arc::new(Ctx {
            client,
            pace: Arc::new(Pace::new(settings.rate)),
            pool: Arc::new(Pool::new(settings.concurrency, settings.max_concurrency)),
            breaker: Breaker::new(),
            stop: stop.clone(),
            journal: Arc::new(Mutex::new(journal)),
            writer: Arc::new(results::Shared::new(writer)),
            counters: counters.clone(),
            max_attempts: settings.max_attempts,
            abandoned: AtomicU64::new(0),
            resumed_unknown: AtomicU64::new(0),
        })
    }
}

/// Sends one row with retries, and writes its outcome to the results file.
pub(super) async fn worker(ctx: Arc<Ctx>, item: SendItem, permit: OwnedSemaphorePermit) {
    let SendItem { row, fields, body } = item;
    let mut errors: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut http: Option<u16> = None;
    let decided = tries(&ctx, row, &body, &mut errors, &mut attempts, &mut http).await;
    match decided {
        Some((status, id)) => {
            let outcome = Outcome {
                row,
                fields,
                status,
                id,
                http,
                attempts,
                errors,
                permit: None,
            };
            deliver(&ctx, outcome, permit);
        }
        None => abandon(&ctx, row, permit),
    }
}

/// Tries one row until it is decided: its status and DigiDesk id. `None`
/// when the run stops first: the row was not created and is left for `--resume`.
async fn tries(
    ctx: &Ctx,
    row: u64,
    body: &Bytes,
    errors: &mut Vec<String>,
    attempts: &mut u32,
    http: &mut Option<u16>,
) -> Option<(Status, Option<u64>)> {
    loop {
        tokio::select! {
            _ = ctx.pace.ready() => {}
            _ = ctx.stop.soft.cancelled() => return None,
        }
        *attempts += 1;
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        // Bodies hold customer data: only at -vv.
        tracing::trace!(row, attempt = *attempts, body = %String::from_utf8_lossy(body), "sending");
        let sent_at = tokio::time::Instant::now();
        let attempt = tokio::select! {
            a = ctx.client.post(body.clone()) => { record_latency(&ctx.pool.latency_us, sent_at.elapsed()); a }
            _ = ctx.stop.hard.cancelled() => {
                errors.push("interrupted while waiting for the answer: it may have been created; check DigiDesk before resending (retry --only unknown)".into());
                return Some((Status::Unknown, None));
            }
        };
        let (reason, retry_after) = match attempt {
            Attempt::Answered {
                http: h,
                verdict,
                retry_after,
            } => {
                *http = Some(h);
                match verdict {
                    Verdict::Created(id) => {
                        ctx.breaker.success();
                        ctx.pace.succeeded();
                        return Some((Status::Created, Some(id)));
                    }
                    Verdict::Rejected(messages) => {
                        ctx.breaker.success();
                        errors.extend(messages);
                        return Some((Status::Rejected, None));
                    }
                    Verdict::Unknown(msg) => {
                        errors.push(msg);
                        return Some((Status::Unknown, None));
                    }
                    Verdict::Stop(kind, msg) => {
                        ctx.stop.set(Ended::Stopped(kind, msg));
                        return None;
                    }
                    Verdict::Transient(msg) => {
                        if h == 429 {
                            ctx.pace.too_many(retry_after.unwrap_or(DEFAULT_429_PAUSE));
                        }
                        (msg, retry_after)
                    }
                }
            }
            Attempt::NotSent(msg) => (msg, None),
            Attempt::Lost(msg) => {
                errors.push(msg);
                return Some((Status::Unknown, None));
            }
            Attempt::Tls(msg) => {
                ctx.stop.set(Ended::Stopped(StopKind::Tls, msg));
                return None;
            }
        };
        errors.push(format!("try {attempts}: {reason}"));
        if ctx.breaker.failure() {
            ctx.stop.set(Ended::Stopped(
                StopKind::ServiceDown,
                format!(
                    "the service kept failing: {BREAKER_FAILURES} tries in a row failed with transient errors over {}s without a success (last: {reason})",
                    BREAKER_WINDOW.as_secs()
                ),
            ));
            return None;
        }
        if *attempts >= ctx.max_attempts {
            return Some((Status::Failed, None));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(*attempts, retry_after)) => {}
            _ = ctx.stop.soft.cancelled() => return None,
        }
    }
}

/// Full jitter: a random delay up to `BASE × 2^(try-1)` (capped), but never
/// less than the server's `Retry-After`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    use rand::Rng;
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let jitter = Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling.as_secs_f64()));
    match retry_after {
        Some(ra) => ra.max(jitter.min(ra + Duration::from_millis(250))),
        None => jitter,
    }
}

fn deliver(ctx: &Ctx, mut outcome: Outcome, permit: OwnedSemaphorePermit) {
    // Row numbers and statuses only: no customer data at -v.
    tracing::debug!(
        row = outcome.row,
        status = outcome.status.as_str(),
        id = outcome.id,
        http = outcome.http,
        attempts = outcome.attempts,
        "row decided"
    );
    outcome.permit = Some(permit);
    if !ctx.writer.record(outcome) {
        // The results file failed: the run ends with that error.
        ctx.stop.set(Ended::Interrupted);
    }
}

/// The row was not created and is left for `--resume`: say so in the journal.
fn abandon(ctx: &Ctx, row: u64, permit: OwnedSemaphorePermit) {
    ctx.abandoned.fetch_add(1, Ordering::Relaxed);
    let mut j = ctx.journal.lock().unwrap_or_else(|p| p.into_inner());
    // If this line is lost, the row is merely reported `unknown` on resume.
    let _ = j.not_sent(row);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_only_after_many_failures_over_the_window() {
        let b = Breaker::new();
        for _ in 0..BREAKER_FAILURES * 3 {
            assert!(
                !b.failure(),
                "a burst of failures inside the window is a short outage"
            );
        }
        tokio::time::advance(BREAKER_WINDOW).await;
        assert!(b.failure());
        b.success();
        tokio::time::advance(BREAKER_WINDOW).await;
        for _ in 1..BREAKER_FAILURES {
            assert!(
                !b.failure(),
                "fewer than the threshold since the last success"
            );
        }
        assert!(b.failure());
    }

    #[test]
    fn backoff_is_jittered_capped_and_honours_retry_after() {
        for attempt in 1..20 {
            let d = backoff(attempt, None);
            assert!(d <= BACKOFF_CAP);
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        let ra = Duration::from_secs(7);
        for attempt in 1..10 {
            let d = backoff(attempt, Some(ra));
            assert!(d >= ra && d <= ra + Duration::from_millis(250), "{d:?}");
        }
    }
}
