//! Feeding rows: the reader thread reads, maps and validates every row,
//! hands sendable ones to the dispatcher in small groups and writes the rows
//! it decides itself (invalid, skipped, unknown on resume).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

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

/// Starts the reader thread.
pub(super) fn start(
    rows: Rows,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    ctx: &Arc<Ctx>,
) -> Result<std::thread::JoinHandle<Result<ReadEnd, ReadError>>, RunError> {
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            read_rows(
                rows,
                plan,
                resume,
                limit,
                to_dispatch,
                &ctx.writer,
                ctx.stop.clone(),
                &ctx.resumed_unknown,
            )
        })
        .map_err(|e| RunError::Thread(format!("cannot start the reader: {e}")))
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
    let mut handoff: Vec<SendItem> = Vec::with_capacity(HANDOFF_BATCH);
    let mut read = read_all(
        rows,
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
    mut rows: Rows,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: &mpsc::Sender<Vec<SendItem>>,
    handoff: &mut Vec<SendItem>,
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
