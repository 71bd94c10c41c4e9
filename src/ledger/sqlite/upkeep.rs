//! What the `ledger` command does with the file: importing the surveys of
//! old results files, statistics, and forgetting old surveys.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{from_unix, int, unix, Sqlite, CREATED, FORMAT, UNKNOWN};
use crate::ledger::{
    Forgotten, ImportCounts, Imported, LedgerError, RunId, Scope, ScopeStats, Stats, Store,
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
            let mut in_survey =
                tx.prepare_cached("SELECT state FROM survey WHERE scope = ?1 AND key = ?2")?;
            // A new key goes where claims go; a known one is upgraded where it is.
            let mut add = tx.prepare_cached(
                "INSERT INTO recent (scope, key, state, at, run, row, id, contact)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            // Rows of `recent` are replaced, never changed in place: other
            // connections read only rows added since they last looked.
            let mut replace_recent = tx.prepare_cached(
                "INSERT INTO recent (scope, key, state, at, run, row, id, contact)
                    SELECT scope, key, 1, ?2, ?3, ?4, ?5, coalesce(?6, contact) FROM recent
                    WHERE seq = ?1",
            )?;
            let mut drop_recent = tx.prepare_cached("DELETE FROM recent WHERE seq = ?1")?;
            let mut upgrade_survey = tx.prepare_cached(
                "UPDATE survey SET state = 1, at = ?3, run = ?4, row = ?5, id = ?6,
                    contact = coalesce(?7, contact) WHERE scope = ?1 AND key = ?2",
            )?;
            let mut add_contact = tx.prepare_cached(
                "INSERT INTO contact (scope, contact, key) VALUES (?1, ?2, ?3)
                    ON CONFLICT DO NOTHING",
            )?;
            for i in rows {
                let key = &i.key.0[..];
                let contact = i.contact.as_ref().map(|h| &h.0[..]);
                let (at, row, id) = (unix(i.at), int(i.row), i.id.map(int));
                let (known, seq) = match self.recent.find(&tx, &i.key)? {
                    Some(r) => (Some(r.state), Some(r.seq)),
                    None => (
                        in_survey
                            .query_row(params![run.scope, key], |r| r.get::<_, i64>(0))
                            .optional()?,
                        None,
                    ),
                };
                match known {
                    None => {
                        counts.added += 1;
                        let state = if i.created { CREATED } else { UNKNOWN };
                        add.execute(params![
                            run.scope, key, state, at, run.run, row, id, contact
                        ])?;
                        self.recent.note(tx.last_insert_rowid(), i.key, i.contact);
                    }
                    Some(s) if s != CREATED && i.created => {
                        counts.upgraded += 1;
                        match seq {
                            Some(seq) => {
                                replace_recent
                                    .execute(params![seq, at, run.run, row, id, contact])?;
                                drop_recent.execute(params![seq])?;
                                self.recent.note(tx.last_insert_rowid(), i.key, i.contact);
                            }
                            None => {
                                upgrade_survey.execute(params![
                                    run.scope, key, at, run.run, row, id, contact
                                ])?;
                                if let Some(contact) = contact {
                                    add_contact.execute(params![run.scope, contact, key])?;
                                }
                            }
                        }
                    }
                    Some(_) => counts.known += 1,
                }
            }
            drop((
                in_survey,
                add,
                replace_recent,
                drop_recent,
                upgrade_survey,
                add_contact,
            ));
            tx.commit()?;
            Ok(counts)
        })();
        let counts = counts.map_err(|e| {
            self.recent.reset();
            fail(e)
        })?;
        self.committed(false);
        if self.recent.len() >= self.recent.fold_at {
            self.fold_recent();
        }
        Ok(counts)
    }

    /// [`Store::stats`].
    pub(super) fn count(&mut self) -> Result<Stats, LedgerError> {
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
            // A key is in one of the two tables, never both.
            let mut s = self
                .conn
                .prepare(
                    "SELECT scope, state, count(*), min(at), max(at) FROM (
                        SELECT scope, state, at FROM survey
                        UNION ALL SELECT scope, state, at FROM recent
                    ) GROUP BY scope, state",
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

    /// [`Store::forget`].
    pub(super) fn forget_before(&mut self, before: SystemTime) -> Result<Forgotten, LedgerError> {
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
            .map_err(fail)?
            + tx.execute("DELETE FROM recent WHERE at < ?1", params![before])
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
                    AND id NOT IN (SELECT DISTINCT run FROM recent)",
                params![before],
            )
            .map_err(fail)?;
        tx.execute(
            "DELETE FROM scope WHERE id NOT IN (SELECT scope FROM run)
                AND id NOT IN (SELECT DISTINCT scope FROM survey)
                AND id NOT IN (SELECT DISTINCT scope FROM recent)",
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
