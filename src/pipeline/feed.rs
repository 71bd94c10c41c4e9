//! Feeding rows: the reader thread reads, maps and validates every row,
//! hands sendable ones to the dispatcher in small groups and writes the rows
//! it decides itself (invalid, skipped, unknown on resume).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::exit::Fatal;
use crate::journal::RowSet;
use crate::mapping::{Mapped, Plan};
use crate::results::{self, Outcome, Status};

use super::{End, SendItem, Source, Stop, HANDOFF_BATCH};

/// How reading ended.
pub(super) struct ReadEnd {
    /// `--limit` was reached.
    pub(super) limited: bool,
    /// Rows read but left unsent because the run stopped or `--limit` was
    /// reached (counted to the end of the input, so the summary can say how many).
    pub(super) unsent: u64,
}

/// Starts the reader thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    source: Source,
    plan: Plan,
    resume: Option<(RowSet, RowSet)>,
    limit: Option<u64>,
    to_dispatch: mpsc::Sender<Vec<SendItem>>,
    writer: Arc<results::Shared>,
    stop: Stop,
    resumed_unknown: Arc<AtomicU64>,
) -> Result<std::thread::JoinHandle<Result<ReadEnd, Fatal>>, Fatal> {
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            read_rows(
                source,
                plan,
                resume,
                limit,
                to_dispatch,
                &writer,
                stop,
                resumed_unknown,
            )
        })
        .map_err(|e| Fatal::stopped(format!("cannot start the reader: {e}")))
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
                Mapped::Send(req) => {
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
                Mapped::Skip(reason) => outcome(Status::Skipped, vec![reason]),
                Mapped::Invalid(reasons) => outcome(Status::Invalid, reasons),
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

/// The row number of a record, or `None` when `retry` does not select it.
fn row_of(source: &Source, record: &crate::input::read::Record) -> Result<Option<u64>, Fatal> {
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
