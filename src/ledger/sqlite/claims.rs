//! What a run asks of the ledger: starting a run, claiming keys before
//! their requests leave, recording outcomes, and looking keys up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{from_unix, int, Sqlite, CREATED, IN_FLIGHT, UNKNOWN};
use crate::ledger::{
    Claim, Earlier, LedgerError, Origin, Outcome, Policy, Recorded, RunId, RunInfo, Scope, State,
    Verdict,
};

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
    /// the key just as well).
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        record_in(&tx, run, now, outcomes).map_err(fail)?;
        let verdicts = claim_in(&tx, &mut self.origins, run, policy, now, claims).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(verdicts)
    }

    /// Syncs every commit (`FULL`) or leaves it to the next one that does
    /// (`NORMAL`); set only when it changes.
    fn set_synchronous(&mut self, full: bool) -> rusqlite::Result<()> {
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
    tx: &rusqlite::Transaction<'_>,
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
    let mut find = tx.prepare_cached(FIND)?;
    let mut find_contact = tx.prepare_cached(FIND_CONTACT)?;
    let mut origins = Origins {
        known,
        read: tx.prepare_cached(ORIGIN)?,
    };
    let mut insert = tx.prepare_cached(CLAIM)?;
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
        )?;
        verdicts.push(match stop {
            Stop::Mine => Verdict::Claimed,
            Stop::By(earlier) => Verdict::Duplicate(earlier),
            Stop::Free => {
                insert.execute(params![
                    run.scope,
                    &c.key.0[..],
                    now,
                    run.run,
                    int(c.row),
                    c.contact.as_ref().map(|h| &h.0[..]),
                ])?;
                Verdict::Claimed
            }
        });
    }
    Ok(verdicts)
}

/// Records outcomes in `tx`. Each touches only its survey's own row where
/// it can (no indexed column changes), so that it costs one page.
fn record_in(
    tx: &rusqlite::Transaction<'_>,
    run: RunId,
    now: i64,
    outcomes: &[Recorded],
) -> rusqlite::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut created = tx.prepare_cached(
        "UPDATE survey SET state = 1, id = ?3, run = ?4, row = ?5 WHERE scope = ?1 AND key = ?2",
    )?;
    let mut create = tx.prepare_cached(CREATE)?;
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
        match o.outcome {
            // Created is what matters most: recorded even if another run
            // took the claim over meanwhile (a `retry`), or it was forgotten.
            Outcome::Created(id) => {
                let row = int(o.row);
                if created.execute(params![run.scope, key, int(id), run.run, row])? == 0 {
                    create.execute(params![
                        run.scope,
                        key,
                        now,
                        run.run,
                        row,
                        int(id),
                        o.contact.as_ref().map(|h| &h.0[..]),
                    ])?;
                }
            }
            Outcome::Unknown => {
                unknown.execute(params![run.scope, key, run.run, int(o.row)])?;
            }
            Outcome::Released => {
                release.execute(params![run.scope, key, run.run, int(o.row)])?;
            }
        }
    }
    Ok(())
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
