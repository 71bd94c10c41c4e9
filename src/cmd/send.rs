//! `digidesk-upload send INPUT --mapping FILE`: the main job. Checks every
//! setting, compiles the mapping against the header, then runs the pipeline
//! as a job (see [`super::job`]).

use crate::cli::{LogArgs, SendArgs};
use crate::config::{parse_delimiter, parse_encoding, SendSettings};
use crate::exit::{Exit, Fatal};
use crate::input::Origin;
use crate::input::Rows;
use crate::mapping::{Mapping, Plan};
use crate::pipeline::{self, Job};

use super::job::{command_line, default_results_path, execute, reading_args, refuse_same_file};

pub async fn run(args: SendArgs, log: &LogArgs) -> Result<Exit, Fatal> {
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
    // The mapping and the input first: their mistakes are the likeliest.
    let mapping = Mapping::load(&args.input.mapping)?;
    let (reader, read) = super::open_input(&args.input, &input, &mapping)?;
    let rows = Rows::new(reader, input.display_name(), None)?;
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    let settings =
        SendSettings::from_options(&args.send, default_results_path(&input, ".results.csv"))?;
    if let Origin::File(p) = &input {
        refuse_same_file(p, &settings.results)?;
    }
    let fingerprint = pipeline::fingerprint(
        &[
            b"send",
            mapping.bytes(),
            rows.columns.names.join("\u{1f}").as_bytes(),
            read.encoding.name().as_bytes(),
            &[read.delimiter],
        ],
        match &input {
            Origin::File(p) => Some(p.as_path()),
            Origin::Stdin => None,
        },
    );
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
    let job = Job {
        command: "send".into(),
        rows,
        plan,
        settings,
        fingerprint,
        durable: true,
    };
    execute(job, "send", log, &resend, &resume_cmd).await
}
