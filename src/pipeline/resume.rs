//! Resume preparation: looks at what a previous run left (results file and
//! journal) and decides how this one starts: fresh, forced, or resumed from
//! the rows already decided. The fingerprint tells whether it is the same run.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{SendSettings, StartMode};
use crate::journal::{self, Journal};
use crate::results::{self, Counters, Status, Tally};

use super::{Job, RunError};

/// A fingerprint of what a run is: the mapping, the input's header and
/// `retry`'s selection. The rows themselves are checked one by one as they
/// are read again (see `docs/design.md`), and the endpoint on its own.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
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
    /// What the previous runs decided or had in flight, to check the input against.
    pub(super) known: Known,
    pub(super) counts: Vec<(Status, u64)>,
    pub(super) tally: Tally,
    /// The previous run had completed.
    pub(super) done: bool,
}

/// The rows a previous run decided or had in flight, each with the
/// fingerprint of its content ([`results::row_hash`]).
pub(super) struct Known {
    /// Rows with a line in the results file.
    pub(super) decided: HashMap<u64, u64>,
    /// Rows journaled as sending and not decided: they become `unknown`.
    pub(super) in_flight: journal::SentRows,
}

impl Known {
    /// The highest row number known: the input is checked up to there.
    pub(super) fn last_row(&self) -> u64 {
        let decided = self.decided.keys().copied().max().unwrap_or(0);
        let in_flight = self.in_flight.keys().copied().max().unwrap_or(0);
        decided.max(in_flight)
    }
}

impl Resume {
    /// Rows of the results file whose request was sent.
    pub(super) fn sent(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(s, _)| !matches!(s, Status::Invalid | Status::Skipped))
            .map(|(_, n)| n)
            .sum()
    }
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
    let endpoint = settings.endpoint.as_str();
    let new_header = journal::Header {
        digidesk_upload_journal: journal::VERSION,
        fingerprint: fingerprint.to_string(),
        command: command.to_string(),
        endpoint: Some(endpoint.to_string()),
    };
    let fresh = || -> Result<Prepared, RunError> {
        let journal = Journal::create(journal_path, &new_header).map_err(RunError::StartJournal)?;
        let writer = results::Writer::create(
            results_path,
            header,
            settings.results_format,
            counters.clone(),
        )
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
        StartMode::Resume if !journal_exists && !results_exist => {
            tracing::info!(results = %results_path.display(), "no results file yet: starting a new run");
            fresh()
        }
        StartMode::Resume if !journal_exists => Err(RunError::NoJournal {
            results: results_path.to_path_buf(),
            journal: journal_path.to_path_buf(),
        }),
        StartMode::Resume => {
            let (journal, state) = Journal::resume(journal_path).map_err(RunError::StartJournal)?;
            if state.header.fingerprint != fingerprint || state.header.command != command {
                return Err(RunError::OtherRun {
                    results: results_path.to_path_buf(),
                    command: state.header.command,
                });
            }
            if state.header.endpoint.as_deref() != Some(endpoint) {
                return Err(RunError::OtherEndpoint {
                    results: results_path.to_path_buf(),
                    was: state.header.endpoint.unwrap_or_default(),
                    now: endpoint.to_string(),
                });
            }
            if !results_exist {
                if state.sent.is_empty() {
                    // Stopped before its first request: nothing can exist in DigiDesk.
                    drop(journal);
                    return fresh();
                }
                return Err(RunError::NoResults {
                    results: results_path.to_path_buf(),
                    journal: journal_path.to_path_buf(),
                    sent: state.sent.len() as u64,
                });
            }
            let existing = results::read_existing(results_path, header, settings.results_format)
                .map_err(RunError::StartResults)?;
            // Rows with a line in the results file are decided, whatever the journal says.
            let mut in_flight = state.sent;
            in_flight.retain(|row, _| !existing.decided.contains_key(row));
            let writer = results::Writer::append(
                results_path,
                existing.good_len,
                existing.header,
                header,
                settings.results_format,
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
                    known: Known {
                        decided: existing.decided,
                        in_flight,
                    },
                    counts,
                    tally: existing.tally,
                    done: state.done,
                }),
            })
        }
    }
}
