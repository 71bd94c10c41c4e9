//! `send` end to end: the real binary against the real sandbox, over HTTP
//! and HTTPS, checked against what the sandbox received.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_creates_every_valid_row_with_exact_bodies_and_ids() {
    let w = Work::new();
    let n = 120;
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig::default()).await;
    let out = run(send_cmd(&input, &mapping, &sb.endpoint()).args(["--rate", "0"]));
    // Rows 10, 20, ... have no phone: invalid, so the exit code is 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(n, &results, &sb);
    for r in &results {
        let i: usize = r["digidesk_row"].parse().unwrap();
        assert_eq!(r["digidesk_status"], expected_status(i), "row {i}: {r:?}");
        if expected_status(i) == "created" {
            assert_eq!(r["digidesk_http_status"], "201");
            assert_eq!(r["digidesk_attempts"], "1");
        }
    }
    let created = results
        .iter()
        .filter(|r| r["digidesk_status"] == "created")
        .count();
    assert_eq!(
        sb.accepted().len(),
        created,
        "invalid and skipped rows must not be sent"
    );
    // Results keep every input column in order, then the digidesk_* columns.
    let header = std::fs::read_to_string(w.path("calls.results.csv")).unwrap();
    assert!(header.starts_with(
        "Ref,First,Last,Phone,Reason,Opt Out,digidesk_row,digidesk_status,digidesk_id,digidesk_http_status,digidesk_attempts,digidesk_errors\n"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created"), "{stdout}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_over_https_trusts_the_given_ca_and_refuses_without_it() {
    let w = Work::new();
    let input = w.write("calls.csv", export(9));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        tls: true,
        ..SandboxConfig::default()
    })
    .await;
    assert!(sb.endpoint().starts_with("https://"));
    let ca = w.write(
        "sandbox.pem",
        sb.ca_cert_pem().expect("tls sandbox has a cert"),
    );

    // Without the sandbox's certificate: stop at once (exit 3), nothing created.
    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &sb.endpoint()]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("--ca-cert"), "{}", text(&out));
    assert!(sb.accepted().is_empty());

    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .args(["--force"])
        .arg("--ca-cert")
        .arg(&ca));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_consistent(9, &results, &sb);
    assert_eq!(sb.accepted().len(), 9);
    sb.shutdown().await;
}

/// With a proxy in the environment, requests go through it: here the
/// endpoint's own port has nothing listening, and only the "proxy" (the
/// sandbox, which takes absolute-form requests) can create the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_from_the_environment_is_used() {
    let w = Work::new();
    let input = w.write("calls.csv", export(9));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig::default()).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{free}/api/survey_requests/");
    let proxy = format!("http://{}", sb.addr());
    let out = run(send_cmd(&input, &mapping, &endpoint)
        .args(["--rate", "0", "--max-attempts", "1"])
        .env("HTTP_PROXY", &proxy));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let results = read_results(&w.path("calls.results.csv"));
    assert_eq!(sb.accepted().len(), 9, "{}", text(&out));
    assert_consistent(9, &results, &sb);
    // Without it, the same endpoint cannot be reached at all.
    let out = run(send_cmd(&input, &mapping, &endpoint).args([
        "--rate",
        "0",
        "--max-attempts",
        "1",
        "--force",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        read_results(&w.path("calls.results.csv"))
            .iter()
            .any(|r| r["digidesk_errors"].contains("could not connect")),
        "{}",
        text(&out)
    );
    assert_eq!(sb.accepted().len(), 9);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_the_run_and_leave_unsent_rows_out() {
    let w = Work::new();
    let input = w.write("calls.csv", export(30));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        password: "other".into(),
        ..SandboxConfig::default()
    })
    .await;
    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &sb.endpoint()]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("401") && all.contains("DIGIDESK_USERNAME"),
        "{all}"
    );
    assert!(all.contains("--resume"), "says how to continue: {all}");
    assert!(
        !all.contains("Basic "),
        "never prints the auth header: {all}"
    );
    let results = read_results(&w.path("calls.results.csv"));
    assert!(results
        .iter()
        .all(|r| r["digidesk_status"] != "created" && r["digidesk_status"] != "failed"));

    // Fixed credentials: --resume sends exactly the rest.
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .args(["--resume"])
        .env("DIGIDESK_PASSWORD", "other"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_consistent(30, &read_results(&w.path("calls.results.csv")), &sb);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_results_file_is_refused_without_resume_or_force() {
    let w = Work::new();
    let input = w.write("calls.csv", export(5));
    let mapping = w.write("map.toml", MAPPING);
    w.write("calls.results.csv", "precious\n");
    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", "http://127.0.0.1:9/api/survey_requests/"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--resume") && text(&out).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(w.path("calls.results.csv")).unwrap(),
        "precious\n"
    );
}

#[test]
fn plain_http_to_another_host_is_refused_before_anything_is_read() {
    let w = Work::new();
    let input = w.write("calls.csv", export(5));
    let mapping = w.write("map.toml", MAPPING);
    let out = bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args([
            "--endpoint",
            "http://digidesk.example.com/api/survey_requests/",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("https://"));
    assert!(!w.path("calls.results.csv").exists());
}

#[test]
fn missing_credentials_exit_2_and_name_the_variables() {
    let w = Work::new();
    let input = w.write("calls.csv", export(5));
    let mapping = w.write("map.toml", MAPPING);
    let out = bin()
        .env_remove("DIGIDESK_PASSWORD")
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("DIGIDESK_PASSWORD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_works_and_stdin_needs_results() {
    let w = Work::new();
    let mapping = w.write("map.toml", MAPPING);
    let creds = w.write("creds", "# DigiDesk\nusername = demo\npassword = demo\n");
    let sb = sandbox(SandboxConfig::default()).await;
    let out = run(bin()
        .env_remove("DIGIDESK_USERNAME")
        .env_remove("DIGIDESK_PASSWORD")
        .args(["send", "-", "--mapping"])
        .arg(&mapping)
        .args(["--endpoint", &sb.endpoint()])
        .arg("--credentials")
        .arg(&creds));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--results"));

    let mut child = bin()
        .env_remove("DIGIDESK_USERNAME")
        .env_remove("DIGIDESK_PASSWORD")
        .args(["send", "-", "--mapping"])
        .arg(&mapping)
        .args(["--endpoint", &sb.endpoint()])
        .arg("--credentials")
        .arg(&creds)
        .arg("--results")
        .arg(w.path("out.csv"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(export(9).as_bytes()).unwrap();
    }
    let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_consistent(9, &read_results(&w.path("out.csv")), &sb);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_run_stops_at_once_says_how_many_rows_are_left_and_resume_finishes() {
    let w = Work::new();
    let n = 300;
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        latency_ms: 20,
        ..SandboxConfig::default()
    })
    .await;
    let child = tokio::process::Command::from(send_cmd(&input, &mapping, &sb.endpoint()))
        .args(["--rate", "0", "--concurrency", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sb.wait_accepted(20).await;
    sb.set_credentials("demo", "rotated");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results = read_results(&w.path("calls.results.csv"));
    let sendable = (1..=n).filter(|i| expected_status(*i) == "created").count();
    let created = results
        .iter()
        .filter(|r| r["digidesk_status"] == "created")
        .count();
    assert!(created < sendable, "stopped part-way");
    assert!(
        results.iter().all(|r| r["digidesk_status"] != "failed"),
        "no row was failed by the 401"
    );
    let unsent = n - results.len();
    assert!(
        stdout.contains(&format!("{unsent} rows were not sent")),
        "the summary says how many rows are left ({unsent}): {stdout}"
    );
    let out = run(send_cmd(&input, &mapping, &sb.endpoint())
        .args(["--rate", "0", "--resume"])
        .env("DIGIDESK_PASSWORD", "rotated"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_consistent(n, &read_results(&w.path("calls.results.csv")), &sb);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_in_every_one_second_window_at_the_server() {
    let w = Work::new();
    let n = 80;
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        latency_ms: 20,
        jitter_ms: 60,
        ..SandboxConfig::default()
    })
    .await;
    let out = run(send_cmd(&input, &mapping, &sb.endpoint()).args(["--rate", "25"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut times: Vec<std::time::Duration> = sb.requests().iter().map(|r| r.at).collect();
    let worst = digidesk_upload::pace::worst_window(&mut times);
    // The pacer's own guarantee is exact (see pace.rs's paused-time test, and
    // the benchmark on an idle machine); here, with other tests loading both
    // cores, the server's clock may see one request early. A burst would show
    // as many more.
    assert!(
        worst <= 26,
        "{worst} requests reached the server within one second at --rate 25"
    );
    assert_eq!(
        times.len(),
        (1..=n).filter(|i| expected_status(*i) == "created").count()
    );
    sb.shutdown().await;
}

#[test]
fn a_results_file_that_cannot_be_created_exits_2_naming_it() {
    let w = Work::new();
    let input = w.write("calls.csv", export(3));
    let mapping = w.write("map.toml", MAPPING);
    let out = send_cmd(&input, &mapping, "http://127.0.0.1:9/api/survey_requests/")
        .arg("--results")
        .arg(w.path("no-such-dir/out.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such-dir"), "{}", text(&out));
}

/// The line after `marker` in the summary, split as a shell would.
fn printed_command(stdout: &str, marker: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .skip_while(|l| !l.contains(marker))
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in: {stdout}"));
    let mut words = shell_words::split(line.trim()).unwrap();
    assert_eq!(words.remove(0), "digidesk-upload");
    words
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_resume_and_retry_commands_work_as_printed() {
    let w = Work::new();
    let mut csv = String::from("Ref;First;Last;Phone;Reason;Opt Out\r\n");
    for i in 1..=30 {
        csv.push_str(&format!(
            "R{i};Ren\u{e9}e;Smith {i};{};Billing;\r\n",
            mobile(i)
        ));
    }
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&csv);
    let input = w.write("export.csv", bytes);
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        password: "other".into(),
        ..SandboxConfig::default()
    })
    .await;
    let out = run(send_cmd(&input, &mapping, &sb.endpoint()).args([
        "--delimiter",
        ";",
        "--encoding",
        "windows-1252",
        "--rate",
        "0",
    ]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let resume = printed_command(&String::from_utf8_lossy(&out.stdout), "continue with:");
    sb.set_credentials("demo", "demo");
    let out = run(bin().current_dir(w.dir.path()).args(&resume));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the printed resume command: {resume:?}\n{}",
        text(&out)
    );
    assert_eq!(sb.accepted().len(), 30);
    assert!(
        sb.accepted()
            .iter()
            .any(|a| a.body["customer_name"] == "Renée Smith 1"),
        "decoded as windows-1252"
    );

    // A run with failures prints the command that resends them.
    let down = sandbox(SandboxConfig {
        // The service is down: 503, safe to resend.
        fault_status: 503,
        fault_status_rate: 1.0,
        seed: Some(1),
        ..SandboxConfig::default()
    })
    .await;
    let out = run(send_cmd(&w.path("export.csv"), &mapping, &down.endpoint())
        .args([
            "--delimiter",
            ";",
            "--encoding",
            "windows-1252",
            "--rate",
            "0",
            "--max-attempts",
            "1",
        ])
        .arg("--results")
        .arg(w.path("second.csv")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut retry = printed_command(
        &String::from_utf8_lossy(&out.stdout),
        "Resend the failed rows with:",
    );
    let endpoint = retry
        .iter()
        .position(|a| a == "--endpoint")
        .expect("the endpoint is part of it")
        + 1;
    retry[endpoint] = sb.endpoint(); // the service is back, elsewhere
    let out = run(bin().current_dir(w.dir.path()).args(&retry));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the printed retry command: {retry:?}\n{}",
        text(&out)
    );
    assert_eq!(read_results(&w.path("second.retry.csv")).len(), 30);
    sb.shutdown().await;
    down.shutdown().await;
}
