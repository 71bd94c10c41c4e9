//! The example mappings in `mappings/` that need no construct beyond columns,
//! against their exports in `fixtures/`: `check` gives the expected counts, and
//! `send` creates exactly the sendable rows in the sandbox. The vendors' ready
//! mappings have their own tests (`ready_mappings.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::common::*;

struct Pair {
    name: &'static str,
    args: &'static [&'static str],
    rows: usize,
    skipped: usize,
    invalid: usize,
    source: Option<&'static str>,
}

const PAIRS: &[Pair] = &[Pair {
    name: "contact-centre-export",
    args: &["--delimiter", ";", "--encoding", "windows-1252"],
    rows: 20,
    skipped: 2,
    invalid: 1,
    source: None,
}];

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl Pair {
    /// The pair's export and ready mapping, as they are in the repository.
    fn scenario(&self) -> Scenario {
        Scenario::new()
            .input_path(repo(&format!("fixtures/{}.csv", self.name)))
            .mapping_path(repo(&format!("mappings/{}.toml", self.name)))
    }

    /// Its exit code: 1 when some row is invalid.
    fn exit_code(&self) -> i32 {
        i32::from(self.invalid > 0)
    }
}

#[test]
fn check_accepts_every_ready_mapping_with_its_export() {
    for p in PAIRS {
        let run = p.scenario().check(p.args);
        assert_eq!(
            run.code(),
            Some(p.exit_code()),
            "{}: {}",
            p.name,
            run.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_creates_exactly_the_sendable_rows_of_each_ready_mapping() {
    for p in PAIRS {
        let s = p
            .scenario()
            .sandbox(SandboxConfig {
                allowed_params: p
                    .source
                    .map(|_| vec!["source".to_string()])
                    .unwrap_or_default(),
                ..SandboxConfig::default()
            })
            .await;
        let run = s.send(&[p.args, &["--rate", "0", "--results", "results.csv"]].concat());
        assert_eq!(
            run.code(),
            Some(p.exit_code()),
            "{}: {}",
            p.name,
            run.text()
        );
        let rows = run.results();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in &rows {
            *counts.entry(r["digidesk_status"].clone()).or_default() += 1;
        }
        let created = p.rows - p.skipped - p.invalid;
        assert_eq!(rows.len(), p.rows, "{}", p.name);
        assert_eq!(
            counts.get("created").copied().unwrap_or(0),
            created,
            "{}: {counts:?}",
            p.name
        );
        assert_eq!(
            counts.get("skipped").copied().unwrap_or(0),
            p.skipped,
            "{}: {counts:?}",
            p.name
        );
        assert_eq!(
            counts.get("invalid").copied().unwrap_or(0),
            p.invalid,
            "{}: {counts:?}",
            p.name
        );
        let accepted = s.accepted();
        assert_eq!(accepted.len(), created, "{}", p.name);
        for a in &accepted {
            let contact = a.body["customer_contact"].as_str().unwrap();
            assert!(
                contact.starts_with("+44") || contact.contains('@'),
                "{}: {contact}",
                p.name
            );
            if contact.contains('@') {
                assert_eq!(
                    contact,
                    contact.trim().to_lowercase(),
                    "emails are trimmed and lower-cased"
                );
            }
            assert_eq!(
                a.body.get("source").and_then(|s| s.as_str()),
                p.source,
                "{}",
                p.name
            );
        }
        s.shutdown().await;
    }
}
