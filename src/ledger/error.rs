//! What can go wrong with the ledger, each in words a user can act on. All of
//! these are met when the ledger is opened, before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::ErrorCode;

/// What to do when the ledger cannot be used, said once for every message.
const WAYS_OUT: &str = "give another place with --ledger FILE (or DIGIDESK_LEDGER), or --no-ledger to run without it (surveys sent then are not recorded, and earlier ones are not looked up)";

/// A ledger that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Neither `XDG_STATE_HOME` nor `HOME` says where the default ledger goes.
    #[error(
        "cannot tell where the ledger goes: neither XDG_STATE_HOME nor HOME is set; {WAYS_OUT}"
    )]
    NoHome,

    /// The ledger's directory cannot be created.
    #[error("cannot create the ledger's directory {}: {source}; {WAYS_OUT}", dir.display())]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file or its directory cannot be written (read-only file system,
    /// permissions).
    #[error("the ledger {} cannot be written: {reason}. It needs write access to the file and to its directory (for its -wal and -shm files); {WAYS_OUT}", path.display())]
    ReadOnly {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// No space left for the ledger.
    #[error("the disk holding the ledger {} is full ({source}); free some space, or {WAYS_OUT}", path.display())]
    DiskFull {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Not an SQLite database, a damaged one, or another program's.
    #[error("{} is not a ledger of digidesk-upload: {reason}. Move it aside and run `digidesk-upload ledger import` on your results files to rebuild the ledger (a new, empty ledger does not know what was sent before), or {WAYS_OUT}", path.display())]
    NotALedger {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<rusqlite::Error>,
    },

    /// Written by a newer version of this tool, in a format this one does not know.
    #[error("the ledger {} was written by a newer version of digidesk-upload (ledger format {found}; this version knows format {known} at most): upgrade digidesk-upload, or {WAYS_OUT}", path.display())]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// Another process held the ledger longer than the busy timeout.
    #[error("the ledger {} is locked by another process and stayed locked for {} s ({source}); wait for that process (another send, retry or ledger command) to finish, or {WAYS_OUT}", path.display(), waited.as_secs_f64())]
    Locked {
        path: PathBuf,
        waited: Duration,
        #[source]
        source: rusqlite::Error,
    },

    /// Anything else SQLite reports.
    #[error("cannot {action} the ledger {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl LedgerError {
    /// Sorts an SQLite error into the kinds a user can act on. `action` says
    /// what was being done ("open", "record outcomes in", ...).
    pub fn from_sqlite(
        path: impl Into<PathBuf>,
        action: &'static str,
        busy: Duration,
        e: rusqlite::Error,
    ) -> LedgerError {
        let path = path.into();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => LedgerError::Locked {
                path,
                waited: busy,
                source: e,
            },
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => LedgerError::ReadOnly {
                path,
                reason: e.to_string(),
                source: Some(Box::new(e)),
            },
            Some(ErrorCode::CannotOpen) => LedgerError::ReadOnly {
                path,
                reason: format!("{e} (is its directory read-only?)"),
                source: Some(Box::new(e)),
            },
            Some(ErrorCode::DiskFull) => LedgerError::DiskFull {
                path,
                source: Box::new(e),
            },
            Some(ErrorCode::NotADatabase) => LedgerError::NotALedger {
                path,
                reason: "it is not an SQLite database".into(),
                source: Some(e),
            },
            Some(ErrorCode::DatabaseCorrupt) => LedgerError::NotALedger {
                path,
                reason: "the database is damaged".into(),
                source: Some(e),
            },
            _ => LedgerError::Sqlite {
                path,
                action,
                source: e,
            },
        }
    }

    /// Sorts a file-system error met before SQLite opens the file.
    pub fn from_io(path: impl Into<PathBuf>, e: std::io::Error) -> LedgerError {
        let path = path.into();
        match e.kind() {
            std::io::ErrorKind::StorageFull => LedgerError::DiskFull {
                path,
                source: Box::new(e),
            },
            _ => LedgerError::ReadOnly {
                path,
                reason: e.to_string(),
                source: Some(Box::new(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_errors_become_kinds_a_user_can_act_on() {
        let busy = Duration::from_secs(5);
        let kind = |code| LedgerError::from_sqlite("/l.sqlite3", "open", busy, sqlite(code));
        let full = kind(rusqlite::ffi::SQLITE_FULL);
        assert!(matches!(full, LedgerError::DiskFull { .. }), "{full:?}");
        assert!(full.to_string().contains("is full"), "{full}");
        let ro = kind(rusqlite::ffi::SQLITE_READONLY);
        assert!(matches!(ro, LedgerError::ReadOnly { .. }), "{ro:?}");
        assert!(ro.to_string().contains("--no-ledger"), "{ro}");
        let locked = kind(rusqlite::ffi::SQLITE_BUSY);
        assert!(
            locked
                .to_string()
                .contains("locked by another process and stayed locked for 5 s"),
            "{locked}"
        );
        assert!(matches!(
            kind(rusqlite::ffi::SQLITE_NOTADB),
            LedgerError::NotALedger { .. }
        ));
        assert!(matches!(
            kind(rusqlite::ffi::SQLITE_CORRUPT),
            LedgerError::NotALedger { .. }
        ));
        assert!(matches!(
            LedgerError::from_io("/l", std::io::Error::from(std::io::ErrorKind::StorageFull)),
            LedgerError::DiskFull { .. }
        ));
    }

    #[test]
    fn a_ledger_error_names_the_file_and_keeps_its_source() {
        let e = LedgerError::from_sqlite(
            "/x/l.sqlite3",
            "open",
            Duration::from_secs(5),
            sqlite(rusqlite::ffi::SQLITE_FULL),
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("/x/l.sqlite3"), "{e}");
    }
}
