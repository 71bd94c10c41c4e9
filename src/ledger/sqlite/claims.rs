//! What a run asks of the ledger: starting a run, claiming keys before
//! their requests leave, recording outcomes, and looking keys up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::recent::{blob, Entry, Recent, GONE};
use super::{from_unix, int, Sqlite, CREATED, IN_FLIGHT, UNKNOWN};
use crate::ledger::{
    Claim, ContactHash, Earlier, KeyHash, LedgerError, Origin, Outcome, Policy, Recorded, RunId,
    RunInfo, Scope, State, Verdict,
};

const FIND: &str =
    "SELECT state, at, run, row, id, contact FROM survey WHERE scope = ?1 AND key = ?2";

/// The surveys to a contact since a time, other than the row's own key,
/// latest first. `contact` may name keys whose survey has another contact
/// since, or none: the survey's own `contact` decides.
const FIND_CONTACT: &str = "SELECT s.state, s.at, s.run, s.row, s.id, s.contact, s.key
    FROM contact c JOIN survey s ON s.scope = c.scope AND s.key = c.key
    WHERE c.scope = ?1 AND c.contact = ?2 AND s.contact = ?2 AND s.at >= ?3
        AND s.key <> ?4 AND (s.state = 1 OR (?5 AND s.state < 3))
    ORDER BY s.at DESC";

const ORIGIN: &str = "SELECT command, results FROM run WHERE id = ?1";

/// A key's row, from the log (see `recent.rs`) or `survey`.
type Found = Entry;

/// Reads a row of [`FIND`] or [`FIND_CONTACT`].
fn read_found(r: &rusqlite::Row<'_>) -> rusqlite::Result<Found> {
    Ok(Entry {
        state: r.get(0)?,
        at: r.get(1)?,
        run: r.get(2)?,
        row: r.get(3)?,
        id: r.get(4)?,
        contact: blob::<8>(r.get_ref(5)?).map(ContactHash),
    })
}

impl Entry {
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

impl Sqlite {
    /// [`Store::begin_run`](crate::ledger::Store::begin_run).
    pub(super) fn start_run(
        &mut self,
        scope: &Scope,
        info: &RunInfo,
    ) -> Result<RunId, LedgerError> {
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

    /// [`Store::settle`](crate::ledger::Store::settle): outcomes, then
    /// claims, in one transaction, synced only when it holds claims (an
    /// outcome lost to a power cut leaves its claim in flight, which stops
    /// the key just as well). Then, when `recent` has grown enough, a fold.
    pub(super) fn settle_all(
        &mut self,
        run: RunId,
        policy: Policy,
        outcomes: &[Recorded],
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError> {
        if outcomes.is_empty() && claims.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let (path, busy) = (self.path.clone(), self.busy);
        let action = if claims.is_empty() {
            "record outcomes in"
        } else {
            "claim surveys in"
        };
        let fail = |e| LedgerError::from_sqlite(&path, action, busy, e);
        self.set_synchronous(!claims.is_empty()).map_err(fail)?;
        let verdicts = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail)?;
            let done = (|| {
                self.recent
                    .catch_up(&tx, run.scope, policy.contact_within.is_some())?;
                record_in(&tx, &mut self.recent, run, now, outcomes)?;
                let verdicts = claim_in(
                    &tx,
                    &mut self.recent,
                    &mut self.origins,
                    run,
                    policy,
                    now,
                    claims,
                )?;
                self.recent.append(&tx, run.run)?;
                tx.commit()?;
                Ok(verdicts)
            })();
            match done {
                Ok(v) => v,
                Err(e) => {
                    // What this transaction added is not in the file.
                    self.recent.reset();
                    return Err(fail(e));
                }
            }
        };
        self.committed(false);
        Ok(verdicts)
    }

    /// Syncs every commit (`FULL`) or leaves it to the next one that does
    /// (`NORMAL`); set only when it changes.
    pub(super) fn set_synchronous(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.synced_commits != full {
            let level = if full { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", level)?;
            self.synced_commits = full;
        }
        Ok(())
    }

    /// [`Store::end_run`](crate::ledger::Store::end_run).
    pub(super) fn finish_run(&mut self, run: RunId) -> Result<(), LedgerError> {
        self.fold_rest();
        let now = self.now();
        self.conn
            .execute(
                "UPDATE run SET ended = ?1 WHERE id = ?2",
                params![now, run.run],
            )
            .map(|_| ())
            .map_err(self.fail("finish a run in"))
    }

    /// [`Store::in_flight`](crate::ledger::Store::in_flight): from the
    /// log, and a scan of `survey` (it has no index by run), once per
    /// resumed run.
    pub(super) fn claims_in_flight(&mut self, run: RunId) -> Result<Vec<Claim>, LedgerError> {
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "read", busy, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let read = (|| -> rusqlite::Result<Vec<Claim>> {
            self.recent.catch_up(&tx, run.scope, false)?;
            let mut claims: Vec<Claim> = self
                .recent
                .in_flight_of(run.run)
                .map(|(key, e)| Claim {
                    row: e.row.max(0) as u64,
                    key: *key,
                    contact: e.contact,
                })
                .collect();
            let mut s = tx.prepare(
                "SELECT row, key, contact FROM survey WHERE scope = ?1 AND run = ?2 AND state = 0",
            )?;
            let mut rows = s.query(params![run.scope, run.run])?;
            while let Some(r) = rows.next()? {
                // A key of another length is no key this version hashes.
                let Some(key) = blob::<16>(r.get_ref(1)?).map(KeyHash) else {
                    continue;
                };
                // The log is newer.
                if self.recent.get(&key).is_some() {
                    continue;
                }
                claims.push(Claim {
                    row: r.get::<_, i64>(0)?.max(0) as u64,
                    key,
                    contact: blob::<8>(r.get_ref(2)?).map(ContactHash),
                });
            }
            claims.sort_by_key(|c| c.row);
            Ok(claims)
        })();
        let claims = read.map_err(|e| {
            self.recent.reset();
            fail(e)
        })?;
        tx.commit().map_err(fail)?;
        Ok(claims)
    }

    /// [`Store::lookup`](crate::ledger::Store::lookup).
    pub(super) fn look_up(
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
        let found = (|| {
            self.recent
                .catch_up(&tx, scope_id, policy.contact_within.is_some())?;
            let mut origins = Origins {
                known: &mut self.origins,
                read: tx.prepare_cached(ORIGIN)?,
            };
            let mut found = Vec::with_capacity(claims.len());
            let mut look = Lookups::new(&tx)?;
            for c in claims {
                let stop = stopping(
                    &mut look,
                    &mut self.recent,
                    &mut origins,
                    scope_id,
                    None,
                    policy,
                    now,
                    c,
                )?;
                found.push(match stop {
                    Stop::By(e) => Some(e),
                    Stop::Free | Stop::Mine => None,
                });
            }
            Ok(found)
        })();
        let found = found.map_err(|e| {
            self.recent.reset();
            fail(e)
        })?;
        tx.commit().map_err(fail)?;
        Ok(found)
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

/// Claims keys in `tx`: per claim, in order, `Claimed` or the earlier
/// survey that makes it a duplicate.
fn claim_in(
    tx: &Connection,
    recent: &mut Recent,
    known: &mut HashMap<i64, Option<Arc<Origin>>>,
    run: RunId,
    policy: Policy,
    now: i64,
    claims: &[Claim],
) -> rusqlite::Result<Vec<Verdict>> {
    let mut verdicts = Vec::with_capacity(claims.len());
    if claims.is_empty() {
        return Ok(verdicts);
    }
    let mut origins = Origins {
        known,
        read: tx.prepare_cached(ORIGIN)?,
    };
    let mut look = Lookups::new(tx)?;
    for c in claims {
        let stop = stopping(
            &mut look,
            recent,
            &mut origins,
            run.scope,
            Some(run),
            policy,
            now,
            c,
        )?;
        verdicts.push(match stop {
            Stop::Mine => Verdict::Claimed,
            Stop::By(earlier) => Verdict::Duplicate(earlier),
            Stop::Free => {
                recent.write(
                    c.key,
                    Entry {
                        state: IN_FLIGHT,
                        at: now,
                        run: run.run,
                        row: int(c.row),
                        id: None,
                        contact: c.contact,
                    },
                );
                Verdict::Claimed
            }
        });
    }
    Ok(verdicts)
}

/// Records outcomes in `tx`: each key's new row goes to the log.
fn record_in(
    tx: &Connection,
    recent: &mut Recent,
    run: RunId,
    now: i64,
    outcomes: &[Recorded],
) -> rusqlite::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut look = Lookups::new(tx)?;
    for o in outcomes {
        let row = int(o.row);
        let was = find(&mut look, recent, run.scope, &o.key)?;
        // This run's claim of this row, never answered until now.
        let claimed = was.filter(|w| w.run == run.run && w.row == row && w.state == IN_FLIGHT);
        let now_is = match o.outcome {
            // Created is what matters most: recorded even if another run
            // took the claim over meanwhile (a `retry`), or it was forgotten.
            Outcome::Created(id) => Some(match was {
                Some(w) => Entry {
                    state: CREATED,
                    id: Some(int(id)),
                    run: run.run,
                    row,
                    ..w
                },
                None => Entry {
                    state: CREATED,
                    at: now,
                    run: run.run,
                    row,
                    id: Some(int(id)),
                    contact: o.contact,
                },
            }),
            Outcome::Unknown => claimed.map(|w| Entry {
                state: UNKNOWN,
                ..w
            }),
            Outcome::Released => claimed.map(|w| Entry {
                state: GONE,
                contact: None,
                ..w
            }),
        };
        if let Some(e) = now_is {
            recent.write(o.key, e);
        }
    }
    Ok(())
}

/// The statements every lookup of a transaction uses, prepared once.
pub(super) struct Lookups<'c> {
    find: rusqlite::CachedStatement<'c>,
    by_contact: Option<rusqlite::CachedStatement<'c>>,
    tx: &'c Connection,
}

impl<'c> Lookups<'c> {
    pub(super) fn new(tx: &'c Connection) -> rusqlite::Result<Lookups<'c>> {
        Ok(Lookups {
            find: tx.prepare_cached(FIND)?,
            by_contact: None,
            tx,
        })
    }
}

/// The row of `key`: in the log, else in `survey`.
pub(super) fn find(
    look: &mut Lookups<'_>,
    recent: &mut Recent,
    scope: i64,
    key: &KeyHash,
) -> rusqlite::Result<Option<Found>> {
    if let Some(e) = recent.get(key) {
        return Ok((e.state != GONE).then_some(*e));
    }
    if !recent.may_be_in_survey(look.tx, key)? {
        return Ok(None);
    }
    // A released key's row in `survey` is no row (see `fold.rs`).
    Ok(look
        .find
        .query_row(params![scope, &key.0[..]], read_found)
        .optional()?
        .filter(|f| f.state != GONE))
}

/// The survey stopping `c`, by key then by contact, or `None`.
#[allow(clippy::too_many_arguments)]
fn stopping(
    look: &mut Lookups<'_>,
    recent: &mut Recent,
    origins: &mut Origins<'_, '_>,
    scope: i64,
    asking: Option<RunId>,
    policy: Policy,
    now: i64,
    c: &Claim,
) -> rusqlite::Result<Stop> {
    if let Some(f) = find(look, recent, scope, &c.key)? {
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
        if look.by_contact.is_none() {
            look.by_contact = Some(look.tx.prepare_cached(FIND_CONTACT)?);
        }
        let mut older = None;
        if let Some(s) = look.by_contact.as_mut() {
            let mut rows = s.query(params![
                scope,
                &contact.0[..],
                since,
                &c.key.0[..],
                policy.unknown_blocks
            ])?;
            while let Some(r) = rows.next()? {
                // A key the log holds is as the log has it (below).
                let key = blob::<16>(r.get_ref(6)?).map(KeyHash);
                if key.is_some_and(|k| recent.get(&k).is_some()) {
                    continue;
                }
                older = Some(read_found(r)?);
                break;
            }
        }
        let newer = recent.latest_of_contact(&contact, since, &c.key, policy.unknown_blocks);
        let latest = match (older, newer) {
            (Some(o), Some(n)) => Some(if n.at >= o.at { n } else { o }),
            (o, n) => n.or(o),
        };
        if let Some(f) = latest {
            return Ok(Stop::By(f.earlier(asking, true, origins)?));
        }
    }
    Ok(Stop::Free)
}

/// What [`stopping`] found.
enum Stop {
    /// Nothing: the key may be claimed.
    Free,
    /// This run's own claim for this row.
    Mine,
    By(Earlier),
}
