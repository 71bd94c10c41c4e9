//! Feeding rows: the reader thread reads, maps and validates every row,
//! hands sendable ones to the dispatcher in small groups and writes the rows
//! it decides itself (invalid, skipped, unknown on resume).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::exit::Fatal;
use crate::input::{self, ReadError, Rows};
use crate::journal::RowSet;
use crate::mapping::{Decision, Plan};
use crate::results::{self, Outcome, Status};

use super::worker::Ctx;
use super::{Ended, RunError, SendItem, Stop, HANDOFF_BATCH};

/// How reading ended.
pub(super) struct ReadEnd {
    /// `--limit` was reached.
    pub(super) limited: bool,
    /// Rows read but left unsent because the run stopped or `--limit` was
    /// reached (counted to the end of the input, so the summary can say how many).
    pub(super) unsent: u64,
}

/// How reading ended, once the reader thread is done.
pub(super) type ReadDone = tokio::sync::oneshot::Receiver<Result<ReadEnd, ReadError>>;

/// Starts the reader thread.
pub(super) fn start(
    rows: Rows,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    ctx: &Arc<Ctx>,
) -> Result<ReadDone, RunError> {
    let ctx = ctx.clone();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    // Never joined: a run that stops does not wait for an input that stalls.
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            let read = read_rows(
                rows,
                plan,
                resume,
                limit,
                to_dispatch,
                &ctx.writer,
                ctx.stop.clone(),
                &ctx.resumed_unknown,
            );
            let _ = done_tx.send(read);
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
pub(super) async fn finished(mut done: ReadDone, stop: &Stop) -> Result<ReadEnd, String> {
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
        Ok(read) => read.map_err(|e| Fatal::from(e).message),
        Err(_) => Err("the reader thread failed".to_string()),
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
    stop: Stop,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SendItem>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
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
            return false;
        }
        true
    }
}

/// The reader thread: reads, maps and validates every row; hands sendable
/// ones to the dispatcher in small groups and writes decided ones itself.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    rows: Rows,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    to_writer: &results::Shared,
    stop: Stop,
    resumed_unknown: &AtomicU64,
) -> Result<ReadEnd, ReadError> {
    let handoff = Arc::new(Handoff {
        tx: to_dispatch,
        pending: Mutex::new(Vec::with_capacity(HANDOFF_BATCH)),
        dropped: AtomicU64::new(0),
        stop: stop.clone(),
    });
    let before_read = handoff.clone();
    rows.reader.before_read(move || before_read.flush());
    let mut read = read_all(
        rows,
        plan,
        resume,
        limit,
        &handoff,
        to_writer,
        &stop,
        resumed_unknown,
    );
    // The last group, also after an input error (rows before it are sent,
    // as they would have been one by one); after a stop it is only counted.
    handoff.flush();
    if let Ok(end) = &mut read {
        end.unsent += handoff.dropped.load(Ordering::Relaxed);
    }
    read
}

#[allow(clippy::too_many_arguments)]
fn read_all(
    mut rows: Rows,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    handoff: &Handoff,
    to_writer: &results::Shared,
    stop: &Stop,
    resumed_unknown: &AtomicU64,
) -> Result<ReadEnd, ReadError> {
    let mut sendable = 0u64;
    let mut body = Vec::with_capacity(512);
    let mut end = ReadEnd {
        limited: false,
        unsent: 0,
    };
    // Once the run stops (or reaches --limit), the rest is only counted.
    let mut only_count = false;
    while let Some(record) = rows.next_row()? {
        let row = record.row;
        if resume.as_ref().is_some_and(|(done, _)| done.contains(row)) {
            continue;
        }
        if only_count || stop.is_stopping() {
            only_count = true;
            end.unsent += 1;
            continue;
        }
        let decided = if resume
            .as_ref()
            .is_some_and(|(_, in_flight)| in_flight.contains(row))
        {
            resumed_unknown.fetch_add(1, Ordering::Relaxed);
            let fields = rows.columns.project(record.fields);
            outcome(row, fields, Status::Unknown, vec!["in flight when an earlier run stopped: it may have been created; check DigiDesk before resending (retry --only unknown)".into()])
        } else {
            match input::decide(&rows.columns, &plan, record.fields) {
                (fields, Decision::Send(req)) => {
                    if limit.is_some_and(|l| sendable >= l) {
                        end.limited = true;
                        only_count = true;
                        end.unsent += 1;
                        continue;
                    }
                    sendable += 1;
                    body.clear();
                    req.write_json(&mut body);
                    let item = SendItem {
                        row,
                        fields,
                        body: Bytes::copy_from_slice(&body),
                    };
                    if !handoff.push(item) {
                        // Counted in the handoff's dropped rows.
                        only_count = true;
                    }
                    continue;
                }
                (fields, Decision::Skip(reason)) => {
                    outcome(row, fields, Status::Skipped, vec![reason])
                }
                (fields, Decision::Invalid(reasons)) => {
                    outcome(row, fields, Status::Invalid, reasons)
                }
            }
        };
        if !to_writer.record(decided) {
            // The results file failed: the run ends with that error.
            stop.set(Ended::Interrupted);
            only_count = true;
            end.unsent += 1;
        }
    }
    Ok(end)
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
