//! Dispatch and group commit: takes a concurrency permit and a row, gathers
//! rows into groups, and has the journal thread write and sync each group's
//! "sending" lines with one sync before it starts the group's workers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::journal::{Journal, JournalError};

use super::pool::Pool;
use super::worker::{worker, Ctx};
use super::{Ended, RunError, SendItem, Stop, HANDOFF_BATCH};

/// Rows journaled with one sync, at most.
const MAX_BATCH: usize = 512;

/// Group commit: the dispatcher waits up to `GROUP_WAIT` to journal at least
/// a `1/GROUP_FRACTION` share of the pool with one sync, as long as the
/// rest of the pool is in flight.
const GROUP_FRACTION: usize = 2;
const GROUP_WAIT: Duration = Duration::from_millis(2);

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

    /// The next row if one is already here.
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

/// A group of rows, each with its concurrency permit.
type Group = Vec<(SendItem, OwnedSemaphorePermit)>;

/// The dispatcher and the journal thread it hands groups to.
pub(super) struct Dispatcher {
    inbox: Inbox,
    journal_tx: mpsc::Sender<Group>,
    journal_thread: std::thread::JoinHandle<Result<(), JournalError>>,
}

impl Dispatcher {
    /// Starts the journal thread.
    pub(super) fn start(inbox: Inbox, ctx: &Arc<Ctx>) -> Result<Dispatcher, RunError> {
        // One group is synced while the next gathers.
        let (journal_tx, journal_rx) = mpsc::channel::<Group>(1);
        let ctx = ctx.clone();
        let runtime = tokio::runtime::Handle::current();
        let journal_thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || journal_groups(journal_rx, &ctx.journal, &ctx, &ctx.stop, &runtime))
            .map_err(|e| RunError::Thread(format!("cannot start the journal writer: {e}")))?;
        Ok(Dispatcher {
            inbox,
            journal_tx,
            journal_thread,
        })
    }

    /// Dispatches until the input ends or the run stops: takes a permit,
    /// then a row; gathers a group; hands it to the journal thread. Returns
    /// how many rows the reader handed over that were never dispatched, and
    /// the journal's error if it failed.
    pub(super) async fn run(
        self,
        ctx: &Ctx,
        semaphore: &Arc<Semaphore>,
        pool: &Pool,
    ) -> (u64, Option<RunError>) {
        let Dispatcher {
            inbox: mut send_rx,
            journal_tx,
            journal_thread,
        } = self;
        let stop = &ctx.stop;
        let mut batch: Group = Vec::with_capacity(MAX_BATCH);
        let mut dispatch_error: Option<RunError> = None;
        'dispatch: loop {
            let permit = tokio::select! {
                p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stop.soft.cancelled() => break,
            };
            let item = tokio::select! {
                i = send_rx.recv() => match i { Some(i) => i, None => break },
                _ = stop.soft.cancelled() => break,
            };
            batch.push((item, permit));
            while batch.len() < MAX_BATCH {
                let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                    break;
                };
                match send_rx.try_recv() {
                    Some(item) => batch.push((item, permit)),
                    None => break,
                }
            }
            // Group commit: while enough rows are still in flight to keep the
            // server busy, gather a few more before paying for a sync.
            let group = (pool.size() / GROUP_FRACTION).clamp(1, MAX_BATCH);
            if batch.len() < group && semaphore.available_permits() + batch.len() < pool.size() {
                // One timer for the whole wait: each new timer wakes the driver.
                let deadline = tokio::time::sleep(GROUP_WAIT);
                tokio::pin!(deadline);
                while batch.len() < group {
                    let permit = tokio::select! {
                        p = semaphore.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                        _ = &mut deadline => break,
                        _ = stop.soft.cancelled() => break,
                    };
                    let item = tokio::select! {
                        i = send_rx.recv() => match i { Some(i) => i, None => break },
                        _ = &mut deadline => break,
                        _ = stop.soft.cancelled() => break,
                    };
                    batch.push((item, permit));
                }
            }
            // The journal thread syncs this group (while the next one gathers
            // here) and then starts its workers.
            let group = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            if journal_tx.send(group).await.is_err() {
                break 'dispatch;
            }
        }
        drop(journal_tx);
        let journaled = tokio::task::spawn_blocking(move || journal_thread.join())
            .await
            .map_err(|_| RunError::Thread("the journal thread failed".into()))
            .and_then(|j| match j {
                Ok(journaled) => journaled.map_err(RunError::Journal),
                Err(_) => Err(RunError::Thread("the journal thread failed".into())),
            });
        if let Err(e) = journaled {
            dispatch_error = Some(e);
        }
        // Nothing more is dispatched: the reader sees its channel close, and
        // rows it had already handed over are counted as not sent.
        let undispatched = send_rx.close();
        drop(send_rx);
        (undispatched, dispatch_error)
    }
}

/// The journal thread: writes and syncs each group's "sending" lines, then
/// starts the group's workers. A row's request never leaves before its line
/// is on disk. On a journal error the group is dropped unsent and the run
/// stops with that error.
fn journal_groups(
    mut groups: mpsc::Receiver<Group>,
    journal: &Mutex<Journal>,
    ctx: &Arc<Ctx>,
    stop: &Stop,
    runtime: &tokio::runtime::Handle,
) -> Result<(), JournalError> {
    while let Some(group) = groups.blocking_recv() {
        let journaled = {
            let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
            group
                .iter()
                .try_for_each(|(item, _)| j.sending(item.row))
                .and_then(|_| j.commit())
        };
        if let Err(e) = journaled {
            stop.set(Ended::Interrupted);
            return Err(e);
        }
        // One wake-up of the runtime per group: its workers are spawned
        // from inside it.
        let ctx = ctx.clone();
        runtime.spawn(async move {
            for (item, permit) in group {
                tokio::spawn(worker(ctx.clone(), item, permit));
            }
        });
    }
    Ok(())
}
