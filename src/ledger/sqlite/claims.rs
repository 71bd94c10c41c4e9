//! What a run asks of the ledger: starting a run, claiming keys before
//! their requests leave, recording outcomes, and looking keys up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::recent::{blob, Recent, Row};
use super::{from_unix, int, Sqlite, CREATED, IN_FLIGHT, UNKNOWN};
use crate::ledger::{
    Claim, ContactHash, Earlier, KeyHash, LedgerError, Origin, Outcome, Policy, Recorded, RunId,
    RunInfo, Scope, State, Verdict,
};

const FIND: &str = "SELECT state, at, run, row, id FROM survey WHERE scope = ?1 AND key = ?2";

/// The latest survey to a contact since a time, other than the row's own
/// key. `contact` may name keys whose survey has another contact since, or
/// none: the survey's own `contact` decides.
const FIND_CONTACT: &str = "SELECT s.state, s.at, s.run, s.row, s.id
    FROM contact c JOIN survey s ON s.scope = c.scope AND s.key = c.key
    WHERE c.scope = ?1 AND c.contact = ?2 AND s.contact = ?2 AND s.at >= ?3
        AND s.key <> ?4 AND (s.state = 1 OR ?5)
    ORDER BY s.at DESC LIMIT 1";

/// A key of `survey` under its (new) contact.
const ADD_CONTACT: &str =
    "INSERT INTO contact (scope, contact, key) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

const ORIGIN: &str = "SELECT command, results FROM run WHERE id = ?1";

/// A new key's claim: always in `recent` (see `recent.rs`).
const CLAIM: &str = "INSERT INTO recent (scope, key, state, at, run, row, id, contact)
    VALUES (?1, ?2, 0, ?3, ?4, ?5, NULL, ?6)";

/// A claim taking over a key `recent` holds (a `retry` of an `unknown`
/// row): its row is removed and the claim added as a new one, since other
/// connections read only rows added since they last looked (see `recent.rs`).
const DROP_RECENT: &str = "DELETE FROM recent WHERE seq = ?1";

/// A claim taking over a key `survey` holds.
const TAKE_SURVEY: &str = "UPDATE survey SET state = 0, at = ?3, run = ?4, row = ?5, id = NULL,
    contact = ?6 WHERE scope = ?1 AND key = ?2";

/// A survey row as [`FIND`] (or [`Recent::find`]) reads it, and which table holds it.
struct Found {
    /// `Some(seq)` in `recent`, `None` in `survey`.
    seq: Option<i64>,
    state: i64,
    at: i64,
    run: i64,
    row: i64,
    id: Option<i64>,
}

impl Found {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Found> {
        Ok(Found {
            seq: None,
            state: r.get(0)?,
            at: r.get(1)?,
            run: r.get(2)?,
            row: r.get(3)?,
            id: r.get(4)?,
        })
    }

    fn recent(r: Row) -> Found {
        Found {
            seq: Some(r.seq),
            state: r.state,
            at: r.at,
            run: r.run,
            row: r.row,
            id: r.id,
        }
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
        if self.recent.len() >= self.recent.fold_at {
            self.fold_recent();
        }
        Ok(verdicts)
    }

    /// Moves `recent` into `survey` (see `recent.rs`). Not synced: the next
    /// synced commit carries it, and a fold lost to a power cut leaves its
    /// rows where they were. A fold that fails changes nothing and is only
    /// worth a warning: the rows stay in `recent`, and are found there.
    pub(super) fn fold_recent(&mut self) {
        let done = self.set_synchronous(false).and_then(|()| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let moved = self.recent.fold(&tx)?;
            self.recent.size_fold(&tx, self.fold_min)?;
            tx.commit()?;
            Ok(moved)
        });
        match done {
            Ok(moved) => {
                self.committed(true);
                tracing::debug!(moved, "ledger: recent surveys folded");
            }
            Err(e) => {
                self.recent.reset();
                // Not again before twice as many rows.
                self.recent.fold_at = self.recent.fold_at.saturating_mul(2);
                tracing::warn!(ledger = %self.path.display(), "could not reorganise the ledger (its surveys are all still there): {e}");
            }
        }
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
        let now = self.now();
        self.conn
            .execute(
                "UPDATE run SET ended = ?1 WHERE id = ?2",
                params![now, run.run],
            )
            .map(|_| ())
            .map_err(self.fail("finish a run in"))
    }

    /// [`Store::in_flight`](crate::ledger::Store::in_flight). A scan of
    /// both tables (there is no index by run): once per resumed run.
    pub(super) fn claims_in_flight(&mut self, run: RunId) -> Result<Vec<Claim>, LedgerError> {
        let read = || -> rusqlite::Result<Vec<Claim>> {
            let mut s = self.conn.prepare(
                "SELECT row, key, contact FROM recent WHERE run = ?1 AND state = 0
                 UNION ALL SELECT row, key, contact FROM survey WHERE run = ?1 AND state = 0",
            )?;
            let mut rows = s.query(params![run.run])?;
            let mut claims = Vec::new();
            while let Some(r) = rows.next()? {
                // A key of another length is no key this version hashes.
                let Some(key) = blob::<16>(r.get_ref(1)?) else {
                    continue;
                };
                claims.push(Claim {
                    row: r.get::<_, i64>(0)?.max(0) as u64,
                    key: KeyHash(key),
                    contact: blob::<8>(r.get_ref(2)?).map(ContactHash),
                });
            }
            Ok(claims)
        };
        read().map_err(self.fail("read"))
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
            for c in claims {
                let stop = stopping(
                    &tx,
                    &self.recent,
                    &mut origins,
                    scope_id,
                    None,
                    policy,
                    now,
                    c,
                )?;
                found.push(match stop {
                    Stop::By(e) => Some(e),
                    Stop::Free(_) | Stop::Mine => None,
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
    let mut insert = tx.prepare_cached(CLAIM)?;
    for c in claims {
        let stop = stopping(
            tx,
            recent,
            &mut origins,
            run.scope,
            Some(run),
            policy,
            now,
            c,
        )?;
        let contact = c.contact.as_ref().map(|h| &h.0[..]);
        verdicts.push(match stop {
            Stop::Mine => Verdict::Claimed,
            Stop::By(earlier) => Verdict::Duplicate(earlier),
            Stop::Free(place @ (None | Some(Place::Recent(_)))) => {
                if let Some(Place::Recent(seq)) = place {
                    tx.prepare_cached(DROP_RECENT)?.execute(params![seq])?;
                }
                insert.execute(params![
                    run.scope,
                    &c.key.0[..],
                    now,
                    run.run,
                    int(c.row),
                    contact,
                ])?;
                recent.note(tx.last_insert_rowid(), c.key, c.contact);
                Verdict::Claimed
            }
            Stop::Free(Some(Place::Survey)) => {
                tx.prepare_cached(TAKE_SURVEY)?.execute(params![
                    run.scope,
                    &c.key.0[..],
                    now,
                    run.run,
                    int(c.row),
                    contact
                ])?;
                if let Some(contact) = contact {
                    tx.prepare_cached(ADD_CONTACT)?.execute(params![
                        run.scope,
                        contact,
                        &c.key.0[..]
                    ])?;
                }
                Verdict::Claimed
            }
        });
    }
    Ok(verdicts)
}

/// Records outcomes in `tx`, each in the table that holds its key. Each
/// touches only its survey's own row where it can (no indexed column
/// changes), so that it costs no page of its own.
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
    // In `recent`: `seq` as last seen, checked to still hold the key.
    let mut created_recent = tx.prepare_cached(
        "UPDATE recent SET state = 1, id = ?3, run = ?4, row = ?5 WHERE seq = ?1 AND key = ?2",
    )?;
    let mut unknown_recent = tx.prepare_cached(
        "UPDATE recent SET state = 2 WHERE seq = ?1 AND key = ?2 AND run = ?3
            AND row = ?4 AND state = 0",
    )?;
    let mut release_recent = tx.prepare_cached(
        "DELETE FROM recent WHERE seq = ?1 AND key = ?2 AND run = ?3 AND row = ?4 AND state = 0",
    )?;
    let mut created = tx.prepare_cached(
        "UPDATE survey SET state = 1, id = ?3, run = ?4, row = ?5 WHERE scope = ?1 AND key = ?2",
    )?;
    let mut unknown = tx.prepare_cached(
        "UPDATE survey SET state = 2 WHERE scope = ?1 AND key = ?2 AND run = ?3
            AND row = ?4 AND state = 0",
    )?;
    let mut release = tx.prepare_cached(
        "DELETE FROM survey WHERE scope = ?1 AND key = ?2 AND run = ?3
            AND row = ?4 AND state = 0",
    )?;
    for o in outcomes {
        let key = &o.key.0[..];
        let row = int(o.row);
        // `recent` when it holds the key, else `survey`.
        let seq = recent.seq_of(&o.key);
        match o.outcome {
            // Created is what matters most: recorded even if another run
            // took the claim over meanwhile (a `retry`), or it was forgotten.
            Outcome::Created(id) => {
                let done = match seq {
                    Some(seq) => {
                        created_recent.execute(params![seq, key, int(id), run.run, row])? > 0
                    }
                    None => false,
                };
                if !done && created.execute(params![run.scope, key, int(id), run.run, row])? == 0 {
                    tx.prepare_cached(
                        "INSERT INTO recent (scope, key, state, at, run, row, id, contact)
                            VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        run.scope,
                        key,
                        now,
                        run.run,
                        row,
                        int(id),
                        o.contact.as_ref().map(|h| &h.0[..]),
                    ])?;
                    recent.note(tx.last_insert_rowid(), o.key, o.contact);
                }
            }
            Outcome::Unknown => {
                let done = match seq {
                    Some(seq) => unknown_recent.execute(params![seq, key, run.run, row])? > 0,
                    None => false,
                };
                if !done {
                    unknown.execute(params![run.scope, key, run.run, row])?;
                }
            }
            Outcome::Released => {
                let done = match seq {
                    Some(seq) => release_recent.execute(params![seq, key, run.run, row])? > 0,
                    None => false,
                };
                if !done {
                    release.execute(params![run.scope, key, run.run, row])?;
                }
            }
        }
    }
    Ok(())
}

/// Where a key's row is.
#[derive(Debug, Clone, Copy)]
enum Place {
    Recent(i64),
    Survey,
}

/// The row of `key`: in `recent`, else in `survey`.
fn find(
    tx: &Connection,
    recent: &Recent,
    scope: i64,
    key: &KeyHash,
) -> rusqlite::Result<Option<Found>> {
    if let Some(r) = recent.find(tx, key)? {
        return Ok(Some(Found::recent(r)));
    }
    tx.prepare_cached(FIND)?
        .query_row(params![scope, &key.0[..]], Found::read)
        .optional()
}

/// The survey stopping `c`, by key then by contact, or `None`.
#[allow(clippy::too_many_arguments)]
fn stopping(
    tx: &Connection,
    recent: &Recent,
    origins: &mut Origins<'_, '_>,
    scope: i64,
    asking: Option<RunId>,
    policy: Policy,
    now: i64,
    c: &Claim,
) -> rusqlite::Result<Stop> {
    let found = find(tx, recent, scope, &c.key)?;
    let mut place = None;
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
        place = Some(match f.seq {
            Some(seq) => Place::Recent(seq),
            None => Place::Survey,
        });
    }
    if let (Some(contact), Some(within)) = (c.contact, policy.contact_within) {
        let since = now.saturating_sub(within.as_secs().min(i64::MAX as u64) as i64);
        let older = tx
            .prepare_cached(FIND_CONTACT)?
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
        let newer = recent
            .latest_of_contact(tx, &contact, since, &c.key, policy.unknown_blocks)?
            .map(Found::recent);
        let latest = match (older, newer) {
            (Some(o), Some(n)) => Some(if n.at >= o.at { n } else { o }),
            (o, n) => n.or(o),
        };
        if let Some(f) = latest {
            return Ok(Stop::By(f.earlier(asking, true, origins)?));
        }
    }
    Ok(Stop::Free(place))
}

/// What [`stopping`] found.
enum Stop {
    /// Nothing: the key may be claimed; where its row is, if it has one.
    Free(Option<Place>),
    /// This run's own claim for this row.
    Mine,
    By(Earlier),
}
