//! Exit codes, as one enum so that every command ends with a code that scripts
//! can act on; and how each stage's error becomes one, with its hint.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every row `created` or `skipped` (for `check`: every row sendable or skipped).
    Success = 0,
    /// The run finished and some rows are `rejected`, `invalid`, `failed` or `unknown`.
    SomeRowsNotCreated = 1,
    /// Nothing was sent: bad usage, mapping, input, credentials missing,
    /// insecure endpoint, results file exists.
    Usage = 2,
    /// The run stopped part-way: 401/403, 404, TLS failure, the service down for good.
    Stopped = 3,
    /// Interrupted (Ctrl-C / SIGTERM) after a clean stop; `--resume` continues it.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that ends a command with a particular exit code. The message is
/// written for the person running the tool: what went wrong, where, what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub exit: Exit,
    pub message: String,
}

impl Fatal {
    /// Bad usage, mapping, input or configuration: nothing was sent (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Fatal {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// The run stopped part-way (exit 3).
    pub fn stopped(message: impl Into<String>) -> Self {
        Fatal {
            exit: Exit::Stopped,
            message: message.into(),
        }
    }
}

impl From<crate::ledger::LedgerError> for Fatal {
    /// A ledger that cannot be used stops the command before anything is
    /// sent: exit 2. (Once requests have left, a caller reports a ledger
    /// failure with [`Fatal::stopped`] instead.)
    fn from(e: crate::ledger::LedgerError) -> Self {
        Fatal::usage(e.to_string())
    }
}
/// A setting that cannot be used: nothing was sent (exit 2).
impl From<crate::config::ConfigError> for Fatal {
    fn from(e: crate::config::ConfigError) -> Self {
        Fatal::usage(e.to_string())
    }
}

/// A transport that cannot be set up is a usage error: nothing was sent.
impl From<crate::transport::TransportError> for Fatal {
    fn from(e: crate::transport::TransportError) -> Self {
        Fatal::usage(e.to_string())
    }
}

/// Reading the input: nothing was sent yet, so bad usage (exit 2).
impl From<crate::input::error::ReadError> for Fatal {
    fn from(e: crate::input::error::ReadError) -> Fatal {
        Fatal::usage(e.message())
    }
}

/// The journal: a file system failure stops the run (exit 3); a journal
/// that cannot be trusted is found before anything is sent (exit 2).
impl From<crate::journal::JournalError> for Fatal {
    fn from(e: crate::journal::JournalError) -> Fatal {
        use crate::journal::JournalError;
        match &e {
            JournalError::Io { .. } => Fatal::stopped(e.to_string()),
            JournalError::NotAJournal { .. } => {
                Fatal::usage(format!("{e}; move it away or use --force"))
            }
            JournalError::Empty { .. } => Fatal::usage(format!("{e}; start again with --force")),
            JournalError::Damaged { .. } => Fatal::usage(format!(
                "{e}. Check DigiDesk, then start again with --force"
            )),
        }
    }
}

/// The results file: a file system failure stops the run (exit 3); one
/// written for another input is found before anything is sent (exit 2).
impl From<crate::results::ResultsError> for Fatal {
    fn from(e: crate::results::ResultsError) -> Fatal {
        use crate::results::ResultsError;
        match &e {
            ResultsError::Io { .. } | ResultsError::Write { .. } => Fatal::stopped(e.to_string()),
            ResultsError::Damaged { .. } => Fatal::usage(format!(
                "{e}. It cannot be resumed safely: restore it from a copy, or correct that line by hand (never delete a line with a digidesk_id: it is the only record of that survey), then --resume again"
            )),
            ResultsError::OtherColumns { .. } => Fatal::usage(format!(
                "{e}; use another --results file, or --force to replace it"
            )),
        }
    }
}

/// A run: whatever stops it before anything is sent is bad usage (exit 2);
/// a failure part-way stops it (exit 3).
impl From<crate::pipeline::error::RunError> for Fatal {
    fn from(e: crate::pipeline::error::RunError) -> Fatal {
        use crate::pipeline::error::RunError;
        match e {
            RunError::Exists { .. } => Fatal::usage(format!(
                "{e}: add --resume to continue the run that wrote it, or --force to start again and replace it (rows it lists as created would then be sent again)"
            )),
            RunError::NoJournal { .. } => Fatal::usage(format!(
                "{e}. Check DigiDesk, then use another --results file or --force"
            )),
            RunError::OtherRun { .. } => Fatal::usage(format!(
                "{e}. Resume with the same arguments, or choose another --results file (or --force to replace it)"
            )),
            RunError::OtherEndpoint { .. } => Fatal::usage(format!(
                "{e}. Resume with the endpoint it sent to, or choose another --results file"
            )),
            RunError::NoResults { .. } => Fatal::usage(format!(
                "{e}. Restore the results file if you can; otherwise check DigiDesk, then use another --results file (or --force, which sends every row again)"
            )),
            RunError::Locked(_) => Fatal::usage(e.to_string()),
            RunError::StartJournal(e) => Fatal::usage(Fatal::from(e).message),
            RunError::StartResults(e) => Fatal::usage(Fatal::from(e).message),
            RunError::Journal(e) => Fatal::from(e),
            RunError::Results(e) => Fatal::from(e),
            RunError::Thread(message) => Fatal::stopped(message),
        }
    }
}

/// A mapping that cannot be used: nothing was sent (exit 2).
impl From<crate::mapping::MappingError> for Fatal {
    fn from(e: crate::mapping::MappingError) -> Self {
        Fatal::usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ledger_that_cannot_be_used_is_exit_2() {
        let e = crate::ledger::LedgerError::from_sqlite(
            "/x/l.sqlite3",
            "open",
            Duration::from_secs(5),
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        );
        let fatal = Fatal::from(e);
        assert_eq!(fatal.exit, Exit::Usage);
        assert!(fatal.message.contains("/x/l.sqlite3"), "{}", fatal.message);
    }

    #[test]
    fn a_results_file_of_other_columns_names_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, "x,y\n1,2\n").unwrap();
        let e = crate::results::read_existing(
            &p,
            &crate::results::header_for(&["A".into()]),
            crate::results::Format::default(),
        )
        .unwrap_err();
        let fatal = Fatal::from(e);
        assert_eq!(fatal.exit, Exit::Usage);
        assert!(fatal.message.contains("--force"), "{}", fatal.message);
    }
}
