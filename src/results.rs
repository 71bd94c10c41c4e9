//! The results file: every input column, then the `digidesk_*` columns.
//! Whoever decides a row (a worker, or the reader for rows decided without a
//! request) writes its [`Outcome`] through [`Shared`], which keeps the counters.
//!
//! A row's outcome is written to the operating system before its concurrency
//! permit is released, so a crash (even `kill -9`) loses at most the rows that
//! were still in flight, which the journal then marks `unknown`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

/// The columns added after the input's own, in order.
pub const COLUMNS: [&str; 6] = [
    "digidesk_row",
    "digidesk_status",
    "digidesk_id",
    "digidesk_http_status",
    "digidesk_attempts",
    "digidesk_errors",
];

/// How a results file is written: plain (UTF-8, comma, no BOM), or for
/// Excel (a UTF-8 BOM, and the input's delimiter, so that a spreadsheet set
/// to a European locale opens it in columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub delimiter: u8,
    pub bom: bool,
}

impl Default for Format {
    fn default() -> Format {
        Format {
            delimiter: b',',
            bom: false,
        }
    }
}

/// The UTF-8 byte order mark, which tells Excel the file is UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// True for a column the tool writes (and so never maps or copies from input).
pub fn is_result_column(name: &str) -> bool {
    name.trim().to_ascii_lowercase().starts_with("digidesk_")
}

/// A row's status (see "Words" in `docs/design.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Rejected,
    Invalid,
    Skipped,
    Failed,
    Unknown,
    /// Not sent: the ledger knows an earlier survey for this row (its key,
    /// or its contact within `contact_within`); `digidesk_id` is that survey's.
    Duplicate,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Created,
        Status::Rejected,
        Status::Invalid,
        Status::Skipped,
        Status::Failed,
        Status::Unknown,
        Status::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Rejected => "rejected",
            Status::Invalid => "invalid",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether a row with this status counts against exit code 0.
    pub fn is_problem(self) -> bool {
        !matches!(self, Status::Created | Status::Skipped | Status::Duplicate)
    }
}

/// The decided fate of one row, on its way to the results file.
#[derive(Debug)]
pub struct Outcome {
    pub row: u64,
    /// The row's input columns, lined up with the input header (a short row
    /// is padded with empty cells, a long one cut to the header).
    pub fields: csv::StringRecord,
    pub status: Status,
    pub id: Option<u64>,
    pub http: Option<u16>,
    pub attempts: u32,
    pub errors: Vec<String>,
    /// The concurrency slot the row held; released once the outcome is written.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Counts of a run, kept as lines are written and read by progress reports.
#[derive(Debug, Default)]
pub struct Counters {
    by_status: [AtomicU64; Status::ALL.len()],
    /// Requests made, retries included.
    pub requests: AtomicU64,
}

impl Counters {
    pub fn get(&self, s: Status) -> u64 {
        self.by_status[s as usize].load(Ordering::Relaxed)
    }

    pub fn add(&self, s: Status, n: u64) {
        self.by_status[s as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        Status::ALL.iter().map(|s| self.get(*s)).sum()
    }
}

/// What the writer hands back at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Error messages and how often each came; capped in size.
    pub errors: HashMap<String, u64>,
}

/// Most distinct error messages remembered for the summary.
const MAX_DISTINCT_ERRORS: usize = 1000;
const OTHER_ERRORS: &str = "(other messages)";

impl Tally {
    /// Counts a message; a "try N: " prefix is dropped so that the same
    /// failure on different tries counts as one message.
    pub fn count_error(&mut self, message: &str) {
        let message = strip_try(message);
        // Counted without the contact a reason quotes: grouped, and no
        // customer data in the summary.
        let without_value;
        let message = match crate::contact::split_reason(message) {
            Some((kind, _)) => {
                without_value = kind;
                without_value.as_str()
            }
            None => message,
        };
        if let Some(n) = self.errors.get_mut(message) {
            *n += 1;
        } else if self.errors.len() < MAX_DISTINCT_ERRORS {
            self.errors.insert(message.to_string(), 1);
        } else {
            *self.errors.entry(OTHER_ERRORS.to_string()).or_default() += 1;
        }
    }

    /// The most frequent messages, most frequent first.
    pub fn top_errors(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.errors.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// "try 3: HTTP 503: ..." -> "HTTP 503: ...".
fn strip_try(message: &str) -> &str {
    match message
        .strip_prefix("try ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => message,
    }
}

/// The header of a results file for an input with these (kept) columns.
pub fn header_for(input_columns: &[String]) -> Vec<String> {
    input_columns
        .iter()
        .cloned()
        .chain(COLUMNS.iter().map(|c| c.to_string()))
        .collect()
}

/// Joins a row's reasons for the `digidesk_errors` cell: on one line, so the
/// last column of a torn record can always be told from a whole one; and
/// never starting with a character a spreadsheet reads as a formula (a `'`
/// goes in front; see `docs/design.md`).
pub fn errors_cell(errors: &[String]) -> String {
    let joined = errors.join(" | ");
    let joined = if joined.contains(['\n', '\r']) {
        joined.replace("\r\n", " ").replace(['\n', '\r'], " ")
    } else {
        joined
    };
    if joined.starts_with(FORMULA_STARTS) {
        format!("'{joined}")
    } else {
        joined
    }
}

/// First characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 5] = ['=', '+', '-', '@', '\t'];

/// The reasons of an `errors_cell`, as they were.
fn errors_of(cell: &str) -> impl Iterator<Item = &str> {
    let cell = match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    };
    cell.split(" | ").filter(|e| !e.is_empty())
}

/// The one owner of the results file.
pub struct Writer {
    csv: csv::Writer<BufWriter<File>>,
    path: PathBuf,
    width: usize,
    counters: Arc<Counters>,
    tally: Tally,
}

impl Writer {
    /// Creates a new results file and writes its header.
    pub fn create(
        path: &Path,
        header: &[String],
        format: Format,
        counters: Arc<Counters>,
    ) -> Result<Writer, ResultsError> {
        let mut file =
            File::create(path).map_err(|e| io_error("create the results file", path, e))?;
        if format.bom {
            use std::io::Write as _;
            file.write_all(BOM)
                .map_err(|e| io_error("write the results file", path, e))?;
        }
        let mut w = Writer::over(file, path, header.len(), format, counters);
        w.csv
            .write_record(header)
            .map_err(|e| write_error(path, e))?;
        w.flush()?;
        Ok(w)
    }

    /// Appends to a results file whose intact length is `good_len`; a torn
    /// or missing header is written again first.
    pub fn append(
        path: &Path,
        good_len: u64,
        state: HeaderState,
        header: &[String],
        format: Format,
        counters: Arc<Counters>,
    ) -> Result<Writer, ResultsError> {
        if state == HeaderState::Missing {
            put_back_header(path, good_len, header, format)?;
            let mut file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| io_error("open the results file", path, e))?;
            file.seek(std::io::SeekFrom::End(0))
                .map_err(|e| io_error("open the results file", path, e))?;
            return Ok(Writer::over(file, path, header.len(), format, counters));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error("open the results file", path, e))?;
        file.set_len(good_len)
            .map_err(|e| io_error("repair the results file", path, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io_error("open the results file", path, e))?;
        if state == HeaderState::Torn && format.bom {
            use std::io::Write as _;
            file.write_all(BOM)
                .map_err(|e| io_error("write the results file", path, e))?;
        }
        let mut w = Writer::over(file, path, header.len(), format, counters);
        if state == HeaderState::Torn {
            w.csv
                .write_record(header)
                .map_err(|e| write_error(path, e))?;
            w.sync()?;
        }
        Ok(w)
    }

    fn over(
        file: File,
        path: &Path,
        width: usize,
        format: Format,
        counters: Arc<Counters>,
    ) -> Writer {
        let csv = csv::WriterBuilder::new()
            .flexible(false)
            .delimiter(format.delimiter)
            .from_writer(BufWriter::with_capacity(256 * 1024, file));
        Writer {
            csv,
            path: path.to_path_buf(),
            width,
            counters,
            tally: Tally::default(),
        }
    }

    /// Starts the error tally from an earlier run's (for `--resume`).
    pub fn with_tally(mut self, tally: Tally) -> Writer {
        self.tally = tally;
        self
    }

    /// Writes one outcome (buffered; see [`flush`](Self::flush)).
    pub fn write(&mut self, o: &Outcome) -> Result<(), ResultsError> {
        let input_width = self.width - COLUMNS.len();
        let err = |e: csv::Error| write_error(&self.path, e);
        for i in 0..input_width {
            self.csv
                .write_field(o.fields.get(i).unwrap_or(""))
                .map_err(err)?;
        }
        let mut num = itoa::Buffer::new();
        self.csv.write_field(num.format(o.row)).map_err(err)?;
        self.csv.write_field(o.status.as_str()).map_err(err)?;
        self.csv
            .write_field(o.id.map(|i| num.format(i).to_string()).unwrap_or_default())
            .map_err(err)?;
        self.csv
            .write_field(
                o.http
                    .map(|h| num.format(h).to_string())
                    .unwrap_or_default(),
            )
            .map_err(err)?;
        self.csv.write_field(num.format(o.attempts)).map_err(err)?;
        self.csv.write_field(errors_cell(&o.errors)).map_err(err)?;
        self.csv.write_record(None::<&[u8]>).map_err(err)?;
        self.counters.add(o.status, 1);
        if o.status.is_problem() {
            for e in &o.errors {
                self.tally.count_error(e);
            }
        }
        Ok(())
    }

    /// Hands everything written to the operating system: it survives a
    /// killed process. Syncing to disk is [`Shared::sync`]'s, once a second
    /// and off the network threads, and [`sync`](Self::sync)'s at the end.
    pub fn flush(&mut self) -> Result<(), ResultsError> {
        self.csv
            .flush()
            .map_err(|e| io_error("write the results file", &self.path, e))
    }

    /// Flushes and syncs to disk.
    pub fn sync(&mut self) -> Result<(), ResultsError> {
        self.csv
            .flush()
            .map_err(|e| io_error("write the results file", &self.path, e))?;
        self.csv
            .get_ref()
            .get_ref()
            .sync_data()
            .map_err(|e| io_error("sync the results file", &self.path, e))
    }
}

/// The results file, shared by every thread that decides rows: whoever
/// decides a row writes its line and hands it to the operating system under
/// a lock, and only then releases the row's permit (dropping the outcome).
/// No thread hand-off per row.
pub struct Shared {
    state: Mutex<SharedState>,
    /// The same file, to sync without taking the lock (`None` if the
    /// handle could not be duplicated: then it is synced at the end only).
    file: Option<File>,
    path: PathBuf,
}

struct SharedState {
    writer: Writer,
    /// The first write error; nothing more is written after it.
    failed: Option<ResultsError>,
}

impl Shared {
    pub fn new(writer: Writer) -> Shared {
        let file = writer.csv.get_ref().get_ref().try_clone().ok();
        let path = writer.path.clone();
        Shared {
            state: Mutex::new(SharedState {
                writer,
                failed: None,
            }),
            file,
            path,
        }
    }

    /// Syncs the lines handed to the operating system so far to disk,
    /// without holding up writers. A failure stops further writing, as a
    /// write error does.
    pub fn sync(&self) {
        let Some(file) = &self.file else { return };
        if let Err(e) = file.sync_data() {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.failed.is_none() {
                state.failed = Some(io_error("sync the results file", &self.path, e));
            }
        }
    }

    /// Writes one outcome. `false` when the results file has failed: the
    /// row stays in flight in the journal (`unknown` on resume) and the run
    /// must stop.
    pub fn record(&self, outcome: Outcome) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.failed.is_some() {
            return false;
        }
        let written = state
            .writer
            .write(&outcome)
            .and_then(|_| state.writer.flush());
        let ok = match written {
            Ok(()) => true,
            Err(e) => {
                state.failed = Some(e);
                false
            }
        };
        drop(state);
        // Dropping the outcome releases its permit: only now is the row out
        // of flight.
        drop(outcome);
        ok
    }

    /// Syncs the file and returns the tally, or the first write error.
    pub fn finish(&self) -> Result<Tally, ResultsError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.failed.take() {
            return Err(e);
        }
        state.writer.sync()?;
        Ok(std::mem::take(&mut state.writer.tally))
    }
}

/// What an existing results file holds, for `--resume`.
#[derive(Debug, Default)]
pub struct Existing {
    /// Rows that have a line, each with the fingerprint of its input
    /// columns ([`row_hash`]): `--resume` checks the input against it.
    pub decided: HashMap<u64, u64>,
    /// How many rows of each status.
    pub counts: HashMap<Status, u64>,
    pub tally: Tally,
    /// Length of the intact part; anything after it is a torn record. Zero
    /// when even the header was torn (or the file is empty).
    pub good_len: u64,
    /// The state of the header line.
    pub header: HeaderState,
}

/// The header line of an existing results file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// Whole, and the one this run writes.
    #[default]
    Intact,
    /// Cut short (or the file is empty), with nothing after it: the run
    /// stopped while writing it; it is written again.
    Torn,
    /// Gone, with whole results lines in its place: it is put back.
    Missing,
}

/// A fingerprint of a row's content: its input columns as the results file
/// records them (`width` cells, a short row padded with empty ones). The
/// journal and the results file hold it; `--resume` compares it with the
/// row read again, so a changed input is found row by row.
pub fn row_hash(fields: &csv::StringRecord, width: usize) -> u64 {
    hash_cells((0..width).map(|i| fields.get(i).unwrap_or("").as_bytes()))
}

fn hash_cells<'a>(cells: impl Iterator<Item = &'a [u8]>) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for cell in cells {
        h.update((cell.len() as u64).to_le_bytes());
        h.update(cell);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Reads an existing results file: checks its header and every line, collects
/// its rows and finds where its last whole record ends. A torn last record
/// (the run was killed while writing it) is left out, to be cut; a damaged
/// line anywhere else is refused with its line number, since cutting there
/// would lose the rows after it.
pub fn read_existing(
    path: &Path,
    expected_header: &[String],
    format: Format,
) -> Result<Existing, ResultsError> {
    let file = File::open(path).map_err(|e| io_error("read the results file", path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(format.delimiter)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let mut rec = csv::ByteRecord::new();
    let mut existing = Existing::default();
    let width = expected_header.len();
    let mut first = true;
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(io_error("read the results file", path, e.into())),
        }
        let line = rec.position().map_or(line, |p| p.line());
        let end = rdr.position().byte();
        let last = end >= size;
        // A whole record ends with a newline, which the reader has consumed.
        let terminated = !last || (end > 0 && ends_with_newline(path, end));
        if first {
            first = false;
            let is_header = rec.iter().enumerate().map(|(i, f)| {
                if i == 0 {
                    f.strip_prefix(BOM).unwrap_or(f)
                } else {
                    f
                }
            });
            let is_header = is_header.eq(expected_header.iter().map(|h| h.as_bytes()));
            if is_header && terminated {
                existing.good_len = end;
                continue;
            }
            if last && !terminated && torn_header(path, expected_header, format) {
                // Killed while writing the header: nothing else was written.
                existing.header = HeaderState::Torn;
                return Ok(existing);
            }
            if results_line(&rec, width).is_err() {
                return Err(ResultsError::OtherColumns {
                    path: path.to_path_buf(),
                });
            }
            existing.header = HeaderState::Missing;
        }
        if last && !terminated {
            // A torn last record: cut.
            break;
        }
        let (row, status) = match results_line(&rec, width) {
            Ok(line) => line,
            // A damaged last record is a torn one (cut inside a quoted field).
            Err(_) if last => break,
            Err(what) => return Err(damaged(path, line, what)),
        };
        let hash = hash_cells(rec.iter().take(width - COLUMNS.len()));
        if existing.decided.insert(row, hash).is_some() {
            return Err(damaged(
                path,
                line,
                format!("lists row {row} again (each row has one line)"),
            ));
        }
        *existing.counts.entry(status).or_default() += 1;
        if status.is_problem() {
            let errors = String::from_utf8_lossy(&rec[width - 1]);
            for e in errors_of(&errors) {
                existing.tally.count_error(e);
            }
        }
        existing.good_len = end;
    }
    Ok(existing)
}

/// A results line's row number and status, or what is wrong with it.
fn results_line(rec: &csv::ByteRecord, width: usize) -> Result<(u64, Status), String> {
    if rec.len() != width {
        return Err(format!(
            "has {} fields where the header has {width}",
            rec.len()
        ));
    }
    let cell = |i: usize| std::str::from_utf8(&rec[i]).unwrap_or("");
    let row = cell(width - 6);
    let row = row
        .parse::<u64>()
        .ok()
        .filter(|r| (1..=crate::journal::MAX_ROW).contains(r))
        .ok_or_else(|| format!("has digidesk_row {row:?}, not a row number"))?;
    let status = cell(width - 5);
    let status = Status::parse(status)
        .ok_or_else(|| format!("has digidesk_status {status:?}, not a status"))?;
    Ok((row, status))
}

fn damaged(path: &Path, line: u64, what: String) -> ResultsError {
    ResultsError::Damaged {
        path: path.to_path_buf(),
        line,
        what,
    }
}

/// Writes `header` and then the first `good_len` bytes of the results file
/// to a new file that replaces it (synced before and after the rename).
fn put_back_header(
    path: &Path,
    good_len: u64,
    header: &[String],
    format: Format,
) -> Result<(), ResultsError> {
    use std::io::{Read, Write};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let fail = |e| io_error("repair the results file", path, e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    if format.bom {
        tmp.as_file_mut().write_all(BOM).map_err(fail)?;
    }
    {
        let mut w = csv::WriterBuilder::new()
            .delimiter(format.delimiter)
            .from_writer(tmp.as_file_mut());
        w.write_record(header).map_err(|e| write_error(path, e))?;
        w.flush().map_err(fail)?;
    }
    let old = File::open(path).map_err(fail)?;
    std::io::copy(&mut old.take(good_len), tmp.as_file_mut()).map_err(fail)?;
    tmp.as_file_mut().flush().map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// True when the file holds a beginning of the header this run writes, cut short.
fn torn_header(path: &Path, expected: &[String], format: Format) -> bool {
    let Ok(content) = std::fs::read(path) else {
        return false;
    };
    let start = if format.bom { BOM.to_vec() } else { Vec::new() };
    let mut w = csv::WriterBuilder::new()
        .delimiter(format.delimiter)
        .from_writer(start);
    if w.write_record(expected).is_err() {
        return false;
    }
    let full = w.into_inner().unwrap_or_default();
    content.len() < full.len() && full.starts_with(&content)
}

fn ends_with_newline(path: &Path, end: u64) -> bool {
    use std::io::Read;
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    if f.seek(std::io::SeekFrom::Start(end - 1)).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    f.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

/// What can go wrong with a results file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file system failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the results file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// A line of an existing results file that is not a results line (or
    /// repeats a row), before its end: cutting there would lose the rows after it.
    #[error("line {line} of the results file {} {what}", path.display())]
    Damaged {
        path: PathBuf,
        line: u64,
        what: String,
    },
    /// An existing results file of another input or mapping.
    #[error("{} does not have the columns this run writes (it was written for another input or mapping)", path.display())]
    OtherColumns { path: PathBuf },
}

fn io_error(what: &'static str, path: &Path, e: std::io::Error) -> ResultsError {
    ResultsError::Io {
        what,
        path: path.to_path_buf(),
        source: e,
    }
}

fn write_error(path: &Path, e: csv::Error) -> ResultsError {
    ResultsError::Write {
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
mod tests;
