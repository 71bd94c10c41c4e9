//! Faults found by trying to break the tool: gateways that answer 5xx after
//! creating, statuses that stop the run, a huge `Retry-After`, an endless
//! answer, hostile server text, proxies, credentials files, http and https
//! mixed up. Each asserts on what the server received and on the results.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

fn statuses(results: &[std::collections::HashMap<String, String>], status: &str) -> usize {
    results
        .iter()
        .filter(|r| r["digidesk_status"] == status)
        .count()
}

/// Sendable rows of `export(n)`: every 10th is invalid, every 25th skipped.
fn sendable(n: usize) -> usize {
    (1..=n).filter(|i| expected_status(*i) == "created").count()
}

/// `send` of `export(n)` to `endpoint`, with `extra` options.
fn send_to(w: &Work, n: usize, endpoint: &str, extra: &[&str]) -> std::process::Output {
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    run(send_cmd(&input, &mapping, endpoint)
        .args(["--rate", "0", "--concurrency", "4"])
        .args(extra))
}

/// Reads one request (head and `Content-Length` body) off a connection;
/// `None` when the client closed it.
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(buf);
            }
        }
    }
}

/// A server that answers every request on every connection with `answer`,
/// counting the requests; its endpoint.
async fn answering(answer: &'static [u8], count: Arc<AtomicU64>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                while read_request(&mut s).await.is_some() {
                    count.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/api/survey_requests/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_504_after_creating_is_unknown_and_never_resent() {
    let sb = sandbox(SandboxConfig {
        gateway_timeout_rate: 0.3,
        seed: Some(11),
        ..SandboxConfig::default()
    })
    .await;
    let w = Work::new();
    let out = send_to(&w, 60, &sb.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(60, &results, &sb);
    let unknown: Vec<_> = results
        .iter()
        .filter(|r| r["digidesk_status"] == "unknown")
        .collect();
    let gateway = sb
        .requests()
        .iter()
        .filter(|r| r.status == Some(504))
        .count();
    assert!(gateway > 0);
    assert_eq!(unknown.len(), gateway, "every 504 row is unknown");
    for r in &unknown {
        assert_eq!(r["digidesk_http_status"], "504");
        assert_eq!(r["digidesk_attempts"], "1", "never resent: {r:?}");
        assert!(
            r["digidesk_errors"].contains("--retry-server-errors"),
            "{r:?}"
        );
    }
    // One request per sendable row: nothing was sent twice.
    assert_eq!(sb.requests().len(), sendable(60));
    assert_eq!(sb.accepted().len(), statuses(&results, "created") + gateway);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_5xx_are_unknown_unless_retry_server_errors_is_given() {
    for status in [500, 501, 502, 524, 599] {
        let sb = sandbox(SandboxConfig {
            fault_status: status,
            fault_status_rate: 1.0,
            ..SandboxConfig::default()
        })
        .await;
        let w = Work::new();
        let out = send_to(&w, 12, &sb.endpoint(), &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let results = read_results(&w.path("calls.results.csv"));
        assert_eq!(statuses(&results, "unknown"), sendable(12), "{status}");
        assert_eq!(statuses(&results, "rejected"), 0, "{status}");
        assert_eq!(sb.requests().len(), sendable(12), "{status}: none resent");
        sb.shutdown().await;
    }
    // Where the endpoint is known to answer them before doing anything,
    // they are retried like a 503 until created.
    let sb = sandbox(SandboxConfig {
        fault_status: 502,
        fault_status_rate: 0.4,
        seed: Some(12),
        ..SandboxConfig::default()
    })
    .await;
    let w = Work::new();
    let out = send_to(
        &w,
        40,
        &sb.endpoint(),
        &["--retry-server-errors", "--max-attempts", "20"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(40, &results, &sb);
    assert_eq!(statuses(&results, "created"), sendable(40));
    assert!(results
        .iter()
        .any(|r| r["digidesk_errors"].contains("try 1: HTTP 502")));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_405_and_407_stop_the_run_like_404() {
    for (status, words) in [(405, "HTTP 405"), (407, "proxy")] {
        let sb = sandbox(SandboxConfig {
            fault_status: status,
            fault_status_rate: 1.0,
            ..SandboxConfig::default()
        })
        .await;
        let w = Work::new();
        let out = send_to(&w, 30, &sb.endpoint(), &[]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(words) && stdout.contains("--resume"),
            "{stdout}"
        );
        let results = read_results(&w.path("calls.results.csv"));
        assert_eq!(statuses(&results, "rejected"), 0, "{status}");
        assert_eq!(statuses(&results, "failed"), 0, "{status}");
        assert!(sb.accepted().is_empty());
        sb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_stops_the_run_resumably_without_a_panic() {
    let sb = sandbox(SandboxConfig {
        fault_status: 503,
        fault_status_rate: 1.0,
        retry_after: Some("18446744073709551615".into()),
        ..SandboxConfig::default()
    })
    .await;
    let w = Work::new();
    let out = send_to(&w, 20, &sb.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains("panicked"), "{all}");
    assert!(all.contains("more than the hour"), "{all}");
    let results = read_results(&w.path("calls.results.csv"));
    assert_eq!(
        statuses(&results, "failed") + statuses(&results, "unknown"),
        0
    );
    // The rest is sent by --resume once the service is back.
    let up = sandbox(SandboxConfig::default()).await;
    let input = w.path("calls.csv");
    let out = run(
        send_cmd(&input, &w.path("map.toml"), &up.endpoint()).args(["--rate", "0", "--resume"])
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(20, &results, &up);
    assert_eq!(statuses(&results, "created"), sendable(20));
    sb.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_at_64_kib_and_the_row_is_unknown() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "http://127.0.0.1:{}/api/survey_requests/",
        l.local_addr().unwrap().port()
    );
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                let head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
                while s.write_all(chunk.as_bytes()).await.is_ok() {
                    counter.fetch_add(8192, Ordering::Relaxed);
                }
            });
        }
    });
    let w = Work::new();
    let out = send_to(&w, 3, &endpoint, &["--timeout", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for r in read_results(&w.path("calls.results.csv")) {
        assert_eq!(r["digidesk_status"], "unknown", "{r:?}");
        assert!(r["digidesk_errors"].contains("over 64 KiB"), "{r:?}");
    }
    // The client hung up at the cap: what was written is the cap plus
    // what the sockets' buffers hold, not gigabytes.
    let total = written.load(Ordering::Relaxed);
    assert!(total < 3 * (16 << 20), "the server wrote {total} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_text_is_cleaned_and_an_errors_cell_is_never_a_formula() {
    const ANSWER: &[u8] = b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: 85\r\n\r\n{\"status\":\"error\",\"data\":null,\"message\":[\"=HYPERLINK(\\\"x\\\")\\u001b[2J\\u001b[31m bad\"]}";
    let count = Arc::new(AtomicU64::new(0));
    let endpoint = answering(ANSWER, count.clone()).await;
    let w = Work::new();
    let out = send_to(&w, 3, &endpoint, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(count.load(Ordering::Relaxed), 3);
    assert!(
        !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
        "{}",
        text(&out)
    );
    let raw = std::fs::read(w.path("calls.results.csv")).unwrap();
    assert!(!raw.contains(&0x1b), "no escape in the results file");
    for r in read_results(&w.path("calls.results.csv")) {
        assert_eq!(r["digidesk_status"], "rejected");
        assert_eq!(r["digidesk_errors"], "'=HYPERLINK(\"x\") bad");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_a_proxy_off_this_machine_is_refused() {
    let sb = sandbox(SandboxConfig::default()).await;
    let w = Work::new();
    let input = w.write("calls.csv", export(5));
    let mapping = w.write("map.toml", MAPPING);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let out = run(send_cmd(&input, &mapping, &sb.endpoint())
            .env(var, "http://user:secret@192.0.2.1:3128"));
        assert_eq!(out.status.code(), Some(2), "{var}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("http://192.0.2.1:3128") && stderr.contains("unencrypted"),
            "{stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
        assert!(!w.path("calls.results.csv").exists());
    }
    // NO_PROXY for the host: the connection stays on this machine.
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .env("HTTP_PROXY", "http://192.0.2.1:3128")
        .env("NO_PROXY", "127.0.0.1"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sb.accepted().len(), 5);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_star_is_honoured_for_addresses_too() {
    let sb = sandbox(SandboxConfig::default()).await;
    // A proxy that refuses every connection: only a direct request works.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let w = Work::new();
    let input = w.write("calls.csv", export(12));
    let mapping = w.write("map.toml", MAPPING);
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .args(["--rate", "0", "--max-attempts", "1"])
        .env("HTTP_PROXY", format!("http://{dead}"))
        .env("HTTPS_PROXY", format!("http://{dead}"))
        .env("NO_PROXY", "*"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(12, &results, &sb);
    assert_eq!(statuses(&results, "created"), sendable(12));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file_others_can_read_is_warned_about_and_quotes_are_stripped() {
    use std::os::unix::fs::PermissionsExt;
    let sb = sandbox(SandboxConfig::default()).await;
    let w = Work::new();
    let creds = w.write("creds", "username = \"demo\"\npassword='demo'\n");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let input = w.write("calls.csv", export(4));
    let mapping = w.write("map.toml", MAPPING);
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .env_remove("DIGIDESK_USERNAME")
        .env_remove("DIGIDESK_PASSWORD")
        .arg("--credentials")
        .arg(&creds));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sb.accepted().len(), 4, "the quoted password was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be read by other users") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("'demo'"), "{stderr}");
    // Private: no warning.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .env_remove("DIGIDESK_USERNAME")
        .env_remove("DIGIDESK_PASSWORD")
        .arg("--credentials")
        .arg(&creds)
        .arg("--force"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("other users"),
        "{}",
        text(&out)
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_an_https_server_stops_at_once_with_no_row_in_doubt() {
    let sb = sandbox(SandboxConfig {
        tls: true,
        ..SandboxConfig::default()
    })
    .await;
    let endpoint = sb.endpoint().replace("https://", "http://");
    let w = Work::new();
    let out = send_to(&w, 30, &endpoint, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Use https://"), "{stdout}");
    let results = read_results(&w.path("calls.results.csv"));
    assert_eq!(statuses(&results, "unknown"), 0, "{stdout}");
    assert_eq!(statuses(&results, "failed"), 0, "{stdout}");
    assert!(sb.accepted().is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_port_stops_at_once_with_the_right_advice() {
    let sb = sandbox(SandboxConfig::default()).await;
    let endpoint = sb.endpoint().replace("http://", "https://");
    let w = Work::new();
    let out = send_to(&w, 30, &endpoint, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not an HTTPS port"), "{stdout}");
    assert!(
        !stdout.contains("--ca-cert"),
        "no advice about certificates: {stdout}"
    );
    let results = read_results(&w.path("calls.results.csv"));
    assert_eq!(
        statuses(&results, "unknown") + statuses(&results, "failed"),
        0
    );
    assert!(sb.requests().is_empty(), "no request reached the server");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_says_its_status_once_and_a_301_names_the_final_url() {
    let sb = sandbox(SandboxConfig {
        password: "other".into(),
        ..SandboxConfig::default()
    })
    .await;
    let w = Work::new();
    let out = send_to(&w, 5, &sb.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("DigiDesk answered HTTP 401 (authentication failed"),
        "{all}"
    );
    assert!(!all.contains("HTTP 401 (HTTP 401"), "{all}");

    let w = Work::new();
    let without_slash = sb.endpoint().trim_end_matches('/').to_string();
    let out = send_to(&w, 5, &without_slash, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("--endpoint {}", sb.endpoint())),
        "{stdout}"
    );
    sb.shutdown().await;
}
