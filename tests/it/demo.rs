//! `demo`: no set-up, no credentials, no network, from any directory.

use crate::common::*;

#[test]
fn demo_runs_from_any_directory_and_sends_the_built_in_export() {
    let s = Scenario::new();
    let dir = s.path("demo");
    let run = s
        .run(
            s.bin()
                .env_remove("DIGIDESK_USERNAME")
                .env_remove("DIGIDESK_PASSWORD")
                .args(["demo", "--dir"])
                .arg(&dir),
        )
        .exits(0);
    let out = run.stdout();
    assert!(out.contains("completed"), "{out}");
    let results = read_results(&dir.join("calls.results.csv"));
    assert_eq!(results.len(), 60);
    assert_eq!(
        (
            count(&results, "created"),
            count(&results, "skipped"),
            count(&results, "invalid")
        ),
        (52, 4, 4),
        "{out}"
    );
    let accepted: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.join("sandbox-accepted.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(accepted.len(), 52);
    // Its ledger is its own, in its directory, not the user's.
    assert!(dir.join("ledger.sqlite3").exists());
    assert!(
        !s.path("state").exists(),
        "the default ledger was not touched"
    );
    let stats = s
        .run(
            s.bin()
                .args(["ledger", "stats", "--ledger"])
                .arg(dir.join("ledger.sqlite3")),
        )
        .exits(0)
        .stdout();
    assert_eq!(count_of(&stats, "created"), 52, "{stats}");
    // No custom parameter: the mapping runs as it is against a plain sandbox.
    assert!(accepted.iter().all(|a| a["body"].get("source").is_none()));
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
