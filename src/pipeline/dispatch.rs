//! Dispatch: the dispatcher takes a concurrency permit and a row and starts
//! the row's worker. A worker claims its row's key, then journals the row
//! only once its rate slot is near (see [`take_turn`]), so that a crash
//! leaves `unknown` only the rows whose request was about to leave; the
//! keeper thread (see `keeper`) handles every claim and line queued while it
//! was busy as one group (at high rates one sync covers many rows).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::ctx::Ctx;
use super::keeper::Note;
use super::worker::worker;
use super::{SendItem, HANDOFF_BATCH};

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

/// The channel from the reader to the dispatcher, sized for the pool.
pub(super) fn channel(concurrency: usize) -> (mpsc::Sender<Vec<SendItem>>, Inbox) {
    let (tx, rx) = mpsc::channel::<Vec<SendItem>>((concurrency.max(64) / HANDOFF_BATCH).max(2));
    let inbox = Inbox {
        rx,
        pending: std::collections::VecDeque::new(),
    };
    (tx, inbox)
}

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
        if !ctx.unlimited {
            start(ctx, item, permit);
            continue;
        }
        // No rate: the rows at hand go to the keeper as one group; while
        // enough rows are still in flight to keep the server busy, a few
        // more are gathered first (group commit: one sync for all).
        let mut group = vec![(item, permit)];
        while group.len() < GROUP_MAX {
            let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                break;
            };
            match inbox.try_recv() {
                Some(item) => group.push((item, permit)),
                None => break,
            }
        }
        let want = (ctx.pool.size() / 2).clamp(1, GROUP_MAX);
        if group.len() < want && semaphore.available_permits() + group.len() < ctx.pool.size() {
            let deadline = tokio::time::sleep(GROUP_WAIT);
            tokio::pin!(deadline);
            while group.len() < want {
                let permit = tokio::select! {
                    p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = &mut deadline => break,
                    _ = stop.soft.cancelled() => break,
                };
                let item = tokio::select! {
                    i = inbox.recv() => match i { Some(i) => i, None => break },
                    _ = &mut deadline => break,
                    _ = stop.soft.cancelled() => break,
                };
                group.push((item, permit));
            }
        }
        for (item, permit) in group {
            start(ctx, item, permit);
        }
    }
    // Nothing more is dispatched: the reader sees its channel close, and
    // rows it had already handed over are counted as not sent.
    inbox.close()
}

/// Sends a row's claim to the keeper and starts its worker. Claimed here,
/// in the input's order, so that of two rows with one key the first is
/// sent and the second is its duplicate. Without a rate there is no slot to
/// wait for: claimed and journaled in one group (the claim still committed
/// before the line).
fn start(ctx: &Arc<Ctx>, item: SendItem, permit: tokio::sync::OwnedSemaphorePermit) {
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

/// Rows gathered into one group at `--rate 0`, at most.
const GROUP_MAX: usize = 512;

/// How long the dispatcher may wait to gather half the pool into a group.
const GROUP_WAIT: Duration = Duration::from_millis(2);
