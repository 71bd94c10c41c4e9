//! The pipeline: a reader thread maps and validates rows, a dispatcher
//! journals sendable rows (one sync per group) and hands each to a worker
//! task, workers post with retries under a shared rate limit, and whoever
//! decides a row (a worker, or the reader for invalid and skipped rows)
//! writes its results line. A bounded channel and the concurrency permits
//! connect them, so a slow server slows reading instead of filling memory.
//!
//! ```text
//! reader ──sendable──▶ dispatcher ──spawn──▶ workers ──outcome──▶ results file
//!    └──────────── invalid / skipped / unknown-on-resume ──────────────▲
//! ```
//!
//! A row is in flight from its journal line (written and synced before its
//! request leaves) until its outcome is written; its concurrency permit
//! travels with it and is released once its results line is written, so at
//! most `--concurrency` rows are ever in flight.

mod dispatch;
mod feed;
pub mod pool;
pub mod resume;
mod stop;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::api::StopKind;
use crate::client::Client;
use crate::config::SendSettings;
use crate::exit::Fatal;
use crate::input::Rows;
use crate::journal::Journal;
use crate::mapping::Plan;
use crate::results::{self, Counters, Status, Tally};

use dispatch::Dispatcher;
use feed::ReadEnd;
use pool::Pool;
use resume::Prepared;
use worker::Ctx;

pub use resume::fingerprint;
pub use stop::Stop;
pub use worker::{
    backoff, BACKOFF_BASE, BACKOFF_CAP, BREAKER_FAILURES, BREAKER_WINDOW, DEFAULT_429_PAUSE,
};

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
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every row was read and decided (or `--limit` was reached).
    Completed,
    /// Stopped part-way for a reason the user must fix.
    Stopped(StopKind, String),
    /// Reading the input failed part-way.
    InputError(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub end: End,
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

impl Report {
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
    fields: csv::StringRecord,
    body: Bytes,
}

/// Runs a job to its end, posting with `client`. `stop` lets the caller interrupt it.
pub async fn run(
    job: Job,
    client: Client,
    stop: Stop,
    counters: Arc<Counters>,
) -> Result<Report, Fatal> {
    let started = Instant::now();
    let Job {
        command,
        rows,
        plan,
        settings,
        fingerprint,
        durable,
    } = job;
    let header = results::header_for(&rows.columns.names);
    let notes = rows.reader.notes();
    // Decide how to start: fresh, forced, or resumed.
    let Prepared {
        mut journal,
        writer,
        resume,
    } = resume::prepare(&settings, &header, &fingerprint, &command, counters.clone())
        // Nothing has been sent yet: a results file that cannot be made is bad usage.
        .map_err(|e| Fatal::usage(e.message))?;
    journal.set_sync(durable);
    if let Some(r) = &resume {
        for (s, n) in &r.counts {
            counters.add(*s, *n);
        }
        if r.done {
            return Ok(Report::already_complete(
                &counters,
                r.tally.clone(),
                settings.results,
                started,
            ));
        }
    }
    let before = counters.total();
    let writer = Arc::new(results::Shared::new(writer));
    let journal = Arc::new(Mutex::new(journal));
    let ctx = Arc::new(Ctx::new(
        client,
        &settings,
        stop.clone(),
        journal.clone(),
        writer.clone(),
        counters.clone(),
    ));

    let (to_dispatch, inbox) = dispatch::channel(settings.concurrency);
    let resumed_unknown = Arc::new(AtomicU64::new(0));
    let resume = resume.map(|r| (r.decided, r.in_flight));
    let reader = feed::start(
        rows,
        plan,
        resume,
        settings.limit,
        to_dispatch,
        writer.clone(),
        stop.clone(),
        resumed_unknown.clone(),
    )?;
    let semaphore = Arc::new(Semaphore::new(settings.concurrency));
    let pool = Arc::new(Pool::new(settings.concurrency, settings.max_concurrency));
    let sizer = tokio::spawn(pool::size_pool(
        ctx.clone(),
        semaphore.clone(),
        pool.clone(),
    ));
    let syncer = tokio::spawn(sync_results(writer.clone()));
    let dispatcher = Dispatcher::start(inbox, &ctx)?;
    let (undispatched, dispatch_error) = dispatcher.run(&ctx, &semaphore, &pool).await;

    // Wait for every in-flight row: each permit comes back once its outcome is written.
    sizer.abort();
    let _ = sizer.await;
    syncer.abort();
    let _ = syncer.await;
    let _all = semaphore.acquire_many(pool.size() as u32).await;
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(Fatal::stopped("the reader thread failed")));
    let abandoned = ctx.abandoned.load(Ordering::Relaxed);
    drop(ctx);
    let tally = writer.finish()?;
    if let Some(e) = dispatch_error {
        return Err(e);
    }
    let (end, limited, unsent) = ending(stop.reason(), read, undispatched + abandoned);
    close_journal(&journal, &end, limited)?;
    Ok(Report {
        end,
        counts: Status::ALL.iter().map(|s| (*s, counters.get(*s))).collect(),
        rows_this_run: counters.total() - before,
        requests: counters.requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        tally,
        results: settings.results,
        limited,
        unsent,
        resumed_unknown: resumed_unknown.load(Ordering::Relaxed),
        already_complete: false,
        input: crate::input::shape::snapshot(&notes),
    })
}

impl Report {
    /// The report of a run whose previous invocation had already completed.
    fn already_complete(
        counters: &Counters,
        tally: Tally,
        results: PathBuf,
        started: Instant,
    ) -> Report {
        Report {
            end: End::Completed,
            counts: Status::ALL.iter().map(|s| (*s, counters.get(*s))).collect(),
            rows_this_run: 0,
            requests: 0,
            elapsed: started.elapsed(),
            tally,
            results,
            limited: false,
            unsent: 0,
            resumed_unknown: 0,
            already_complete: true,
            input: crate::input::Notes::default(),
        }
    }
}

/// How the run ended, whether `--limit` was reached, and the rows left
/// unsent (`unsent` so far: not dispatched, or abandoned by a stop).
fn ending(stopped: Option<End>, read: Result<ReadEnd, Fatal>, mut unsent: u64) -> (End, bool, u64) {
    let mut limited = false;
    let end = match (stopped, read) {
        (Some(reason), read) => {
            unsent += read.map(|r| r.unsent).unwrap_or(0);
            reason
        }
        (None, Err(e)) => End::InputError(e.message),
        (None, Ok(read_end)) => {
            limited = read_end.limited;
            unsent += read_end.unsent;
            End::Completed
        }
    };
    (end, limited, unsent)
}

/// A run that completed marks its journal done; any other leaves it for `--resume`.
fn close_journal(journal: &Mutex<Journal>, end: &End, limited: bool) -> Result<(), Fatal> {
    let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
    if *end == End::Completed && !limited {
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
