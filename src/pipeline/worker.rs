//! The worker: sends one row with its tries, a full-jitter backoff between
//! them and a circuit breaker shared by all workers, and hands the row's
//! outcome to the results file (or, on a stop, leaves it for `--resume`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::api::{StopKind, Verdict};
use crate::ledger::{self, Claim, Recorded};
use crate::results::{Outcome, Status};
use crate::transport::Attempt;

use super::ctx::{Ctx, BREAKER_FAILURES, BREAKER_WINDOW};
use super::keeper::{Claimed, Note};
use super::pool::record_latency;
use super::turn::{take_turn, Turn};
use super::{Ended, SendItem};

/// Backoff between tries: full jitter over `BASE × 2^(try-1)`, capped.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Pause of the whole pool after a 429 without `Retry-After`.
pub const DEFAULT_429_PAUSE: Duration = Duration::from_secs(1);

/// Sends one row with retries, and writes its outcome to the results file.
/// A panic while trying (a bug) never loses the row: it is recorded
/// `unknown` if its request may have left, `failed` if it never did.
pub(super) async fn worker(
    ctx: Arc<Ctx>,
    item: SendItem,
    claimed: oneshot::Receiver<Claimed>,
    permit: OwnedSemaphorePermit,
) {
    use futures_util::FutureExt;
    let SendItem {
        row,
        hash,
        claim,
        fields,
        body,
    } = item;
    let mut errors: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut http: Option<u16> = None;
    let mut left = false;
    let trying = tries(
        &ctx,
        (row, hash, claimed),
        &body,
        &mut errors,
        &mut attempts,
        &mut http,
        &mut left,
    );
    let decided = match std::panic::AssertUnwindSafe(trying).catch_unwind().await {
        Ok(decided) => decided,
        Err(panic) => Some(fault(&ctx, row, panic.as_ref(), left, &mut errors)),
    };
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
            deliver(&ctx, outcome, claim, permit);
        }
        None => abandon(&ctx, claim, permit),
    }
}

/// A worker panicked while trying `row`: the row is `unknown` if its
/// request may have left (`left`), `failed` if not; the run counts the fault.
fn fault(
    ctx: &Ctx,
    row: u64,
    panic: &(dyn std::any::Any + Send),
    left: bool,
    errors: &mut Vec<String>,
) -> (Status, Option<u64>) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    ctx.faults.fetch_add(1, Ordering::Relaxed);
    tracing::error!(row, "internal error while sending row {row}: {what}");
    if left {
        errors.push(format!("internal error after the request left ({what}): it may have been created; check DigiDesk before resending (retry --only unknown)"));
        (Status::Unknown, None)
    } else {
        errors.push(format!(
            "internal error before the request left ({what}): it was not sent"
        ));
        (Status::Failed, None)
    }
}

/// Tries one row until it is decided: its status and DigiDesk id. `None`
/// when the run stops first: the row was not created and is left for
/// `--resume`. `left` says whether the current try's request may have left.
async fn tries(
    ctx: &Ctx,
    (row, hash, claimed): (u64, u64, oneshot::Receiver<Claimed>),
    body: &Bytes,
    errors: &mut Vec<String>,
    attempts: &mut u32,
    http: &mut Option<u16>,
    left: &mut bool,
) -> Option<(Status, Option<u64>)> {
    let mut claimed = Some(claimed);
    loop {
        // The first try is claimed, then journaled just before it leaves
        // (see `dispatch`).
        let first = claimed.take();
        let turn = async {
            match first {
                Some(claimed) => take_turn(ctx, row, hash, claimed).await,
                None => {
                    ctx.pace.ready().await;
                    Turn::Go
                }
            }
        };
        tokio::select! {
            turn = turn => match turn {
                Turn::Go => {}
                Turn::Duplicate(earlier) => {
                    errors.push(earlier.reason());
                    return Some((Status::Duplicate, earlier.id));
                }
                Turn::No => return None,
            },
            _ = ctx.stop.soft.cancelled() => return None,
        }
        *attempts += 1;
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        // Bodies hold customer data: only at -vv.
        tracing::trace!(row, attempt = *attempts, body = %String::from_utf8_lossy(body), "sending");
        let sent_at = tokio::time::Instant::now();
        *left = true;
        let attempt = tokio::select! {
            a = ctx.client.post(body.clone()) => { record_latency(&ctx.pool.latency_us, sent_at.elapsed()); a }
            _ = ctx.stop.hard.cancelled() => {
                errors.push("interrupted while waiting for the answer: it may have been created; check DigiDesk before resending (retry --only unknown)".into());
                return Some((Status::Unknown, None));
            }
        };
        if !matches!(attempt, Attempt::NotSent(_)) {
            ctx.reach.reached.store(true, Ordering::Relaxed);
        }
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
                            ctx.pace
                                .too_many(sent_at, retry_after.unwrap_or(DEFAULT_429_PAUSE));
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
        // This try was not created (a transient answer, or never sent).
        *left = false;
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
        if let Some(end) = ctx.reach.verdict(&reason) {
            ctx.stop.set(end);
            return None;
        }
        // Until the endpoint is first reached, a row is never given up as
        // `failed`: either it is reached, or the run stops at the deadline.
        if *attempts >= ctx.max_attempts && ctx.reach.reached() {
            return Some((Status::Failed, None));
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.reach.cap(backoff(*attempts, retry_after))) => {}
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
        Some(ra) => ra.max(jitter.min(ra.saturating_add(Duration::from_millis(250)))),
        None => jitter,
    }
}

fn deliver(ctx: &Ctx, mut outcome: Outcome, claim: Claim, permit: OwnedSemaphorePermit) {
    // Row numbers and statuses only: no customer data at -v.
    tracing::debug!(
        row = outcome.row,
        status = outcome.status.as_str(),
        id = outcome.id,
        http = outcome.http,
        attempts = outcome.attempts,
        "row decided"
    );
    // The ledger learns the outcome before the row's permit comes back, so
    // every outcome is queued before the keeper's queue closes.
    let recorded = match outcome.status {
        Status::Created => Some(
            outcome
                .id
                .map_or(ledger::Outcome::Unknown, ledger::Outcome::Created),
        ),
        Status::Unknown => Some(ledger::Outcome::Unknown),
        // Never claimed by this row: nothing to record.
        Status::Duplicate => None,
        _ => Some(ledger::Outcome::Released),
    };
    if let Some(outcome) = recorded {
        ctx.tell(Note::Outcome(Recorded {
            row: claim.row,
            key: claim.key,
            contact: claim.contact,
            outcome,
        }));
    }
    outcome.permit = Some(permit);
    if !ctx.writer.record(outcome) {
        // The results file failed: the run ends with that error.
        ctx.stop.set(Ended::Interrupted);
    }
}

/// The row was not created and is left for `--resume`: say so in the
/// journal, and free its key in the ledger.
fn abandon(ctx: &Ctx, claim: Claim, permit: OwnedSemaphorePermit) {
    let row = claim.row;
    ctx.abandoned.fetch_add(1, Ordering::Relaxed);
    ctx.tell(Note::Outcome(Recorded {
        row,
        key: claim.key,
        contact: claim.contact,
        outcome: ledger::Outcome::Released,
    }));
    let mut j = ctx.journal.lock().unwrap_or_else(|p| p.into_inner());
    // If this line is lost, the row is merely reported `unknown` on resume.
    let _ = j.not_sent(row);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SendSettings, StartMode};
    use crate::journal::Header;
    use crate::journal::Journal;
    use crate::pace::Pace;
    use crate::pipeline::ctx::{Breaker, NEVER_REACHED};
    use crate::pipeline::Stop;
    use crate::results::{self, Counters};
    use crate::transport::{Client, Credentials};

    /// A worker context over `client`, its journal and results file in `dir`.
    fn context(client: Client, dir: &std::path::Path, max_attempts: u32) -> Arc<Ctx> {
        let settings = SendSettings {
            results: dir.join("out.csv"),
            endpoint: "http://127.0.0.1:9/".parse().unwrap(),
            credentials: Credentials::new("u", "p"),
            rate: None,
            concurrency: 1,
            max_concurrency: 1,
            max_attempts,
            timeout: Duration::from_secs(1),
            mode: StartMode::Fresh,
            ca_cert_pem: None,
            summary_json: None,
            limit: None,
            progress_every: Duration::from_secs(1),
            retry_server_errors: false,
            results_format: results::Format::default(),
        };
        let counters = Arc::new(Counters::default());
        let header = Header {
            digidesk_upload_journal: 1,
            fingerprint: "test".into(),
            command: "send".into(),
            endpoint: None,
        };
        let journal = Journal::create(&dir.join("out.csv.journal"), &header).unwrap();
        let writer = results::Writer::create(
            &settings.results,
            &results::header_for(&["Ref".to_string()]),
            results::Format::default(),
            counters.clone(),
        )
        .unwrap();
        let ctx = Ctx::new(
            client,
            &settings,
            &Stop::default(),
            (journal, writer),
            &counters,
        );
        // The keeper's threads, as a run has them: a first try is claimed,
        // then journaled, before it leaves.
        let (notes, _thread) =
            super::super::keeper::start(ctx.journal.clone(), None, Stop::default()).unwrap();
        *ctx.keeper.lock().unwrap() = Some(notes);
        ctx
    }

    /// Runs one worker on row 1 to its end; returns the permits left.
    async fn send_one(ctx: &Arc<Ctx>) -> usize {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let item = SendItem {
            row: 1,
            hash: 0,
            claim: crate::ledger::Claim {
                row: 1,
                key: crate::ledger::KeyHash([0; 16]),
                contact: None,
            },
            fields: csv::StringRecord::from(vec!["R1"]),
            body: Bytes::from_static(b"{}"),
        };
        let (answer, claimed) = oneshot::channel();
        ctx.tell(super::super::keeper::Note::Claim {
            claim: item.claim,
            answer,
        });
        tokio::spawn(worker(ctx.clone(), item, claimed, permit))
            .await
            .expect("the worker task itself never panics");
        semaphore.available_permits()
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_while_the_request_may_have_left_leaves_the_row_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::scripted("http://127.0.0.1:9/".parse().unwrap(), |n, _| {
            if n == 1 {
                Attempt::NotSent("connection refused".into())
            } else {
                panic!("overflow when adding duration to instant")
            }
        });
        let ctx = context(client, dir.path(), 5);
        assert_eq!(send_one(&ctx).await, 1, "the row's permit came back");
        assert_eq!(ctx.counters.get(Status::Unknown), 1);
        assert_eq!(ctx.faults.load(Ordering::Relaxed), 1);
        ctx.writer.finish().unwrap();
        let text = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
        let line = text.lines().nth(1).expect("row 1 has its line");
        assert!(line.starts_with("R1,1,unknown"), "{line}");
        assert!(
            line.contains("internal error after the request left"),
            "{line}"
        );
    }

    fn created(id: u64) -> Attempt {
        Attempt::Answered {
            http: 201,
            verdict: Verdict::Created(id),
            retry_after: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_refuses_every_connection_stops_the_run_after_ten_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::scripted("http://127.0.0.1:9/".parse().unwrap(), |_, _| {
            Attempt::NotSent("connection refused".into())
        });
        let ctx = context(client, dir.path(), 3);
        let t0 = tokio::time::Instant::now();
        assert_eq!(send_one(&ctx).await, 1);
        let took = t0.elapsed();
        assert!(
            took >= NEVER_REACHED && took < NEVER_REACHED + Duration::from_millis(100),
            "{took:?}"
        );
        match ctx.stop.reason() {
            Some(Ended::Stopped(StopKind::Endpoint, msg)) => {
                assert!(msg.contains("right port"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ctx.counters.get(Status::Failed), 0, "left for --resume");
        assert_eq!(ctx.abandoned.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_after_the_endpoint_was_reached_are_ridden_out() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = tokio::time::Instant::now();
        // The first try is created; then the service restarts for 12 s.
        let client = Client::scripted("http://127.0.0.1:9/".parse().unwrap(), move |n, _| {
            if n > 1 && t0.elapsed() < Duration::from_secs(12) {
                Attempt::NotSent("connection refused".into())
            } else {
                created(n)
            }
        });
        let ctx = context(client, dir.path(), 20);
        send_one(&ctx).await;
        send_one(&ctx).await;
        assert!(t0.elapsed() >= Duration::from_secs(12));
        assert_eq!(ctx.stop.reason(), None);
        assert_eq!(ctx.counters.get(Status::Created), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_never_overflows() {
        let pace = Pace::new(Some(10));
        pace.too_many(tokio::time::Instant::now(), Duration::MAX);
        assert!(backoff(3, Some(Duration::MAX)) >= Duration::from_secs(3600));
    }

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
