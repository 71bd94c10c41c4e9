//! The constructs for real exports, from mapping text to a row's decision.

use super::*;
use crate::request::SurveyRequest;

const CALLS: [&str; 10] = [
    "Call ID",
    "Direction",
    "From Number",
    "To Number",
    "Associated Contact",
    "Start",
    "Duration",
    "Queue",
    "ParentCallSid",
    "Status",
];

fn plan_for(toml: &str, headers: &[&str]) -> Result<Plan, MappingError> {
    let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    Plan::compile(&Mapping::parse(toml, "m.toml")?, &headers, "in.csv")
}

fn plan(toml: &str) -> Plan {
    plan_for(toml, &CALLS).unwrap_or_else(|e| panic!("{e}"))
}

/// A call-log row; `cells` overrides columns by name.
fn call(cells: &[(&str, &str)]) -> csv::StringRecord {
    let mut row = vec![
        "c1",
        "Inbound",
        "+1 415 555 0199",
        "+1 415 555 0100",
        "Jo Bloggs (jo@x.co.nz);Ann (ann@y.nz)",
        "25.04.13 15:15",
        "42",
        "Sales",
        "",
        "completed",
    ];
    for (name, value) in cells {
        let i = CALLS.iter().position(|c| c == name).expect("a call column");
        row[i] = value;
    }
    csv::StringRecord::from(row)
}

fn sent(d: Decision) -> SurveyRequest {
    match d {
        Decision::Send(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn invalid(d: Decision) -> Vec<String> {
    match d {
        Decision::Invalid(r) => r,
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn load_error(toml: &str) -> MappingError {
    match Mapping::parse(toml, "m.toml") {
        Ok(_) => panic!("expected an error for {toml}"),
        Err(e) => e,
    }
}

const BY_DIRECTION: &str = r#"
[fields]
customer_contact = { when = [
    { if = { column = "Direction", equals = ["Inbound", "in"] },  then = "From Number" },
    { if = { column = "Direction", equals = ["Outbound"] }, then = { column = "To Number" } },
] }
campaign_name = { value = "Calls" }
[contact]
phone_region = "US"
own_numbers = ["(415) 555-0100"]
"#;

#[test]
fn when_chooses_the_customer_by_direction() {
    let p = plan(BY_DIRECTION);
    let inbound = sent(p.apply(&call(&[("Direction", " INBOUND ")])));
    assert_eq!(inbound.customer_contact, "+14155550199");
    let outbound = sent(p.apply(&call(&[
        ("Direction", "Outbound"),
        ("From Number", "+1 415 555 0100"),
        ("To Number", "+1 415 555 0123"),
    ])));
    assert_eq!(outbound.customer_contact, "+14155550123");
}

#[test]
fn when_without_a_rule_that_holds_and_no_else_names_the_columns_tested() {
    let p = plan(BY_DIRECTION);
    for (direction, shown) in [("Transfer", "\"Transfer\""), ("", "\"\"")] {
        let reasons = invalid(p.apply(&call(&[("Direction", direction)])));
        assert_eq!(
            reasons,
            vec![format!(
                "customer_contact: no when rule holds and there is no else (Direction = {shown})"
            )],
            "one reason, not also \"required but empty\""
        );
    }
    let with_else = plan(&BY_DIRECTION.replace(
        "] }\ncampaign_name",
        "], else = \"To Number\" }\ncampaign_name",
    ));
    let r = sent(with_else.apply(&call(&[
        ("Direction", "Transfer"),
        ("To Number", "+1 415 555 0177"),
    ])));
    assert_eq!(r.customer_contact, "+14155550177");
}

#[test]
fn the_companys_own_number_is_never_the_customer() {
    let p = plan(BY_DIRECTION);
    // Inbound, but From is the company's line, written another way.
    let reasons = invalid(p.apply(&call(&[("From Number", "415.555.0100")])));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("the company's own numbers"),
        "{reasons:?}"
    );
    assert!(!reasons[0].contains("0100"), "no value in the reason");
    let e = load_error(&BY_DIRECTION.replace("(415) 555-0100", "reception"));
    assert!(
        e.to_string()
            .contains("[contact] own_numbers \"reception\""),
        "{e}"
    );
    assert_eq!(e.position().map(|p| p.line), Some(10), "{e}");
}

#[test]
fn extract_takes_part_of_any_value() {
    let p = plan(
        r#"
[fields]
customer_contact = { column = "Associated Contact", extract = '\(([^)]+@[^)]+)\)' }
campaign_name = { value = "Calls" }
customer_name = { column = "Associated Contact", extract = '^\s*([^(;]+?)\s*\(' }
agent_name = { column = "Queue", extract = '^\w+' }
account_number = { column = "Call ID", extract = '^X-(\d+)', default = "none" }
"#,
    );
    let r = sent(p.apply(&call(&[])));
    assert_eq!(r.customer_contact, "jo@x.co.nz");
    assert_eq!(r.customer_name.as_deref(), Some("Jo Bloggs"));
    assert_eq!(
        r.agent_name.as_deref(),
        Some("Sales"),
        "whole match without a group"
    );
    assert_eq!(
        r.account_number.as_deref(),
        Some("none"),
        "no match is empty, then the default"
    );
    let r = sent(p.apply(&call(&[
        ("Associated Contact", "Ann (ann@y.nz)"),
        ("Queue", ""),
    ])));
    assert_eq!(r.agent_name, None, "an empty value stays empty");
    let reasons = invalid(p.apply(&call(&[("Associated Contact", "no brackets")])));
    assert_eq!(reasons, vec!["customer_contact is required but empty"]);
}

#[test]
fn time_rewrites_a_value_and_names_column_value_and_pattern_when_it_does_not_parse() {
    let p = plan(
        r#"
[fields]
customer_contact = "From Number"
campaign_name = { value = "Calls" }
account_number = { column = "Start", time = { from = "%d.%m.%y %H:%M", to = "%Y-%m-%d %H:%M" } }
[misc_data.fields]
"Call date" = { template = "{Start}", extract = '^(\S+)', time = { from = "%d.%m.%y", to = "%Y-%m-%d" } }
"Kind" = { when = [ { if = { column = "Duration", less_than = 60 }, then = { value = "short" } } ], else = { value = "long" } }
"#,
    );
    let r = sent(p.apply(&call(&[])));
    assert_eq!(r.account_number.as_deref(), Some("2013-04-25 15:15"));
    assert_eq!(
        r.misc_data,
        vec![
            ("Call date".to_string(), "2013-04-25".to_string()),
            ("Kind".to_string(), "short".to_string()),
        ]
    );
    let r = sent(p.apply(&call(&[("Start", ""), ("Duration", "n/a")])));
    assert_eq!(r.account_number, None, "an empty value is not a time error");
    assert_eq!(
        r.misc_data,
        vec![("Kind".to_string(), "long".to_string())],
        "a non-number is not less than 60"
    );
    let reasons = invalid(p.apply(&call(&[("Start", "2013-04-25")])));
    assert_eq!(
        reasons,
        vec![
            "account_number: \"2013-04-25\" in column \"Start\" does not match the time pattern \"%d.%m.%y %H:%M\"",
            "misc_data \"Call date\": \"2013-04-25\" in template \"{Start}\" does not match the time pattern \"%d.%m.%y\"",
        ]
    );
}

const SKIPS: &str = r#"
[fields]
customer_contact = "From Number"
campaign_name = { value = "Calls" }
[skip]
rules = [
  { column = "Status", equals = ["Opted out"] },
  { column = "ParentCallSid", empty = false },
  { column = "Queue", matches = "^(Test|QA)" },
  { column = "Duration", less_than = 10 },
  { all = [ { column = "Direction", equals = ["Missed"] }, { not = { column = "To Number", empty = true } } ] },
  { any = [ { column = "Queue", equals = ["Internal"] }, { column = "Duration", greater_than = 3600 } ] },
]
only = { column = "Status", equals = ["completed", "Opted out"] }
"#;

#[test]
fn skip_rules_and_only_name_the_rule() {
    let p = plan(SKIPS);
    let cases: [(&[(&str, &str)], &str); 8] = [
        (
            &[("Status", " opted OUT ")],
            "skipped by [skip]: Status = opted OUT",
        ),
        (
            &[("ParentCallSid", "CA123")],
            "skipped by [skip] rule 2: ParentCallSid is not empty",
        ),
        (
            &[("Queue", "QA night")],
            "skipped by [skip] rule 3: Queue matches \"^(Test|QA)\"",
        ),
        (
            &[("Duration", "9")],
            "skipped by [skip] rule 4: Duration < 10",
        ),
        (
            &[("Direction", "missed")],
            "skipped by [skip] rule 5: all of (Direction = \"missed\"; not (To Number is empty))",
        ),
        (
            &[("Duration", "3601")],
            "skipped by [skip] rule 6: any of (Queue = \"internal\"; Duration > 3600)",
        ),
        (
            &[("Queue", "internal")],
            "skipped by [skip] rule 6: any of (Queue = \"internal\"; Duration > 3600)",
        ),
        (
            &[("Status", "busy")],
            "skipped by [skip] only: Status = \"completed\" or \"opted out\" does not hold",
        ),
    ];
    for (cells, want) in cases {
        assert_eq!(
            p.apply(&call(cells)),
            Decision::Skip(want.to_string()),
            "{cells:?}"
        );
    }
    // No rule holds: a short call whose duration is not a number is sent.
    let r = sent(p.apply(&call(&[
        ("Duration", "unknown"),
        ("Direction", "Missed"),
        ("To Number", ""),
    ])));
    assert_eq!(r.customer_contact, "+14155550199");
}

#[test]
fn hash_n_reaches_a_column_by_position_even_when_names_repeat() {
    let headers = ["Phone", "Name", "Phone"];
    let toml = "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"C\" }\n";
    let e = plan_for(toml, &headers).unwrap_err().to_string();
    assert!(
        e.contains("has 2 times (#1, #3): write #1 or #3 to say which one"),
        "{e}"
    );
    let p = plan_for(&toml.replace("\"Phone\"", "\"#3\""), &headers).unwrap();
    let row = csv::StringRecord::from(vec!["+1 415 555 0100", "Jo", "+44 7911 123456"]);
    assert_eq!(sent(p.apply(&row)).customer_contact, "+447911123456");
    let p = plan_for(
        "[fields]\ncustomer_contact = \"#1\"\ncampaign_name = { value = \"C\" }\ncustomer_name = { template = \"{#2}!\" }\n",
        &["#1", "#2"],
    )
    .unwrap();
    let r = sent(p.apply(&csv::StringRecord::from(vec!["+447911123456", "Jo"])));
    assert_eq!(
        r.customer_name.as_deref(),
        Some("Jo!"),
        "headerless names work in templates"
    );
    for bad in ["#4", "#0"] {
        let e = plan_for(&toml.replace("\"Phone\"", &format!("\"{bad}\"")), &headers)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("uses column {bad}, but in.csv has 3 columns")),
            "{e}"
        );
    }
}

#[test]
fn a_condition_on_a_missing_column_stops_before_anything_is_sent() {
    let e = plan_for(SKIPS, &CALLS[..9]).unwrap_err().to_string();
    assert!(
        e.contains(
            "[skip] only uses column \"Status\", which in.csv does not have; did you mean \"Start\"? (mapping line 14)"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "[skip] rule 1 uses column \"Status\", which in.csv does not have; did you mean \"Start\"? (mapping line 7)"
        ),
        "{e}"
    );
    let e = plan_for(BY_DIRECTION, &["From Number", "To Number"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[fields] customer_contact uses column \"Direction\""),
        "{e}"
    );
}

#[test]
fn input_and_dedupe_are_read_and_checked() {
    let m = Mapping::parse(
        "[input]\ndelimiter = \";\"\nencoding = \"windows-1252\"\nheader = false\n[fields]\ncustomer_contact = \"#1\"\ncampaign_name = { value = \"C\" }\n[dedupe]\nkey = \"{#2}-{#1}\"\ncontact_within = \"30d\"\n",
        "m.toml",
    )
    .unwrap();
    assert_eq!(
        *m.input(),
        InputShape {
            delimiter: Some(b';'),
            encoding: Some(encoding_rs::WINDOWS_1252),
            header: false
        }
    );
    assert_eq!(
        m.dedupe().contact_within,
        Some(std::time::Duration::from_secs(30 * 86400))
    );
    assert!(m.dedupe().has_key());
    let p = Plan::compile(&m, &["#1".into(), "#2".into()], "in").unwrap();
    let row = csv::StringRecord::from(vec!["+447911123456", " c9 "]);
    assert_eq!(p.dedupe_key(&row).as_deref(), Some("c9-+447911123456"));
    let plain = Mapping::parse(
        "[fields]\ncustomer_contact = \"A\"\ncampaign_name = \"B\"\n",
        "m.toml",
    )
    .unwrap();
    assert_eq!(*plain.input(), InputShape::default());
    assert!(plain.input().header);
    assert_eq!(*plain.dedupe(), Dedupe::default());
}

#[test]
fn new_mistakes_point_at_the_line_and_say_what_to_write() {
    let head = "[fields]\ncustomer_contact = \"A\"\ncampaign_name = \"B\"\n";
    let cases = [
        ("customer_name = { column = \"N\", extract = '([a-z' }\n", 4, "extract \"([a-z\" is not a regular expression"),
        ("[skip]\nrules = [\n  { column = \"Q\", matches = '(' },\n]\n", 6, "matches \"(\" is not a regular expression"),
        ("customer_name = { column = \"N\", time = { from = \"%d.%m.%Q\", to = \"%Y\" } }\n", 4, "not a valid time pattern"),
        ("customer_name = { column = \"N\", time = { from = \"%H:%M\", to = \"%Y-%m-%d\" } }\n", 4, "does not read"),
        ("customer_name = { column = \"N\", time = { from = \"%H:%M\" } }\n", 4, "missing field `to`"),
        ("customer_name = { column = \"N\", else = \"M\" }\n", 4, "else goes with when"),
        ("customer_name = { when = [] }\n", 4, "when needs at least one rule"),
        ("customer_name = { when = [ { if = { column = \"D\" }, then = \"N\" } ] }\n", 4, "say what to test \"D\" for"),
        ("customer_name = { when = [ { if = { column = \"D\", equals = [\"x\"], empty = true }, then = \"N\" } ] }\n", 4, "one test per condition (equals, empty here)"),
        ("customer_name = { when = [ { if = { equals = [\"x\"] }, then = \"N\" } ] }\n", 4, "equals needs the column it tests"),
        ("customer_name = { when = [ { if = { column = \"D\", not = { column = \"E\", empty = true } }, then = \"N\" } ] }\n", 4, "not stands alone"),
        ("customer_name = { when = [ { if = { colum = \"D\", empty = true }, then = \"N\" } ] }\n", 4, "did you mean column?"),
        ("customer_name = { when = [ { fi = { column = \"D\", empty = true }, then = \"N\" } ] }\n", 4, "unknown key \"fi\""),
        ("[skip]\nrules = [ { column = \"D\", less_than = \"ten\" } ]\n", 5, "expected a number such as 10"),
        ("[skip]\nrules = [ { any = [] } ]\n", 5, "any needs at least one condition"),
        ("[skip]\nonly = { }\n", 5, "a condition is one of"),
        ("[input]\ndelimiter = \";;\"\n", 5, "[input] delimiter \";;\" must be one ASCII character"),
        ("[input]\nencoding = \"klingon\"\n", 5, "not an encoding I know"),
        ("[input]\nheadr = false\n", 5, "did you mean header?"),
        ("[dedupe]\ncontact_within = \"a month\"\n", 5, "such as \"30d\""),
        ("[dedupe]\nkey = \"Call ID\"\n", 5, "it names no {column}"),
        ("[misc_data]\ncolumns = [\"K\"]\n[misc_data.fields]\nK = \"L\"\n", 7, "already has this key"),
    ];
    for (tail, line, want) in cases {
        let e = load_error(&format!("{head}{tail}"));
        let text = e.to_string();
        assert!(text.contains(want), "{tail:?}: {text}");
        assert!(text.starts_with("m.toml: "), "{text}");
        assert_eq!(e.position().map(|p| p.line), Some(line), "{tail:?}: {text}");
    }
}

#[test]
fn the_mapping_keeps_the_bytes_it_was_read_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    let text = "# calls\r\n[fields]\r\ncustomer_contact = \"A\"\r\ncampaign_name = \"B\"\r\n";
    std::fs::write(&path, text).unwrap();
    let m = Mapping::load(&path).unwrap();
    assert_eq!(m.bytes(), text.as_bytes());
    let e = Mapping::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, MappingError::Read { .. }), "{e}");
    assert!(
        std::error::Error::source(&e).is_some(),
        "keeps the io error"
    );
    std::fs::write(&path, b"[fields]\ncustomer_contact = \"\xff\"\n").unwrap();
    let e = Mapping::load(&path).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    assert_eq!(e.position().map(|p| p.line), Some(2));
}

#[test]
fn a_cell_is_trimmed_of_every_kind_of_space() {
    let cells = [
        "",
        "a",
        " ",
        " a",
        "a ",
        "ab",
        "a b",
        "\u{a0}a",
        "a\u{3000}",
        "\tx\t",
        "é",
        "x\u{2003}",
        "\u{2003}",
        "é ",
        " é",
        "+44 7911",
    ];
    let row = csv::StringRecord::from(cells.to_vec());
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(super::cell(&row, i), c.trim(), "{c:?}");
    }
    assert_eq!(super::cell(&row, cells.len()), "", "past the row's end");
}
