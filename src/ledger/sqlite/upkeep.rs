//! What the `ledger` command does with the file: importing the surveys of
//! old results files, statistics, and forgetting old surveys.

use std::collections::HashMap;
use std::time::SystemTime;

use rusqlite::{params, TransactionBehavior};

use super::claims::{find, Lookups};
use super::fold::FOLD_PER_ROW;
use super::recent::{blob, whole_log, Entry, GONE};
use super::{from_unix, int, unix, Sqlite, CREATED, FORMAT, UNKNOWN};
use crate::ledger::{
    Forgotten, ImportCounts, Imported, KeyHash, LedgerError, RunId, Scope, ScopeStats, Stats, Store,
};

impl Sqlite {
    /// [`Store::import`].
    pub(super) fn import_rows(
        &mut self,
        run: RunId,
        rows: &[Imported],
    ) -> Result<ImportCounts, LedgerError> {
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "import into", busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let counts = (|| {
            self.recent.catch_up(&tx, run.scope, false)?;
            let mut counts = ImportCounts::default();
            let mut look = Lookups::new(&tx)?;
            for i in rows {
                let (at, row, id) = (unix(i.at), int(i.row), i.id.map(int));
                let was = find(&mut look, &mut self.recent, run.scope, &i.key)?;
                match was {
                    None => {
                        counts.added += 1;
                        let state = if i.created { CREATED } else { UNKNOWN };
                        self.recent.write(
                            i.key,
                            Entry {
                                state,
                                at,
                                run: run.run,
                                row,
                                id,
                                contact: i.contact,
                            },
                        );
                    }
                    Some(w) if w.state != CREATED && i.created => {
                        counts.upgraded += 1;
                        self.recent.write(
                            i.key,
                            Entry {
                                state: CREATED,
                                at,
                                run: run.run,
                                row,
                                id,
                                contact: i.contact.or(w.contact),
                            },
                        );
                    }
                    Some(_) => counts.known += 1,
                }
            }
            drop(look);
            self.recent.append(&tx, run.run)?;
            tx.commit()?;
            Ok(counts)
        })();
        let counts = counts.map_err(|e| {
            self.recent.reset();
            fail(e)
        })?;
        self.committed(false);
        self.fold_along(FOLD_PER_ROW * rows.len());
        Ok(counts)
    }

    /// [`Store::stats`].
    pub(super) fn count(&mut self) -> Result<Stats, LedgerError> {
        let fail = self.fail("read");
        // One snapshot for every count.
        let tx = self.conn.unchecked_transaction().map_err(&fail)?;
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
            // Per scope and state: how many, the oldest and the newest.
            let mut counts: HashMap<(i64, i64), (u64, i64, i64)> = HashMap::new();
            let mut add = |scope: i64, state: i64, n: u64, oldest: i64, newest: i64| {
                let c = counts.entry((scope, state)).or_insert((0, oldest, newest));
                c.0 += n;
                c.1 = c.1.min(oldest);
                c.2 = c.2.max(newest);
            };
            let (_, log) = whole_log(&tx).map_err(&fail)?;
            if log.is_empty() {
                let mut s = tx
                    .prepare(
                        "SELECT scope, state, count(*), min(at), max(at) FROM survey
                            WHERE state < 3 GROUP BY scope, state",
                    )
                    .map_err(&fail)?;
                let mut rows = s.query([]).map_err(&fail)?;
                while let Some(r) = rows.next().map_err(&fail)? {
                    let n: i64 = r.get(2).map_err(&fail)?;
                    add(
                        r.get(0).map_err(&fail)?,
                        r.get(1).map_err(&fail)?,
                        n.max(0) as u64,
                        r.get(3).map_err(&fail)?,
                        r.get(4).map_err(&fail)?,
                    );
                }
            } else {
                // A key the log holds is as the log has it.
                let mut s = tx
                    .prepare("SELECT scope, key, state, at FROM survey")
                    .map_err(&fail)?;
                let mut rows = s.query([]).map_err(&fail)?;
                while let Some(r) = rows.next().map_err(&fail)? {
                    let scope: i64 = r.get(0).map_err(&fail)?;
                    let key = blob::<16>(r.get_ref(1).map_err(&fail)?).map(KeyHash);
                    if key.is_some_and(|k| log.contains_key(&(scope, k))) {
                        continue;
                    }
                    let (state, at): (i64, i64) =
                        (r.get(2).map_err(&fail)?, r.get(3).map_err(&fail)?);
                    if state != GONE {
                        add(scope, state, 1, at, at);
                    }
                }
                for ((scope, _), e) in &log {
                    if e.state != GONE {
                        add(*scope, e.state, 1, e.at, e.at);
                    }
                }
            }
            for ((scope, state), (n, oldest, newest)) in counts {
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

    /// [`Store::forget`].
    pub(super) fn forget_before(&mut self, before: SystemTime) -> Result<Forgotten, LedgerError> {
        let before = unix(before);
        let bytes_before = self.bytes();
        let (path, busy) = (self.path.clone(), self.busy);
        let fail = |e| LedgerError::from_sqlite(&path, "forget surveys in", busy, e);
        // Forgotten in `survey` alone.
        self.fold_now().map_err(fail)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let surveys = tx
            .execute("DELETE FROM survey WHERE at < ?1", params![before])
            .map_err(fail)?;
        // A contact's keys whose survey is gone, or has another contact now.
        tx.execute(
            "DELETE FROM contact WHERE NOT EXISTS (SELECT 1 FROM survey s
                WHERE s.scope = contact.scope AND s.key = contact.key
                    AND s.contact = contact.contact)",
            [],
        )
        .map_err(fail)?;
        let runs = tx
            .execute(
                "DELETE FROM run WHERE (ended IS NOT NULL OR started < ?1)
                    AND id NOT IN (SELECT DISTINCT run FROM survey)
                    AND id NOT IN (SELECT DISTINCT run FROM log)",
                params![before],
            )
            .map_err(fail)?;
        tx.execute(
            "DELETE FROM scope WHERE id NOT IN (SELECT scope FROM run)
                AND id NOT IN (SELECT DISTINCT scope FROM survey)
                AND id NOT IN (SELECT DISTINCT scope FROM log)",
            [],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        self.origins.clear();
        self.recent.reset();
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
