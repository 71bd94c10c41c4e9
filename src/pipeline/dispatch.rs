//! Dispatch and group commit: the dispatcher takes a concurrency permit and
//! a row and starts the row's worker. A worker journals its row only once
//! its rate slot is near (see [`take_turn`]), so that a crash leaves
//! `unknown` only the rows whose request was about to leave; the journal
//! thread writes and syncs every line queued while the previous sync ran
//! with one sync (group commit: at high rates one `fdatasync` covers many rows).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::journal::{Journal, JournalError};

use super::worker::{worker, Ctx};
use super::{Ended, RunError, SendItem, Stop, HANDOFF_BATCH};

/// Lines written with one sync, at most.
const MAX_BATCH: usize = 512;

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

/// A row's "sending" line, and the worker waiting for it to be on disk.
pub(super) struct Intent {
    row: u64,
    hash: u64,
    synced: oneshot::Sender<bool>,
}

/// Where workers queue their rows' "sending" lines.
pub(super) type Intents = mpsc::UnboundedSender<Intent>;

/// The journal thread: takes every line queued, writes them and syncs once,
/// then lets their workers send. On a journal error no queued row is sent
/// and the run stops with that error. Ends when every sender is gone.
pub(super) fn start_journal(
    journal: Arc<Mutex<Journal>>,
    stop: Stop,
) -> Result<(Intents, std::thread::JoinHandle<Result<(), JournalError>>), RunError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Intent>();
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            let mut group: Vec<Intent> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.blocking_recv() {
                group.push(first);
                while group.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(i) => group.push(i),
                        Err(_) => break,
                    }
                }
                let journaled = {
                    let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
                    group
                        .iter()
                        .try_for_each(|i| j.sending(i.row, i.hash))
                        .and_then(|_| j.commit())
                };
                let ok = journaled.is_ok();
                for i in group.drain(..) {
                    let _ = i.synced.send(ok);
                }
                if let Err(e) = journaled {
                    stop.set(Ended::Interrupted);
                    return Err(e);
                }
            }
            Ok(())
        })
        .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?;
    Ok((tx, thread))
}

/// A row's first try: waits for its rate slot, journals the row (synced)
/// just before the slot, and returns at the slot. `false` when the row must
/// not be sent (the journal failed, or is closed).
pub(super) async fn take_turn(ctx: &Ctx, row: u64, hash: u64) -> bool {
    let slot = ctx.pace.reserve().await;
    if let Some(slot) = slot {
        tokio::time::sleep_until(slot - JOURNAL_LEAD).await;
    }
    let (synced, on_disk) = oneshot::channel();
    let queued = {
        let intents = ctx.intents.lock().unwrap_or_else(|p| p.into_inner());
        intents
            .as_ref()
            .is_some_and(|tx| tx.send(Intent { row, hash, synced }).is_ok())
    };
    if !queued || on_disk.await != Ok(true) {
        return false;
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
    true
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
        tokio::spawn(worker(ctx.clone(), item, permit));
    }
    // Nothing more is dispatched: the reader sees its channel close, and
    // rows it had already handed over are counted as not sent.
    inbox.close()
}
