//! `digidesk-upload retry RESULTS --mapping FILE`: resends the rows of a
//! results file whose status is selected (`failed` by default), taking each
//! row from RESULTS, or with `--from FIXED_EXPORT` from the export once its
//! mistakes are fixed. Its own results file holds just those rows, keeping
//! their `digidesk_row`. When nothing is selected, nothing is written.

use crate::cli::{LogArgs, RetryArgs};
use crate::config::{parse_delimiter, parse_encoding, SendSettings};
use crate::exit::{Exit, Fatal};
use crate::input::Rows;
use crate::input::{Origin, ReadOptions, Reader};
use crate::ledger::{self, Policy};
use crate::mapping::{Mapping, Plan};
use crate::pipeline::{self, Job};
use crate::results::Status;

use super::job::{
    check_summary_json, command_line, execute, lock_results, open_ledger, reading_args,
    refuse_same_file, retry_results_path, shell_quote, summary_on_error,
};
use super::selection;

/// The statuses `--only` names, checked.
fn parse_only(only: &[String]) -> Result<Vec<Status>, Fatal> {
    let mut statuses = Vec::new();
    for s in only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let status = Status::parse(s).ok_or_else(|| {
            Fatal::usage(format!("--only {s:?}: not a status; use failed, unknown, rejected or invalid (comma-separated)"))
        })?;
        if matches!(status, Status::Created | Status::Skipped) {
            return Err(Fatal::usage(format!(
                "--only {s}: {s} rows are never sent again (created rows already exist in DigiDesk; skipped rows matched a [skip] rule)"
            )));
        }
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    if statuses.is_empty() {
        return Err(Fatal::usage("--only needs at least one status"));
    }
    Ok(statuses)
}

pub async fn run(args: RetryArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    let summary_json = args.send.summary_json.clone();
    let result = retry(args, log).await;
    summary_on_error("retry", summary_json.as_deref(), result)
}

async fn retry(args: RetryArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    check_summary_json(args.send.summary_json.as_deref())?;
    let statuses = parse_only(&args.only)?;
    if statuses.contains(&Status::Duplicate) && !args.send.ledger.no_ledger {
        return Err(Fatal::usage(
            "--only duplicate: the ledger says these rows were sent before (each row's digidesk_errors says when and where), so with it they would be duplicates again. To send them anyway, check DigiDesk first, then add --no-ledger",
        ));
    }
    let mapping = Mapping::load(&args.mapping)?;
    let shape = mapping.input();
    let given_encoding = args.encoding.as_deref().map(parse_encoding).transpose()?;
    let given = args.delimiter.as_deref().map(parse_delimiter).transpose()?;
    // RESULTS' own delimiter is in its header; --delimiter is the rows' file's.
    let found = selection::detect_delimiter(&args.results_in);
    let results_delimiter = match (&args.from, given, found) {
        (None, Some(d), _) => d,
        (_, _, Some(d)) => d,
        _ => b',',
    };
    // RESULTS is written in UTF-8; a fixed export is read as `send` reads it.
    let read = match &args.from {
        None => ReadOptions {
            encoding: given_encoding.unwrap_or(encoding_rs::UTF_8),
            delimiter: results_delimiter,
        },
        Some(_) => ReadOptions {
            encoding: given_encoding
                .or(shape.encoding)
                .unwrap_or(encoding_rs::UTF_8),
            delimiter: given.or(shape.delimiter).unwrap_or(b','),
        },
    };
    let scan = selection::scan(
        &args.results_in,
        results_delimiter,
        given_encoding.unwrap_or(encoding_rs::UTF_8),
        &statuses,
        args.from.is_some(),
    )?;
    let selection: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let settings = SendSettings::from_options(
        &args.send,
        Some(retry_results_path(&args.results_in)),
        read.delimiter,
    )?;
    if scan.selected.is_empty() {
        let base = format!(
            "digidesk-upload retry {} --mapping {}",
            shell_quote(&args.results_in.display().to_string()),
            shell_quote(&args.mapping.display().to_string())
        );
        let text = selection::nothing_to_retry(&scan, &args.results_in, &statuses, &base);
        crate::output::print(&text);
        return Ok(Exit::Success);
    }
    // One process per results file, before the rows are read.
    let _lock = lock_results(&settings.results)?;
    refuse_same_file(&args.results_in, &settings.results)?;
    let (input, mut rows) = match &args.from {
        None => {
            let input = Origin::File(args.results_in.clone());
            // Every line is checked before anything is sent: a row listed
            // twice, or a line that is no results line, would otherwise be
            // found part-way.
            let mut scan = Rows::new(
                Reader::open(&input, &read)?,
                input.display_name(),
                Some(statuses.clone()),
            )?;
            let mut fields = csv::StringRecord::new();
            while scan.next_row_into(&mut fields)?.is_some() {}
            let reader = Reader::open(&input, &read)?;
            let rows = Rows::new(reader, input.display_name(), Some(statuses.clone()))?;
            (input, rows)
        }
        Some(fixed) => {
            refuse_same_file(fixed, &settings.results)?;
            selection::check_lines_up(&scan, &args.results_in, fixed, &read, shape.header)?;
            let input = Origin::File(fixed.clone());
            let reader = Reader::open_with_header(&input, &read, shape.header)?;
            let rows = Rows::numbered(reader, input.display_name(), scan.selected.clone());
            (input, rows)
        }
    };
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    rows.columns.bind(&plan);
    let selected: Vec<String> = scan.selected.iter().map(|r| r.to_string()).collect();
    let from = args
        .from
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let fingerprint = pipeline::fingerprint(&[
        b"retry",
        mapping.bytes(),
        rows.columns.names.join("\u{1f}").as_bytes(),
        selection.join(",").as_bytes(),
        from.as_bytes(),
        selected.join(",").as_bytes(),
        read.encoding.name().as_bytes(),
        &[read.delimiter],
    ]);
    let mut extra = Vec::new();
    if let Some(fixed) = &args.from {
        extra.push(format!(
            "--from {}",
            shell_quote(&fixed.display().to_string())
        ));
    }
    extra.extend(reading_args(&read));
    extra.push(format!("--only {}", selection.join(",")));
    let resume_cmd = format!(
        "{} --resume",
        command_line(
            "retry",
            &args.results_in.display().to_string(),
            &args.mapping,
            &settings,
            true,
            &extra,
        )
    );
    let resend = command_line(
        "retry",
        &settings.results.display().to_string(),
        &args.mapping,
        &settings,
        false,
        &[],
    );
    // The rows asked for are resent unless their key was created since.
    let policy = Policy::retry(ledger::contact_within(&mapping));
    let ledger = open_ledger(&args.send.ledger, "retry", &settings, &fingerprint, policy)?;
    let job = Job {
        command: "retry".into(),
        rows,
        plan,
        settings,
        fingerprint,
        durable: true,
        ledger,
    };
    execute(job, "retry", log, &resend, &resume_cmd).await
}
