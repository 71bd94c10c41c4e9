//! What a run prints for people and log collectors: progress lines off a
//! terminal, JSON logs, the summary, and never customer data or credentials.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_terminal_progress_is_a_log_line_and_logs_hold_no_customer_data() {
    let n = 60;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 10,
            ..SandboxConfig::default()
        })
        .await;
    // bin() gives it the password demo, so base64 of demo:demo is searched for.
    let run = s
        .send(&[
            "--rate",
            "100",
            "--progress-every",
            "0.1",
            "--summary-json",
            "summary.json",
        ])
        .exits(1);
    let stderr = run.stderr();
    assert!(
        stderr.contains("progress: "),
        "a progress line off a terminal: {stderr}"
    );
    assert!(stderr.contains("created "), "{stderr}");
    let all = run.text();
    for i in 1..=n {
        assert!(
            !all.contains(&mobile(i)) && !all.contains(&mobile_e164(i)),
            "a phone number in the output"
        );
        assert!(
            !all.contains(&format!("Smith {i},")),
            "a name in the output"
        );
    }
    assert!(
        !all.contains("ZGVtbzpkZW1v"),
        "the auth header (base64 of demo:demo) never appears"
    );
    let stdout = run.stdout();
    for status in [
        "created", "invalid", "skipped", "failed", "unknown", "rejected",
    ] {
        assert!(stdout.contains(status), "summary lists {status}: {stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert_eq!(json["counts"]["created"], 53);
    assert_eq!(json["counts"]["invalid"], 5);
    assert_eq!(json["counts"]["skipped"], 2);
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["end"], "completed");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let s = Scenario::new()
        .export(20)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--log-format", "json", "-v"]).exits(1);
    let stderr = run.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "send starting"),
        "{stderr}"
    );
    // -v shows each row's outcome by number and status, still without customer data.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "row decided" && l["status"] == "created"),
        "{stderr}"
    );
    assert!(!stderr.contains("+447400"), "no contact at -v");
    s.shutdown().await;
}

#[test]
fn completions_generate_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("digidesk-upload") && script.contains("mapping"),
            "{shell}"
        );
    }
}

#[test]
fn every_command_has_help_with_examples_and_version_works() {
    for cmd in ["send", "check", "retry", "sandbox", "demo", "completions"] {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "{cmd} --help has examples: {help}"
        );
    }
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("digidesk-upload "));
}
