//! Progress while a run goes: a bar on stderr when it is a terminal (moving
//! by bytes read, so no pre-count is needed), otherwise a log line every few
//! seconds, so that a cron log shows how far a long backfill has got.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::results::{Counters, Status};
use crate::summary::thousands;

/// How often the log line comes when there is no bar, by default.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// What feeds the progress display.
pub struct Sources {
    pub counters: Arc<Counters>,
    pub bytes_read: Arc<AtomicU64>,
    /// Records read: the reader runs ahead of the rows decided, so the bar
    /// shows the bytes read scaled by the share of read rows decided.
    pub rows_read: Arc<AtomicU64>,
    pub total_bytes: Option<u64>,
}

/// Stops the display when dropped.
pub struct Guard {
    task: tokio::task::JoinHandle<()>,
    bar: Option<indicatif::ProgressBar>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            crate::logging::set_bar(None);
        }
    }
}

/// Starts the display: a bar if stderr is a terminal and not `quiet`, log lines otherwise.
pub fn start(src: Sources, quiet: bool, log_every: Duration) -> Guard {
    let started = Instant::now();
    let use_bar = !quiet && std::io::stderr().is_terminal();
    let bar = use_bar.then(|| {
        let bar = match src.total_bytes {
            Some(total) => indicatif::ProgressBar::new(total),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if src.total_bytes.is_some() {
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta} | {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        crate::logging::set_bar(Some(bar.clone()));
        bar
    });
    let task_bar = bar.clone();
    let task = tokio::spawn(async move {
        let every = if task_bar.is_some() {
            Duration::from_millis(200)
        } else {
            log_every
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let line = status_line(&src.counters, started.elapsed());
            match &task_bar {
                Some(bar) => {
                    bar.set_position(position(&src));
                    bar.set_message(line);
                }
                None => {
                    let percent = src
                        .total_bytes
                        .filter(|t| *t > 0)
                        .map(|t| (position(&src) as f64 * 100.0 / t as f64).min(100.0));
                    match percent {
                        Some(p) => tracing::info!("progress: {line}, {p:.0}% of the input"),
                        None => tracing::info!("progress: {line}"),
                    }
                }
            }
        }
    });
    Guard { task, bar }
}

/// How far through the input the decided rows are, in bytes.
fn position(src: &Sources) -> u64 {
    let bytes = src.bytes_read.load(Ordering::Relaxed) as f64;
    let read = src.rows_read.load(Ordering::Relaxed).max(1) as f64;
    let decided = (src.counters.total() as f64).min(read);
    (bytes * decided / read) as u64
}

/// "1,234 rows, 57.3/s: created 1,200, failed 2, invalid 30, skipped 2, unknown 0".
pub fn status_line(c: &Counters, elapsed: Duration) -> String {
    let done = c.total();
    let rate = c.requests.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "{} rows, {rate:.1} req/s: created {}, rejected {}, failed {}, invalid {}, skipped {}, unknown {}",
        thousands(done),
        thousands(c.get(Status::Created)),
        thousands(c.get(Status::Rejected)),
        thousands(c.get(Status::Failed)),
        thousands(c.get(Status::Invalid)),
        thousands(c.get(Status::Skipped)),
        thousands(c.get(Status::Unknown)),
    )
}
