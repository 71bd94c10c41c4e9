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

#[allow(dead_code)]
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
