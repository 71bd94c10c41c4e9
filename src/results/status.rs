//! A row's status, the outcome that carries it to the results file, and the
//! counts of a run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

/// A row's status (see "Words" in `docs/design.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Rejected,
    Invalid,
    Skipped,
    Failed,
    Unknown,
    /// Not sent: the ledger knows an earlier survey for this row (its key,
    /// or its contact within `contact_within`); `digidesk_id` is that survey's.
    Duplicate,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Created,
        Status::Rejected,
        Status::Invalid,
        Status::Skipped,
        Status::Failed,
        Status::Unknown,
        Status::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Rejected => "rejected",
            Status::Invalid => "invalid",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether a row with this status counts against exit code 0.
    pub fn is_problem(self) -> bool {
        !matches!(self, Status::Created | Status::Skipped | Status::Duplicate)
    }
}

/// The decided fate of one row, on its way to the results file.
#[derive(Debug)]
pub struct Outcome {
    pub row: u64,
    /// The row's input columns, lined up with the input header (a short row
    /// is padded with empty cells, a long one cut to the header).
    pub fields: csv::StringRecord,
    pub status: Status,
    pub id: Option<u64>,
    pub http: Option<u16>,
    pub attempts: u32,
    pub errors: Vec<String>,
    /// The concurrency slot the row held; released once the outcome is written.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Counts of a run, kept as lines are written and read by progress reports.
#[derive(Debug, Default)]
pub struct Counters {
    by_status: [AtomicU64; Status::ALL.len()],
    /// Requests made, retries included.
    pub requests: AtomicU64,
}

impl Counters {
    pub fn get(&self, s: Status) -> u64 {
        self.by_status[s as usize].load(Ordering::Relaxed)
    }

    pub fn add(&self, s: Status, n: u64) {
        self.by_status[s as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        Status::ALL.iter().map(|s| self.get(*s)).sum()
    }
}

/// What the writer hands back at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Error messages and how often each came; capped in size.
    pub errors: HashMap<String, u64>,
}

/// Most distinct error messages remembered for the summary.
const MAX_DISTINCT_ERRORS: usize = 1000;
const OTHER_ERRORS: &str = "(other messages)";

impl Tally {
    /// Counts a message; a "try N: " prefix is dropped so that the same
    /// failure on different tries counts as one message.
    pub fn count_error(&mut self, message: &str) {
        let message = strip_try(message);
        // Counted without the contact a reason quotes: grouped, and no
        // customer data in the summary.
        let without_value;
        let message = match crate::contact::split_reason(message) {
            Some((kind, _)) => {
                without_value = kind;
                without_value.as_str()
            }
            None => message,
        };
        if let Some(n) = self.errors.get_mut(message) {
            *n += 1;
        } else if self.errors.len() < MAX_DISTINCT_ERRORS {
            self.errors.insert(message.to_string(), 1);
        } else {
            *self.errors.entry(OTHER_ERRORS.to_string()).or_default() += 1;
        }
    }

    /// The most frequent messages, most frequent first.
    pub fn top_errors(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.errors.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// "try 3: HTTP 503: ..." -> "HTTP 503: ...".
fn strip_try(message: &str) -> &str {
    match message
        .strip_prefix("try ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => message,
    }
}
