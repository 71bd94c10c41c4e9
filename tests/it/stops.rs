//! Stops and faults around a run: a closed stderr, a stalled stdin, an
//! endpoint that refuses every connection.

use std::process::{Command, Stdio};

use crate::common::*;

/// Runs `cmd` with stderr a socket whose other end is already closed:
/// every write to stderr fails with a broken pipe. Returns the exit code.
fn run_with_closed_stderr(cmd: &mut Command) -> Option<i32> {
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::os::fd::OwnedFd::from(writer))
        .status()
        .expect("run digidesk-upload")
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_never_panics_and_the_exit_code_is_the_real_one() {
    // Nine rows are all valid; twenty hold invalid rows (exit 1).
    let clean = Scenario::new().export(9);
    assert_eq!(run_with_closed_stderr(&mut clean.check_cmd(&[])), Some(0));
    assert_eq!(
        run_with_closed_stderr(&mut clean.check_cmd(&["-v"])),
        Some(0)
    );
    assert_eq!(
        run_with_closed_stderr(&mut clean.check_cmd(&["--no-such-option"])),
        Some(2),
        "a usage error"
    );
    let dirty = Scenario::new().export(20);
    assert_eq!(run_with_closed_stderr(&mut dirty.check_cmd(&[])), Some(1));

    let clean = clean.sandbox(SandboxConfig::default()).await;
    assert_eq!(
        run_with_closed_stderr(&mut clean.send_cmd(&["--rate", "0", "-vv"])),
        Some(0)
    );
    assert_eq!(clean.results().len(), 9);
    // A fatal error (the results file already exists) is reported on the
    // closed stderr too.
    assert_eq!(
        run_with_closed_stderr(&mut clean.send_cmd(&["--rate", "0"])),
        Some(2)
    );
    clean.shutdown().await;

    let dirty = dirty.sandbox(SandboxConfig::default()).await;
    assert_eq!(
        run_with_closed_stderr(&mut dirty.send_cmd(&["--rate", "0"])),
        Some(1)
    );
    assert_eq!(dirty.results().len(), 20);
    dirty.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_whose_stdin_stalls_and_no_row_read_is_held_back() {
    use tokio::io::AsyncWriteExt;
    let n = 5;
    let s = Scenario::new()
        .input_path("-")
        .sandbox(SandboxConfig::default())
        .await;
    let mut child =
        tokio::process::Command::from(s.send_cmd(&["--rate", "0", "--results", "out.csv"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start digidesk-upload");
    // Some rows, and then the input stalls: the pipe stays open.
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(export(n).as_bytes())
        .await
        .expect("write rows");
    stdin.flush().await.expect("flush");
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.server().wait_accepted(n),
    )
    .await
    .expect("rows already read are sent while stdin stalls");

    let pid = child.id().expect("running").to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the run ends well within 20 s of SIGTERM while its stdin stalls")
        .expect("wait for digidesk-upload");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let results = read_results(&s.path("out.csv"));
    assert_eq!(results.len(), n, "every row read is in the results file");
    assert_eq!(count(&results, "created"), n);
    drop(stdin);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_refuses_every_connection_stops_the_run_with_advice() {
    let n = 40;
    let s = Scenario::new().export(n).endpoint(unreachable_endpoint());
    let started = std::time::Instant::now();
    let run = s.send(&["--rate", "0"]).exits(3);
    let took = started.elapsed();
    // The rule is ten seconds without a single connection.
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}");
    assert!(run.stderr().contains("right port"), "{}", run.text());
    assert!(run.stdout().contains("--resume"), "{}", run.text());
    let results = run.results();
    assert_eq!(count(&results, "failed"), 0, "rows are left for --resume");
    assert_eq!(count(&results, "unknown"), 0, "no request ever left");
    assert!(
        results.len() < n,
        "sendable rows are not in the results file"
    );
}

/// `export(n)` compressed, with the byte at `at` (from the end when
/// negative) flipped.
fn damaged_gz(n: usize, at: isize) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(export(n).as_bytes()).unwrap();
    let mut bytes = gz.finish().unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    bytes[i] ^= 0x5a;
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_gz_is_refused_before_the_first_request() {
    // A byte in the middle of the data, and the checksum at the end (the
    // data then decodes "fine": only the checksum shows the damage).
    for (name, at) in [("middle.csv.gz", 1500), ("crc.csv.gz", -8)] {
        let s = Scenario::new()
            .input(name, damaged_gz(2000, at))
            .sandbox(SandboxConfig::default())
            .await;
        let run = s.send(&["--rate", "0"]).exits(2);
        assert!(run.stderr().contains("damaged"), "{name}: {}", run.text());
        assert_eq!(s.server().requests().len(), 0, "{name}: nothing was sent");
        s.check(&[]).exits(2);
        s.shutdown().await;
    }
}
