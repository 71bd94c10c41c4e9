//! Ctrl-C and SIGTERM: a clean stop with exit 130 that `--resume` continues.

use std::process::Stdio;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_and_resume_finishes_the_run() {
    let w = Work::new();
    let n = 200;
    let input = w.write("calls.csv", export(n));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig {
        latency_ms: 50,
        ..SandboxConfig::default()
    })
    .await;
    let child = tokio::process::Command::from(bin())
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args([
            "--endpoint",
            &sb.endpoint(),
            "--rate",
            "0",
            "--concurrency",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sb.wait_accepted(12).await;
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--resume"),
        "{}",
        text(&out)
    );
    let partial = read_results(&w.path("calls.results.csv"));
    assert!(partial.len() < n, "stopped before the end");
    assert!(
        partial.iter().all(|r| r["digidesk_status"] != "unknown"),
        "in-flight requests were allowed to finish"
    );

    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &sb.endpoint(), "--rate", "0", "--resume"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_consistent(n, &read_results(&w.path("calls.results.csv")), &sb);
    sb.shutdown().await;
}
