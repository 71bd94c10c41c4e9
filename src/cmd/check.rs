//! `digidesk-upload check`: the same reading, mapping and validation as
//! `send`, with no network. Prints counts per outcome, the first request
//! bodies exactly as they would be sent, and the errors grouped by reason
//! with example rows, so a broken export is diagnosed in one look.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::cli::CheckArgs;
use crate::exit::{Exit, Fatal};
use crate::mapping::{Mapped, Mapping, Plan};
use crate::pipeline::Source;
use crate::reading::{self, InputSource, ReadOptions, Reader};
use crate::summary::thousands;

/// Rows that share a reason.
#[derive(Default)]
struct Group {
    count: u64,
    examples: Vec<u64>,
}

/// Reasons and their rows, in a bounded number of examples each.
#[derive(Default)]
struct Groups {
    by_reason: HashMap<String, Group>,
    examples: usize,
}

impl Groups {
    fn add(&mut self, reason: &str, row: u64) {
        let examples = self.examples;
        let g = match self.by_reason.get_mut(reason) {
            Some(g) => g,
            None => self.by_reason.entry(reason.to_string()).or_default(),
        };
        g.count += 1;
        if g.examples.len() < examples {
            g.examples.push(row);
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
            let rows: Vec<String> = g.examples.iter().map(|r| r.to_string()).collect();
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

pub fn run(args: CheckArgs) -> Result<Exit, Fatal> {
    let started = Instant::now();
    let input = InputSource::parse(&args.input.input);
    let read = ReadOptions {
        encoding: reading::parse_encoding(&args.input.encoding)?,
        delimiter: reading::parse_delimiter(&args.input.delimiter)?,
    };
    let mapping = Mapping::load(&args.input.mapping)?;
    let reader = Reader::open(&input, &read)?;
    let mut source = Source::new(reader, input.display_name(), None)?;
    let plan = Plan::compile(&mapping, &source.columns, &input.display_name())?;
    let width = source.reader.headers().len();

    let (mut rows, mut sendable, mut skipped_n, mut invalid_n) = (0u64, 0u64, 0u64, 0u64);
    let mut invalid = Groups {
        examples: args.examples,
        ..Groups::default()
    };
    let mut skipped = Groups {
        examples: args.examples,
        ..Groups::default()
    };
    let mut bodies = String::new();
    let mut shown = 0;
    while let Some(record) = source.reader.next_record()? {
        rows += 1;
        if record.fields.len() != width {
            invalid_n += 1;
            invalid.add(
                &format!(
                    "row has {} fields, the header has {width}",
                    record.fields.len()
                ),
                record.row,
            );
            continue;
        }
        let fields = source.project(record.fields);
        match plan.apply(&fields) {
            Mapped::Send(req) => {
                sendable += 1;
                if shown < args.show {
                    shown += 1;
                    let pretty = serde_json::to_string_pretty(&req).expect("serialising to memory");
                    let _ = writeln!(bodies, "row {}:\n{pretty}", record.row);
                }
            }
            Mapped::Skip(reason) => {
                skipped_n += 1;
                skipped.add(&reason, record.row);
            }
            Mapped::Invalid(reasons) => {
                invalid_n += 1;
                for r in reasons {
                    invalid.add(&r, record.row);
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "check {} with {}:",
        source.name,
        args.input.mapping.display()
    );
    let _ = writeln!(out, "  {:<9} {:>10}", "rows", thousands(rows));
    let _ = writeln!(out, "  {:<9} {:>10}", "sendable", thousands(sendable));
    let _ = writeln!(out, "  {:<9} {:>10}", "skipped", thousands(skipped_n));
    let _ = writeln!(out, "  {:<9} {:>10}", "invalid", thousands(invalid_n));
    if !bodies.is_empty() {
        let _ = writeln!(out, "First {shown} request bodies, as they would be sent:");
        out.push_str(&bodies);
    }
    invalid.render(
        "Invalid rows by reason, most frequent first (a row may have several)",
        &mut out,
    );
    skipped.render("Skipped rows by rule", &mut out);
    crate::output::print(&out);
    eprintln!(
        "checked {} rows in {secs:.2}s ({:.0} rows/s)",
        thousands(rows),
        rows as f64 / secs.max(1e-9)
    );
    Ok(if invalid_n > 0 {
        Exit::SomeRowsNotCreated
    } else {
        Exit::Success
    })
}
