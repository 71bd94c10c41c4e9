//! Streaming: memory does not grow with the input. Peak RSS of the real
//! binary (from wait4) on a small and a ten-times-larger export must be
//! about the same, for `check` and for `send` (whose bounded channels make a
//! slow server slow the reader down instead of filling memory).

use std::io::Write;
use std::process::Command;

use crate::common::*;

/// Runs a command to its end and returns its exit code and peak RSS in KiB.
pub(crate) fn peak_rss(cmd: &mut Command) -> (i32, i64) {
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc =
        tokio::task::block_in_place(|| unsafe { libc::wait4(pid, &mut status, 0, &mut usage) });
    assert_eq!(rc, pid);
    std::mem::forget(child); // reaped by wait4
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

fn big_export(w: &Work, name: &str, rows: usize) -> std::path::PathBuf {
    let path = w.path(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "Ref,First,Last,Phone,Reason,Opt Out").unwrap();
    for i in 1..=rows {
        writeln!(
            f,
            "R{i},Zoë,Smith {i},{},\"Billing, enquiry; a note long enough to matter {i}\",",
            mobile(i % 900_000)
        )
        .unwrap();
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_as_the_input_grows() {
    let w = Work::new();
    let mapping = w.write("map.toml", MAPPING);
    let small = big_export(&w, "small.csv", 10_000);
    let large = big_export(&w, "large.csv", 100_000);
    let check = |input: &std::path::Path| {
        peak_rss(
            bin()
                .arg("check")
                .arg(input)
                .arg("--mapping")
                .arg(&mapping)
                .args(["--show", "0"]),
        )
    };
    let (code_s, rss_s) = check(&small);
    let (code_l, rss_l) = check(&large);
    assert_eq!((code_s, code_l), (0, 0));
    assert!(
        rss_l < rss_s + 6 * 1024,
        "check: {rss_s} KiB for 10k rows, {rss_l} KiB for 100k"
    );

    let sb = sandbox(SandboxConfig {
        fast: true,
        ..SandboxConfig::default()
    })
    .await;
    // The ledger keeps the keys not yet folded in memory (about 100 bytes
    // each, up to its fold threshold: 65,536 keys in a new ledger). Folding
    // every 1,000 keys, both runs reach that bound: whatever else grew with
    // the input would show.
    let send = |input: &std::path::Path, results: &str| {
        peak_rss(
            send_cmd(input, &mapping, &sb.endpoint())
                .env("DIGIDESK_LEDGER_FOLD_ROWS", "1000")
                .args(["--rate", "0", "-q", "--results"])
                .arg(w.path(results)),
        )
    };
    let small = big_export(&w, "send-small.csv", 2_000);
    let large = big_export(&w, "send-large.csv", 20_000);
    let (code_s, rss_s) = send(&small, "s.csv");
    let (code_l, rss_l) = send(&large, "l.csv");
    assert_eq!((code_s, code_l), (0, 0));
    assert!(
        rss_l < rss_s + 6 * 1024,
        "send: {rss_s} KiB for 2k rows, {rss_l} KiB for 20k"
    );
    assert_eq!(read_results(&w.path("l.csv")).len(), 20_000);
    sb.shutdown().await;
}
