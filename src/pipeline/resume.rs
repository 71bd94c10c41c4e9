//! Resume preparation: looks at what a previous run left (results file and
//! journal) and decides how this one starts: fresh, forced, or resumed from
//! the rows already decided. The fingerprint tells whether it is the same run.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{SendSettings, StartMode};
use crate::journal::{self, Journal, RowSet};
use crate::results::{self, Counters, Status, Tally};

use super::{Job, RunError};

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

/// The result of looking at what a previous run left.
pub(super) struct Prepared {
    pub(super) journal: Journal,
    pub(super) writer: results::Writer,
    pub(super) resume: Option<Resume>,
}

/// What a resumed run takes over from the previous one.
pub(super) struct Resume {
    /// Rows with a line in the results file.
    pub(super) decided: RowSet,
    /// Rows journaled as sending and not decided: they become `unknown`.
    pub(super) in_flight: RowSet,
    pub(super) counts: Vec<(Status, u64)>,
    pub(super) tally: Tally,
    /// The previous run had completed.
    pub(super) done: bool,
}

/// Opens the results file and the journal for a fresh, forced or resumed
/// run; a resumed run's counts are added to `counters`.
pub(super) fn prepare(job: &Job, counters: &Arc<Counters>) -> Result<Prepared, RunError> {
    let prepared = open(
        &job.settings,
        &results::header_for(&job.rows.columns.names),
        &job.fingerprint,
        &job.command,
        counters.clone(),
    )?;
    for (s, n) in prepared.resume.iter().flat_map(|r| &r.counts) {
        counters.add(*s, *n);
    }
    Ok(prepared)
}

fn open(
    settings: &SendSettings,
    header: &[String],
    fingerprint: &str,
    command: &str,
    counters: Arc<Counters>,
) -> Result<Prepared, RunError> {
    let results_path = settings.results.as_path();
    let journal_path = journal::path_for(results_path);
    let journal_path = journal_path.as_path();
    let results_exist = results_path.exists();
    let journal_exists = journal_path.exists();
    let new_header = journal::Header {
        digidesk_upload_journal: 1,
        fingerprint: fingerprint.to_string(),
        command: command.to_string(),
    };
    let fresh = || -> Result<Prepared, RunError> {
        let journal = Journal::create(journal_path, &new_header).map_err(RunError::StartJournal)?;
        let writer = results::Writer::create(results_path, header, counters.clone())
            .map_err(RunError::StartResults)?;
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
            Err(RunError::Exists {
                path: which.to_path_buf(),
            })
        }
        StartMode::Fresh => fresh(),
        StartMode::Resume if !results_exist => {
            tracing::info!(results = %results_path.display(), "no results file yet: starting a new run");
            fresh()
        }
        StartMode::Resume => {
            if !journal_exists {
                return Err(RunError::NoJournal {
                    results: results_path.to_path_buf(),
                    journal: journal_path.to_path_buf(),
                });
            }
            let (journal, state) = Journal::resume(journal_path).map_err(RunError::StartJournal)?;
            if state.header.fingerprint != fingerprint || state.header.command != command {
                return Err(RunError::OtherRun {
                    results: results_path.to_path_buf(),
                    command: state.header.command,
                });
            }
            let existing =
                results::read_existing(results_path, header).map_err(RunError::StartResults)?;
            // Rows with a line in the results file are decided, whatever the journal says.
            let in_flight = state.sent.minus(&existing.decided);
            let writer = results::Writer::append(
                results_path,
                existing.good_len,
                header.len(),
                counters.clone(),
            )
            .map_err(RunError::StartResults)?
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
