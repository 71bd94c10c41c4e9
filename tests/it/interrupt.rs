//! Ctrl-C and SIGTERM: a clean stop with exit 130 that `--resume` continues.

use std::process::Stdio;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_and_resume_finishes_the_run() {
    let n = 200;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 50,
            ..SandboxConfig::default()
        })
        .await;
    let child = s.spawn_send(&["--rate", "0", "--concurrency", "4"]);
    s.server().wait_accepted(12).await;
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let run = s.wait(child).await.exits(130);
    assert!(run.stdout().contains("--resume"), "{}", run.text());
    let partial = run.results();
    assert!(partial.len() < n, "stopped before the end");
    assert!(
        partial.iter().all(|r| r["digidesk_status"] != "unknown"),
        "in-flight requests were allowed to finish"
    );
    // At --rate 0 rows are claimed in the ledger ahead of their requests:
    // the stop frees every key it claimed and never sent, so the ledger
    // holds exactly the surveys created, none left in flight.
    let created = partial
        .iter()
        .filter(|r| r["digidesk_status"] == "created")
        .count();
    let stats = s.run(s.bin().args(["ledger", "stats"])).exits(0).stdout();
    assert_eq!(count_of(&stats, "in flight"), 0, "{stats}");
    assert_eq!(count_of(&stats, "created"), created as u64, "{stats}");

    let run = s.send(&["--rate", "0", "--resume"]).exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigint_exits_at_once_and_the_run_still_resumes() {
    use std::io::BufRead;
    let n = 40;
    // Answers take 3 s: the first SIGINT alone would wait for them.
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 3000,
            ..SandboxConfig::default()
        })
        .await;
    let mut child = s
        .send_cmd(&["--rate", "0", "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.server().wait_accepted(4).await;
    let pid = child.id() as libc::pid_t;
    let started = std::time::Instant::now();
    // SAFETY: signals to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    // Wait until it says it is stopping cleanly, then interrupt again.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let said = tokio::task::block_in_place(|| {
        lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("interrupted"))
    });
    assert!(
        said.is_some_and(|l| l.contains("Ctrl-C again")),
        "the first SIGINT is acknowledged"
    );
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert_eq!(status.code(), Some(130));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "it did not wait for the 3 s answers"
    );
    let results = s.send(&["--rate", "0", "--resume"]).exits(1).results();
    s.assert_consistent(&results);
    let unknown = count(&results, "unknown");
    assert!(
        (1..=4).contains(&unknown),
        "the rows in flight are unknown, never resent: {unknown}"
    );
    s.shutdown().await;
}
