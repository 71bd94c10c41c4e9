//! The end of a run in words: a table of counts per status, elapsed time,
//! achieved rate, the most frequent errors, where the results are and what
//! to run next; and the same as JSON for monitoring (`--summary-json`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::exit::Exit;
use crate::pipeline::{Ended, RunSummary};
use crate::results::Status;

/// How many error messages the summary lists.
pub const TOP_ERRORS: usize = 5;

/// The exit code a finished run calls for.
pub fn exit_code(report: &RunSummary) -> Exit {
    match &report.ended {
        Ended::Interrupted => Exit::Interrupted,
        Ended::Stopped(..) => Exit::Stopped,
        Ended::InputError(_) | Ended::InputChanged(_) if report.requests == 0 => Exit::Usage,
        Ended::InputError(_) | Ended::InputChanged(_) => Exit::Stopped,
        Ended::Completed if report.problems() > 0 => Exit::SomeRowsNotCreated,
        Ended::Completed => Exit::Success,
    }
}

/// The summary for people. `resend` is the command that resends failures.
pub fn render(command: &str, report: &RunSummary, resend: &str, resume: &str) -> String {
    let mut out = String::new();
    let secs = report.elapsed.as_secs_f64();
    let headline = match &report.ended {
        Ended::Completed if report.already_complete => {
            "was already complete; nothing to send".to_string()
        }
        Ended::Completed if report.limited => "stopped at --limit".to_string(),
        Ended::Completed => "completed".to_string(),
        Ended::Stopped(..) => "STOPPED part-way".to_string(),
        Ended::InputError(_) => "STOPPED: the input could not be read".to_string(),
        Ended::InputChanged(_) => {
            "REFUSED: the input is not the one this run was started with".to_string()
        }
        Ended::Interrupted => "INTERRUPTED".to_string(),
    };
    let _ = writeln!(
        out,
        "digidesk-upload {command}: {headline} in {}",
        fmt_secs(secs)
    );
    let total: u64 = report.counts.iter().map(|(_, n)| n).sum();
    let _ = writeln!(out, "  {:<10} {:>10}", "rows", thousands(total));
    for status in Status::ALL {
        let _ = writeln!(
            out,
            "  {:<10} {:>10}",
            status.as_str(),
            thousands(report.count(status))
        );
    }
    let rate = if secs > 0.0 {
        report.requests as f64 / secs
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "  {:<10} {:>10}   ({rate:.1}/s)",
        "requests",
        thousands(report.requests)
    );
    if report.input.ignored() > 0 {
        let _ = writeln!(
            out,
            "  {:<10} {:>10}",
            "ignored",
            thousands(report.input.ignored())
        );
    }
    out.push_str(&report.input.render());
    if report.resumed_unknown > 0 {
        let _ = writeln!(
            out,
            "  {} rows were in flight when the earlier run stopped: marked unknown, not resent",
            thousands(report.resumed_unknown)
        );
    }
    let _ = writeln!(out, "  {:<10} {}", "results", report.results.display());
    let top = report.tally.top_errors(TOP_ERRORS);
    if !top.is_empty() {
        let _ = writeln!(out, "Most frequent errors:");
        for (msg, n) in top {
            let _ = writeln!(out, "  {:>8}  {msg}", thousands(n));
        }
    }
    let unsent = thousands(report.unsent);
    // A run that stopped continues as it started: a canary stays a canary.
    let resume_same = match report.limit {
        Some(n) => format!("{resume} --limit {n}"),
        None => resume.to_string(),
    };
    let resume_same = resume_same.as_str();
    match &report.ended {
        Ended::Stopped(_, msg) | Ended::InputError(msg) => {
            let _ = writeln!(out, "Why it stopped: {msg}");
            let _ = writeln!(
                out,
                "{unsent} rows were not sent and are not in the results file. Once fixed, continue with:\n  {resume_same}"
            );
        }
        Ended::InputChanged(msg) => {
            let _ = writeln!(out, "Why it stopped: {msg}");
        }
        Ended::Interrupted => {
            let _ = writeln!(
                out,
                "{unsent} rows were not sent and are not in the results file. Continue with:\n  {resume_same}"
            );
        }
        Ended::Completed if report.limited && canary_failed(report) => {
            let sent = report.count(Status::Created) + not_created(report);
            let _ = writeln!(
                out,
                "The canary failed: {} of the {} rows sent were not created (the most frequent errors are above). \
Fix that first; the {unsent} rows after --limit were not sent.",
                thousands(not_created(report)),
                thousands(sent)
            );
        }
        Ended::Completed if report.limited => {
            let _ = writeln!(
                out,
                "{unsent} rows after --limit were not sent. Send the rest with:\n  {resume}"
            );
        }
        Ended::Completed => {}
    }
    if report.count(Status::Failed) > 0 {
        let _ = writeln!(out, "Resend the failed rows with:\n  {resend}");
    }
    if report.count(Status::Unknown) > 0 {
        let _ = writeln!(
            out,
            "{} rows are unknown: they may exist in DigiDesk. Check there before resending them with --only unknown.",
            thousands(report.count(Status::Unknown))
        );
    }
    if report.count(Status::Duplicate) > 0 {
        let _ = writeln!(
            out,
            "{} rows are duplicate: the ledger says they were sent before (their digidesk_errors say when and where), so they were not sent again.",
            thousands(report.count(Status::Duplicate))
        );
    }
    out
}

/// Rows sent that were not created: rejected, failed or unknown.
fn not_created(report: &RunSummary) -> u64 {
    [Status::Rejected, Status::Failed, Status::Unknown]
        .iter()
        .map(|s| report.count(*s))
        .sum()
}

/// A `--limit` run most of whose rows sent were not created: the rest
/// must not follow before the cause is fixed.
fn canary_failed(report: &RunSummary) -> bool {
    not_created(report) > report.count(Status::Created)
}

/// The summary for monitoring.
#[derive(Debug, Serialize)]
pub struct JsonSummary<'a> {
    pub command: &'a str,
    pub end: &'static str,
    pub stop_reason: Option<&'a str>,
    pub exit_code: u8,
    pub elapsed_seconds: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub rows: u64,
    pub rows_this_run: u64,
    /// Rows not sent because the run stopped or reached --limit.
    pub unsent: u64,
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    pub top_errors: Vec<ErrorCount>,
    pub results: String,
    /// Records of the input that are not rows (a footer), per reason, and
    /// warnings about the input.
    #[serde(flatten)]
    pub input: crate::input::shape::NotesJson,
}

#[derive(Debug, Serialize)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

pub fn to_json(command: &str, report: &RunSummary) -> String {
    let secs = report.elapsed.as_secs_f64();
    let (end, reason) = match &report.ended {
        Ended::Completed => ("completed", None),
        Ended::Stopped(_, m) => ("stopped", Some(m.as_str())),
        Ended::InputError(m) => ("input_error", Some(m.as_str())),
        Ended::InputChanged(m) => ("input_changed", Some(m.as_str())),
        Ended::Interrupted => ("interrupted", None),
    };
    let summary = JsonSummary {
        command,
        end,
        stop_reason: reason,
        exit_code: exit_code(report).code(),
        elapsed_seconds: secs,
        requests: report.requests,
        requests_per_second: if secs > 0.0 {
            report.requests as f64 / secs
        } else {
            0.0
        },
        rows: report.counts.iter().map(|(_, n)| n).sum(),
        rows_this_run: report.rows_this_run,
        unsent: report.unsent,
        counts: report
            .counts
            .iter()
            .map(|(s, n)| (s.as_str(), *n))
            .collect(),
        top_errors: report
            .tally
            .top_errors(TOP_ERRORS)
            .into_iter()
            .map(|(message, count)| ErrorCount { message, count })
            .collect(),
        results: report.results.display().to_string(),
        input: report.input.to_json(),
    };
    serde_json::to_string_pretty(&summary).expect("serialising a summary to memory")
}

/// The summary for monitoring of a command that ended before or without a
/// run (results file exists, locked, bad options): its exit code and why.
pub fn error_json(command: &str, exit: Exit, reason: &str) -> String {
    let summary = JsonSummary {
        command,
        end: if exit == Exit::Usage {
            "refused"
        } else {
            "failed"
        },
        stop_reason: Some(reason),
        exit_code: exit.code(),
        elapsed_seconds: 0.0,
        requests: 0,
        requests_per_second: 0.0,
        rows: 0,
        rows_this_run: 0,
        unsent: 0,
        counts: Default::default(),
        top_errors: Vec::new(),
        results: String::new(),
        input: crate::input::Notes::default().to_json(),
    };
    serde_json::to_string_pretty(&summary).expect("serialising a summary to memory")
}

fn fmt_secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let total = s.round() as u64;
        format!("{}h{:02}m{:02}s", total / 3600, total / 60 % 60, total % 60)
    }
}

pub use crate::output::thousands;

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
