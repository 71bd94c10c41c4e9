//! The mapping constructs for real exports, end to end: `[input]` instead of
//! flags, a headerless file, a call log whose customer depends on the
//! direction, and what reaches the sandbox.

use crate::common::*;

/// An Asterisk-style headerless, semicolon-delimited, windows-1252 call log:
/// direction, caller, callee, start, duration, queue.
const CALL_LOG: &[u8] = b"in;+1 415 555 0142;+1 415 555 0100;25.04.13 15:15;42;Sales;Ren\xe9e\n\
out;+1 415 555 0100;+1 415 555 0177;25.04.13 16:00;7;Sales;Bob\n\
out;+1 415 555 0100;+1 415 555 0178;26.04.13 09:30;120;QA night;Ann\n\
in;+1 415 555 0100;+1 415 555 0100;26.04.13 10:00;30;Sales;Loop\n\
transfer;+1 415 555 0150;+1 415 555 0100;26.04.13 11:00;30;Sales;Tom\n\
out;+1 415 555 0100;+1 415 555 0179;not a date;30;Sales;Eve\n";

const MAPPING: &str = r##"
[input]
delimiter = ";"
encoding = "windows-1252"
header = false

[fields]
customer_contact = { when = [
    { if = { column = "#1", equals = ["in"] }, then = "#2" },
    { if = { column = "#1", equals = ["out"] }, then = { column = "#3" } },
] }
campaign_name = { value = "Calls" }
customer_name = "#7"
account_number = { column = "#4", time = { from = "%d.%m.%y %H:%M", to = "%Y-%m-%d %H:%M" } }

[contact]
phone_region = "US"
own_numbers = ["(415) 555-0100"]

[misc_data.fields]
"Call day" = { column = "#4", extract = '^(\S+)', time = { from = "%d.%m.%y", to = "%d/%m/%Y" } }

[skip]
rules = [
  { column = "#5", less_than = 10 },
  { column = "#6", matches = "^(Test|QA)" },
]
"##;

#[test]
fn the_mappings_input_table_replaces_flags_and_the_command_line_overrides_it() {
    let s = Scenario::new()
        .input("Master.csv", CALL_LOG)
        .mapping(MAPPING);
    let out = s.check(&["--show", "1"]).exits(1).stdout();
    assert!(out.contains("rows               6"), "{out}");
    assert!(out.contains("sendable           1"), "{out}");
    assert!(out.contains("skipped            2"), "{out}");
    assert!(out.contains("invalid            3"), "{out}");
    assert!(
        out.contains("\"customer_name\": \"Renée\""),
        "windows-1252 from the mapping: {out}"
    );
    assert!(
        out.contains("skipped by [skip] rule 2: #6 matches \"^(Test|QA)\""),
        "{out}"
    );
    assert!(
        out.contains(
            "customer_contact: no when rule holds and there is no else  (rows 5 #1 = \"transfer\")"
        ),
        "{out}"
    );
    assert!(
        out.contains("the value in column \"#4\" does not match the time pattern \"%d.%m.%y %H:%M\"  (rows 6 \"not a date\")"),
        "{out}"
    );
    // --delimiter wins over the mapping: a comma finds one column only.
    let err = s.check(&["--delimiter", ","]).exits(2).stderr();
    assert!(err.contains("uses column #2, but"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_log_surveys_the_customer_never_the_companys_line() {
    let s = Scenario::new()
        .input("Master.csv", CALL_LOG)
        .mapping(MAPPING)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--rate", "0"]).exits(1);
    let bodies: Vec<serde_json::Value> = s.accepted().into_iter().map(|a| a.body).collect();
    assert_eq!(
        bodies,
        vec![serde_json::json!({
            "customer_contact": "+14155550142",
            "campaign_name": "Calls",
            "customer_name": "Renée",
            "account_number": "2013-04-25 15:15",
            "misc_data": { "Call day": "25/04/2013" },
        })]
    );
    let mut results = run.results();
    results.sort_by_key(|r| r["digidesk_row"].parse::<u64>().unwrap());
    let status: Vec<&str> = results
        .iter()
        .map(|r| r["digidesk_status"].as_str())
        .collect();
    assert_eq!(
        status,
        ["created", "skipped", "skipped", "invalid", "invalid", "invalid"]
    );
    assert!(
        results[3]["digidesk_errors"].contains("the company's own numbers"),
        "{:?}",
        results[3]
    );
    s.shutdown().await;
}

#[test]
fn a_pattern_that_does_not_compile_stops_before_anything_is_read() {
    let s = Scenario::new()
        .input("Master.csv", CALL_LOG)
        .mapping(MAPPING.replace("^(Test|QA)", "^(Test|QA"));
    let err = s.check(&[]).exits(2).stderr();
    assert!(
        err.contains("[skip] rule 2: matches \"^(Test|QA\" is not a regular expression"),
        "{err}"
    );
    assert!(err.contains("(unclosed group)"), "{err}");
    assert!(err.contains("(line 26, column 30)"), "{err}");
}

/// Every mapping the README shows is one the tool accepts.
#[test]
fn the_readmes_mappings_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```toml") => block = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    let mappings: Vec<&String> = blocks.iter().filter(|b| b.contains("[fields]")).collect();
    assert!(
        mappings.len() >= 7,
        "found the README's mappings: {}",
        mappings.len()
    );
    for toml in mappings {
        if let Err(e) = digidesk_upload::mapping::Mapping::parse(toml, "README.md") {
            panic!("{e}\n{toml}");
        }
    }
}
