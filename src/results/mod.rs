//! The results file: every input column, then the `digidesk_*` columns.
//! Whoever decides a row (a worker, or the reader for rows decided without a
//! request) writes its [`Outcome`] through [`Shared`], which keeps the counters.
//!
//! A row's outcome is written to the operating system before its concurrency
//! permit is released, so a crash (even `kill -9`) loses at most the rows that
//! were still in flight, which the journal then marks `unknown`.
//!
//! `status` holds a row's status, its outcome and the counts of a run;
//! `writer` writes the file; `existing` reads one back for `--resume`.

use std::path::{Path, PathBuf};

mod existing;
mod status;
mod writer;

pub use existing::{outcomes_of, read_existing, row_hash, Existing, HeaderState};
pub use status::{Counters, Outcome, Status, Tally};
pub use writer::{Shared, Writer};

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
