//! `retry`: resends exactly the selected rows of a results file, keeping
//! their row numbers, never mapping the `digidesk_*` columns.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_sends_exactly_the_failed_rows() {
    let n = 40;
    // unmapped = true: every other column goes into misc_data, but never digidesk_*.
    let mut s = Scenario::new()
        .export(n)
        .mapping(MAPPING.replace("columns = [\"Reason\"]", "unmapped = true"))
        .sandbox(SandboxConfig {
            // The service is down: 503, safe to resend.
            fault_status: 503,
            fault_status_rate: 1.0,
            seed: Some(9),
            ..SandboxConfig::default()
        })
        .await;
    let first = s
        .send(&["--rate", "0", "--max-attempts", "1"])
        .exits(1)
        .results();
    let failed: Vec<String> = first
        .iter()
        .filter(|r| r["digidesk_status"] == "failed")
        .map(|r| r["digidesk_row"].clone())
        .collect();
    assert_eq!(failed.len(), n - 4 - 1); // rows 10,20,30,40 invalid; 25 skipped

    let up = sandbox(SandboxConfig::default()).await;
    s.retarget(up.endpoint());
    // Its own input is never its output.
    let results_in = s.results_path();
    s.retry(&["--results", results_in.to_str().unwrap()])
        .exits(2);

    let run = s.retry(&["--rate", "0"]);
    assert_eq!(
        run.code(),
        Some(0),
        "only the resent rows judge the exit code: {}",
        run.text()
    );
    let second = run.results();
    let mut rows: Vec<String> = second.iter().map(|r| r["digidesk_row"].clone()).collect();
    rows.sort();
    let mut want = failed.clone();
    want.sort();
    assert_eq!(
        rows, want,
        "exactly the failed rows, with their original numbers"
    );
    assert!(second.iter().all(|r| r["digidesk_status"] == "created"));
    assert_eq!(up.accepted().len(), failed.len());
    for a in up.accepted() {
        let misc = a.body["misc_data"].as_object().expect("misc_data");
        assert!(
            misc.keys().all(|k| !k.starts_with("digidesk_")),
            "digidesk_* columns are never mapped: {misc:?}"
        );
        let row: usize = a.body["account_number"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(a.body["customer_contact"], mobile_e164(row));
    }
    // The retry's results keep the input's columns, not the old digidesk_* ones twice.
    let header = std::fs::read_to_string(run.results_path()).unwrap();
    assert_eq!(
        header
            .lines()
            .next()
            .unwrap()
            .matches("digidesk_status")
            .count(),
        1
    );
    s.shutdown().await; // the server that was down
    up.shutdown().await;
}

#[test]
fn retry_refuses_created_and_unknown_statuses_in_only() {
    let s = Scenario::new().endpoint("http://127.0.0.1:9/");
    s.write("calls.results.csv", "Ref,digidesk_row,digidesk_status\n");
    let run = s.retry(&["--only", "created"]).exits(2);
    assert!(run.text().contains("never sent again"));
}
