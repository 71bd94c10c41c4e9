//! `digidesk-upload retry RESULTS --mapping FILE`: resends the rows of a
//! results file whose status is selected (`failed` by default). Its own
//! results file holds just those rows, keeping their `digidesk_row`.

use crate::cli::{LogArgs, RetryArgs};
use crate::config::{parse_delimiter, SendSettings};
use crate::exit::{Exit, Fatal};
use crate::input::Rows;
use crate::input::{Origin, ReadOptions, Reader};
use crate::mapping::{Mapping, Plan};
use crate::pipeline::{self, Job};
use crate::results::Status;

use super::job::{command_line, execute, reading_args, refuse_same_file, retry_results_path};

pub async fn run(args: RetryArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    let mut statuses = Vec::new();
    for s in args.only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
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
    let input = Origin::File(args.results_in.clone());
    let read = ReadOptions {
        encoding: encoding_rs::UTF_8,
        delimiter: parse_delimiter(&args.delimiter)?,
    };
    let settings =
        SendSettings::from_options(&args.send, Some(retry_results_path(&args.results_in)))?;
    refuse_same_file(&args.results_in, &settings.results)?;
    let mapping = Mapping::load(&args.mapping)?;
    let reader = Reader::open(&input, &read)?;
    let rows = Rows::new(reader, input.display_name(), Some(statuses.clone()))?;
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    let selection: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let fingerprint = pipeline::fingerprint(
        &[
            b"retry",
            mapping.bytes(),
            rows.columns.names.join("\u{1f}").as_bytes(),
            selection.join(",").as_bytes(),
        ],
        Some(&args.results_in),
    );
    let resume_cmd = format!(
        "{} --only {} --resume",
        command_line(
            "retry",
            &args.results_in.display().to_string(),
            &args.mapping,
            &settings,
            true,
            &reading_args(&read),
        ),
        selection.join(",")
    );
    let resend = command_line(
        "retry",
        &settings.results.display().to_string(),
        &args.mapping,
        &settings,
        false,
        &[],
    );
    let job = Job {
        command: "retry".into(),
        rows,
        plan,
        settings,
        fingerprint,
        durable: true,
    };
    execute(job, "retry", log, &resend, &resume_cmd).await
}
