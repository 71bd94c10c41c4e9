//! What is generated from the command line's definition for people who
//! install the tool: shell completions and man pages.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Fatal;

/// The program's name, as completions and man pages know it.
pub const BIN: &str = "digidesk-upload";

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    if shell == Shell::Bash {
        script = fix_bash_states(&script, BIN);
    }
    script
}

/// clap_complete's bash script names its states in two ways for a program
/// whose name has a hyphen: the loop that reads the words builds
/// `digidesk__upload__subcmd__send`, the `case` that lists the options
/// matches `digidesk__subcmd__upload__subcmd__send`, so no option of any
/// command ever completes (clap-rs/clap#6421). Spell the arms as the loop
/// does; once clap_complete is fixed this changes nothing.
fn fix_bash_states(script: &[u8], bin: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    let wrong = bin.replace('-', "__subcmd__");
    let right = bin.replace('-', "__");
    if wrong == right {
        return script.to_vec();
    }
    text.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"))
        .into_bytes()
}

/// Where a package puts each shell's script, relative to `/usr`, and the
/// script's file name there.
pub fn completion_file(shell: Shell) -> Option<&'static str> {
    match shell {
        Shell::Bash => Some("share/bash-completion/completions/digidesk-upload"),
        Shell::Zsh => Some("share/zsh/vendor-completions/_digidesk-upload"),
        Shell::Fish => Some("share/fish/vendor_completions.d/digidesk-upload.fish"),
        _ => None,
    }
}

/// Writes the man pages (one per command: `digidesk-upload.1`,
/// `digidesk-upload-send.1`, ...) to `dir/man/` and the completions of
/// bash, zsh and fish to `dir/completions/`; returns the files written.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, Fatal> {
    let cant = |what: &Path, e: std::io::Error| {
        Fatal::usage(format!("cannot write {}: {e}", what.display()))
    };
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| cant(d, e))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).map_err(|e| cant(&man, e))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(&man)
        .map_err(|e| cant(&man, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    written.sort();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let name = completion_file(shell)
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or(BIN);
        let path = completions.join(name);
        std::fs::write(&path, completion_script(shell)).map_err(|e| cant(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
