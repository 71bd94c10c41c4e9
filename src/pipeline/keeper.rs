//! The keeper: the two threads that write a run's durable records. Workers
//! send it notes; it takes every note queued while it was busy and handles
//! them as one group:
//!
//! 1. outcomes and claims, in one ledger transaction (a group commit):
//!    outcomes are `created` with its id, `unknown`, or released (the key is
//!    free again); then each claimed row's survey key is this run's now, or
//!    the row is a `duplicate` of an earlier survey;
//! 2. "sending" lines, written to the journal with one sync.
//!
//! The two steps run on two threads, one group apart (see [`start`]).
//!
//! A row is claimed before it waits for its rate slot (a duplicate never
//! takes a slot) and journaled just before its slot (see `dispatch`), so the
//! order for every row is: ledger claim (committed) → journal line (synced)
//! → request. Without a ledger (`--no-ledger`) every claim is granted.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::api::StopKind;
use crate::journal::{Journal, JournalError};
use crate::ledger::{self, Claim, Earlier, Policy, Recorded, RunId, Store};

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

/// Records outcomes, then claims keys, in the ledger: per claim, in order,
/// what it found. Without a ledger every claim is this run's.
fn settle(
    ledger: &mut Option<Ledgered>,
    outcomes: &[Recorded],
    claims: &[Claim],
) -> Result<Vec<Claimed>, ledger::LedgerError> {
    let Some(l) = ledger else {
        return Ok(claims.iter().map(|_| Claimed::Go).collect());
    };
    Ok(l.store
        .settle(l.run, l.policy, outcomes, claims)?
        .into_iter()
        .map(|v| match v {
            ledger::Verdict::Claimed => Claimed::Go,
            ledger::Verdict::Duplicate(e) => Claimed::Duplicate(e),
        })
        .collect())
}

/// How the keeper ended: the journal's first error, and the ledger back
/// (to mark the run finished).
pub(super) struct KeeperEnd {
    pub(super) journal: Result<(), JournalError>,
    pub(super) ledger: Option<Ledgered>,
}

/// A row to journal as sending, and who waits for it to be on disk.
type Sending = (u64, u64, Synced);

/// Starts the keeper. On a journal error no queued row is sent and the run
/// stops with that error; on a ledger error no row is claimed any more and
/// the run stops (exit 3). Ends when every sender is gone.
///
/// It is two threads in a row: the first settles each group in the ledger,
/// then hands the group's claimed rows to the second, which journals them
/// with one sync. So the ledger's commit of one group and the journal's
/// sync of the one before it happen at the same time, and a row still goes
/// ledger claim (committed) → journal line (synced) → request.
pub(super) fn start(
    journal: Arc<Mutex<Journal>>,
    ledger: Option<Ledgered>,
    stop: Stop,
) -> Result<(Notes, std::thread::JoinHandle<KeeperEnd>), RunError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Note>();
    let (to_journal, from_ledger) = std::sync::mpsc::channel::<Vec<Sending>>();
    let journal_path = journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .path()
        .to_path_buf();
    let journaler = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || journal_sendings(&journal, &from_ledger, &stop))
            .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?
    };
    let mut ledger = ledger;
    let thread = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            let mut group: Vec<Note> = Vec::with_capacity(MAX_BATCH);
            let mut claims = Vec::new();
            let mut answers = Vec::new();
            let mut outcomes = Vec::new();
            let mut sendings = Vec::new();
            let mut ledger_failed = false;
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
                    match settle(&mut ledger, &outcomes, &claims) {
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
                        // Claimed (and on disk): now journaled.
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
                    if let Err(back) = to_journal.send(std::mem::take(&mut sendings)) {
                        // The journal writer is gone: nothing is sent.
                        for (_, _, synced) in back.0 {
                            synced.answer(false);
                        }
                    }
                }
            }
            drop(to_journal);
            let journal = journaler.join().unwrap_or_else(|_| {
                Err(JournalError::Io {
                    what: "write",
                    path: journal_path,
                    source: std::io::Error::other("its writer stopped unexpectedly"),
                })
            });
            KeeperEnd {
                journal,
                ledger: ledger.filter(|_| !ledger_failed),
            }
        })
        .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?;
    Ok((tx, thread))
}

/// The keeper's second thread: journals the rows the first hands it, all
/// that are queued with one sync, and tells each row's worker. Returns the
/// journal's first error.
fn journal_sendings(
    journal: &Mutex<Journal>,
    from_ledger: &std::sync::mpsc::Receiver<Vec<Sending>>,
    stop: &Stop,
) -> Result<(), JournalError> {
    let mut result = Ok(());
    let mut sendings: Vec<Sending> = Vec::new();
    while let Ok(first) = from_ledger.recv() {
        sendings.extend(first);
        while let Ok(more) = from_ledger.try_recv() {
            sendings.extend(more);
        }
        let journaled = if result.is_err() {
            Err(None)
        } else {
            let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
            // Once the run stops, its workers are writing their rows as
            // not sent: a "sending" line after that would make a row that
            // never left `unknown` on resume. (Checked under the journal's
            // lock, which they take.)
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
            result = Err(e);
        }
    }
    result
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
