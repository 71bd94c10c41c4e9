//! The ledger's log: what claims, outcomes and imports write, and what
//! each connection knows of it.
//!
//! `survey` is ordered by key, and keys are random: a row written there
//! rewrites a page of its own (two, with its contact). So a transaction
//! never writes `survey` row by row. It appends *one* row to `log`: the
//! whole rows, as they now stand, of every key it changed (a claim, an
//! outcome, an import), packed in a blob ([`Entry`]). A commit of 256
//! claims and 256 outcomes writes a few pages at the log's end, and runs
//! two statements instead of 512.
//!
//! Each connection keeps, for its scope, every key the log holds with its
//! latest row ([`Recent`]): before each lookup it reads the log rows added
//! since (`seq` only grows: `AUTOINCREMENT` never gives a number twice),
//! inside the same transaction, so it never misses one. A key the log
//! holds is answered from memory: the log is newer than `survey`. Any
//! other key is looked up in `survey`, unless the connection's filter of
//! `survey`'s keys says it is certainly not there.
//!
//! Once the log holds enough keys, a *fold* moves it into `survey` and
//! `contact` (see `fold.rs`), then empties the log up to the `seq` it
//! started from and records that `seq` in `meta` (`folded`). A connection
//! that finds `folded` changed forgets what it knew and reads what is left
//! of the log again.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use fastbloom::BloomFilter;
use rusqlite::{params, Connection, OptionalExtension};

use super::{CREATED, IN_FLIGHT};
use crate::ledger::{ContactHash, KeyHash};

/// Fold the log once it holds this many keys, or a quarter of `survey`,
/// whichever is more (a fold rewrites about every page of `survey`: the
/// larger the ledger, the more rows it should move)...
pub const FOLD_ROWS: usize = 65_536;

/// ...but never waits for more than this many: each costs the memory of
/// one entry here, about 100 bytes, and a fold holds the ledger's write
/// lock while it moves them (about a second for 250,000 rows into a
/// million, well within another process's busy timeout).
const FOLD_ROWS_MAX: usize = 1 << 18;

/// In the log only: the key's claim was released, it has no row.
pub const GONE: i64 = 3;

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

pub type Fast = BuildHasherDefault<Prefix>;

/// A key's row as the log has it: the whole of it, as in `survey`, or
/// [`GONE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub state: i64,
    pub at: i64,
    pub run: i64,
    pub row: i64,
    pub id: Option<i64>,
    pub contact: Option<ContactHash>,
}

/// An entry's size in a log blob: key (16), state (1), which of id and
/// contact it has (1), at, row and id (8 each, little-endian), contact (8).
/// The run is the log row's.
const ENTRY_BYTES: usize = 50;

const HAS_ID: u8 = 1;
const HAS_CONTACT: u8 = 2;

fn encode(out: &mut Vec<u8>, key: &KeyHash, e: &Entry) {
    out.extend_from_slice(&key.0);
    out.push(e.state as u8);
    let flags =
        if e.id.is_some() { HAS_ID } else { 0 } | if e.contact.is_some() { HAS_CONTACT } else { 0 };
    out.push(flags);
    out.extend_from_slice(&e.at.to_le_bytes());
    out.extend_from_slice(&e.row.to_le_bytes());
    out.extend_from_slice(&e.id.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&e.contact.map_or([0; 8], |c| c.0));
}

/// The entries of a log row written by `run`, in order.
fn decode(blob: &[u8], run: i64) -> rusqlite::Result<impl Iterator<Item = (KeyHash, Entry)> + '_> {
    if !blob.len().is_multiple_of(ENTRY_BYTES) {
        return Err(damaged(format!(
            "a log row of {} bytes, not a whole number of entries",
            blob.len()
        )));
    }
    if let Some(bad) = blob
        .chunks_exact(ENTRY_BYTES)
        .map(|c| c[16] as i64)
        .find(|s| !(IN_FLIGHT..=GONE).contains(s))
    {
        return Err(damaged(format!("a log entry in state {bad}")));
    }
    Ok(blob.chunks_exact(ENTRY_BYTES).map(move |c| {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[at..at + 8]);
            w
        };
        let mut key = [0u8; 16];
        key.copy_from_slice(&c[..16]);
        let flags = c[17];
        (
            KeyHash(key),
            Entry {
                state: c[16] as i64,
                at: i64::from_le_bytes(word(18)),
                run,
                row: i64::from_le_bytes(word(26)),
                id: (flags & HAS_ID != 0).then(|| i64::from_le_bytes(word(34))),
                contact: (flags & HAS_CONTACT != 0).then(|| ContactHash(word(42))),
            },
        )
    }))
}

/// The entries of a row of `SELECT seq, scope, run, entries FROM log`.
fn entries_of<'r>(
    r: &'r rusqlite::Row<'_>,
) -> rusqlite::Result<impl Iterator<Item = (KeyHash, Entry)> + 'r> {
    let run: i64 = r.get(2)?;
    let rusqlite::types::ValueRef::Blob(blob) = r.get_ref(3)? else {
        return Err(damaged("a log row that is not a blob".into()));
    };
    decode(blob, run)
}

fn damaged(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        format!("the ledger is damaged: {what}").into(),
    )
}

/// What one connection knows of the log, for one scope.
pub struct Recent {
    scope: i64,
    /// The highest `seq` read from the log (`0`: none).
    seen: i64,
    /// `meta.folded` as last read.
    folded: i64,
    keys: HashMap<KeyHash, Entry, Fast>,
    /// Every key each contact has had in the log (some have another
    /// contact since: the key's entry decides). Kept only once a lookup by
    /// contact is asked for.
    contacts: Option<HashMap<ContactHash, Vec<KeyHash>, Fast>>,
    /// Fold at this many keys.
    pub fold_at: usize,
    /// The file's `data_version` when last read up to date: while it stays
    /// the same, no other connection has written, and nothing is read.
    version: Option<i64>,
    /// The entries this transaction wrote, appended as one log row at its end.
    pending: Vec<u8>,
    /// The `seq` of the row this transaction appended.
    added: i64,
    /// Which keys `survey` may hold (see [`Recent::may_be_in_survey`]).
    filter: Option<Filter>,
    /// Lookups since the filter was last dropped.
    lookups: usize,
    /// Make the filter after this many.
    filter_after: usize,
}

/// A Bloom filter of every key of this connection's scope in `survey` when
/// it was made, and of every key read from the log or written to it since
/// (all a fold can move into `survey`). No key of `survey` is ever missing
/// from it: it is dropped whenever the log may have been folded past rows
/// this connection never read.
struct Filter {
    bloom: BloomFilter<Fast>,
    /// Keys it was made for, and how many it holds.
    room: usize,
    held: usize,
}

/// Lookups after which a filter is made (a short run does without it).
pub const FILTER_AFTER: usize = 4096;

impl Recent {
    pub fn new(fold_at: usize, filter_after: usize) -> Recent {
        Recent {
            scope: -1,
            seen: 0,
            folded: 0,
            keys: HashMap::default(),
            contacts: None,
            fold_at,
            version: None,
            pending: Vec::new(),
            added: 0,
            filter: None,
            lookups: 0,
            filter_after,
        }
    }

    /// Forgets everything: the next [`Recent::catch_up`] reads the log
    /// again from its start. After a failed transaction, whose own entries
    /// are remembered here and not in the file.
    pub fn reset(&mut self) {
        self.scope = -1;
        self.seen = 0;
        self.folded = 0;
        self.keys = HashMap::default();
        self.contacts = None;
        self.version = None;
        self.pending.clear();
        self.added = 0;
        self.filter = None;
        self.lookups = 0;
    }

    /// Reads the log rows added since the last call, in `tx` (the
    /// transaction the lookups that follow are made in).
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
        let folded = folded(tx)?;
        if folded != self.folded {
            // Folded since: the log up to `folded` is in `survey`, and what
            // is left of it is read again.
            self.forget_to(folded);
        }
        let mut s = tx.prepare_cached(
            "SELECT seq, scope, run, entries FROM log WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = s.query(params![self.seen])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            self.seen = self.seen.max(seq);
            if r.get::<_, i64>(1)? != scope {
                continue;
            }
            for (key, entry) in entries_of(r)? {
                self.apply(key, entry);
            }
        }
        Ok(())
    }

    fn apply(&mut self, key: KeyHash, entry: Entry) {
        if let (Some(map), Some(c)) = (self.contacts.as_mut(), entry.contact) {
            let keys = map.entry(c).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if self.keys.insert(key, entry).is_some() {
            return;
        }
        // A key new here.
        if let Some(f) = self.filter.as_mut() {
            f.bloom.insert_hash(key.prefix());
            f.held += 1;
            if f.held > f.room {
                // Full: made again, larger.
                self.filter = None;
                self.lookups = 0;
            }
        }
    }

    /// Writes `key`'s row (by this connection's run): known at once here,
    /// in the file once [`Recent::append`] runs, before the commit.
    pub fn write(&mut self, key: KeyHash, entry: Entry) {
        encode(&mut self.pending, &key, &entry);
        self.apply(key, entry);
    }

    /// Appends what this transaction wrote as one log row, by `run`.
    pub fn append(&mut self, tx: &Connection, run: i64) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        tx.prepare_cached("INSERT INTO log (scope, run, entries) VALUES (?1, ?2, ?3)")?
            .execute(params![self.scope, run, &self.pending[..]])?;
        self.added = tx.last_insert_rowid();
        self.pending.clear();
        Ok(())
    }

    /// After this connection's commit: the row it added is known up to
    /// date (it held the write lock from its reading to its commit).
    pub fn committed(&mut self) {
        self.seen = self.seen.max(self.added);
        self.added = 0;
    }

    /// `key`'s row in the log, if it has one: `Some` of a [`GONE`] entry
    /// when its claim was released since it was last folded.
    pub fn get(&self, key: &KeyHash) -> Option<&Entry> {
        self.keys.get(key)
    }

    /// The latest row of `contact` in the log at or after `since`, other
    /// than `key`'s, `created` (or, with `unknown_too`, any state). Needs
    /// [`Recent::catch_up`] with `contacts`.
    pub fn latest_of_contact(
        &self,
        contact: &ContactHash,
        since: i64,
        key: &KeyHash,
        unknown_too: bool,
    ) -> Option<Entry> {
        let keys = self.contacts.as_ref()?.get(contact)?;
        let mut best: Option<Entry> = None;
        for k in keys {
            let Some(e) = self.keys.get(k) else {
                continue;
            };
            if e.contact != Some(*contact) || k == key || e.at < since || e.state == GONE {
                continue;
            }
            if e.state != CREATED && !unknown_too {
                continue;
            }
            if best.as_ref().is_none_or(|b| e.at >= b.at) {
                best = Some(*e);
            }
        }
        best
    }

    /// False when `key` is certainly not in `survey` (of this scope), and
    /// its lookup there can be skipped: most keys claimed are new. After a
    /// few thousand lookups, makes the filter (a read of every key in
    /// `survey`), in `tx`, which must have read the log to its end.
    pub fn may_be_in_survey(&mut self, tx: &Connection, key: &KeyHash) -> rusqlite::Result<bool> {
        if let Some(f) = &self.filter {
            return Ok(f.bloom.contains_hash(key.prefix()));
        }
        self.lookups += 1;
        if self.lookups >= self.filter_after && self.scope >= 0 {
            self.make_filter(tx)?;
        }
        Ok(true)
    }

    fn make_filter(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        let surveys: i64 = tx
            .prepare_cached("SELECT count(*) FROM survey WHERE scope = ?1")?
            .query_row(params![self.scope], |r| r.get(0))?;
        let known = surveys.max(0) as usize + self.keys.len();
        let room = 2 * (known + self.fold_at.min(FOLD_ROWS_MAX));
        // Keys are keyed hashes: their first eight bytes are their hash.
        let mut bloom = BloomFilter::with_false_pos(0.01)
            .hasher(Fast::default())
            .expected_items(room.max(1));
        let mut held = 0;
        let mut s = tx.prepare_cached("SELECT key FROM survey WHERE scope = ?1")?;
        let mut rows = s.query(params![self.scope])?;
        while let Some(r) = rows.next()? {
            if let Some(key) = blob::<16>(r.get_ref(0)?) {
                bloom.insert_hash(KeyHash(key).prefix());
                held += 1;
            }
        }
        for key in self.keys.keys() {
            bloom.insert_hash(key.prefix());
            held += 1;
        }
        self.filter = Some(Filter { bloom, room, held });
        Ok(())
    }

    /// The scope this connection knows the log of (`-1`: none yet).
    pub fn scope(&self) -> i64 {
        self.scope
    }

    /// The highest `seq` read.
    pub fn seen(&self) -> i64 {
        self.seen
    }

    /// Every key known, with its latest entry.
    pub fn entries(&self) -> impl Iterator<Item = (&KeyHash, &Entry)> {
        self.keys.iter()
    }

    /// How many keys this connection knows the log holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// This connection's keys whose entry says `run` claimed them and
    /// never heard back.
    pub fn in_flight_of(&self, run: i64) -> impl Iterator<Item = (&KeyHash, &Entry)> {
        self.keys
            .iter()
            .filter(move |(_, e)| e.run == run && e.state == IN_FLIGHT)
    }

    /// After a fold moved the log up to `upto` into `survey` (this
    /// connection's, just committed): what was known is there now, and
    /// the rows after it are read again.
    pub fn folded_up_to(&mut self, upto: i64) {
        self.forget_to(upto);
    }

    /// Forgets every key, and reads the log again after `upto`.
    fn forget_to(&mut self, upto: i64) {
        if upto > self.seen {
            // Rows never read may be in `survey` now.
            self.filter = None;
            self.lookups = 0;
        }
        self.keys.clear();
        if let Some(map) = self.contacts.as_mut() {
            map.clear();
        }
        self.folded = upto;
        self.seen = upto;
        self.version = None;
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

/// Every scope's keys in the log, each with its latest entry.
pub type Log = HashMap<(i64, KeyHash), Entry, Fast>;

/// The whole log, and the highest `seq` read (`0`: the log is empty).
pub fn whole_log(tx: &Connection) -> rusqlite::Result<(i64, Log)> {
    let mut latest = Log::default();
    let mut upto = 0i64;
    let mut s = tx.prepare_cached("SELECT seq, scope, run, entries FROM log ORDER BY seq")?;
    let mut rows = s.query([])?;
    while let Some(r) = rows.next()? {
        upto = upto.max(r.get(0)?);
        let scope: i64 = r.get(1)?;
        for (key, entry) in entries_of(r)? {
            latest.insert((scope, key), entry);
        }
    }
    Ok((upto, latest))
}

/// The highest `seq` folded so far (`0`: none).
pub fn folded(tx: &Connection) -> rusqlite::Result<i64> {
    Ok(tx
        .prepare_cached("SELECT value FROM meta WHERE name = 'folded'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
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

    #[test]
    fn an_entry_reads_back_as_written_and_a_damaged_row_is_an_error() {
        let key = KeyHash([7; 16]);
        let entries = [
            Entry {
                state: CREATED,
                at: -5,
                run: 9,
                row: 1 << 40,
                id: Some(-1),
                contact: Some(ContactHash([3; 8])),
            },
            Entry {
                state: GONE,
                at: 1_700_000_000,
                run: 9,
                row: 0,
                id: None,
                contact: None,
            },
        ];
        let mut blob = Vec::new();
        for e in &entries {
            encode(&mut blob, &key, e);
        }
        assert_eq!(blob.len(), 2 * ENTRY_BYTES);
        let back: Vec<_> = decode(&blob, 9).unwrap().collect();
        assert_eq!(back, vec![(key, entries[0]), (key, entries[1])]);
        assert!(decode(&blob[1..], 9).is_err());
        blob[16] = 200;
        assert!(decode(&blob, 9).is_err());
    }
}
