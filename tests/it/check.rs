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
fn invalid_utf8_exits_2_naming_the_row_and_suggesting_an_encoding() {
    let mut bytes = b"Ref,First,Last,Phone,Reason,Opt Out\nR1,A,B,07400 100001,x,\n".to_vec();
    bytes.extend_from_slice(b"R2,Ren\xe9e,B,07400 100002,x,\n");
    let s = Scenario::new().input("latin.csv", &bytes);
    let err = s.check(&[]).exits(2).stderr();
    assert!(
        err.contains("row 2")
            && err.contains("\"First\"")
            && err.contains("--encoding windows-1252"),
        "{err}"
    );
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
