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
        // The server errors leave rows `failed` or `unknown`: resend both.
        .args(["--only", "failed,unknown", "--endpoint", &up.endpoint()])
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

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// roff escapes a hyphen as `\-`.
fn unroff(page: &str) -> String {
    page.replace("\\-", "-").replace("\\\\", "\\")
}

#[test]
fn a_man_page_for_every_command_names_every_option() {
    use clap::CommandFactory;
    let w = Work::new();
    let written = digidesk_upload::assets::write(w.dir.path()).expect("assets written");
    let mut cli = digidesk_upload::cli::Cli::command();
    cli.build();
    let mut commands = vec![(String::from("digidesk-upload"), cli.clone())];
    for sub in cli.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            commands.push((format!("digidesk-upload-{}", sub.get_name()), sub.clone()));
        }
    }
    assert!(commands.len() >= 7);
    let mut options = 0;
    for (name, cmd) in &commands {
        let path = w.path("man").join(format!("{name}.1"));
        assert!(
            written.contains(&path),
            "{} among {written:?}",
            path.display()
        );
        let page = unroff(&std::fs::read_to_string(&path).unwrap());
        assert!(page.starts_with(".ie"), "{name}: roff");
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: its title");
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let shown = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().to_string().to_uppercase(),
            };
            assert!(
                page.contains(&shown),
                "man page {name}.1 mentions {shown}:\n{page}"
            );
            options += 1;
        }
        if let Some(after) = cmd.get_after_help() {
            let first = after.to_string();
            let example = first
                .lines()
                .find(|l| l.contains("digidesk-upload"))
                .unwrap();
            assert!(page.contains(example.trim()), "{name}.1 has the examples");
        }
    }
    assert!(options > 60, "checked {options} options");
    // The completions beside them are the ones `completions SHELL` prints.
    let bash = std::fs::read(w.path("completions").join("digidesk-upload")).unwrap();
    let printed = bin().args(["completions", "bash"]).output().unwrap().stdout;
    assert_eq!(bash, printed);
}

/// `[package.metadata.deb]` installs what `generate-assets` writes, where
/// each shell looks for it, without needing cargo-deb to check.
#[test]
fn the_debian_package_installs_the_binary_man_pages_completions_and_units() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("explicit assets")
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let installs = |src: &str, dest: &str| {
        assert!(
            assets.iter().any(|(s, d)| s == src && d == dest),
            "installs {src} as {dest}: {assets:?}"
        );
    };
    installs("target/release/digidesk-upload", "usr/bin/");
    installs("target/release/assets/man/*.1", "usr/share/man/man1/");
    let w = Work::new();
    let written = digidesk_upload::assets::write(w.dir.path()).unwrap();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let installed = digidesk_upload::assets::completion_file(shell).unwrap();
        let (dir, file) = installed.rsplit_once('/').unwrap();
        let src = format!("target/release/assets/completions/{file}");
        assert!(
            written.contains(&w.path("completions").join(file)),
            "{src} is generated"
        );
        installs(&src, &format!("usr/{dir}/"));
    }
    for (src, _) in &assets {
        if !src.starts_with("target/release/") {
            let found = std::fs::read_dir(root().join(Path::new(src).parent().unwrap()))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(found > 0, "{src} exists");
        }
    }
    // The units and the user they run as, installed and left disabled.
    let units = deb["maintainer-scripts"].as_str().unwrap();
    assert_eq!(units.trim_end_matches('/'), "contrib/systemd");
    for f in ["service", "timer", "sysusers"] {
        assert!(root()
            .join(units)
            .join(format!("digidesk-upload.{f}"))
            .exists());
    }
    let systemd = &deb["systemd-units"];
    assert_eq!(
        systemd["enable"].as_bool(),
        Some(false),
        "nothing is enabled"
    );
    assert_eq!(
        systemd["start"].as_bool(),
        Some(false),
        "nothing is started"
    );
}

/// A unit file's `Key=value` lines, section by section.
fn unit_keys(path: &Path) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not Key=value: {line}", path.display()));
        keys.push((section.clone(), key.to_owned(), value.to_owned()));
    }
    keys
}

#[test]
fn the_systemd_units_run_the_nightly_send_hardened() {
    use clap::Parser;
    let dir = root().join("contrib/systemd");
    let service = dir.join("digidesk-upload.service");
    let timer = dir.join("digidesk-upload.timer");
    let keys = unit_keys(&service);
    let get = |key: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    for (key, want) in [
        ("Type", "oneshot"),
        ("SuccessExitStatus", "1"),
        ("EnvironmentFile", "/etc/digidesk/env"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("NoNewPrivileges", "true"),
        ("StateDirectory", "digidesk-upload"),
        ("LogsDirectory", "digidesk-upload"),
        ("ReadWritePaths", "/data/exports"),
        (
            "Environment",
            "DIGIDESK_LEDGER=/var/lib/digidesk-upload/ledger.sqlite3",
        ),
    ] {
        assert_eq!(get(key), [want], "[Service] {key}=");
    }
    // ExecStart runs a command line the program accepts, writing only where
    // the sandboxing lets it: the results beside the export, the summary in
    // the logs directory.
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    let script = exec[0]
        .strip_prefix("/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("ExecStart=/bin/sh -c '...'")
        .replace("$$", "$")
        .replace("%%", "%");
    let words = shell_words::split(&script).unwrap();
    assert_eq!(words[..3], ["exec", "/usr/bin/digidesk-upload", "send"]);
    let cli = digidesk_upload::cli::Cli::try_parse_from(&words[1..])
        .unwrap_or_else(|e| panic!("ExecStart: {script}: {e}"));
    let digidesk_upload::cli::Command::Send(args) = cli.command else {
        panic!("ExecStart runs send");
    };
    assert!(args
        .input
        .input
        .starts_with("/data/exports/calls-$(date -d yesterday +%F)"));
    assert!(args.send.results.is_none(), "results beside the export");
    assert!(args
        .send
        .summary_json
        .as_deref()
        .is_some_and(|p| p.starts_with("/var/log/digidesk-upload/")));
    assert!(args.input.mapping.starts_with("/etc/digidesk/"));

    let keys = unit_keys(&timer);
    assert!(keys.contains(&("Timer".into(), "OnCalendar".into(), "*-*-* 02:30".into())));
    assert!(keys.contains(&("Timer".into(), "Persistent".into(), "true".into())));
    assert!(keys.contains(&("Install".into(), "WantedBy".into(), "timers.target".into())));

    // Where systemd is installed, it must read both files without a word.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&service)
            .arg(&timer)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            text(&out)
        );
    }
}

/// The README's ```sh blocks, continuation lines joined.
fn readme_sh_lines(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

#[test]
fn the_readme_installs_with_locked_versions_and_never_suggests_force() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme_sh_lines(&readme);
    let installs: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("cargo install"))
        .collect();
    assert!(
        installs.iter().any(|l| l.contains("--path .")),
        "installing from the clone: {installs:?}"
    );
    for l in &installs {
        assert!(l.contains("--locked"), "`{l}` builds what the tests ran");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("cargo deb")),
        "building the package"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sudo apt install ./target/debian/")),
        "installing the package"
    );
    // A command run twice must not send twice: --force resends every row.
    for l in lines.iter().filter(|l| l.starts_with("digidesk-upload ")) {
        assert!(!l.contains("--force"), "the README suggests `{l}`");
    }
    let backfill: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("--results backfill.csv"))
        .collect();
    assert_eq!(backfill.len(), 2, "{backfill:?}");
    assert!(!backfill[0].contains("--resume") && backfill[1].ends_with("--resume"));
}

#[test]
fn the_readme_lists_the_fields_the_ready_mappings_and_the_units() {
    use digidesk_upload::spec;
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for field in spec::STRING_FIELDS.iter().chain([&spec::MISC_DATA]) {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("the README has a row for {field}"));
        let want = if spec::REQUIRED_FIELDS.contains(field) {
            "| required |"
        } else {
            "| optional |"
        };
        assert!(row.contains(want), "{field}: {want}: {row}");
    }
    assert!(readme.contains(&format!("at most {}", spec::MAX_CHARS)));
    assert!(readme.contains(&format!("up to {} extra", spec::MAX_MISC_ENTRIES)));
    for entry in std::fs::read_dir(root().join("mappings")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("`mappings/{name}`")),
            "the README mentions mappings/{name}"
        );
    }
    for unit in ["service", "timer"] {
        let path = format!("contrib/systemd/digidesk-upload.{unit}");
        assert!(root().join(&path).exists());
        assert!(readme.contains(&format!("]({path})")), "links {path}");
    }
}
