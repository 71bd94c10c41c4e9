//! Reading: streams data records out of a CSV export (a path, `-` for stdin,
//! or a `.gz` file) in the shapes real exports come in: a byte-order mark
//! chooses the encoding, Excel's `sep=` line the delimiter, a footer after
//! the data is set aside, a byte not valid in the encoding is replaced and
//! reported with its cell, and a quoted field never closed is reported with
//! the line that opened it. Memory does not grow with the file; each record
//! carries its 1-based number and where it lies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use encoding_rs::Encoding;

pub use super::error::ReadError;
use super::raw::{Parser, RawRecord};
use super::shape::{self, BadCell, Broken, Footer, Meta, Notes, SharedNotes};
use super::stream;
pub use super::stream::{Origin, ReadOptions};

/// One data record of the export.
#[derive(Debug, Clone)]
pub struct Record {
    /// 1-based number of the data record (header excluded; a quoted newline
    /// does not start a new record).
    pub row: u64,
    /// The decoded fields, as many as the record had (may differ from the header).
    pub fields: csv::StringRecord,
    /// Where it lies and what was wrong with its bytes.
    pub meta: Meta,
}

/// A footer is at most this many records: more short records at the end of
/// a file are rows of it (and `invalid`).
pub const MAX_FOOTER_RECORDS: usize = 32;
/// Nor more than this many bytes, so holding it back costs little memory.
const MAX_FOOTER_BYTES: usize = 64 * 1024;

/// A streaming reader of data records.
pub struct Reader {
    parser: Parser,
    headers: Vec<String>,
    /// Decoding per field, for ASCII-compatible encodings other than UTF-8.
    decode: Option<&'static Encoding>,
    /// The file's own encoding, for messages.
    encoding: &'static Encoding,
    delimiter: u8,
    name: String,
    row: u64,
    raw: RawRecord,
    /// Records that may be the footer: read, not yet handed out.
    held: VecDeque<(u64, RawRecord)>,
    /// Hand out the held records before reading on.
    release: bool,
    meta: Meta,
    notes: SharedNotes,
    bytes_read: Arc<AtomicU64>,
    rows_read: Arc<AtomicU64>,
    total_bytes: Option<u64>,
    /// Bytes read from the file, when the file's positions are not the parser's.
    raw_read: Option<Arc<AtomicU64>>,
    /// Replacements made while transcoding UTF-16, and how many were seen.
    replaced: Option<(Arc<AtomicU64>, u64)>,
    before_read: super::stream::BeforeRead,
}

impl Reader {
    /// Opens the input and reads its header.
    pub fn open(origin: &Origin, opts: &ReadOptions) -> Result<Reader, ReadError> {
        Reader::open_with_header(origin, opts, true)
    }

    /// Like [`open`](Self::open); with `header` false the first line is
    /// data and the columns are named by position: `#1`, `#2`, ...
    pub fn open_with_header(
        origin: &Origin,
        opts: &ReadOptions,
        header_line: bool,
    ) -> Result<Reader, ReadError> {
        let name = origin.display_name();
        let opened = stream::open(origin, opts)?;
        let notes = Notes {
            sep: opened.sep.map(char::from),
            bom: opened.bom.map(Encoding::name),
            encoding: opened.file_encoding.name(),
            ..Notes::default()
        };
        let mut reader = Reader {
            parser: Parser::new(
                opened.stream,
                opened.delimiter,
                u64::from(opened.sep.is_some()),
            ),
            headers: Vec::new(),
            decode: (opened.decode != encoding_rs::UTF_8).then_some(opened.decode),
            encoding: opened.file_encoding,
            delimiter: opened.delimiter,
            name,
            row: 0,
            raw: RawRecord::default(),
            held: VecDeque::new(),
            release: false,
            meta: Meta::default(),
            notes: Arc::new(Mutex::new(notes)),
            bytes_read: Arc::new(AtomicU64::new(0)),
            rows_read: Arc::new(AtomicU64::new(0)),
            total_bytes: opened.total_bytes,
            raw_read: opened.raw_read,
            replaced: opened.replaced.map(|r| (r, 0)),
            before_read: opened.before_read,
        };
        let mut header = RawRecord::default();
        let got = reader
            .parser
            .read(&mut header)
            .map_err(|e| read_error(&reader.name, 0, e))?;
        if !got {
            return Err(ReadError::Empty { name: reader.name });
        }
        if header.bytes().contains(&0) {
            return Err(ReadError::Utf16WithoutBom { name: reader.name });
        }
        if !header_line {
            // The first line is row 1: handed out first, like a record
            // held back.
            reader.headers = (1..=header.fields).map(|i| format!("#{i}")).collect();
            reader.row = 1;
            reader.rows_read.store(1, Ordering::Relaxed);
            reader.held.push_back((1, header));
            reader.release = true;
            return Ok(reader);
        }
        if header.is_broken() {
            return Err(ReadError::BrokenHeader { name: reader.name });
        }
        let mut headers = Vec::with_capacity(header.fields);
        for i in 0..header.fields {
            let field = header.field(i);
            let field = if i == 0 {
                field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
            } else {
                field
            };
            let text = match reader.decode_strict(field) {
                Some(t) => t,
                None => return Err(reader.invalid_header(i, field)),
            };
            headers.push(text.trim().to_string());
        }
        if headers.iter().all(|h| h.is_empty()) {
            return Err(ReadError::EmptyHeader { name: reader.name });
        }
        reader.headers = headers;
        Ok(reader)
    }

    /// The header's column names, decoded and trimmed of a BOM and spaces.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// What the reader has noticed about the input so far (shared: it
    /// fills in as reading goes on; the footer is known at the end).
    pub fn notes(&self) -> SharedNotes {
        self.notes.clone()
    }

    /// Where the last record read lies and what was wrong with its bytes.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The next data record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        let mut fields = csv::StringRecord::with_capacity(64, self.headers.len());
        Ok(self.next_record_into(&mut fields)?.map(|row| Record {
            row,
            fields,
            meta: self.meta.clone(),
        }))
    }

    /// Like [`next_record`](Self::next_record), into a record the caller
    /// keeps reusing (no allocation per row once it has grown); its
    /// [`meta`](Self::meta) until the next call. Returns the row number.
    pub fn next_record_into(
        &mut self,
        fields: &mut csv::StringRecord,
    ) -> Result<Option<u64>, ReadError> {
        let Some(row) = self.next_raw()? else {
            return Ok(None);
        };
        self.decode_into(fields);
        Ok(Some(row))
    }

    /// The next record that is not part of the footer, into `self.raw`.
    ///
    /// The footer: the records after the last record of the data up to the
    /// end of the input, when each is a single field (a line of text such
    /// as `"Grand Totals (4 records)"`) or blank, and there are at most
    /// [`MAX_FOOTER_RECORDS`] of them (and 64 KiB). Such records are held back until a
    /// record of the data follows (then they are rows like any other: a
    /// short row in the middle of a file is `invalid`) or the input ends
    /// (then they are counted as ignored).
    fn next_raw(&mut self) -> Result<Option<u64>, ReadError> {
        loop {
            if self.release {
                if let Some((row, rec)) = self.held.pop_front() {
                    self.raw = rec;
                    return Ok(Some(row));
                }
                self.release = false;
            }
            // The record handed out last has been decoded: its buffers are
            // reused, so reading allocates nothing per row.
            let mut rec = std::mem::take(&mut self.raw);
            let got = self
                .parser
                .read(&mut rec)
                .map_err(|e| read_error(&self.name, self.row + 1, e))?;
            if !got {
                self.end_footer();
                return Ok(None);
            }
            self.row += 1;
            self.rows_read.store(self.row, Ordering::Relaxed);
            let position = match &self.raw_read {
                Some(raw) => raw.load(Ordering::Relaxed),
                None => self.parser.position(),
            };
            self.bytes_read.store(position, Ordering::Relaxed);
            let width = self.headers.len();
            let footer_like =
                !rec.is_broken() && ((rec.fields == 1 && width > 1) || rec.is_blank());
            if footer_like {
                self.held.push_back((self.row, rec));
                let held_bytes: usize = self.held.iter().map(|(_, r)| r.bytes().len()).sum();
                if self.held.len() > MAX_FOOTER_RECORDS || held_bytes > MAX_FOOTER_BYTES {
                    self.release = true;
                }
                continue;
            }
            if !self.held.is_empty() {
                self.held.push_back((self.row, rec));
                self.release = true;
                continue;
            }
            self.raw = rec;
            return Ok(Some(self.row));
        }
    }

    /// The input ended: the records held back are its footer.
    fn end_footer(&mut self) {
        let (Some((_, first)), Some((_, last))) = (self.held.front(), self.held.back()) else {
            return;
        };
        let footer = Footer {
            records: self.held.len() as u64,
            first_line: first.line,
            last_line: last.line + last.lines.max(1) - 1,
        };
        self.held.clear();
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).footer = Some(footer);
    }

    /// Decodes `self.raw` into `fields` and fills `self.meta`.
    fn decode_into(&mut self, fields: &mut csv::StringRecord) {
        let raw = &self.raw;
        self.meta.bad.clear();
        self.meta.line = raw.line;
        self.meta.lines = raw.lines;
        let broken = if raw.unclosed {
            Some(Broken::Unclosed)
        } else if raw.overflow {
            Some(Broken::TooLarge)
        } else {
            None
        };
        self.decode_fields(fields);
        let broken = broken.or_else(|| {
            (self.meta.lines > 1 && self.holds_rows(fields)).then_some(Broken::HoldsRows)
        });
        self.meta.broken =
            broken.map(|why| shape::broken_reason(self.meta.line, self.meta.lines, why));
    }

    /// Whether a line inside a field has as many delimiters as a row of the
    /// export has: rows folded into one field by a quote not closed where it
    /// should be (whatever the record's width happens to be).
    fn holds_rows(&self, fields: &csv::StringRecord) -> bool {
        let width = self.headers.len();
        width >= 2
            && fields.iter().any(|f| {
                f.split('\n')
                    .skip(1)
                    .any(|line| line.bytes().filter(|b| *b == self.delimiter).count() >= width - 1)
            })
    }

    /// Decodes `self.raw` into `fields`, noting the cells with bad bytes.
    fn decode_fields(&mut self, fields: &mut csv::StringRecord) {
        let raw = &self.raw;
        fields.clear();
        match self.decode {
            None => {
                // One UTF-8 check for the whole record; field by field only
                // when it fails.
                if let Ok(all) = std::str::from_utf8(raw.bytes()) {
                    let mut ok = true;
                    for i in 0..raw.fields {
                        let (start, end) = raw.bounds(i);
                        match all.get(start..end) {
                            Some(f) => fields.push_field(f),
                            None => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    if ok {
                        self.check_transcoded(fields);
                        return;
                    }
                    fields.clear();
                }
                for i in 0..raw.fields {
                    let f = raw.field(i);
                    match std::str::from_utf8(f) {
                        Ok(text) => fields.push_field(text),
                        Err(e) => {
                            let at = e.valid_up_to();
                            self.meta.bad.push(BadCell {
                                column: i,
                                at: Some((at, f[at])),
                            });
                            fields.push_field(&String::from_utf8_lossy(f));
                        }
                    }
                }
            }
            Some(enc) => {
                for i in 0..raw.fields {
                    let f = raw.field(i);
                    match enc.decode_without_bom_handling_and_without_replacement(f) {
                        Some(text) => fields.push_field(&text),
                        None => {
                            self.meta.bad.push(BadCell {
                                column: i,
                                at: first_malformed(enc, f),
                            });
                            fields.push_field(&enc.decode_without_bom_handling(f).0);
                        }
                    }
                }
            }
        }
    }

    /// For a transcoded UTF-16 file: when replacements were made since the
    /// last record, the cells holding U+FFFD are the bad ones.
    fn check_transcoded(&mut self, fields: &csv::StringRecord) {
        let Some((count, seen)) = &mut self.replaced else {
            return;
        };
        let now = count.load(Ordering::Relaxed);
        if now == *seen {
            return;
        }
        *seen = now;
        for (i, f) in fields.iter().enumerate() {
            if f.contains('\u{FFFD}') {
                self.meta.bad.push(BadCell {
                    column: i,
                    at: None,
                });
            }
        }
    }

    /// Decodes a header field; `None` when it is not valid in the encoding.
    fn decode_strict(&self, bytes: &[u8]) -> Option<String> {
        match self.decode {
            None => std::str::from_utf8(bytes).ok().map(str::to_string),
            Some(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned()),
        }
    }

    fn invalid_header(&self, col: usize, bytes: &[u8]) -> ReadError {
        let bad = bytes
            .iter()
            .find(|b| **b >= 0x80)
            .map(|b| format!(" (byte 0x{b:02X})"))
            .unwrap_or_default();
        ReadError::InvalidText {
            name: self.name.clone(),
            place: "the header".into(),
            column: format!("column {}", col + 1),
            encoding: self.encoding.name(),
            bad,
        }
    }

    /// How far through the file reading is, in bytes: the end of the last
    /// record parsed, or for `.gz` the compressed bytes read. For progress.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.bytes_read.clone()
    }

    /// A counter of data records read so far.
    pub fn rows_read(&self) -> Arc<AtomicU64> {
        self.rows_read.clone()
    }

    /// The size of the underlying file, when it is a file.
    /// Runs `hook` before each read of the underlying file or pipe: the
    /// moment reading may wait (a stalled stdin), so that whatever the
    /// caller holds from rows already read can go on first.
    pub fn before_read(&self, hook: impl FnMut() + Send + 'static) {
        *self.before_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }
}

/// Where the first byte not valid in `enc` is in `bytes`, and its value.
fn first_malformed(enc: &'static Encoding, bytes: &[u8]) -> Option<(usize, u8)> {
    let mut decoder = enc.new_decoder_without_bom_handling();
    let mut out = vec![0u8; decoder.max_utf8_buffer_length(bytes.len())?];
    let (result, read, _) = decoder.decode_to_utf8_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(len, extra) => {
            let at = read.checked_sub(usize::from(len) + usize::from(extra))?;
            bytes.get(at).map(|b| (at, *b))
        }
        _ => None,
    }
}

fn read_error(name: &str, row: u64, e: std::io::Error) -> ReadError {
    let place = if row == 0 {
        "the header".to_string()
    } else {
        format!("around row {row}")
    };
    ReadError::Io {
        name: name.to_string(),
        place,
        source: e,
    }
}

#[cfg(test)]
mod tests;
