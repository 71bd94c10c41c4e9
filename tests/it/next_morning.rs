//! The morning after a run: fixing rows and resending them (`retry --from`),
//! a retry with nothing to do, a canary that failed, results for Excel, and
//! the messages a new user meets on the way.

use std::collections::BTreeSet;

use crate::common::*;

/// [`export`]`(n)` with the invalid rows (every 10th: no phone) fixed.
fn fixed_export(n: usize) -> String {
    let mut s = String::from("Ref,First,Last,Phone,Reason,Opt Out\n");
    for i in 1..=n {
        let opt = if i % 25 == 0 { "Y" } else { "" };
        s.push_str(&format!(
            "R{i},Zoë,Smith {i},{},\"Billing, enquiry\",{opt}\n",
            mobile(i)
        ));
    }
    s
}

fn rows_of(results: &[Row]) -> BTreeSet<usize> {
    results
        .iter()
        .map(|r| r["digidesk_row"].parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_a_fixed_export_sends_exactly_the_selected_rows_as_fixed() {
    let n = 30;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--rate", "0"]).exits(1);
    let before = s.accepted().len();
    s.write("fixed.csv", fixed_export(n));

    let run = s
        .retry(&["--from", "fixed.csv", "--only", "invalid", "--rate", "0"])
        .exits(0);
    let results = run.results();
    assert_eq!(
        rows_of(&results),
        BTreeSet::from([10, 20, 30]),
        "{}",
        run.text()
    );
    assert!(results.iter().all(|r| r["digidesk_status"] == "created"));
    let sent: Vec<_> = s.accepted()[before..].to_vec();
    assert_eq!(sent.len(), 3);
    for a in sent {
        let i: usize = a.body["account_number"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(a.body, expected_body(i), "row {i} as fixed");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_refuses_an_export_whose_rows_do_not_line_up() {
    let n = 30;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--rate", "0"]).exits(1);
    let before = s.accepted().len();
    let fixed = fixed_export(n);
    let lines: Vec<&str> = fixed.lines().collect();
    // Row 5 removed: row 10 is now what was row 11.
    let removed = [&lines[..5], &lines[6..]].concat().join("\n") + "\n";
    let short = lines[..16].join("\n") + "\n";
    let renamed = fixed.replacen("Phone", "Mobile", 1);
    for (name, content, says) in [
        (
            "removed.csv",
            removed,
            "row 10 of removed.csv is not row 10 of the export",
        ),
        (
            "short.csv",
            short,
            "short.csv has 15 rows, but 2 of the rows to resend are beyond it",
        ),
        (
            "renamed.csv",
            renamed,
            "it lacks \"Phone\"; it has \"Mobile\" in addition",
        ),
    ] {
        s.write(name, content);
        let run = s.retry(&["--from", name, "--only", "invalid"]).exits(2);
        assert!(run.stderr().contains(says), "{name}: {}", run.text());
        assert!(!s.path("calls.results.retry.csv").exists(), "{name}");
    }
    assert_eq!(s.accepted().len(), before, "nothing was sent");
    s.shutdown().await;
}

/// A results file opened and saved in Excel (windows-1252, `;`) is retried
/// as it is: `--encoding` names its encoding, its delimiter is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reads_a_results_file_saved_by_excel() {
    let n = 12;
    let mut s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            fault_status: 503,
            fault_status_rate: 1.0,
            seed: Some(3),
            ..SandboxConfig::default()
        })
        .await;
    s.send(&["--rate", "0", "--max-attempts", "1"]).exits(1);
    // Excel on a European locale: `;`, windows-1252.
    let mut rdr = csv::Reader::from_path(s.results_path()).unwrap();
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    w.write_record(rdr.headers().unwrap()).unwrap();
    for r in rdr.records() {
        w.write_record(&r.unwrap()).unwrap();
    }
    let utf8 = String::from_utf8(w.into_inner().unwrap()).unwrap();
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(&utf8);
    std::fs::write(s.results_path(), &cp1252).unwrap();

    let up = sandbox(SandboxConfig::default()).await;
    s.retarget(up.endpoint());
    let run = s.retry(&["--rate", "0"]).exits(2);
    assert!(
        run.stderr().contains("--encoding windows-1252"),
        "{}",
        run.text()
    );
    let run = s
        .retry(&["--rate", "0", "--encoding", "windows-1252"])
        .exits(0);
    let failed: BTreeSet<usize> = (1..=n)
        .filter(|i| expected_status(*i) == "created")
        .collect();
    assert_eq!(rows_of(&run.results()), failed, "{}", run.text());
    for a in up.accepted() {
        let i: usize = a.body["account_number"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(a.body, expected_body(i), "Zoë read as windows-1252");
    }
    s.shutdown().await;
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_retry_writes_nothing_and_says_what_there_is() {
    let s = Scenario::new()
        .export(30)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--rate", "0"]).exits(1);
    let run = s.retry(&["--rate", "0"]).exits(0);
    assert!(
        run.stdout()
            .contains("0 failed; 3 invalid: --only invalid after fixing them"),
        "{}",
        run.text()
    );
    assert!(run
        .stdout()
        .contains("--from FIXED_EXPORT.csv --only invalid"));
    let retry_results = s.path("calls.results.retry.csv");
    assert!(!retry_results.exists(), "no results file");
    assert!(
        !s.path("calls.results.retry.csv.journal").exists(),
        "no journal"
    );
    // The next retry is not blocked.
    let run = s.retry(&["--only", "invalid", "--rate", "0"]).exits(1);
    assert_eq!(rows_of(&run.results()), BTreeSet::from([10, 20, 30]));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_says_so_instead_of_suggesting_the_rest() {
    // The sandbox refuses a parameter it was not told to allow.
    let s = Scenario::new()
        .export(40)
        .mapping(format!(
            "{MAPPING}\n[extra]\nsource = {{ value = \"crm\" }}\n"
        ))
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--rate", "0", "--limit", "5"]).exits(1);
    let out = run.stdout();
    assert!(
        out.contains("The canary failed: 5 of the 5 rows sent were not created"),
        "{}",
        run.text()
    );
    assert!(!out.contains("Send the rest"), "{out}");
    // A canary that went well still says how to send the rest.
    let good = Scenario::new()
        .export(40)
        .sandbox(SandboxConfig::default())
        .await;
    let run = good.send(&["--rate", "0", "--limit", "5"]).exits(0);
    assert!(
        run.stdout().contains("Send the rest with:"),
        "{}",
        run.text()
    );
    s.shutdown().await;
    good.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_for_excel_have_a_bom_and_the_inputs_delimiter_and_read_back() {
    let n = 12;
    let s = Scenario::new()
        .input("calls.csv", export(n).replace(',', ";"))
        .sandbox(SandboxConfig::default())
        .await;
    let args = [
        "--rate",
        "0",
        "--delimiter",
        ";",
        "--results-format",
        "excel",
    ];
    s.send(&[&args[..], &["--limit", "3"]].concat()).exits(0);
    // --resume appends to it: its header is found behind the BOM.
    s.send(&[&args[..], &["--resume"]].concat()).exits(1);
    let bytes = std::fs::read(s.results_path()).unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBFRef;First;Last;"),
        "a BOM, `;`"
    );
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    assert_eq!(text.matches("digidesk_row").count(), 1, "one header");
    assert_eq!(text.lines().count(), n + 1, "every row once:\n{text}");
    // retry reads it back: the BOM stripped, `;` found in its header.
    let run = s.retry(&["--only", "invalid", "--rate", "0"]).exits(1);
    assert_eq!(
        rows_of(&run.results()),
        BTreeSet::from([10]),
        "{}",
        run.text()
    );
    // The default stays UTF-8, comma, no BOM.
    let plain = Scenario::new()
        .export(3)
        .sandbox(SandboxConfig::default())
        .await;
    plain.send(&["--rate", "0"]).exits(0);
    let bytes = std::fs::read(plain.results_path()).unwrap();
    assert!(bytes.starts_with(b"Ref,First,Last,"));
    s.shutdown().await;
    plain.shutdown().await;
}

#[test]
fn a_text_where_a_column_goes_gets_a_hint_to_write_value() {
    let s = Scenario::new().export(3).mapping(MAPPING.replace(
        "campaign_name = { value = \"Post-call survey\" }",
        "campaign_name = \"Post-call survey\"",
    ));
    let run = s.check(&[]).exits(2);
    assert!(
        run.stderr().contains(
            "to send this text as is, write `campaign_name = { value = \"Post-call survey\" }`"
        ),
        "{}",
        run.text()
    );
}

#[test]
fn retry_of_a_file_that_is_not_a_results_file_names_it() {
    let s = Scenario::new().export(3).endpoint("http://127.0.0.1:9/");
    let run = s
        .run(
            s.bin()
                .args(["retry", "calls.csv", "--mapping", "map.toml"])
                .args(["--endpoint", "http://127.0.0.1:9/"]),
        )
        .exits(2);
    assert!(
        run.stderr()
            .contains("calls.csv is not a results file of digidesk-upload"),
        "{}",
        run.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_part_way_counts_the_rows_really_not_sent() {
    use std::io::Write as _;
    // A compressed export cut short: reading fails part-way, after the rows
    // it could read.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(export(52).as_bytes()).unwrap();
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() / 2);
    let s = Scenario::new()
        .input("calls.csv.gz", bytes)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--rate", "0"]).exits(3);
    // Rows 1 to 16 were read and decided; row 17 could not be read.
    assert!(run.stdout().contains("(around row 17)"), "{}", run.text());
    assert!(
        run.stdout().contains("1 rows were not sent"),
        "{}",
        run.text()
    );
    assert_eq!(s.accepted().len(), 15, "the rows read were sent");
    s.shutdown().await;
}
