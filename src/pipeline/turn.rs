//! A row's first try: its key's claim, its rate slot, its journal line.

use std::time::Duration;

use tokio::sync::oneshot;

use super::ctx::Ctx;
use super::keeper::{Claimed, Note};

/// A worker journals its row this long before its rate slot: enough for a
/// sync, so that the request still leaves on its slot.
const JOURNAL_LEAD: Duration = Duration::from_millis(20);

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
    // At `--rate 0` a slot comes only from a pause after a 429, or a rate
    // the server imposed since.
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
