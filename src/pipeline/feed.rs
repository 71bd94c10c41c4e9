//! Feeding rows: the reader thread reads, maps and validates every row,
//! hands sendable ones to the dispatcher in small groups and writes the rows
//! it decides itself (invalid, skipped, unknown on resume).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::input::{self, ReadError, Rows};
use crate::ledger::{self, Claim, Hasher, Recorded};
use crate::mapping::{Decision, Plan, Verdict};
use crate::results::{self, Outcome, Status};

use super::ctx::Ctx;
use super::keeper::Note;
use super::resume::Known;
use super::{Ended, RunError, SendItem, Stop, HANDOFF_BATCH};

/// How reading ended.
pub(super) struct ReadEnd {
    /// `--limit` was reached.
    pub(super) limited: bool,
    /// Rows read but left unsent because the run stopped or `--limit` was
    /// reached (counted to the end of the input, so the summary can say how many).
    pub(super) unsent: u64,
}

/// Reading failed part-way: the error, and how many rows were left unsent
/// (the row that could not be read and those after it, counted as far as
/// the input can still be read).
pub(super) struct ReadFailure {
    pub(super) error: ReadError,
    pub(super) unsent: u64,
}

/// What the reader checks a resumed run's input against.
pub(super) struct Check {
    pub(super) known: Known,
    /// Rows the earlier runs sent (so `--limit` counts the whole run).
    pub(super) sent_before: u64,
    /// The results file, for messages.
    pub(super) results: String,
}

/// What the reader needs besides the rows.
pub(super) struct Reading {
    pub(super) plan: Plan,
    /// Hashes survey keys for the ledger (none without one).
    pub(super) hasher: Option<Hasher>,
    /// A resumed run's rows, to check the input against.
    pub(super) check: Option<Check>,
    pub(super) limit: Option<u64>,
}

/// Rows decided before the last known row is checked are held back, at most
/// this many: a changed input is found before anything is sent.
const HOLD_MAX: usize = 10_000;

/// How reading ended, once the reader thread is done.
pub(super) type ReadDone = tokio::sync::oneshot::Receiver<Result<ReadEnd, ReadFailure>>;

/// Starts the reader thread.
pub(super) fn start(
    rows: Rows,
    reading: Reading,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    ctx: &Arc<Ctx>,
) -> Result<ReadDone, RunError> {
    let ctx = ctx.clone();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    // Never joined: a run that stops does not wait for an input that stalls.
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            let handoff = Arc::new(Handoff {
                tx: to_dispatch,
                pending: Mutex::new(Vec::with_capacity(HANDOFF_BATCH)),
                dropped: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                stop: ctx.stop.clone(),
            });
            // Rows already read go on before every read that may wait.
            let before_read = handoff.clone();
            rows.reader.before_read(move || before_read.flush());
            let mut feed = Feed {
                handoff,
                held: Vec::new(),
                to_writer: &ctx.writer,
                stop: ctx.stop.clone(),
                end: ReadEnd {
                    limited: false,
                    unsent: 0,
                },
                only_count: false,
            };
            let read = feed.read_all(rows, reading, &ctx);
            let _ = done_tx.send(feed.finish(read));
        })
        .map_err(|e| RunError::Thread(format!("cannot start the reader: {e}")))?;
    Ok(done)
}

/// After a stop, how long the reader may take to count the rest of the
/// input; an input that stalls (stdin) is not waited for.
const READER_AFTER_STOP: Duration = Duration::from_secs(2);

/// How reading ended: waits for the reader, but after a stop only for
/// [`READER_AFTER_STOP`] (rows it had not counted by then are not in the
/// summary's count of rows not sent).
pub(super) async fn finished(mut done: ReadDone, stop: &Stop) -> Result<ReadEnd, (String, u64)> {
    let read = tokio::select! {
        read = &mut done => read,
        _ = stop.soft.cancelled() => match tokio::time::timeout(READER_AFTER_STOP, done).await {
            Ok(read) => read,
            Err(_) => {
                tracing::warn!("the input is still being read: not waiting for its end");
                return Ok(ReadEnd { limited: false, unsent: 0 });
            }
        },
    };
    match read {
        Ok(read) => read.map_err(|f| (f.error.message(), f.unsent)),
        Err(_) => Err(("the reader thread failed".to_string(), 0)),
    }
}

/// Rows read and not yet handed to the dispatcher: handed over in groups,
/// at once when the dispatcher has nothing queued, and before every read of
/// the input that may wait (a stalled stdin never holds back rows already read).
struct Handoff {
    tx: mpsc::Sender<Vec<SendItem>>,
    pending: Mutex<Vec<SendItem>>,
    /// Rows that were not handed over because the run stopped.
    dropped: AtomicU64,
    /// The dispatcher takes no more rows.
    closed: AtomicBool,
    stop: Stop,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SendItem>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Queues a row, handing over the group when it is full or the
    /// dispatcher is idle. False once the dispatcher takes no more.
    fn push(&self, item: SendItem) -> bool {
        let mut pending = self.lock();
        pending.push(item);
        if pending.len() >= HANDOFF_BATCH || self.tx.capacity() == self.tx.max_capacity() {
            let group = std::mem::take(&mut *pending);
            drop(pending);
            return self.send(group);
        }
        true
    }

    /// Hands over whatever is queued.
    fn flush(&self) {
        let group = std::mem::take(&mut *self.lock());
        if !group.is_empty() {
            self.send(group);
        }
    }

    fn send(&self, group: Vec<SendItem>) -> bool {
        let n = group.len() as u64;
        if self.stop.is_stopping() || self.tx.blocking_send(group).is_err() {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.closed.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A row decided by the reader, on its way to the dispatcher or the results file.
enum Decided {
    Send(SendItem),
    Write(Outcome),
}

/// The reader's outlets: the dispatcher (in small groups) and the results file.
struct Feed<'a> {
    handoff: Arc<Handoff>,
    /// Rows decided while earlier rows of a resumed run are still to be checked.
    held: Vec<Decided>,
    to_writer: &'a results::Shared,
    stop: Stop,
    end: ReadEnd,
    /// Once the run stops (or reaches --limit), the rest is only counted.
    only_count: bool,
}

impl Feed<'_> {
    /// Hands over the last group, also after an input error (rows before it
    /// are sent, as they would have been one by one); after a stop it is
    /// only counted.
    fn finish(mut self, read: Result<(), ReadFailure>) -> Result<ReadEnd, ReadFailure> {
        let stopping = self.stop.is_stopping();
        if stopping {
            self.end.unsent += self.held.len() as u64;
            self.held.clear();
        } else {
            self.release();
        }
        self.handoff.flush();
        self.end.unsent += self.handoff.dropped.load(Ordering::Relaxed);
        match read {
            Ok(()) => Ok(self.end),
            Err(mut failure) => {
                failure.unsent += self.end.unsent;
                Err(failure)
            }
        }
    }

    /// Sends a decided row on, or holds it back while `hold`.
    fn emit(&mut self, decided: Decided, hold: bool) {
        if hold && self.held.len() < HOLD_MAX {
            self.held.push(decided);
            return;
        }
        self.release();
        self.pass(decided);
    }

    /// Sends on the rows held back.
    fn release(&mut self) {
        for decided in std::mem::take(&mut self.held) {
            self.pass(decided);
        }
    }

    fn pass(&mut self, decided: Decided) {
        match decided {
            Decided::Send(item) => {
                if self.handoff.is_closed() || self.stop.is_stopping() {
                    self.end.unsent += 1;
                    return;
                }
                if !self.handoff.push(item) {
                    // Counted in the handoff's dropped rows.
                    self.only_count = true;
                }
            }
            Decided::Write(outcome) => {
                if self.handoff.is_closed() || self.stop.is_stopping() {
                    self.end.unsent += 1;
                } else if !self.to_writer.record(outcome) {
                    // The results file failed: the run ends with that error.
                    self.stop.set(Ended::Interrupted);
                    self.only_count = true;
                    self.end.unsent += 1;
                }
            }
        }
    }

    /// Reads, maps and validates every row; checks a resumed run's rows
    /// against what the earlier runs recorded.
    fn read_all(&mut self, mut rows: Rows, reading: Reading, ctx: &Ctx) -> Result<(), ReadFailure> {
        let Reading {
            plan,
            hasher,
            check,
            limit,
        } = reading;
        let mut sendable = check.as_ref().map_or(0, |c| c.sent_before);
        let mut body = Vec::with_capacity(512);
        // One request, overwritten row after row: almost nothing allocated per row.
        let mut request = crate::request::SurveyRequest::default();
        let width = rows.columns.names.len();
        let check_until = check.as_ref().map_or(0, |c| c.known.last_row());
        let mut last_read = 0;
        loop {
            let record = match rows.next_row() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(error) => {
                    let done = check.as_ref().map(|c| &c.known.decided);
                    let unsent = 1 + count_rest(&mut rows, done);
                    return Err(ReadFailure { error, unsent });
                }
            };
            let row = record.row;
            last_read = last_read.max(row);
            if self.stop.is_stopping() {
                self.only_count = true;
            }
            let hold = row < check_until;
            let mut in_flight = None;
            if let Some(c) = &check {
                if let Some(expected) = c.known.decided.get(&row) {
                    if !self.only_count {
                        let fields = rows.columns.project(record.fields);
                        if results::row_hash(&fields, width) != *expected {
                            return self.changed(changed(&rows.name, row, &c.results, "records"));
                        }
                        if !hold {
                            self.release();
                        }
                    }
                    continue;
                }
                in_flight = c.known.in_flight.get(&row);
            }
            if self.only_count {
                self.end.unsent += 1;
                continue;
            }
            let decided = if let Some(expected) = in_flight {
                let raw = record.fields.clone();
                let fields = rows.columns.project(record.fields);
                if expected.is_some_and(|h| results::row_hash(&fields, width) != h) {
                    let results = &check.as_ref().map_or("", |c| c.results.as_str());
                    let what = "was sending when an earlier run stopped (its journal says so)";
                    return self.changed(changed(&rows.name, row, results, what));
                }
                ctx.resumed_unknown.fetch_add(1, Ordering::Relaxed);
                // The ledger holds its key in flight: now it is `unknown`.
                let decided = || input::decide(&rows.columns, &plan, raw, &record.meta);
                if let Some((hasher, (projected, Decision::Send(req)))) =
                    hasher.as_ref().map(|h| (h, decided()))
                {
                    body.clear();
                    req.write_json(&mut body);
                    let claim = ledger::claim_for(hasher, &plan, row, &projected, &req, &body);
                    ctx.tell(Note::Outcome(Recorded {
                        row,
                        key: claim.key,
                        contact: claim.contact,
                        outcome: ledger::Outcome::Unknown,
                    }));
                }
                Decided::Write(outcome(row, fields, Status::Unknown, vec!["in flight when an earlier run stopped: it may have been created; check DigiDesk before resending (retry --only unknown)".into()]))
            } else {
                match input::decide_into(
                    &rows.columns,
                    &plan,
                    record.fields,
                    &record.meta,
                    &mut request,
                ) {
                    (fields, Verdict::Send) => {
                        let req = &request;
                        if limit.is_some_and(|l| sendable >= l) {
                            self.end.limited = true;
                            self.only_count = true;
                            self.end.unsent += 1;
                            continue;
                        }
                        sendable += 1;
                        body.clear();
                        req.write_json(&mut body);
                        Decided::Send(SendItem {
                            row,
                            hash: results::row_hash(&fields, width),
                            claim: match &hasher {
                                Some(h) => ledger::claim_for(h, &plan, row, &fields, req, &body),
                                None => Claim::unhashed(row),
                            },
                            fields,
                            body: Bytes::copy_from_slice(&body),
                        })
                    }
                    (fields, Verdict::Skip(reason)) => {
                        Decided::Write(outcome(row, fields, Status::Skipped, vec![reason]))
                    }
                    (fields, Verdict::Invalid(reasons)) => {
                        Decided::Write(outcome(row, fields, Status::Invalid, reasons))
                    }
                }
            };
            self.emit(decided, hold);
        }
        if let Some(c) = &check {
            if check_until > last_read {
                let message = format!(
                    "{} ends at row {last_read}, but the results file {} records row {check_until}: it is not the input this run was started with. Resume with that input, or start a new run with another --results file",
                    rows.name, c.results
                );
                return self.changed(message);
            }
        }
        Ok(())
    }

    /// The input is not the one the run was started with: the run stops,
    /// and what was held back is not sent.
    fn changed(&mut self, message: String) -> Result<(), ReadFailure> {
        self.stop.set(Ended::InputChanged(message));
        self.end.unsent += self.held.len() as u64;
        self.held.clear();
        self.only_count = true;
        Ok(())
    }
}

/// The message for a row that is not the one an earlier run decided.
fn changed(input: &str, row: u64, results: &str, what: &str) -> String {
    format!(
        "row {row} of {input} is not the row {row} that {results} {what}: the input changed since the run started. Resume with the input the run was started with, or start a new run with another --results file"
    )
}

/// The rows after a reading error, not yet decided: counted as far as the
/// input can be read (a row whose text cannot be decoded is still a row).
fn count_rest(rows: &mut Rows, done: Option<&HashMap<u64, u64>>) -> u64 {
    let mut n = 0;
    loop {
        match rows.next_row() {
            Ok(Some(r)) if done.is_some_and(|d| d.contains_key(&r.row)) => {}
            Ok(Some(_)) | Err(ReadError::InvalidText { .. }) => n += 1,
            Ok(None) | Err(_) => return n,
        }
    }
}

/// The outcome of a row decided without a request.
fn outcome(row: u64, fields: csv::StringRecord, status: Status, errors: Vec<String>) -> Outcome {
    Outcome {
        row,
        fields,
        status,
        id: None,
        http: None,
        attempts: 0,
        errors,
        permit: None,
    }
}
