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
        let n = 160;
        let s = Scenario::new()
            .export(n)
            .sandbox(SandboxConfig {
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
            let resume: &[&str] = if kills > 0 { &["--resume"] } else { &[] };
            let args = [
                &[
                    "--rate",
                    "0",
                    "--concurrency",
                    "6",
                    "--retry-server-errors",
                    "-q",
                ],
                resume,
            ]
            .concat();
            let mut cmd = tokio::process::Command::from(s.send_cmd(&args));
            // Every other trial folds the ledger's log every few rows (half
            // of those two rows per transaction, between claims), and skips
            // lookups with its filter from the start, so that kills land
            // during folds too.
            if seed % 2 == 1 {
                cmd.env("DIGIDESK_LEDGER_FOLD_ROWS", "5");
                cmd.env("DIGIDESK_LEDGER_FILTER_AFTER", "1");
            }
            if seed % 4 == 1 {
                cmd.env("DIGIDESK_LEDGER_FOLD_CHUNK", "2");
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn");
            // Kill once the server has accepted a random number more requests,
            // or (one time in five) as soon as it started.
            let target = s.accepted().len() + rng.random_range(1..30);
            let immediate = rng.random_bool(0.2) && kills < 6;
            let killed = if immediate {
                child.start_kill().expect("kill");
                true
            } else if kills < 6 {
                tokio::select! {
                    _ = child.wait() => false,
                    _ = s.server().wait_accepted(target) => { child.start_kill().expect("kill"); true }
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
        let results = s.results();
        s.assert_consistent(&results);
        // The run's own claims, left by the kills, never blocked one of its rows.
        assert_eq!(count(&results, "duplicate"), 0, "seed {seed}");
        // The ledger knows every survey that exists or may.
        let endpoint = s.target().unwrap();
        let check = s.run(
            s.bin()
                .args(["ledger", "check", "calls.csv", "--mapping", "map.toml"])
                .args(["--endpoint", &endpoint]),
        );
        let known = count_of(&check.stdout(), "duplicate") as usize;
        let exist = count(&results, "created") + count(&results, "unknown");
        assert!(
            known >= exist,
            "seed {seed}: the ledger knows {known} of {exist}: {}",
            check.text()
        );
        let unknown = count(&results, "unknown");
        let dropped = s.accepted().len() - count(&results, "created");
        assert!(
            unknown <= unknown_allowance + dropped,
            "seed {seed}: {unknown} unknown after {kills} kills"
        );
        // Once the run is complete the ledger holds each row's outcome: none
        // left in flight, even the ones a kill took before the keeper
        // recorded them (the resumed run records them from the results).
        let stats = s.run(s.bin().args(["ledger", "stats"])).exits(0).stdout();
        let in_state = |label: &str| count_of(&stats, label) as usize;
        assert_eq!(
            (
                in_state("in flight"),
                in_state("created"),
                in_state("unknown")
            ),
            (0, count(&results, "created"), count(&results, "unknown")),
            "seed {seed}: the ledger's in flight, created and unknown"
        );
        let ledger = s.work.path("state/digidesk-upload/ledger.sqlite3");
        let conn = rusqlite::Connection::open(&ledger).expect("open the ledger");
        if seed % 2 == 1 {
            // The folds happened: surveys reached the key-ordered table.
            let folded: i64 = conn
                .query_row("SELECT count(*) FROM survey", [], |r| r.get(0))
                .expect("count");
            assert!(folded > 0, "seed {seed}: nothing was folded");
        }
        kills_total += kills;
        s.shutdown().await;
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
    let s = Scenario::new()
        .export(20)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--limit", "5"]).exits(0);
    assert!(run.text().contains("--limit"), "{}", run.text());
    assert_eq!(count(&run.results(), "created"), 5);

    s.rewrite_mapping(MAPPING.replace("Post-call survey", "Other campaign"));
    let run = s.send(&["--resume"]).exits(2);
    assert!(
        run.text().contains("different input, mapping"),
        "{}",
        run.text()
    );

    // Back to the same mapping: the canary's rows are kept, the rest sent.
    s.rewrite_mapping(MAPPING);
    let run = s.send(&["--resume"]).exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}
