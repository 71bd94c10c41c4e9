//! `ledger check INPUT --mapping FILE`: counts the rows a send of this export
//! would skip as `duplicate` (already in the ledger, repeated in the export,
//! or a contact surveyed within `contact_within`), with no network. Reads,
//! maps and hashes on one thread while the ledger is looked up on another.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::time::Instant;

use super::Columns;
use crate::cli::LedgerCheckArgs;
use crate::exit::{Exit, Fatal};
use crate::input::{Origin, Reader};
use crate::ledger::{self, Claim, ContactHash, Earlier, KeyHash, Policy, Scope, State, Store};
use crate::mapping::{Mapping, Verdict};
use crate::summary::thousands;

/// The most memory the ledger's pages may take while checking, in MiB
/// (a million surveys are about 90 MiB).
const CACHE_MIB: u32 = 256;

/// Sendable rows looked up in the ledger at once.
const BATCH: usize = 2048;

/// Key and contact hashes are already uniformly random: their first bytes
/// are a good enough hash for a table.
#[derive(Default)]
struct Prefix(u64);

impl std::hash::Hasher for Prefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}

type Seen<K> = HashMap<K, u64, BuildHasherDefault<Prefix>>;

#[derive(Default)]
struct Counts {
    rows: u64,
    send: u64,
    skipped: u64,
    invalid: u64,
    created: u64,
    may_exist: u64,
    by_contact: u64,
    repeated: u64,
}

/// What a send of the export would do with its sendable rows.
struct Tally {
    counts: Counts,
    /// Keys (and with `contact_within`, contacts) of rows that would be sent,
    /// with their row: a later row with the same is a duplicate of it.
    keys: Seen<KeyHash>,
    contacts: Option<Seen<ContactHash>>,
    examples: Vec<(u64, String)>,
    max_examples: usize,
}

impl Tally {
    fn example(&mut self, row: u64, reason: impl FnOnce() -> String) {
        if self.examples.len() < self.max_examples {
            self.examples.push((row, reason()));
        }
    }

    /// One batch, in input order, with what the ledger found for each row.
    fn add(&mut self, claims: &[Claim], found: Vec<Option<Earlier>>) {
        for (c, earlier) in claims.iter().zip(found) {
            if let Some(e) = earlier {
                if e.by_contact {
                    self.counts.by_contact += 1;
                } else if e.state == State::Created {
                    self.counts.created += 1;
                } else {
                    self.counts.may_exist += 1;
                }
                self.example(c.row, || e.reason());
                continue;
            }
            if let Some(&first) = self.keys.get(&c.key) {
                self.counts.repeated += 1;
                self.example(c.row, || {
                    format!("the same survey as row {first} of this export")
                });
                continue;
            }
            if let (Some(contacts), Some(contact)) = (&self.contacts, &c.contact) {
                if let Some(&first) = contacts.get(contact) {
                    self.counts.by_contact += 1;
                    self.example(c.row, || {
                        format!("the same customer_contact as row {first} of this export, within contact_within")
                    });
                    continue;
                }
            }
            self.keys.insert(c.key, c.row);
            if let (Some(contacts), Some(contact)) = (&mut self.contacts, c.contact) {
                contacts.insert(contact, c.row);
            }
            self.counts.send += 1;
        }
    }
}

pub fn run(args: LedgerCheckArgs) -> Result<Exit, Fatal> {
    let started = Instant::now();
    let input = Origin::parse(&args.input.input);
    let mapping = Mapping::load(&args.input.mapping)?;
    let scope = super::scope(&args.scope)?;
    let (mut reader, _) = crate::cmd::open_input(&args.input, &input, &mapping)?;
    let name = input.display_name();
    let columns = Columns::of(reader.headers());
    let plan = crate::mapping::Plan::compile(&mapping, &columns.names, &name)?;
    let path = ledger::file(args.file.ledger.as_deref())?;
    // Every row is looked up: the whole ledger may be read, so let it stay
    // in memory (SQLite's cache grows only as pages are read).
    let mut store = ledger::open_with(
        &path,
        ledger::Options {
            cache_mib: CACHE_MIB,
            ..ledger::Options::default()
        },
    )?;
    let within = ledger::contact_within(&mapping);
    let policy = Policy::send(within);
    let hasher = store.hasher().clone();
    let width = reader.headers().len();

    let tally = Tally {
        counts: Counts::default(),
        keys: Seen::default(),
        contacts: within.map(|_| Seen::default()),
        examples: Vec::new(),
        max_examples: args.examples,
    };
    // This thread reads, maps and hashes; the looker-up thread asks the
    // ledger and tallies, batch by batch, in input order.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Claim>>(4);
    let (counts, tally) = std::thread::scope(|s| {
        let looker = s.spawn(|| -> Result<Tally, Fatal> {
            let mut tally = tally;
            for claims in rx {
                let found = store.lookup(&scope, policy, &claims)?;
                tally.add(&claims, found);
            }
            Ok(tally)
        });
        let counts = read_all(&mut reader, width, &columns, &plan, &hasher, tx);
        let tally = looker
            .join()
            .unwrap_or_else(|_| Err(Fatal::stopped("the ledger thread failed")));
        (counts, tally)
    });
    let (rows, skipped, invalid) = counts?;
    let mut tally = tally?;
    tally.counts.rows = rows;
    tally.counts.skipped = skipped;
    tally.counts.invalid = invalid;
    print(&args, &name, store.as_ref(), &scope, &tally, started);
    Ok(Exit::Success)
}

/// Reads every row; sends the sendable ones' claims in batches. Returns the
/// rows read, skipped and invalid.
fn read_all(
    reader: &mut Reader,
    width: usize,
    columns: &Columns,
    plan: &crate::mapping::Plan,
    hasher: &ledger::Hasher,
    tx: std::sync::mpsc::SyncSender<Vec<Claim>>,
) -> Result<(u64, u64, u64), Fatal> {
    let (mut rows, mut skipped, mut invalid) = (0u64, 0u64, 0u64);
    let (mut fields, mut projected) = (csv::StringRecord::new(), csv::StringRecord::new());
    let mut body = Vec::with_capacity(512);
    // One request, overwritten row after row: almost nothing allocated per row.
    let mut request = crate::request::SurveyRequest::default();
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = reader.next_record_into(&mut fields)? {
        rows += 1;
        if fields.len() != width {
            invalid += 1;
            continue;
        }
        let row_fields = columns.project(&fields, &mut projected);
        match plan.apply_into(row_fields, &mut request) {
            Verdict::Send => {
                body.clear();
                request.write_json(&mut body);
                batch.push(ledger::claim_for(
                    hasher, plan, row, row_fields, &request, &body,
                ));
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(full).is_err() {
                        // The ledger failed: its error is reported.
                        break;
                    }
                }
            }
            Verdict::Skip(_) => skipped += 1,
            Verdict::Invalid(_) => invalid += 1,
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok((rows, skipped, invalid))
}

fn print(
    args: &LedgerCheckArgs,
    name: &str,
    store: &dyn Store,
    scope: &Scope,
    tally: &Tally,
    started: Instant,
) {
    let c = &tally.counts;
    let duplicate = c.created + c.may_exist + c.by_contact + c.repeated;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ledger check {name} with {}, against {} ({} as {}):",
        args.input.mapping.display(),
        store.location(),
        scope.endpoint,
        scope.username
    );
    let line = |out: &mut String, label: &str, n: u64| {
        let _ = writeln!(out, "  {label:<34} {:>10}", thousands(n));
    };
    line(&mut out, "rows", c.rows);
    line(&mut out, "would be sent", c.send);
    line(&mut out, "duplicate", duplicate);
    line(&mut out, "  created earlier", c.created);
    line(&mut out, "  may exist (unknown, in flight)", c.may_exist);
    line(&mut out, "  contact within contact_within", c.by_contact);
    line(&mut out, "  repeated in this export", c.repeated);
    line(&mut out, "skipped", c.skipped);
    line(&mut out, "invalid", c.invalid);
    if !tally.examples.is_empty() {
        let _ = writeln!(out, "First duplicate rows:");
        for (row, reason) in &tally.examples {
            let _ = writeln!(out, "  row {row}: {reason}");
        }
    }
    if c.invalid > 0 {
        let _ = writeln!(out, "`digidesk-upload check` lists why rows are invalid.");
    }
    crate::output::print(&out);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "checked {} rows against the ledger in {secs:.2}s ({:.0} rows/s)",
        thousands(c.rows),
        c.rows as f64 / secs.max(1e-9)
    );
}
