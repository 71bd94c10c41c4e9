//! Stop handling: a run is stopped from outside (Ctrl-C, SIGTERM) or from
//! inside (a 401, a TLS failure, the service down, a results file that
//! fails); the first reason given is the one the run reports.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Ended;

/// Stops a run from outside (signals) or inside (a 401): a soft stop ends
/// reading and new requests; a hard stop abandons requests still waiting
/// for their answer.
#[derive(Clone, Default)]
pub struct Stop {
    pub(super) soft: CancellationToken,
    pub(super) hard: CancellationToken,
    reason: Arc<Mutex<Option<Ended>>>,
}

impl Stop {
    /// Ctrl-C / SIGTERM: finish in-flight requests, send nothing new.
    pub fn interrupt(&self) {
        self.set(Ended::Interrupted);
    }

    /// In-flight requests stop waiting for answers (they become `unknown`).
    pub fn hard(&self) {
        self.soft.cancel();
        self.hard.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.soft.is_cancelled()
    }

    pub(super) fn set(&self, end: Ended) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if reason.is_none() {
            *reason = Some(end);
        }
        self.soft.cancel();
    }

    pub(super) fn reason(&self) -> Option<Ended> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
