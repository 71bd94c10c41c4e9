//! The input: the export's rows, with the `digidesk_*` columns dropped and,
//! for `retry`, only the selected rows under their original numbers; and the
//! decision made on each row before any request (width, columns, mapping).

pub mod error;
pub mod read;

use crate::mapping::{Decision, Plan};
use crate::results::{self, Status};

pub use error::ReadError;
pub use read::{Origin, ReadOptions, Reader, Record};

/// The columns of the input: how wide a record must be, and which columns
/// are kept (all but `digidesk_*`, which are never mapped: the results file
/// writes its own).
#[derive(Debug, Clone)]
pub struct Columns {
    /// The header's width.
    width: usize,
    /// Indexes of the columns kept; `None` = all.
    keep: Option<Vec<usize>>,
    /// The kept columns' names: the mapping's header and the results file's first columns.
    pub names: Vec<String>,
}

impl Columns {
    fn of(headers: &[String]) -> Columns {
        let keep: Vec<usize> = (0..headers.len())
            .filter(|&i| !results::is_result_column(&headers[i]))
            .collect();
        let names = keep.iter().map(|&i| headers[i].clone()).collect();
        Columns {
            width: headers.len(),
            keep: (keep.len() != headers.len()).then_some(keep),
            names,
        }
    }

    /// The kept columns of a record (all of them when none is dropped).
    pub fn project(&self, fields: csv::StringRecord) -> csv::StringRecord {
        match &self.keep {
            None => fields,
            Some(keep) => keep.iter().map(|&i| fields.get(i).unwrap_or("")).collect(),
        }
    }
}

/// Decides a row before any request: a record whose width is not the
/// header's is invalid; otherwise its kept columns are mapped and validated.
/// Returns the kept columns (for the results file) and the decision.
pub fn decide(
    columns: &Columns,
    plan: &Plan,
    fields: csv::StringRecord,
) -> (csv::StringRecord, Decision) {
    let (raw_width, width) = (fields.len(), columns.width);
    let fields = columns.project(fields);
    if raw_width != width {
        let reason = format!("row has {raw_width} fields, the header has {width}");
        return (fields, Decision::Invalid(vec![reason]));
    }
    let mapped = plan.apply(&fields);
    (fields, mapped)
}

/// `retry`'s choice of rows from a results file.
#[derive(Debug, Clone)]
struct Selection {
    row_column: usize,
    status_column: usize,
    statuses: Vec<Status>,
}

/// The rows of an input: its reader, its columns, and for `retry` which
/// rows are taken.
pub struct Rows {
    pub reader: Reader,
    pub columns: Columns,
    select: Option<Selection>,
    /// What the input is called in messages.
    pub name: String,
}

impl Rows {
    /// The rows of `reader`; for `retry`, only those whose `digidesk_status`
    /// is one of `statuses`.
    pub fn new(
        reader: Reader,
        name: String,
        statuses: Option<Vec<Status>>,
    ) -> Result<Rows, ReadError> {
        let headers = reader.headers().to_vec();
        let select = match statuses {
            None => None,
            Some(statuses) => {
                let find = |column: &'static str| {
                    headers
                        .iter()
                        .position(|h| h == column)
                        .ok_or_else(|| ReadError::NotResults {
                            column,
                            columns: headers.join(", "),
                        })
                };
                Some(Selection {
                    row_column: find("digidesk_row")?,
                    status_column: find("digidesk_status")?,
                    statuses,
                })
            }
        };
        Ok(Rows {
            columns: Columns::of(&headers),
            reader,
            select,
            name,
        })
    }

    /// The next selected record, numbered as in the original input; `None`
    /// at the end.
    pub fn next_row(&mut self) -> Result<Option<Record>, ReadError> {
        while let Some(mut record) = self.reader.next_record()? {
            if let Some(row) = self.row_of(record.row, &record.fields)? {
                record.row = row;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Like [`next_row`](Self::next_row), into a record the caller keeps reusing
    /// (no allocation per row once it has grown). Returns the row number.
    pub fn next_row_into(
        &mut self,
        fields: &mut csv::StringRecord,
    ) -> Result<Option<u64>, ReadError> {
        while let Some(read) = self.reader.next_record_into(fields)? {
            if let Some(row) = self.row_of(read, fields)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// The row number of a record, or `None` when `retry` does not select it.
    fn row_of(&self, read: u64, fields: &csv::StringRecord) -> Result<Option<u64>, ReadError> {
        let Some(sel) = &self.select else {
            return Ok(Some(read));
        };
        let status = fields.get(sel.status_column).and_then(Status::parse);
        if !status.is_some_and(|s| sel.statuses.contains(&s)) {
            return Ok(None);
        }
        fields
            .get(sel.row_column)
            .and_then(|r| r.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ReadError::BadRowNumber {
                name: self.name.clone(),
                record: read,
            })
    }
}
