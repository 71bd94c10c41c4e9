//! `digidesk-upload ledger`: look after the ledger of surveys sent. `import`
//! records past results files, `stats` counts, `forget` drops old surveys,
//! `check` counts what a send of an export would skip as `duplicate`.

mod check;
mod import;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cli::{LedgerCommand, LedgerForgetArgs, LedgerScopeArgs};
use crate::config::{self, Credentials};
use crate::exit::{Exit, Fatal};
use crate::ledger::{self, Scope};
use crate::results::is_result_column;
use crate::summary::thousands;

pub fn run(command: LedgerCommand) -> Result<Exit, Fatal> {
    match command {
        LedgerCommand::Import(args) => import::run(args),
        LedgerCommand::Check(args) => check::run(args),
        LedgerCommand::Stats(args) => stats(args.ledger.as_deref()),
        LedgerCommand::Forget(args) => forget(&args),
    }
}

/// Whose surveys: the endpoint as `send` parses it, and the username of
/// `--credentials` or `DIGIDESK_USERNAME` (the password is not needed).
fn scope(args: &LedgerScopeArgs) -> Result<Scope, Fatal> {
    let endpoint = config::parse_endpoint(args.endpoint.as_deref())?;
    let username = match &args.credentials {
        Some(file) => Credentials::load(Some(file))?.username,
        None => std::env::var("DIGIDESK_USERNAME")
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Fatal::usage(
                    "the ledger keeps surveys per DigiDesk username: set DIGIDESK_USERNAME (the password is not needed here), or pass --credentials FILE",
                )
            })?,
    };
    Ok(Scope::new(&endpoint, &username))
}

/// The input columns of a file that may be a results file: all but `digidesk_*`.
struct Columns {
    /// Indexes of the kept columns; `None` when all are kept.
    keep: Option<Vec<usize>>,
    /// Their names, for the mapping.
    names: Vec<String>,
}

impl Columns {
    fn of(headers: &[String]) -> Columns {
        let keep: Vec<usize> = (0..headers.len())
            .filter(|&i| !is_result_column(&headers[i]))
            .collect();
        let names = keep.iter().map(|&i| headers[i].clone()).collect();
        Columns {
            keep: (keep.len() != headers.len()).then_some(keep),
            names,
        }
    }

    /// The kept fields of `fields`, into `out` (or `fields` itself when all are kept).
    fn project<'a>(
        &self,
        fields: &'a csv::StringRecord,
        out: &'a mut csv::StringRecord,
    ) -> &'a csv::StringRecord {
        match &self.keep {
            None => fields,
            Some(keep) => {
                out.clear();
                for &i in keep {
                    out.push_field(fields.get(i).unwrap_or(""));
                }
                out
            }
        }
    }
}

fn stats(given: Option<&Path>) -> Result<Exit, Fatal> {
    let path = ledger::file(given)?;
    if !path.exists() {
        crate::output::print(&format!(
            "no ledger at {} yet: nothing has been sent or imported with it\n",
            path.display()
        ));
        return Ok(Exit::Success);
    }
    let s = ledger::open(&path)?.stats()?;
    let surveys = s.surveys();
    let mut out = String::new();
    let _ = writeln!(out, "ledger {} (format {})", s.location, s.format);
    let _ = writeln!(
        out,
        "  {} surveys, {} runs, {} bytes on disk{}",
        thousands(surveys),
        thousands(s.runs),
        thousands(s.bytes),
        s.bytes
            .checked_div(surveys)
            .map(|per| format!(" ({per} per survey)"))
            .unwrap_or_default()
    );
    for sc in &s.scopes {
        let _ = writeln!(out, "{} as {}:", sc.scope.endpoint, sc.scope.username);
        let _ = writeln!(out, "  {:<10} {:>12}", "created", thousands(sc.created));
        let _ = writeln!(out, "  {:<10} {:>12}", "unknown", thousands(sc.unknown));
        let _ = writeln!(out, "  {:<10} {:>12}", "in flight", thousands(sc.in_flight));
        let _ = writeln!(out, "  {:<10} {:>12}", "runs", thousands(sc.runs));
        if let (Some(oldest), Some(newest)) = (sc.oldest, sc.newest) {
            let _ = writeln!(
                out,
                "  from {} to {}",
                humantime::format_rfc3339_seconds(oldest),
                humantime::format_rfc3339_seconds(newest)
            );
        }
    }
    if s.scopes.iter().any(|sc| sc.in_flight > 0) {
        out.push_str("In flight: claimed by a run that is still sending, or that stopped before the answer came; such a survey may exist and is never sent again by `send` (`retry --only unknown` can, after checking DigiDesk).\n");
    }
    crate::output::print(&out);
    Ok(Exit::Success)
}

fn forget(args: &LedgerForgetArgs) -> Result<Exit, Fatal> {
    let before = parse_before(&args.before, SystemTime::now())?;
    let path = ledger::file(args.file.ledger.as_deref())?;
    let when = humantime::format_rfc3339_seconds(before);
    if !path.exists() {
        crate::output::print(&format!(
            "no ledger at {}: nothing to forget\n",
            path.display()
        ));
        return Ok(Exit::Success);
    }
    let f = ledger::open(&path)?.forget(before)?;
    crate::output::print(&format!(
        "forgot {} surveys and {} runs from before {when}; the ledger {} went from {} to {} bytes\n",
        thousands(f.surveys),
        thousands(f.runs),
        path.display(),
        thousands(f.bytes_before),
        thousands(f.bytes_after)
    ));
    Ok(Exit::Success)
}

/// `--before`: a date (midnight UTC), an RFC 3339 time, or an age before `now`.
fn parse_before(text: &str, now: SystemTime) -> Result<SystemTime, Fatal> {
    let t = text.trim();
    let date_only = t.len() == 10 && t.as_bytes().get(4) == Some(&b'-');
    let parsed = if date_only {
        humantime::parse_rfc3339(&format!("{t}T00:00:00Z")).ok()
    } else if t.starts_with(|c: char| c.is_ascii_digit()) && t.contains('-') {
        humantime::parse_rfc3339_weak(t).ok()
    } else {
        humantime::parse_duration(t)
            .ok()
            .and_then(|age: Duration| now.checked_sub(age))
    };
    let Some(before) = parsed else {
        return Err(Fatal::usage(format!(
            "--before {t:?}: expected a date (2025-01-01), a time (2025-01-01T12:00:00Z) or an age (90days, 1year)"
        )));
    };
    if before > now {
        return Err(Fatal::usage(format!(
            "--before {t:?} is in the future: forgetting surveys being sent now would let them be sent again"
        )));
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_takes_a_date_a_time_or_an_age() {
        let now = humantime::parse_rfc3339("2026-12-06T03:00:00Z").unwrap();
        let at = |s| humantime::format_rfc3339_seconds(parse_before(s, now).unwrap()).to_string();
        assert_eq!(at("2025-01-01"), "2025-01-01T00:00:00Z");
        assert_eq!(at("2025-01-01T12:30:00Z"), "2025-01-01T12:30:00Z");
        assert_eq!(at("2025-01-01 12:30:00"), "2025-01-01T12:30:00Z");
        assert_eq!(at("90days"), "2026-09-07T03:00:00Z");
        assert_eq!(at("2w"), "2026-11-22T03:00:00Z");
        let e = parse_before("2027-01-01", now).unwrap_err();
        assert!(e.message.contains("in the future"), "{}", e.message);
        let e = parse_before("last tuesday", now).unwrap_err();
        assert!(e.message.contains("expected a date"), "{}", e.message);
        assert!(parse_before("2025-13-01", now).is_err());
    }

    #[test]
    fn results_columns_are_left_out_of_what_the_mapping_sees() {
        let headers: Vec<String> = ["Ref", "digidesk_row", "Phone", "digidesk_status"]
            .map(String::from)
            .to_vec();
        let c = Columns::of(&headers);
        assert_eq!(c.names, ["Ref", "Phone"]);
        let rec = csv::StringRecord::from(vec!["R1", "1", "077", "created"]);
        let mut out = csv::StringRecord::new();
        assert_eq!(
            c.project(&rec, &mut out),
            &csv::StringRecord::from(vec!["R1", "077"])
        );
        let plain = Columns::of(&headers[..1]);
        assert!(plain.keep.is_none());
    }
}
