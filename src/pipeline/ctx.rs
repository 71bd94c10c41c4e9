//! What the workers of a run share: the client and the rate, the circuit
//! breaker and whether the endpoint was ever reached, the journal, the
//! keeper's queue and the results file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::StopKind;
use crate::config::SendSettings;
use crate::journal::Journal;
use crate::pace::Pace;
use crate::results::{self, Counters};
use crate::transport::Client;

use super::keeper::{Note, Notes};
use super::pool::Pool;
use super::{Ended, Stop};

/// The circuit breaker opens after this many consecutive transient failures...
pub const BREAKER_FAILURES: u64 = 50;
/// ...spread over at least this long without a single success.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(30);

/// An endpoint that refused every connection (or could not be connected to
/// at all) for this long from the start of the run is taken to be wrong,
/// and the run stops (exit 3), leaving its rows for `--resume`. Once any
/// connection succeeded, refusals are a restart to ride out instead.
pub const NEVER_REACHED: Duration = Duration::from_secs(10);

/// Whether the endpoint was ever reached in this run.
pub(super) struct Reach {
    pub(super) reached: std::sync::atomic::AtomicBool,
    /// When a run that never reached the endpoint stops.
    deadline: tokio::time::Instant,
    endpoint: String,
}

impl Reach {
    fn new(endpoint: &url::Url) -> Reach {
        Reach {
            reached: std::sync::atomic::AtomicBool::new(false),
            deadline: tokio::time::Instant::now() + NEVER_REACHED,
            endpoint: endpoint.to_string(),
        }
    }

    pub(super) fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// How long a try that was never sent may wait before the next: never
    /// past the deadline while the endpoint has not been reached.
    pub(super) fn cap(&self, wait: Duration) -> Duration {
        if self.reached() {
            wait
        } else {
            wait.min(
                self.deadline
                    .saturating_duration_since(tokio::time::Instant::now()),
            )
        }
    }

    /// The stop for an endpoint never reached by its deadline, if it is past.
    pub(super) fn verdict(&self, last: &str) -> Option<Ended> {
        (!self.reached() && tokio::time::Instant::now() >= self.deadline).then(|| {
            Ended::Stopped(
                StopKind::Endpoint,
                format!(
                    "could not connect to {} for the first {}s of the run (last: {last}): check the endpoint's host and port (is it the right port? is the service up?)",
                    self.endpoint,
                    NEVER_REACHED.as_secs()
                ),
            )
        })
    }
}

/// Consecutive transient failures, for the circuit breaker: a service that
/// fails [`BREAKER_FAILURES`] tries in a row, with no success for
/// [`BREAKER_WINDOW`], is taken to be down, and the run stops (exit 3)
/// instead of turning every remaining row into `failed`.
pub(super) struct Breaker {
    failures: AtomicU64,
    last_success: Mutex<tokio::time::Instant>,
}

impl Breaker {
    pub(super) fn new() -> Breaker {
        Breaker {
            failures: AtomicU64::new(0),
            last_success: Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub(super) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// Records a failure; true when the breaker opens.
    pub(super) fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= BREAKER_FAILURES
            && self
                .last_success
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= BREAKER_WINDOW
    }
}

/// What workers share.
pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) pace: Arc<Pace>,
    /// No `--rate`: a row's first try needs no slot.
    pub(super) unlimited: bool,
    pub(super) pool: Arc<Pool>,
    pub(super) breaker: Breaker,
    pub(super) reach: Reach,
    pub(super) stop: Stop,
    pub(super) journal: Arc<Mutex<Journal>>,
    /// Where claims, "sending" lines and outcomes are queued for the
    /// keeper thread (`None` before it starts and once every row is done).
    pub(super) keeper: Mutex<Option<Notes>>,
    pub(super) writer: Arc<results::Shared>,
    pub(super) counters: Arc<Counters>,
    pub(super) max_attempts: u32,
    /// Rows dropped by a stop before they were created (left for `--resume`).
    pub(super) abandoned: AtomicU64,
    /// Rows in flight when a previous run died, recorded `unknown` by the reader.
    pub(super) resumed_unknown: AtomicU64,
    /// Workers that panicked (their rows are `unknown` or `failed`).
    pub(super) faults: AtomicU64,
}

impl Ctx {
    /// What the workers of a run share: its client and rate, its journal
    /// and results file.
    pub(super) fn new(
        client: Client,
        settings: &SendSettings,
        stop: &Stop,
        (journal, writer): (Journal, results::Writer),
        counters: &Arc<Counters>,
    ) -> Arc<Ctx> {
        Arc::new(Ctx {
            client,
            pace: Arc::new(Pace::new(settings.rate)),
            unlimited: settings.rate.is_none(),
            pool: Arc::new(Pool::new(settings.concurrency, settings.max_concurrency)),
            breaker: Breaker::new(),
            reach: Reach::new(&settings.endpoint),
            stop: stop.clone(),
            journal: Arc::new(Mutex::new(journal)),
            keeper: Mutex::new(None),
            writer: Arc::new(results::Shared::new(writer)),
            counters: counters.clone(),
            max_attempts: settings.max_attempts,
            abandoned: AtomicU64::new(0),
            resumed_unknown: AtomicU64::new(0),
            faults: AtomicU64::new(0),
        })
    }
}

impl Ctx {
    /// Queues a note for the keeper; false once it takes no more.
    pub(super) fn tell(&self, note: Note) -> bool {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        keeper.as_ref().is_some_and(|notes| notes.tell(note))
    }
}
