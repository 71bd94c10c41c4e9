//! The `digidesk-upload` binary: parses the command line, sets up logging,
//! runs the command and turns its result into an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use digidesk_upload::cli::{Cli, Command, LogArgs};
use digidesk_upload::{assets, cmd, logging, Exit, Fatal};

/// Threads for the network side: one core is left to the reader (CSV,
/// mapping, validation) and the journal, up to four. On two cores that is
/// one thread, which also saves the cost of handing work between threads.
fn network_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.saturating_sub(1).clamp(1, 4)
}

fn main() -> ExitCode {
    // clap's own exit panics when it cannot print (a closed stderr).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    logging::init(&cli.log);
    let result = match cli.command {
        // No network: no async runtime.
        Command::Check(args) => cmd::check::run(args),
        command => run_async(command, cli.log),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(fatal) => {
            let _ = std::io::stdout().flush();
            digidesk_upload::output::eprint_line(&format!("error: {}", fatal.message));
            ExitCode::from(fatal.exit.code())
        }
    }
}

/// Runs a command on the async runtime.
fn run_async(command: Command, log: LogArgs) -> Result<Exit, Fatal> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(network_threads())
        .enable_all()
        .build()
        .map_err(|e| Fatal::usage(format!("cannot start the async runtime: {e}")))?;
    // The command runs as a task on the runtime's workers, not on this
    // thread: the wake-ups between its parts then stay among the workers.
    let job = runtime.spawn(async move {
        match command {
            Command::Send(args) => cmd::send::run(args, &log).await,
            Command::Check(args) => cmd::check::run(args),
            Command::Retry(args) => cmd::retry::run(args, &log).await,
            Command::Sandbox(args) => cmd::sandbox::run(args).await,
            Command::Demo(args) => cmd::demo::run(args, &log).await,
            Command::Ledger { command } => {
                tokio::task::block_in_place(|| cmd::ledger::run(command))
            }
            Command::Completions { shell } => {
                let script = assets::completion_script(shell);
                digidesk_upload::output::print(&String::from_utf8_lossy(&script));
                Ok(Exit::Success)
            }
        }
    });
    let result: Result<Exit, Fatal> = runtime
        .block_on(job)
        .unwrap_or_else(|e| Err(Fatal::stopped(format!("the command failed: {e}"))));
    // Don't wait for stray tasks (a request abandoned on a hard stop).
    runtime.shutdown_background();
    result
}
