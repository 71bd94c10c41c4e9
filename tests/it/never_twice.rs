//! Never twice across runs, end to end with the real binary and the real
//! sandbox: overlapping exports, two sends at once, history imported from
//! old results files, `contact_within`, a row repeated in one export,
//! `--no-ledger`, `retry`, and a ledger that cannot be used.

use std::collections::HashMap;

use crate::common::*;

/// A scenario's results rows by their `digidesk_row`.
fn by_row(results: &[Row]) -> HashMap<usize, Row> {
    results
        .iter()
        .map(|r| (r["digidesk_row"].parse().expect("a row number"), r.clone()))
        .collect()
}

/// `send INPUT --results RESULTS --rate 0 ARGS` to the scenario's sandbox,
/// run from its work directory.
fn send_other(s: &Scenario, input: &str, results: &str, args: &[&str]) -> Run {
    let endpoint = s.target().expect("a sandbox");
    s.run(
        s.bin()
            .args(["send", input, "--mapping", "map.toml", "--endpoint"])
            .arg(&endpoint)
            .args(["--results", results, "--rate", "0"])
            .args(args),
    )
}

/// Asserts every `Ref` the sandbox created, it created once; returns how many.
fn each_created_once(s: &Scenario) -> usize {
    let accepted = accepted_by_ref(s.server());
    for (r, bodies) in &accepted {
        assert_eq!(bodies.len(), 1, "{r} was created {} times", bodies.len());
    }
    accepted.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_export_sends_the_overlap_once_and_names_the_earlier_survey() {
    let s = Scenario::new()
        .export(40)
        .sandbox(SandboxConfig::default())
        .await;
    let monday = by_row(&s.send(&["--rate", "0"]).exits(1).results());
    // Tuesday's export covers Monday's calls again, and 20 new ones.
    s.write("tuesday.csv", export(60));
    let run = send_other(&s, "tuesday.csv", "tuesday.results.csv", &[]).exits(1);
    let tuesday = by_row(&run.results());
    assert_eq!(each_created_once(&s) as u64, created_of(60));
    for i in 1..=60 {
        let row = &tuesday[&i];
        match expected_status(i) {
            "created" if i <= 40 => {
                assert_eq!(row["digidesk_status"], "duplicate", "row {i}: {row:?}");
                let id = &monday[&i]["digidesk_id"];
                assert_eq!(&row["digidesk_id"], id, "row {i} carries the earlier id");
                let why = &row["digidesk_errors"];
                assert!(
                    why.contains(&format!("created as id {id} on "))
                        && why.contains(&format!("calls.results.csv row {i}")),
                    "row {i}: {why}"
                );
            }
            expected => assert_eq!(row["digidesk_status"], expected, "row {i}: {row:?}"),
        }
    }
    assert_eq!(count_of(&run.stdout(), "duplicate"), created_of(40));
    assert!(
        run.stdout().contains(&format!(
            "{} rows are duplicate: the ledger says they were sent before",
            created_of(40)
        )),
        "{}",
        run.stdout()
    );
    // The summary counts a run of created and duplicate rows as a success
    // for those rows: only the invalid rows make exit 1 here.
    let all_sent = s.write("sent.csv", export(9));
    let run = send_other(&s, all_sent.to_str().unwrap(), "again.csv", &[]).exits(0);
    assert_eq!(count_of(&run.stdout(), "duplicate"), created_of(9));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sends_of_one_export_at_once_create_every_row_exactly_once_between_them() {
    let n = 300;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 2,
            jitter_ms: 6,
            ..SandboxConfig::default()
        })
        .await;
    let a = s.spawn_send(&["--rate", "0", "--results", "a.csv", "--concurrency", "8"]);
    let b = s.spawn_send(&["--rate", "0", "--results", "b.csv", "--concurrency", "8"]);
    let (a, b) = (s.wait(a).await, s.wait(b).await);
    assert_eq!(a.code(), Some(1), "{}", a.text());
    assert_eq!(b.code(), Some(1), "{}", b.text());
    assert_eq!(each_created_once(&s) as u64, created_of(n));
    let (a, b) = (
        by_row(&s.results_in("a.csv")),
        by_row(&s.results_in("b.csv")),
    );
    for i in (1..=n).filter(|&i| expected_status(i) == "created") {
        let mut statuses = [
            a[&i]["digidesk_status"].as_str(),
            b[&i]["digidesk_status"].as_str(),
        ];
        statuses.sort();
        assert_eq!(statuses, ["created", "duplicate"], "row {i}");
        // A duplicate carries the earlier id once the other run knew it.
        let ids = [&a[&i]["digidesk_id"], &b[&i]["digidesk_id"]];
        assert!(
            ids[0] == ids[1] || ids.iter().any(|id| id.is_empty()),
            "row {i}: {ids:?}"
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_importing_old_results_a_send_of_that_export_sends_nothing() {
    let s = Scenario::new()
        .export(30)
        .sandbox(SandboxConfig::default())
        .await;
    // Months of runs before the ledger existed.
    s.send(&["--rate", "0", "--no-ledger"]).exits(1);
    let sent = s.accepted().len();
    let endpoint = s.target().unwrap();
    s.run(
        s.bin()
            .args([
                "ledger",
                "import",
                "calls.results.csv",
                "--mapping",
                "map.toml",
            ])
            .args(["--endpoint", &endpoint]),
    )
    .exits(0);
    let run = s.send(&["--rate", "0", "--force"]).exits(1);
    assert_eq!(s.accepted().len(), sent, "nothing sent again");
    let results = run.results();
    assert_eq!(count(&results, "created"), 0);
    assert_eq!(count(&results, "duplicate") as u64, created_of(30));
    let row1 = &by_row(&results)[&1];
    assert!(
        row1["digidesk_errors"].contains("imported from") && !row1["digidesk_id"].is_empty(),
        "{row1:?}"
    );
    // Without the ledger the same command sends them all again.
    s.send(&["--rate", "0", "--force", "--no-ledger"]).exits(1);
    assert_eq!(s.accepted().len() as u64, sent as u64 + created_of(30));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_within_holds_across_runs_and_within_one() {
    let mapping = format!("{MAPPING}\n[dedupe]\ncontact_within = \"30d\"\n");
    let s = Scenario::new()
        .export(20)
        .mapping(mapping)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--rate", "0"]).exits(1);
    assert_eq!(s.accepted().len() as u64, created_of(20));
    // Other calls (other Refs, so other surveys) to the same customers.
    s.write("later.csv", export(20).replace("\nR", "\nLater-R"));
    let run = send_other(&s, "later.csv", "later.results.csv", &[]).exits(1);
    let later = run.results();
    assert_eq!(count(&later, "created"), 0);
    assert_eq!(count(&later, "duplicate") as u64, created_of(20));
    let why = &by_row(&later)[&1]["digidesk_errors"];
    assert!(
        why.contains("this customer_contact was already surveyed within contact_within"),
        "{why}"
    );
    // Within one run: two calls of one new customer make one survey.
    let phone = mobile(500);
    s.write(
        "twice.csv",
        format!("Ref,First,Last,Phone,Reason,Opt Out\nT1,Ann,Lee,{phone},Billing,\nT2,Ann,Lee,{phone},Other,\n"),
    );
    let run = send_other(
        &s,
        "twice.csv",
        "twice.results.csv",
        &["--concurrency", "1"],
    )
    .exits(0);
    let rows = by_row(&run.results());
    assert_eq!(rows[&1]["digidesk_status"], "created", "{}", run.text());
    assert_eq!(rows[&2]["digidesk_status"], "duplicate", "{}", run.text());
    assert!(
        rows[&2]["digidesk_errors"].contains("within contact_within in this run: row 1"),
        "{:?}",
        rows[&2]
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_repeated_in_one_export_is_sent_once_with_or_without_the_ledger() {
    let mut csv = export(5);
    let row3 = csv.lines().nth(3).unwrap().to_string();
    csv.push_str(&row3);
    csv.push('\n');
    let s = Scenario::new()
        .input("calls.csv", &csv)
        .sandbox(SandboxConfig::default())
        .await;
    for args in [
        &["--rate", "0"][..],
        &["--rate", "0", "--force", "--no-ledger"],
    ] {
        let rows = by_row(&s.send(args).exits(0).results());
        assert_eq!(rows[&3]["digidesk_status"], "created", "{args:?}");
        assert_eq!(rows[&6]["digidesk_status"], "duplicate", "{args:?}");
        // The earlier id, once known: row 3 may still be in flight.
        let id = &rows[&6]["digidesk_id"];
        assert!(id.is_empty() || *id == rows[&3]["digidesk_id"], "{args:?}");
        assert!(
            rows[&6]["digidesk_errors"].contains("already sent in this run: row 3"),
            "{args:?}: {:?}",
            rows[&6]
        );
    }
    // Once per run: --no-ledger sent the second run's rows again.
    assert_eq!(accepted_by_ref(s.server())["R3"].len(), 2);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resends_unknown_rows_unless_they_were_created_since() {
    // Every answer is lost after DigiDesk created the survey: all unknown.
    let mut s = Scenario::new()
        .export(12)
        .sandbox(SandboxConfig {
            drop_after_rate: 1.0,
            ..SandboxConfig::default()
        })
        .await;
    let first = s.send(&["--rate", "0", "--timeout", "2"]).exits(1);
    let unknown = count(&first.results(), "unknown");
    assert_eq!(unknown as u64, created_of(12));
    // A plain send of the same export does not resend them: they may exist.
    let again = send_other(&s, "calls.csv", "again.csv", &["--timeout", "2"]).exits(1);
    assert_eq!(count(&again.results(), "duplicate"), unknown);
    let why = &by_row(&again.results())[&1]["digidesk_errors"];
    assert!(why.contains("with no answer, so it may exist"), "{why}");
    // Duplicates are resent only without the ledger, on purpose.
    let endpoint = s.target().unwrap();
    let dup = s.run(
        s.bin()
            .args([
                "retry",
                "again.csv",
                "--mapping",
                "map.toml",
                "--only",
                "duplicate",
            ])
            .args(["--endpoint", &endpoint]),
    );
    assert_eq!(dup.code(), Some(2), "{}", dup.text());
    assert!(dup.stderr().contains("add --no-ledger"), "{}", dup.text());
    // After checking DigiDesk, `retry --only unknown` resends them, to a
    // server that answers this time.
    let answering = sandbox(SandboxConfig::default()).await;
    s.retarget(answering.endpoint());
    let retry = s.retry(&["--only", "unknown", "--rate", "0"]).exits(0);
    assert_eq!(count(&retry.results(), "created"), unknown);
    // Created since: a second retry of the same rows sends nothing.
    let second = s
        .retry(&[
            "--only",
            "unknown",
            "--rate",
            "0",
            "--results",
            "second.csv",
        ])
        .exits(0);
    assert_eq!(count(&second.results(), "duplicate"), unknown);
    assert_eq!(answering.accepted().len(), unknown);
    answering.shutdown().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_be_used_stops_send_before_anything_is_sent() {
    let s = Scenario::new()
        .export(5)
        .sandbox(SandboxConfig::default())
        .await;
    s.write(
        "broken.sqlite3",
        "this is not a database, just text\n".repeat(200),
    );
    let run = s.send(&["--ledger", "broken.sqlite3"]).exits(2);
    assert!(
        run.stderr()
            .contains("broken.sqlite3 is not a ledger of digidesk-upload")
            && run.stderr().contains("--no-ledger"),
        "{}",
        run.text()
    );
    assert!(s.accepted().is_empty());
    assert!(!s.path("calls.results.csv").exists(), "nothing was started");
    // DIGIDESK_LEDGER names it just the same.
    let run = s.run(s.send_cmd(&[]).env("DIGIDESK_LEDGER", "broken.sqlite3"));
    assert_eq!(run.code(), Some(2), "{}", run.text());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_locked_by_another_process_too_long_is_a_clear_exit_2() {
    let s = Scenario::new()
        .export(5)
        .sandbox(SandboxConfig::default())
        .await;
    let ledger = s.path("shared.sqlite3");
    drop(digidesk_upload::ledger::open(&ledger).expect("a new ledger"));
    // Another process holds the ledger's write lock and does not let go.
    let holder = rusqlite::Connection::open(&ledger).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = s.send(&["--ledger", "shared.sqlite3"]).exits(2);
    assert!(
        run.stderr().contains("is locked by another process")
            && run.stderr().contains("--no-ledger"),
        "{}",
        run.text()
    );
    assert!(s.accepted().is_empty());
    // Once it lets go, the same command sends.
    holder.execute_batch("ROLLBACK").unwrap();
    s.send(&["--ledger", "shared.sqlite3"]).exits(0);
    assert_eq!(s.accepted().len(), 5);
    s.shutdown().await;
}
