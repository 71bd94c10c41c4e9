//! Running a job of `send`, `retry` or `demo`: progress, signals wired to a
//! clean stop, the summary; and what the summary tells the user to run next
//! (the command lines that resume or retry, quoted for a shell).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{LedgerArgs, LogArgs};
use crate::config::{SendSettings, StartMode};
use crate::exit::{Exit, Fatal};
use crate::input::{Origin, ReadOptions};
use crate::ledger::{self, Policy, RunInfo, Scope};
use crate::pipeline::{self, Job, Ledgered, Stop};
use crate::results::Counters;
use crate::summary;
use crate::transport::{Client, ClientConfig};

/// Longest wait for in-flight answers after Ctrl-C; they become `unknown` after it.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// Runs a job with progress and signals, prints its summary, and returns its exit code.
pub async fn execute(
    job: Job,
    command: &str,
    log: &LogArgs,
    resend: &str,
    resume: &str,
) -> Result<Exit, Fatal> {
    let client = Client::new(&ClientConfig {
        endpoint: job.settings.endpoint.clone(),
        credentials: job.settings.credentials.clone(),
        timeout: job.settings.timeout,
        ca_cert_pem: job.settings.ca_cert_pem.clone(),
        pool_size: job.settings.max_concurrency,
        retry_server_errors: job.settings.retry_server_errors,
    })?;
    let counters = Arc::new(Counters::default());
    let summary_json = job.settings.summary_json.clone();
    tracing::info!(
        input = %job.rows.name,
        results = %job.settings.results.display(),
        endpoint = %job.settings.endpoint,
        rate = job.settings.rate.map(|r| r.to_string()).unwrap_or_else(|| "unlimited".into()),
        concurrency = job.settings.concurrency,
        "{command} starting"
    );
    let progress = crate::progress::start(
        crate::progress::Sources {
            counters: counters.clone(),
            bytes_read: job.rows.reader.bytes_read(),
            rows_read: job.rows.reader.rows_read(),
            total_bytes: job.rows.reader.total_bytes(),
        },
        log.quiet > 0,
        job.settings.progress_every,
    );
    let stop = Stop::default();
    let signals = crate::signals::Signals::install()
        .map_err(|e| Fatal::usage(format!("cannot watch for Ctrl-C: {e}")))?;
    let signals = tokio::spawn(watch_signals(signals, stop.clone()));
    let report = pipeline::run(job, client, stop, counters).await;
    signals.abort();
    drop(progress);
    let report = report?;
    let text = summary::render(command, &report, resend, resume);
    crate::output::print(&text);
    if let Some(path) = summary_json {
        std::fs::write(&path, summary::to_json(command, &report) + "\n").map_err(|e| {
            Fatal::stopped(format!(
                "cannot write --summary-json {}: {e}",
                path.display()
            ))
        })?;
    }
    if let pipeline::Ended::Stopped(_, msg)
    | pipeline::Ended::InputError(msg)
    | pipeline::Ended::InputChanged(msg) = &report.ended
    {
        // The summary just said why; on one screen, once is enough.
        use std::io::IsTerminal;
        if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
            tracing::error!("{msg}");
        }
    }
    Ok(summary::exit_code(&report))
}

/// First Ctrl-C or SIGTERM: stop cleanly, waiting up to [`INTERRUPT_GRACE`]
/// for answers in flight. A second one exits at once; the journal still
/// makes the run resumable.
async fn watch_signals(mut signals: crate::signals::Signals, stop: Stop) {
    signals.next().await;
    tracing::warn!(
        "interrupted: sending nothing new, waiting up to {}s for requests in flight (press Ctrl-C again to exit at once)",
        INTERRUPT_GRACE.as_secs()
    );
    stop.interrupt();
    tokio::select! {
        _ = tokio::time::sleep(INTERRUPT_GRACE) => {
            tracing::warn!("requests still in flight after {}s are recorded as unknown", INTERRUPT_GRACE.as_secs());
            stop.hard();
        }
        _ = signals.next() => {
            crate::output::eprint_line("interrupted again: exiting now; --resume continues (rows in flight become unknown)");
            std::process::exit(Exit::Interrupted.code().into());
        }
    }
}

/// Checks before anything else that `--summary-json` can be written (it is
/// written on every exit from then on), creating it if need be.
pub fn check_summary_json(path: Option<&Path>) -> Result<(), Fatal> {
    let Some(path) = path else { return Ok(()) };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .map_err(|e| {
            Fatal::usage(format!(
                "cannot write --summary-json {}: {e}; choose a writable path",
                path.display()
            ))
        })
}

/// A command that ended with an error still leaves its `--summary-json`:
/// the exit code and the reason, so monitoring never reads a stale file.
pub fn summary_on_error(
    command: &str,
    path: Option<&Path>,
    result: Result<Exit, Fatal>,
) -> Result<Exit, Fatal> {
    if let (Err(fatal), Some(path)) = (&result, path) {
        let json = summary::error_json(command, fatal.exit, &fatal.message);
        if let Err(e) = std::fs::write(path, json + "\n") {
            tracing::warn!("cannot write --summary-json {}: {e}", path.display());
        }
    }
    result
}

/// Opens the run's ledger (unless `--no-ledger`) and begins the run in it,
/// before anything is sent: a ledger that cannot be used is exit 2.
pub fn open_ledger(
    args: &LedgerArgs,
    command: &str,
    settings: &SendSettings,
    fingerprint: &str,
    policy: Policy,
) -> Result<Option<Ledgered>, Fatal> {
    let Some(path) = ledger::location(args)? else {
        return Ok(None);
    };
    begin_ledger(&path, command, settings, fingerprint, policy).map(Some)
}

/// Opens the ledger at `path` and begins the run in it.
pub fn begin_ledger(
    path: &Path,
    command: &str,
    settings: &SendSettings,
    fingerprint: &str,
    policy: Policy,
) -> Result<Ledgered, Fatal> {
    let mut store = ledger::open(path)?;
    let results = std::path::absolute(&settings.results).unwrap_or(settings.results.clone());
    let run = store.begin_run(
        &Scope::new(&settings.endpoint, &settings.credentials.username),
        &RunInfo {
            command: command.to_string(),
            results,
            fingerprint: fingerprint.to_string(),
            resume: settings.mode == StartMode::Resume,
        },
    )?;
    tracing::debug!(ledger = %store.location(), "ledger opened");
    Ok(Ledgered { store, run, policy })
}

/// Takes the lock on the results file before anything is read or sent.
pub fn lock_results(results: &Path) -> Result<crate::lock::RunLock, Fatal> {
    let command: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    crate::lock::take(results, &command.join(" "))
}

/// The results file must never be the input.
pub fn refuse_same_file(input: &Path, results: &Path) -> Result<(), Fatal> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(results)) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == results,
    };
    if same {
        return Err(Fatal::usage(format!(
            "the results file {} is the input itself; choose another --results file",
            results.display()
        )));
    }
    Ok(())
}

/// The command that repeats this run (without credentials, which never go on argv).
pub fn command_line(
    command: &str,
    input: &str,
    mapping: &Path,
    s: &SendSettings,
    results: bool,
    extra: &[String],
) -> String {
    let mut parts = vec![
        format!("digidesk-upload {command}"),
        shell_quote(input),
        format!("--mapping {}", shell_quote(&mapping.display().to_string())),
    ];
    if results {
        parts.push(format!(
            "--results {}",
            shell_quote(&s.results.display().to_string())
        ));
    }
    parts.extend(extra.iter().cloned());
    if s.endpoint.as_str() != crate::spec::DEFAULT_ENDPOINT {
        parts.push(format!("--endpoint {}", shell_quote(s.endpoint.as_str())));
    }
    parts.push(format!("--rate {}", s.rate.unwrap_or(0)));
    if s.retry_server_errors {
        parts.push("--retry-server-errors".into());
    }
    parts.join(" ")
}

/// The reading options a resumed run repeats (its rows must read the same as before).
pub fn reading_args(read: &ReadOptions) -> Vec<String> {
    let mut args = Vec::new();
    if read.encoding != encoding_rs::UTF_8 {
        args.push(format!(
            "--encoding {}",
            read.encoding.name().to_ascii_lowercase()
        ));
    }
    match read.delimiter {
        b',' => {}
        b'\t' => args.push("--delimiter tab".into()),
        d => args.push(format!(
            "--delimiter {}",
            shell_quote(&(d as char).to_string())
        )),
    }
    args
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The default results path of `retry`: `RESULTS` with `.retry.csv` in place of `.csv`.
pub fn retry_results_path(results_in: &Path) -> PathBuf {
    default_results_path(&Origin::File(results_in.to_path_buf()), ".retry.csv")
        .unwrap_or_else(|| results_in.with_extension("retry.csv"))
}

/// The default results path: `INPUT` with `.results.csv` in place of `.csv`
/// (`.csv.gz` too); stdin has none.
pub fn default_results_path(input: &Origin, suffix: &str) -> Option<PathBuf> {
    let Origin::File(path) = input else {
        return None;
    };
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_ascii_lowercase();
    let stem = [".csv.gz", ".csv", ".gz", ".txt", ".tsv"]
        .iter()
        .find_map(|ext| {
            lower
                .ends_with(ext)
                .then(|| &name[..name.len() - ext.len()])
        })
        .unwrap_or(&name);
    Some(path.with_file_name(format!("{stem}{suffix}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_path_replaces_csv() {
        let p = |s: &str| default_results_path(&Origin::File(s.into()), ".results.csv").unwrap();
        assert_eq!(p("dir/calls.csv"), PathBuf::from("dir/calls.results.csv"));
        assert_eq!(p("calls.CSV.gz"), PathBuf::from("calls.results.csv"));
        assert_eq!(p("calls"), PathBuf::from("calls.results.csv"));
        assert!(default_results_path(&Origin::Stdin, ".results.csv").is_none());
    }
}
