//! Each fault the sandbox can inject, alone and all together: the server's
//! record and the results file must agree row by row.

use crate::common::*;

/// `send` at `--concurrency 8` (and `--rate 0` unless `extra` sets one)
/// of an export of `n` rows to a sandbox with `cfg`.
async fn send_with(cfg: SandboxConfig, n: usize, extra: &[&str]) -> (Scenario, Run) {
    let s = Scenario::new().export(n).sandbox(cfg).await;
    let rate: &[&str] = if extra.contains(&"--rate") {
        &[]
    } else {
        &["--rate", "0"]
    };
    let run = s.send(&[&["--concurrency", "8"], rate, extra].concat());
    (s, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_created() {
    let cfg = SandboxConfig {
        error_rate: 0.3,
        html_error_rate: 0.1,
        seed: Some(1),
        ..SandboxConfig::default()
    };
    // This endpoint answers 500 and 502 before doing anything: say so.
    let (s, run) = send_with(cfg, 80, &["--max-attempts", "12", "--retry-server-errors"]).await;
    let results = run.exits(1).results(); // 1: the invalid rows
    s.assert_consistent(&results);
    assert_eq!(count(&results, "failed"), 0);
    let retried: Vec<_> = results
        .iter()
        .filter(|r| r["digidesk_attempts"].parse::<u32>().unwrap_or(0) > 1)
        .collect();
    assert!(!retried.is_empty(), "some rows needed more than one try");
    for r in retried {
        assert_eq!(r["digidesk_status"], "created");
        assert!(r["digidesk_errors"].contains("try 1: HTTP 5"), "{r:?}");
    }
    let html = results
        .iter()
        .any(|r| r["digidesk_errors"].contains("HTML page"));
    assert!(html, "a proxy's HTML page is reported in words");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_that_outlast_max_attempts_are_failed_with_every_reason() {
    let cfg = SandboxConfig {
        error_rate: 1.0,
        seed: Some(2),
        ..SandboxConfig::default()
    };
    let (s, run) = send_with(cfg, 6, &["--max-attempts", "2", "--retry-server-errors"]).await;
    let run = run.exits(1);
    let results = run.results();
    s.assert_consistent(&results);
    for r in results.iter().filter(|r| r["digidesk_status"] == "failed") {
        assert_eq!(r["digidesk_attempts"], "2");
        assert!(
            r["digidesk_errors"].contains("try 1:") && r["digidesk_errors"].contains("try 2:"),
            "{r:?}"
        );
        assert!(["500", "503"].contains(&r["digidesk_http_status"].as_str()));
    }
    assert_eq!(count(&results, "failed"), 6);
    let stdout = run.stdout();
    assert!(
        stdout.contains("digidesk-upload retry"),
        "the summary says how to resend: {stdout}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_creation_is_unknown_and_never_resent() {
    let cfg = SandboxConfig {
        drop_after_rate: 0.3,
        seed: Some(3),
        ..SandboxConfig::default()
    };
    let (s, run) = send_with(cfg, 60, &[]).await;
    let results = run.exits(1).results();
    s.assert_consistent(&results);
    let unknown = count(&results, "unknown");
    assert!(unknown > 0);
    // Every unknown row was in fact created once: the server has one more
    // record than there are created rows, for each.
    assert_eq!(s.accepted().len(), count(&results, "created") + unknown);
    for r in results.iter().filter(|r| r["digidesk_status"] == "unknown") {
        assert_eq!(
            r["digidesk_attempts"], "1",
            "an unknown row is never resent"
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_before_acting_is_unknown_too() {
    let cfg = SandboxConfig {
        drop_before_rate: 0.3,
        seed: Some(4),
        ..SandboxConfig::default()
    };
    let (s, run) = send_with(cfg, 60, &[]).await;
    let results = run.exits(1).results();
    s.assert_consistent(&results);
    assert!(count(&results, "unknown") > 0);
    assert_eq!(s.accepted().len(), count(&results, "created"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_server_gets_all_rows_with_few_429s() {
    let cfg = SandboxConfig {
        rate_limit: Some(40.0),
        seed: Some(5),
        ..SandboxConfig::default()
    };
    let (s, run) = send_with(cfg, 100, &["--rate", "80", "--max-attempts", "10"]).await;
    let results = run.exits(1).results();
    s.assert_consistent(&results);
    assert_eq!(count(&results, "failed"), 0);
    assert_eq!(count(&results, "created"), 100 - 10 - 4 + 2); // 10 invalid, 4 skipped, 2 both
    let seen = s.server().requests();
    let too_many = seen.iter().filter(|r| r.status == Some(429)).count();
    assert!(
        too_many * 10 <= seen.len(),
        "the tool slows down on 429: {too_many} of {} requests",
        seen.len()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once_loses_and_duplicates_nothing() {
    let cfg = SandboxConfig {
        latency_ms: 1,
        jitter_ms: 5,
        error_rate: 0.15,
        html_error_rate: 0.05,
        drop_before_rate: 0.05,
        drop_after_rate: 0.05,
        rate_limit: Some(300.0),
        seed: Some(6),
        ..SandboxConfig::default()
    };
    let (s, run) = send_with(cfg, 300, &["--max-attempts", "10", "--retry-server-errors"]).await;
    let results = run.exits(1).results();
    s.assert_consistent(&results);
    assert_eq!(count(&results, "failed"), 0);
    s.shutdown().await;
}
