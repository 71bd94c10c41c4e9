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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::api::{StopKind, Verdict};
use crate::client::{Attempt, Client};
use crate::config::{SendSettings, StartMode};
use crate::exit::Fatal;
use crate::journal::{self, Journal, RowSet};
use crate::mapping::{Decision, Plan};
use crate::pace::Pace;
use crate::reading::Reader;
use crate::results::{self, Counters, Outcome, Status, Tally};

/// Rows journaled with one sync, at most.
const MAX_BATCH: usize = 512;

/// The reader hands sendable rows to the dispatcher in groups of at most
/// this many (at once when the dispatcher has nothing queued).
const HANDOFF_BATCH: usize = 16;

/// Group commit: the dispatcher waits up to `GROUP_WAIT` to journal at least
/// a `1/GROUP_FRACTION` share of the pool with one sync, as long as the
/// rest of the pool is in flight.
const GROUP_FRACTION: usize = 2;
const GROUP_WAIT: Duration = Duration::from_millis(2);

/// The circuit breaker opens after this many consecutive transient failures...
pub const BREAKER_FAILURES: u64 = 50;
/// ...spread over at least this long without a single success.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(30);

/// Backoff between tries: full jitter over `BASE × 2^(try-1)`, capped.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Pause of the whole pool after a 429 without `Retry-After`.
pub const DEFAULT_429_PAUSE: Duration = Duration::from_secs(1);

/// Rows come from here: the input reader, the columns kept, and for `retry`
/// where the row numbers and statuses are.
pub struct Source {
    pub reader: Reader,
    /// Indexes of the input columns kept (all but `digidesk_*`); `None` = all.
    pub keep: Option<Vec<usize>>,
    /// The kept columns' names: the mapping's header and the results file's first columns.
    pub columns: Vec<String>,
    /// For `retry`: which rows to take and their original numbers.
    pub select: Option<Selection>,
    /// What the input is called in messages.
    pub name: String,
}

impl Source {
    /// The kept columns of a record (all of them when none is dropped).
    pub fn project(&self, fields: csv::StringRecord) -> csv::StringRecord {
        project(self.keep.as_deref(), fields)
    }
}

/// Keeps the `keep` columns of a record (all of them for `None`).
pub fn project(keep: Option<&[usize]>, fields: csv::StringRecord) -> csv::StringRecord {
    match keep {
        None => fields,
        Some(keep) => keep.iter().map(|&i| fields.get(i).unwrap_or("")).collect(),
    }
}

/// `retry`'s choice of rows from a results file.
#[derive(Debug, Clone)]
pub struct Selection {
    pub row_column: usize,
    pub status_column: usize,
    pub statuses: Vec<Status>,
}

impl Source {
    /// Builds a source over a reader: `digidesk_*` columns are dropped (they
    /// are never mapped, and the results file writes its own).
    pub fn new(
        reader: Reader,
        name: String,
        statuses: Option<Vec<Status>>,
    ) -> Result<Source, Fatal> {
        let headers = reader.headers().to_vec();
        let keep: Vec<usize> = (0..headers.len())
            .filter(|&i| !results::is_result_column(&headers[i]))
            .collect();
        let columns: Vec<String> = keep.iter().map(|&i| headers[i].clone()).collect();
        let select = match statuses {
            None => None,
            Some(statuses) => {
                let find = |name: &str| {
                    headers.iter().position(|h| h == name).ok_or_else(|| {
                        Fatal::usage(format!(
                            "{name} is not a results file of digidesk-upload: it has no {name:?} column (columns: {})",
                            headers.join(", ")
                        ))
                    })
                };
                Some(Selection {
                    row_column: find("digidesk_row")?,
                    status_column: find("digidesk_status")?,
                    statuses,
                })
            }
        };
        let keep = (keep.len() != headers.len()).then_some(keep);
        Ok(Source {
            reader,
            keep,
            columns,
            select,
            name,
        })
    }
}

/// One run of `send` or `retry`.
pub struct Job {
    /// `send` or `retry`, for the journal and messages.
    pub command: String,
    pub source: Source,
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

/// Stops a run from outside (signals) or inside (a 401): a soft stop ends
/// reading and new requests; a hard stop abandons requests still waiting
/// for their answer.
#[derive(Clone, Default)]
pub struct Stop {
    soft: CancellationToken,
    hard: CancellationToken,
    reason: Arc<Mutex<Option<End>>>,
}

impl Stop {
    /// Ctrl-C / SIGTERM: finish in-flight requests, send nothing new.
    pub fn interrupt(&self) {
        self.set(End::Interrupted);
    }

    /// In-flight requests stop waiting for answers (they become `unknown`).
    pub fn hard(&self) {
        self.soft.cancel();
        self.hard.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.soft.is_cancelled()
    }

    fn set(&self, end: End) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if reason.is_none() {
            *reason = Some(end);
        }
        self.soft.cancel();
    }

    fn reason(&self) -> Option<End> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A fingerprint of what a run sends: the mapping, the input's header and
/// first 64 KiB, the reading options and `retry`'s selection.
pub fn fingerprint(parts: &[&[u8]], input_head: Option<&Path>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    if let Some(path) = input_head {
        use std::io::Read;
        if let Ok(f) = std::fs::File::open(path) {
            let mut head = Vec::with_capacity(64 * 1024);
            if f.take(64 * 1024).read_to_end(&mut head).is_ok() {
                h.update(&head);
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

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
struct Ctx {
    client: Client,
    pace: Pace,
    breaker: Breaker,
    stop: Stop,
    journal: Arc<Mutex<Journal>>,
    writer: Arc<results::Shared>,
    counters: Arc<Counters>,
    max_attempts: u32,
    /// Answer latency, an exponentially weighted average in microseconds.
    latency_us: AtomicU64,
    /// Rows dropped by a stop before they were created (left for `--resume`).
    abandoned: Arc<AtomicU64>,
}

/// The size of the worker pool, which grows with observed latency.
struct Pool {
    size: AtomicU64,
    max: usize,
}

impl Pool {
    fn new(size: usize, max: usize) -> Pool {
        Pool {
            size: AtomicU64::new(size as u64),
            max: max.max(size),
        }
    }

    fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed) as usize
    }
}

/// How many requests must be in flight to hold `rate` at `latency`
/// (Little's law), with half again as headroom for jitter.
pub fn needed_concurrency(rate: f64, latency: Duration) -> usize {
    (rate * latency.as_secs_f64() * 1.5).ceil() as usize
}

/// Grows the pool when the observed latency needs more requests in flight
/// than it has, never past its cap. It never shrinks: the rate limit, not
/// the pool, decides how fast requests go.
async fn size_pool(ctx: Arc<Ctx>, semaphore: Arc<Semaphore>, pool: Arc<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(rate) = ctx.pace.current_rate() else {
            return;
        };
        let latency = Duration::from_micros(ctx.latency_us.load(Ordering::Relaxed));
        let want = needed_concurrency(rate, latency).min(pool.max);
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

/// The dispatcher's end of the reader's channel: groups of rows, taken one
/// row at a time.
struct Inbox {
    rx: mpsc::Receiver<Vec<SendItem>>,
    pending: std::collections::VecDeque<SendItem>,
}

impl Inbox {
    /// The next row, waiting for one. Cancel-safe.
    async fn recv(&mut self) -> Option<SendItem> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        let group = self.rx.recv().await?;
        self.pending.extend(group);
        self.pending.pop_front()
    }

    /// The next row if one is already here.
    fn try_recv(&mut self) -> Option<SendItem> {
        if self.pending.is_empty() {
            let group = self.rx.try_recv().ok()?;
            self.pending.extend(group);
        }
        self.pending.pop_front()
    }

    /// Takes no more rows; returns how many were handed over but not taken.
    fn close(&mut self) -> u64 {
        self.rx.close();
        let mut left = self.pending.len() as u64;
        self.pending.clear();
        while let Ok(group) = self.rx.try_recv() {
            left += group.len() as u64;
        }
        left
    }
}

/// A row ready to send.
struct SendItem {
    row: u64,
    fields: csv::StringRecord,
    body: Bytes,
}

/// Runs a job to its end. `stop` lets the caller interrupt it.
pub async fn run(job: Job, stop: Stop, counters: Arc<Counters>) -> Result<Report, Fatal> {
    let started = Instant::now();
    let Job {
        command,
        source,
        plan,
        settings,
        fingerprint,
        durable,
    } = job;
    let results_path = settings.results.clone();
    let journal_path = journal::path_for(&results_path);
    let results_header = results::header_for(&source.columns);

    // Decide how to start: fresh, forced, or resumed.
    let prepared = prepare(
        &settings,
        &results_path,
        &journal_path,
        &results_header,
        &fingerprint,
        &command,
        counters.clone(),
    )
    // Nothing has been sent yet: a results file that cannot be made is bad usage.
    .map_err(|e| Fatal::usage(e.message))?;
    let Prepared {
        mut journal,
        writer,
        resume,
    } = prepared;
    journal.set_sync(durable);
    if let Some(r) = &resume {
        for (s, n) in &r.counts {
            counters.add(*s, *n);
        }
        if r.done {
            return Ok(Report {
                end: End::Completed,
                counts: Status::ALL.iter().map(|s| (*s, counters.get(*s))).collect(),
                rows_this_run: 0,
                requests: 0,
                elapsed: started.elapsed(),
                tally: r.tally.clone(),
                results: results_path,
                limited: false,
                unsent: 0,
                resumed_unknown: 0,
                already_complete: true,
            });
        }
    }
    let before = counters.total();

    let client = Client::new(&crate::client::ClientConfig {
        endpoint: settings.endpoint.clone(),
        credentials: settings.credentials.clone(),
        timeout: settings.timeout,
        ca_cert_pem: settings.ca_cert_pem.clone(),
        pool_size: settings.max_concurrency,
    })?;

    let writer = Arc::new(results::Shared::new(writer));

    let (send_tx, send_rx) =
        mpsc::channel::<Vec<SendItem>>((settings.concurrency.max(64) / HANDOFF_BATCH).max(2));
    let mut send_rx = Inbox {
        rx: send_rx,
        pending: std::collections::VecDeque::new(),
    };
    let journal = Arc::new(Mutex::new(journal));
    let abandoned = Arc::new(AtomicU64::new(0));
    let ctx = Arc::new(Ctx {
        client,
        pace: Pace::new(settings.rate),
        breaker: Breaker::new(),
        stop: stop.clone(),
        journal: journal.clone(),
        writer: writer.clone(),
        counters: counters.clone(),
        max_attempts: settings.max_attempts,
        latency_us: AtomicU64::new(0),
        abandoned: abandoned.clone(),
    });

    let resumed_unknown = Arc::new(AtomicU64::new(0));
    let reader_thread = {
        let writer = writer.clone();
        let stop = stop.clone();
        let limit = settings.limit;
        let resumed_unknown = resumed_unknown.clone();
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || {
                read_rows(
                    source,
                    plan,
                    resume.map(|r| (r.decided, r.in_flight)),
                    limit,
                    send_tx,
                    &writer,
                    stop,
                    resumed_unknown,
                )
            })
            .map_err(|e| Fatal::stopped(format!("cannot start the reader: {e}")))?
    };

    // Dispatch: take a permit, then a row; journal a batch; spawn its workers.
    let semaphore = Arc::new(Semaphore::new(settings.concurrency));
    let pool = Arc::new(Pool::new(settings.concurrency, settings.max_concurrency));
    let sizer = tokio::spawn(size_pool(ctx.clone(), semaphore.clone(), pool.clone()));
    let syncer = tokio::spawn(sync_results(writer.clone()));
    let mut batch: Vec<(SendItem, OwnedSemaphorePermit)> = Vec::with_capacity(MAX_BATCH);
    // One group is synced while the next gathers.
    let (journal_tx, journal_rx) = mpsc::channel::<Vec<(SendItem, OwnedSemaphorePermit)>>(1);
    let journal_thread = {
        let (ctx, journal, stop) = (ctx.clone(), journal.clone(), stop.clone());
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || journal_groups(journal_rx, &journal, &ctx, &stop, &runtime))
            .map_err(|e| Fatal::stopped(format!("cannot start the journal writer: {e}")))?
    };
    let mut dispatch_error: Option<Fatal> = None;
    'dispatch: loop {
        let permit = tokio::select! {
            p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.soft.cancelled() => break,
        };
        let item = tokio::select! {
            i = send_rx.recv() => match i { Some(i) => i, None => break },
            _ = stop.soft.cancelled() => break,
        };
        batch.push((item, permit));
        while batch.len() < MAX_BATCH {
            let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                break;
            };
            match send_rx.try_recv() {
                Some(item) => batch.push((item, permit)),
                None => break,
            }
        }
        // Group commit: while enough rows are still in flight to keep the
        // server busy, gather a few more before paying for a sync.
        let group = (pool.size() / GROUP_FRACTION).clamp(1, MAX_BATCH);
        if batch.len() < group && semaphore.available_permits() + batch.len() < pool.size() {
            // One timer for the whole wait: each new timer wakes the driver.
            let deadline = tokio::time::sleep(GROUP_WAIT);
            tokio::pin!(deadline);
            while batch.len() < group {
                let permit = tokio::select! {
                    p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = &mut deadline => break,
                    _ = stop.soft.cancelled() => break,
                };
                let item = tokio::select! {
                    i = send_rx.recv() => match i { Some(i) => i, None => break },
                    _ = &mut deadline => break,
                    _ = stop.soft.cancelled() => break,
                };
                batch.push((item, permit));
            }
        }
        // The journal thread syncs this group (while the next one gathers
        // here) and then starts its workers.
        let group = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        if journal_tx.send(group).await.is_err() {
            break 'dispatch;
        }
    }
    drop(journal_tx);
    let journaled = tokio::task::spawn_blocking(move || journal_thread.join())
        .await
        .map_err(|_| Fatal::stopped("the journal thread failed"))
        .and_then(|j| j.unwrap_or_else(|_| Err(Fatal::stopped("the journal thread failed"))));
    if let Err(e) = journaled {
        dispatch_error = Some(e);
    }
    // Nothing more is dispatched: the reader sees its channel close, and
    // rows it had already handed over are counted as not sent.
    let undispatched = send_rx.close();
    drop(send_rx);

    // Wait for every in-flight row: each permit comes back once its outcome is written.
    sizer.abort();
    let _ = sizer.await;
    syncer.abort();
    let _ = syncer.await;
    let _all = semaphore.acquire_many(pool.size() as u32).await;
    let read_result = reader_thread
        .join()
        .unwrap_or_else(|_| Err(Fatal::stopped("the reader thread failed")));
    drop(ctx);
    let tally = writer.finish()?;
    if let Some(e) = dispatch_error {
        return Err(e);
    }

    let mut limited = false;
    let mut unsent = undispatched + abandoned.load(Ordering::Relaxed);
    let end = match (stop.reason(), read_result) {
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
    if end == End::Completed && !limited {
        let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
        j.done()?;
    } else {
        let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
        j.commit()?;
    }
    Ok(Report {
        end,
        counts: Status::ALL.iter().map(|s| (*s, counters.get(*s))).collect(),
        rows_this_run: counters.total() - before,
        requests: counters.requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        tally,
        results: results_path,
        limited,
        unsent,
        resumed_unknown: resumed_unknown.load(Ordering::Relaxed),
        already_complete: false,
    })
}

/// The result of looking at what a previous run left.
struct Prepared {
    journal: Journal,
    writer: results::Writer,
    resume: Option<Resume>,
}

struct Resume {
    decided: RowSet,
    in_flight: RowSet,
    counts: Vec<(Status, u64)>,
    tally: Tally,
    done: bool,
}

fn prepare(
    settings: &SendSettings,
    results_path: &Path,
    journal_path: &Path,
    header: &[String],
    fingerprint: &str,
    command: &str,
    counters: Arc<Counters>,
) -> Result<Prepared, Fatal> {
    let results_exist = results_path.exists();
    let journal_exists = journal_path.exists();
    let new_header = journal::Header {
        digidesk_upload_journal: 1,
        fingerprint: fingerprint.to_string(),
        command: command.to_string(),
    };
    let fresh = || -> Result<Prepared, Fatal> {
        let journal = Journal::create(journal_path, &new_header)?;
        let writer = results::Writer::create(results_path, header, counters.clone())?;
        Ok(Prepared {
            journal,
            writer,
            resume: None,
        })
    };
    match settings.mode {
        StartMode::Force => fresh(),
        StartMode::Fresh if results_exist || journal_exists => {
            let which = if results_exist {
                results_path
            } else {
                journal_path
            };
            Err(Fatal::usage(format!(
                "{} already exists: add --resume to continue the run that wrote it, or --force to start again and replace it (rows it lists as created would then be sent again)",
                which.display()
            )))
        }
        StartMode::Fresh => fresh(),
        StartMode::Resume if !results_exist => {
            tracing::info!(results = %results_path.display(), "no results file yet: starting a new run");
            fresh()
        }
        StartMode::Resume => {
            if !journal_exists {
                return Err(Fatal::usage(format!(
                    "cannot resume safely: {} exists but its journal {} does not, so the rows that were in flight cannot be told. Check DigiDesk, then use another --results file or --force",
                    results_path.display(),
                    journal_path.display()
                )));
            }
            let (journal, state) = Journal::resume(journal_path)?;
            if state.header.fingerprint != fingerprint || state.header.command != command {
                return Err(Fatal::usage(format!(
                    "--resume refused: {} belongs to a run of `{}` with a different input, mapping or selection. Resume with the same arguments, or choose another --results file (or --force to replace it)",
                    results_path.display(),
                    state.header.command
                )));
            }
            let existing = results::read_existing(results_path, header)?;
            // Rows with a line in the results file are decided, whatever the journal says.
            let in_flight = state.sent.minus(&existing.decided);
            let writer = results::Writer::append(
                results_path,
                existing.good_len,
                header.len(),
                counters.clone(),
            )?
            .with_tally(existing.tally.clone());
            let mut counts: Vec<(Status, u64)> =
                existing.counts.iter().map(|(s, n)| (*s, *n)).collect();
            counts.sort();
            Ok(Prepared {
                journal,
                writer,
                resume: Some(Resume {
                    decided: existing.decided,
                    in_flight,
                    counts,
                    tally: existing.tally,
                    done: state.done,
                }),
            })
        }
    }
}

/// How reading ended.
struct ReadEnd {
    /// `--limit` was reached.
    limited: bool,
    /// Rows read but left unsent because the run stopped or `--limit` was
    /// reached (counted to the end of the input, so the summary can say how many).
    unsent: u64,
}

/// The reader thread: reads, maps and validates every row; hands sendable
/// ones to the dispatcher in small groups and writes decided ones itself.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    source: Source,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    to_writer: &results::Shared,
    stop: Stop,
    resumed_unknown: Arc<AtomicU64>,
) -> Result<ReadEnd, Fatal> {
    let mut handoff: Vec<SendItem> = Vec::with_capacity(HANDOFF_BATCH);
    let mut read = read_all(
        source,
        plan,
        resume,
        limit,
        &to_dispatch,
        &mut handoff,
        to_writer,
        &stop,
        resumed_unknown,
    );
    // The last group, also after an input error (rows before it are sent,
    // as they would have been one by one); after a stop it is only counted.
    if !handoff.is_empty() {
        let n = handoff.len() as u64;
        if stop.is_stopping() || to_dispatch.blocking_send(handoff).is_err() {
            if let Ok(end) = &mut read {
                end.unsent += n;
            }
        }
    }
    read
}

#[allow(clippy::too_many_arguments)]
fn read_all(
    mut source: Source,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: &mpsc::Sender<Vec<SendItem>>,
    handoff: &mut Vec<SendItem>,
    to_writer: &results::Shared,
    stop: &Stop,
    resumed_unknown: Arc<AtomicU64>,
) -> Result<ReadEnd, Fatal> {
    let width = source.reader.headers().len();
    let mut sendable = 0u64;
    let mut body = Vec::with_capacity(512);
    let mut end = ReadEnd {
        limited: false,
        unsent: 0,
    };
    // Once the run stops (or reaches --limit), the rest is only counted.
    let mut only_count = false;
    while let Some(record) = source.reader.next_record()? {
        let Some(row) = row_of(&source, &record)? else {
            continue;
        };
        if resume.as_ref().is_some_and(|(done, _)| done.contains(row)) {
            continue;
        }
        if only_count || stop.is_stopping() {
            only_count = true;
            end.unsent += 1;
            continue;
        }
        let raw_width = record.fields.len();
        let fields = source.project(record.fields);
        let outcome = |status: Status, errors: Vec<String>| Outcome {
            row,
            fields: fields.clone(),
            status,
            id: None,
            http: None,
            attempts: 0,
            errors,
            permit: None,
        };
        let decided = if let Some((_, in_flight)) = &resume {
            if in_flight.contains(row) {
                resumed_unknown.fetch_add(1, Ordering::Relaxed);
                Some(outcome(
                    Status::Unknown,
                    vec!["in flight when an earlier run stopped: it may have been created; check DigiDesk before resending (retry --only unknown)".into()],
                ))
            } else {
                None
            }
        } else {
            None
        };
        let decided = match decided {
            Some(o) => o,
            None if raw_width != width => outcome(
                Status::Invalid,
                vec![format!(
                    "row has {raw_width} fields, the header has {width}"
                )],
            ),
            None => match plan.apply(&fields) {
                Decision::Send(req) => {
                    if limit.is_some_and(|l| sendable >= l) {
                        end.limited = true;
                        only_count = true;
                        end.unsent += 1;
                        continue;
                    }
                    sendable += 1;
                    body.clear();
                    req.write_json(&mut body);
                    handoff.push(SendItem {
                        row,
                        fields,
                        body: Bytes::copy_from_slice(&body),
                    });
                    // Hand over a group, or at once if the dispatcher has
                    // nothing queued.
                    if handoff.len() >= HANDOFF_BATCH
                        || to_dispatch.capacity() == to_dispatch.max_capacity()
                    {
                        let n = handoff.len() as u64;
                        if to_dispatch.blocking_send(std::mem::take(handoff)).is_err() {
                            only_count = true;
                            end.unsent += n;
                        }
                    }
                    continue;
                }
                Decision::Skip(reason) => outcome(Status::Skipped, vec![reason]),
                Decision::Invalid(reasons) => outcome(Status::Invalid, reasons),
            },
        };
        if !to_writer.record(decided) {
            // The results file failed: the run ends with that error.
            stop.set(End::Interrupted);
            only_count = true;
            end.unsent += 1;
        }
    }
    Ok(end)
}

/// The journal thread: writes and syncs each group's "sending" lines, then
/// starts the group's workers. A row's request never leaves before its line
/// is on disk. On a journal error the group is dropped unsent and the run
/// stops with that error.
fn journal_groups(
    mut groups: mpsc::Receiver<Vec<(SendItem, OwnedSemaphorePermit)>>,
    journal: &Mutex<Journal>,
    ctx: &Arc<Ctx>,
    stop: &Stop,
    runtime: &tokio::runtime::Handle,
) -> Result<(), Fatal> {
    while let Some(group) = groups.blocking_recv() {
        let journaled = {
            let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
            group
                .iter()
                .try_for_each(|(item, _)| j.sending(item.row))
                .and_then(|_| j.commit())
        };
        if let Err(e) = journaled {
            stop.set(End::Interrupted);
            return Err(e);
        }
        // One wake-up of the runtime per group: its workers are spawned
        // from inside it.
        let ctx = ctx.clone();
        runtime.spawn(async move {
            for (item, permit) in group {
                tokio::spawn(worker(ctx.clone(), item, permit));
            }
        });
    }
    Ok(())
}

/// The row number of a record, or `None` when `retry` does not select it.
fn row_of(source: &Source, record: &crate::reading::Record) -> Result<Option<u64>, Fatal> {
    let Some(sel) = &source.select else {
        return Ok(Some(record.row));
    };
    let status = record.fields.get(sel.status_column).and_then(Status::parse);
    if !status.is_some_and(|s| sel.statuses.contains(&s)) {
        return Ok(None);
    }
    record.fields.get(sel.row_column).and_then(|r| r.trim().parse().ok()).map(Some).ok_or_else(|| {
        Fatal::usage(format!(
            "{}, record {}: digidesk_row is not a row number; is this a results file of digidesk-upload?",
            source.name, record.row
        ))
    })
}

/// How a row's tries ended.
enum Fate {
    /// Decided: its outcome goes to the results file.
    Decided(Status, Option<u64>),
    /// Not created, and left for `--resume` (the run is stopping).
    Abandoned,
}

/// Sends one row with retries, and hands its outcome to the writer.
async fn worker(ctx: Arc<Ctx>, item: SendItem, permit: OwnedSemaphorePermit) {
    let SendItem { row, fields, body } = item;
    let mut errors: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut http: Option<u16> = None;
    let fate = tries(&ctx, row, &body, &mut errors, &mut attempts, &mut http).await;
    match fate {
        Fate::Decided(status, id) => {
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
        Fate::Abandoned => abandon(&ctx, row, permit),
    }
}

/// Tries one row until it is decided or the run stops.
async fn tries(
    ctx: &Ctx,
    row: u64,
    body: &Bytes,
    errors: &mut Vec<String>,
    attempts: &mut u32,
    http: &mut Option<u16>,
) -> Fate {
    loop {
        tokio::select! {
            _ = ctx.pace.ready() => {}
            _ = ctx.stop.soft.cancelled() => return Fate::Abandoned,
        }
        *attempts += 1;
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        // Bodies hold customer data: only at -vv.
        tracing::trace!(row, attempt = *attempts, body = %String::from_utf8_lossy(body), "sending");
        let sent_at = tokio::time::Instant::now();
        let attempt = tokio::select! {
            a = ctx.client.post(body.clone()) => { record_latency(&ctx.latency_us, sent_at.elapsed()); a }
            _ = ctx.stop.hard.cancelled() => {
                errors.push("interrupted while waiting for the answer: it may have been created; check DigiDesk before resending (retry --only unknown)".into());
                return Fate::Decided(Status::Unknown, None);
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
                        return Fate::Decided(Status::Created, Some(id));
                    }
                    Verdict::Rejected(messages) => {
                        ctx.breaker.success();
                        errors.extend(messages);
                        return Fate::Decided(Status::Rejected, None);
                    }
                    Verdict::Unknown(msg) => {
                        errors.push(msg);
                        return Fate::Decided(Status::Unknown, None);
                    }
                    Verdict::Stop(kind, msg) => {
                        ctx.stop.set(End::Stopped(kind, msg));
                        return Fate::Abandoned;
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
                return Fate::Decided(Status::Unknown, None);
            }
            Attempt::Tls(msg) => {
                ctx.stop.set(End::Stopped(StopKind::Tls, msg));
                return Fate::Abandoned;
            }
        };
        errors.push(format!("try {attempts}: {reason}"));
        if ctx.breaker.failure() {
            ctx.stop.set(End::Stopped(
                StopKind::ServiceDown,
                format!(
                    "the service kept failing: {BREAKER_FAILURES} tries in a row failed with transient errors over {}s without a success (last: {reason})",
                    BREAKER_WINDOW.as_secs()
                ),
            ));
            return Fate::Abandoned;
        }
        if *attempts >= ctx.max_attempts {
            return Fate::Decided(Status::Failed, None);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(*attempts, retry_after)) => {}
            _ = ctx.stop.soft.cancelled() => return Fate::Abandoned,
        }
    }
}

/// Folds one answer's latency into the running average (weight 1/16).
fn record_latency(avg_us: &AtomicU64, took: Duration) {
    let sample = took.as_micros().min(u128::from(u64::MAX)) as u64;
    let _ = avg_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample
        } else {
            old - old / 16 + sample / 16
        })
    });
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
        ctx.stop.set(End::Interrupted);
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
    fn pool_size_follows_littles_law() {
        assert_eq!(needed_concurrency(200.0, Duration::from_millis(250)), 75);
        assert_eq!(needed_concurrency(50.0, Duration::from_millis(350)), 27);
        assert_eq!(needed_concurrency(10.0, Duration::ZERO), 0);
        let avg = AtomicU64::new(0);
        record_latency(&avg, Duration::from_millis(100));
        assert_eq!(avg.load(Ordering::Relaxed), 100_000);
        for _ in 0..200 {
            record_latency(&avg, Duration::from_millis(300));
        }
        assert!((295_000..=300_000).contains(&avg.load(Ordering::Relaxed)));
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
