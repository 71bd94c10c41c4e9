//! The input: the export's rows, with the `digidesk_*` columns dropped and,
//! for `retry`, only the selected rows under their original numbers; and the
//! decision made on each row before any request (width, columns, mapping).

pub mod error;
mod raw;
pub mod read;
pub mod shape;
mod stream;

use crate::mapping::{Decision, Plan, Verdict};
use crate::request::SurveyRequest;
use crate::results::{self, Status};

pub use error::ReadError;
pub use read::{Origin, ReadOptions, Reader, Record};
pub use shape::{Meta, Notes, SharedNotes};

/// The columns of the input: how wide a record must be, and which columns
/// are kept (all but `digidesk_*`, which are never mapped: the results file
/// writes its own).
#[derive(Debug, Clone)]
pub struct Columns {
    /// The header, every column.
    headers: Vec<String>,
    /// Indexes of the columns kept; `None` = all.
    keep: Option<Vec<usize>>,
    /// The kept columns' names: the mapping's header and the results file's first columns.
    pub names: Vec<String>,
    /// Which columns (of the header) the mapping reads: until
    /// [`bind`](Self::bind) is called, all of them.
    used: Vec<bool>,
    /// What the reader noticed; deciding adds the replaced-bytes warnings.
    notes: SharedNotes,
}

impl Columns {
    fn of(headers: &[String], notes: SharedNotes) -> Columns {
        let keep: Vec<usize> = (0..headers.len())
            .filter(|&i| !results::is_result_column(&headers[i]))
            .collect();
        let names = keep.iter().map(|&i| headers[i].clone()).collect();
        Columns {
            headers: headers.to_vec(),
            keep: (keep.len() != headers.len()).then_some(keep),
            names,
            used: vec![true; headers.len()],
            notes,
        }
    }

    /// Records which columns `plan` reads: bytes not valid in the encoding
    /// in any other column are a warning, not an invalid row.
    pub fn bind(&mut self, plan: &Plan) {
        self.used = vec![false; self.headers.len()];
        for i in plan.columns_read() {
            let raw = match &self.keep {
                Some(keep) => keep.get(i).copied(),
                None => Some(i),
            };
            if let Some(flag) = raw.and_then(|r| self.used.get_mut(r)) {
                *flag = true;
            }
        }
    }

    /// The kept columns' names of a header.
    pub fn names_of(headers: &[String]) -> Vec<String> {
        Columns::of(headers, SharedNotes::default()).names
    }

    /// The kept columns of a record (all of them when none is dropped).
    pub fn project(&self, fields: csv::StringRecord) -> csv::StringRecord {
        match &self.keep {
            None => fields,
            Some(keep) => keep.iter().map(|&i| fields.get(i).unwrap_or("")).collect(),
        }
    }
}

/// Decides a row before any request: a record the reader could not read
/// reliably (a quoted field never closed), whose width is not the header's,
/// or with bytes not valid in the encoding in a column the mapping uses, is
/// invalid; otherwise its kept columns are mapped and validated. Returns the
/// kept columns (for the results file) and the decision.
pub fn decide(
    columns: &Columns,
    plan: &Plan,
    fields: csv::StringRecord,
    meta: &Meta,
) -> (csv::StringRecord, Decision) {
    let mut req = SurveyRequest::default();
    let (fields, verdict) = decide_into(columns, plan, fields, meta, &mut req);
    (fields, verdict.with(req))
}

/// Like [`decide`], building the request in `req` (see [`Plan::apply_into`]).
pub fn decide_into(
    columns: &Columns,
    plan: &Plan,
    fields: csv::StringRecord,
    meta: &Meta,
    req: &mut SurveyRequest,
) -> (csv::StringRecord, Verdict) {
    let findings = shape::check_record(
        meta,
        fields.len(),
        &columns.headers,
        &columns.used,
        &columns.notes,
    );
    let fields = columns.project(fields);
    match findings {
        Some(reasons) => (fields, Verdict::Invalid(reasons)),
        None => {
            let verdict = plan.apply_into(&fields, req);
            (fields, verdict)
        }
    }
}

/// `retry`'s choice of rows: from a results file by status, or from a
/// fixed export by row number.
#[derive(Debug, Clone)]
enum Selection {
    Status {
        row_column: usize,
        status_column: usize,
        statuses: Vec<Status>,
        /// Every row number seen so far: a row listed twice is refused.
        seen: std::collections::HashSet<u64>,
    },
    Numbers(std::collections::BTreeSet<u64>),
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
                            name: name.clone(),
                            column,
                            columns: headers.join(", "),
                        })
                };
                Some(Selection::Status {
                    row_column: find("digidesk_row")?,
                    status_column: find("digidesk_status")?,
                    statuses,
                    seen: Default::default(),
                })
            }
        };
        Ok(Rows {
            columns: Columns::of(&headers, reader.notes()),
            reader,
            select,
            name,
        })
    }

    /// Only the records of `reader` with these numbers (`retry --from`).
    pub fn numbered(reader: Reader, name: String, rows: std::collections::BTreeSet<u64>) -> Rows {
        let headers = reader.headers().to_vec();
        Rows {
            columns: Columns::of(&headers, reader.notes()),
            reader,
            select: Some(Selection::Numbers(rows)),
            name,
        }
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
    fn row_of(&mut self, read: u64, fields: &csv::StringRecord) -> Result<Option<u64>, ReadError> {
        let (row_column, status_column, statuses, seen) = match &mut self.select {
            None => return Ok(Some(read)),
            Some(Selection::Numbers(rows)) => return Ok(rows.contains(&read).then_some(read)),
            Some(Selection::Status {
                row_column,
                status_column,
                statuses,
                seen,
            }) => (*row_column, *status_column, statuses, seen),
        };
        let row = fields
            .get(row_column)
            .and_then(|r| r.trim().parse::<u64>().ok())
            .filter(|r| (1..=crate::journal::MAX_ROW).contains(r));
        if let Some(row) = row {
            if !seen.insert(row) {
                return Err(ReadError::RepeatedRow {
                    name: self.name.clone(),
                    record: read,
                    row,
                });
            }
        }
        let status = fields.get(status_column).and_then(Status::parse);
        if !status.is_some_and(|s| statuses.contains(&s)) {
            return Ok(None);
        }
        row.map(Some).ok_or_else(|| ReadError::BadRowNumber {
            name: self.name.clone(),
            record: read,
        })
    }
}
