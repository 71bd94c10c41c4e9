//! `check` on real files: counts, bodies, grouped errors and exit codes,
//! for every input dialect.

use std::io::Write;

use crate::common::*;

#[test]
fn counts_bodies_and_grouped_errors() {
    let run = Scenario::new().export(60).check(&["--show", "2"]).exits(1);
    let s = run.stdout();
    assert!(s.contains("rows              60"), "{s}");
    assert!(s.contains("sendable          53"), "{s}");
    assert!(s.contains("skipped            2"), "{s}");
    assert!(s.contains("invalid            5"), "{s}");
    // The first bodies, exactly as they would be sent.
    let first = serde_json::to_string_pretty(&expected_body(1)).unwrap();
    assert!(s.contains(&format!("row 1:\n{first}")), "{s}");
    assert!(s.contains("row 2:\n"), "{s}");
    assert!(!s.contains("row 3:\n"), "only --show 2 bodies: {s}");
    assert!(
        s.contains("5  customer_contact is required but empty  (rows 10, 20, 30, 40, 60)"),
        "{s}"
    );
    assert!(
        s.contains("2  skipped by [skip]: Opt Out = Y  (rows 25, 50)"),
        "{s}"
    );
}

/// A large export is checked in batches (on several threads where there
/// are three cores or more); counts are whole and the examples and bodies
/// are still the first ones in the file.
#[test]
fn large_exports_report_the_first_examples_in_input_order() {
    let run = Scenario::new()
        .export(25_000)
        .check(&["--show", "1", "--examples", "3"])
        .exits(1);
    let s = run.stdout();
    assert!(s.contains("rows          25,000"), "{s}");
    assert!(s.contains("sendable      22,000"), "{s}");
    assert!(s.contains("skipped        1,000"), "{s}");
    assert!(s.contains("invalid        2,000"), "{s}");
    let first = serde_json::to_string_pretty(&expected_body(1)).unwrap();
    assert!(s.contains(&format!("row 1:\n{first}")), "{s}");
    assert!(
        s.contains("2,000  customer_contact is required but empty  (rows 10, 20, 30, ...)"),
        "{s}"
    );
    assert!(
        s.contains("1,000  skipped by [skip]: Opt Out = Y  (rows 25, 50, 75, ...)"),
        "{s}"
    );
}

#[test]
fn every_row_sendable_exits_0() {
    let mut csv = String::from("Ref,First,Last,Phone,Reason,Opt Out\n");
    for i in 1..=5 {
        csv.push_str(&format!("R{i},A,B,{},x,\n", mobile(i)));
    }
    Scenario::new().input("ok.csv", csv).check(&[]).exits(0);
}

#[test]
fn a_missing_column_exits_2_naming_it_listing_headers_and_suggesting() {
    let run = Scenario::new()
        .input(
            "calls.csv",
            "Ref,First,Last,Mobile Phone,Reason,Opt Out\nR1,A,B,07400 100001,x,\n",
        )
        .check(&[])
        .exits(2);
    let err = run.stderr();
    assert!(
        err.contains("[fields] customer_contact uses column \"Phone\""),
        "{err}"
    );
    assert!(err.contains("did you mean \"Mobile Phone\"?"), "{err}");
    assert!(
        err.contains("\"Ref\", \"First\", \"Last\", \"Mobile Phone\", \"Reason\", \"Opt Out\""),
        "{err}"
    );
}

#[test]
fn invalid_utf8_in_a_mapped_column_makes_the_row_invalid_and_suggests_an_encoding() {
    let mut bytes = b"Ref,First,Last,Phone,Reason,Opt Out\nR1,A,B,07400 100001,x,\n".to_vec();
    bytes.extend_from_slice(b"R2,Ren\xe9e,B,07400 100002,x,\n");
    let s = Scenario::new().input("latin.csv", &bytes);
    let out = s.check(&[]).exits(1).stdout();
    assert!(
        out.contains("column \"First\" holds bytes that are not valid UTF-8 (byte 0xE9 at byte offset 3 of the value)")
            && out.contains("--encoding windows-1252")
            && out.contains("(rows 2)"),
        "{out}"
    );
    assert!(out.contains("sendable           1"), "{out}");
    let out = s
        .check(&["--encoding", "windows-1252", "--show", "2"])
        .exits(0)
        .stdout();
    assert!(out.contains("\"customer_name\": \"Renée B\""), "{out}");
}

#[test]
fn semicolons_crlf_bom_quotes_and_newlines() {
    let csv = "\u{feff}Ref;First;Last;Phone;Reason;Opt Out\r\nR1;\"Smith; \"\"Jo\"\"\";B;07400 100001;\"line 1\r\nline 2, more\";\r\nR2;A;B;07400 100002;x;\r\n";
    let run = Scenario::new()
        .input("eu.csv", csv)
        .check(&["--delimiter", ";", "--show", "2"])
        .exits(0);
    let s = run.stdout();
    assert!(
        s.contains("rows               2"),
        "a quoted newline does not start a record: {s}"
    );
    assert!(
        s.contains("\"customer_name\": \"Smith; \\\"Jo\\\" B\""),
        "{s}"
    );
    assert!(
        s.contains("\"Reason\": \"line 1\\r\\nline 2, more\""),
        "{s}"
    );
}

#[test]
fn gzip_and_stdin_inputs() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(export(30).as_bytes()).unwrap();
    let run = Scenario::new()
        .input("calls.csv.gz", gz.finish().unwrap())
        .check(&[])
        .exits(1);
    assert!(run.stdout().contains("rows              30"));

    let s = Scenario::new().input_path("-");
    let run = s
        .run_with_stdin(&mut s.check_cmd(&[]), export(30).as_bytes())
        .exits(1);
    assert!(run.stdout().contains("rows              30"));
}

#[test]
fn a_row_with_the_wrong_number_of_fields_is_invalid_and_the_run_goes_on() {
    let run = Scenario::new()
        .input(
            "short.csv",
            "Ref,First,Last,Phone,Reason,Opt Out\nR1,A,B,07400 100001,x,\nR2,A,B\nR3,A,B,07400 100003,x,,extra\nR4,A,B,07400 100004,x,\n",
        )
        .check(&[])
        .exits(1);
    let s = run.stdout();
    assert!(s.contains("sendable           2"), "{s}");
    assert!(
        s.contains("row has 3 fields, the header has 6  (rows 2)"),
        "{s}"
    );
    assert!(
        s.contains("row has 7 fields, the header has 6  (rows 3)"),
        "{s}"
    );
}

#[test]
fn a_broken_mapping_exits_2_with_the_file_and_key() {
    let run = Scenario::new()
        .export(3)
        .mapping_file(
            "bad.toml",
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign = { value = \"X\" }\n",
        )
        .check(&[])
        .exits(2);
    let err = run.stderr();
    assert!(
        err.contains("bad.toml: [fields] campaign: not a DigiDesk field"),
        "{err}"
    );
    assert!(err.contains("did you mean campaign_name?"), "{err}");
}

#[test]
fn the_demo_export_and_mapping_check_as_documented() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = Scenario::new()
        .input_path(root.join("fixtures/calls.csv"))
        .mapping_path(root.join("mappings/calls.toml"))
        .check(&[])
        .exits(1);
    let s = run.stdout();
    for line in [
        "rows              60",
        "sendable          52",
        "skipped            4",
        "invalid            4",
    ] {
        assert!(s.contains(line), "{line}: {s}");
    }
}

#[test]
fn output_into_a_closed_pipe_is_not_a_crash() {
    let s = Scenario::new().export(200);
    let mut child = s
        .check_cmd(&["--show", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // as `| head -1` does once it has its line
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the exit code of the check, not a panic's 101: {}",
        text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// The report shows the values of the columns the rules test, so a value
/// no rule matches ("Opted out") is seen at once, and the values that made
/// rows invalid; neither reaches stderr, where logs go.
#[test]
fn tested_columns_values_and_offending_values_are_shown() {
    let mapping = r#"
[fields]
customer_contact = { when = [
  { if = { column = "Direction", equals = "Inbound" }, then = "From" },
  { if = { column = "Direction", equals = "Outbound" }, then = "To" },
], else = "From" }
campaign_name = { value = "Post-call survey" }
account_number = "Ref"

[contact]
phone_region = "GB"

[misc_data.fields]
"Call time" = { column = "Started", time = { from = "%d.%m.%y %H:%M", to = "%Y-%m-%d %H:%M" } }

[skip]
rules = [{ column = "Opt Out", equals = ["Y", "Yes"] }]
"#;
    let long_ref = format!("LONGREF{}", "x".repeat(293));
    let mut csv = String::from("Ref,Direction,From,To,Started,Opt Out\n");
    for i in 1..=10 {
        let (direction, opt, started, reference) = match i {
            6 => ("Outbound", "Y", "25.04.13 15:15", format!("R{i}")),
            7 | 8 => ("Inbound", "Opted out", "25.04.13 15:15", format!("R{i}")),
            9 => ("Inbound", "", "2013-04-25", format!("R{i}")),
            10 => ("Inbound", "", "25.04.13 15:15", long_ref.clone()),
            _ => ("Inbound", "", "25.04.13 15:15", format!("R{i}")),
        };
        csv.push_str(&format!(
            "{reference},{direction},{},{},{started},{opt}\n",
            mobile(i),
            mobile(100 + i)
        ));
    }
    let run = Scenario::new()
        .input("calls.csv", csv)
        .mapping(mapping)
        .check(&[])
        .exits(1);
    let s = run.stdout();
    assert!(s.contains("sendable           7"), "{s}");
    assert!(
        s.contains(concat!(
            "Values of the columns your rules test, with their rows, most frequent first:\n",
            "  Direction (when in [fields] customer_contact):\n",
            "           9  \"Inbound\"\n",
            "           1  \"Outbound\"\n",
            "  Opt Out ([skip] rule 1):\n",
            "           7  \"\"\n",
            "           2  \"Opted out\"\n",
            "           1  \"Y\"\n",
        )),
        "{s}"
    );
    assert!(
        s.contains("1  misc_data \"Call time\": the value in column \"Started\" does not match the time pattern \"%d.%m.%y %H:%M\"  (rows 9 \"2013-04-25\")"),
        "{s}"
    );
    let cut = format!("\"LONGREF{}\"...", "x".repeat(33));
    assert!(
        s.contains(&format!(
            "1  account_number is 300 characters; at most 250 are allowed  (rows 10 {cut})"
        )),
        "{s}"
    );
    let err = run.stderr();
    for private in ["Opted out", "Inbound", "2013-04-25", "LONGREF"] {
        assert!(!err.contains(private), "{private} in stderr: {err}");
    }
}
