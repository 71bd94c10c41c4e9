//! What `retry` learns from a results file before sending anything: its
//! delimiter (found in its header, so a file saved by Excel with `;` is read
//! as it is), how many rows it has of each status, and which rows the
//! selection takes; and, for `retry --from`, whether a fixed export still
//! lines up with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use encoding_rs::Encoding;

use crate::exit::Fatal;
use crate::input::{Columns, Origin, ReadError, ReadOptions, Reader};
use crate::results::{self, Status};

/// What a results file holds, as far as `retry` is concerned.
#[derive(Debug)]
pub struct Scan {
    /// Its delimiter.
    pub delimiter: u8,
    /// The export's own columns (the `digidesk_*` ones left out).
    pub input_columns: Vec<String>,
    /// Rows per status.
    pub counts: BTreeMap<Status, u64>,
    /// The numbers of the rows whose status is selected.
    pub selected: BTreeSet<u64>,
    /// The highest row number of any status.
    pub max_row: u64,
    /// For `--from`: a hash of each export cell of each selected row, to
    /// tell a fixed row from another row.
    pub cells: BTreeMap<u64, Vec<u64>>,
}

fn hash_cell(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.trim().hash(&mut h);
    h.finish()
}

/// Whether a row of the fixed export is the row it replaces: more of the
/// cells that are not empty in both are the same than differ.
fn same_row(old: &[u64], new: &[u64], empty: u64) -> (bool, usize, usize) {
    let (mut same, mut differ) = (0, 0);
    for (a, b) in old.iter().zip(new) {
        if *a == empty && *b == empty {
            continue;
        }
        if a == b {
            same += 1;
        } else {
            differ += 1;
        }
    }
    (same > differ, same, same + differ)
}

/// The delimiter of a results file: the character just before
/// `digidesk_row` in its header line. `None` when the header has no such column.
pub fn detect_delimiter(path: &Path) -> Option<u8> {
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.split(|b| *b == b'\n').next()?;
    let at = line.windows(12).position(|w| w == b"digidesk_row")?;
    let before = line[..at].strip_suffix(b"\"").unwrap_or(&line[..at]);
    before
        .last()
        .copied()
        .filter(|b| !b.is_ascii_alphanumeric())
}

/// Reads a results file's header and its `digidesk_row` and `digidesk_status`
/// columns. `encoding` names the columns when they are not UTF-8.
pub fn scan(
    path: &Path,
    delimiter: u8,
    encoding: &'static Encoding,
    statuses: &[Status],
    keep_cells: bool,
) -> Result<Scan, Fatal> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| Fatal::usage(format!("cannot open the results file {name}: {e}")))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(std::io::BufReader::new(file));
    let mut rec = csv::ByteRecord::new();
    let read_err = |e: csv::Error| Fatal::usage(format!("cannot read {name}: {e}"));
    if !rdr.read_byte_record(&mut rec).map_err(read_err)? {
        return Err(Fatal::usage(format!(
            "{name} is empty: it is not a results file of digidesk-upload"
        )));
    }
    let text = |f: &[u8]| match std::str::from_utf8(f) {
        Ok(s) => s.trim().to_string(),
        Err(_) => encoding.decode_without_bom_handling(f).0.trim().to_string(),
    };
    let header: Vec<String> = rec
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 0 {
                text(f.strip_prefix(results::BOM).unwrap_or(f))
            } else {
                text(f)
            }
        })
        .collect();
    let export_cells: Vec<usize> = (0..header.len())
        .filter(|&i| !results::is_result_column(&header[i]))
        .collect();
    let find = |column: &'static str| {
        header
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| ReadError::NotResults {
                name: name.clone(),
                column,
                columns: header.join(", "),
            })
    };
    let row_column = find("digidesk_row")?;
    let status_column = find("digidesk_status")?;
    let mut scan = Scan {
        delimiter,
        input_columns: header
            .iter()
            .filter(|h| !results::is_result_column(h))
            .cloned()
            .collect(),
        counts: BTreeMap::new(),
        selected: BTreeSet::new(),
        max_row: 0,
        cells: BTreeMap::new(),
    };
    let mut record = 0u64;
    while rdr.read_byte_record(&mut rec).map_err(read_err)? {
        record += 1;
        let cell = |i: usize| std::str::from_utf8(rec.get(i).unwrap_or_default()).unwrap_or("");
        let Some(status) = Status::parse(cell(status_column)) else {
            continue;
        };
        let row: u64 = cell(row_column)
            .trim()
            .parse()
            .map_err(|_| ReadError::BadRowNumber {
                name: name.clone(),
                record,
            })?;
        *scan.counts.entry(status).or_default() += 1;
        scan.max_row = scan.max_row.max(row);
        if statuses.contains(&status) {
            // Rows sent from RESULTS are decoded in the run: a wrong
            // encoding is found now, before any file is written.
            if !keep_cells
                && encoding == encoding_rs::UTF_8
                && std::str::from_utf8(rec.as_slice()).is_err()
            {
                return Err(Fatal::usage(format!(
                    "{name}, row {row}: text that is not valid UTF-8; the file was probably saved in another encoding: \
try --encoding windows-1252 (Excel on Windows writes it)"
                )));
            }
            scan.selected.insert(row);
            if keep_cells {
                let hashes = export_cells
                    .iter()
                    .map(|&i| hash_cell(&text(rec.get(i).unwrap_or_default())))
                    .collect();
                scan.cells.insert(row, hashes);
            }
        }
    }
    Ok(scan)
}

/// Refuses a fixed export whose rows would not line up with the results
/// file's: another header, fewer rows than a selected row number, or a
/// selected row that has less in common with the row it replaces than a fix
/// would leave.
pub fn check_lines_up(
    scan: &Scan,
    results: &Path,
    fixed: &Path,
    read: &ReadOptions,
    header: bool,
) -> Result<(), Fatal> {
    let origin = Origin::File(fixed.to_path_buf());
    let mut reader = Reader::open_with_header(&origin, read, header)?;
    let columns = Columns::names_of(reader.headers());
    let (fixed_name, results_name) = (fixed.display(), results.display());
    if columns != scan.input_columns {
        let lacks: Vec<String> = scan
            .input_columns
            .iter()
            .filter(|c| !columns.contains(c))
            .map(|c| format!("{c:?}"))
            .collect();
        let adds: Vec<String> = columns
            .iter()
            .filter(|c| !scan.input_columns.contains(c))
            .map(|c| format!("{c:?}"))
            .collect();
        let mut what = String::new();
        if !lacks.is_empty() {
            let _ = write!(what, "; it lacks {}", lacks.join(", "));
        }
        if !adds.is_empty() {
            let _ = write!(what, "; it has {} in addition", adds.join(", "));
        }
        if what.is_empty() {
            what = "; it has them in another order".into();
        }
        return Err(Fatal::usage(format!(
            "{fixed_name} does not have the columns of the export that {results_name} was written from{what}. \
Fix only the values in the export, keeping its header and its rows where they were"
        )));
    }
    let keep: Vec<usize> = (0..reader.headers().len())
        .filter(|&i| !results::is_result_column(&reader.headers()[i]))
        .collect();
    let empty = hash_cell("");
    let mut fields = csv::StringRecord::new();
    let mut rows = 0u64;
    while let Some(row) = reader.next_record_into(&mut fields)? {
        rows = row;
        let Some(old) = scan.cells.get(&row) else {
            continue;
        };
        let new: Vec<u64> = keep
            .iter()
            .map(|&i| hash_cell(fields.get(i).unwrap_or("")))
            .collect();
        let (same, equal, compared) = same_row(old, &new, empty);
        if !same {
            return Err(Fatal::usage(format!(
                "row {row} of {fixed_name} is not row {row} of the export {results_name} was written from (only {equal} of its {compared} filled cells are the same): rows were added, removed or sorted. Keep every row where it was and fix only the values"
            )));
        }
    }
    let highest = scan.selected.last().copied().unwrap_or(0);
    if rows < highest {
        let beyond = scan.selected.range(rows + 1..).count();
        return Err(Fatal::usage(format!(
            "{fixed_name} has {rows} rows, but {beyond} of the rows to resend are beyond it (up to row {highest} of {results_name}): \
it is not the export {results_name} was written from, or rows were removed. Keep every row where it was and fix only the values"
        )));
    }
    Ok(())
}

/// What to say when nothing matches the selection: what there is, and how
/// to resend it. `base` is the retry command up to its options.
pub fn nothing_to_retry(scan: &Scan, results: &Path, statuses: &[Status], base: &str) -> String {
    let count = |s: Status| scan.counts.get(&s).copied().unwrap_or(0);
    let selected: Vec<String> = statuses
        .iter()
        .map(|s| format!("0 {}", s.as_str()))
        .collect();
    let fixable: Vec<Status> = [Status::Failed, Status::Rejected, Status::Invalid]
        .into_iter()
        .filter(|s| !statuses.contains(s) && count(*s) > 0)
        .collect();
    let others: Vec<String> = fixable
        .iter()
        .chain([Status::Unknown].iter().filter(|s| !statuses.contains(s)))
        .filter(|s| count(**s) > 0)
        .map(|s| format!("{} {}", count(*s), s.as_str()))
        .collect();
    let mut out = String::new();
    let _ = write!(out, "retry: {}", selected.join(", "));
    if others.is_empty() {
        let _ = writeln!(out, " in {}: nothing to resend.", results.display());
    } else {
        let _ = write!(out, "; {}", others.join(", "));
        let names: Vec<&str> = fixable.iter().map(|s| s.as_str()).collect();
        if names.is_empty() {
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, ": --only {} after fixing them", names.join(","));
        }
    }
    let _ = writeln!(
        out,
        "Nothing was sent; no results file was written. {} has {} created and {} skipped rows.",
        results.display(),
        count(Status::Created),
        count(Status::Skipped)
    );
    if !fixable.is_empty() {
        let only: Vec<&str> = fixable.iter().map(|s| s.as_str()).collect();
        let only = only.join(",");
        let _ = writeln!(
            out,
            "Once the mapping is fixed, resend them with:\n  {base} --only {only}\n\
Once the export is fixed (same rows, same header), resend them from it with:\n  {base} --from FIXED_EXPORT.csv --only {only}"
        );
    }
    if count(Status::Unknown) > 0 && !statuses.contains(&Status::Unknown) {
        let _ = writeln!(
            out,
            "{} rows are unknown: they may exist in DigiDesk. Check there before resending them with --only unknown.",
            count(Status::Unknown)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_character_before_digidesk_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        for (content, want) in [
            (
                &b"\xEF\xBB\xBFRef;digidesk_row;digidesk_status\n"[..],
                Some(b';'),
            ),
            (b"Ref,\"digidesk_row\",digidesk_status\n", Some(b',')),
            (b"Ref\tdigidesk_row\n", Some(b'\t')),
            (b"Ref,Phone\ndigidesk_row\n", None),
        ] {
            std::fs::write(&p, content).unwrap();
            assert_eq!(detect_delimiter(&p), want, "{content:?}");
        }
    }

    #[test]
    fn a_fixed_row_is_the_same_row_a_shifted_one_is_not() {
        let empty = hash_cell("");
        let h = |cells: &[&str]| cells.iter().map(|c| hash_cell(c)).collect::<Vec<_>>();
        let old = h(&["R10", "Zoë", "Smith 10", "", "Billing", ""]);
        let fixed = h(&["R10", "Zoë", "Smith 10", "07400 100010", "Billing", ""]);
        let shifted = h(&["R11", "Zoë", "Smith 11", "07400 100011", "Billing", ""]);
        assert_eq!(same_row(&old, &fixed, empty), (true, 4, 5));
        assert!(!same_row(&old, &shifted, empty).0);
    }
}
