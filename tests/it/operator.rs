//! What the people who install and run the tool meet around the main job:
//! shell completions, `--help`, man pages and the systemd units.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The words bash offers for the command line `words` (the last word is the
/// one being completed), using the script `completions bash` prints, loaded
/// as bash-completion would load it, and the function it registers for
/// `digidesk-upload`.
fn bash_completes(w: &Work, words: &[&str]) -> Vec<String> {
    let script = w.path("digidesk-upload.bash");
    if !script.exists() {
        let out = bin().args(["completions", "bash"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        std::fs::write(&script, &out.stdout).unwrap();
    }
    let line = words.join(" ");
    let program = r#"
        source "$1" || exit 90
        shift
        spec=$(complete -p digidesk-upload) || exit 91
        fn=${spec#*-F }
        fn=${fn%% *}
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        prev=""
        if (( COMP_CWORD > 0 )); then prev=${COMP_WORDS[COMP_CWORD-1]}; fi
        "$fn" digidesk-upload "${COMP_WORDS[COMP_CWORD]}" "$prev" || exit 92
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", program, "bash"])
        .arg(&script)
        .args(words)
        .output()
        .expect("bash runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "completing {line:?} in bash: {}",
        text(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_the_options_of_each_command() {
    let w = Work::new();
    let offered = bash_completes(&w, &["digidesk-upload", "send", "--r"]);
    for want in ["--rate", "--resume", "--results"] {
        assert!(
            offered.iter().any(|o| o == want),
            "send --r<TAB> offers {want}: {offered:?}"
        );
    }
    assert!(
        offered.iter().all(|o| o.starts_with("--r")),
        "only options starting --r: {offered:?}"
    );

    let offered = bash_completes(&w, &["digidesk-upload", "retry", "x.csv", "--o"]);
    assert_eq!(offered, ["--only"], "retry --o<TAB>");

    let offered = bash_completes(&w, &["digidesk-upload", "check", "--enc"]);
    assert_eq!(offered, ["--encoding"], "check --enc<TAB>");

    let offered = bash_completes(&w, &["digidesk-upload", "sandbox", "--allow-"]);
    assert_eq!(offered, ["--allow-param"], "sandbox --allow-<TAB>");

    let mut offered = bash_completes(&w, &["digidesk-upload", "completions", ""]);
    offered.sort();
    for want in ["bash", "fish", "zsh"] {
        assert!(
            offered.iter().any(|o| o == want),
            "completions <TAB>: {offered:?}"
        );
    }

    let offered = bash_completes(&w, &["digidesk-upload", "send", "--log-format", ""]);
    assert!(
        offered.iter().any(|o| o == "json") && offered.iter().any(|o| o == "text"),
        "--log-format <TAB>: {offered:?}"
    );

    let mut offered = bash_completes(&w, &["digidesk-upload", "s"]);
    offered.sort();
    assert_eq!(offered, ["sandbox", "send"], "s<TAB>");
}

#[test]
fn the_bash_script_loads_in_posix_mode_and_zsh_and_fish_scripts_are_printed() {
    let w = Work::new();
    bash_completes(&w, &["digidesk-upload", ""]);
    // Where /bin/sh is bash, scripts are read in POSIX mode, which refuses
    // function names with a hyphen.
    let out = Command::new("bash")
        .args(["--posix", "--norc", "--noprofile", "-c"])
        .arg(r#"source "$1" && complete -p digidesk-upload"#)
        .arg("bash")
        .arg(w.path("digidesk-upload.bash"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let zsh = bin().args(["completions", "zsh"]).output().unwrap();
    assert_eq!(zsh.status.code(), Some(0));
    let zsh = String::from_utf8(zsh.stdout).unwrap();
    assert!(zsh.starts_with("#compdef digidesk-upload"), "{zsh}");
    assert!(zsh.contains("--resume"), "{zsh}");

    let fish = bin().args(["completions", "fish"]).output().unwrap();
    assert_eq!(fish.status.code(), Some(0));
    let fish = String::from_utf8(fish.stdout).unwrap();
    assert!(fish.contains("complete -c digidesk-upload"), "{fish}");
    assert!(fish.contains("-l resume"), "{fish}");
}

/// The visible commands: `[]` for the program itself, then `[send]`, ...
fn command_paths() -> Vec<Vec<String>> {
    use clap::CommandFactory;
    let cli = digidesk_upload::cli::Cli::command();
    let mut paths = vec![vec![]];
    for sub in cli.get_subcommands() {
        if !sub.is_hide_set() {
            paths.push(vec![sub.get_name().to_owned()]);
        }
    }
    assert!(paths.len() >= 7, "{paths:?}");
    paths
}

fn help(path: &[String], columns: usize) -> String {
    let out = bin()
        .args(path)
        .arg("--help")
        .env("COLUMNS", columns.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of a help text's `Example:` or `Examples:` section.
fn example_lines(help: &str) -> Vec<&str> {
    help.lines()
        .skip_while(|l| !matches!(l.trim(), "Example:" | "Examples:"))
        .skip(1)
        .collect()
}

#[test]
fn every_help_example_is_a_whole_command_that_parses() {
    use clap::Parser;
    let mut seen = 0;
    for path in command_paths() {
        for columns in [80, 100] {
            let help = help(&path, columns);
            let lines = example_lines(&help);
            if path.is_empty() {
                continue; // the program's own help names `demo`, with no Examples section
            }
            assert!(!lines.is_empty(), "{path:?} --help has examples:\n{help}");
            // Join the lines that end in `\`; each result is one command.
            let mut commands = Vec::new();
            let mut pending = String::new();
            for line in lines {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    assert!(pending.is_empty(), "{path:?}: a `\\` before {t:?}:\n{help}");
                    continue;
                }
                match t.strip_suffix('\\') {
                    Some(head) => {
                        pending.push_str(head);
                        pending.push(' ');
                    }
                    None => {
                        pending.push_str(t);
                        commands.push(std::mem::take(&mut pending));
                    }
                }
            }
            assert!(pending.is_empty(), "{path:?}: ends in `\\`:\n{help}");
            for command in commands {
                let mut words =
                    shell_words::split(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
                if let Some(i) = words.iter().position(|w| w == "#" || w == ">") {
                    words.truncate(i);
                }
                for part in words.split(|w| w == "|") {
                    let program = part.first().map(String::as_str);
                    assert!(
                        matches!(program, Some("digidesk-upload" | "export" | "gunzip")),
                        "at {columns} columns, {path:?} --help has an example line that is \
                         not a command (wrapped mid-command?): {command:?}\n{help}"
                    );
                    if program == Some("digidesk-upload") {
                        if let Err(e) = digidesk_upload::cli::Cli::try_parse_from(part) {
                            panic!("{path:?} --help example {command:?} does not parse: {e}");
                        }
                        seen += 1;
                    }
                }
            }
        }
    }
    assert!(seen >= 2 * 12, "checked {seen} examples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_help_names_the_results_file_retry_writes() {
    let w = Work::new();
    let input = w.write("calls.csv", export(3));
    let mapping = w.write("map.toml", MAPPING);
    let down = sandbox(SandboxConfig {
        error_rate: 1.0,
        ..SandboxConfig::default()
    })
    .await;
    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &down.endpoint(), "--max-attempts", "1"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let up = sandbox(SandboxConfig::default()).await;
    let out = run(bin()
        .arg("retry")
        .arg("calls.results.csv")
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &up.endpoint()])
        .current_dir(w.dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut written: Vec<String> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") && n != "calls.csv" && n != "calls.results.csv")
        .collect();
    assert_eq!(
        written.len(),
        1,
        "retry wrote one results file: {written:?}"
    );
    let written = written.remove(0);
    assert_eq!(up.accepted().len(), 3);

    let help = help(&["retry".to_owned()], 100);
    let results = help
        .split("\n\n")
        .find(|p| p.trim_start().starts_with("--results"))
        .unwrap_or_else(|| panic!("retry --help explains --results:\n{help}"));
    let results = results.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        results.contains(&format!("calls.results.csv gives {written}")),
        "retry --help says that `retry calls.results.csv` writes {written}:\n{results}"
    );
    assert!(
        !results.contains("INPUT with `.results.csv`"),
        "retry --help states send's default:\n{results}"
    );
    down.shutdown().await;
    up.shutdown().await;
}

#[allow(dead_code)]
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
