//! Folds: moving the log into `survey` and `contact` (see `recent.rs`),
//! a chunk per transaction, so that claims never wait for a whole fold.
//!
//! A fold reads the log once, up to its highest `seq` then (`upto`): each
//! key's latest entry, sorted by key, and each contact's keys, sorted by
//! contact. Each chunk writes the next rows of one list or the other: a
//! run of neighbouring keys (or contacts), so the pages it rewrites are
//! its own, and the whole fold writes each page about once, as a single
//! transaction would. Claims and outcomes go on being appended to the log
//! between chunks. Once both lists are written, the last chunk deletes
//! the log up to `upto` and records it as `folded`, in one transaction.
//!
//! Until then the log still holds every key the fold writes, and the log
//! is read first: a chunk changes no answer. A row of `survey` records the
//! `upto` of the fold that wrote it (its state as of that `seq`), and a
//! chunk never replaces it with an older one. So folds that overlap (another process's, or one
//! left behind by a crash or a failed chunk) can never take a key back to
//! an older state, and deleting the log up to `upto` is safe once one fold
//! has written all of it. A released key is kept in `survey` as a [`GONE`]
//! row, so that an older entry cannot bring it back either; lookups read
//! it as no row.

use rusqlite::{params, Connection};

use super::recent::{whole_log, Entry, Recent, GONE};
use crate::ledger::{ContactHash, KeyHash};

/// A fold under way.
pub struct Folding {
    upto: i64,
    /// Each key's latest entry up to `upto`, by scope and key.
    rows: Vec<((i64, KeyHash), Entry)>,
    /// Each contact's keys, by scope, contact and key.
    contacts: Vec<(i64, ContactHash, KeyHash)>,
    /// How many of `rows`, then of `contacts`, are written.
    rows_done: usize,
    contacts_done: usize,
}

impl Folding {
    /// Starts a fold of the log as it is in `tx`; `None` when it is empty.
    /// Taken from what `recent` knows when it knows the whole log (one
    /// scope's, read to its end), else read from the log.
    pub fn start(tx: &Connection, recent: &Recent) -> rusqlite::Result<Option<Folding>> {
        let (upto, others): (Option<i64>, i64) = tx
            .prepare_cached("SELECT max(seq), count(*) FILTER (WHERE scope <> ?1) FROM log")?
            .query_row(params![recent.scope()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let Some(upto) = upto else {
            return Ok(None);
        };
        let mut rows: Vec<((i64, KeyHash), Entry)> = if others == 0 && recent.seen() == upto {
            recent
                .entries()
                .map(|(k, e)| ((recent.scope(), *k), *e))
                .collect()
        } else {
            whole_log(tx)?.1.into_iter().collect()
        };
        rows.sort_unstable_by_key(|r| r.0);
        let mut contacts: Vec<_> = rows
            .iter()
            .filter(|(_, e)| e.state != GONE)
            .filter_map(|((scope, key), e)| Some((*scope, e.contact?, *key)))
            .collect();
        contacts.sort_unstable();
        Ok(Some(Folding {
            upto,
            rows,
            contacts,
            rows_done: 0,
            contacts_done: 0,
        }))
    }

    /// How many keys it moves.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Writes the next `budget` rows (at least one), in `tx`, a write
    /// transaction; once all are written, empties the log up to `upto`.
    /// Returns how far it got, for [`Folding::written`] once `tx` commits.
    pub fn write_some(&self, tx: &Connection, budget: usize) -> rusqlite::Result<(usize, usize)> {
        let mut left = budget.max(1);
        let (mut rows_done, mut contacts_done) = (self.rows_done, self.contacts_done);
        if rows_done < self.rows.len() {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO survey (scope, key, state, at, run, row, id, contact, seq)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (scope, key) DO UPDATE SET state = excluded.state,
                    at = excluded.at, run = excluded.run, row = excluded.row,
                    id = excluded.id, contact = excluded.contact, seq = excluded.seq
                 WHERE excluded.seq > survey.seq",
            )?;
            let end = (rows_done + left).min(self.rows.len());
            for ((scope, key), e) in &self.rows[rows_done..end] {
                upsert.execute(params![
                    scope,
                    &key.0[..],
                    e.state,
                    e.at,
                    e.run,
                    e.row,
                    e.id,
                    e.contact.as_ref().map(|c| &c.0[..]),
                    self.upto,
                ])?;
            }
            left -= end - rows_done;
            rows_done = end;
        }
        if left > 0 && contacts_done < self.contacts.len() {
            let mut add = tx.prepare_cached(
                "INSERT INTO contact (scope, contact, key) VALUES (?1, ?2, ?3)
                    ON CONFLICT DO NOTHING",
            )?;
            let end = (contacts_done + left).min(self.contacts.len());
            for (scope, contact, key) in &self.contacts[contacts_done..end] {
                add.execute(params![scope, &contact.0[..], &key.0[..]])?;
            }
            contacts_done = end;
        }
        if self.complete((rows_done, contacts_done)) {
            tx.prepare_cached("DELETE FROM log WHERE seq <= ?1")?
                .execute(params![self.upto])?;
            tx.prepare_cached(
                "INSERT INTO meta (name, value) VALUES ('folded', ?1)
                    ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute(params![self.upto])?;
        }
        Ok((rows_done, contacts_done))
    }

    /// Whether [`Folding::write_some`] got to the end (and emptied the log).
    pub fn complete(&self, (rows_done, contacts_done): (usize, usize)) -> bool {
        rows_done == self.rows.len() && contacts_done == self.contacts.len()
    }

    /// After the transaction of [`Folding::write_some`] committed, with
    /// what it returned.
    pub fn written(&mut self, (rows_done, contacts_done): (usize, usize)) {
        self.rows_done = rows_done;
        self.contacts_done = contacts_done;
    }
}
