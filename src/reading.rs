//! Reading: streams data records out of a CSV export (a path, `-` for stdin,
//! or a `.gz` file), decoding the chosen encoding and stripping a UTF-8 BOM.
//! Memory does not grow with the file; each record carries its 1-based number.

use std::path::PathBuf;

use crate::exit::Fatal;

/// Where the export comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

impl InputSource {
    /// `-` means standard input; anything else is a path.
    pub fn parse(arg: &str) -> InputSource {
        if arg == "-" {
            InputSource::Stdin
        } else {
            InputSource::File(PathBuf::from(arg))
        }
    }

    /// How errors name this input.
    pub fn display_name(&self) -> String {
        match self {
            InputSource::Stdin => "standard input".to_string(),
            InputSource::File(p) => p.display().to_string(),
        }
    }
}

/// How the bytes of the export are read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub encoding: &'static encoding_rs::Encoding,
    pub delimiter: u8,
}

/// One data record of the export.
#[derive(Debug, Clone)]
pub struct Record {
    /// 1-based number of the data record (header excluded; a quoted newline
    /// does not start a new record).
    pub row: u64,
    /// The decoded fields, as many as the record had (may differ from the header).
    pub fields: csv::StringRecord,
}

/// Parses `--encoding` (any WHATWG label: `utf-8`, `windows-1252`, `latin1`, ...).
pub fn parse_encoding(_name: &str) -> Result<&'static encoding_rs::Encoding, Fatal> {
    todo!("reading: parse_encoding")
}

/// Parses `--delimiter`: one ASCII character, or `tab`.
pub fn parse_delimiter(_s: &str) -> Result<u8, Fatal> {
    todo!("reading: parse_delimiter")
}

/// A streaming reader of data records.
pub struct Reader {}

impl Reader {
    /// Opens the input and reads its header.
    pub fn open(_source: &InputSource, _opts: &ReadOptions) -> Result<Reader, Fatal> {
        todo!("reading: open")
    }

    /// The header's column names, decoded and trimmed of a BOM.
    pub fn headers(&self) -> &[String] {
        todo!()
    }

    /// The next data record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, Fatal> {
        todo!()
    }

    /// A counter of bytes read so far from the underlying file (compressed
    /// bytes for `.gz`), for progress.
    pub fn bytes_read(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        todo!()
    }

    /// The size of the underlying file, when it is a file.
    pub fn total_bytes(&self) -> Option<u64> {
        todo!()
    }
}
