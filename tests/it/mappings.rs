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

#[test]
fn check_accepts_every_ready_mapping_with_its_export() {
    for p in PAIRS {
        let out = bin()
            .arg("check")
            .arg(repo(&format!("fixtures/{}.csv", p.name)))
            .arg("--mapping")
            .arg(repo(&format!("mappings/{}.toml", p.name)))
            .args(p.args)
            .output()
            .unwrap();
        let want = if p.invalid > 0 { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{}: {}", p.name, text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_creates_exactly_the_sendable_rows_of_each_ready_mapping() {
    for p in PAIRS {
        let w = Work::new();
        let sb = sandbox(SandboxConfig {
            allowed_params: p
                .source
                .map(|_| vec!["source".to_string()])
                .unwrap_or_default(),
            ..SandboxConfig::default()
        })
        .await;
        let results = w.path("results.csv");
        let out = run(bin()
            .arg("send")
            .arg(repo(&format!("fixtures/{}.csv", p.name)))
            .arg("--mapping")
            .arg(repo(&format!("mappings/{}.toml", p.name)))
            .args(p.args)
            .args(["--endpoint", &sb.endpoint(), "--rate", "0", "--results"])
            .arg(&results));
        let want = if p.invalid > 0 { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{}: {}", p.name, text(&out));
        let rows = read_results(&results);
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
        let accepted = sb.accepted();
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
        sb.shutdown().await;
    }
}
