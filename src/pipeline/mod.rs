//! The pipeline: a reader thread maps and validates rows (and on `--resume`
//! checks them against what the run decided before), a dispatcher has each
//! sendable row's survey key claimed in the ledger by the keeper thread (at
//! `--rate 0` a batch of rows ahead, in one commit) and hands the row to a
//! worker task; a worker waits for the claim (a `duplicate` ends there) and
//! its rate slot, has the journal thread sync its row's journal line just
//! before it (one sync per group of rows), posts with retries under a shared
//! rate limit, and leaves the outcome for the keeper. Whoever decides a row
//! (a worker, or the reader for invalid and skipped rows) writes its results
//! line. A bounded channel and the concurrency permits connect them, so a
//! slow server slows reading instead of filling memory.
//!
//! ```text
//! reader ──sendable──▶ dispatcher ──spawn──▶ workers ──outcome──▶ results file
//!    │                     ▼ claims          ▼ "sending", outcomes        ▲
//!    │                  keeper (ledger)   journal                         │
//!    └──────────── invalid / skipped / unknown-on-resume ─────────────────┘
//! ```
//!
//! A row is in flight from its journal line (written and synced before its
//! request leaves) until its outcome is written; its concurrency permit
//! travels with it and is released once its results line is written, so at
//! most `--concurrency` rows are ever in flight.

mod ctx;
mod dispatch;
pub mod error;
mod feed;
mod keeper;
pub mod pool;
mod resume;
mod stop;
mod turn;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::api::StopKind;
use crate::config::SendSettings;
use crate::input::Rows;
use crate::journal::{Journal, JournalError};
use crate::mapping::Plan;
use crate::results::{self, Counters, Status, Tally};
use crate::transport::Client;

use ctx::Ctx;
use feed::ReadEnd;
use resume::Resume;

pub use ctx::{BREAKER_FAILURES, BREAKER_WINDOW};
pub use error::RunError;
pub use keeper::Ledgered;
pub use resume::fingerprint;
pub use stop::Stop;
pub use worker::{backoff, BACKOFF_BASE, BACKOFF_CAP, DEFAULT_429_PAUSE};

/// One run of `send` or `retry`.
pub struct Job {
    /// `send` or `retry`, for the journal and messages.
    pub command: String,
    pub rows: Rows,
    pub plan: Plan,
    pub settings: SendSettings,
    /// Identifies the run; `--resume` refuses a different one.
    pub fingerprint: String,
    /// Sync the journal to disk before each batch of requests (on except in the demo).
    pub durable: bool,
    /// The ledger of surveys sent, with this run begun in it; `None` with
    /// `--no-ledger` (a survey is then still never sent twice within the run).
    pub ledger: Option<Ledgered>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every row was read and decided (or `--limit` was reached).
    Completed,
    /// Stopped part-way for a reason the user must fix.
    Stopped(StopKind, String),
    /// Reading the input failed part-way.
    InputError(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// `--resume` found a row that is not the one the run decided earlier.
    InputChanged(String),
}

/// The facts of a finished run: what the summary table and its JSON twin show.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub ended: Ended,
    /// Rows per status in the whole results file (a resumed run included).
    pub counts: Vec<(Status, u64)>,
    /// Rows decided by this invocation.
    pub rows_this_run: u64,
    /// Requests made by this invocation, retries included.
    pub requests: u64,
    pub elapsed: Duration,
    pub tally: Tally,
    pub results: PathBuf,
    /// `--limit` was reached.
    pub limited: bool,
    /// The run's `--limit`, if any: a stopped run continues with it.
    pub limit: Option<u64>,
    /// Rows of the input not in the results file because the run stopped
    /// (or reached `--limit`) before sending them; `--resume` sends them.
    pub unsent: u64,
    /// Rows that were in flight when a previous run died, now `unknown`.
    pub resumed_unknown: u64,
    /// The previous run had already completed; nothing was done.
    pub already_complete: bool,
    /// What the reader noticed about the input: a footer ignored, bytes
    /// replaced, the shape it found.
    pub input: crate::input::Notes,
}

impl RunSummary {
    pub fn count(&self, s: Status) -> u64 {
        self.counts
            .iter()
            .find(|(st, _)| *st == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Rows that are neither created nor skipped.
    pub fn problems(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(s, _)| s.is_problem())
            .map(|(_, n)| n)
            .sum()
    }
}

/// The reader hands sendable rows to the dispatcher in groups of at most
/// this many (at once when the dispatcher has nothing queued).
const HANDOFF_BATCH: usize = 16;

/// A row ready to send.
struct SendItem {
    row: u64,
    /// The fingerprint of the row's content, for the journal.
    hash: u64,
    /// Its survey key and contact, as the ledger knows them.
    claim: crate::ledger::Claim,
    fields: csv::StringRecord,
    body: Bytes,
}

/// On `--resume`: the outcome of every row the results file decided whose
/// claim the ledger still holds in flight (a kill came before the keeper
/// recorded it), so that the ledger says `created` with its id, or frees
/// the key of a row not created. Best effort: a claim left in flight stops
/// its key just as well, naming its run and row.
fn record_decided(ledger: &mut Ledgered, settings: &SendSettings, width: usize) {
    use crate::ledger::{Outcome, Recorded};
    let done = (|| -> Result<usize, String> {
        let claims = ledger
            .store
            .in_flight(ledger.run)
            .map_err(|e| e.to_string())?;
        if claims.is_empty() {
            return Ok(0);
        }
        let rows = claims.iter().map(|c| c.row).collect();
        let decided =
            results::outcomes_of(&settings.results, width, settings.results_format, &rows)
                .map_err(|e| e.to_string())?;
        let outcomes: Vec<Recorded> = claims
            .iter()
            .filter_map(|c| {
                let (status, id) = decided.get(&c.row)?;
                let outcome = match (status, id) {
                    (Status::Created, Some(id)) => Outcome::Created(*id),
                    (Status::Created | Status::Unknown, _) => Outcome::Unknown,
                    _ => Outcome::Released,
                };
                Some(Recorded {
                    row: c.row,
                    key: c.key,
                    contact: c.contact,
                    outcome,
                })
            })
            .collect();
        ledger
            .store
            .record(ledger.run, &outcomes)
            .map_err(|e| e.to_string())?;
        Ok(outcomes.len())
    })();
    match done {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "ledger: outcomes recorded from the results file"),
        Err(e) => tracing::warn!("could not record in the ledger the outcomes the results file holds (their keys stay in flight): {e}"),
    }
}

/// Runs a job to its end, posting with `client`. `stop` lets the caller interrupt it.
pub async fn run(
    mut job: Job,
    client: Client,
    stop: Stop,
    counters: Arc<Counters>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    // Decide how to start: fresh, forced, or resumed.
    let mut prepared = resume::prepare(&job, &counters)?;
    prepared.journal.set_sync(job.durable);
    if let Some(r) = prepared.resume.as_ref().filter(|r| r.done) {
        return Ok(RunSummary::already_complete(&job, r, &counters, started));
    }
    if let (Some(_), Some(ledger)) = (&prepared.resume, job.ledger.as_mut()) {
        let width = results::header_for(&job.rows.columns.names).len();
        record_decided(ledger, &job.settings, width);
    }
    let before = counters.total();
    let check = prepared.resume.map(|r| feed::Check {
        sent_before: r.sent() + r.known.in_flight.len() as u64,
        known: r.known,
        results: job.settings.results.display().to_string(),
    });
    let files = (prepared.journal, prepared.writer);
    let ctx = Ctx::new(client, &job.settings, &stop, files, &counters);
    // Keys are hashed with the ledger's secret; without a ledger, not at all.
    let hasher = job.ledger.as_ref().map(|l| l.store.hasher().clone());
    let (notes_tx, keeper_thread) = keeper::start(ctx.journal.clone(), job.ledger, stop.clone())?;
    *ctx.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(notes_tx);

    let (to_dispatch, inbox) = dispatch::channel(dispatch::handoff_rows(
        job.settings.concurrency,
        job.settings.rate.is_none(),
    ));
    let limit = job.settings.limit;
    let notes = job.rows.reader.notes();
    let reading = feed::Reading {
        plan: job.plan,
        hasher,
        check,
        limit,
    };
    let reader = feed::start(job.rows, reading, to_dispatch, &ctx)?;
    let semaphore = Arc::new(Semaphore::new(job.settings.concurrency));
    let pool = ctx.pool.clone();
    let sizer = pool::start(&ctx.pace, &semaphore, &pool);
    let syncer = tokio::spawn(sync_results(ctx.writer.clone()));
    let undispatched = dispatch::dispatch(inbox, &ctx, &semaphore).await;

    // Wait for every in-flight row: each permit comes back once its outcome is written.
    for task in [sizer, syncer] {
        task.abort();
        let _ = task.await;
    }
    let _all = semaphore.acquire_many(pool.size() as u32).await;
    // Every worker is done, and the reader past the rows it records: the
    // keeper ends once its queue is closed.
    let read = feed::finished(reader, &stop).await;
    drop(ctx.keeper.lock().unwrap_or_else(|p| p.into_inner()).take());
    let kept = tokio::task::spawn_blocking(move || keeper_thread.join())
        .await
        .ok()
        .and_then(|k| k.ok())
        .ok_or_else(|| RunError::Thread("the journal writer failed".into()));
    let (dispatch_error, ledger) = match kept {
        Ok(k) => (k.journal.err().map(RunError::Journal), k.ledger),
        Err(e) => (Some(e), None),
    };
    let tally = ctx.writer.finish()?;
    if let Some(e) = dispatch_error {
        return Err(e);
    }
    let unsent = undispatched + ctx.abandoned.load(Ordering::Relaxed);
    let (ended, limited, unsent) = ending(stop.reason(), read, unsent);
    close_journal(&ctx.journal, &ended, limited)?;
    if let Some(mut l) = ledger.filter(|_| ended == Ended::Completed && !limited) {
        if let Err(e) = l.store.end_run(l.run) {
            tracing::warn!("cannot mark the run finished in the ledger: {e}");
        }
    }
    Ok(RunSummary {
        ended,
        limited,
        limit,
        unsent,
        resumed_unknown: ctx.resumed_unknown.load(Ordering::Relaxed),
        tally,
        rows_this_run: counters.total() - before,
        requests: counters.requests.load(Ordering::Relaxed),
        input: crate::input::shape::snapshot(&notes),
        ..RunSummary::counted(&counters, job.settings.results, started)
    })
}

impl RunSummary {
    /// The counts of every status, the time taken and the results file; no
    /// row or request of this invocation.
    fn counted(counters: &Counters, results: PathBuf, started: Instant) -> RunSummary {
        RunSummary {
            ended: Ended::Completed,
            counts: Status::ALL.iter().map(|s| (*s, counters.get(*s))).collect(),
            rows_this_run: 0,
            requests: 0,
            elapsed: started.elapsed(),
            tally: Tally::default(),
            results,
            limited: false,
            limit: None,
            unsent: 0,
            resumed_unknown: 0,
            already_complete: false,
            input: crate::input::Notes::default(),
        }
    }

    /// A run whose previous invocation had already completed: nothing to do.
    fn already_complete(
        job: &Job,
        r: &Resume,
        counters: &Counters,
        started: Instant,
    ) -> RunSummary {
        RunSummary {
            tally: r.tally.clone(),
            already_complete: true,
            ..RunSummary::counted(counters, job.settings.results.clone(), started)
        }
    }
}

/// How the run ended, whether `--limit` was reached, and the rows left
/// unsent (`unsent` so far: not dispatched, or abandoned by a stop).
fn ending(
    stopped: Option<Ended>,
    read: Result<ReadEnd, (String, u64)>,
    mut unsent: u64,
) -> (Ended, bool, u64) {
    let mut limited = false;
    let end = match (stopped, read) {
        (Some(reason), read) => {
            unsent += read.map(|r| r.unsent).unwrap_or_else(|(_, n)| n);
            reason
        }
        (None, Err((message, n))) => {
            unsent += n;
            Ended::InputError(message)
        }
        (None, Ok(read_end)) => {
            limited = read_end.limited;
            unsent += read_end.unsent;
            Ended::Completed
        }
    };
    (end, limited, unsent)
}

/// A run that completed marks its journal done; any other leaves it for `--resume`.
fn close_journal(journal: &Mutex<Journal>, end: &Ended, limited: bool) -> Result<(), JournalError> {
    let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
    if *end == Ended::Completed && !limited {
        j.done()
    } else {
        j.commit()
    }
}

/// Syncs the results file to disk once a second, on a blocking thread: a
/// slow disk never holds up requests. (Every line is handed to the
/// operating system as it is written; the end of the run syncs the rest.)
async fn sync_results(writer: Arc<results::Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let writer = writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.sync()).await;
    }
}
