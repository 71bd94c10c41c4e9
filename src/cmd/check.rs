//! `digidesk-upload check`: the same reading, mapping and validation as
//! `send`, with no network. Prints counts per outcome, the first request
//! bodies exactly as they would be sent, and the errors grouped by reason
//! with example rows and their offending values, and the values of the
//! columns the mapping's conditions test, so a broken export is diagnosed in
//! one look. All of it goes to stdout: the operator's own data, never logged.
//!
//! Records are checked in batches. With two or more cores one thread
//! reads while two or more others map and validate; the verdicts are merged in
//! input order, so the examples and bodies shown are always the first ones.
//! Bounded channels keep memory flat whatever the input's size.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use crate::cli::CheckArgs;
use crate::config::{parse_delimiter, parse_encoding};
use crate::exit::{Exit, Fatal};
use crate::input::{self, Columns, Meta, Rows};
use crate::input::{Origin, Record};
use crate::mapping::{Mapping, Plan, Verdict};
use crate::request::SurveyRequest;
use crate::summary::thousands;

mod values;

use values::Tally;

/// Rows that share a reason.
#[derive(Default)]
struct Group {
    count: u64,
    /// Example rows, each with the value its reason is about, if any.
    examples: Vec<(u64, Option<String>)>,
}

/// Reasons and their rows, in a bounded number of examples each.
#[derive(Default)]
struct Groups {
    by_reason: HashMap<String, Group>,
    examples: usize,
}

impl Groups {
    fn new(examples: usize) -> Groups {
        Groups {
            by_reason: HashMap::new(),
            examples,
        }
    }

    /// Counts a row under `reason`; `value` is asked only for a row kept
    /// as an example.
    fn add(&mut self, reason: &str, row: u64, value: impl FnOnce() -> Option<String>) {
        let examples = self.examples;
        let g = match self.by_reason.get_mut(reason) {
            Some(g) => g,
            None => self.by_reason.entry(reason.to_string()).or_default(),
        };
        g.count += 1;
        if g.examples.len() < examples {
            g.examples.push((row, value()));
        }
    }

    /// Adds the groups of later rows: their examples come after these.
    fn merge(&mut self, later: Groups) {
        let examples = self.examples;
        for (reason, l) in later.by_reason {
            let g = self.by_reason.entry(reason).or_default();
            g.count += l.count;
            let room = examples.saturating_sub(g.examples.len());
            g.examples.extend(l.examples.into_iter().take(room));
        }
    }

    fn render(&self, title: &str, out: &mut String) {
        if self.by_reason.is_empty() {
            return;
        }
        let mut groups: Vec<(&String, &Group)> = self.by_reason.iter().collect();
        groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        let _ = writeln!(out, "{title}:");
        for (reason, g) in groups {
            let rows: Vec<String> = g
                .examples
                .iter()
                .map(|(r, value)| match value {
                    Some(v) => format!("{r} {v}"),
                    None => r.to_string(),
                })
                .collect();
            let more = if g.count > g.examples.len() as u64 {
                ", ..."
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>8}  {reason}  (rows {}{more})",
                thousands(g.count),
                rows.join(", ")
            );
        }
    }
}

/// Rows per batch handed to a mapper.
const BATCH: usize = 1024;

#[derive(Default, Clone, Copy)]
struct Counts {
    rows: u64,
    sendable: u64,
    skipped: u64,
    invalid: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.rows += o.rows;
        self.sendable += o.sendable;
        self.skipped += o.skipped;
        self.invalid += o.invalid;
    }
}

/// One batch's verdicts.
struct Checked {
    index: usize,
    counts: Counts,
    invalid: Groups,
    skipped: Groups,
    /// The first `--show` sendable rows' bodies, pretty-printed.
    bodies: Vec<(u64, String)>,
    /// The values of each column the conditions test.
    values: Vec<Tally>,
    /// Where each row's request is built: its strings serve row after row.
    req: SurveyRequest,
}

impl Checked {
    fn new(index: usize, plan: &Plan, examples: usize) -> Checked {
        Checked {
            index,
            counts: Counts::default(),
            invalid: Groups::new(examples),
            skipped: Groups::new(examples),
            bodies: Vec::new(),
            values: Tally::for_columns(plan.tested_columns()),
            req: SurveyRequest::default(),
        }
    }
}

/// Checks a batch; gives back its records' fields, emptied, to be reused.
fn check_batch(
    index: usize,
    records: Vec<Record>,
    columns: &Columns,
    plan: &Plan,
    show: usize,
    examples: usize,
) -> (Checked, Vec<csv::StringRecord>) {
    let mut c = Checked::new(index, plan, examples);
    let mut spare = Vec::with_capacity(records.len());
    for record in records {
        let mut fields = check_row(
            &mut c,
            record.row,
            record.fields,
            &record.meta,
            columns,
            plan,
            show,
        );
        fields.clear();
        spare.push(fields);
    }
    (c, spare)
}

/// Decides one record into `c`; gives back its fields, to be reused.
fn check_row(
    c: &mut Checked,
    row: u64,
    fields: csv::StringRecord,
    meta: &Meta,
    columns: &Columns,
    plan: &Plan,
    show: usize,
) -> csv::StringRecord {
    c.counts.rows += 1;
    let (fields, mapped) = input::decide_into(columns, plan, fields, meta, &mut c.req);
    for tally in &mut c.values {
        tally.count(&fields);
    }
    match mapped {
        Verdict::Send => {
            c.counts.sendable += 1;
            if c.bodies.len() < show {
                let pretty = serde_json::to_string_pretty(&c.req).expect("serialising to memory");
                c.bodies.push((row, pretty));
            }
        }
        Verdict::Skip(reason) => {
            c.counts.skipped += 1;
            c.skipped.add(&reason, row, || None);
        }
        Verdict::Invalid(reasons) => {
            c.counts.invalid += 1;
            for r in reasons {
                // A reason quoting its value is grouped with the others of
                // its kind; for the rest, the examples' values are looked up.
                match values::split_value(&r) {
                    Some((kind, value)) => c.invalid.add(&kind, row, || Some(value)),
                    None => c.invalid.add(&r, row, || {
                        plan.offending_value(&r, &fields).map(|v| values::cut(&v))
                    }),
                }
            }
        }
    }
    fields
}

/// What is printed at the end, gathered batch by batch in input order.
struct Findings {
    counts: Counts,
    invalid: Groups,
    skipped: Groups,
    bodies: String,
    shown: usize,
    show: usize,
    values: Vec<Tally>,
}

impl Findings {
    fn new(plan: &Plan, examples: usize, show: usize) -> Findings {
        Findings {
            counts: Counts::default(),
            invalid: Groups::new(examples),
            skipped: Groups::new(examples),
            bodies: String::new(),
            shown: 0,
            show,
            values: Tally::for_columns(plan.tested_columns()),
        }
    }

    fn merge(&mut self, c: Checked) {
        self.counts.add(&c.counts);
        self.invalid.merge(c.invalid);
        self.skipped.merge(c.skipped);
        for (total, batch) in self.values.iter_mut().zip(c.values) {
            total.merge(batch);
        }
        for (row, pretty) in c.bodies {
            if self.shown < self.show {
                self.shown += 1;
                let _ = writeln!(self.bodies, "row {row}:\n{pretty}");
            }
        }
    }
}

/// Up to `BATCH` records, read into the `spare` ones first; empty at the
/// end of the input.
fn read_batch(rows: &mut Rows, spare: &mut Vec<csv::StringRecord>) -> Result<Vec<Record>, Fatal> {
    let mut batch = Vec::with_capacity(BATCH);
    while batch.len() < BATCH {
        let mut fields = spare.pop().unwrap_or_default();
        match rows.next_row_into(&mut fields)? {
            Some(row) => batch.push(Record {
                row,
                fields,
                meta: rows.reader.meta().clone(),
            }),
            None => break,
        }
    }
    Ok(batch)
}

/// Everything on this thread, one record reused: no allocation per row for
/// reading.
fn check_inline(rows: &mut Rows, plan: &Plan, report: &mut Findings) -> Result<(), Fatal> {
    let mut fields = csv::StringRecord::new();
    let examples = report.invalid.examples;
    let mut checked = Checked::new(0, plan, examples);
    while let Some(row) = rows.next_row_into(&mut fields)? {
        let record = std::mem::take(&mut fields);
        fields = check_row(
            &mut checked,
            row,
            record,
            rows.reader.meta(),
            &rows.columns,
            plan,
            report.show,
        );
        if checked.counts.rows as usize >= BATCH {
            report.merge(std::mem::replace(
                &mut checked,
                Checked::new(0, plan, examples),
            ));
        }
    }
    report.merge(checked);
    Ok(())
}

/// A reader thread hands batches to `mappers` threads; their verdicts are
/// merged here in input order. The records' buffers go back to the reader
/// to be filled again: memory is allocated and freed by the same thread,
/// which the allocator does far faster than freeing another thread's.
fn check_parallel(
    mappers: usize,
    rows: &mut Rows,
    plan: &Plan,
    report: &mut Findings,
) -> Result<(), Fatal> {
    let show = report.show;
    let examples = report.invalid.examples;
    let columns = &rows.columns.clone();
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Record>)>(mappers * 2);
    let batch_rx = Mutex::new(batch_rx);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Checked>(mappers * 2);
    // As many spare batches as can be in flight; any more are dropped.
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<csv::StringRecord>>(mappers * 4);
    std::thread::scope(|scope| {
        // Mappers: batches in, verdicts out, in whatever order they finish.
        for _ in 0..mappers {
            let done_tx = done_tx.clone();
            let spare_tx = spare_tx.clone();
            let batch_rx = &batch_rx;
            scope.spawn(move || loop {
                let next = batch_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((index, records)) = next else { break };
                let (checked, spare) = check_batch(index, records, columns, plan, show, examples);
                let _ = spare_tx.try_send(spare);
                if done_tx.send(checked).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        drop(spare_tx);
        // The reader: batches of records, in order.
        let reading = scope.spawn(move || -> Result<(), Fatal> {
            let mut index = 0;
            let mut spare = Vec::new();
            loop {
                if spare.is_empty() {
                    spare = spare_rx.try_recv().unwrap_or_default();
                }
                let batch = read_batch(rows, &mut spare)?;
                if batch.is_empty() || batch_tx.send((index, batch)).is_err() {
                    return Ok(());
                }
                index += 1;
            }
        });
        // Merge in input order, so examples and bodies are the first ones.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for checked in done_rx.iter() {
            waiting.insert(checked.index, checked);
            while let Some(c) = waiting.remove(&next) {
                next += 1;
                report.merge(c);
            }
        }
        reading
            .join()
            .unwrap_or_else(|_| Err(Fatal::stopped("the reader thread failed")))
    })
}

pub fn run(args: CheckArgs) -> Result<Exit, Fatal> {
    let started = Instant::now();
    let input = Origin::parse(&args.input.input);
    if let Some(e) = &args.input.encoding {
        parse_encoding(e)?;
    }
    if let Some(d) = &args.input.delimiter {
        parse_delimiter(d)?;
    }
    let mapping = Mapping::load(&args.input.mapping)?;
    let (reader, _) = super::open_input(&args.input, &input, &mapping)?;
    let mut rows = Rows::new(reader, input.display_name(), None)?;
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    rows.columns.bind(&plan);

    let mut report = Findings::new(&plan, args.examples, args.show);
    // One core reads; the others map. Reading costs less than mapping (the
    // phone numbers most), so with two cores both map and the reader takes
    // what time is left; with one, all on this thread.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mappers = match cores {
        0 | 1 => 1,
        2 => 2,
        n => (n - 1).min(8),
    };
    if mappers <= 1 {
        check_inline(&mut rows, &plan, &mut report)?;
    } else {
        check_parallel(mappers, &mut rows, &plan, &mut report)?;
    }
    let name = rows.name;
    let notes = input::shape::snapshot(&rows.reader.notes());
    let Findings {
        counts,
        invalid,
        skipped,
        bodies,
        shown,
        values: tallies,
        ..
    } = report;
    let Counts {
        rows,
        sendable,
        skipped: skipped_n,
        invalid: invalid_n,
    } = counts;
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(out, "check {} with {}:", name, args.input.mapping.display());
    let _ = writeln!(out, "  {:<9} {:>10}", "rows", thousands(rows));
    let _ = writeln!(out, "  {:<9} {:>10}", "sendable", thousands(sendable));
    let _ = writeln!(out, "  {:<9} {:>10}", "skipped", thousands(skipped_n));
    let _ = writeln!(out, "  {:<9} {:>10}", "invalid", thousands(invalid_n));
    if notes.ignored() > 0 {
        let _ = writeln!(out, "  {:<9} {:>10}", "ignored", thousands(notes.ignored()));
    }
    out.push_str(&notes.render());
    if !bodies.is_empty() {
        let _ = writeln!(out, "First {shown} request bodies, as they would be sent:");
        out.push_str(&bodies);
    }
    invalid.render(
        "Invalid rows by reason, most frequent first (a row may have several)",
        &mut out,
    );
    skipped.render("Skipped rows by rule", &mut out);
    values::render(plan.tested_columns(), &tallies, &mut out);
    crate::output::print(&out);
    crate::output::eprint_line(&format!(
        "checked {} rows in {secs:.2}s ({:.0} rows/s)",
        thousands(rows),
        rows as f64 / secs.max(1e-9)
    ));
    Ok(if invalid_n > 0 {
        Exit::SomeRowsNotCreated
    } else {
        Exit::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{ReadOptions, Reader};
    use std::io::Write as _;

    const MAPPING: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
account_number = "Ref"

[contact]
phone_region = "GB"

[skip]
rules = [{ column = "Opt Out", equals = ["Y"] }]
"#;

    /// Checks `path` with `mappers` threads (0: on this thread) and renders
    /// everything the report holds.
    fn checked(path: &std::path::Path, mappers: usize) -> String {
        let input = Origin::parse(path.to_str().unwrap());
        let opts = ReadOptions {
            encoding: parse_encoding("utf-8").unwrap(),
            delimiter: b',',
        };
        let reader = Reader::open(&input, &opts).unwrap();
        let mut rows = Rows::new(reader, "in".into(), None).unwrap();
        let plan = Plan::compile(
            &Mapping::parse(MAPPING, "map").unwrap(),
            &rows.columns.names,
            "in",
        )
        .unwrap();
        let mut report = Findings::new(&plan, 4, 3);
        if mappers == 0 {
            check_inline(&mut rows, &plan, &mut report).unwrap();
        } else {
            check_parallel(mappers, &mut rows, &plan, &mut report).unwrap();
        }
        let c = report.counts;
        let mut out = format!("{} {} {} {}\n", c.rows, c.sendable, c.skipped, c.invalid);
        report.invalid.render("invalid", &mut out);
        report.skipped.render("skipped", &mut out);
        values::render(plan.tested_columns(), &report.values, &mut out);
        out.push_str(&report.bodies);
        out
    }

    /// Many batches on several threads give exactly the one-thread report:
    /// same counts, the first examples, the first bodies.
    #[test]
    fn parallel_check_reports_exactly_what_one_thread_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "Ref,Phone,Opt Out").unwrap();
        for i in 1..=(BATCH * 7 + 13) {
            let phone = if i % 10 == 0 {
                String::new()
            } else {
                format!("07400 {:06}", 100000 + i)
            };
            let opt = if i % 25 == 0 { "Y" } else { "" };
            if i == BATCH * 3 + 5 {
                writeln!(f, "R{i},{phone}").unwrap();
            } else if i == BATCH * 5 + 3 {
                // A byte that is not UTF-8, in a column the mapping reads.
                let mut line = format!("R{i}").into_bytes();
                line.push(0xE9);
                line.extend_from_slice(format!(",{phone},{opt}\n").as_bytes());
                f.write_all(&line).unwrap();
            } else {
                writeln!(f, "R{i},{phone},{opt}").unwrap();
            }
        }
        drop(f);
        let one = checked(&path, 0);
        assert!(one.starts_with(&format!("{} ", BATCH * 7 + 13)), "{one}");
        assert!(one.contains("(rows 10, 20, 30, 40, ...)"), "{one}");
        assert!(
            one.contains("row 1:\n") && one.contains("row 3:\n") && !one.contains("row 4:\n"),
            "{one}"
        );
        assert!(one.contains("row has 2 fields, the header has 3"), "{one}");
        assert!(
            one.contains(&format!(
                "column \"Ref\" holds bytes that are not valid UTF-8 (byte 0xE9 at byte offset {} of the value)",
                format!("R{}", BATCH * 5 + 3).len()
            )),
            "{one}"
        );
        assert!(
            one.contains("  Opt Out ([skip] rule 1):\n       6,894  \"\"\n         287  \"Y\"\n"),
            "every row counted once: {one}"
        );
        for mappers in [2, 3] {
            assert_eq!(checked(&path, mappers), one, "{mappers} mappers");
        }
    }
}
