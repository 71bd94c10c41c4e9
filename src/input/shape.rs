//! What the reader found out about the export's shape (a `sep=` line, a
//! byte-order mark, a footer, replaced bytes) and about each record (where
//! it lies, which cells held bytes not valid in the encoding, a quoted field
//! never closed), and what that makes of a record before it is mapped.
//! See docs/design.md, "Shapes of real files".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::output::thousands;

use super::raw::MAX_RECORD_BYTES;

/// A cell holding bytes that are not valid in the encoding; its text has
/// U+FFFD in their place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCell {
    /// The column's index in the record.
    pub column: usize,
    /// Where the first bad byte is in the cell's bytes, and its value (not
    /// known for a transcoded UTF-16 file).
    pub at: Option<(usize, u8)>,
}

/// Where a record lies in the input and what was wrong with its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The physical line it starts on (1-based; the header is line 1, or 2
    /// after a `sep=` line).
    pub line: u64,
    /// How many physical lines it spans (more than 1 when a quoted field
    /// holds line breaks).
    pub lines: u64,
    /// Cells whose bytes were not valid in the encoding.
    pub bad: Vec<BadCell>,
    /// The record cannot be trusted: why (a quoted field never closed, or
    /// one too large). Such a record is `invalid`.
    pub broken: Option<String>,
}

impl Meta {
    /// The physical lines it spans, in words: `line 7` or `lines 7-9`.
    pub fn lines_text(&self) -> String {
        if self.lines <= 1 {
            format!("line {}", self.line)
        } else {
            format!(
                "lines {}-{}",
                thousands(self.line),
                thousands(self.line + self.lines - 1)
            )
        }
    }
}

/// Why a record cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
    /// A quoted field still open at the end of the input.
    Unclosed,
    /// A record over the size cap.
    TooLarge,
    /// A quoted field whose lines look like rows of the export.
    HoldsRows,
}

/// Why a record is broken, naming the line that opened it and the lines it
/// took.
pub(super) fn broken_reason(line: u64, lines: u64, why: Broken) -> String {
    let last = line + lines.max(1) - 1;
    let span = format!(
        "lines {}-{} ({} lines)",
        thousands(line),
        thousands(last),
        thousands(lines)
    );
    let opened = format!(
        "a quoted field in the record starting on line {}",
        thousands(line)
    );
    match why {
        Broken::Unclosed => format!(
            "{opened} is never closed: it runs to the end of the input and takes {span}, whose rows were not read; close the quote in the export and send them again"
        ),
        Broken::TooLarge => format!(
            "{opened} holds more than {} MiB, over {span}: a quote is probably not closed where it should be, and the rows on those lines were not read; fix the quote in the export and send them again",
            MAX_RECORD_BYTES / (1024 * 1024)
        ),
        Broken::HoldsRows => format!(
            "{opened} takes {span} that look like rows of the export (as many delimiters as a row): a quote is probably not closed where it should be, and those rows were not read; fix the quote in the export and send them again"
        ),
    }
}

/// What the reader noticed about the whole input, for `check`'s report and
/// `send`'s summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// The delimiter an Excel `sep=` first line set.
    pub sep: Option<char>,
    /// The encoding a byte-order mark chose.
    pub bom: Option<&'static str>,
    /// The footer: records after the data that are not records of the
    /// export, ignored.
    pub footer: Option<Footer>,
    /// Rows whose bytes not valid in the encoding were replaced (U+FFFD) in
    /// columns the mapping does not use: a warning, the row is sent.
    pub replaced_rows: u64,
    /// Those rows per column.
    pub replaced_columns: BTreeMap<String, u64>,
    /// The encoding, for messages.
    pub encoding: &'static str,
}

/// The footer's records and where they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Footer {
    pub records: u64,
    pub first_line: u64,
    pub last_line: u64,
}

/// Notes shared between the reader and whoever decides rows.
pub type SharedNotes = Arc<Mutex<Notes>>;

/// The notes as they stand.
pub fn snapshot(notes: &SharedNotes) -> Notes {
    notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Notes {
    /// Rows ignored (the footer's records).
    pub fn ignored(&self) -> u64 {
        self.footer.as_ref().map_or(0, |f| f.records)
    }

    /// Lines for a report: the shape found, what was ignored and warnings.
    /// Empty when there is nothing to say.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(enc) = self.bom {
            let _ = writeln!(
                out,
                "  the input starts with a {enc} byte-order mark: read as {enc}"
            );
        }
        if let Some(sep) = self.sep {
            let shown = if sep == '\t' {
                "tab".to_string()
            } else {
                format!("{sep:?}")
            };
            let _ = writeln!(
                out,
                "  the input's first line \"sep=\" sets the delimiter: {shown}"
            );
        }
        if let Some(f) = &self.footer {
            let lines = if f.first_line == f.last_line {
                format!("line {}", thousands(f.first_line))
            } else {
                format!(
                    "lines {}-{}",
                    thousands(f.first_line),
                    thousands(f.last_line)
                )
            };
            let _ = writeln!(
                out,
                "  ignored: the footer after the data ({lines}, {}), not records of the export",
                plural(f.records, "record")
            );
        }
        if self.replaced_rows > 0 {
            let columns: Vec<String> = self
                .replaced_columns
                .iter()
                .map(|(c, n)| format!("{c:?} ({})", thousands(*n)))
                .collect();
            let _ = writeln!(
                out,
                "  warning: {} had bytes that are not valid {}, replaced by \u{FFFD} in columns the mapping does not use: {}",
                plural(self.replaced_rows, "row"),
                self.encoding,
                columns.join(", ")
            );
        }
        out
    }

    /// The same for `--summary-json`.
    pub fn to_json(&self) -> NotesJson {
        let mut ignored = BTreeMap::new();
        if let Some(f) = &self.footer {
            ignored.insert("footer", f.records);
        }
        NotesJson {
            ignored,
            footer: self.footer.clone(),
            replaced: (self.replaced_rows > 0).then(|| Replaced {
                rows: self.replaced_rows,
                columns: self.replaced_columns.clone(),
            }),
            delimiter_from_sep_line: self.sep.map(String::from),
            encoding_from_bom: self.bom,
        }
    }
}

/// The notes in `--summary-json`.
#[derive(Debug, Clone, Serialize)]
pub struct NotesJson {
    /// Records ignored, per reason (`footer`).
    pub ignored: BTreeMap<&'static str, u64>,
    pub footer: Option<Footer>,
    /// Warnings: rows sent with bytes replaced in columns the mapping does not use.
    pub replaced: Option<Replaced>,
    pub delimiter_from_sep_line: Option<String>,
    pub encoding_from_bom: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replaced {
    pub rows: u64,
    pub columns: BTreeMap<String, u64>,
}

/// A record as the reader found it, before it is mapped: the reasons it is
/// `invalid`, or `None` to map it. A record that is broken, or whose width
/// is not the header's, is invalid; so is one with bytes not valid in the
/// encoding in a column the mapping uses (`used`, by the record's column
/// index). Bad bytes in other columns are counted in `notes` as a warning.
pub fn check_record(
    meta: &Meta,
    fields: usize,
    headers: &[String],
    used: &[bool],
    notes: &SharedNotes,
) -> Option<Vec<String>> {
    if let Some(reason) = &meta.broken {
        return Some(vec![reason.clone()]);
    }
    let width = headers.len();
    if fields != width {
        let mut reason = format!("row has {fields} fields, the header has {width}");
        if meta.lines > 1 {
            let _ = write!(
                reason,
                "; it spans {} physical lines ({}): a quote in it is probably not closed where it should be",
                thousands(meta.lines),
                meta.lines_text()
            );
        }
        return Some(vec![reason]);
    }
    if meta.bad.is_empty() {
        return None;
    }
    let (used_bad, unused_bad): (Vec<&BadCell>, Vec<&BadCell>) = meta
        .bad
        .iter()
        .partition(|b| used.get(b.column).copied().unwrap_or(false));
    let mut guard = notes.lock().unwrap_or_else(|p| p.into_inner());
    if !used_bad.is_empty() {
        let encoding = guard.encoding;
        let reasons = used_bad
            .iter()
            .map(|b| bad_reason(b, headers, encoding))
            .collect();
        return Some(reasons);
    }
    guard.replaced_rows += 1;
    for b in unused_bad {
        let name = column_name(headers, b.column);
        *guard.replaced_columns.entry(name).or_default() += 1;
    }
    None
}

/// `1 row`, `2 rows`.
fn plural(n: u64, word: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {word}{s}", thousands(n))
}

fn column_name(headers: &[String], column: usize) -> String {
    match headers.get(column) {
        Some(h) if !h.is_empty() => h.clone(),
        _ => format!("#{}", column + 1),
    }
}

/// The reason for a cell the mapping uses that held bytes not valid in the
/// encoding.
fn bad_reason(b: &BadCell, headers: &[String], encoding: &str) -> String {
    let column = column_name(headers, b.column);
    let at = match b.at {
        Some((offset, byte)) => {
            format!(" (byte 0x{byte:02X} at byte offset {offset} of the value)")
        }
        None => String::new(),
    };
    format!(
        "column {column:?} holds bytes that are not valid {encoding}{at}; {}",
        super::error::encoding_hint(encoding, false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<String> {
        ["Name", "Phone", "Notes"].map(String::from).to_vec()
    }

    fn notes() -> SharedNotes {
        Arc::new(Mutex::new(Notes {
            encoding: "UTF-8",
            ..Notes::default()
        }))
    }

    fn meta(bad: &[usize]) -> Meta {
        Meta {
            line: 5,
            lines: 1,
            bad: bad
                .iter()
                .map(|&column| BadCell {
                    column,
                    at: Some((3, 0xE9)),
                })
                .collect(),
            broken: None,
        }
    }

    #[test]
    fn bad_bytes_in_a_used_column_make_the_row_invalid_naming_column_byte_and_hint() {
        let n = notes();
        let reasons = check_record(&meta(&[0]), 3, &headers(), &[true, true, false], &n).unwrap();
        assert_eq!(reasons.len(), 1);
        let r = &reasons[0];
        assert!(r.contains("column \"Name\""), "{r}");
        assert!(r.contains("0xE9") && r.contains("byte offset 3"), "{r}");
        assert!(r.contains("--encoding windows-1252"), "{r}");
        assert_eq!(snapshot(&n).replaced_rows, 0);
    }

    #[test]
    fn bad_bytes_in_an_unused_column_are_a_counted_warning() {
        let n = notes();
        let used = [true, true, false];
        assert_eq!(check_record(&meta(&[2]), 3, &headers(), &used, &n), None);
        assert_eq!(check_record(&meta(&[2]), 3, &headers(), &used, &n), None);
        assert_eq!(check_record(&meta(&[]), 3, &headers(), &used, &n), None);
        let s = snapshot(&n);
        assert_eq!(s.replaced_rows, 2);
        assert_eq!(s.replaced_columns.get("Notes"), Some(&2));
        let text = s.render();
        assert!(text.contains("warning: 2 rows had bytes"), "{text}");
        assert!(
            text.contains("not valid UTF-8") && text.contains("\"Notes\" (2)"),
            "{text}"
        );
    }

    #[test]
    fn a_short_row_spanning_lines_says_so() {
        let n = notes();
        let mut m = meta(&[]);
        m.lines = 3;
        let r = check_record(&m, 2, &headers(), &[true; 3], &n).unwrap();
        assert!(
            r[0].starts_with("row has 2 fields, the header has 3"),
            "{}",
            r[0]
        );
        assert!(r[0].contains("3 physical lines (lines 5-7)"), "{}", r[0]);
        m.lines = 1;
        let r = check_record(&m, 2, &headers(), &[true; 3], &n).unwrap();
        assert_eq!(r[0], "row has 2 fields, the header has 3");
    }

    #[test]
    fn a_broken_record_is_invalid_whatever_its_width() {
        let n = notes();
        let mut m = meta(&[]);
        m.broken = Some(broken_reason(5, 3, Broken::Unclosed));
        let r = check_record(&m, 3, &headers(), &[true; 3], &n).unwrap();
        assert!(
            r[0].contains("starting on line 5 is never closed"),
            "{}",
            r[0]
        );
        assert!(r[0].contains("lines 5-7 (3 lines)"), "{}", r[0]);
    }
}
