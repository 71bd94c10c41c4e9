//! The journal: a write-ahead record, beside the results file, of every row
//! about to be sent. It is written and synced before the request leaves, so
//! that after a crash `--resume` knows which rows may have reached DigiDesk.
//!
//! Format: a first line of JSON naming the run (a fingerprint of the input,
//! mapping and selection), then one short line per event:
//! - `s ROW HASH`: the request for ROW, whose content has the fingerprint
//!   HASH (16 hex digits), is about to be sent;
//! - `n ROW`: ROW's request was not created and may be sent again (a 401 that
//!   stopped the run, an interrupt before sending);
//! - `d`: the run completed.
//!
//! A row with an `s` line, no later `n` line and no line in the results file
//! was in flight at the crash: `--resume` records it as `unknown` and never
//! sends it again. A torn last line (power loss mid-write) is ignored: its
//! row's request had not been sent, because sending waits for the sync.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The journal of a results file: `RESULTS.journal`.
pub fn path_for(results: &Path) -> PathBuf {
    let mut name = results
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".journal");
    results.with_file_name(name)
}

/// The first line of a journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// Marks the file as ours and its format version.
    pub digidesk_upload_journal: u32,
    /// What run this is: see `pipeline::fingerprint`.
    pub fingerprint: String,
    /// The command that started the run, for messages.
    pub command: String,
    /// Where the run sends: `--resume` continues only to the same endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// The journal format this version writes.
pub const VERSION: u32 = 2;

/// The largest row number a journal or results file may name: far more rows
/// than any export holds. A larger one is damage, refused with its line.
pub const MAX_ROW: u64 = 1 << 32;

/// Rows journaled as sending, each with the fingerprint of its content
/// (see `results::row_hash`; `None` when the line carried none).
pub type SentRows = HashMap<u64, Option<u64>>;

/// What an existing journal says.
#[derive(Debug, Clone)]
pub struct State {
    pub header: Header,
    /// Rows with an `s` line and no later `n` line.
    pub sent: SentRows,
    /// The run completed.
    pub done: bool,
}

/// The journal being written.
pub struct Journal {
    out: BufWriter<File>,
    path: PathBuf,
    /// Bytes buffered since the last commit.
    pending: bool,
    /// Whether to fsync on commit (off only where durability against power
    /// loss is not wanted, such as the in-memory demo).
    sync: bool,
}

impl Journal {
    /// Starts a new journal, replacing any old one.
    pub fn create(path: &Path, header: &Header) -> Result<Journal, JournalError> {
        let file = File::create(path).map_err(|e| io_error("create the journal", path, e))?;
        let mut j = Journal {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_path_buf(),
            pending: true,
            sync: true,
        };
        let line = serde_json::to_string(header).expect("serialising a header to memory");
        j.write_line(&line)?;
        j.commit()?;
        Ok(j)
    }

    /// Reads an existing journal, cuts off a torn last line, and opens it for appending.
    pub fn resume(path: &Path) -> Result<(Journal, State), JournalError> {
        let (state, good_len) = read(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error("open the journal", path, e))?;
        file.set_len(good_len)
            .map_err(|e| io_error("repair the journal", path, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io_error("open the journal", path, e))?;
        let j = Journal {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_path_buf(),
            pending: false,
            sync: true,
        };
        Ok((j, state))
    }

    /// Turns fsync on commit off or on.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Buffers "about to send ROW, whose content has fingerprint HASH";
    /// [`commit`](Self::commit) before sending.
    pub fn sending(&mut self, row: u64, hash: u64) -> Result<(), JournalError> {
        self.write_line(&format!("s {row} {hash:016x}"))
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers "ROW was not created; it may be sent again".
    pub fn not_sent(&mut self, row: u64) -> Result<(), JournalError> {
        self.write_line(&format!("n {row}"))
    }

    /// Marks the run complete and commits.
    pub fn done(&mut self) -> Result<(), JournalError> {
        self.write_line("d")?;
        self.commit()
    }

    /// Writes everything buffered to the file and syncs it to disk.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        if !self.pending {
            return Ok(());
        }
        self.out
            .flush()
            .map_err(|e| io_error("write the journal", &self.path, e))?;
        if self.sync {
            self.out
                .get_ref()
                .sync_data()
                .map_err(|e| io_error("sync the journal", &self.path, e))?;
        }
        self.pending = false;
        Ok(())
    }

    fn write_line(&mut self, line: &str) -> Result<(), JournalError> {
        self.pending = true;
        self.out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| io_error("write the journal", &self.path, e))
    }
}

/// Reads a journal; returns its state and the length of its intact part.
pub fn read(path: &Path) -> Result<(State, u64), JournalError> {
    let file = File::open(path).map_err(|e| io_error("read the journal", path, e))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut good_len = 0u64;
    let mut header: Option<Header> = None;
    let mut sent = SentRows::new();
    let mut done = false;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error("read the journal", path, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // A torn last line: its write never completed, so its row was never sent.
            break;
        }
        line_no += 1;
        let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap_or("");
        if header.is_none() {
            header = Some(
                serde_json::from_str(text).map_err(|_| JournalError::NotAJournal {
                    path: path.to_path_buf(),
                })?,
            );
        } else if text == "d" {
            done = true;
        } else if let Some((kind, rest)) = text.split_once(' ') {
            let (row, hash) = match rest.split_once(' ') {
                Some((row, hash)) => (row, Some(hash)),
                None => (rest, None),
            };
            let row = row
                .parse::<u64>()
                .ok()
                .filter(|r| (1..=MAX_ROW).contains(r))
                .ok_or_else(|| corrupt(path, line_no))?;
            let hash = match hash {
                Some(h) => Some(u64::from_str_radix(h, 16).map_err(|_| corrupt(path, line_no))?),
                None => None,
            };
            match (kind, hash) {
                ("s", hash) => {
                    sent.insert(row, hash);
                }
                ("n", None) => {
                    sent.remove(&row);
                }
                _ => return Err(corrupt(path, line_no)),
            }
        } else {
            return Err(corrupt(path, line_no));
        }
        good_len += n as u64;
    }
    let header = header.ok_or_else(|| JournalError::Empty {
        path: path.to_path_buf(),
    })?;
    Ok((State { header, sent, done }, good_len))
}

/// What can go wrong with a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a digidesk-upload journal (its first line is not one)", path.display())]
    NotAJournal { path: PathBuf },
    #[error("the journal {} is empty: the previous run stopped before sending anything", path.display())]
    Empty { path: PathBuf },
    #[error("the journal {} is damaged at line {line}; it cannot tell which rows were sent", path.display())]
    Damaged { path: PathBuf, line: u64 },
}

fn corrupt(path: &Path, line: u64) -> JournalError {
    JournalError::Damaged {
        path: path.to_path_buf(),
        line,
    }
}

fn io_error(what: &'static str, path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io {
        what,
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            digidesk_upload_journal: VERSION,
            fingerprint: "f".into(),
            command: "send".into(),
            endpoint: Some("https://example.com/api/survey_requests/".into()),
        }
    }

    #[test]
    fn absurd_row_numbers_are_refused_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv.journal");
        drop(Journal::create(&p, &header()).unwrap());
        let head = std::fs::read_to_string(&p).unwrap();
        for bad in [
            "s 18446744073709551615",
            "s 68719476736 00",
            "s 0",
            "s 3 zz",
            "n 3 00",
        ] {
            std::fs::write(&p, format!("{head}s 1 0a\n{bad}\n")).unwrap();
            let e = read(&p).unwrap_err();
            assert!(e.to_string().contains("line 3"), "{bad}: {e}");
        }
    }

    #[test]
    fn sent_rows_survive_and_not_sent_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv.journal");
        let mut j = Journal::create(&p, &header()).unwrap();
        for r in [1, 2, 3] {
            j.sending(r, r * 16).unwrap();
        }
        j.not_sent(2).unwrap();
        j.commit().unwrap();
        drop(j);
        let (state, _) = read(&p).unwrap();
        assert_eq!(state.sent.get(&1), Some(&Some(16)));
        assert!(!state.sent.contains_key(&2));
        assert_eq!(state.sent.get(&3), Some(&Some(48)));
        assert!(!state.done);
        assert_eq!(state.header, header());
    }

    #[test]
    fn torn_last_line_is_ignored_and_cut_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv.journal");
        let mut j = Journal::create(&p, &header()).unwrap();
        j.sending(7, 1).unwrap();
        j.commit().unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"s 12").unwrap();
        drop(f);
        let (mut j, state) = Journal::resume(&p).unwrap();
        assert!(state.sent.contains_key(&7));
        assert!(!state.sent.contains_key(&12) && !state.sent.contains_key(&1));
        j.sending(8, 2).unwrap();
        j.done().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.ends_with("s 7 0000000000000001\ns 8 0000000000000002\nd\n"),
            "{text}"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        std::fs::write(&p, "hello\n").unwrap();
        assert!(read(&p)
            .unwrap_err()
            .to_string()
            .contains("not a digidesk-upload journal"));
    }
}
