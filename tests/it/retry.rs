//! `retry`: resends exactly the selected rows of a results file, keeping
//! their row numbers, never mapping the `digidesk_*` columns.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_sends_exactly_the_failed_rows() {
    let w = Work::new();
    let n = 40;
    let input = w.write("calls.csv", export(n));
    // unmapped = true: every other column goes into misc_data, but never digidesk_*.
    let mapping = w.write(
        "map.toml",
        MAPPING.replace("columns = [\"Reason\"]", "unmapped = true"),
    );
    let down = sandbox(SandboxConfig {
        // The service is down: 503, safe to resend.
        fault_status: 503,
        fault_status_rate: 1.0,
        seed: Some(9),
        ..SandboxConfig::default()
    })
    .await;
    let out = run(bin()
        .arg("send")
        .arg(&input)
        .arg("--mapping")
        .arg(&mapping)
        .args([
            "--endpoint",
            &down.endpoint(),
            "--rate",
            "0",
            "--max-attempts",
            "1",
        ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let first = read_results(&w.path("calls.results.csv"));
    let failed: Vec<String> = first
        .iter()
        .filter(|r| r["digidesk_status"] == "failed")
        .map(|r| r["digidesk_row"].clone())
        .collect();
    assert_eq!(failed.len(), n - 4 - 1); // rows 10,20,30,40 invalid; 25 skipped

    let up = sandbox(SandboxConfig::default()).await;
    let results_in = w.path("calls.results.csv");
    // Its own input is never its output.
    let out = run(bin()
        .arg("retry")
        .arg(&results_in)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &up.endpoint()])
        .arg("--results")
        .arg(&results_in));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = run(bin()
        .arg("retry")
        .arg(&results_in)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint", &up.endpoint(), "--rate", "0"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "only the resent rows judge the exit code: {}",
        text(&out)
    );
    let second = read_results(&w.path("calls.results.retry.csv"));
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
    let header = std::fs::read_to_string(w.path("calls.results.retry.csv")).unwrap();
    assert_eq!(
        header
            .lines()
            .next()
            .unwrap()
            .matches("digidesk_status")
            .count(),
        1
    );
    down.shutdown().await;
    up.shutdown().await;
}

#[test]
fn retry_refuses_created_and_unknown_statuses_in_only() {
    let w = Work::new();
    let results = w.write("r.csv", "Ref,digidesk_row,digidesk_status\n");
    let mapping = w.write("map.toml", MAPPING);
    let out = bin()
        .arg("retry")
        .arg(&results)
        .arg("--mapping")
        .arg(&mapping)
        .args(["--only", "created", "--endpoint", "http://127.0.0.1:9/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("never sent again"));
}
