//! Copying the write-ahead log into the ledger file, on a thread of its own.
//!
//! SQLite copies the log (a checkpoint) in the commit that makes it long,
//! on the committing thread: a run's claims then wait for megabytes to be
//! copied and synced, after a fold most of all. Here the connection that
//! claims never copies; a second connection does, when the log has grown
//! past [`LONG_LOG`]. A checkpoint of this kind never holds up a writer: the
//! log keeps growing while it runs, and starts over once it is all copied.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The log is copied once it is this long (in bytes).
pub const LONG_LOG: u64 = 16 << 20;

/// A thread that copies the log of one ledger when nudged.
pub struct Checkpointer {
    wal: PathBuf,
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
        let mut wal = path.as_os_str().to_os_string();
        wal.push("-wal");
        Some(Checkpointer {
            wal: wal.into(),
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// After a commit: has the thread copy the log if it is long.
    pub fn after_commit(&self) {
        let long = std::fs::metadata(&self.wal).is_ok_and(|m| m.len() >= LONG_LOG);
        if let (true, Some(nudge)) = (long, &self.nudge) {
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
