//! The keeper: the two threads that write a run's durable records.
//!
//! - **keeper** claims rows' keys in the ledger: every claim queued while it
//!   was busy, with the outcomes waiting, in one transaction (a group
//!   commit). Outcomes are `created` with its id, `unknown`, or released
//!   (the key is free again); then each claimed row's key is this run's
//!   now, or the row is a `duplicate` of an earlier survey.
//! - **journal** writes "sending" lines: every line queued while it was
//!   busy, with one sync.
//!
//! A row is claimed before it waits for its rate slot (a duplicate never
//! takes a slot) and journaled only once its claim is answered, just before
//! its slot (see `dispatch` and `turn`), so the order for every row is:
//! ledger claim (committed) → journal line (synced) → request. Without a
//! ledger (`--no-ledger`) every claim is granted.
//!
//! Outcomes need no sync of their own (until one is recorded its claim
//! stops the key just as well), and nobody waits for them: they are put in
//! a list the keeper takes with its next claims, so one commit carries
//! both and no outcome wakes the keeper. Once [`OUTCOMES_MAX`] are waiting,
//! or the keeper has had nothing to do for [`OUTCOMES_WAIT`], they are
//! recorded on their own; the last ones when the run ends.
//!
//! When nothing waits, the keeper lets the ledger do a little housekeeping
//! ([`Store::tidy`]: for SQLite, a chunk of a fold), one chunk at a time,
//! so that a claim waits at most one chunk.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::api::StopKind;
use crate::journal::{Journal, JournalError};
use crate::ledger::{self, Claim, Earlier, Policy, Recorded, RunId, Store};

use super::{Ended, RunError, Stop};

/// Notes handled in one group, at most.
const MAX_BATCH: usize = 512;

/// Outcomes that wait for claims to share their commit, at most...
const OUTCOMES_MAX: usize = 1024;

/// ...and for how long the keeper may be idle with outcomes waiting.
const OUTCOMES_WAIT: Duration = Duration::from_millis(50);

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
    /// Claim rows' keys, in order, ahead of their dispatch (`--rate 0`:
    /// one commit for many rows). Each row's answer in `answers`.
    Claims {
        claims: Vec<Claim>,
        answers: Vec<oneshot::Sender<Claimed>>,
    },
    /// Journal a row as sending, synced, before its request leaves.
    Sending {
        row: u64,
        hash: u64,
        synced: oneshot::Sender<bool>,
    },
    /// A claimed row's outcome.
    Outcome(Recorded),
}

/// What the keeper's thread is woken for (outcomes go to a list instead,
/// and "sending" lines to the journal's thread).
enum Wake {
    Claim(Claim, oneshot::Sender<Claimed>),
    Claims(Vec<Claim>, Vec<oneshot::Sender<Claimed>>),
    /// Many outcomes are waiting.
    Outcomes,
}

/// Where the pipeline's records are queued: claims for the keeper's
/// thread, "sending" lines for the journal's, outcomes in a list.
pub(super) struct Notes {
    keeper: mpsc::Sender<Wake>,
    journal: mpsc::Sender<Sending>,
    outcomes: Arc<Mutex<Vec<Recorded>>>,
    /// Without a ledger, outcomes are not kept.
    ledgered: bool,
}

impl Notes {
    /// Queues a note; false once it is not taken any more.
    pub(super) fn tell(&self, note: Note) -> bool {
        match note {
            Note::Claim { claim, answer } => self.keeper.send(Wake::Claim(claim, answer)).is_ok(),
            Note::Claims { claims, answers } => {
                self.keeper.send(Wake::Claims(claims, answers)).is_ok()
            }
            Note::Sending { row, hash, synced } => self.journal.send((row, hash, synced)).is_ok(),
            Note::Outcome(o) => {
                if !self.ledgered {
                    return true;
                }
                let mut waiting = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
                waiting.push(o);
                if waiting.len() == OUTCOMES_MAX {
                    drop(waiting);
                    let _ = self.keeper.send(Wake::Outcomes);
                }
                true
            }
        }
    }
}

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
type Sending = (u64, u64, oneshot::Sender<bool>);

/// Starts the keeper. On a journal error no queued row is sent and the run
/// stops with that error; on a ledger error no row is claimed any more and
/// the run stops (exit 3). Ends when every [`Notes`] is gone.
///
/// Its two threads work side by side: the ledger's commit of one batch of
/// claims and the journal's sync of the rows claimed before happen at the
/// same time.
pub(super) fn start(
    journal: Arc<Mutex<Journal>>,
    ledger: Option<Ledgered>,
    stop: Stop,
) -> Result<(Notes, std::thread::JoinHandle<KeeperEnd>), RunError> {
    let (to_keeper, wakes) = mpsc::channel::<Wake>();
    let (to_journal, sendings) = mpsc::channel::<Sending>();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let notes = Notes {
        keeper: to_keeper,
        journal: to_journal,
        outcomes: outcomes.clone(),
        ledgered: ledger.is_some(),
    };
    let journal_path = journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .path()
        .to_path_buf();
    let journaler = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || journal_sendings(&journal, &sendings, &stop))
            .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?
    };
    let thread = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            let ledger = keep(ledger, &wakes, &outcomes, &stop);
            let journal = journaler.join().unwrap_or_else(|_| {
                Err(JournalError::Io {
                    what: "write",
                    path: journal_path,
                    source: std::io::Error::other("its writer stopped unexpectedly"),
                })
            });
            KeeperEnd { journal, ledger }
        })
        .map_err(|e| RunError::Thread(format!("cannot start the ledger writer: {e}")))?;
    Ok((notes, thread))
}

/// The keeper's thread: claims and outcomes, until every sender is gone.
/// Returns the ledger, unless it failed.
fn keep(
    mut ledger: Option<Ledgered>,
    wakes: &mpsc::Receiver<Wake>,
    waiting: &Mutex<Vec<Recorded>>,
    stop: &Stop,
) -> Option<Ledgered> {
    let mut group: Vec<Wake> = Vec::with_capacity(MAX_BATCH);
    let mut claims = Vec::new();
    let mut answers = Vec::new();
    let mut outcomes = Vec::new();
    let mut failed = false;
    let mut open = true;
    // The ledger has housekeeping to do when nothing waits.
    let mut tidy = false;
    while open {
        let next = if tidy {
            match wakes.try_recv() {
                Ok(w) => Ok(w),
                Err(TryRecvError::Empty) => {
                    tidy = !failed
                        && !stop.is_stopping()
                        && ledger.as_mut().is_some_and(|l| l.store.tidy());
                    continue;
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            }
        } else {
            wakes.recv_timeout(OUTCOMES_WAIT)
        };
        let idle = match next {
            Ok(w) => {
                group.push(w);
                false
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                true
            }
        };
        while group.len() < MAX_BATCH {
            match wakes.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let mut many = false;
        for wake in group.drain(..) {
            match wake {
                Wake::Claim(claim, answer) => {
                    claims.push(claim);
                    answers.push(answer);
                }
                Wake::Claims(mut more, mut theirs) => {
                    claims.append(&mut more);
                    answers.append(&mut theirs);
                }
                Wake::Outcomes => many = true,
            }
        }
        // A stopping run sends nothing new: its rows are left for --resume.
        if failed || stop.is_stopping() {
            claims.clear();
        }
        // Outcomes wait for claims to share their commit.
        if !claims.is_empty() || many || idle {
            std::mem::swap(
                &mut outcomes,
                &mut waiting.lock().unwrap_or_else(|p| p.into_inner()),
            );
        }
        let verdicts = if failed || (claims.is_empty() && outcomes.is_empty()) {
            Vec::new()
        } else {
            match settle(&mut ledger, &outcomes, &claims) {
                Ok(v) => v,
                Err(e) => {
                    failed = true;
                    stop.set(ledger_stop(&e));
                    Vec::new()
                }
            }
        };
        tidy |= !claims.is_empty();
        outcomes.clear();
        claims.clear();
        let mut verdicts = verdicts.into_iter();
        for answer in answers.drain(..) {
            let _ = answer.send(verdicts.next().unwrap_or(Claimed::Failed));
        }
    }
    ledger.filter(|_| !failed)
}

/// The journal's thread: journals the rows queued, all that are queued
/// with one sync, and tells each row's worker. Returns the journal's first
/// error.
fn journal_sendings(
    journal: &Mutex<Journal>,
    queued: &mpsc::Receiver<Sending>,
    stop: &Stop,
) -> Result<(), JournalError> {
    let mut result = Ok(());
    let mut sendings: Vec<Sending> = Vec::new();
    while let Ok(first) = queued.recv() {
        sendings.push(first);
        while let Ok(more) = queued.try_recv() {
            sendings.push(more);
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
            let _ = synced.send(ok);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Header;
    use crate::ledger::{Outcome, RunInfo, Scope};

    /// An outcome needs no claim to carry it: once the keeper has nothing
    /// else to do, it records it, while the run goes on, so that another
    /// process sees the survey `created` with its id, not in flight.
    #[test]
    fn an_outcome_is_recorded_once_the_keeper_is_idle_not_only_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let scope = Scope {
            endpoint: "http://127.0.0.1:9/".into(),
            username: "u".into(),
        };
        let mut store = ledger::open(&path).unwrap();
        let info = RunInfo {
            command: "send".into(),
            results: dir.path().join("out.csv"),
            fingerprint: "f".into(),
            resume: false,
        };
        let run = store.begin_run(&scope, &info).unwrap();
        let claim = Claim {
            row: 1,
            key: store.hasher().key(b"a survey"),
            contact: None,
        };
        let header = Header {
            digidesk_upload_journal: 1,
            fingerprint: "f".into(),
            command: "send".into(),
            endpoint: None,
        };
        let journal = Journal::create(&dir.path().join("out.csv.journal"), &header).unwrap();
        let ledger = Ledgered {
            store,
            run,
            policy: Policy::send(None),
        };
        let (notes, thread) =
            start(Arc::new(Mutex::new(journal)), Some(ledger), Stop::default()).unwrap();
        let (answer, claimed) = oneshot::channel();
        assert!(notes.tell(Note::Claim { claim, answer }));
        assert!(matches!(claimed.blocking_recv(), Ok(Claimed::Go)));
        assert!(notes.tell(Note::Outcome(Recorded {
            row: 1,
            key: claim.key,
            contact: None,
            outcome: Outcome::Created(7),
        })));
        // Another process's view, until it says `created` (the keeper still
        // runs: `notes` is alive).
        let mut other = ledger::open(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = other
                .lookup(&scope, Policy::send(None), &[claim])
                .unwrap()
                .remove(0)
                .expect("claimed");
            if found.state == ledger::State::Created {
                assert_eq!(found.id, Some(7));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the outcome is still not recorded: {found:?}"
            );
            std::thread::yield_now();
        }
        drop(notes);
        assert!(thread.join().unwrap().ledger.is_some());
    }
}
