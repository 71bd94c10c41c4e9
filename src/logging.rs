//! Logging: `tracing` to stderr, as text for people or JSON for collectors,
//! at a level set by `-v`/`-q` or `RUST_LOG`. Log lines go around the
//! progress bar (suspending it) so that neither tears the other.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};

/// The progress bar on screen, if any; log lines suspend it while they print.
static BAR: OnceLock<Mutex<Option<indicatif::ProgressBar>>> = OnceLock::new();

fn bar_slot() -> &'static Mutex<Option<indicatif::ProgressBar>> {
    BAR.get_or_init(|| Mutex::new(None))
}

/// Registers the bar that log lines must print around (None to clear).
pub fn set_bar(bar: Option<indicatif::ProgressBar>) {
    *bar_slot().lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// Sets up the global subscriber. Call once, from `main`.
pub fn init(args: &LogArgs) {
    let default = match (args.quiet, args.verbose) {
        (q, _) if q > 0 => "warn",
        (_, 0) => "info",
        (_, 1) => "info,digidesk_upload=debug",
        _ => "debug,digidesk_upload=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_target(false);
    let result = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    // A second init (tests calling `run` twice) keeps the first subscriber.
    let _ = result;
}

/// Writes each log line to stderr, around the progress bar.
#[derive(Clone, Copy)]
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::with_capacity(256))
    }
}

/// Buffers one event and prints it whole when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let bar = bar_slot().lock().unwrap_or_else(|p| p.into_inner()).clone();
        let write = || {
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
