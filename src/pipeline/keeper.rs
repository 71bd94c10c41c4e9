//! The keeper: the one thread that writes a run's durable records. Workers
//! send it notes; it takes every note queued while it was busy and handles
//! them as one group:
//!
//! 1. outcomes and claims, in one ledger transaction (a group commit):
//!    outcomes are `created` with its id, `unknown`, or released (the key is
//!    free again); then each claimed row's survey key is this run's now, or
//!    the row is a `duplicate` of an earlier survey;
//! 2. "sending" lines, written to the journal with one sync.
//!
//! A row is claimed before it waits for its rate slot (a duplicate never
//! takes a slot) and journaled just before its slot (see `dispatch`), so the
//! order for every row is: ledger claim (committed) → journal line (synced)
//! → request. Without a ledger (`--no-ledger`) the keeper still knows this
//! run's keys, so that a survey is never sent twice within one run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::api::StopKind;
use crate::journal::{Journal, JournalError};
use crate::ledger::{self, Claim, Earlier, KeyHash, Policy, Recorded, RunId, Store};

use super::{Ended, RunError, Stop};

/// Notes handled in one group, at most.
const MAX_BATCH: usize = 512;

/// A run's ledger: the store, the run it began, and what stops a row.
pub struct Ledgered {
    pub store: Box<dyn Store>,
    pub run: RunId,
    pub policy: Policy,
}

/// What the keeper says of a row's claim.
#[derive(Debug)]
pub(super) enum Claimed {
    /// The key is this run's: the row may be sent.
    Go,
    /// An earlier survey stops the row: it is `duplicate`.
    Duplicate(Earlier),
    /// The ledger failed (the run is stopping): the row is not sent.
    Failed,
}

/// What workers (and the reader) tell the keeper.
pub(super) enum Note {
    /// Claim a row's key before its request may leave.
    Claim {
        claim: Claim,
        answer: oneshot::Sender<Claimed>,
    },
    /// Journal a row as sending, synced, before its request leaves.
    Sending {
        row: u64,
        hash: u64,
        synced: oneshot::Sender<bool>,
    },
    /// Claim a row's key and, if it is this run's, journal the row as
    /// sending, synced, at once (no rate slot to wait for in between).
    ClaimAndSend {
        claim: Claim,
        hash: u64,
        answer: oneshot::Sender<Claimed>,
    },
    /// A claimed row's outcome.
    Outcome(Recorded),
}

/// Who waits for a "sending" line to be on disk.
enum Synced {
    /// A [`Note::Sending`]: told whether it is.
    Sent(oneshot::Sender<bool>),
    /// A [`Note::ClaimAndSend`]: told `Go`, or `Failed` when the journal failed.
    Claimed(oneshot::Sender<Claimed>),
}

impl Synced {
    fn answer(self, ok: bool) {
        let _ = match self {
            Synced::Sent(tx) => tx.send(ok).map_err(drop),
            Synced::Claimed(tx) => tx
                .send(if ok { Claimed::Go } else { Claimed::Failed })
                .map_err(drop),
        };
    }
}

/// Where notes are queued for the keeper.
pub(super) type Notes = mpsc::UnboundedSender<Note>;

/// Which surveys this run has seen.
enum Book {
    /// The ledger: every run's.
    Ledger(Ledgered),
    /// No ledger: this run's keys only, each with its first row and id.
    InRun(HashMap<KeyHash, (u64, Option<u64>)>),
}

impl Book {
    /// Records outcomes, then claims keys: per claim, in order, what it found.
    fn settle(
        &mut self,
        outcomes: &[Recorded],
        claims: &[Claim],
    ) -> Result<Vec<Claimed>, ledger::LedgerError> {
        match self {
            Book::Ledger(l) => Ok(l
                .store
                .settle(l.run, l.policy, outcomes, claims)?
                .into_iter()
                .map(|v| match v {
                    ledger::Verdict::Claimed => Claimed::Go,
                    ledger::Verdict::Duplicate(e) => Claimed::Duplicate(e),
                })
                .collect()),
            Book::InRun(seen) => {
                for o in outcomes {
                    match (o.outcome, seen.get_mut(&o.key)) {
                        (ledger::Outcome::Created(id), Some(first)) if first.0 == o.row => {
                            first.1 = Some(id)
                        }
                        (ledger::Outcome::Released, Some(first)) if first.0 == o.row => {
                            seen.remove(&o.key);
                        }
                        _ => {}
                    }
                }
                Ok(claims.iter().map(|c| in_run(seen, c)).collect())
            }
        }
    }
}

/// A claim without a ledger: a duplicate only of another row of this run.
fn in_run(seen: &mut HashMap<KeyHash, (u64, Option<u64>)>, c: &Claim) -> Claimed {
    match seen.get(&c.key) {
        Some(&(row, id)) if row != c.row => Claimed::Duplicate(Earlier {
            state: if id.is_some() {
                ledger::State::Created
            } else {
                ledger::State::InFlight
            },
            id,
            at: std::time::SystemTime::now(),
            origin: None,
            row,
            same_run: true,
            by_contact: false,
        }),
        _ => {
            seen.insert(c.key, (c.row, None));
            Claimed::Go
        }
    }
}

/// How the keeper ended: the journal's first error, and the ledger back
/// (to mark the run finished).
pub(super) struct KeeperEnd {
    pub(super) journal: Result<(), JournalError>,
    pub(super) ledger: Option<Ledgered>,
}

/// Starts the keeper. On a journal error no queued row is sent and the run
/// stops with that error; on a ledger error no row is claimed any more and
/// the run stops (exit 3). Ends when every sender is gone.
pub(super) fn start(
    journal: Arc<Mutex<Journal>>,
    ledger: Option<Ledgered>,
    stop: Stop,
) -> Result<(Notes, std::thread::JoinHandle<KeeperEnd>), RunError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Note>();
    let mut book = match ledger {
        Some(l) => Book::Ledger(l),
        None => Book::InRun(HashMap::new()),
    };
    let thread = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            let mut group: Vec<Note> = Vec::with_capacity(MAX_BATCH);
            let mut claims = Vec::new();
            let mut answers = Vec::new();
            let mut outcomes = Vec::new();
            let mut sendings = Vec::new();
            let mut ledger_failed = false;
            let mut journal_result = Ok(());
            while let Some(first) = rx.blocking_recv() {
                group.push(first);
                while group.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(n) => group.push(n),
                        Err(_) => break,
                    }
                }
                for note in group.drain(..) {
                    match note {
                        Note::Claim { claim, answer } => {
                            claims.push(claim);
                            answers.push((claim.row, None, answer));
                        }
                        Note::ClaimAndSend {
                            claim,
                            hash,
                            answer,
                        } => {
                            claims.push(claim);
                            answers.push((claim.row, Some(hash), answer));
                        }
                        Note::Outcome(o) => outcomes.push(o),
                        Note::Sending { row, hash, synced } => {
                            sendings.push((row, hash, Synced::Sent(synced)))
                        }
                    }
                }
                // Outcomes, then claims, in one transaction. A stopping run
                // sends nothing new: its rows are left for --resume.
                if ledger_failed || stop.is_stopping() {
                    claims.clear();
                }
                let verdicts = if ledger_failed || (claims.is_empty() && outcomes.is_empty()) {
                    Vec::new()
                } else {
                    match book.settle(&outcomes, &claims) {
                        Ok(v) => v,
                        Err(e) => {
                            ledger_failed = true;
                            stop.set(ledger_stop(&e));
                            Vec::new()
                        }
                    }
                };
                let mut verdicts = verdicts.into_iter();
                for (row, send, answer) in answers.drain(..) {
                    match (verdicts.next().unwrap_or(Claimed::Failed), send) {
                        // Claimed (and on disk): now journaled, in this group.
                        (Claimed::Go, Some(hash)) => {
                            sendings.push((row, hash, Synced::Claimed(answer)))
                        }
                        (verdict, _) => {
                            let _ = answer.send(verdict);
                        }
                    }
                }
                claims.clear();
                outcomes.clear();
                if !sendings.is_empty() {
                    let journaled = if journal_result.is_err() {
                        Err(None)
                    } else {
                        let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
                        // Once the run stops, its workers are writing their
                        // rows as not sent: a "sending" line after that would
                        // make a row that never left `unknown` on resume.
                        // (Checked under the journal's lock, which they take.)
                        if stop.is_stopping() {
                            Err(None)
                        } else {
                            sendings
                                .iter()
                                .try_for_each(|(row, hash, _)| j.sending(*row, *hash))
                                .and_then(|_| j.commit())
                                .map_err(Some)
                        }
                    };
                    let ok = journaled.is_ok();
                    for (_, _, synced) in sendings.drain(..) {
                        synced.answer(ok);
                    }
                    if let Err(Some(e)) = journaled {
                        stop.set(Ended::Interrupted);
                        journal_result = Err(e);
                    }
                }
            }
            KeeperEnd {
                journal: journal_result,
                ledger: match book {
                    Book::Ledger(l) if !ledger_failed => Some(l),
                    _ => None,
                },
            }
        })
        .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?;
    Ok((tx, thread))
}

/// The stop for a ledger that failed part-way: what was sent is in the
/// results file; `--resume` continues once the ledger is fixed.
fn ledger_stop(e: &ledger::LedgerError) -> Ended {
    Ended::Stopped(
        StopKind::Ledger,
        format!(
            "the ledger failed part-way, so nothing more is sent: {e}. Rows already sent are in the results file; once the ledger is fixed, --resume continues"
        ),
    )
}
