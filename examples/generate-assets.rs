//! Writes the man pages and the bash, zsh and fish completions that the
//! Debian package installs (see `[package.metadata.deb]` in Cargo.toml):
//!
//! ```text
//! cargo run --release --locked --example generate-assets -- target/release/assets
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: generate-assets DIR (writes DIR/man/*.1 and DIR/completions/*)");
        return ExitCode::from(2);
    };
    match digidesk_upload::assets::write(&dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.exit.code())
        }
    }
}
