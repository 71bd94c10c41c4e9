//! The user guide cannot rot: every `digidesk-upload` command in README.md's
//! `sh` blocks is run, in order, against the sandbox (sandbox commands are
//! started and stopped; their fixed port is replaced by a free one).

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::common::*;

/// The `digidesk-upload` commands of the README's ```sh blocks, with
/// continuation lines joined and comments dropped.
fn commands(readme: &str) -> Vec<Vec<String>> {
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
        let code = match t.find(" #") {
            Some(i) if !t[..i].contains('\'') => &t[..i],
            _ => t,
        };
        if let Some(rest) = code.strip_suffix('\\') {
            pending.push_str(rest);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let full = std::mem::take(&mut pending);
        if full.trim_start().starts_with("digidesk-upload ") {
            out.push(
                shell_words::split(full.trim()).expect("README command parses as shell words"),
            );
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cmds = commands(&readme);
    assert!(cmds.len() >= 8, "found the README's commands: {cmds:?}");
    // The server is the sandbox the Quick start starts, with its options:
    // the Quick start must run as written against it.
    let first_sandbox = cmds
        .iter()
        .find(|c| c.get(1).map(String::as_str) == Some("sandbox"))
        .expect("the README starts a sandbox");
    let allowed_params: Vec<String> = first_sandbox
        .windows(2)
        .filter(|w| w[0] == "--allow-param")
        .map(|w| w[1].clone())
        .collect();
    let s = Scenario::new()
        .sandbox(SandboxConfig {
            allowed_params,
            ..SandboxConfig::default()
        })
        .await;
    copy_dir(&root.join("fixtures"), &s.path("fixtures"));
    copy_dir(&root.join("mappings"), &s.path("mappings"));
    for mut args in cmds {
        args.remove(0);
        for a in args.iter_mut() {
            if a == "127.0.0.1:8080" {
                *a = "127.0.0.1:0".into();
            }
            if a.starts_with("http://127.0.0.1:8080/") {
                *a = s.server().endpoint();
            }
        }
        let shown = args.join(" ");
        let mut cmd = s.bin();
        cmd.env("DIGIDESK_ENDPOINT", s.server().endpoint())
            .args(&args);
        if args[0] == "sandbox" && !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        if args[0] == "sandbox" {
            // Starts, prints its endpoint, stops cleanly on SIGTERM.
            let mut child = cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let first = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
                .await
                .unwrap()
                .expect("a line")
                .unwrap();
            assert!(first.starts_with("endpoint: http"), "{shown}: {first}");
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let status = tokio::task::block_in_place(|| child.wait().unwrap());
            assert_eq!(status.code(), Some(0), "{shown}");
            continue;
        }
        let run = s.run(&mut cmd);
        assert!(
            matches!(run.code(), Some(0) | Some(1)),
            "README command failed: {shown}\n{}",
            run.text()
        );
        // Nothing the README shows is refused by the sandbox it starts.
        let out = run.stdout();
        let rejected = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("rejected"))
            .map(|n| n.trim().to_string());
        assert!(
            rejected.is_none() || rejected.as_deref() == Some("0"),
            "{shown}: rows rejected\n{}",
            run.text()
        );
        assert!(!out.contains("The canary failed"), "{shown}\n{out}");
    }
    assert!(
        !s.accepted().is_empty(),
        "the README's sends reached the sandbox"
    );
    s.shutdown().await;
}
