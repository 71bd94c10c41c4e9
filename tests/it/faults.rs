//! Each fault the sandbox can inject, alone and all together: the server's
//! record and the results file must agree row by row.

use crate::common::*;

async fn send_with(
    cfg: SandboxConfig,
    n: usize,
    extra: &[&str],
) -> (Work, Sandbox, std::process::Output) {
    let w = Work::new();
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(cfg).await;
    let rate: &[&str] = if extra.contains(&"--rate") {
        &[]
    } else {
        &["--rate", "0"]
    };
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .args(["--concurrency", "8"])
        .args(rate)
        .args(extra));
    (w, sb, out)
}

fn statuses(results: &[std::collections::HashMap<String, String>], status: &str) -> usize {
    results
        .iter()
        .filter(|r| r["digidesk_status"] == status)
        .count()
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
    let (w, sb, out) = send_with(cfg, 80, &["--max-attempts", "12", "--retry-server-errors"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out)); // the invalid rows
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(80, &results, &sb);
    assert_eq!(statuses(&results, "failed"), 0);
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
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_that_outlast_max_attempts_are_failed_with_every_reason() {
    let cfg = SandboxConfig {
        error_rate: 1.0,
        seed: Some(2),
        ..SandboxConfig::default()
    };
    let (w, sb, out) = send_with(cfg, 6, &["--max-attempts", "2", "--retry-server-errors"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(6, &results, &sb);
    for r in results.iter().filter(|r| r["digidesk_status"] == "failed") {
        assert_eq!(r["digidesk_attempts"], "2");
        assert!(
            r["digidesk_errors"].contains("try 1:") && r["digidesk_errors"].contains("try 2:"),
            "{r:?}"
        );
        assert!(["500", "503"].contains(&r["digidesk_http_status"].as_str()));
    }
    assert_eq!(statuses(&results, "failed"), 6);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("digidesk-upload retry"),
        "the summary says how to resend: {stdout}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_creation_is_unknown_and_never_resent() {
    let cfg = SandboxConfig {
        drop_after_rate: 0.3,
        seed: Some(3),
        ..SandboxConfig::default()
    };
    let (w, sb, out) = send_with(cfg, 60, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(60, &results, &sb);
    let unknown = statuses(&results, "unknown");
    assert!(unknown > 0);
    // Every unknown row was in fact created once: the server has one more
    // record than there are created rows, for each.
    assert_eq!(sb.accepted().len(), statuses(&results, "created") + unknown);
    for r in results.iter().filter(|r| r["digidesk_status"] == "unknown") {
        assert_eq!(
            r["digidesk_attempts"], "1",
            "an unknown row is never resent"
        );
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_before_acting_is_unknown_too() {
    let cfg = SandboxConfig {
        drop_before_rate: 0.3,
        seed: Some(4),
        ..SandboxConfig::default()
    };
    let (w, sb, out) = send_with(cfg, 60, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(60, &results, &sb);
    assert!(statuses(&results, "unknown") > 0);
    assert_eq!(sb.accepted().len(), statuses(&results, "created"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_server_gets_all_rows_with_few_429s() {
    let cfg = SandboxConfig {
        rate_limit: Some(40.0),
        seed: Some(5),
        ..SandboxConfig::default()
    };
    let (w, sb, out) = send_with(cfg, 100, &["--rate", "80", "--max-attempts", "10"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(100, &results, &sb);
    assert_eq!(statuses(&results, "failed"), 0);
    assert_eq!(statuses(&results, "created"), 100 - 10 - 4 + 2); // 10 invalid, 4 skipped, 2 both
    let seen = sb.requests();
    let too_many = seen.iter().filter(|r| r.status == Some(429)).count();
    assert!(
        too_many * 10 <= seen.len(),
        "the tool slows down on 429: {too_many} of {} requests",
        seen.len()
    );
    sb.shutdown().await;
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
    let (w, sb, out) =
        send_with(cfg, 300, &["--max-attempts", "10", "--retry-server-errors"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(300, &results, &sb);
    assert_eq!(statuses(&results, "failed"), 0);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_and_then_failed_safe_to_resend() {
    let w = Work::new();
    let input = w.write("calls.csv", export(3));
    let mapping = w.write("map.toml", MAPPING);
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/api/survey_requests/");
    let out =
        run(send_cmd(&input, &mapping, &endpoint).args(["--rate", "0", "--max-attempts", "2"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for r in read_results(&w.path("calls.results.csv")) {
        assert_eq!(r["digidesk_status"], "failed", "{r:?}");
        assert_eq!(r["digidesk_attempts"], "2");
        assert!(
            r["digidesk_errors"].contains("try 2: could not connect"),
            "{r:?}"
        );
        assert_eq!(r["digidesk_http_status"], "");
    }
}
