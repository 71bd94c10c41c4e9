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
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_man_pages(&cmd, &man, &mut written).map_err(|(path, e)| cant(&path, e))?;
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

/// One page for `cmd` (named by its display name: `digidesk-upload-send.1`),
/// then one for each of its visible subcommands.
fn write_man_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, man_page(cmd)).map_err(|e| (path.clone(), e))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir, written)?;
    }
    Ok(())
}

/// clap_mangen's page, with the text after the options (the examples) in
/// an EXAMPLES section whose lines are kept as they are, for copying.
fn man_page(cmd: &clap::Command) -> Vec<u8> {
    let after = cmd.get_after_help().map(|s| s.to_string());
    let page = cmd
        .clone()
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    let mut out = Vec::new();
    // Rendering into memory cannot fail.
    let _ = clap_mangen::Man::new(page).render(&mut out);
    let Some(after) = after else { return out };
    let mut lines = after.lines().peekable();
    let examples = lines
        .peek()
        .is_some_and(|l| matches!(l.trim(), "Example:" | "Examples:"));
    let mut section = roff::Roff::new();
    if examples {
        lines.next();
        section.control("SH", ["EXAMPLES"]).control("nf", []);
        for line in lines {
            section.text([roff::roman(line.strip_prefix("  ").unwrap_or(line))]);
        }
        section.control("fi", []);
    } else {
        section.control("SH", ["NOTES"]);
        for line in lines {
            section.text([roff::roman(line)]);
        }
    }
    // Without the preamble clap_mangen's page already has.
    let text = section.render();
    out.extend_from_slice(&text.as_bytes()[text.find(".SH").unwrap_or(0)..]);
    out
}
