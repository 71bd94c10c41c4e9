use std::process::ExitCode;

use clap::Parser;
use digidesk_upload::cli::{Cli, Command};
use digidesk_upload::{cmd, Exit, Fatal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    let result: Result<Exit, Fatal> = runtime.block_on(async move {
        match cli.command {
            Command::Sandbox(args) => cmd::sandbox::run(args).await,
            Command::Check(args) => cmd::check::run(args),
            _ => Err(Fatal::usage("not yet available")),
        }
    });
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(fatal) => {
            eprintln!("error: {}", fatal.message);
            ExitCode::from(fatal.exit.code())
        }
    }
}
