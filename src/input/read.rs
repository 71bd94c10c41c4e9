//! Reading: streams data records out of a CSV export (a path, `-` for stdin,
//! or a `.gz` file), decoding the chosen encoding and stripping a UTF-8 BOM.
//! Memory does not grow with the file; each record carries its 1-based number.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use encoding_rs::Encoding;

pub use super::error::ReadError;

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
}

/// What runs before each read of the underlying file or pipe (see
/// [`Reader::before_read`]).
type BeforeRead = Arc<std::sync::Mutex<Option<Box<dyn FnMut() + Send>>>>;

/// Counts the bytes read from the underlying file, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    before: BeforeRead,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(hook) = self
            .before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            hook();
        }
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Transcodes a stream from a non-ASCII-compatible encoding (UTF-16) to UTF-8.
struct Transcode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out_pos == self.output.len() {
            if self.eof {
                return Ok(0);
            }
            self.input.resize(16 * 1024, 0);
            let n = self.inner.read(&mut self.input)?;
            self.eof = n == 0;
            let mut out =
                Vec::with_capacity(self.decoder.max_utf8_buffer_length(n).unwrap_or(n * 3 + 16));
            let mut consumed = 0;
            loop {
                // Room for whatever is left; decoding continues until every
                // input byte is consumed, so nothing is ever dropped.
                let start = out.len();
                let room = self
                    .decoder
                    .max_utf8_buffer_length(n - consumed)
                    .unwrap_or((n - consumed) * 3 + 16)
                    .max(4);
                out.resize(start + room, 0);
                let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                    &self.input[consumed..n],
                    &mut out[start..],
                    self.eof,
                );
                consumed += read;
                out.truncate(start + written);
                match result {
                    encoding_rs::DecoderResult::InputEmpty => break,
                    encoding_rs::DecoderResult::OutputFull => continue,
                    encoding_rs::DecoderResult::Malformed(_, _) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "bytes that are not valid {}",
                                self.decoder.encoding().name()
                            ),
                        ))
                    }
                }
            }
            let written = out.len();
            out.truncate(written);
            self.output = out;
            self.out_pos = 0;
        }
        let n = buf.len().min(self.output.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// A streaming reader of data records.
pub struct Reader {
    csv: csv::Reader<Box<dyn Read + Send>>,
    headers: Vec<String>,
    /// Decoding per field, for ASCII-compatible encodings other than UTF-8.
    decode: Option<&'static Encoding>,
    name: String,
    row: u64,
    raw: csv::ByteRecord,
    bytes_read: Arc<AtomicU64>,
    rows_read: Arc<AtomicU64>,
    total_bytes: Option<u64>,
    /// Compressed bytes read, when the file is compressed.
    raw_read: Option<Arc<AtomicU64>>,
    before_read: BeforeRead,
    /// A headerless file's first line: the first data record.
    first: Option<csv::ByteRecord>,
}

impl Reader {
    /// Opens the input and reads its header.
    pub fn open(source: &Origin, opts: &ReadOptions) -> Result<Reader, ReadError> {
        Reader::open_with_header(source, opts, true)
    }

    /// Like [`open`](Self::open); with `header` false the first line is
    /// data and the columns are named by position: `#1`, `#2`, ...
    pub fn open_with_header(
        source: &Origin,
        opts: &ReadOptions,
        header: bool,
    ) -> Result<Reader, ReadError> {
        let name = source.display_name();
        let bytes_read = Arc::new(AtomicU64::new(0));
        let (raw, total_bytes, gz_by_name): (Box<dyn Read + Send>, Option<u64>, bool) = match source
        {
            Origin::Stdin => (Box::new(std::io::stdin()), None, false),
            Origin::File(path) => {
                let mut file = File::open(path).map_err(|e| ReadError::Open {
                    path: path.clone(),
                    source: e,
                })?;
                verify_gzip(&mut file, path, &name)?;
                let size = file.metadata().ok().map(|m| m.len());
                let gz = path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
                (Box::new(file), size, gz)
            }
        };
        // Raw bytes read: for `.gz` the only measure of how far through the
        // file reading is (for plain files, the end of the last parsed record is).
        let raw_read = Arc::new(AtomicU64::new(0));
        let before_read = BeforeRead::default();
        let counted = Counting {
            inner: raw,
            count: raw_read.clone(),
            before: before_read.clone(),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, counted);
        // Gzip by name or by its magic bytes.
        let is_gz = gz_by_name || {
            use std::io::BufRead;
            buffered
                .fill_buf()
                .map(|b| b.starts_with(&[0x1f, 0x8b]))
                .unwrap_or(false)
        };
        let mut stream: Box<dyn Read + Send> = if is_gz {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        let mut decode = None;
        if opts.encoding != encoding_rs::UTF_8 {
            if opts.encoding.is_ascii_compatible() {
                decode = Some(opts.encoding);
            } else {
                // UTF-16: the delimiter is two bytes; transcode the stream first.
                stream = Box::new(Transcode {
                    inner: stream,
                    decoder: opts.encoding.new_decoder_with_bom_removal(),
                    input: Vec::new(),
                    output: Vec::new(),
                    out_pos: 0,
                    eof: false,
                });
            }
        }
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(stream);
        let mut raw_header = csv::ByteRecord::new();
        let got = csv
            .read_byte_record(&mut raw_header)
            .map_err(|e| read_error(&name, 0, e))?;
        if !got {
            return Err(ReadError::Empty { name });
        }
        let mut reader = Reader {
            csv,
            headers: Vec::new(),
            decode,
            name,
            row: 0,
            raw: csv::ByteRecord::new(),
            bytes_read,
            rows_read: Arc::new(AtomicU64::new(0)),
            total_bytes,
            raw_read: is_gz.then_some(raw_read),
            before_read,
            first: None,
        };
        if !header {
            let mut first =
                csv::ByteRecord::with_capacity(raw_header.as_slice().len(), raw_header.len());
            for (i, field) in raw_header.iter().enumerate() {
                first.push_field(match i {
                    0 => field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field),
                    _ => field,
                });
            }
            reader.headers = (1..=first.len()).map(|i| format!("#{i}")).collect();
            reader.first = Some(first);
            return Ok(reader);
        }
        let mut headers = Vec::with_capacity(raw_header.len());
        for (i, field) in raw_header.iter().enumerate() {
            let field = if i == 0 {
                field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
            } else {
                field
            };
            let text = reader.decode_field(field, 0, i)?;
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

    /// The next data record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        let mut raw = std::mem::take(&mut self.raw);
        let result = self.read_into(&mut raw);
        self.raw = raw;
        result
    }

    /// Like [`next_record`](Self::next_record), into a record the caller
    /// keeps reusing (no allocation per row once it has grown). Returns the
    /// row number.
    pub fn next_record_into(
        &mut self,
        fields: &mut csv::StringRecord,
    ) -> Result<Option<u64>, ReadError> {
        let mut raw = std::mem::take(&mut self.raw);
        let result = self.read_raw(&mut raw).and_then(|row| match row {
            Some(row) => {
                fields.clear();
                for (i, f) in raw.iter().enumerate() {
                    match self.decode {
                        None => fields.push_field(
                            std::str::from_utf8(f).map_err(|_| self.invalid_text(row, i, f))?,
                        ),
                        Some(_) => fields.push_field(&self.decode_field(f, row, i)?),
                    }
                }
                Ok(Some(row))
            }
            None => Ok(None),
        });
        self.raw = raw;
        result
    }

    /// Reads the next record's bytes and counts it; its row number.
    fn read_raw(&mut self, raw: &mut csv::ByteRecord) -> Result<Option<u64>, ReadError> {
        let got = match self.first.take() {
            Some(first) => {
                *raw = first;
                true
            }
            None => self
                .csv
                .read_byte_record(raw)
                .map_err(|e| read_error(&self.name, self.row + 1, e))?,
        };
        if !got {
            return Ok(None);
        }
        self.row += 1;
        self.rows_read.store(self.row, Ordering::Relaxed);
        // Where the parsed records end, not where read-ahead got to.
        let position = match &self.raw_read {
            Some(raw) => raw.load(Ordering::Relaxed),
            None => self.csv.position().byte(),
        };
        self.bytes_read.store(position, Ordering::Relaxed);
        Ok(Some(self.row))
    }

    fn read_into(&mut self, raw: &mut csv::ByteRecord) -> Result<Option<Record>, ReadError> {
        let Some(row) = self.read_raw(raw)? else {
            return Ok(None);
        };
        let fields = match self.decode {
            None => match csv::StringRecord::from_byte_record(raw.clone()) {
                Ok(r) => r,
                Err(e) => {
                    let col = e.utf8_error().field();
                    let field = raw.get(col).unwrap_or_default();
                    return Err(self.invalid_text(row, col, field));
                }
            },
            Some(_) => {
                let mut rec = csv::StringRecord::with_capacity(raw.as_slice().len(), raw.len());
                for (i, f) in raw.iter().enumerate() {
                    let text = self.decode_field(f, row, i)?;
                    rec.push_field(&text);
                }
                rec
            }
        };
        Ok(Some(Record { row, fields }))
    }

    fn decode_field(&self, bytes: &[u8], row: u64, col: usize) -> Result<String, ReadError> {
        match self.decode {
            None => std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|_| self.invalid_text(row, col, bytes)),
            Some(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned())
                .ok_or_else(|| self.invalid_text(row, col, bytes)),
        }
    }

    fn invalid_text(&self, row: u64, col: usize, bytes: &[u8]) -> ReadError {
        let encoding = self.decode.map(|e| e.name()).unwrap_or("UTF-8");
        let column = self
            .headers
            .get(col)
            .map(|h| format!("column {:?}", h))
            .unwrap_or_else(|| format!("column {}", col + 1));
        let bad = bytes
            .iter()
            .find(|b| **b >= 0x80)
            .map(|b| format!(" (byte 0x{b:02X})"))
            .unwrap_or_default();
        ReadError::InvalidText {
            name: self.name.clone(),
            place: place(row),
            column,
            encoding,
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
    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    /// Runs `hook` before each read of the underlying file or pipe: the
    /// moment reading may wait (a stalled stdin), so that whatever the
    /// caller holds from rows already read can go on first.
    pub fn before_read(&self, hook: impl FnMut() + Send + 'static) {
        *self.before_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }
}

/// A compressed file is read to its end once, checking gzip's checksums,
/// before any row of it is used: gzip finds damage only at the end of a
/// member, and no request may be built from bytes not yet verified.
fn verify_gzip(file: &mut File, path: &std::path::Path, name: &str) -> Result<(), ReadError> {
    use std::io::{Seek, SeekFrom};
    let open_error = |e| ReadError::Open {
        path: path.to_path_buf(),
        source: e,
    };
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(open_error)?;
    file.seek(SeekFrom::Start(0)).map_err(open_error)?;
    if n < 2 || magic != [0x1f, 0x8b] {
        return Ok(());
    }
    let mut decoder =
        flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, &mut *file));
    std::io::copy(&mut decoder, &mut std::io::sink()).map_err(|e| ReadError::Corrupt {
        name: name.to_string(),
        source: e,
    })?;
    drop(decoder);
    file.seek(SeekFrom::Start(0)).map_err(open_error)?;
    Ok(())
}

/// Where in the input: the header, or a row.
fn place(row: u64) -> String {
    if row == 0 {
        "the header".to_string()
    } else {
        format!("row {row}")
    }
}

fn read_error(name: &str, row: u64, e: csv::Error) -> ReadError {
    let place = if row == 0 {
        "the header".to_string()
    } else {
        format!("around row {row}")
    };
    let name = name.to_string();
    match e.kind() {
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ReadError::Undecodable {
                name,
                place,
                source: e,
            }
        }
        csv::ErrorKind::Io(_) => ReadError::Io {
            name,
            place,
            source: e,
        },
        _ => ReadError::Csv {
            name,
            place,
            source: e,
        },
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
    fn invalid_utf8_names_row_and_column_and_suggests_encoding() {
        let data = b"Name,City\nA,B\nRen\xe9e,X\n";
        let mut r = open(data, "a.csv", "utf-8", ",").unwrap();
        assert!(r.next_record().unwrap().is_some());
        let e = message(r.next_record().unwrap_err());
        assert!(e.contains("row 2"), "{}", e);
        assert!(e.contains("column \"Name\""), "{}", e);
        assert!(e.contains("--encoding windows-1252"), "{}", e);
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
        // An unpaired surrogate is an error, not a silent replacement.
        let mut bad = vec![0xFF, 0xFE];
        for u in "A,B\n1,".encode_utf16() {
            bad.extend_from_slice(&u.to_le_bytes());
        }
        bad.extend_from_slice(&0xD800u16.to_le_bytes());
        bad.extend_from_slice(&(b'x' as u16).to_le_bytes());
        let e = message(match open(&bad, "a.csv", "utf-16le", ",") {
            Err(e) => e,
            Ok(mut r) => r.next_record().unwrap_err(),
        });
        assert!(
            e.contains("not valid UTF-16LE") && e.contains("--encoding"),
            "{}",
            e
        );
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

    #[test]
    fn a_headerless_file_names_columns_by_position_and_keeps_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        std::fs::write(
            &path,
            "\u{feff}\"\",\"100\",\"+15551234\"\n\"\",\"101\",\"x\"\n",
        )
        .unwrap();
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
    }
}
