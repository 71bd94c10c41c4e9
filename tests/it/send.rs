//! `send` end to end: the real binary against the real sandbox, over HTTP
//! and HTTPS, checked against what the sandbox received.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_creates_every_valid_row_with_exact_bodies_and_ids() {
    let n = 120;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    // Rows 10, 20, ... have no phone: invalid, so the exit code is 1.
    let run = s.send(&["--rate", "0"]).exits(1);
    let results = run.results();
    s.assert_consistent(&results);
    for r in &results {
        let i: usize = r["digidesk_row"].parse().unwrap();
        assert_eq!(r["digidesk_status"], expected_status(i), "row {i}: {r:?}");
        if expected_status(i) == "created" {
            assert_eq!(r["digidesk_http_status"], "201");
            assert_eq!(r["digidesk_attempts"], "1");
        }
    }
    assert_eq!(
        s.accepted().len(),
        count(&results, "created"),
        "invalid and skipped rows must not be sent"
    );
    // Results keep every input column in order, then the digidesk_* columns.
    let header = std::fs::read_to_string(run.results_path()).unwrap();
    assert!(header.starts_with(
        "Ref,First,Last,Phone,Reason,Opt Out,digidesk_row,digidesk_status,digidesk_id,digidesk_http_status,digidesk_attempts,digidesk_errors\n"
    ));
    assert!(run.stdout().contains("created"), "{}", run.stdout());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_over_https_trusts_the_given_ca_and_refuses_without_it() {
    let s = Scenario::new()
        .export(9)
        .sandbox(SandboxConfig {
            tls: true,
            ..SandboxConfig::default()
        })
        .await;
    assert!(s.server().endpoint().starts_with("https://"));
    s.write(
        "sandbox.pem",
        s.server().ca_cert_pem().expect("tls sandbox has a cert"),
    );

    // Without the sandbox's certificate: stop at once (exit 3), nothing created.
    let run = s.send(&[]).exits(3);
    assert!(run.text().contains("--ca-cert"), "{}", run.text());
    assert!(s.accepted().is_empty());

    let run = s.send(&["--force", "--ca-cert", "sandbox.pem"]).exits(0);
    s.assert_consistent(&run.results());
    assert_eq!(s.accepted().len(), 9);
    s.shutdown().await;
}

/// With a proxy in the environment, requests go through it: here the
/// endpoint's own port has nothing listening, and only the "proxy" (the
/// sandbox, which takes absolute-form requests) can create the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_from_the_environment_is_used() {
    let s = Scenario::new()
        .export(9)
        .sandbox(SandboxConfig::default())
        .await
        .endpoint(unreachable_endpoint());
    let proxy = format!("http://{}", s.server().addr());
    let once = ["--rate", "0", "--max-attempts", "1"];
    let run = s.run(s.send_cmd(&once).env("HTTP_PROXY", &proxy)).exits(0);
    let results = run.results();
    assert_eq!(s.accepted().len(), 9, "{}", run.text());
    s.assert_consistent(&results);
    // Without it, the same endpoint cannot be reached at all: the run stops.
    // (--no-ledger: the ledger knows these rows were created.)
    let run = s
        .send(&[&once[..], &["--force", "--no-ledger"]].concat())
        .exits(3);
    assert!(run.stderr().contains("could not connect"), "{}", run.text());
    assert_eq!(s.accepted().len(), 9);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_the_run_and_leave_unsent_rows_out() {
    let s = Scenario::new()
        .export(30)
        .sandbox(SandboxConfig {
            password: "other".into(),
            ..SandboxConfig::default()
        })
        .await;
    let run = s.send(&[]).exits(3);
    let all = run.text();
    assert!(
        all.contains("401") && all.contains("DIGIDESK_USERNAME"),
        "{all}"
    );
    assert!(all.contains("--resume"), "says how to continue: {all}");
    assert!(
        !all.contains("Basic "),
        "never prints the auth header: {all}"
    );
    assert!(run
        .results()
        .iter()
        .all(|r| r["digidesk_status"] != "created" && r["digidesk_status"] != "failed"));

    // Fixed credentials: --resume sends exactly the rest.
    let run = s
        .run(s.send_cmd(&["--resume"]).env("DIGIDESK_PASSWORD", "other"))
        .exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_results_file_is_refused_without_resume_or_force() {
    let s = Scenario::new()
        .export(5)
        .endpoint("http://127.0.0.1:9/api/survey_requests/");
    s.write("calls.results.csv", "precious\n");
    let run = s.send(&[]).exits(2);
    assert!(run.text().contains("--resume") && run.text().contains("--force"));
    assert_eq!(
        std::fs::read_to_string(s.results_path()).unwrap(),
        "precious\n"
    );
}

#[test]
fn plain_http_to_another_host_is_refused_before_anything_is_read() {
    let s = Scenario::new()
        .export(5)
        .endpoint("http://digidesk.example.com/api/survey_requests/");
    let run = s.send(&[]).exits(2);
    assert!(run.text().contains("https://"));
    assert!(!s.results_path().exists());
}

#[test]
fn missing_credentials_exit_2_and_name_the_variables() {
    let s = Scenario::new().export(5);
    let run = s
        .run(s.send_cmd(&[]).env_remove("DIGIDESK_PASSWORD"))
        .exits(2);
    assert!(run.text().contains("DIGIDESK_PASSWORD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_works_and_stdin_needs_results() {
    let s = Scenario::new()
        .input_path("-")
        .sandbox(SandboxConfig::default())
        .await;
    s.write("creds", "# DigiDesk\nusername = demo\npassword = demo\n");
    let from_file = |args: &[&str]| {
        let mut c = s.send_cmd(&[&["--credentials", "creds"], args].concat());
        c.env_remove("DIGIDESK_USERNAME")
            .env_remove("DIGIDESK_PASSWORD");
        c
    };
    let run = s.run(&mut from_file(&[])).exits(2);
    assert!(run.text().contains("--results"));

    let run = s
        .run_with_stdin(
            &mut from_file(&["--results", "out.csv"]),
            export(9).as_bytes(),
        )
        .exits(0);
    assert_consistent(9, &run.results(), s.server());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_run_stops_at_once_says_how_many_rows_are_left_and_resume_finishes() {
    let n = 300;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 20,
            ..SandboxConfig::default()
        })
        .await;
    let child = s.spawn_send(&["--rate", "0", "--concurrency", "4"]);
    s.server().wait_accepted(20).await;
    s.server().set_credentials("demo", "rotated");
    let run = s.wait(child).await.exits(3);
    let stdout = run.stdout();
    let results = run.results();
    let sendable = (1..=n).filter(|i| expected_status(*i) == "created").count();
    assert!(count(&results, "created") < sendable, "stopped part-way");
    assert!(
        results.iter().all(|r| r["digidesk_status"] != "failed"),
        "no row was failed by the 401"
    );
    let unsent = n - results.len();
    assert!(
        stdout.contains(&format!("{unsent} rows were not sent")),
        "the summary says how many rows are left ({unsent}): {stdout}"
    );
    let run = s
        .run(
            s.send_cmd(&["--rate", "0", "--resume"])
                .env("DIGIDESK_PASSWORD", "rotated"),
        )
        .exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_in_every_one_second_window_at_the_server() {
    let n = 80;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 20,
            jitter_ms: 60,
            ..SandboxConfig::default()
        })
        .await;
    s.send(&["--rate", "25"]).exits(1);
    let mut times: Vec<std::time::Duration> = s.server().requests().iter().map(|r| r.at).collect();
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
    s.shutdown().await;
}

#[test]
fn a_results_file_that_cannot_be_created_exits_2_naming_it() {
    let s = Scenario::new()
        .export(3)
        .endpoint("http://127.0.0.1:9/api/survey_requests/");
    let run = s.send(&["--results", "no-such-dir/out.csv"]).exits(2);
    assert!(run.text().contains("no-such-dir"), "{}", run.text());
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
    let mut csv = String::from("Ref;First;Last;Phone;Reason;Opt Out\r\n");
    for i in 1..=30 {
        csv.push_str(&format!(
            "R{i};Ren\u{e9}e;Smith {i};{};Billing;\r\n",
            mobile(i)
        ));
    }
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&csv);
    let mut s = Scenario::new()
        .input("export.csv", bytes)
        .sandbox(SandboxConfig {
            password: "other".into(),
            ..SandboxConfig::default()
        })
        .await;
    let dialect = [
        "--delimiter",
        ";",
        "--encoding",
        "windows-1252",
        "--rate",
        "0",
    ];
    let run = s.send(&dialect).exits(3);
    let resume = printed_command(&run.stdout(), "continue with:");
    s.server().set_credentials("demo", "demo");
    let run = s.run(s.bin().args(&resume));
    assert_eq!(
        run.code(),
        Some(0),
        "the printed resume command: {resume:?}\n{}",
        run.text()
    );
    assert_eq!(s.accepted().len(), 30);
    assert!(
        s.accepted()
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
    s.retarget(down.endpoint());
    let second = s.path("second.csv");
    let once = ["--max-attempts", "1", "--results", second.to_str().unwrap()];
    let run = s.send(&[&dialect[..], &once].concat()).exits(1);
    let mut retry = printed_command(&run.stdout(), "Resend the failed rows with:");
    let endpoint = retry
        .iter()
        .position(|a| a == "--endpoint")
        .expect("the endpoint is part of it")
        + 1;
    retry[endpoint] = s.server().endpoint(); // the service is back, elsewhere
    let run = s.run(s.bin().args(&retry));
    assert_eq!(
        run.code(),
        Some(0),
        "the printed retry command: {retry:?}\n{}",
        run.text()
    );
    assert_eq!(s.results_in("second.retry.csv").len(), 30);
    s.shutdown().await;
    down.shutdown().await;
}
