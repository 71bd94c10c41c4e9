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
//!
//! A run's keeper writes a chunk whenever no claim waits ([`Sqlite::tidy_some`]),
//! `ledger import` after each of its commits, and the end of a run finishes
//! the fold under way.

use rusqlite::{params, Connection, TransactionBehavior};

use super::recent::{self, whole_log, Entry, Recent, GONE};
use super::Sqlite;
use crate::ledger::{ContactHash, KeyHash};

/// Rows of a fold written after each commit of `ledger import`, per row
/// it imported: a fold is done well before the log has grown enough for
/// the next...
pub(super) const FOLD_PER_ROW: usize = 4;

/// ...and at least this many.
const FOLD_CHUNK_MIN: usize = 1024;

/// Rows of a fold written per [`Sqlite::tidy_some`]: a millisecond or two
/// that claims wait at most.
const TIDY_CHUNK: usize = 1024;

/// A fold under way.
pub struct Folding {
    upto: i64,
    rows: Rows,
    /// Each contact's keys, by scope, contact and key: listed once every
    /// row is written.
    contacts: Option<Vec<(i64, ContactHash, KeyHash)>>,
    /// How many of the rows, then of `contacts`, are written.
    rows_done: usize,
    contacts_done: usize,
}

/// The keys a fold moves, sorted.
enum Rows {
    /// The log was this connection's scope's alone, and read to its end:
    /// the keys, whose entries it keeps (at least as new as at `upto`).
    Known { scope: i64, keys: Vec<KeyHash> },
    /// Else each key's latest entry up to `upto`, read from the log.
    Read(Vec<((i64, KeyHash), Entry)>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Known { keys, .. } => keys.len(),
            Rows::Read(rows) => rows.len(),
        }
    }

    /// Row `i`: its scope, key and entry; `None` when the entry is no
    /// longer known (the log was read again since: the fold is given up).
    fn get(&self, i: usize, recent: &Recent) -> Option<(i64, KeyHash, Entry)> {
        match self {
            Rows::Known { scope, keys } => {
                let key = keys[i];
                recent.get(&key).map(|e| (*scope, key, *e))
            }
            Rows::Read(rows) => rows.get(i).map(|((scope, key), e)| (*scope, *key, *e)),
        }
    }
}

/// Commits the transaction of a fold's last chunk, with the fold threshold
/// for the ledger's new size; returns how far the log is folded now.
fn end_fold(
    tx: rusqlite::Transaction<'_>,
    recent: &mut Recent,
    fold_min: usize,
) -> rusqlite::Result<i64> {
    recent.size_fold(&tx, fold_min)?;
    let upto = recent::folded(&tx)?;
    tx.commit()?;
    Ok(upto)
}

/// What a chunk did.
pub enum Chunk {
    /// Wrote up to here (rows, then contacts); once both are all written,
    /// it also emptied the log up to `upto`.
    Wrote(usize, usize),
    /// This connection read the log again since the fold began, and knows
    /// its entries no more: the fold is given up (what it wrote stands).
    GivenUp,
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
        let rows = if others == 0 && recent.seen() == upto {
            let mut keys: Vec<KeyHash> = recent.entries().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            Rows::Known {
                scope: recent.scope(),
                keys,
            }
        } else {
            let mut rows: Vec<_> = whole_log(tx)?.1.into_iter().collect();
            rows.sort_unstable_by_key(|r| r.0);
            Rows::Read(rows)
        };
        Ok(Some(Folding {
            upto,
            rows,
            contacts: None,
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
    pub fn write_some(
        &mut self,
        tx: &Connection,
        recent: &Recent,
        budget: usize,
    ) -> rusqlite::Result<Chunk> {
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
            let end = rows_done.saturating_add(left).min(self.rows.len());
            for i in rows_done..end {
                let Some((scope, key, e)) = self.rows.get(i, recent) else {
                    return Ok(Chunk::GivenUp);
                };
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
        if left > 0 && rows_done == self.rows.len() {
            if self.contacts.is_none() {
                let mut contacts = Vec::new();
                for i in 0..self.rows.len() {
                    let Some((scope, key, e)) = self.rows.get(i, recent) else {
                        return Ok(Chunk::GivenUp);
                    };
                    if let (Some(c), false) = (e.contact, e.state == GONE) {
                        contacts.push((scope, c, key));
                    }
                }
                contacts.sort_unstable();
                self.contacts = Some(contacts);
            }
            let contacts = self.contacts.as_deref().unwrap_or_default();
            let mut add = tx.prepare_cached(
                "INSERT INTO contact (scope, contact, key) VALUES (?1, ?2, ?3)
                    ON CONFLICT DO NOTHING",
            )?;
            let end = contacts_done.saturating_add(left).min(contacts.len());
            for (scope, contact, key) in &contacts[contacts_done..end] {
                add.execute(params![scope, &contact.0[..], &key.0[..]])?;
            }
            contacts_done = end;
        }
        if self.complete(rows_done, contacts_done) {
            tx.prepare_cached("DELETE FROM log WHERE seq <= ?1")?
                .execute(params![self.upto])?;
            tx.prepare_cached(
                "INSERT INTO meta (name, value) VALUES ('folded', ?1)
                    ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute(params![self.upto])?;
        }
        Ok(Chunk::Wrote(rows_done, contacts_done))
    }

    /// Whether a chunk that got this far got to the end (and emptied the log).
    pub fn complete(&self, rows_done: usize, contacts_done: usize) -> bool {
        rows_done == self.rows.len()
            && self
                .contacts
                .as_ref()
                .is_some_and(|c| contacts_done == c.len())
    }

    /// After the transaction of [`Folding::write_some`] committed.
    pub fn written(&mut self, rows_done: usize, contacts_done: usize) {
        self.rows_done = rows_done;
        self.contacts_done = contacts_done;
    }
}

impl Sqlite {
    /// The next chunk of the fold under way (see above), of about `budget`
    /// rows, starting one once the log holds enough keys. Not synced: the
    /// next synced commit carries it, and a chunk lost to a power cut
    /// leaves the log as it was. A chunk that fails changes nothing and is
    /// only worth a warning: the fold is given up, and its rows are found
    /// in the log.
    pub(super) fn fold_along(&mut self, budget: usize) {
        let budget = self
            .fold_chunk
            .unwrap_or_else(|| budget.max(FOLD_CHUNK_MIN));
        if let Err(e) = self.fold_chunk(budget) {
            self.recent.reset();
            // Not again before twice as many rows.
            self.recent.fold_at = self.recent.fold_at.saturating_mul(2);
            tracing::warn!(ledger = %self.path.display(), "could not reorganise the ledger (its surveys are all still there): {e}");
        }
    }

    /// One chunk; the fold under way is given up on any error.
    fn fold_chunk(&mut self, budget: usize) -> rusqlite::Result<()> {
        if self.folding.is_none() && self.recent.len() >= self.recent.fold_at {
            let tx = self.conn.transaction()?;
            self.folding = Folding::start(&tx, &self.recent)?;
            tx.commit()?;
        }
        let Some(mut job) = self.folding.take() else {
            return Ok(());
        };
        self.set_synchronous(false)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Chunk::Wrote(rows, contacts) = job.write_some(&tx, &self.recent, budget)? else {
            tracing::debug!("ledger: a fold given up, the log having been read again");
            return Ok(());
        };
        if !job.complete(rows, contacts) {
            tx.commit()?;
            job.written(rows, contacts);
            self.folding = Some(job);
            self.committed(false);
            return Ok(());
        }
        let upto = end_fold(tx, &mut self.recent, self.fold_min)?;
        self.recent.folded_up_to(upto);
        self.committed(true);
        tracing::debug!(moved = job.len(), "ledger: recent surveys folded");
        Ok(())
    }

    /// Folds the whole log now, in one transaction.
    pub(super) fn fold_now(&mut self) -> rusqlite::Result<()> {
        self.folding = None;
        let done = self.set_synchronous(false).and_then(|()| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(mut job) = Folding::start(&tx, &self.recent)? {
                // The log cannot be read again during the transaction.
                job.write_some(&tx, &self.recent, usize::MAX)?;
            }
            end_fold(tx, &mut self.recent, self.fold_min)
        });
        match done {
            Ok(upto) => {
                self.recent.folded_up_to(upto);
                self.committed(true);
                Ok(())
            }
            Err(e) => {
                self.recent.reset();
                Err(e)
            }
        }
    }

    /// [`Sqlite::fold_now`], a failure only worth a warning.
    #[cfg(test)]
    pub(super) fn fold_recent(&mut self) {
        if let Err(e) = self.fold_now() {
            tracing::warn!(ledger = %self.path.display(), "could not reorganise the ledger: {e}");
        }
    }

    /// [`Store::tidy`](crate::ledger::Store::tidy): a chunk of the fold
    /// under way, or due.
    pub(super) fn tidy_some(&mut self) -> bool {
        if self.folding.is_none() && self.recent.len() < self.recent.fold_at {
            return false;
        }
        self.fold_along(TIDY_CHUNK);
        self.folding.is_some()
    }

    /// Finishes the fold under way, if any (at the end of a run).
    pub(super) fn fold_rest(&mut self) {
        while self.folding.is_some() {
            self.fold_along(usize::MAX);
        }
    }
}
