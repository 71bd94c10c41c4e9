//! The bytes of an export before any CSV is parsed: a file or standard
//! input, gunzipped when compressed, its byte-order mark read (it chooses the
//! encoding, whatever `--encoding` says), UTF-16 transcoded to UTF-8, and
//! Excel's `sep=` first line read and removed (it chooses the delimiter).
//! What follows sees one ASCII-compatible stream.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use encoding_rs::{Encoding, UTF_8};

use super::error::ReadError;

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

/// What runs before each read of the underlying file or pipe (see
/// `Reader::before_read`).
pub(super) type BeforeRead = Arc<std::sync::Mutex<Option<Box<dyn FnMut() + Send>>>>;

/// An opened export, ready for the CSV parser.
pub(super) struct Opened {
    pub stream: Box<dyn BufRead + Send>,
    /// The encoding the text is in after opening: UTF-8 for a transcoded
    /// UTF-16 file.
    pub decode: &'static Encoding,
    /// The encoding of the file itself (UTF-16 for a transcoded one).
    pub file_encoding: &'static Encoding,
    pub delimiter: u8,
    /// The encoding a byte-order mark chose.
    pub bom: Option<&'static Encoding>,
    /// The delimiter a `sep=` first line chose.
    pub sep: Option<u8>,
    /// The size of the underlying file, when it is a file.
    pub total_bytes: Option<u64>,
    /// Bytes read from the underlying file or stdin, when positions in the
    /// parsed stream are not positions in the file (compressed, transcoded).
    pub raw_read: Option<Arc<AtomicU64>>,
    /// For a transcoded file: how many times bytes that are not valid in its
    /// encoding were replaced by U+FFFD.
    pub replaced: Option<Arc<AtomicU64>>,
    /// Runs before each read of the underlying file or pipe.
    pub before_read: BeforeRead,
}

/// Opens the export and reads what precedes the first CSV line.
pub(super) fn open(origin: &Origin, opts: &ReadOptions) -> Result<Opened, ReadError> {
    let name = origin.display_name();
    let (raw, total_bytes, gz_by_name): (Box<dyn Read + Send>, Option<u64>, bool) = match origin {
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
    let io_err = |e: std::io::Error| ReadError::Io {
        name: name.clone(),
        place: "the start".into(),
        source: e,
    };
    let raw_read = Arc::new(AtomicU64::new(0));
    let before_read = BeforeRead::default();
    let mut stream: Box<dyn Read + Send> = Box::new(Counting {
        inner: raw,
        count: raw_read.clone(),
        before: before_read.clone(),
    });
    // Gzip by name or by its magic bytes.
    let magic = head(&mut stream, 2).map_err(io_err)?;
    let is_gz = gz_by_name || magic.starts_with(&[0x1f, 0x8b]);
    let stream_rest = Cursor::new(magic).chain(stream);
    stream = if is_gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            256 * 1024,
            stream_rest,
        )))
    } else {
        Box::new(stream_rest)
    };
    // A byte-order mark always wins over --encoding: it is the file saying
    // what it is (Excel's "Unicode Text" is UTF-16LE with one).
    let start = head(&mut stream, 3).map_err(io_err)?;
    let bom = Encoding::for_bom(&start);
    let (file_encoding, skip) = match bom {
        Some((enc, len)) => (enc, len),
        None => (opts.encoding, 0),
    };
    if let Some((enc, _)) = bom {
        if enc != opts.encoding {
            tracing::info!(
                "{name} starts with a {} byte-order mark: read as {} (not {})",
                enc.name(),
                enc.name(),
                opts.encoding.name()
            );
        }
    }
    stream = Box::new(Cursor::new(start[skip..].to_vec()).chain(stream));
    let mut replaced = None;
    let mut decode = file_encoding;
    if !file_encoding.is_ascii_compatible() {
        // UTF-16: the delimiter is two bytes; transcode the stream first.
        let count = Arc::new(AtomicU64::new(0));
        replaced = Some(count.clone());
        stream = Box::new(Transcode {
            inner: stream,
            decoder: file_encoding.new_decoder_without_bom_handling(),
            input: vec![0; 16 * 1024],
            output: Vec::new(),
            out_pos: 0,
            eof: false,
            replaced: count,
        });
        decode = UTF_8;
    }
    // Excel's `sep=;` line: the file saying which delimiter it uses.
    let first = first_line(&mut stream).map_err(io_err)?;
    let sep = sep_line(&first);
    let rest = match sep {
        Some(_) => first.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1),
        None => 0,
    };
    let delimiter = match sep {
        Some(d) => {
            if d != opts.delimiter {
                tracing::info!(
                    "{name} starts with a \"sep={}\" line: the delimiter is {:?} (not {:?})",
                    d as char,
                    d as char,
                    opts.delimiter as char
                );
            }
            d
        }
        None => opts.delimiter,
    };
    let stream = Cursor::new(first[rest..].to_vec()).chain(stream);
    let positions_differ = is_gz || !file_encoding.is_ascii_compatible();
    Ok(Opened {
        stream: Box::new(BufReader::with_capacity(256 * 1024, stream)),
        decode,
        file_encoding,
        delimiter,
        bom: bom.map(|(e, _)| e),
        sep,
        total_bytes,
        raw_read: positions_differ.then_some(raw_read),
        before_read,
        replaced,
    })
}

/// Reads up to `n` bytes (fewer only at the end of the input).
fn head(r: &mut dyn Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Longest first line looked at for `sep=`.
const SEP_LINE_MAX: usize = 64;

/// The first line (with its `\n`), or the first bytes when it is longer
/// than a `sep=` line can be.
fn first_line(r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(SEP_LINE_MAX);
    let mut byte = [0u8; 1];
    while buf.len() < SEP_LINE_MAX {
        if r.read(&mut byte)? == 0 {
            break;
        }
        buf.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    Ok(buf)
}

/// The delimiter an Excel `sep=X` line declares: `sep=` (any case, possibly
/// quoted, possibly padded with more delimiters) and one ASCII character,
/// alone on the first line.
pub(super) fn sep_line(line: &[u8]) -> Option<u8> {
    if !line.ends_with(b"\n") {
        return None;
    }
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let rest = text.get(..4).filter(|p| p.eq_ignore_ascii_case("sep="))?;
    let value = &text[rest.len()..];
    let d = match value.as_bytes() {
        [b'\\', b't', ..] | [b'\t', ..] => b'\t',
        [d, ..] => *d,
        [] => return None,
    };
    if !d.is_ascii() || matches!(d, b'"' | b'\r' | b'\n') {
        return None;
    }
    // `d` is ASCII: one byte, so the rest starts after it.
    let padding = value.strip_prefix("\\t").unwrap_or(&value[1..]);
    padding.bytes().all(|b| b == d).then_some(d)
}

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

/// Transcodes a stream from a non-ASCII-compatible encoding (UTF-16) to
/// UTF-8. A sequence that is not valid (an unpaired surrogate) becomes
/// U+FFFD and is counted, so the reader can tell which record held it.
struct Transcode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
    replaced: Arc<AtomicU64>,
}

impl<R: Read> Read for Transcode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out_pos == self.output.len() {
            if self.eof {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.input)?;
            self.eof = n == 0;
            self.output.clear();
            self.out_pos = 0;
            let mut consumed = 0;
            loop {
                // Room for whatever is left; decoding continues until every
                // input byte is consumed, so nothing is ever dropped.
                let start = self.output.len();
                let room = self
                    .decoder
                    .max_utf8_buffer_length(n - consumed)
                    .unwrap_or((n - consumed) * 3 + 16)
                    .max(4);
                self.output.resize(start + room, 0);
                let (result, read, written, replaced) = self.decoder.decode_to_utf8(
                    &self.input[consumed..n],
                    &mut self.output[start..],
                    self.eof,
                );
                consumed += read;
                self.output.truncate(start + written);
                if replaced {
                    self.replaced.fetch_add(1, Ordering::Relaxed);
                }
                match result {
                    encoding_rs::CoderResult::InputEmpty => break,
                    encoding_rs::CoderResult::OutputFull => continue,
                }
            }
        }
        let n = buf.len().min(self.output.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sep_lines_that_excel_and_others_write() {
        assert_eq!(sep_line(b"sep=;\r\n"), Some(b';'));
        assert_eq!(sep_line(b"sep=,\n"), Some(b','));
        assert_eq!(sep_line(b"SEP=|\n"), Some(b'|'));
        assert_eq!(sep_line(b"\"sep=;\"\n"), Some(b';'));
        assert_eq!(sep_line(b"sep=;;;;\n"), Some(b';'));
        assert_eq!(sep_line(b"sep=\t\n"), Some(b'\t'));
        assert_eq!(sep_line(b"sep=\\t\n"), Some(b'\t'));
    }

    #[test]
    fn a_header_is_not_a_sep_line() {
        assert_eq!(sep_line(b"sep=;"), None, "no line end: not a whole line");
        assert_eq!(sep_line(b"sep=\n"), None);
        assert_eq!(sep_line(b"sep=;x\n"), None);
        assert_eq!(sep_line(b"sep=\"\n"), None);
        assert_eq!(sep_line("sep=é\n".as_bytes()), None);
        assert_eq!(sep_line(b"separator,Phone\n"), None);
        assert_eq!(sep_line(b"Name;Phone\n"), None);
    }
}
