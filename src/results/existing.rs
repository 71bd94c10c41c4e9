//! Reading an existing results file for `--resume`: which rows it decided,
//! with what content, and where its last whole record ends.

use std::collections::HashMap;
use std::fs::File;
use std::io::Seek;
use std::path::Path;

use super::{errors_of, io_error, Format, ResultsError, Status, Tally, BOM, COLUMNS};

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
    let (mut rdr, size) = reader(path, format)?;
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

/// The status and DigiDesk id of each of `rows` that has a line in the
/// results file at `path`, once [`read_existing`] has found it sound (its
/// header and a torn last record are passed over).
pub fn outcomes_of(
    path: &Path,
    width: usize,
    format: Format,
    rows: &std::collections::HashSet<u64>,
) -> Result<HashMap<u64, (Status, Option<u64>)>, ResultsError> {
    let (mut rdr, _) = reader(path, format)?;
    let mut rec = csv::ByteRecord::new();
    let mut found = HashMap::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| io_error("read the results file", path, e.into()))?
    {
        let Ok((row, status)) = results_line(&rec, width) else {
            continue;
        };
        if rows.contains(&row) {
            let id = std::str::from_utf8(&rec[width - 4])
                .ok()
                .and_then(|id| id.parse::<u64>().ok());
            found.insert(row, (status, id));
        }
    }
    Ok(found)
}

/// A reader of the results file's records, header included, and the
/// file's size.
fn reader(
    path: &Path,
    format: Format,
) -> Result<(csv::Reader<std::io::BufReader<File>>, u64), ResultsError> {
    let file = File::open(path).map_err(|e| io_error("read the results file", path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(format.delimiter)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    Ok((rdr, size))
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
