//! The shapes real exports come in, with no mapping for them: Excel's
//! `sep=` line, a report's footer, UTF-16 with a byte-order mark, a byte not
//! valid in the encoding, and a quote that is never closed. Each is sent to
//! the sandbox and checked against what it received.

use crate::common::*;
use crate::memory::peak_rss;

/// Row `i` of [`export`], with `delimiter` between the fields.
fn row(i: usize, delimiter: &str) -> String {
    let fields = [
        format!("R{i}"),
        "Zoë".into(),
        format!("Smith {i}"),
        mobile(i),
        "Billing, enquiry".into(),
        String::new(),
    ];
    if delimiter == "," {
        let quoted: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
        quoted.join(",")
    } else {
        fields.join(delimiter)
    }
}

const HEADER: &str = "Ref,First,Last,Phone,Reason,Opt Out";

/// Row `i` with no quotes at all (its Reason is "Billing"), so that a quote
/// added to it is the only one.
fn plain(i: usize) -> String {
    format!("R{i},Zoë,Smith {i},{},Billing,", mobile(i))
}

/// The body for [`plain`]`(i)`.
fn plain_body(i: usize) -> serde_json::Value {
    let mut body = expected_body(i);
    body["misc_data"]["Reason"] = "Billing".into();
    body
}

/// The bodies the sandbox accepted, by `account_number`, in row order.
fn bodies(s: &Scenario) -> Vec<serde_json::Value> {
    let mut accepted: Vec<serde_json::Value> = s.accepted().into_iter().map(|a| a.body).collect();
    accepted.sort_by_key(|b| {
        b["account_number"].as_str().unwrap()[1..]
            .parse::<u64>()
            .unwrap()
    });
    accepted
}

/// A results file's rows in input order (they are written as decided).
fn in_order(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|r| r["digidesk_row"].parse::<u64>().unwrap());
    rows
}

fn summary_json(s: &Scenario) -> serde_json::Value {
    let text = std::fs::read_to_string(s.path("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_sep_line_sets_the_delimiter_and_is_not_the_header() {
    let mut csv = format!("sep=;\r\n{}\r\n", HEADER.replace(',', ";"));
    for i in 1..=3 {
        csv.push_str(&format!("{}\r\n", row(i, ";")));
    }
    let s = Scenario::new()
        .input("excel.csv", csv)
        .sandbox(SandboxConfig::default())
        .await;
    let out = s.check(&[]).exits(0).stdout();
    assert!(out.contains("sendable           3"), "{out}");
    assert!(out.contains("\"sep=\" sets the delimiter: ';'"), "{out}");
    // The file's own declaration wins over --delimiter, as a byte-order
    // mark wins over --encoding.
    let run = s.send(&["--rate", "0", "--delimiter", ","]).exits(0);
    assert_eq!(bodies(&s), (1..=3).map(expected_body).collect::<Vec<_>>());
    let results = std::fs::read_to_string(run.results_path()).unwrap();
    assert!(
        results.starts_with(&format!("{HEADER},digidesk_row,")),
        "{results}"
    );
    assert_eq!(run.results().len(), 3);
    s.shutdown().await;
}

/// A Salesforce report export ("Details Only") ends in a footer.
fn salesforce(rows: &[String]) -> String {
    let mut csv = format!("\"{}\"\n", HEADER.replace(',', "\",\""));
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    csv.push_str(&format!(
        "\n\"\"\n\"Grand Totals ({} records)\"\n\"\"\n\"Confidential Information - Do Not Distribute\"\n\"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\"\n",
        rows.len()
    ));
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_footer_is_ignored_and_counted_so_a_nightly_job_exits_0() {
    let rows: Vec<String> = (1..=4).map(|i| row(i, ",")).collect();
    let s = Scenario::new()
        .input("report.csv", salesforce(&rows))
        .sandbox(SandboxConfig::default())
        .await;
    let out = s.check(&[]).exits(0).stdout();
    assert!(out.contains("rows               4"), "{out}");
    assert!(out.contains("invalid            0"), "{out}");
    assert!(out.contains("ignored            5"), "{out}");
    assert!(
        out.contains("footer after the data (lines 7-11, 5 records)"),
        "{out}"
    );

    let run = s
        .send(&["--rate", "0", "--summary-json", "summary.json"])
        .exits(0);
    assert_eq!(bodies(&s), (1..=4).map(expected_body).collect::<Vec<_>>());
    let results = in_order(run.results());
    assert_eq!(results.len(), 4, "no footer line in the results");
    assert!(results.iter().all(|r| r["digidesk_status"] == "created"));
    let out = run.stdout();
    assert!(out.contains("ignored             5"), "{out}");
    assert!(out.contains("footer after the data"), "{out}");
    let json = summary_json(&s);
    assert_eq!(json["ignored"]["footer"], 5, "{json}");
    assert_eq!(json["exit_code"], 0, "{json}");
    s.shutdown().await;
}

#[test]
fn a_short_row_in_the_middle_is_still_invalid() {
    let rows = vec![
        row(1, ","),
        row(2, ","),
        "\"Grand Totals (2 records)\"".to_string(),
        row(4, ","),
    ];
    let s = Scenario::new().input("report.csv", salesforce(&rows));
    let out = s.check(&[]).exits(1).stdout();
    assert!(out.contains("invalid            1"), "{out}");
    assert!(out.contains("ignored            5"), "{out}");
    assert!(
        out.contains("row has 1 fields, the header has 6  (rows 3)"),
        "{out}"
    );
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut bytes = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        let b = if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        };
        bytes.extend_from_slice(&b);
    }
    bytes
}

/// Excel's "Unicode Text": UTF-16LE with a byte-order mark, tab-separated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf16_with_a_byte_order_mark_is_read_as_utf16_whatever_encoding_says() {
    let mut text = format!("{}\r\n", HEADER.replace(',', "\t"));
    for i in 1..=3 {
        text.push_str(&format!("{}\r\n", row(i, "\t")));
    }
    for (big_endian, results) in [(false, "le.csv"), (true, "be.csv")] {
        let s = Scenario::new()
            .input("unicode.txt", utf16(&text, big_endian))
            .sandbox(SandboxConfig::default())
            .await;
        let run = s
            .send(&[
                "--rate",
                "0",
                "--encoding",
                "windows-1252",
                "--delimiter",
                "tab",
                "--results",
                results,
            ])
            .exits(0);
        assert_eq!(bodies(&s), (1..=3).map(expected_body).collect::<Vec<_>>());
        assert_eq!(run.results().len(), 3);
        s.shutdown().await;
    }
    // Without a byte-order mark, the hint is UTF-16's, never windows-1252.
    let no_bom = utf16(&text, false)[2..].to_vec();
    let err = Scenario::new()
        .input("unicode.txt", no_bom)
        .check(&["--delimiter", "tab"])
        .exits(2)
        .stderr();
    assert!(err.contains("--encoding utf-16le"), "{err}");
    assert!(!err.contains("windows-1252"), "{err}");
}

/// A byte that is not UTF-8 in a column the mapping does not use is a
/// warning (the row is sent); in one it uses, that row is invalid and the
/// run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_byte_is_a_warning_in_an_unused_column_and_invalid_in_a_used_one() {
    let mut csv = format!("{HEADER},Notes\n").into_bytes();
    for i in 1..=4 {
        let mut line = format!("{},", row(i, ",")).into_bytes();
        match i {
            2 => line.extend_from_slice(b"caf\xe9 au lait"),
            _ => line.extend_from_slice(b"fine"),
        }
        line.push(b'\n');
        if i == 3 {
            // In "Last", which customer_name's template uses.
            let at = line.windows(5).position(|w| w == b"Smith").unwrap();
            line[at + 1] = 0xE9;
        }
        csv.extend_from_slice(&line);
    }
    let s = Scenario::new()
        .input("mixed.csv", &csv)
        .sandbox(SandboxConfig::default())
        .await;
    let reason = "column \"Last\" holds bytes that are not valid UTF-8 (byte 0xE9 at byte offset 1 of the value); the export is probably in another encoding: try --encoding windows-1252";
    let warning = "warning: 1 row had bytes that are not valid UTF-8, replaced by \u{FFFD} in columns the mapping does not use: \"Notes\" (1)";
    let out = s.check(&[]).exits(1).stdout();
    assert!(out.contains("sendable           3"), "{out}");
    assert!(
        out.contains(&format!("{reason} (Excel on Windows writes it)  (rows 3)")),
        "{out}"
    );
    assert!(out.contains(warning), "{out}");

    let run = s
        .send(&["--rate", "0", "--summary-json", "summary.json"])
        .exits(1);
    let sent: Vec<serde_json::Value> = [1, 2, 4].into_iter().map(expected_body).collect();
    assert_eq!(bodies(&s), sent);
    let results = in_order(run.results());
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["Notes"], "caf\u{FFFD} au lait");
    assert_eq!(results[2]["digidesk_status"], "invalid");
    assert!(
        results[2]["digidesk_errors"].contains(reason),
        "{:?}",
        results[2]
    );
    assert!(run.stdout().contains(warning), "{}", run.stdout());
    let json = summary_json(&s);
    assert_eq!(json["replaced"]["rows"], 1, "{json}");
    assert_eq!(json["replaced"]["columns"]["Notes"], 1, "{json}");
    s.shutdown().await;
}

/// An unclosed quote in row 10 of 12: row 10 is invalid, naming the line
/// that opened the quote and the lines it took; rows 11 and 12 are not
/// silently folded into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclosed_quote_is_reported_with_the_row_that_opened_it_and_its_lines() {
    let mut csv = format!("{HEADER}\n");
    for i in 1..=12 {
        let line = match i {
            10 => plain(i).replacen("Smith 10", "\"Smith 10", 1),
            _ => plain(i),
        };
        csv.push_str(&line);
        csv.push('\n');
    }
    let s = Scenario::new()
        .input("stray.csv", csv)
        .sandbox(SandboxConfig::default())
        .await;
    let reason = "a quoted field in the record starting on line 11 is never closed: it runs to the end of the input and takes lines 11-13 (3 lines), whose rows were not read";
    let out = s.check(&[]).exits(1).stdout();
    assert!(out.contains(&format!("{reason}; close the quote")), "{out}");
    assert!(out.contains("(rows 10)"), "{out}");

    let run = s.send(&["--rate", "0"]).exits(1);
    assert_eq!(bodies(&s), (1..=9).map(plain_body).collect::<Vec<_>>());
    let results = in_order(run.results());
    assert_eq!(results.len(), 10);
    assert_eq!(results[9]["digidesk_row"], "10");
    assert_eq!(results[9]["digidesk_status"], "invalid");
    assert!(
        results[9]["digidesk_errors"].contains(reason),
        "{:?}",
        results[9]
    );
    assert!(run.stdout().contains(reason), "{}", run.stdout());
    s.shutdown().await;
}

/// Two stray quotes fold rows 5 to 7 into one field; the width happens to
/// fit, and the record is still invalid, never sent with rows inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_folded_into_one_field_are_never_sent_as_one() {
    let mut csv = format!("{HEADER}\n");
    for i in 1..=9 {
        let line = match i {
            5 => plain(i).replacen("Billing", "\"Billing", 1),
            7 => plain(i).replacen("Billing", "Billing\"", 1),
            _ => plain(i),
        };
        csv.push_str(&line);
        csv.push('\n');
    }
    let s = Scenario::new()
        .input("folded.csv", csv)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--rate", "0"]).exits(1);
    let sent: Vec<serde_json::Value> = [1, 2, 3, 4, 8, 9].into_iter().map(plain_body).collect();
    assert_eq!(bodies(&s), sent);
    let results = in_order(run.results());
    assert_eq!(results.len(), 7, "rows 1-4, the folded record, R8, R9");
    assert_eq!(results[5]["Ref"], "R8");
    assert_eq!(results[4]["digidesk_status"], "invalid");
    assert!(
        results[4]["digidesk_errors"]
            .contains("a quoted field in the record starting on line 6 takes lines 6-8 (3 lines) that look like rows of the export"),
        "{:?}",
        results[4]
    );
    s.shutdown().await;
}

/// One stray quote near the start of a large file: the field is capped, so
/// memory stays flat, and the report names the line that opened it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stray_quote_in_a_large_file_keeps_memory_flat() {
    let w = Work::new();
    let mapping = w.write("map.toml", MAPPING);
    let write = |name: &str, rows: usize| {
        let mut csv = format!("{HEADER}\n1,\"stray,x,07400 100001,y,\n");
        for i in 2..=rows {
            csv.push_str(&format!("{} and a note long enough to matter\n", plain(i)));
        }
        w.write(name, csv)
    };
    let small = write("small.csv", 1_000);
    let large = write("large.csv", 300_000);
    let check = |input: &std::path::Path| {
        peak_rss(bin().arg("check").arg(input).arg("--mapping").arg(&mapping))
    };
    let (code_s, rss_s) = check(&small);
    let (code_l, rss_l) = check(&large);
    assert_eq!((code_s, code_l), (1, 1));
    assert!(
        rss_l < rss_s + 6 * 1024,
        "{rss_s} KiB for a stray quote in 1,000 rows, {rss_l} KiB in 300,000"
    );
    let out = run(bin()
        .arg("check")
        .arg(&large)
        .arg("--mapping")
        .arg(&mapping));
    let out = text(&out);
    assert!(
        out.contains("a quoted field in the record starting on line 2 is never closed: it runs to the end of the input and takes lines 2-300,001 (300,000 lines)"),
        "{out}"
    );
}
