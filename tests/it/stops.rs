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
