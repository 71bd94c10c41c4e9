//! `ledger` end to end: import real results files written by `send` against
//! the sandbox, then `check`, `stats` and `forget` with the real binary; and
//! the ledger files a user can break (corrupt, newer, read-only place).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use crate::common::*;

/// `digidesk-upload ledger SUB ... --ledger LEDGER`.
fn ledger_cmd(sub: &str, ledger: &Path) -> Command {
    let mut c = bin();
    c.args(["ledger", sub]).arg("--ledger").arg(ledger);
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sends `n` rows of [`export`] to the sandbox; returns the results file.
fn sent_results(w: &Work, sb: &Sandbox, name: &str, n: usize) -> PathBuf {
    let input = w.write(&format!("{name}.csv"), export(n));
    let mapping = w.write("map.toml", MAPPING);
    let out = run(send_cmd(&input, &mapping, &sb.endpoint()).args(["--rate", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    w.path(&format!("{name}.results.csv"))
}

/// `ledger check INPUT` of [`MAPPING`] against the sandbox's endpoint.
fn check(w: &Work, ledger: &Path, input: &Path, endpoint: &str) -> Output {
    run(ledger_cmd("check", ledger)
        .arg(input)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .args(["--endpoint", endpoint]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_results_make_check_count_their_rows_as_duplicates() {
    let w = Work::new();
    let sb = sandbox(SandboxConfig::default()).await;
    let results = sent_results(&w, &sb, "monday", 40);
    let ledger = w.path("state/ledger.sqlite3");
    let out = run(ledger_cmd("import", &ledger)
        .arg(&results)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .args(["--endpoint", &sb.endpoint()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "{} created and 0 unknown rows: {} added",
            created_of(40),
            created_of(40)
        )),
        "{said}"
    );

    // Tuesday's export overlaps Monday's: rows 1-40 again, and 20 new ones.
    let tuesday = w.write("tuesday.csv", export(60));
    let out = check(&w, &ledger, &tuesday, &sb.endpoint());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = stdout(&out);
    assert_eq!(
        count_of(&report, "created earlier"),
        created_of(40),
        "{report}"
    );
    assert_eq!(count_of(&report, "duplicate"), created_of(40), "{report}");
    assert_eq!(
        count_of(&report, "would be sent"),
        created_of(60) - created_of(40),
        "{report}"
    );
    assert_eq!(count_of(&report, "rows"), 60, "{report}");
    // Each duplicate names the earlier survey: its id, and where it came from.
    let first_id = read_results(&results)
        .into_iter()
        .find(|r| r["digidesk_row"] == "1")
        .expect("row 1 in the results")["digidesk_id"]
        .clone();
    assert!(
        report.contains(&format!(
            "row 1: this survey was already sent: created as id {first_id} on "
        )),
        "{report}"
    );
    assert!(report.contains("monday.results.csv row 1"), "{report}");
    // No customer data in the report: bodies and contacts stay out.
    assert!(!report.contains(&mobile_e164(1)), "{report}");

    // Importing the same file again adds nothing.
    let out = run(ledger_cmd("import", &ledger)
        .arg(&results)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .args(["--endpoint", &sb.endpoint()]));
    assert!(
        stdout(&out).contains(&format!(
            "0 added, 0 now known as created, {} already known",
            created_of(40)
        )),
        "{}",
        text(&out)
    );

    // The ledger is scoped by endpoint and username: another account has sent nothing.
    let out = run(ledger_cmd("check", &ledger)
        .arg(&tuesday)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .args(["--endpoint", &sb.endpoint()])
        .env("DIGIDESK_USERNAME", "someone-else"));
    assert_eq!(count_of(&stdout(&out), "duplicate"), 0, "{}", text(&out));
    sb.shutdown().await;
}

#[test]
fn check_counts_a_row_repeated_in_the_export_once() {
    let w = Work::new();
    w.write("map.toml", MAPPING);
    let mut csv = export(5);
    csv.push_str("R2,Zoë,Smith 2,07400 100002,\"Billing, enquiry\",\n");
    let input = w.write("calls.csv", csv);
    let out = check(&w, &w.path("l.sqlite3"), &input, "https://api.example.com/");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = stdout(&out);
    assert_eq!(count_of(&report, "repeated in this export"), 1, "{report}");
    assert_eq!(count_of(&report, "would be sent"), 5, "{report}");
    assert!(
        report.contains("row 6: the same survey as row 2 of this export"),
        "{report}"
    );
}

/// Marks when a results file was last written, which import takes as when
/// its rows were sent.
fn written_on(path: &Path, date: &str) {
    let t: SystemTime = humantime::parse_rfc3339(&format!("{date}T12:00:00Z")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_drops_the_surveys_sent_before_the_date_and_stats_shows_what_is_left() {
    let w = Work::new();
    let sb = sandbox(SandboxConfig::default()).await;
    // Two exports of different calls: rows of the second have other Refs.
    let old = sent_results(&w, &sb, "old", 20);
    let input = w.write("new.csv", export(50).replace(",Zoë,", ",Zoe,"));
    let out = run(send_cmd(&input, &w.path("map.toml"), &sb.endpoint()).args(["--rate", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let new = w.path("new.results.csv");
    written_on(&old, "2020-03-01");
    written_on(&new, "2024-06-01");
    let ledger = w.path("ledger.sqlite3");
    let out = run(ledger_cmd("import", &ledger)
        .arg(&old)
        .arg(&new)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .args(["--endpoint", &sb.endpoint()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let both = created_of(20) + created_of(50);

    let out = run(&mut ledger_cmd("stats", &ledger));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = stdout(&out);
    assert!(s.contains(&format!("{both} surveys, 2 runs")), "{s}");
    assert!(s.contains(&format!("{} as demo:", sb.endpoint())), "{s}");
    assert_eq!(count_of(&s, "created"), both, "{s}");
    assert!(
        s.contains("from 2020-03-01T12:00:00Z to 2024-06-01T12:00:00Z"),
        "{s}"
    );

    let out = run(ledger_cmd("forget", &ledger).args(["--before", "2022-01-01"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!(
            "forgot {} surveys and 1 runs from before 2022-01-01T00:00:00Z",
            created_of(20)
        )),
        "{}",
        text(&out)
    );
    let s = stdout(&run(&mut ledger_cmd("stats", &ledger)));
    assert_eq!(count_of(&s, "created"), created_of(50), "{s}");
    assert!(
        s.contains("from 2024-06-01T12:00:00Z to 2024-06-01T12:00:00Z"),
        "{s}"
    );
    // The old export's rows would be sent again; the new one's would not.
    let report = stdout(&check(&w, &ledger, &w.path("old.csv"), &sb.endpoint()));
    assert_eq!(count_of(&report, "duplicate"), 0, "{report}");
    let report = stdout(&check(&w, &ledger, &input, &sb.endpoint()));
    assert_eq!(count_of(&report, "duplicate"), created_of(50), "{report}");

    // A date in the future would forget surveys being sent: refused.
    let out = run(ledger_cmd("forget", &ledger).args(["--before", "2999-01-01"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    sb.shutdown().await;
}

/// Asserts a `ledger` command failed with exit 2 and says `words`.
fn assert_exit_2(out: &Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    for w in words {
        assert!(err.contains(w), "{w:?} missing from:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_corrupt_ledger_file_is_a_clear_exit_2_and_is_left_alone() {
    let w = Work::new();
    w.write("map.toml", MAPPING);
    let input = w.write("calls.csv", export(5));
    let garbage = "this is not a database, someone wrote over it\n".repeat(100);
    let ledger = w.write("ledger.sqlite3", &garbage);
    let out = check(&w, &ledger, &input, "https://api.example.com/");
    assert_exit_2(
        &out,
        &[
            "ledger.sqlite3 is not a ledger of digidesk-upload",
            "not an SQLite database",
            "Move it aside",
            "ledger import",
        ],
    );
    assert_exit_2(&run(&mut ledger_cmd("stats", &ledger)), &["not a ledger"]);
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), garbage);
}

#[test]
fn a_ledger_of_a_newer_version_is_refused_with_exit_2() {
    let w = Work::new();
    let ledger = w.path("ledger.sqlite3");
    assert_eq!(
        run(&mut ledger_cmd("stats", &ledger)).status.code(),
        Some(0)
    );
    // Creating happens on first use: stats of a ledger that does not exist creates nothing.
    assert!(!ledger.exists());
    let out = run(ledger_cmd("forget", &ledger).args(["--before", "2020-01-01"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    drop(digidesk_upload::ledger::open(&ledger).unwrap());
    rusqlite::Connection::open(&ledger)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert_exit_2(
        &run(&mut ledger_cmd("stats", &ledger)),
        &["written by a newer version of digidesk-upload", "format 99"],
    );
}

/// Makes a directory read-only, for root too (whom permissions do not
/// stop): with the immutable attribute. Undone on drop.
struct ReadOnlyDir(PathBuf);

const FS_IMMUTABLE_FL: libc::c_int = 0x10;

impl ReadOnlyDir {
    fn new(path: PathBuf) -> ReadOnlyDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            set_flags(&path, FS_IMMUTABLE_FL);
        }
        ReadOnlyDir(path)
    }
}

fn set_flags(path: &Path, flags: libc::c_int) {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path).unwrap();
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    assert_eq!(
        rc,
        0,
        "cannot make {} read-only: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if unsafe { libc::geteuid() } == 0 {
            set_flags(&self.0, 0);
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_ledger_in_a_read_only_directory_is_a_clear_exit_2() {
    let w = Work::new();
    w.write("map.toml", MAPPING);
    let input = w.write("calls.csv", export(5));
    let ro = ReadOnlyDir::new(w.path("read-only"));
    // Through DIGIDESK_LEDGER, as a nightly job would set it.
    let out = run(bin()
        .args(["ledger", "check"])
        .arg(&input)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .env("DIGIDESK_LEDGER", ro.0.join("ledger.sqlite3")));
    assert_exit_2(
        &out,
        &["read-only/ledger.sqlite3 cannot be written", "--no-ledger"],
    );
    assert!(!ro.0.join("ledger.sqlite3").exists());
}

#[test]
fn the_default_ledger_is_in_the_state_directory() {
    let w = Work::new();
    w.write("map.toml", MAPPING);
    let input = w.write("calls.csv", export(3));
    let out = run(bin()
        .args(["ledger", "check"])
        .arg(&input)
        .arg("--mapping")
        .arg(w.path("map.toml"))
        .env("XDG_STATE_HOME", w.path("state")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ledger = w.path("state/digidesk-upload/ledger.sqlite3");
    assert!(
        stdout(&out).contains(&format!("against {}", ledger.display())),
        "{}",
        text(&out)
    );
    assert!(ledger.is_file());
    // Without XDG_STATE_HOME: under HOME.
    let out = run(bin()
        .args(["ledger", "stats"])
        .env_remove("XDG_STATE_HOME")
        .env("HOME", w.path("home")));
    let home_ledger = w.path("home/.local/state/digidesk-upload/ledger.sqlite3");
    assert!(
        stdout(&out).contains(&format!("no ledger at {}", home_ledger.display())),
        "{}",
        text(&out)
    );
}
