//! Crash safety: `kill -9` at random moments of a run, then `--resume`,
//! until the run completes; the server's record and the results file must
//! agree row by row, with no survey created twice and no row lost.

use std::process::Stdio;

use rand::{Rng, SeedableRng};

use crate::common::*;

/// How many seeded trials run; each kills the binary several times.
/// `KILL_TRIALS=200 cargo test kill_9 -- --nocapture` runs a longer soak.
fn trials() -> u64 {
    std::env::var("KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_then_resume_creates_every_row_once() {
    let mut kills_total = 0;
    for seed in 0..trials() {
        let w = Work::new();
        let n = 160;
        let input = w.write("calls.csv", export(n));
        let mapping = w.write("map.toml", MAPPING);
        let sb = sandbox(SandboxConfig {
            latency_ms: 2,
            jitter_ms: 8,
            error_rate: 0.05,
            drop_after_rate: 0.02,
            seed: Some(seed),
            ..SandboxConfig::default()
        })
        .await;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut kills = 0;
        let mut unknown_allowance = 0;
        loop {
            let mut cmd = tokio::process::Command::from(bin());
            cmd.arg("send")
                .arg(&input)
                .arg("--mapping")
                .arg(&mapping)
                .args([
                    "--endpoint",
                    &sb.endpoint(),
                    "--rate",
                    "0",
                    "--concurrency",
                    "6",
                    "--retry-server-errors",
                    "-q",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if kills > 0 {
                cmd.arg("--resume");
            }
            let mut child = cmd.spawn().expect("spawn");
            // Kill once the server has accepted a random number more requests,
            // or (one time in five) as soon as it started.
            let target = sb.accepted().len() + rng.random_range(1..30);
            let immediate = rng.random_bool(0.2) && kills < 6;
            let killed = if immediate {
                child.start_kill().expect("kill");
                true
            } else if kills < 6 {
                tokio::select! {
                    _ = child.wait() => false,
                    _ = sb.wait_accepted(target) => { child.start_kill().expect("kill"); true }
                }
            } else {
                false
            };
            let out = child.wait_with_output().await.expect("wait");
            if killed && !out.status.success() && out.status.code().is_none() {
                kills += 1;
                unknown_allowance += 6;
                continue;
            }
            assert!(
                matches!(out.status.code(), Some(0) | Some(1)),
                "seed {seed}: run ended with {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
        let results = read_results(&w.path("calls.results.csv"));
        assert_consistent(n, &results, &sb);
        let unknown = results
            .iter()
            .filter(|r| r["digidesk_status"] == "unknown")
            .count();
        let dropped = sb.accepted().len()
            - results
                .iter()
                .filter(|r| r["digidesk_status"] == "created")
                .count();
        assert!(
            unknown <= unknown_allowance + dropped,
            "seed {seed}: {unknown} unknown after {kills} kills"
        );
        kills_total += kills;
        sb.shutdown().await;
    }
    // Visible with --nocapture: the figure the closing note reports.
    eprintln!(
        "kill -9 trials: {} seeded runs, {kills_total} kills; duplicates 0, lost 0 (asserted)",
        trials()
    );
    assert!(
        kills_total >= trials() as usize,
        "the trials must actually kill the binary ({kills_total} kills)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_another_input_or_mapping() {
    let w = Work::new();
    let input = w.write("calls.csv", export(20));
    let mapping = w.write("map.toml", MAPPING);
    let sb = sandbox(SandboxConfig::default()).await;
    let send = |extra: &[&str]| {
        let mut c = bin();
        c.arg("send")
            .arg(&input)
            .arg("--mapping")
            .arg(&mapping)
            .args(["--endpoint", &sb.endpoint()])
            .args(extra);
        c
    };
    let out = run(&mut send(&["--limit", "5"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--limit"), "{}", text(&out));
    let first = read_results(&w.path("calls.results.csv"));
    assert!(
        first
            .iter()
            .filter(|r| r["digidesk_status"] == "created")
            .count()
            == 5
    );

    w.write(
        "map.toml",
        MAPPING.replace("Post-call survey", "Other campaign"),
    );
    let out = run(&mut send(&["--resume"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("different input, mapping"),
        "{}",
        text(&out)
    );

    // Back to the same mapping: the canary's rows are kept, the rest sent.
    w.write("map.toml", MAPPING);
    let out = run(&mut send(&["--resume"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_consistent(20, &read_results(&w.path("calls.results.csv")), &sb);
    sb.shutdown().await;
}
