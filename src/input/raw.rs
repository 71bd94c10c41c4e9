//! The CSV parser: one record's bytes at a time, with where it starts (line
//! and byte), how many physical lines it spans, and whether a quoted field
//! in it was never closed. A record's size is capped: past
//! [`MAX_RECORD_BYTES`] its content is dropped (its end is still found), so
//! one stray quote cannot take the rest of a file into memory.

use std::io::BufRead;

use csv_core::ReadRecordResult;

/// A record (in practice: a quoted field) larger than this is not kept.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A record with more fields than this keeps only the count.
const MAX_FIELDS: usize = 64 * 1024;

/// One record's bytes and where it came from.
#[derive(Debug, Clone, Default)]
pub(super) struct RawRecord {
    /// Room for the fields' bytes; the first `used` are this record's.
    buf: Vec<u8>,
    used: usize,
    /// Room for where each field ends in `buf`; the first `kept` are this record's.
    ends: Vec<usize>,
    kept: usize,
    /// How many fields the record had.
    pub fields: usize,
    /// The physical line it starts on (1-based, the header's line included).
    pub line: u64,
    /// How many physical lines it spans.
    pub lines: u64,
    /// Content was dropped: the record held more than `MAX_RECORD_BYTES`.
    pub overflow: bool,
    /// A quoted field was still open at the end of the input.
    pub unclosed: bool,
}

impl RawRecord {
    /// The `i`-th field's bytes (cut short when the record overflowed).
    pub fn field(&self, i: usize) -> &[u8] {
        let (start, end) = self.bounds(i);
        &self.buf[start..end]
    }

    /// Every field's bytes, contiguous (for a fast UTF-8 check).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.used]
    }

    /// Where field `i` starts and ends in [`bytes`](Self::bytes).
    pub fn bounds(&self, i: usize) -> (usize, usize) {
        let ends = &self.ends[..self.kept];
        let start = if i == 0 {
            0
        } else {
            ends.get(i - 1).copied().unwrap_or(self.used)
        };
        let end = ends.get(i).copied().unwrap_or(self.used);
        (start.min(self.used), end.min(self.used))
    }

    /// Every field is empty or spaces: a blank line of the export.
    pub fn is_blank(&self) -> bool {
        self.bytes().iter().all(|b| b.is_ascii_whitespace())
    }

    /// A record whose content cannot be trusted.
    pub fn is_broken(&self) -> bool {
        self.overflow || self.unclosed
    }
}

/// Parses records from a byte stream.
pub(super) struct Parser {
    core: csv_core::Reader,
    src: Box<dyn BufRead + Send>,
    /// Bytes consumed so far.
    pos: u64,
    /// Line ends skipped between records (the core does not see them).
    skipped_lines: u64,
    /// Lines before the stream (a `sep=` line).
    offset_lines: u64,
    done: bool,
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
}

impl Parser {
    pub fn new(src: Box<dyn BufRead + Send>, delimiter: u8, offset_lines: u64) -> Parser {
        Parser {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            src,
            pos: 0,
            skipped_lines: 0,
            offset_lines,
            done: false,
            scratch: vec![0; 64 * 1024],
            scratch_ends: vec![0; 1024],
        }
    }

    /// Bytes of the stream parsed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next record into `rec`; `false` at the end of the input.
    pub fn read(&mut self, rec: &mut RawRecord) -> std::io::Result<bool> {
        rec.used = 0;
        rec.kept = 0;
        rec.fields = 0;
        rec.overflow = false;
        rec.unclosed = false;
        if self.done {
            return Ok(false);
        }
        // Blank lines between records are skipped here rather than by the
        // core, so the line a record starts on is known.
        loop {
            let buf = self.src.fill_buf()?;
            let n = buf
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
            let all = n == buf.len();
            self.skipped_lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            self.src.consume(n);
            self.pos += n as u64;
            if !all || n == 0 {
                break;
            }
        }
        let line0 = self.core.line();
        rec.line = line0 + self.skipped_lines + self.offset_lines;
        let mut last = 0u8;
        let mut consumed = false;
        // At the end of the input part-way through a record, a line end is
        // fed first: a quoted field still open takes it as content (the
        // quote was never closed), any other record ends with it.
        let mut probed = false;
        loop {
            let input = self.src.fill_buf()?;
            let probe = input.is_empty() && consumed && !probed;
            let input: &[u8] = if probe {
                probed = true;
                b"\n"
            } else {
                input
            };
            if !rec.overflow && rec.used == rec.buf.len() {
                if rec.buf.len() >= MAX_RECORD_BYTES {
                    rec.overflow = true;
                } else {
                    let grow = rec.buf.len().clamp(256, MAX_RECORD_BYTES - rec.buf.len());
                    rec.buf.resize(rec.buf.len() + grow, 0);
                }
            }
            if rec.kept == rec.ends.len() && rec.ends.len() < MAX_FIELDS {
                let grow = rec.ends.len().max(16);
                rec.ends.resize(rec.ends.len() + grow, 0);
            }
            let output: &mut [u8] = if rec.overflow {
                &mut self.scratch
            } else {
                &mut rec.buf[rec.used..]
            };
            let ends_dropped = rec.kept == rec.ends.len();
            let ends: &mut [usize] = if ends_dropped {
                &mut self.scratch_ends
            } else {
                &mut rec.ends[rec.kept..]
            };
            let (res, nin, nout, nend) = self.core.read_record(input, output, ends);
            if probe {
                if res == ReadRecordResult::InputEmpty {
                    rec.unclosed = true;
                    // The probe's line end is not part of the field.
                    if !rec.overflow {
                        rec.used -= nout;
                    }
                    continue;
                }
            } else {
                if nin > 0 {
                    last = input[nin - 1];
                    consumed = true;
                }
                self.src.consume(nin);
                self.pos += nin as u64;
            }
            if !rec.overflow {
                rec.used += nout;
            }
            if !ends_dropped {
                rec.kept += nend;
            }
            rec.fields += nend;
            match res {
                ReadRecordResult::InputEmpty
                | ReadRecordResult::OutputFull
                | ReadRecordResult::OutputEndsFull => continue,
                ReadRecordResult::Record => {
                    let newlines = self.core.line() - line0 - u64::from(probed);
                    rec.lines = newlines + 1 - u64::from(last == b'\n' && newlines > 0);
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.done = true;
                    return Ok(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &[u8]) -> Vec<RawRecord> {
        let mut p = Parser::new(Box::new(std::io::Cursor::new(data.to_vec())), b',', 0);
        let mut out = Vec::new();
        let mut rec = RawRecord::default();
        while p.read(&mut rec).unwrap() {
            out.push(rec.clone());
        }
        out
    }

    fn fields(r: &RawRecord) -> Vec<String> {
        (0..r.fields)
            .map(|i| String::from_utf8_lossy(r.field(i)).into_owned())
            .collect()
    }

    #[test]
    fn records_with_their_lines_in_every_line_ending() {
        for nl in ["\n", "\r\n"] {
            let data = format!("h1,h2{nl}a,b{nl}{nl}\"x{nl}y\",z{nl}last,one");
            let recs = parse(data.as_bytes());
            assert_eq!(recs.len(), 4, "{nl:?}");
            assert_eq!(fields(&recs[1]), ["a", "b"]);
            assert_eq!((recs[1].line, recs[1].lines), (2, 1), "{nl:?}");
            assert_eq!(fields(&recs[2]), [format!("x{nl}y"), "z".into()]);
            assert_eq!((recs[2].line, recs[2].lines), (4, 2), "{nl:?}");
            assert_eq!((recs[3].line, recs[3].lines), (6, 1), "{nl:?}");
            assert!(recs.iter().all(|r| !r.unclosed && !r.overflow));
        }
    }

    #[test]
    fn a_quote_never_closed_is_told_apart_from_a_missing_last_line_end() {
        let recs = parse(b"h1,h2\n1,\"open\n2,b\n3,c\n");
        assert_eq!(recs.len(), 2);
        assert!(recs[1].unclosed);
        assert_eq!((recs[1].line, recs[1].lines), (2, 3));
        let recs = parse(b"h1,h2\n1,\"closed\"");
        assert!(!recs[1].unclosed);
        let recs = parse(b"h1,h2\n1,plain");
        assert!(!recs[1].unclosed);
        assert_eq!(fields(&recs[1]), ["1", "plain"]);
    }

    #[test]
    fn a_huge_field_is_capped_and_reading_goes_on_after_it() {
        let mut data = b"h1,h2\n1,\"".to_vec();
        for i in 0..100_000 {
            data.extend_from_slice(format!("{i},swallowed line\n").as_bytes());
        }
        data.extend_from_slice(b"end\",x\n2,after\n");
        let recs = parse(&data);
        assert_eq!(recs.len(), 3);
        assert!(recs[1].overflow && !recs[1].unclosed);
        assert_eq!(recs[1].fields, 3);
        assert!(recs[1].bytes().len() <= MAX_RECORD_BYTES);
        assert_eq!((recs[1].line, recs[1].lines), (2, 100_001));
        assert_eq!(fields(&recs[2]), ["2", "after"]);
        assert_eq!(recs[2].line, 100_003);
    }
}
