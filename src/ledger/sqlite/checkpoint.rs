//! Copying the write-ahead log into the ledger file, on a thread of its own.
//!
//! SQLite copies the log (a checkpoint) in the commit that makes it long,
//! on the committing thread: a run's claims then wait for megabytes to be
//! copied and synced, after a fold most of all. Here the connection that
//! claims never copies; a second connection does, every [`COMMITS`]
//! commits and after each fold. A checkpoint of this kind never holds up a
//! writer: the log keeps growing while it runs, and starts over once it is
//! all copied.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The log is copied after this many commits (a claim's commit adds three
/// or four pages to it: about 4 MiB).
pub const COMMITS: u32 = 256;

/// A thread that copies the log of one ledger when nudged.
pub struct Checkpointer {
    /// Commits since the last nudge.
    commits: u32,
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the ledger at `path`;
    /// `None` if either cannot be had (SQLite then copies as it commits).
    pub fn start(path: &Path, busy: Duration) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(busy).ok()?;
        let (nudge, nudged) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ledger-log".into())
            .spawn(move || copy_when_nudged(&conn, &nudged))
            .ok()?;
        Some(Checkpointer {
            commits: 0,
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// After a commit (`large`: a fold's): has the thread copy the log
    /// when enough was added to it.
    pub fn after_commit(&mut self, large: bool) {
        self.commits += 1;
        if !large && self.commits < COMMITS {
            return;
        }
        self.commits = 0;
        if let Some(nudge) = &self.nudge {
            // Full: a nudge is already waiting, which is enough.
            if let Err(TrySendError::Disconnected(())) = nudge.try_send(()) {
                tracing::debug!("the ledger's log copier has stopped");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn copy_when_nudged(conn: &Connection, nudged: &Receiver<()>) {
    while nudged.recv().is_ok() {
        // A failure leaves the log longer: the next nudge tries again, and
        // SQLite copies it when the last connection closes.
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::debug!("copying the ledger's log: {e}");
        }
    }
}
