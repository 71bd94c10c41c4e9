//! Dispatch: the dispatcher takes a concurrency permit and a row, has the
//! row's key claimed, and starts the row's worker. The worker waits for the
//! claim, then journals the row only once its rate slot is near (see
//! `take_turn`), so that a crash leaves `unknown` only the rows whose
//! request was about to leave; the keeper thread (see `keeper`) handles
//! every claim and line queued while it was busy as one group (at high
//! rates one sync covers many rows).
//!
//! With a rate, each row is claimed as it is dispatched. At `--rate 0` rows
//! are claimed ahead, a batch of up to [`CLAIM_BATCH`] in one commit, while
//! the rows before them are sent ([`Ahead`]); a stop frees the keys of the
//! rows claimed and never dispatched.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::ledger::{self, Recorded};

use super::ctx::Ctx;
use super::keeper::{Claimed, Note};
use super::worker::worker;
use super::{SendItem, HANDOFF_BATCH};

/// The dispatcher's end of the reader's channel: groups of rows, taken one
/// row at a time.
pub(super) struct Inbox {
    rx: mpsc::Receiver<Vec<SendItem>>,
    pending: VecDeque<SendItem>,
}

impl Inbox {
    /// The next row, waiting for one. Cancel-safe.
    async fn recv(&mut self) -> Option<SendItem> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        let group = self.rx.recv().await?;
        self.pending.extend(group);
        self.pending.pop_front()
    }

    /// The next row, if one is here already.
    fn try_recv(&mut self) -> Option<SendItem> {
        if self.pending.is_empty() {
            let group = self.rx.try_recv().ok()?;
            self.pending.extend(group);
        }
        self.pending.pop_front()
    }

    /// Takes no more rows; returns how many were handed over but not taken.
    fn close(&mut self) -> u64 {
        self.rx.close();
        let mut left = self.pending.len() as u64;
        self.pending.clear();
        while let Ok(group) = self.rx.try_recv() {
            left += group.len() as u64;
        }
        left
    }
}

/// The channel from the reader to the dispatcher, holding `rows` (see
/// [`handoff_rows`]).
pub(super) fn channel(rows: usize) -> (mpsc::Sender<Vec<SendItem>>, Inbox) {
    let (tx, rx) = mpsc::channel::<Vec<SendItem>>((rows / HANDOFF_BATCH).max(2));
    let inbox = Inbox {
        rx,
        pending: VecDeque::new(),
    };
    (tx, inbox)
}

/// Dispatches until the input ends or the run stops: takes a permit, then
/// a row, and starts its worker. Returns how many rows the reader handed
/// over that were never dispatched.
pub(super) async fn dispatch(mut inbox: Inbox, ctx: &Arc<Ctx>, semaphore: &Arc<Semaphore>) -> u64 {
    let stop = &ctx.stop;
    let mut ahead = Ahead::default();
    loop {
        let permit = tokio::select! {
            p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.soft.cancelled() => break,
        };
        let (item, claimed) = if ctx.unlimited {
            if ahead.rows.len() < ctx.pool.size() && !ahead.refill(&mut inbox, ctx).await {
                break;
            }
            match ahead.rows.pop_front() {
                Some(next) => next,
                None => break,
            }
        } else {
            let item = tokio::select! {
                i = inbox.recv() => match i { Some(i) => i, None => break },
                _ = stop.soft.cancelled() => break,
            };
            // Claimed here, in the input's order, so that of two rows with
            // one key the first is sent and the second is its duplicate.
            let (answer, claimed) = oneshot::channel();
            // If the keeper takes no more, the worker finds its answer gone.
            ctx.tell(Note::Claim {
                claim: item.claim,
                answer,
            });
            (item, claimed)
        };
        tokio::spawn(worker(ctx.clone(), item, claimed, permit));
    }
    // Nothing more is dispatched: the reader sees its channel close, and
    // rows it had already handed over are counted as not sent.
    inbox.close() + ahead.release(ctx).await
}

/// Rows claimed ahead of their dispatch, in the input's order (`--rate 0`):
/// the keeper claims each batch in one commit, while the rows before it are
/// being sent. A claim's answer may still be on its way.
#[derive(Default)]
struct Ahead {
    rows: VecDeque<(SendItem, oneshot::Receiver<Claimed>)>,
}

impl Ahead {
    /// Claims the rows at hand, up to [`CLAIM_BATCH`], waiting for one
    /// only if none is left ahead. False when the input has ended and no
    /// row is left, or the run is stopping.
    async fn refill(&mut self, inbox: &mut Inbox, ctx: &Ctx) -> bool {
        let mut batch = Vec::new();
        if self.rows.is_empty() {
            let first = tokio::select! {
                i = inbox.recv() => i,
                _ = ctx.stop.soft.cancelled() => None,
            };
            match first {
                Some(item) => batch.push(item),
                None => return false,
            }
        }
        while batch.len() < CLAIM_BATCH {
            match inbox.try_recv() {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        if batch.is_empty() {
            return true;
        }
        let mut claims = Vec::with_capacity(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        for item in batch {
            let (answer, claimed) = oneshot::channel();
            claims.push(item.claim);
            answers.push(answer);
            self.rows.push_back((item, claimed));
        }
        // If the keeper takes no more, the workers find their answers gone.
        ctx.tell(Note::Claims { claims, answers });
        true
    }

    /// The run dispatches no more: the rows claimed ahead are not sent, and
    /// their keys are freed (a later `--resume` claims them again). Returns
    /// how many there were.
    async fn release(self, ctx: &Ctx) -> u64 {
        let left = self.rows.len() as u64;
        for (item, claimed) in self.rows {
            if let Ok(Claimed::Go) = claimed.await {
                ctx.tell(Note::Outcome(Recorded {
                    row: item.claim.row,
                    key: item.claim.key,
                    contact: item.claim.contact,
                    outcome: ledger::Outcome::Released,
                }));
            }
        }
        left
    }
}

/// Rows claimed in one batch at `--rate 0`, at most.
const CLAIM_BATCH: usize = 256;

/// How many rows the reader may hand over ahead of the dispatcher: at
/// `--rate 0`, room for two claim batches, so that each is a full one.
pub(super) fn handoff_rows(concurrency: usize, unlimited: bool) -> usize {
    let rows = concurrency.max(64);
    if unlimited {
        rows + 2 * CLAIM_BATCH
    } else {
        rows
    }
}
