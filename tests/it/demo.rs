//! `demo`: no set-up, no credentials, no network, from any directory.

use crate::common::*;

#[test]
fn demo_runs_from_any_directory_and_sends_the_built_in_export() {
    let w = Work::new();
    let dir = w.path("demo");
    let out = bin()
        .env_remove("DIGIDESK_USERNAME")
        .env_remove("DIGIDESK_PASSWORD")
        .current_dir(w.dir.path())
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("completed"), "{s}");
    let results = read_results(&dir.join("calls.results.csv"));
    assert_eq!(results.len(), 60);
    let count = |st: &str| {
        results
            .iter()
            .filter(|r| r["digidesk_status"] == st)
            .count()
    };
    assert_eq!(
        (count("created"), count("skipped"), count("invalid")),
        (52, 4, 4),
        "{s}"
    );
    let accepted: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.join("sandbox-accepted.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(accepted.len(), 52);
    assert!(accepted
        .iter()
        .all(|a| a["body"]["source"] == "crm-nightly"));
    // The files it leaves are the ones in the repository, for users to read and copy.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::fs::read(dir.join("calls.csv")).unwrap(),
        std::fs::read(root.join("fixtures/calls.csv")).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.join("calls.toml")).unwrap(),
        std::fs::read(root.join("mappings/calls.toml")).unwrap()
    );
}
