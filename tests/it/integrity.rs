//! A run's integrity against whatever happens around it: a second process
//! on the same results file, a changed input or endpoint on `--resume`,
//! damaged results files and journals, and what a stopped run tells the
//! user (the resume command, `--summary-json`). Each test asserts on what
//! the sandbox received: no key twice, no row missing.

use std::collections::HashMap;

use crate::common::*;

/// Every row 1..=n once in the results; no survey created twice; every
/// `created` row's id is the sandbox's; a row the sandbox has is `created`
/// or `unknown`. For inputs other than [`export`].
fn assert_once(n: usize, results: &[Row], sandbox: &Sandbox) {
    let accepted = accepted_by_ref(sandbox);
    for (key, bodies) in &accepted {
        assert_eq!(bodies.len(), 1, "{key} was created {} times", bodies.len());
    }
    let mut seen = HashMap::new();
    for r in results {
        let row: usize = r["digidesk_row"].parse().expect("digidesk_row");
        assert!(
            seen.insert(row, r).is_none(),
            "row {row} twice in the results"
        );
    }
    for i in 1..=n {
        let r = seen.get(&i).unwrap_or_else(|| panic!("row {i} is missing"));
        let server = accepted.get(&r["Ref"]);
        match r["digidesk_status"].as_str() {
            "created" => {
                let (id, _) = &server.unwrap_or_else(|| panic!("row {i}: no server record"))[0];
                assert_eq!(r["digidesk_id"], id.to_string(), "row {i}");
            }
            "unknown" => {}
            other => assert!(server.is_none(), "row {i} is {other} but was created"),
        }
    }
    assert_eq!(seen.len(), n, "rows that are not in the input");
}

/// [`export`] with a wide column nobody maps: `n` rows of about 1 KiB.
fn wide_export(n: usize) -> String {
    let pad = "x".repeat(1000);
    let mut out = String::new();
    for (i, line) in export(n).lines().enumerate() {
        let extra = if i == 0 { "Notes" } else { pad.as_str() };
        out.push_str(&format!("{line},{extra}\n"));
    }
    out
}

/// The command the summary offers after "continue with:" or "Send the rest with:".
fn printed_command(out: &str, after: &str) -> Vec<String> {
    let line = out
        .lines()
        .skip_while(|l| !l.contains(after))
        .nth(1)
        .unwrap_or_else(|| panic!("no command after {after:?} in:\n{out}"));
    let words = shell_words::split(line.trim()).expect("a shell command");
    assert_eq!(words[0], "digidesk-upload", "{line}");
    words[1..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_results_file_exits_2_naming_the_first() {
    let n = 40;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig {
            latency_ms: 100,
            ..SandboxConfig::default()
        })
        .await;
    // A canary first, so that both runs below are resumes of the same run.
    s.send(&["--limit", "2", "--rate", "0"]).exits(0);
    let first = s.spawn_send(&["--resume", "--rate", "0", "--concurrency", "2"]);
    let pid = first.id().expect("its pid");
    s.server().wait_accepted(4).await;
    for second in [&["--resume"][..], &["--force"], &[]] {
        let json = s.path("second.json");
        let args = [second, &["--rate", "0", "--summary-json", "second.json"]].concat();
        let run = s.send(&args).exits(2);
        assert!(
            run.stderr().contains(&format!("process {pid} (")),
            "{second:?}: {}",
            run.text()
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(summary["exit_code"], 2, "{summary}");
        assert!(summary["stop_reason"].as_str().unwrap().contains("in use"));
    }
    let first = s.wait(first).await;
    assert_eq!(first.code(), Some(1), "{}", first.text());
    s.assert_consistent(&first.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_a_row_inserted_past_64_kib_before_sending_anything() {
    let n = 100;
    let original = wide_export(n);
    let s = Scenario::new()
        .input("calls.csv", &original)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "70", "--rate", "0"]).exits(1);
    let sent = s.accepted().len();
    let before = std::fs::read(s.results_path()).unwrap();
    // A new row 76, past the first 64 KiB, among the rows already decided.
    let mut lines: Vec<&str> = original.lines().collect();
    assert!(lines[..76].iter().map(|l| l.len() + 1).sum::<usize>() > 64 * 1024);
    let inserted = lines[3].replace("R3,", "R999,");
    lines.insert(76, &inserted);
    s.write("calls.csv", lines.join("\n") + "\n");
    let run = s.send(&["--resume", "--rate", "0"]).exits(2);
    assert!(run.stdout().contains("row 76 of"), "{}", run.text());
    assert_eq!(s.accepted().len(), sent, "nothing is sent");
    assert_eq!(std::fs::read(s.results_path()).unwrap(), before);
    // The input put back, the run goes on.
    s.write("calls.csv", &original);
    let run = s.send(&["--resume", "--rate", "0"]).exits(1);
    assert_once(n, &run.results(), s.server());
    assert_eq!(count(&run.results(), "created"), s.accepted().len());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_stdin_refuses_another_export() {
    let n = 50;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    let stdin_send = |extra: &[&str]| {
        let mut c = s.bin();
        c.args(["send", "-", "--mapping", "map.toml", "--results", "out.csv"])
            .args(["--endpoint", &s.server().endpoint(), "--rate", "0"])
            .args(extra);
        c
    };
    s.run_with_stdin(&mut stdin_send(&["--limit", "20"]), export(n).as_bytes())
        .exits(1);
    let sent = s.accepted().len();
    let other = export(n).replace("Smith 5,", "Jones 5,");
    let run = s
        .run_with_stdin(&mut stdin_send(&["--resume"]), other.as_bytes())
        .exits(2);
    assert!(
        run.stdout().contains("row 5 of standard input"),
        "{}",
        run.text()
    );
    assert_eq!(s.accepted().len(), sent, "nothing is sent");
    let run = s
        .run_with_stdin(&mut stdin_send(&["--resume"]), export(n).as_bytes())
        .exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_another_endpoint() {
    let mut s = Scenario::new()
        .export(30)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "5", "--rate", "0"]).exits(0);
    let other = sandbox(SandboxConfig::default()).await;
    let first = s.server().endpoint();
    s.retarget(other.endpoint());
    let run = s.send(&["--resume", "--rate", "0"]).exits(2);
    assert!(run.stderr().contains(&first), "{}", run.text());
    assert!(
        other.accepted().is_empty(),
        "nothing went to the other endpoint"
    );
    s.retarget(first);
    let run = s.send(&["--resume", "--rate", "0"]).exits(1);
    s.assert_consistent(&run.results());
    other.shutdown().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_goes_on_after_adding_encoding_to_pass_a_bad_byte() {
    let n = 30;
    let mut input = export(n).replace("Zoë", "Zoe").into_bytes();
    // Row 20's surname in windows-1252: not UTF-8.
    let at = input
        .windows(9)
        .position(|w| w == b"Smith 20,")
        .expect("row 20");
    input.splice(at..at + 5, b"Sm\xe9th".iter().copied());
    let s = Scenario::new()
        .input("calls.csv", &input)
        .sandbox(SandboxConfig::default())
        .await;
    // A canary of the first 10 rows, read as UTF-8; the run goes on later
    // with the encoding the export really has: the rows already decided
    // read the same in both, so the run is the same run.
    let run = s.send(&["--rate", "0", "--limit", "10"]);
    assert!(matches!(run.code(), Some(0 | 1)), "{}", run.text());
    assert_eq!(s.accepted().len(), 10);
    let run = s
        .send(&["--resume", "--rate", "0", "--encoding", "windows-1252"])
        .exits(1);
    let results = run.results();
    assert_once(n, &results, s.server());
    let row20 = results.iter().find(|r| r["digidesk_row"] == "20").unwrap();
    assert_eq!(row20["Last"], "Sméth 20");
    assert_eq!(count(&results, "created"), s.accepted().len());
    assert_eq!(count(&results, "unknown"), 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_when_the_results_file_is_gone_but_its_journal_is_not() {
    let s = Scenario::new()
        .export(30)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "5", "--rate", "0"]).exits(0);
    std::fs::remove_file(s.results_path()).unwrap();
    let run = s.send(&["--resume", "--rate", "0"]).exits(2);
    assert!(run.stderr().contains("is gone"), "{}", run.text());
    assert_eq!(s.accepted().len(), 5, "nothing resent");
    assert!(!s.results_path().exists());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_header_is_written_again_and_a_missing_one_put_back() {
    let n = 40;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "10", "--rate", "0"]).exits(1);
    let text = std::fs::read_to_string(s.results_path()).unwrap();
    let before = read_results(&s.results_path());
    // The header gone, the lines kept: it is put back and every id kept.
    let (_, body) = text.split_once('\n').unwrap();
    s.write("calls.results.csv", body);
    s.send(&["--resume", "--rate", "0", "--limit", "20"])
        .exits(1);
    let after = s.results();
    for r in &before {
        assert!(
            after.contains(r),
            "row {} changed or was lost",
            r["digidesk_row"]
        );
    }
    // The header torn (disk full while writing it): written again; the
    // journal's rows become unknown, none is resent.
    let header = text.lines().next().unwrap();
    s.write("calls.results.csv", &header[..30]);
    let run = s.send(&["--resume", "--rate", "0"]).exits(1);
    let results = run.results();
    s.assert_consistent(&results);
    assert_eq!(
        count(&results, "unknown"),
        count(&after, "created"),
        "the rows the journal lists"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_line_in_the_middle_is_refused_naming_it_and_nothing_is_cut() {
    let s = Scenario::new()
        .export(40)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "20", "--rate", "0"]).exits(1);
    let sent = s.accepted().len();
    let text = std::fs::read_to_string(s.results_path()).unwrap();
    let damaged: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 4 {
                "R4,Zo\u{fffd},garbage".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let damaged = damaged.join("\n") + "\n";
    for (what, content) in [
        ("fields", damaged),
        (
            "row number",
            text.replacen(",3,created,", ",68719476736,created,", 1),
        ),
        ("again", text.replacen(",6,created,", ",3,created,", 1)),
    ] {
        s.write("calls.results.csv", &content);
        let run = s.send(&["--resume", "--rate", "0"]).exits(2);
        // A repeated row is named by the later of its two lines.
        let line_of = |key: &str| {
            let lines = content.lines().enumerate();
            lines
                .filter(|(_, l)| l.contains(key))
                .map(|(i, _)| i + 1)
                .max()
                .unwrap()
        };
        let line = match what {
            "again" => format!("line {} ", line_of(",3,created,")),
            "fields" => "line 5 ".to_string(),
            _ => format!("line {} ", line_of(",68719476736,")),
        };
        assert!(
            run.stderr().contains(&line) && run.stderr().contains(what),
            "{what}: {}",
            run.text()
        );
        assert_eq!(std::fs::read_to_string(s.results_path()).unwrap(), content);
        assert_eq!(s.accepted().len(), sent, "nothing is sent");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_row_numbers_in_a_journal_are_refused_naming_the_line() {
    let s = Scenario::new()
        .export(20)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "5", "--rate", "0"]).exits(0);
    let journal = s.path("calls.results.csv.journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines = text.lines().count();
    for bad in ["s 18446744073709551615", "s 68719476736"] {
        s.write("calls.results.csv.journal", format!("{text}{bad}\n"));
        let run = s.send(&["--resume", "--rate", "0"]).exits(2);
        assert!(
            run.stderr().contains(&format!("line {}", lines + 1)),
            "{}",
            run.text()
        );
    }
    assert_eq!(s.accepted().len(), 5);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_refuses_a_row_listed_twice_before_sending() {
    let s = Scenario::new()
        .export(12)
        .sandbox(SandboxConfig::default())
        .await;
    let run = s.send(&["--rate", "0"]).exits(1);
    let sent = s.accepted().len();
    // Row 12 written again as failed, and row 11 marked failed twice.
    let text = std::fs::read_to_string(run.results_path()).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let failed = |l: &str| {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(l.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        let mut cells: Vec<String> = rec.iter().map(String::from).collect();
        let w = cells.len();
        cells[w - 5] = "failed".into();
        cells[w - 4] = String::new();
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(&cells).unwrap();
        String::from_utf8(out.into_inner().unwrap())
            .unwrap()
            .trim_end()
            .to_string()
    };
    let i11 = lines
        .iter()
        .position(|l| l.contains(",11,created,"))
        .unwrap();
    lines[i11] = failed(&lines[i11]);
    lines.push(lines[i11].clone());
    s.write("calls.results.csv", lines.join("\n") + "\n");
    let run = s.retry(&["--rate", "0"]).exits(2);
    assert!(
        run.stderr().contains("row 11 is listed again"),
        "{}",
        run.text()
    );
    assert_eq!(s.accepted().len(), sent, "nothing is sent");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_canary_prints_a_resume_command_that_keeps_its_limit() {
    let n = 60;
    let s = Scenario::new()
        .export(n)
        .sandbox(SandboxConfig::default())
        .await;
    let mut cmd = s.send_cmd(&["--limit", "10", "--summary-json", "canary.json"]);
    cmd.env("DIGIDESK_PASSWORD", "wrong");
    let run = s.run(&mut cmd).exits(3);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("canary.json")).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 3, "{summary}");
    assert!(s.accepted().is_empty());
    // Run the printed command as printed.
    let args = printed_command(&run.stdout(), "continue with:");
    let mut again = s.bin();
    again.args(&args);
    let run = s.run(&mut again).exits(1);
    assert_eq!(
        s.accepted().len(),
        10,
        "the canary's 10 rows: {}",
        run.text()
    );
    // And the rest as offered.
    let args = printed_command(&run.stdout(), "Send the rest with:");
    let run = s.run(s.bin().args(&args)).exits(1);
    s.assert_consistent(&run.results());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_is_written_on_a_refusal_and_checked_before_sending() {
    let s = Scenario::new()
        .export(10)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--rate", "0"]).exits(1);
    let sent = s.accepted().len();
    s.write("summary.json", "yesterday's");
    let run = s
        .send(&["--rate", "0", "--summary-json", "summary.json"])
        .exits(2);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("summary.json")).unwrap())
            .unwrap_or_else(|e| panic!("{e}: {}", run.text()));
    assert_eq!(summary["exit_code"], 2);
    assert_eq!(summary["command"], "send");
    assert!(summary["stop_reason"]
        .as_str()
        .unwrap()
        .contains("already exists"));

    // An unwritable path is found before anything is sent.
    std::fs::remove_file(s.results_path()).unwrap();
    std::fs::remove_file(s.path("calls.results.csv.journal")).unwrap();
    let run = s
        .send(&["--rate", "0", "--summary-json", "no-such-dir/summary.json"])
        .exits(2);
    assert!(run.stderr().contains("--summary-json"), "{}", run.text());
    assert_eq!(s.accepted().len(), sent, "nothing is sent");
    assert!(!s.results_path().exists());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_a_low_rate_leaves_unknown_only_rows_that_were_leaving() {
    // No latency: a request the server received is created at once, so a
    // row `unknown` that the server has not created was never received.
    let s = Scenario::new()
        .export(120)
        .sandbox(SandboxConfig::default())
        .await;
    let kills = 3;
    for k in 0..kills {
        let resume: &[&str] = if k > 0 { &["--resume"] } else { &[] };
        let mut child = s.spawn_send(&[&["--rate", "20", "-q"], resume].concat());
        s.server().wait_accepted(s.accepted().len() + 8).await;
        child.start_kill().expect("kill");
        let out = child.wait_with_output().await.expect("wait");
        assert_eq!(out.status.code(), None, "killed");
    }
    let run = s.send(&["--resume", "--rate", "0"]).exits(1);
    let results = run.results();
    s.assert_consistent(&results);
    let accepted = accepted_by_ref(s.server());
    let false_unknown = results
        .iter()
        .filter(|r| r["digidesk_status"] == "unknown" && !accepted.contains_key(&r["Ref"]))
        .count();
    // Journaled before their rate slot, a whole pool (10 rows at --rate 20)
    // would be `unknown` after each kill; journaled just before leaving, at
    // most the row about to leave (two if a slow sync made it take a new slot).
    assert!(
        false_unknown <= 2 * kills,
        "{false_unknown} rows unknown that the server never received, after {kills} kills"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_line_past_the_end_of_the_input_is_refused_before_sending() {
    let s = Scenario::new()
        .export(40)
        .sandbox(SandboxConfig::default())
        .await;
    s.send(&["--limit", "5", "--rate", "0"]).exits(0);
    let sent = s.accepted().len();
    let text = std::fs::read_to_string(s.results_path()).unwrap();
    let line = text.lines().find(|l| l.contains(",2,created,")).unwrap();
    let extra = line.replacen(",2,created,", ",500,created,", 1);
    let content = format!("{text}{extra}\n");
    s.write("calls.results.csv", &content);
    let run = s.send(&["--resume", "--rate", "0"]).exits(2);
    assert!(
        run.stdout().contains("ends at row 40") && run.stdout().contains("records row 500"),
        "{}",
        run.text()
    );
    assert_eq!(s.accepted().len(), sent, "nothing is sent");
    assert_eq!(std::fs::read_to_string(s.results_path()).unwrap(), content);
    s.shutdown().await;
}
