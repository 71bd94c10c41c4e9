//! `digidesk-upload demo`: no set-up, no credentials, no network. Starts the
//! sandbox in-process on loopback, writes the built-in demo export and
//! mapping into a fresh directory, and sends them through the real pipeline.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{DemoArgs, LogArgs};
use crate::config::{default_concurrency, Credentials, SendSettings, StartMode};
use crate::exit::{Exit, Fatal};
use crate::input::Rows;
use crate::input::{Origin, ReadOptions, Reader};
use crate::ledger::{self, Policy};
use crate::mapping::{Mapping, Plan};
use crate::pipeline::{self, Job};
use crate::sandbox::{Sandbox, SandboxConfig};

/// The demo export (also at `fixtures/calls.csv`).
pub const DEMO_CSV: &str = include_str!("../../fixtures/calls.csv");
/// The demo mapping (also at `mappings/calls.toml`).
pub const DEMO_MAPPING: &str = include_str!("../../mappings/calls.toml");
/// Custom parameters the demo sandbox allows: the demo mapping's commented-out `[extra]`.
pub const DEMO_EXTRA_PARAMS: &[&str] = &["source"];

/// Prints one line through [`crate::output::print`].
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::output::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub async fn run(args: DemoArgs, log: &LogArgs) -> Result<Exit, Fatal> {
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| Fatal::usage(format!("cannot create --dir {}: {e}", d.display())))?;
            d
        }
        None => tempfile::Builder::new()
            .prefix("digidesk-demo-")
            .tempdir()
            .map_err(|e| Fatal::usage(format!("cannot create a temporary directory: {e}")))?
            .keep(),
    };
    let csv_path = dir.join("calls.csv");
    let mapping_path = dir.join("calls.toml");
    let record_path = dir.join("sandbox-accepted.jsonl");
    for (path, text) in [(&csv_path, DEMO_CSV), (&mapping_path, DEMO_MAPPING)] {
        std::fs::write(path, text)
            .map_err(|e| Fatal::usage(format!("cannot write {}: {e}", path.display())))?;
    }
    let _ = std::fs::remove_file(&record_path);

    // A sandbox with a little latency and a few transient errors, so the
    // demo shows retries doing their work.
    let sandbox = Sandbox::start(SandboxConfig {
        allowed_params: DEMO_EXTRA_PARAMS.iter().map(|s| s.to_string()).collect(),
        record: Some(record_path.clone()),
        latency_ms: 20,
        jitter_ms: 30,
        error_rate: 0.05,
        seed: Some(7),
        ..SandboxConfig::default()
    })
    .await
    .map_err(|e| Fatal::usage(format!("cannot start the demo sandbox: {e:#}")))?;
    outln!(
        "Demo: sandbox at {} (username demo, password demo)",
        sandbox.endpoint()
    );

    let endpoint = crate::config::parse_endpoint(Some(&sandbox.endpoint()))?;
    let rate = Some(50);
    let settings = SendSettings {
        results: dir.join("calls.results.csv"),
        endpoint,
        credentials: Credentials::new("demo", "demo"),
        rate,
        concurrency: default_concurrency(rate),
        max_concurrency: crate::config::max_concurrency(rate),
        max_attempts: 5,
        timeout: Duration::from_secs(10),
        mode: StartMode::Force,
        ca_cert_pem: None,
        summary_json: None,
        limit: None,
        progress_every: crate::progress::LOG_EVERY,
        retry_server_errors: false,
        results_format: crate::results::Format::default(),
    };
    let input = Origin::File(csv_path.clone());
    let reader = Reader::open(
        &input,
        &ReadOptions {
            encoding: encoding_rs::UTF_8,
            delimiter: b',',
        },
    )?;
    let mut rows = Rows::new(reader, input.display_name(), None)?;
    let mapping = Mapping::parse(DEMO_MAPPING, &mapping_path.display().to_string())?;
    let plan = Plan::compile(&mapping, &rows.columns.names, &input.display_name())?;
    rows.columns.bind(&plan);
    // The demo keeps a ledger of its own, next to its files.
    let fingerprint = pipeline::fingerprint(&[b"demo"]);
    let policy = Policy::send(ledger::contact_within(&mapping));
    let ledger = super::job::begin_ledger(
        &dir.join(ledger::FILE_NAME),
        "send",
        &settings,
        &fingerprint,
        policy,
    )?;
    let job = Job {
        command: "send".into(),
        rows,
        plan,
        settings,
        fingerprint,
        durable: false,
        ledger: Some(ledger),
    };
    let show = |p: &PathBuf| p.display().to_string();
    let resend = format!(
        "digidesk-upload retry {} --mapping {}",
        show(&dir.join("calls.results.csv")),
        show(&mapping_path)
    );
    let exit = super::job::execute(job, "demo", log, &resend, "digidesk-upload demo").await;
    sandbox.shutdown().await;
    let exit = exit?;
    outln!("");
    outln!("The demo's files are in {}:", dir.display());
    outln!("  calls.csv                the export (a CRM call log)");
    outln!("  calls.toml               the mapping that turns a row into a survey request");
    outln!("  calls.results.csv        every row with its status, DigiDesk id and errors");
    outln!("  sandbox-accepted.jsonl   what the sandbox received, one JSON line per request");
    outln!("  ledger.sqlite3           the demo's ledger of surveys sent (see `digidesk-upload ledger --help`)");
    outln!("Some rows are invalid or skipped on purpose: see their digidesk_errors column.");
    outln!(
        "Try: digidesk-upload check {} --mapping {}",
        show(&csv_path),
        show(&mapping_path)
    );
    // The demo's invalid rows are deliberate: it succeeds when the run completed.
    Ok(match exit {
        Exit::Success | Exit::SomeRowsNotCreated => Exit::Success,
        other => other,
    })
}
