//! The ledger in one SQLite file: write-ahead logging (readers never wait for
//! a writer; a commit is one append and one sync), a busy timeout so that
//! processes take turns, and a format number so that an older version never
//! misreads a newer ledger.
//!
//! One row per survey, keyed by scope and key hash, about 100 bytes on disk:
//! `state` (in flight, created, unknown), when, which run and row, the
//! DigiDesk id, and the contact's hash (indexed for `contact_within`).
//! A released claim is deleted: the key is free again.

use std::collections::HashMap;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    Claim, Earlier, Forgotten, Hasher, ImportCounts, Imported, LedgerError, Origin, Outcome,
    Policy, Recorded, RunId, RunInfo, Scope, ScopeStats, State, Stats, Store, Verdict,
};

/// The newest ledger format this version reads and writes. A ledger with a
/// higher number is refused, never misread.
pub const FORMAT: i64 = 1;

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
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX survey_contact ON survey (scope, contact, at) WHERE contact IS NOT NULL;
";

/// `survey.state`.
const IN_FLIGHT: i64 = 0;
const CREATED: i64 = 1;
const UNKNOWN: i64 = 2;

const FIND: &str = "SELECT state, at, run, row, id FROM survey WHERE scope = ?1 AND key = ?2";

/// The latest survey to a contact since a time, other than the row's own key.
const FIND_CONTACT: &str = "SELECT state, at, run, row, id FROM survey
    WHERE scope = ?1 AND contact = ?2 AND at >= ?3 AND key <> ?4 AND (state = 1 OR ?5)
    ORDER BY at DESC LIMIT 1";

const ORIGIN: &str = "SELECT command, results FROM run WHERE id = ?1";

const CLAIM: &str = "INSERT INTO survey (scope, key, state, at, run, row, id, contact)
    VALUES (?1, ?2, 0, ?3, ?4, ?5, NULL, ?6)
    ON CONFLICT (scope, key) DO UPDATE SET state = 0, at = excluded.at, run = excluded.run,
        row = excluded.row, id = NULL, contact = excluded.contact";

const CREATE: &str = "INSERT INTO survey (scope, key, state, at, run, row, id, contact)
    VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (scope, key) DO UPDATE SET state = 1, at = excluded.at, run = excluded.run,
        row = excluded.row, id = excluded.id, contact = coalesce(excluded.contact, contact)";

/// How to open a ledger.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long to wait for another process's write.
    pub busy_timeout: Duration,
    /// Most memory SQLite may keep pages in, in MiB (it grows only as
    /// pages are read).
    pub cache_mib: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: BUSY_TIMEOUT,
            cache_mib: 8,
        }
    }
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
}

/// A survey row as [`FIND`] reads it.
struct Found {
    state: i64,
    at: i64,
    run: i64,
    row: i64,
    id: Option<i64>,
}

impl Found {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Found> {
        Ok(Found {
            state: r.get(0)?,
            at: r.get(1)?,
            run: r.get(2)?,
            row: r.get(3)?,
            id: r.get(4)?,
        })
    }

    fn earlier(
        self,
        asking: Option<RunId>,
        by_contact: bool,
        origins: &mut Origins<'_, '_>,
    ) -> rusqlite::Result<Earlier> {
        Ok(Earlier {
            state: match self.state {
                CREATED => State::Created,
                UNKNOWN => State::Unknown,
                _ => State::InFlight,
            },
            // Stored as the same 64 bits (see `int`).
            id: self.id.map(|i| i as u64),
            at: from_unix(self.at),
            same_run: asking.is_some_and(|r| r.run == self.run),
            origin: origins.get(self.run)?,
            row: self.row as u64,
            by_contact,
        })
    }
}

/// Runs' origins, each read once.
struct Origins<'a, 'c> {
    known: &'a mut HashMap<i64, Option<Arc<Origin>>>,
    read: rusqlite::CachedStatement<'c>,
}

impl Origins<'_, '_> {
    fn get(&mut self, run: i64) -> rusqlite::Result<Option<Arc<Origin>>> {
        if let Some(o) = self.known.get(&run) {
            return Ok(o.clone());
        }
        let o = self
            .read
            .query_row(params![run], |r| {
                Ok(Origin {
                    command: r.get(0)?,
                    results: PathBuf::from(r.get::<_, String>(1)?),
                })
            })
            .optional()?
            .map(Arc::new);
        self.known.insert(run, o.clone());
        Ok(o)
    }
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
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(fail("open"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(ledger = %path.display(), mode, "the ledger's file system does not allow write-ahead logging: each run waits for the others' writes");
        }
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
        };
        let secret = ledger.prepare()?;
        ledger.hasher = Hasher::new(&secret);
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
        tx.commit().map_err(fail)?;
        Ok(secret)
    }

    /// The outcomes, in one transaction.
    fn record_all(
        &mut self,
        run: RunId,
        now: i64,
        outcomes: &[Recorded],
    ) -> Result<(), LedgerError> {
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "record outcomes in", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        {
            let mut create = tx.prepare_cached(CREATE).map_err(fail)?;
            let mut unknown = tx
                .prepare_cached(
                    "UPDATE survey SET state = 2 WHERE scope = ?1 AND key = ?2 AND run = ?3
                        AND row = ?4 AND state = 0",
                )
                .map_err(fail)?;
            let mut release = tx
                .prepare_cached(
                    "DELETE FROM survey WHERE scope = ?1 AND key = ?2 AND run = ?3
                        AND row = ?4 AND state = 0",
                )
                .map_err(fail)?;
            for o in outcomes {
                let key = &o.key.0[..];
                match o.outcome {
                    // Created is what matters most: recorded even if another
                    // run took the claim over meanwhile (a `retry`).
                    Outcome::Created(id) => create.execute(params![
                        run.scope,
                        key,
                        now,
                        run.run,
                        int(o.row),
                        int(id),
                        o.contact.as_ref().map(|h| &h.0[..]),
                    ]),
                    Outcome::Unknown => {
                        unknown.execute(params![run.scope, key, run.run, int(o.row)])
                    }
                    Outcome::Released => {
                        release.execute(params![run.scope, key, run.run, int(o.row)])
                    }
                }
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// Fixes "now" (Unix seconds), for tests of windows and retention.
    #[cfg(test)]
    pub(crate) fn set_clock(&mut self, now: i64) {
        self.clock = Some(now);
    }

    fn now(&self) -> i64 {
        self.clock.unwrap_or_else(|| unix(SystemTime::now()))
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

    fn scope_id(&self, scope: &Scope) -> Result<Option<i64>, LedgerError> {
        self.conn
            .prepare_cached("SELECT id FROM scope WHERE endpoint = ?1 AND username = ?2")
            .and_then(|mut s| {
                s.query_row(params![scope.endpoint, scope.username], |r| r.get(0))
                    .optional()
            })
            .map_err(self.fail("read"))
    }
}

/// The survey stopping `c`, by key then by contact, or `None`.
#[allow(clippy::too_many_arguments)]
fn stopping(
    find: &mut rusqlite::CachedStatement<'_>,
    find_contact: &mut rusqlite::CachedStatement<'_>,
    origins: &mut Origins<'_, '_>,
    scope: i64,
    asking: Option<RunId>,
    policy: Policy,
    now: i64,
    c: &Claim,
) -> rusqlite::Result<Stop> {
    let found = find
        .query_row(params![scope, &c.key.0[..]], Found::read)
        .optional()?;
    if let Some(f) = found {
        if asking.is_some_and(|r| r.run == f.run) {
            // This run's own claim for this row: a resumed run whose request
            // never left. For another row: the same survey twice in one run.
            return Ok(if f.row == int(c.row) && f.state == IN_FLIGHT {
                Stop::Mine
            } else {
                Stop::By(f.earlier(asking, false, origins)?)
            });
        }
        if f.state == CREATED || policy.unknown_blocks {
            return Ok(Stop::By(f.earlier(asking, false, origins)?));
        }
    }
    if let (Some(contact), Some(within)) = (c.contact, policy.contact_within) {
        let since = now.saturating_sub(within.as_secs().min(i64::MAX as u64) as i64);
        let found = find_contact
            .query_row(
                params![
                    scope,
                    &contact.0[..],
                    since,
                    &c.key.0[..],
                    policy.unknown_blocks
                ],
                Found::read,
            )
            .optional()?;
        if let Some(f) = found {
            return Ok(Stop::By(f.earlier(asking, true, origins)?));
        }
    }
    Ok(Stop::Free)
}

/// What [`stopping`] found.
enum Stop {
    /// Nothing: the key may be claimed.
    Free,
    /// This run's own claim for the same row.
    Mine,
    By(Earlier),
}

impl Store for Sqlite {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    fn begin_run(&mut self, scope: &Scope, info: &RunInfo) -> Result<RunId, LedgerError> {
        let now = self.now();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "start a run in", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute(
            "INSERT INTO scope (endpoint, username) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![scope.endpoint, scope.username],
        )
        .map_err(fail)?;
        let scope_id: i64 = tx
            .query_row(
                "SELECT id FROM scope WHERE endpoint = ?1 AND username = ?2",
                params![scope.endpoint, scope.username],
                |r| r.get(0),
            )
            .map_err(fail)?;
        let results = info.results.display().to_string();
        let existing: Option<i64> = if info.resume {
            tx.query_row(
                "SELECT id FROM run WHERE scope = ?1 AND command = ?2 AND results = ?3
                    AND fingerprint = ?4 ORDER BY id DESC LIMIT 1",
                params![scope_id, info.command, results, info.fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?
        } else {
            None
        };
        let run = match existing {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO run (scope, command, results, fingerprint, started)
                        VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![scope_id, info.command, results, info.fingerprint, now],
                )
                .map_err(fail)?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(fail)?;
        Ok(RunId {
            scope: scope_id,
            run,
        })
    }

    fn claim(
        &mut self,
        run: RunId,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError> {
        let now = self.now();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "claim surveys in", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let mut verdicts = Vec::with_capacity(claims.len());
        {
            let mut find = tx.prepare_cached(FIND).map_err(fail)?;
            let mut find_contact = tx.prepare_cached(FIND_CONTACT).map_err(fail)?;
            let mut origins = Origins {
                known: &mut self.origins,
                read: tx.prepare_cached(ORIGIN).map_err(fail)?,
            };
            let mut insert = tx.prepare_cached(CLAIM).map_err(fail)?;
            for c in claims {
                let stop = stopping(
                    &mut find,
                    &mut find_contact,
                    &mut origins,
                    run.scope,
                    Some(run),
                    policy,
                    now,
                    c,
                )
                .map_err(fail)?;
                verdicts.push(match stop {
                    Stop::Mine => Verdict::Claimed,
                    Stop::By(earlier) => Verdict::Duplicate(earlier),
                    Stop::Free => {
                        insert
                            .execute(params![
                                run.scope,
                                &c.key.0[..],
                                now,
                                run.run,
                                int(c.row),
                                c.contact.as_ref().map(|h| &h.0[..]),
                            ])
                            .map_err(fail)?;
                        Verdict::Claimed
                    }
                });
            }
        }
        tx.commit().map_err(fail)?;
        Ok(verdicts)
    }

    fn record(&mut self, run: RunId, outcomes: &[Recorded]) -> Result<(), LedgerError> {
        let now = self.now();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "record outcomes in", busy, e);
        // Outcomes need no sync of their own: one lost to a power cut leaves
        // its claim in flight, which stops the key just as well. The next
        // claim's sync writes them to disk.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        let recorded = self.record_all(run, now, outcomes);
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        recorded
    }

    fn end_run(&mut self, run: RunId) -> Result<(), LedgerError> {
        let now = self.now();
        self.conn
            .execute(
                "UPDATE run SET ended = ?1 WHERE id = ?2",
                params![now, run.run],
            )
            .map(|_| ())
            .map_err(self.fail("finish a run in"))
    }

    fn lookup(
        &mut self,
        scope: &Scope,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Option<Earlier>>, LedgerError> {
        let Some(scope_id) = self.scope_id(scope)? else {
            return Ok(vec![None; claims.len()]);
        };
        let now = self.now();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "read", busy, e);
        // One snapshot for the whole batch.
        let tx = self.conn.transaction().map_err(fail)?;
        let mut found = Vec::with_capacity(claims.len());
        {
            let mut find = tx.prepare_cached(FIND).map_err(fail)?;
            let mut find_contact = tx.prepare_cached(FIND_CONTACT).map_err(fail)?;
            let mut origins = Origins {
                known: &mut self.origins,
                read: tx.prepare_cached(ORIGIN).map_err(fail)?,
            };
            for c in claims {
                let stop = stopping(
                    &mut find,
                    &mut find_contact,
                    &mut origins,
                    scope_id,
                    None,
                    policy,
                    now,
                    c,
                )
                .map_err(fail)?;
                found.push(match stop {
                    Stop::By(e) => Some(e),
                    Stop::Free | Stop::Mine => None,
                });
            }
        }
        tx.commit().map_err(fail)?;
        Ok(found)
    }

    fn import(&mut self, run: RunId, rows: &[Imported]) -> Result<ImportCounts, LedgerError> {
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "import into", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let mut counts = ImportCounts::default();
        {
            let mut state = tx
                .prepare_cached("SELECT state FROM survey WHERE scope = ?1 AND key = ?2")
                .map_err(fail)?;
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO survey (scope, key, state, at, run, row, id, contact)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(fail)?;
            for i in rows {
                let key = &i.key.0[..];
                let known: Option<i64> = state
                    .query_row(params![run.scope, key], |r| r.get(0))
                    .optional()
                    .map_err(fail)?;
                let write = match known {
                    None => {
                        counts.added += 1;
                        true
                    }
                    Some(s) if s != CREATED && i.created => {
                        counts.upgraded += 1;
                        true
                    }
                    Some(_) => {
                        counts.known += 1;
                        false
                    }
                };
                if write {
                    put.execute(params![
                        run.scope,
                        key,
                        if i.created { CREATED } else { UNKNOWN },
                        unix(i.at),
                        run.run,
                        int(i.row),
                        i.id.map(int),
                        i.contact.as_ref().map(|h| &h.0[..]),
                    ])
                    .map_err(fail)?;
                }
            }
        }
        tx.commit().map_err(fail)?;
        Ok(counts)
    }

    fn stats(&mut self) -> Result<Stats, LedgerError> {
        let fail = self.fail("read");
        let mut scopes: Vec<(i64, ScopeStats)> = Vec::new();
        {
            let mut s = self
                .conn
                .prepare(
                    "SELECT sc.id, sc.endpoint, sc.username,
                        (SELECT count(*) FROM run r WHERE r.scope = sc.id)
                     FROM scope sc ORDER BY sc.id",
                )
                .map_err(&fail)?;
            let rows = s
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        ScopeStats {
                            scope: Scope {
                                endpoint: r.get(1)?,
                                username: r.get(2)?,
                            },
                            created: 0,
                            unknown: 0,
                            in_flight: 0,
                            runs: r.get::<_, i64>(3)? as u64,
                            oldest: None,
                            newest: None,
                        },
                    ))
                })
                .map_err(&fail)?;
            for row in rows {
                scopes.push(row.map_err(&fail)?);
            }
            let mut s = self
                .conn
                .prepare(
                    "SELECT scope, state, count(*), min(at), max(at) FROM survey GROUP BY scope, state",
                )
                .map_err(&fail)?;
            let rows = s
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(&fail)?;
            for row in rows {
                let (scope, state, n, oldest, newest) = row.map_err(&fail)?;
                let Some((_, st)) = scopes.iter_mut().find(|(id, _)| *id == scope) else {
                    continue;
                };
                match state {
                    CREATED => st.created += n,
                    UNKNOWN => st.unknown += n,
                    _ => st.in_flight += n,
                }
                let (oldest, newest) = (from_unix(oldest), from_unix(newest));
                st.oldest = Some(st.oldest.map_or(oldest, |o| o.min(oldest)));
                st.newest = Some(st.newest.map_or(newest, |o| o.max(newest)));
            }
        }
        let runs: i64 = self
            .conn
            .query_row("SELECT count(*) FROM run", [], |r| r.get(0))
            .map_err(&fail)?;
        Ok(Stats {
            location: self.location(),
            bytes: self.bytes(),
            format: FORMAT,
            runs: runs as u64,
            scopes: scopes.into_iter().map(|(_, s)| s).collect(),
        })
    }

    fn forget(&mut self, before: SystemTime) -> Result<Forgotten, LedgerError> {
        let before = unix(before);
        let bytes_before = self.bytes();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "forget surveys in", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let surveys = tx
            .execute("DELETE FROM survey WHERE at < ?1", params![before])
            .map_err(fail)?;
        let runs = tx
            .execute(
                "DELETE FROM run WHERE (ended IS NOT NULL OR started < ?1)
                    AND id NOT IN (SELECT DISTINCT run FROM survey)",
                params![before],
            )
            .map_err(fail)?;
        tx.execute(
            "DELETE FROM scope WHERE id NOT IN (SELECT scope FROM run)
                AND id NOT IN (SELECT DISTINCT scope FROM survey)",
            [],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        self.origins.clear();
        if surveys > 0 {
            // Give the space back. Not essential: a busy ledger keeps it for reuse.
            let shrunk = self
                .conn
                .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);");
            if let Err(e) = shrunk {
                tracing::warn!(ledger = %self.path.display(), "could not shrink the ledger after forgetting: {e}");
            }
        }
        Ok(Forgotten {
            surveys: surveys as u64,
            runs: runs as u64,
            bytes_before,
            bytes_after: self.bytes(),
        })
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
