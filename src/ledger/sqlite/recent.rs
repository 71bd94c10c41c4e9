//! The ledger's recent surveys: the half that claims and outcomes write.
//!
//! `survey` is ordered by key, and keys are random: a row written there
//! rewrites a page of its own (two, with its contact), so a commit of
//! twenty claims wrote about fifty pages. `recent` is ordered by `seq`, the
//! order rows arrive in: a commit writes its rows into the one or two pages
//! at the table's end. Once it holds enough rows, a *fold* moves them into
//! `survey` in key order, and their contacts into `contact` in contact
//! order, in one transaction: each of the two is written from its start to
//! its end, each page once for many rows. (Before format 3 contacts were an
//! index of `survey`, written in key order, so in no order at all: a page
//! per row, and once the index outgrew SQLite's cache, a page read and
//! written per row. That was half of what a fold cost.)
//!
//! `recent` has no index on its key. Each connection keeps one in memory
//! instead ([`Recent`]): for one scope, the `seq` of every key (and, when
//! asked for, every contact) up to the highest `seq` it has read. Before
//! each lookup it reads the rows added since, inside the same transaction,
//! so it never misses one: `seq` only grows (`AUTOINCREMENT`: a number is
//! never given twice, even after its row is deleted). What it remembers
//! can be stale (the row released, taken over, folded or forgotten since):
//! every hit is read back and checked, and a miss falls through to
//! `survey`.
//!
//! A key is in at most one of the two tables: rows enter `recent` only for
//! keys `survey` does not hold, and a key found in `survey` is updated there.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::ledger::{ContactHash, KeyHash};

/// Fold `recent` into `survey` once it holds this many rows, or a quarter
/// of `survey`, whichever is more (a fold rewrites about every page of
/// `survey`: the larger the ledger, the more rows it should move)...
pub const FOLD_ROWS: usize = 65_536;

/// ...but never waits for more than this many: each costs the memory of
/// one entry here, about 40 bytes, and a fold holds the ledger's write
/// lock while it moves them (about a second for 250,000 rows into a
/// million, well within another process's busy timeout).
const FOLD_ROWS_MAX: usize = 1 << 18;

/// Keys and contacts are keyed hashes, as evenly spread as any hash of
/// them: their first eight bytes serve as the table's hash.
#[derive(Default)]
pub struct Prefix(u64);

impl std::hash::Hasher for Prefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Called once, with the whole array (see `KeyHash`'s `Hash`).
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(b);
    }

    fn write_usize(&mut self, _: usize) {}
}

type Fast = BuildHasherDefault<Prefix>;

/// What one connection knows of `recent`, for one scope.
pub struct Recent {
    scope: i64,
    /// The highest `seq` read from the table (`0`: none).
    seen: i64,
    keys: HashMap<KeyHash, i64, Fast>,
    /// Kept only once a lookup by contact is asked for.
    contacts: Option<HashMap<ContactHash, Vec<i64>, Fast>>,
    /// Fold at this many rows.
    pub fold_at: usize,
    /// The file's `data_version` when last read up to date: while it stays
    /// the same, no other connection has written, and nothing is read.
    version: Option<i64>,
    /// The highest `seq` this connection added in its current transaction.
    added: i64,
}

/// A row of `recent`, read back by its `seq`.
pub struct Row {
    pub seq: i64,
    pub state: i64,
    pub at: i64,
    pub run: i64,
    pub row: i64,
    pub id: Option<i64>,
}

const READ: &str = "SELECT state, at, run, row, id, key, contact FROM recent
    WHERE seq = ?1 AND scope = ?2";

impl Recent {
    pub fn new(fold_at: usize) -> Recent {
        Recent {
            scope: -1,
            seen: 0,
            keys: HashMap::default(),
            contacts: None,
            fold_at,
            version: None,
            added: 0,
        }
    }

    /// Forgets everything: the next [`Recent::catch_up`] reads the table
    /// again from its start. After a failed transaction, whose own rows
    /// may be remembered here and not be in the file.
    pub fn reset(&mut self) {
        self.scope = -1;
        self.seen = 0;
        self.keys = HashMap::default();
        self.contacts = None;
        self.version = None;
        self.added = 0;
    }

    /// Reads the rows added since the last call, in `tx` (the transaction
    /// the lookups that follow are made in).
    pub fn catch_up(
        &mut self,
        tx: &Connection,
        scope: i64,
        contacts: bool,
    ) -> rusqlite::Result<()> {
        if self.scope != scope || (contacts && self.contacts.is_none()) {
            self.reset();
            self.scope = scope;
            if contacts {
                self.contacts = Some(HashMap::default());
            }
        }
        // SQLite's count of other connections' commits.
        let version: i64 = tx
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.version == Some(version) {
            return Ok(());
        }
        self.version = Some(version);
        let mut s = tx.prepare_cached(
            "SELECT seq, scope, key, contact FROM recent WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = s.query(params![self.seen])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            self.seen = self.seen.max(seq);
            if r.get::<_, i64>(1)? != scope {
                continue;
            }
            // A key or contact of another length matches nothing asked.
            if let Some(key) = blob::<16>(r.get_ref(2)?) {
                self.keys.insert(KeyHash(key), seq);
            }
            if let (Some(map), Some(c)) = (self.contacts.as_mut(), blob::<8>(r.get_ref(3)?)) {
                map.entry(ContactHash(c)).or_default().push(seq);
            }
        }
        Ok(())
    }

    /// Remembers a row this transaction added (or took over for a new contact).
    pub fn note(&mut self, seq: i64, key: KeyHash, contact: Option<ContactHash>) {
        self.added = self.added.max(seq);
        self.keys.insert(key, seq);
        if let (Some(map), Some(c)) = (self.contacts.as_mut(), contact) {
            let seqs = map.entry(c).or_default();
            if !seqs.contains(&seq) {
                seqs.push(seq);
            }
        }
    }

    /// After this connection's commit: the rows it added are known up to
    /// date (it held the write lock from its reading to its commit).
    pub fn committed(&mut self) {
        self.seen = self.seen.max(self.added);
        self.added = 0;
    }

    /// Where `key`'s row in `recent` was last seen; the caller's statement
    /// checks it is still there (`WHERE seq = ? AND key = ?`).
    pub fn seq_of(&self, key: &KeyHash) -> Option<i64> {
        self.keys.get(key).copied()
    }

    /// The row of `key` in `recent`, if it has one.
    pub fn find(&self, tx: &Connection, key: &KeyHash) -> rusqlite::Result<Option<Row>> {
        let Some(&seq) = self.keys.get(key) else {
            return Ok(None);
        };
        Ok(match self.read(tx, seq)? {
            Some((row, Some(k), _)) if k == key.0 => Some(row),
            _ => None,
        })
    }

    /// The latest row of `contact` in `recent` at or after `since`, other
    /// than `key`'s, `created` (or, with `unknown_too`, any state). Needs
    /// [`Recent::catch_up`] with `contacts`.
    pub fn latest_of_contact(
        &self,
        tx: &Connection,
        contact: &ContactHash,
        since: i64,
        key: &KeyHash,
        unknown_too: bool,
    ) -> rusqlite::Result<Option<Row>> {
        let Some(seqs) = self.contacts.as_ref().and_then(|m| m.get(contact)) else {
            return Ok(None);
        };
        let mut best: Option<Row> = None;
        for &seq in seqs {
            let Some((row, k, c)) = self.read(tx, seq)? else {
                continue;
            };
            if c != Some(contact.0) || k == Some(key.0) || row.at < since {
                continue;
            }
            if row.state != super::CREATED && !unknown_too {
                continue;
            }
            if best.as_ref().is_none_or(|b| row.at >= b.at) {
                best = Some(row);
            }
        }
        Ok(best)
    }

    /// The row at `seq`, if it is still there, with its key and contact
    /// (`None` when not of their length), for the caller to check.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        tx: &Connection,
        seq: i64,
    ) -> rusqlite::Result<Option<(Row, Option<[u8; 16]>, Option<[u8; 8]>)>> {
        tx.prepare_cached(READ)?
            .query_row(params![seq, self.scope], |r| {
                Ok((
                    Row {
                        seq,
                        state: r.get(0)?,
                        at: r.get(1)?,
                        run: r.get(2)?,
                        row: r.get(3)?,
                        id: r.get(4)?,
                    },
                    blob::<16>(r.get_ref(5)?),
                    blob::<8>(r.get_ref(6)?),
                ))
            })
            .optional()
    }

    /// How many rows this connection knows of (some may be gone since).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Moves every row of `recent` into `survey`, in key order, in `tx`;
    /// returns how many. What this connection remembers goes with them.
    pub fn fold(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<usize> {
        let upto: Option<i64> = tx.query_row("SELECT max(seq) FROM recent", [], |r| r.get(0))?;
        let Some(upto) = upto else {
            // Empty: whatever is remembered is gone (and `seen` stays).
            self.forget_up_to(self.seen);
            return Ok(0);
        };
        // A key is never in both tables; should it be, `recent` is newer.
        let moved = tx.execute(
            "INSERT INTO survey (scope, key, state, at, run, row, id, contact)
                SELECT scope, key, state, at, run, row, id, contact FROM recent
                WHERE seq <= ?1 ORDER BY scope, key
             ON CONFLICT (scope, key) DO UPDATE SET state = excluded.state,
                at = excluded.at, run = excluded.run, row = excluded.row, id = excluded.id,
                contact = excluded.contact",
            params![upto],
        )?;
        // Each key under its contact, in contact order.
        tx.execute(
            "INSERT INTO contact (scope, contact, key)
                SELECT scope, contact, key FROM recent
                WHERE seq <= ?1 AND contact IS NOT NULL ORDER BY scope, contact, key
             ON CONFLICT DO NOTHING",
            params![upto],
        )?;
        tx.execute("DELETE FROM recent WHERE seq <= ?1", params![upto])?;
        self.forget_up_to(upto);
        Ok(moved)
    }

    fn forget_up_to(&mut self, upto: i64) {
        self.keys.retain(|_, seq| *seq > upto);
        if let Some(map) = self.contacts.as_mut() {
            map.retain(|_, seqs| {
                seqs.retain(|s| *s > upto);
                !seqs.is_empty()
            });
        }
        self.seen = self.seen.max(upto);
    }

    /// Sets the fold threshold from the size of `survey` (estimated from
    /// the file's pages: about 90 bytes a survey).
    pub fn size_fold(&mut self, tx: &Connection, minimum: usize) -> rusqlite::Result<()> {
        let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = tx.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let surveys = (pages.max(0) as u64 * size.max(0) as u64 / 90) as usize;
        self.fold_at = fold_threshold(surveys, minimum);
        Ok(())
    }
}

/// When to fold a ledger of about `surveys`: at `minimum` rows, but a
/// ledger larger than a quarter of a million surveys or so waits for a
/// quarter of itself (at most [`FOLD_ROWS_MAX`]).
fn fold_threshold(surveys: usize, minimum: usize) -> usize {
    let scaled = (surveys / 4).min(FOLD_ROWS_MAX);
    if scaled > FOLD_ROWS {
        minimum.max(scaled)
    } else {
        minimum
    }
}

/// A blob of exactly `N` bytes.
pub(super) fn blob<const N: usize>(v: rusqlite::types::ValueRef<'_>) -> Option<[u8; N]> {
    match v {
        rusqlite::types::ValueRef::Blob(b) => b.try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_ledger_folds_less_often_and_a_set_minimum_holds() {
        // Up to a quarter of a million surveys or so: the minimum, however small.
        assert_eq!(fold_threshold(0, FOLD_ROWS), FOLD_ROWS);
        assert_eq!(fold_threshold(250_000, FOLD_ROWS), FOLD_ROWS);
        assert_eq!(fold_threshold(250_000, 5), 5);
        // Beyond, a quarter of the ledger...
        assert_eq!(fold_threshold(800_000, FOLD_ROWS), 200_000);
        assert_eq!(fold_threshold(800_000, 5), 200_000);
        // ...never more than the cap, nor less than a larger minimum.
        assert_eq!(fold_threshold(100_000_000, FOLD_ROWS), FOLD_ROWS_MAX);
        assert_eq!(fold_threshold(800_000, 300_000), 300_000);
    }

    #[test]
    fn the_prefix_hash_is_the_first_eight_bytes() {
        use std::hash::Hasher;
        let mut h = Prefix::default();
        h.write_usize(16);
        h.write(&[1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(h.finish(), 1);
    }
}
