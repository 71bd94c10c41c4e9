//! What can end a run with an error: the results file or journal cannot be
//! used at the start (nothing sent yet), or fails part-way; or one of the
//! run's threads cannot start or fails.

use std::path::PathBuf;

use crate::journal::JournalError;
use crate::results::ResultsError;

/// An error of the pipeline; its underlying error is kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A fresh run found the results file (or its journal) of another run.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// `--resume` found a results file without its journal.
    #[error("cannot resume safely: {} exists but its journal {} does not, so the rows that were in flight cannot be told", results.display(), journal.display())]
    NoJournal { results: PathBuf, journal: PathBuf },
    /// `--resume` found the journal of a run with other arguments.
    #[error("--resume refused: {} belongs to a run of `{command}` with a different input, mapping or selection", results.display())]
    OtherRun { results: PathBuf, command: String },
    /// `--resume` to another endpoint than the run's.
    #[error("--resume refused: {} belongs to a run that sent to {was}, not to {now}", results.display())]
    OtherEndpoint {
        results: PathBuf,
        was: String,
        now: String,
    },
    /// `--resume` found a journal whose results file is gone.
    #[error("cannot resume safely: the results file {} is gone, but its journal {} says {sent} rows were sent, so which of them DigiDesk created cannot be told", results.display(), journal.display())]
    NoResults {
        results: PathBuf,
        journal: PathBuf,
        sent: u64,
    },
    /// Another process is running on the same results file.
    #[error("{0}")]
    Locked(String),
    /// The journal could not be opened at the start: nothing was sent.
    #[error(transparent)]
    StartJournal(JournalError),
    /// The results file could not be opened at the start: nothing was sent.
    #[error(transparent)]
    StartResults(ResultsError),
    /// The journal failed part-way.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The results file failed part-way.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// A thread of the run could not start, or failed.
    #[error("{0}")]
    Thread(String),
}
