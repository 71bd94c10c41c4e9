//! Reading: streams data records out of a CSV export (a path, `-` for stdin,
//! or a `.gz` file) in the shapes real exports come in: a byte-order mark
//! chooses the encoding, Excel's `sep=` line the delimiter, a footer after
//! the data is set aside, a byte not valid in the encoding is replaced and
//! reported with its cell, and a quoted field never closed is reported with
//! the line that opened it. Memory does not grow with the file; each record
//! carries its 1-based number and where it lies.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use encoding_rs::Encoding;

pub use super::error::ReadError;
use super::raw::{Parser, RawRecord};
use super::shape::{self, BadCell, Broken, Footer, Meta, Notes, SharedNotes};
use super::stream;

/// Where the export comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Stdin,
    File(PathBuf),
}

impl Origin {
    /// `-` means standard input; anything else is a path.
    pub fn parse(arg: &str) -> Origin {
        if arg == "-" {
            Origin::Stdin
        } else {
            Origin::File(PathBuf::from(arg))
        }
    }

    /// How errors name this input.
    pub fn display_name(&self) -> String {
        match self {
            Origin::Stdin => "standard input".to_string(),
            Origin::File(p) => p.display().to_string(),
        }
    }
}

/// How the bytes of the export are read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub encoding: &'static Encoding,
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
mod tests {
    use super::*;
    use crate::config::{parse_delimiter, parse_encoding};
    use std::io::Write;

    /// What the user reads for `e`.
    fn message(e: ReadError) -> String {
        crate::exit::Fatal::from(e).message
    }

    fn open(bytes: &[u8], name: &str, enc: &str, delim: &str) -> Result<Reader, ReadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let opts = ReadOptions {
            encoding: parse_encoding(enc).unwrap(),
            delimiter: parse_delimiter(delim).unwrap(),
        };
        let r = Reader::open(&Origin::File(path), &opts);
        drop(dir); // the reader holds the file open
        r
    }

    fn all(r: &mut Reader) -> Vec<(u64, Vec<String>)> {
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.row, rec.fields.iter().map(str::to_string).collect()));
        }
        out
    }

    #[test]
    fn bom_crlf_quotes_and_newlines() {
        let data = "\u{feff}Name, Phone \r\n\"Smith, \"\"J\"\"\",\"07911\n123456\"\r\nZoë,1\r\n";
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        assert_eq!(r.headers(), ["Name", "Phone"]);
        let rows = all(&mut r);
        assert_eq!(
            rows[0],
            (
                1,
                vec!["Smith, \"J\"".to_string(), "07911\n123456".to_string()]
            )
        );
        assert_eq!(rows[1], (2, vec!["Zoë".to_string(), "1".to_string()]));
    }

    #[test]
    fn semicolons_and_windows_1252() {
        let mut data = b"Name;City\n".to_vec();
        data.extend_from_slice(b"Ren\xe9e;M\xfcnchen\n");
        let mut r = open(&data, "a.csv", "windows-1252", ";").unwrap();
        assert_eq!(
            all(&mut r),
            vec![(1, vec!["Renée".to_string(), "München".to_string()])]
        );
    }

    #[test]
    fn a_byte_not_valid_utf8_is_replaced_and_its_cell_reported() {
        let data = b"Name,City\nA,B\nRen\xe9e,X\n";
        let mut r = open(data, "a.csv", "utf-8", ",").unwrap();
        let first = r.next_record().unwrap().unwrap();
        assert!(first.meta.bad.is_empty());
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.row, 2);
        assert_eq!(&rec.fields[0], "Ren\u{FFFD}e");
        assert_eq!(
            rec.meta.bad,
            vec![BadCell {
                column: 0,
                at: Some((3, 0xE9))
            }]
        );
        assert_eq!(rec.meta.line, 3);
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn a_byte_not_valid_in_a_single_byte_encoding_is_found_too() {
        // 0xAA has no character in windows-1253.
        let mut r = open(b"A,B\nx,ab\xAAc\n", "a.csv", "windows-1253", ",").unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(&rec.fields[1], "ab\u{FFFD}c");
        assert_eq!(
            rec.meta.bad,
            vec![BadCell {
                column: 1,
                at: Some((2, 0xAA))
            }]
        );
    }

    #[test]
    fn gzip_by_name_and_by_magic() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"A,B\n1,2\n").unwrap();
        let bytes = gz.finish().unwrap();
        for name in ["a.csv.gz", "a.csv"] {
            let mut r = open(&bytes, name, "utf-8", ",").unwrap();
            assert_eq!(r.headers(), ["A", "B"]);
            assert_eq!(all(&mut r).len(), 1);
        }
    }

    #[test]
    fn wrong_field_counts_are_returned_as_read() {
        let mut r = open(b"A,B,C\n1,2\n1,2,3,4\n", "a.csv", "utf-8", ",").unwrap();
        let rows = all(&mut r);
        assert_eq!(rows[0].1.len(), 2);
        assert_eq!(rows[1].1.len(), 4);
    }

    #[test]
    fn utf16_is_transcoded() {
        let text = "A,B\n\u{e9},2\n";
        let mut bytes = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let mut r = open(&bytes, "a.csv", "utf-16le", ",").unwrap();
        assert_eq!(r.headers(), ["A", "B"]);
        assert_eq!(
            all(&mut r),
            vec![(1, vec!["é".to_string(), "2".to_string()])]
        );
    }

    #[test]
    fn utf16_across_many_reads_keeps_every_character() {
        let mut text = String::from("A,B\n");
        for i in 0..5000 {
            text.push_str(&format!("{i},Zoë 🙂 {i}\n"));
        }
        let mut bytes = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let mut r = open(&bytes, "a.csv", "utf-16le", ",").unwrap();
        let rows = all(&mut r);
        assert_eq!(rows.len(), 5000);
        assert_eq!(rows[4999].1[1], "Zoë 🙂 4999");
        // An unpaired surrogate is replaced and its cell reported.
        let mut bad = vec![0xFF, 0xFE];
        for u in "A,B\n1,".encode_utf16() {
            bad.extend_from_slice(&u.to_le_bytes());
        }
        bad.extend_from_slice(&0xD800u16.to_le_bytes());
        bad.extend_from_slice(&(b'x' as u16).to_le_bytes());
        let mut r = open(&bad, "a.csv", "utf-16le", ",").unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(&rec.fields[1], "\u{FFFD}x");
        assert_eq!(
            rec.meta.bad,
            vec![BadCell {
                column: 1,
                at: None
            }]
        );
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut bytes = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            let b = if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            };
            bytes.extend_from_slice(&b);
        }
        bytes
    }

    #[test]
    fn a_byte_order_mark_wins_over_the_encoding_asked_for() {
        for be in [false, true] {
            for asked in ["utf-8", "windows-1252"] {
                let bytes = utf16("Name\tPhone\r\nZo\u{eb}\t07700 900123\r\n", be);
                let mut r = open(&bytes, "a.txt", asked, "tab").unwrap();
                assert_eq!(r.headers(), ["Name", "Phone"], "be {be}, {asked}");
                let rows = all(&mut r);
                let want = vec!["Zo\u{eb}".to_string(), "07700 900123".to_string()];
                assert_eq!(rows, vec![(1, want)]);
                let enc = if be { "UTF-16BE" } else { "UTF-16LE" };
                assert_eq!(r.notes().lock().unwrap().bom, Some(enc));
            }
        }
        // A UTF-8 one too: windows-1252 asked for, UTF-8 read.
        let data = "\u{feff}A,B\nZo\u{eb},1\n";
        let mut r = open(data.as_bytes(), "a.csv", "windows-1252", ",").unwrap();
        assert_eq!(r.headers(), ["A", "B"]);
        assert_eq!(all(&mut r)[0].1[0], "Zo\u{eb}");
    }

    #[test]
    fn utf16_without_a_byte_order_mark_is_never_told_to_try_windows_1252() {
        let bytes = utf16("Name,Phone\n", false)[2..].to_vec();
        let e = message(open(&bytes, "a.csv", "utf-8", ",").err().unwrap());
        assert!(e.contains("utf-16le"), "{e}");
        assert!(!e.contains("windows-1252"), "{e}");
        assert!(!encoding_hint("UTF-16LE", false).contains("windows-1252"));
        assert!(!encoding_hint("UTF-8", true).contains("windows-1252"));
        assert!(encoding_hint("UTF-8", false).contains("windows-1252"));
    }

    #[test]
    fn excel_sep_line_sets_the_delimiter_and_is_not_the_header() {
        for asked in [",", ";", "|"] {
            let data = b"sep=;\r\nName;Phone\r\nAnn;1\r\n";
            let mut r = open(data, "a.csv", "utf-8", asked).unwrap();
            assert_eq!(r.headers(), ["Name", "Phone"], "--delimiter {asked}");
            let rec = r.next_record().unwrap().unwrap();
            assert_eq!((rec.row, rec.meta.line), (1, 3));
            assert_eq!(r.notes().lock().unwrap().sep, Some(';'));
        }
        // After a byte-order mark, in UTF-16 too.
        let bytes = utf16("sep=|\r\nA|B\r\n1|2\r\n", false);
        let mut r = open(&bytes, "a.csv", "utf-8", ",").unwrap();
        assert_eq!(r.headers(), ["A", "B"]);
        assert_eq!(
            all(&mut r),
            vec![(1, vec!["1".to_string(), "2".to_string()])]
        );
        // Without one, nothing changes.
        let r = open(b"A,B\n1,2\n", "a.csv", "utf-8", ",").unwrap();
        assert_eq!(r.notes().lock().unwrap().sep, None);
    }

    const SALESFORCE: &str = "\"Subject\",\"Phone\",\"Owner\"\n\
        \"Call\",\"0161 496 0000\",\"Ann\"\n\
        \"Call\",\"0161 496 0001\",\"Bob\"\n\
        \n\
        \"\"\n\
        \"Grand Totals (2 records)\"\n\
        \"\"\n\
        \"Confidential Information - Do Not Distribute\"\n\
        \"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\"\n";

    #[test]
    fn a_footer_after_the_data_is_ignored_and_counted() {
        let mut r = open(SALESFORCE.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        let rows = all(&mut r);
        assert_eq!(rows.len(), 2);
        let notes = r.notes().lock().unwrap().clone();
        let footer = Footer {
            records: 5,
            first_line: 5,
            last_line: 9,
        };
        assert_eq!(notes.footer, Some(footer));
        assert_eq!(notes.ignored(), 5);
        // Trailing lines of delimiters only are blank too.
        let mut r = open(b"A,B\n1,2\n,\n , \n", "a.csv", "utf-8", ",").unwrap();
        assert_eq!(all(&mut r).len(), 1);
        assert_eq!(r.notes().lock().unwrap().ignored(), 2);
    }

    #[test]
    fn a_short_row_in_the_middle_is_a_row() {
        let data = "A,B,C\n1,2,3\nnote\n\"\"\n4,5,6\nGrand Totals\n";
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        let rows = all(&mut r);
        let numbers: Vec<u64> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(rows[1].1, ["note"]);
        assert_eq!(rows[3].1, ["4", "5", "6"]);
        assert_eq!(r.notes().lock().unwrap().ignored(), 1);
        // A long run of short rows at the end is not a footer: rows.
        let mut data = String::from("A,B\n1,2\n");
        for i in 0..=MAX_FOOTER_RECORDS {
            data.push_str(&format!("{i}\n"));
        }
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        assert_eq!(all(&mut r).len(), MAX_FOOTER_RECORDS + 2);
        assert_eq!(r.notes().lock().unwrap().ignored(), 0);
    }

    #[test]
    fn an_unclosed_quote_is_a_broken_record_naming_its_lines() {
        let data = "A,B,C\n1,2,3\n4,\"5,6\n7,8,9\n10,11,12\n";
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.row, 2);
        assert_eq!((rec.meta.line, rec.meta.lines), (3, 3));
        let why = rec.meta.broken.unwrap();
        assert!(why.contains("starting on line 3 is never closed"), "{why}");
        assert!(why.contains("lines 3-5 (3 lines)"), "{why}");
        assert!(r.next_record().unwrap().is_none());
        // Rows folded into a field by two stray quotes, whatever the width.
        let data = "A,B,C\n1,\"2\n3,4,5\n6,7\",8\n9,10,11\n";
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(rec.fields.len(), 3, "a width that happens to fit");
        let why = rec.meta.broken.unwrap();
        assert!(
            why.contains("lines 2-4 (3 lines) that look like rows"),
            "{why}"
        );
        assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
        // A note over several lines is not.
        let data = "A,B,C\n1,\"line one\nline two, more\",3\n";
        let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
        assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
        // A broken record at the end is never taken for a footer.
        let mut r = open(b"A,B\n1,2\n\"open\n", "a.csv", "utf-8", ",").unwrap();
        assert_eq!(all(&mut r).len(), 2);
    }

    #[test]
    fn a_headerless_file_names_columns_by_position_and_keeps_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        let data = "\u{feff}\"\",\"100\",\"+15551234\"\n\"\",\"101\",\"x\"\n\"total\"\n";
        std::fs::write(&path, data).unwrap();
        let opts = ReadOptions {
            encoding: encoding_rs::UTF_8,
            delimiter: b',',
        };
        let mut r = Reader::open_with_header(&Origin::File(path), &opts, false).unwrap();
        assert_eq!(r.headers(), ["#1", "#2", "#3"]);
        assert_eq!(
            all(&mut r),
            vec![
                (1, vec!["".to_string(), "100".into(), "+15551234".into()]),
                (2, vec!["".to_string(), "101".into(), "x".into()]),
            ],
            "the first line is row 1, without its byte-order mark"
        );
        assert_eq!(r.notes().lock().unwrap().ignored(), 1);
        let first =
            Reader::open_with_header(&Origin::File(dir.path().join("Master.csv")), &opts, false)
                .unwrap()
                .next_record()
                .unwrap()
                .unwrap();
        assert_eq!(first.meta.line, 1);
    }

    #[test]
    fn bad_options_are_explained() {
        assert!(parse_encoding("klingon")
            .unwrap_err()
            .message
            .contains("windows-1252"));
        assert_eq!(parse_delimiter("tab").unwrap(), b'\t');
        assert!(parse_delimiter(";;").is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = Origin::File(dir.path().join("nope.csv"));
        let opts = ReadOptions {
            encoding: encoding_rs::UTF_8,
            delimiter: b',',
        };
        assert!(Reader::open(&missing, &opts)
            .err()
            .unwrap()
            .to_string()
            .contains("nope.csv"));
        assert!(open(b"", "e.csv", "utf-8", ",")
            .err()
            .unwrap()
            .to_string()
            .contains("empty"));
    }
}
