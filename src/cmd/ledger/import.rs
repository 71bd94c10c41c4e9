//! `ledger import RESULTS... --mapping FILE`: records the `created` and
//! `unknown` rows of existing results files, keyed through the mapping they
//! were sent with and scoped like `send`, so that adopting the ledger after
//! months of runs still stops those surveys from being sent again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Columns;
use crate::cli::LedgerImportArgs;
use crate::config::parse_delimiter;
use crate::exit::{Exit, Fatal};
use crate::input::{Origin, ReadOptions, Reader};
use crate::ledger::{self, ImportCounts, Imported, RunInfo, Scope, Store};
use crate::mapping::{Decision as Mapped, Mapping, Plan};
use crate::results::Status;
use crate::summary::thousands;

/// Rows imported per transaction: short enough that a send waiting for the
/// ledger never waits long.
const BATCH: usize = 5_000;

/// Rows listed per kind of problem.
const EXAMPLES: usize = 5;

/// One results file, opened and checked against the mapping.
struct Prepared {
    path: PathBuf,
    name: String,
    reader: Reader,
    columns: Columns,
    plan: Plan,
    row_col: usize,
    status_col: usize,
    id_col: usize,
}

/// What one file gave.
#[derive(Default)]
struct FileReport {
    created: u64,
    unknown: u64,
    counts: ImportCounts,
    /// Created or unknown rows the mapping does not turn into a request now.
    unkeyed: u64,
    unkeyed_rows: Vec<u64>,
}

pub fn run(args: LedgerImportArgs) -> Result<Exit, Fatal> {
    let mapping = Mapping::load(&args.mapping)?;
    let scope = super::scope(&args.scope)?;
    let read = ReadOptions {
        encoding: encoding_rs::UTF_8,
        delimiter: parse_delimiter(&args.delimiter)?,
    };
    // Every file is opened and checked before anything is imported.
    let files = args
        .results
        .iter()
        .map(|p| prepare(p, &mapping, &read))
        .collect::<Result<Vec<_>, Fatal>>()?;
    let path = ledger::file(args.file.ledger.as_deref())?;
    let mut store = ledger::open(&path)?;
    let mut out = String::new();
    let mut total = ImportCounts::default();
    let mut unkeyed = 0;
    for file in files {
        let r = import(store.as_mut(), &scope, file, &mut out)?;
        add(&mut total, r.counts);
        unkeyed += r.unkeyed;
    }
    let _ = writeln!(
        out,
        "ledger {} ({} as {}): {} surveys added, {} now known as created, {} already known",
        store.location(),
        scope.endpoint,
        scope.username,
        thousands(total.added),
        thousands(total.upgraded),
        thousands(total.known)
    );
    crate::output::print(&out);
    Ok(if unkeyed > 0 {
        Exit::SomeRowsNotCreated
    } else {
        Exit::Success
    })
}

fn prepare(path: &Path, mapping: &Mapping, read: &ReadOptions) -> Result<Prepared, Fatal> {
    let input = Origin::File(path.to_path_buf());
    let name = input.display_name();
    let reader = Reader::open(&input, read)?;
    let headers = reader.headers().to_vec();
    let find = |column: &str| {
        headers.iter().position(|h| h == column).ok_or_else(|| {
            Fatal::usage(format!(
                "{name} is not a results file of digidesk-upload: it has no {column:?} column (columns: {})",
                headers.join(", ")
            ))
        })
    };
    let (row_col, status_col, id_col) = (
        find("digidesk_row")?,
        find("digidesk_status")?,
        find("digidesk_id")?,
    );
    let columns = Columns::of(&headers);
    let plan = Plan::compile(mapping, &columns.names, &name)?;
    Ok(Prepared {
        path: path.to_path_buf(),
        name,
        reader,
        columns,
        plan,
        row_col,
        status_col,
        id_col,
    })
}

fn import(
    store: &mut dyn Store,
    scope: &Scope,
    mut f: Prepared,
    out: &mut String,
) -> Result<FileReport, Fatal> {
    // When it was sent, as well as can be told: when the file was last written.
    let at = std::fs::metadata(&f.path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let results = std::path::absolute(&f.path).unwrap_or_else(|_| f.path.clone());
    let run = store.begin_run(
        scope,
        &RunInfo {
            command: "import".into(),
            results,
            fingerprint: String::new(),
            // Importing the same file again adds to its run.
            resume: true,
        },
    )?;
    let hasher = store.hasher().clone();
    let width = f.reader.headers().len();
    let mut report = FileReport::default();
    let mut batch: Vec<Imported> = Vec::with_capacity(BATCH);
    let (mut fields, mut projected) = (csv::StringRecord::new(), csv::StringRecord::new());
    let mut body = Vec::with_capacity(512);
    while let Some(record) = f.reader.next_record_into(&mut fields)? {
        let status = fields.get(f.status_col).and_then(Status::parse);
        let created = match status {
            Some(Status::Created) => true,
            Some(Status::Unknown) => false,
            _ => continue,
        };
        let Some(row) = fields
            .get(f.row_col)
            .and_then(|r| r.trim().parse::<u64>().ok())
        else {
            return Err(Fatal::usage(format!(
                "{}, record {record}: digidesk_row is not a row number; is this a results file of digidesk-upload?",
                f.name
            )));
        };
        if created {
            report.created += 1;
        } else {
            report.unknown += 1;
        }
        let mapped = if fields.len() == width {
            f.plan.apply(f.columns.project(&fields, &mut projected))
        } else {
            Mapped::Invalid(Vec::new())
        };
        let Mapped::Send(request) = mapped else {
            report.unkeyed += 1;
            if report.unkeyed_rows.len() < EXAMPLES {
                report.unkeyed_rows.push(row);
            }
            continue;
        };
        body.clear();
        request.write_json(&mut body);
        let row_fields = f.columns.project(&fields, &mut projected);
        let claim = ledger::claim_for(&hasher, &f.plan, row, row_fields, &request, &body);
        batch.push(Imported {
            row,
            key: claim.key,
            contact: claim.contact,
            id: fields
                .get(f.id_col)
                .and_then(|i| i.trim().parse::<u64>().ok()),
            created,
            at,
        });
        if batch.len() >= BATCH {
            add(&mut report.counts, store.import(run, &batch)?);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        add(&mut report.counts, store.import(run, &batch)?);
    }
    store.end_run(run)?;
    let _ = writeln!(
        out,
        "{}: {} created and {} unknown rows: {} added, {} now known as created, {} already known",
        f.name,
        thousands(report.created),
        thousands(report.unknown),
        thousands(report.counts.added),
        thousands(report.counts.upgraded),
        thousands(report.counts.known)
    );
    if report.unkeyed > 0 {
        let rows: Vec<String> = report.unkeyed_rows.iter().map(u64::to_string).collect();
        let more = if report.unkeyed > report.unkeyed_rows.len() as u64 {
            ", ..."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} rows NOT imported: the mapping does not turn them into a request now (rows {}{more}); were they sent with another mapping? Import them with that one",
            thousands(report.unkeyed),
            rows.join(", ")
        );
    }
    Ok(report)
}

fn add(total: &mut ImportCounts, c: ImportCounts) {
    total.added += c.added;
    total.upgraded += c.upgraded;
    total.known += c.known;
}
