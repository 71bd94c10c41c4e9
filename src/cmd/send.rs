//! `digidesk-upload send INPUT --mapping FILE`: the main job. Checks every
//! setting, compiles the mapping against the header, then runs the pipeline
//! as a job (see [`super::job`]).

use crate::cli::{LogArgs, SendArgs};
use crate::config::{parse_delimiter, parse_encoding, SendSettings};
use crate::exit::{Exit, Fatal};
use crate::input::Origin;
use crate::input::Rows;
use crate::ledger::{self, Policy};
use crate::mapping::{Mapping, Plan};
use crate::pipeline::{self, Job};

use super::job::{
    check_summary_json, command_line, default_results_path, execute, lock_results, open_ledger,
    reading_args, refuse_same_file, summary_on_error,
};

pub async fn run(args: SendArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    let summary_json = args.send.summary_json.clone();
    let result = send(args, log).await;
    summary_on_error("send", summary_json.as_deref(), result)
}

async fn send(args: SendArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    check_summary_json(args.send.summary_json.as_deref())?;
    let input = Origin::parse(&args.input.input);
    if let Some(e) = &args.input.encoding {
        parse_encoding(e)?;
    }
    if let Some(d) = &args.input.delimiter {
        parse_delimiter(d)?;
    }
    if input == Origin::Stdin && args.send.results.is_none() {
        return Err(Fatal::usage(
            "--results FILE is required when the input is standard input",
        ));
    }
    // One process per results file, before anything is read.
    let results = args.send.results.clone();
    let results = results.or_else(|| default_results_path(&input, ".results.csv"));
    let _lock = results.as_deref().map(lock_results).transpose()?;
    // The mapping and the input first: their mistakes are the likeliest.
    let mapping = Mapping::load(&args.input.mapping)?;
    let (reader, read) = super::open_input(&args.input, &input, &mapping)?;
    let mut rows = Rows::new(reader, input.display_name(), None)?;
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    rows.columns.bind(&plan);
    let settings = SendSettings::from_options(
        &args.send,
        default_results_path(&input, ".results.csv"),
        read.delimiter,
    )?;
    if let Origin::File(p) = &input {
        refuse_same_file(p, &settings.results)?;
    }
    let fingerprint = pipeline::fingerprint(&[
        b"send",
        mapping.bytes(),
        rows.columns.names.join("\u{1f}").as_bytes(),
    ]);
    let resume_cmd = format!(
        "{} --resume",
        command_line(
            "send",
            &args.input.input,
            &args.input.mapping,
            &settings,
            true,
            &reading_args(&read)
        )
    );
    let resend = command_line(
        "retry",
        &settings.results.display().to_string(),
        &args.input.mapping,
        &settings,
        false,
        &[],
    );
    let policy = Policy::send(ledger::contact_within(&mapping));
    let ledger = open_ledger(&args.send.ledger, "send", &settings, &fingerprint, policy)?;
    let job = Job {
        command: "send".into(),
        rows,
        plan,
        settings,
        fingerprint,
        durable: true,
        ledger,
    };
    execute(job, "send", log, &resend, &resume_cmd).await
}
