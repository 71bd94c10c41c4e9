//! What can go wrong reading an input: where (the input, the row, the
//! column) and what, with the underlying error kept as the source; and,
//! for text in the wrong encoding, which option fixes it ([`ReadError::message`]).

use std::path::PathBuf;

/// What can go wrong reading an input.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open the input {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is empty: it has no header line")]
    Empty { name: String },
    #[error("{name}: the header line is empty")]
    EmptyHeader { name: String },
    /// Text that is not valid in the input's encoding.
    #[error("{name}, {place}, {column}: text that is not valid {encoding}{bad}")]
    InvalidText {
        name: String,
        place: String,
        column: String,
        encoding: &'static str,
        /// The first byte that is not ASCII, when there is one.
        bad: String,
    },
    /// NUL bytes in the header: UTF-16 read as something else.
    #[error(
        "{name}: the header holds NUL bytes: the file looks like UTF-16 without a byte-order mark"
    )]
    Utf16WithoutBom { name: String },
    /// The header opens a quote it never closes.
    #[error("{name}: the header line opens a quoted field that is never closed (or holds more than a megabyte); fix the header's quotes")]
    BrokenHeader { name: String },
    /// A compressed input whose checksum or data is wrong.
    #[error("{name} is damaged ({source}); nothing was sent: compress it again from the original export (`gzip -t` checks a file)")]
    Corrupt {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {name} ({place}): {source}")]
    Io {
        name: String,
        place: String,
        #[source]
        source: std::io::Error,
    },
    /// `retry`'s input is not a results file.
    #[error("{name} is not a results file of digidesk-upload: it has no {column:?} column (its columns: {columns})")]
    NotResults {
        name: String,
        column: &'static str,
        columns: String,
    },
    #[error("{name}, record {record}: digidesk_row is not a row number; is this a results file of digidesk-upload?")]
    BadRowNumber { name: String, record: u64 },
    /// A results file that lists a row twice: which line is right cannot be told.
    #[error("{name}, record {record}: row {row} is listed again (each row has one line in a results file); remove the wrong line, then retry")]
    RepeatedRow { name: String, record: u64, row: u64 },
}

impl ReadError {
    /// The error for the person running the tool: text in the wrong
    /// encoding names the option that fixes it.
    pub fn message(&self) -> String {
        let hint = match self {
            ReadError::InvalidText { encoding, .. } if *encoding == "UTF-8" => {
                "; the file is probably in another encoding: try --encoding windows-1252 (Excel on Windows writes it)"
            }
            ReadError::InvalidText { .. } => "; check --encoding",
            ReadError::Utf16WithoutBom { .. } => "; try --encoding utf-16le (or utf-16be)",
            _ => "",
        };
        format!("{self}{hint}")
    }
}

/// What to do about text that is not valid in `encoding`. Never suggests
/// windows-1252 for a UTF-16 file (`nul_bytes`: the bytes look like UTF-16).
pub fn encoding_hint(encoding: &str, nul_bytes: bool) -> String {
    if nul_bytes {
        "the file looks like UTF-16 without a byte-order mark: try --encoding utf-16le (or utf-16be)".into()
    } else if encoding.starts_with("UTF-16") {
        format!("the file is {encoding} (its byte-order mark says so) and holds a sequence that is not: fix it in the program that wrote it")
    } else if encoding == "UTF-8" {
        "the export is probably in another encoding: try --encoding windows-1252 (Excel on Windows writes it)".into()
    } else {
        format!("check --encoding (now {encoding})")
    }
}
