//! Dispatch: the dispatcher takes a concurrency permit and a row and starts
//! the row's worker. A worker claims its row's key, then journals the row
//! only once its rate slot is near (see [`take_turn`]), so that a crash
//! leaves `unknown` only the rows whose request was about to leave; the
//! keeper thread (see `keeper`) handles every claim and line queued while it
//! was busy as one group (at high rates one sync covers many rows).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::keeper::{Claimed, Note};
use super::worker::{worker, Ctx};
use super::{SendItem, HANDOFF_BATCH};

/// A worker journals its row this long before its rate slot: enough for a
/// sync, so that the request still leaves on its slot.
const JOURNAL_LEAD: Duration = Duration::from_millis(20);

/// The dispatcher's end of the reader's channel: groups of rows, taken one
/// row at a time.
pub(super) struct Inbox {
    rx: mpsc::Receiver<Vec<SendItem>>,
    pending: std::collections::VecDeque<SendItem>,
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

/// The channel from the reader to the dispatcher, sized for the pool.
pub(super) fn channel(concurrency: usize) -> (mpsc::Sender<Vec<SendItem>>, Inbox) {
    let (tx, rx) = mpsc::channel::<Vec<SendItem>>((concurrency.max(64) / HANDOFF_BATCH).max(2));
    let inbox = Inbox {
        rx,
        pending: std::collections::VecDeque::new(),
    };
    (tx, inbox)
}

/// What a row's first try may do.
pub(super) enum Turn {
    /// Send it now: its key is claimed, its line journaled, its slot come.
    Go,
    /// Do not send it: an earlier survey makes it a `duplicate`.
    Duplicate(crate::ledger::Earlier),
    /// Do not send it: the ledger or the journal failed, or is closed.
    No,
}

/// A row's first try: waits for its key's claim (sent by the dispatcher),
/// waits for its rate slot, journals the row (synced) just before the slot,
/// and returns at the slot. A duplicate takes no slot.
pub(super) async fn take_turn(
    ctx: &Ctx,
    row: u64,
    hash: u64,
    claimed: oneshot::Receiver<Claimed>,
) -> Turn {
    match claimed.await {
        Ok(Claimed::Go) => {}
        Ok(Claimed::Duplicate(earlier)) => return Turn::Duplicate(earlier),
        Ok(Claimed::Failed) | Err(_) => return Turn::No,
    }
    if ctx.unlimited {
        // Waits out a pause after a 429, and the slot of a rate the server
        // imposed since, if any.
        if let Some(slot) = ctx.pace.reserve().await {
            tokio::time::sleep_until(slot).await;
        }
        return Turn::Go;
    }
    let slot = ctx.pace.reserve().await;
    if let Some(slot) = slot {
        tokio::time::sleep_until(slot - JOURNAL_LEAD).await;
    }
    let (synced, on_disk) = oneshot::channel();
    if !ctx.tell(Note::Sending { row, hash, synced }) || on_disk.await != Ok(true) {
        return Turn::No;
    }
    if let Some(slot) = slot {
        if tokio::time::Instant::now() > slot + LATE {
            // The sync took longer than the lead: starting now, right before
            // the next row's slot, could put one too many into a second.
            // Take a new slot instead.
            ctx.pace.ready().await;
        } else {
            tokio::time::sleep_until(slot).await;
        }
    }
    Turn::Go
}

/// A request may start this much after its slot (the rate's margin is 8 ms
/// per second, see `pace`); later, it waits for a new slot.
const LATE: Duration = Duration::from_millis(4);

/// Dispatches until the input ends or the run stops: takes a permit, then
/// a row, and starts its worker. Returns how many rows the reader handed
/// over that were never dispatched.
pub(super) async fn dispatch(mut inbox: Inbox, ctx: &Arc<Ctx>, semaphore: &Arc<Semaphore>) -> u64 {
    let stop = &ctx.stop;
    loop {
        let permit = tokio::select! {
            p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.soft.cancelled() => break,
        };
        let item = tokio::select! {
            i = inbox.recv() => match i { Some(i) => i, None => break },
            _ = stop.soft.cancelled() => break,
        };
        // Claimed here, in the input's order, so that of two rows with one
        // key the first is sent and the second is its duplicate. Without a
        // rate there is no slot to wait for: claimed and journaled in one
        // group (the claim still committed before the line).
        let (answer, claimed) = oneshot::channel();
        let note = if ctx.unlimited {
            Note::ClaimAndSend {
                claim: item.claim,
                hash: item.hash,
                answer,
            }
        } else {
            Note::Claim {
                claim: item.claim,
                answer,
            }
        };
        // If the keeper takes no more, the worker finds its answer gone.
        ctx.tell(note);
        tokio::spawn(worker(ctx.clone(), item, claimed, permit));
    }
    // Nothing more is dispatched: the reader sees its channel close, and
    // rows it had already handed over are counted as not sent.
    inbox.close()
}
