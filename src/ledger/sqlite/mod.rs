//! The ledger in one SQLite file: write-ahead logging (readers never wait for
//! a writer; a commit is one append and one sync), a busy timeout so that
//! processes take turns, and a format number so that an older version never
//! misreads a newer ledger.
//!
//! One row per survey in `survey`, keyed by scope and key hash, about 100
//! bytes on disk: `state` (in flight, created, unknown), when, which run
//! and row, the DigiDesk id, and the contact's hash; `contact` lists each
//! contact's keys for `contact_within`. Claims, outcomes and imports are
//! written to `log` first, a row per transaction, and moved into `survey`
//! by folds (`recent.rs` and `fold.rs` say why and how).
//!
//! This file opens the ledger and keeps its format; `claims` holds what a
//! run asks of it (claims, outcomes, lookups), `recent` the log and what a
//! connection knows of it, `fold` the moving of the log into `survey`,
//! `upkeep` what the `ledger` command does with it (import, statistics,
//! forgetting).

mod checkpoint;
mod claims;
mod fold;
mod recent;
mod upkeep;

use std::collections::HashMap;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    Claim, Earlier, Forgotten, Hasher, ImportCounts, Imported, LedgerError, Origin, Policy,
    Recorded, RunId, RunInfo, Scope, Stats, Store, Verdict,
};

/// The newest ledger format this version reads and writes. A ledger with a
/// higher number is refused, never misread.
/// Format 2 added `recent`, format 3 `contact`, format 4 `log` (in place of
/// `recent`); an older ledger is upgraded when opened.
pub const FORMAT: i64 = 4;

/// Marks an SQLite file as a ledger of digidesk-upload ("DGL1").
const APPLICATION_ID: i32 = 0x4447_4c31;

/// How long to wait for another process's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE scope (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    username TEXT NOT NULL,
    UNIQUE (endpoint, username)
);
CREATE TABLE run (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    command TEXT NOT NULL,
    results TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started INTEGER NOT NULL,
    ended INTEGER
);
CREATE TABLE survey (
    scope INTEGER NOT NULL,
    key BLOB NOT NULL,
    state INTEGER NOT NULL,
    at INTEGER NOT NULL,
    run INTEGER NOT NULL,
    row INTEGER NOT NULL,
    id INTEGER,
    contact BLOB,
    seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
";

/// Format 4: the `seq` of the log entry a row was folded from (see `fold.rs`).
const SURVEY_SEQ: &str = "ALTER TABLE survey ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;";

/// Format 1's index of contacts, replaced by [`CONTACT`] in format 3.
#[cfg(test)]
const SURVEY_CONTACT: &str =
    "CREATE INDEX survey_contact ON survey (scope, contact, at) WHERE contact IS NOT NULL;";

/// Added by format 3: which keys of `survey` each contact has had, for
/// `contact_within` (see `recent.rs`). Written in contact order by a fold,
/// instead of an index of `survey` written in key order: a page at a time,
/// not a page per row.
const CONTACT: &str = "
CREATE TABLE contact (
    scope INTEGER NOT NULL,
    contact BLOB NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (scope, contact, key)
) WITHOUT ROWID;
";

/// Format 2 to 3: the index of contacts becomes [`CONTACT`].
const CONTACT_FROM_INDEX: &str = "
INSERT INTO contact (scope, contact, key)
    SELECT scope, contact, key FROM survey WHERE contact IS NOT NULL
    ORDER BY scope, contact, key;
DROP INDEX IF EXISTS survey_contact;
";

/// Added by format 4: where claims, outcomes and imports are written,
/// a row per transaction (see `recent.rs`).
const LOG: &str = "
CREATE TABLE log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope INTEGER NOT NULL,
    run INTEGER NOT NULL,
    entries BLOB NOT NULL
);
";

/// Formats 2 and 3 wrote claims and outcomes to `recent`, a row each:
/// moved into `survey` and `contact` when opened, then dropped.
const RECENT_INTO_SURVEY: &str = "
INSERT INTO survey (scope, key, state, at, run, row, id, contact)
    SELECT scope, key, state, at, run, row, id, contact FROM recent ORDER BY scope, key
    ON CONFLICT (scope, key) DO UPDATE SET state = excluded.state, at = excluded.at,
        run = excluded.run, row = excluded.row, id = excluded.id, contact = excluded.contact;
INSERT INTO contact (scope, contact, key)
    SELECT scope, contact, key FROM recent WHERE contact IS NOT NULL
    ORDER BY scope, contact, key
    ON CONFLICT DO NOTHING;
DROP TABLE recent;
";

/// Format 2's `recent`, as it was (for the upgrade tests).
#[cfg(test)]
const RECENT: &str = "
CREATE TABLE recent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope INTEGER NOT NULL,
    key BLOB NOT NULL,
    state INTEGER NOT NULL,
    at INTEGER NOT NULL,
    run INTEGER NOT NULL,
    row INTEGER NOT NULL,
    id INTEGER,
    contact BLOB
);
";

/// Turns write-ahead logging on (it stays on in the file) and returns the
/// journal mode. Two processes opening a new ledger at once race to turn it
/// on, and SQLite answers the loser "busy" at once, without its busy
/// handler: that answer is retried here, up to the busy timeout.
fn write_ahead_logging(conn: &Connection, busy: Duration) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + busy;
    loop {
        let mode = conn
            .pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
                }
            });
        match mode {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The page size of a new ledger, in bytes.
const PAGE_SIZE: i64 = 4096;

/// The write-ahead log is copied into the file once it holds this many pages.
const CHECKPOINT_PAGES: i64 = 4096;

/// `survey.state`.
const IN_FLIGHT: i64 = 0;
const CREATED: i64 = 1;
const UNKNOWN: i64 = 2;

/// How to open a ledger.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long to wait for another process's write.
    pub busy_timeout: Duration,
    /// Most memory SQLite may keep pages in, in MiB (it grows only as
    /// pages are read).
    pub cache_mib: u32,
    /// Fold recent surveys into the keyed table once there are at least
    /// this many (more for a large ledger; see `recent.rs`).
    pub fold_rows: usize,
    /// Write a fold this many rows per transaction, instead of a few per
    /// row claimed (see `fold.rs`).
    pub fold_chunk: Option<usize>,
    /// Lookups after which a connection skips those of keys `survey`
    /// certainly does not hold (see `recent.rs`).
    pub filter_after: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: BUSY_TIMEOUT,
            // Enough for most claims to find their pages in memory; a send
            // with the ledger peaks at about 30 MB.
            cache_mib: 6,
            fold_rows: knob("DIGIDESK_LEDGER_FOLD_ROWS").unwrap_or(recent::FOLD_ROWS),
            fold_chunk: knob("DIGIDESK_LEDGER_FOLD_CHUNK"),
            filter_after: knob("DIGIDESK_LEDGER_FILTER_AFTER").unwrap_or(recent::FILTER_AFTER),
        }
    }
}

/// `DIGIDESK_LEDGER_FOLD_ROWS`: how many keys the log holds before a fold
/// starts; `DIGIDESK_LEDGER_FOLD_CHUNK`: how many rows a fold writes per
/// transaction; `DIGIDESK_LEDGER_FILTER_AFTER`: lookups before the filter
/// of `survey`'s keys is made (each at least 1). Knobs for tests, which
/// fold every few rows, a row or two at a time, with the filter from the
/// start, to put them under crashes and concurrency; see `docs/design.md`.
fn knob(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok().filter(|n| *n > 0)
}

/// A ledger in an SQLite file.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    busy: Duration,
    hasher: Hasher,
    /// Runs' origins read so far (a run's never change; forgetting clears them).
    origins: HashMap<i64, Option<Arc<Origin>>>,
    /// Fixed "now", in Unix seconds, for tests.
    clock: Option<i64>,
    /// Commits are synced (`synchronous = FULL`), as opened.
    synced_commits: bool,
    /// What this connection knows of the log.
    recent: recent::Recent,
    /// This connection's fold under way, if any.
    folding: Option<fold::Folding>,
    /// [`Options::fold_rows`].
    fold_min: usize,
    /// [`Options::fold_chunk`].
    fold_chunk: Option<usize>,
    /// Copies the log into the file (after `conn`: dropped last).
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// SQLite integers are signed: a `u64` row or id is stored as the same 64 bits.
fn int(n: u64) -> i64 {
    n as i64
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl Sqlite {
    /// Opens the ledger at `path`, creating it (and its directory) if need
    /// be. Every problem a user can meet shows here, before anything is
    /// sent: a read-only place, a full disk, a file that is not a ledger, a
    /// newer format, a lock held too long.
    pub fn open(path: &Path, opts: Options) -> Result<Sqlite, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| LedgerError::Directory {
                        dir: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        if path.is_dir() {
            return Err(LedgerError::NotALedger {
                path: path.to_path_buf(),
                reason: "it is a directory".into(),
                source: None,
            });
        }
        // Created readable by its owner only (SQLite would follow the umask).
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LedgerError::from_io(path, e)),
        }
        let busy = opts.busy_timeout;
        let fail = |action| move |e| LedgerError::from_sqlite(path, action, busy, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail("open"))?;
        conn.busy_timeout(busy).map_err(fail("open"))?;
        // Small pages, set before a new file's first write (an existing
        // file keeps its own): a claim or an outcome rewrites one page of
        // each B-tree it touches, and keys are random, so a commit writes
        // about a page per row to the write-ahead log.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(fail("open"))?;
        let mode = write_ahead_logging(&conn, busy).map_err(fail("open"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(ledger = %path.display(), mode, "the ledger's file system does not allow write-ahead logging: each run waits for the others' writes");
        }
        // The log is copied into the file by a thread of its own, every few
        // MiB (a page written many times is copied once); failing that, by
        // SQLite as it commits.
        let checkpointer = if mode.eq_ignore_ascii_case("wal") {
            checkpoint::Checkpointer::start(path, busy)
        } else {
            None
        };
        let autocheckpoint = if checkpointer.is_some() {
            0
        } else {
            CHECKPOINT_PAGES
        };
        conn.pragma_update(None, "wal_autocheckpoint", autocheckpoint)
            .map_err(fail("open"))?;
        // A fold writes a large transaction; the log it leaves is cut back
        // to this size once copied.
        conn.pragma_update(None, "journal_size_limit", CHECKPOINT_PAGES * PAGE_SIZE)
            .map_err(fail("open"))?;
        // A claim is on disk before its request leaves.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail("open"))?;
        // Pages read once stay decoded in SQLite's cache, up to this much.
        conn.pragma_update(None, "cache_size", -(opts.cache_mib as i64) * 1024)
            .map_err(fail("open"))?;
        let mut ledger = Sqlite {
            conn,
            path: path.to_path_buf(),
            busy,
            hasher: Hasher::new(b""),
            origins: HashMap::new(),
            clock: None,
            synced_commits: true,
            recent: recent::Recent::new(opts.fold_rows, opts.filter_after),
            folding: None,
            fold_min: opts.fold_rows,
            fold_chunk: opts.fold_chunk,
            checkpointer,
        };
        // A new ledger being set up by another process at this moment can
        // answer "busy" without waiting: tried again until the busy timeout.
        let deadline = std::time::Instant::now() + busy;
        let secret = loop {
            match ledger.prepare() {
                Err(LedgerError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => break other?,
            }
        };
        ledger.hasher = Hasher::new(&secret);
        ledger
            .recent
            .size_fold(&ledger.conn, ledger.fold_min)
            .map_err(fail("open"))?;
        Ok(ledger)
    }

    /// Creates the schema in a new file, or checks an existing one; returns
    /// the secret. Takes the write lock, so a ledger that cannot be written
    /// (or stays locked) fails here.
    fn prepare(&mut self) -> Result<Vec<u8>, LedgerError> {
        let path = self.path.clone();
        let not_ours = |reason: &str| LedgerError::NotALedger {
            path: path.clone(),
            reason: reason.to_string(),
            source: None,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| LedgerError::from_sqlite(&path, "open", self.busy, e))?;
        let fail = |e| LedgerError::from_sqlite(&path, "open", self.busy, e);
        let app: i32 = tx
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(fail)?;
        let format: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if app != 0 && app != APPLICATION_ID {
            return Err(not_ours("it is an SQLite database of another program"));
        }
        if format > FORMAT {
            return Err(LedgerError::Newer {
                path: path.clone(),
                found: format,
                known: FORMAT,
            });
        }
        if format == 0 {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(fail)?;
            if tables > 0 {
                return Err(not_ours("it is an SQLite database of another program"));
            }
            let mut secret = vec![0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            tx.execute_batch(SCHEMA).map_err(fail)?;
            tx.execute_batch(LOG).map_err(fail)?;
            tx.execute_batch(CONTACT).map_err(fail)?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('secret', ?1), ('created', ?2)",
                params![
                    secret,
                    self.clock.unwrap_or_else(|| unix(SystemTime::now()))
                ],
            )
            .map_err(fail)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(fail)?;
            tx.pragma_update(None, "user_version", FORMAT)
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
            return Ok(secret);
        }
        if app != APPLICATION_ID {
            return Err(not_ours("it is an SQLite database of another program"));
        }
        let secret: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM meta WHERE name = 'secret'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(fail)?;
        let secret = secret
            .filter(|s| s.len() >= 16)
            .ok_or_else(|| not_ours("it is damaged: its secret is missing"))?;
        if format < 3 {
            tx.execute_batch(CONTACT).map_err(fail)?;
            tx.execute_batch(CONTACT_FROM_INDEX).map_err(fail)?;
        }
        if (2..4).contains(&format) {
            tx.execute_batch(RECENT_INTO_SURVEY).map_err(fail)?;
        }
        if format < 4 {
            tx.execute_batch(SURVEY_SEQ).map_err(fail)?;
            tx.execute_batch(LOG).map_err(fail)?;
        }
        if format < FORMAT {
            tx.pragma_update(None, "user_version", FORMAT)
                .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(secret)
    }

    /// Fixes "now" (Unix seconds), for tests of windows and retention.
    #[cfg(test)]
    pub(crate) fn set_clock(&mut self, now: i64) {
        self.clock = Some(now);
    }

    fn now(&self) -> i64 {
        self.clock.unwrap_or_else(|| unix(SystemTime::now()))
    }

    /// After a commit (`large`: a fold's): what it added to `recent` is known; the log is
    /// copied once it is long.
    fn committed(&mut self, large: bool) {
        self.recent.committed();
        if let Some(c) = &mut self.checkpointer {
            c.after_commit(large);
        }
    }

    fn fail(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |e| LedgerError::from_sqlite(&self.path, action, self.busy, e)
    }

    /// The file's size, its write-ahead log included.
    fn bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.as_os_str().to_os_string();
        wal.push("-wal");
        size(&self.path) + size(Path::new(&wal))
    }
}

/// Each method is [`Store`]'s of the same purpose; its body stands in
/// `claims` or `upkeep`.
impl Store for Sqlite {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    fn begin_run(&mut self, scope: &Scope, info: &RunInfo) -> Result<RunId, LedgerError> {
        self.start_run(scope, info)
    }

    fn claim(
        &mut self,
        run: RunId,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError> {
        self.settle_all(run, policy, &[], claims)
    }

    fn record(&mut self, run: RunId, outcomes: &[Recorded]) -> Result<(), LedgerError> {
        // The policy only matters to claims.
        self.settle_all(run, Policy::send(None), outcomes, &[])
            .map(drop)
    }

    fn settle(
        &mut self,
        run: RunId,
        policy: Policy,
        outcomes: &[Recorded],
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError> {
        self.settle_all(run, policy, outcomes, claims)
    }

    fn tidy(&mut self) -> bool {
        self.tidy_some()
    }

    fn end_run(&mut self, run: RunId) -> Result<(), LedgerError> {
        self.finish_run(run)
    }

    fn in_flight(&mut self, run: RunId) -> Result<Vec<Claim>, LedgerError> {
        self.claims_in_flight(run)
    }

    fn lookup(
        &mut self,
        scope: &Scope,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Option<Earlier>>, LedgerError> {
        self.look_up(scope, policy, claims)
    }

    fn import(&mut self, run: RunId, rows: &[Imported]) -> Result<ImportCounts, LedgerError> {
        self.import_rows(run, rows)
    }

    fn stats(&mut self) -> Result<Stats, LedgerError> {
        self.count()
    }

    fn forget(&mut self, before: SystemTime) -> Result<Forgotten, LedgerError> {
        self.forget_before(before)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fold_tests;
