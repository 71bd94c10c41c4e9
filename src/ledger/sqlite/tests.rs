//! The SQLite ledger against real files: claims, outcomes, crashes, windows,
//! retention, what is stored, and every way opening it can fail.

use std::time::Instant;

use super::*;
use crate::ledger::{Outcome, State};

pub(super) const DAY: i64 = 86_400;
pub(super) const T0: i64 = 1_800_000_000;

pub(super) fn scope() -> Scope {
    Scope {
        endpoint: "https://api.example.com/api/survey_requests/".into(),
        username: "acme".into(),
    }
}

pub(super) fn run_info(results: &str) -> RunInfo {
    RunInfo {
        command: "send".into(),
        results: results.into(),
        fingerprint: "f1".into(),
        resume: false,
    }
}

pub(super) fn open(path: &Path) -> Sqlite {
    let mut l = Sqlite::open(path, Options::default()).expect("open the ledger");
    l.set_clock(T0);
    l
}

pub(super) fn claim(l: &Sqlite, row: u64, key: &str, contact: Option<&str>) -> Claim {
    Claim {
        row,
        key: l.hasher().key(key.as_bytes()),
        contact: contact.map(|c| l.hasher().contact(c)),
    }
}

pub(super) fn recorded(c: &Claim, outcome: Outcome) -> Recorded {
    Recorded {
        row: c.row,
        key: c.key,
        contact: c.contact,
        outcome,
    }
}

pub(super) fn earlier(v: &Verdict) -> &Earlier {
    match v {
        Verdict::Duplicate(e) => e,
        Verdict::Claimed => panic!("expected a duplicate, got Claimed"),
    }
}

#[test]
fn a_created_key_is_a_duplicate_in_any_later_run_with_its_id_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let first = l
        .begin_run(&scope(), &run_info("/data/mon.results.csv"))
        .unwrap();
    let a = claim(&l, 7, "body A", None);
    let b = claim(&l, 8, "body B", None);
    assert_eq!(
        l.claim(first, Policy::send(None), &[a, b]).unwrap(),
        vec![Verdict::Claimed, Verdict::Claimed]
    );
    l.record(
        first,
        &[
            recorded(&a, Outcome::Created(1234)),
            recorded(&b, Outcome::Released),
        ],
    )
    .unwrap();
    l.end_run(first).unwrap();

    let second = l
        .begin_run(&scope(), &run_info("/data/tue.results.csv"))
        .unwrap();
    assert_ne!(first, second);
    let again = [claim(&l, 3, "body A", None), claim(&l, 4, "body B", None)];
    let v = l.claim(second, Policy::send(None), &again).unwrap();
    let e = earlier(&v[0]);
    assert_eq!(e.state, State::Created);
    assert_eq!(e.id, Some(1234));
    assert_eq!(e.row, 7);
    assert_eq!(
        e.origin.as_ref().map(|o| o.results.as_path()),
        Some(Path::new("/data/mon.results.csv"))
    );
    assert!(!e.same_run);
    assert!(e.reason().contains("created as id 1234"), "{}", e.reason());
    assert!(
        e.reason().contains("/data/mon.results.csv row 7"),
        "{}",
        e.reason()
    );
    // A released key (rejected, failed) is free again.
    assert_eq!(v[1], Verdict::Claimed);
    // retry is stopped by a created key too.
    let third = l.begin_run(&scope(), &run_info("/data/retry.csv")).unwrap();
    let v = l
        .claim(third, Policy::retry(None), &[claim(&l, 7, "body A", None)])
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(1234));
}

#[test]
fn the_same_key_twice_in_one_run_is_a_duplicate_of_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let run = l.begin_run(&scope(), &run_info("r.csv")).unwrap();
    for policy in [Policy::send(None), Policy::retry(None)] {
        let key = format!("{policy:?}");
        let v = l
            .claim(
                run,
                policy,
                &[claim(&l, 1, &key, None), claim(&l, 2, &key, None)],
            )
            .unwrap();
        assert_eq!(v[0], Verdict::Claimed);
        let e = earlier(&v[1]);
        assert!(e.same_run && e.row == 1, "{e:?}");
        assert_eq!(
            e.reason(),
            "this survey was already sent in this run: row 1"
        );
        // In a later batch too.
        let v = l.claim(run, policy, &[claim(&l, 3, &key, None)]).unwrap();
        assert_eq!(earlier(&v[0]).row, 1);
    }
}

#[test]
fn unknown_stops_send_but_not_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let run = l.begin_run(&scope(), &run_info("r.csv")).unwrap();
    let c = claim(&l, 5, "maybe", None);
    l.claim(run, Policy::send(None), &[c]).unwrap();
    l.record(run, &[recorded(&c, Outcome::Unknown)]).unwrap();
    let later = l.begin_run(&scope(), &run_info("s.csv")).unwrap();
    let v = l
        .claim(later, Policy::send(None), &[claim(&l, 9, "maybe", None)])
        .unwrap();
    assert_eq!(earlier(&v[0]).state, State::Unknown);
    assert!(earlier(&v[0]).reason().contains("may exist"));
    let retry = l.begin_run(&scope(), &run_info("retry.csv")).unwrap();
    let c2 = claim(&l, 5, "maybe", None);
    assert_eq!(
        l.claim(retry, Policy::retry(None), &[c2]).unwrap(),
        vec![Verdict::Claimed]
    );
    // The retry created it: now it stops everyone, with the retry's id.
    l.record(retry, &[recorded(&c2, Outcome::Created(99))])
        .unwrap();
    let v = l
        .claim(later, Policy::send(None), &[claim(&l, 9, "maybe", None)])
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(99));
}

#[test]
fn a_claim_never_recorded_reads_as_unknown_with_its_run_and_row_and_resume_can_reclaim_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let info = RunInfo {
        resume: false,
        ..run_info("/data/crashed.results.csv")
    };
    let (run, c) = {
        let mut l = open(&path);
        let run = l.begin_run(&scope(), &info).unwrap();
        let c = claim(&l, 41, "in flight", None);
        l.claim(run, Policy::send(None), &[c]).unwrap();
        // The process dies here: no outcome is ever recorded.
        (run, c)
    };
    let mut l = open(&path);
    let other = l.begin_run(&scope(), &run_info("/data/next.csv")).unwrap();
    let v = l
        .claim(
            other,
            Policy::send(None),
            &[claim(&l, 1, "in flight", None)],
        )
        .unwrap();
    let e = earlier(&v[0]);
    assert_eq!(e.state, State::InFlight);
    assert_eq!(
        (e.row, e.origin.as_ref().map(|o| o.results.as_path())),
        (41, Some(Path::new("/data/crashed.results.csv")))
    );
    assert!(e.reason().contains("never recorded"), "{}", e.reason());
    assert!(
        e.reason().contains("/data/crashed.results.csv row 41"),
        "{}",
        e.reason()
    );
    // `--resume` of the crashed run continues it: a row whose request never
    // left is claimed again, and its outcome can be recorded.
    let resumed = l
        .begin_run(
            &scope(),
            &RunInfo {
                resume: true,
                ..info.clone()
            },
        )
        .unwrap();
    assert_eq!(resumed, run);
    assert_eq!(
        l.claim(resumed, Policy::send(None), &[c]).unwrap(),
        vec![Verdict::Claimed]
    );
    l.record(resumed, &[recorded(&c, Outcome::Unknown)])
        .unwrap();
    let v = l
        .claim(
            other,
            Policy::send(None),
            &[claim(&l, 1, "in flight", None)],
        )
        .unwrap();
    assert_eq!(earlier(&v[0]).state, State::Unknown);
    // A different fingerprint is a different run.
    let fresh = l
        .begin_run(
            &scope(),
            &RunInfo {
                resume: true,
                fingerprint: "f2".into(),
                ..info
            },
        )
        .unwrap();
    assert_ne!(fresh, run);
}

#[test]
fn keys_are_scoped_by_endpoint_and_username() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let run = l.begin_run(&scope(), &run_info("r.csv")).unwrap();
    let c = claim(&l, 1, "k", None);
    l.claim(run, Policy::send(None), &[c]).unwrap();
    l.record(run, &[recorded(&c, Outcome::Created(1))]).unwrap();
    for other in [
        Scope {
            username: "other".into(),
            ..scope()
        },
        Scope {
            endpoint: "https://eu.example.com/api/survey_requests/".into(),
            ..scope()
        },
    ] {
        let r = l.begin_run(&other, &run_info("r.csv")).unwrap();
        assert_eq!(
            l.claim(r, Policy::send(None), &[c]).unwrap(),
            vec![Verdict::Claimed]
        );
        assert_eq!(l.lookup(&other, Policy::send(None), &[c]).unwrap().len(), 1);
    }
    let found = l
        .lookup(
            &scope(),
            Policy::send(None),
            &[c, claim(&l, 2, "new", None)],
        )
        .unwrap();
    assert_eq!(found[0].as_ref().map(|e| e.id), Some(Some(1)));
    assert!(found[1].is_none());
    let nobody = Scope {
        username: "nobody".into(),
        ..scope()
    };
    assert_eq!(
        l.lookup(&nobody, Policy::send(None), &[c]).unwrap(),
        vec![None]
    );
}

#[test]
fn contact_within_stops_a_contact_created_inside_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let window = Some(Duration::from_secs(30 * DAY as u64));
    let run = l.begin_run(&scope(), &run_info("mon.csv")).unwrap();
    let c = claim(&l, 1, "call 1", Some("+447700900123"));
    l.claim(run, Policy::send(window), &[c]).unwrap();
    l.record(run, &[recorded(&c, Outcome::Created(10))])
        .unwrap();
    // Another call of the same customer, ten days later.
    l.set_clock(T0 + 10 * DAY);
    let later = l.begin_run(&scope(), &run_info("later.csv")).unwrap();
    let c2 = claim(&l, 4, "call 2", Some("+447700900123"));
    let v = l.claim(later, Policy::send(window), &[c2]).unwrap();
    let e = earlier(&v[0]);
    assert!(e.by_contact && e.id == Some(10), "{e:?}");
    assert!(e
        .reason()
        .starts_with("this customer_contact was already surveyed"));
    assert_eq!(
        l.lookup(&scope(), Policy::send(window), &[c2]).unwrap()[0],
        Some(e.clone())
    );
    // Without contact_within, or for another contact, it goes.
    let c3 = claim(&l, 5, "call 3", Some("+447700900999"));
    assert_eq!(
        l.claim(later, Policy::send(window), &[c3]).unwrap(),
        vec![Verdict::Claimed]
    );
    let c4 = claim(&l, 6, "call 4", Some("+447700900123"));
    assert_eq!(
        l.claim(later, Policy::send(None), &[c4]).unwrap(),
        vec![Verdict::Claimed]
    );
    // After the window, the first survey no longer stops a new one.
    l.set_clock(T0 + 31 * DAY);
    let much_later = l.begin_run(&scope(), &run_info("much-later.csv")).unwrap();
    l.record(later, &[recorded(&c4, Outcome::Released)])
        .unwrap();
    let c5 = claim(&l, 7, "call 5", Some("+447700900123"));
    assert_eq!(
        l.claim(much_later, Policy::send(window), &[c5]).unwrap(),
        vec![Verdict::Claimed]
    );
    // Within one batch: the second row for the same contact is stopped.
    let c6 = claim(&l, 8, "call 6", Some("+447700900777"));
    let c7 = claim(&l, 9, "call 7", Some("+447700900777"));
    let v = l
        .claim(much_later, Policy::send(window), &[c6, c7])
        .unwrap();
    assert_eq!(v[0], Verdict::Claimed);
    assert!(earlier(&v[1]).same_run && earlier(&v[1]).by_contact && earlier(&v[1]).row == 8);
}

#[test]
fn forget_removes_surveys_before_the_date_and_stats_count_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let old = l.begin_run(&scope(), &run_info("old.csv")).unwrap();
    let a = [claim(&l, 1, "old 1", None), claim(&l, 2, "old 2", None)];
    l.claim(old, Policy::send(None), &a).unwrap();
    l.record(
        old,
        &[
            recorded(&a[0], Outcome::Created(1)),
            recorded(&a[1], Outcome::Unknown),
        ],
    )
    .unwrap();
    l.set_clock(T0 + 100 * DAY);
    let new = l.begin_run(&scope(), &run_info("new.csv")).unwrap();
    let b = [claim(&l, 1, "new 1", None), claim(&l, 2, "new 2", None)];
    l.claim(new, Policy::send(None), &b).unwrap();
    l.record(new, &[recorded(&b[0], Outcome::Created(2))])
        .unwrap();

    let s = l.stats().unwrap();
    assert_eq!((s.surveys(), s.runs, s.format), (4, 2, FORMAT));
    let sc = &s.scopes[0];
    assert_eq!(sc.scope, scope());
    assert_eq!(
        (sc.created, sc.unknown, sc.in_flight, sc.runs),
        (2, 1, 1, 2)
    );
    assert_eq!(sc.oldest, Some(from_unix(T0)));
    assert_eq!(sc.newest, Some(from_unix(T0 + 100 * DAY)));

    let f = l.forget(from_unix(T0 + 50 * DAY)).unwrap();
    assert_eq!((f.surveys, f.runs), (2, 1));
    let s = l.stats().unwrap();
    assert_eq!((s.surveys(), s.runs), (2, 1));
    assert_eq!(s.scopes[0].oldest, Some(from_unix(T0 + 100 * DAY)));
    // What was forgotten can be sent again; what was kept cannot.
    let v = l
        .claim(new, Policy::send(None), &[claim(&l, 9, "old 1", None)])
        .unwrap();
    assert_eq!(v, vec![Verdict::Claimed]);
    let v = l.lookup(&scope(), Policy::send(None), &[b[0]]).unwrap();
    assert_eq!(v[0].as_ref().and_then(|e| e.id), Some(2));
}

#[test]
fn import_adds_unknown_surveys_upgrades_them_to_created_and_keeps_what_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = open(&dir.path().join("l.sqlite3"));
    let run = l
        .begin_run(
            &scope(),
            &RunInfo {
                command: "import".into(),
                ..run_info("/old.results.csv")
            },
        )
        .unwrap();
    let at = from_unix(T0 - 5 * DAY);
    let hasher = l.hasher().clone();
    let row = |row, key: &str, id: Option<u64>| Imported {
        row,
        key: hasher.key(key.as_bytes()),
        contact: None,
        id,
        created: id.is_some(),
        at,
    };
    let first = [row(1, "a", Some(11)), row(2, "b", None)];
    assert_eq!(
        l.import(run, &first).unwrap(),
        ImportCounts {
            added: 2,
            upgraded: 0,
            known: 0
        }
    );
    let second = [
        row(1, "a", None),
        row(2, "b", Some(22)),
        row(3, "a", Some(11)),
    ];
    assert_eq!(
        l.import(run, &second).unwrap(),
        ImportCounts {
            added: 0,
            upgraded: 1,
            known: 2
        }
    );
    let found = l
        .lookup(&scope(), Policy::send(None), &[claim(&l, 1, "b", None)])
        .unwrap();
    let e = found[0].clone().unwrap();
    assert_eq!(
        (e.state, e.id, e.at, e.row),
        (State::Created, Some(22), at, 2)
    );
    assert!(
        e.reason().contains("imported from /old.results.csv row 2"),
        "{}",
        e.reason()
    );
}

/// Reads the ledger's files (the write-ahead log included) as bytes.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut all = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    all.extend(std::fs::read(&wal).unwrap_or_default());
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_file_holds_keyed_hashes_never_keys_or_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut l = open(&path);
    let run = l.begin_run(&scope(), &run_info("r.csv")).unwrap();
    let body = r#"{"customer_contact":"+447700900123","campaign_name":"Post-call","customer_name":"Zoe Quartermaine"}"#;
    let c = claim(&l, 1, body, Some("+447700900123"));
    l.claim(run, Policy::send(None), &[c]).unwrap();
    l.record(run, &[recorded(&c, Outcome::Created(5))]).unwrap();
    let raw = file_bytes(&path);
    assert!(contains(&raw, &c.key.0), "the key's hash is stored");
    for clear in [
        "+447700900123",
        "447700900123",
        "Zoe Quartermaine",
        "Post-call",
    ] {
        assert!(
            !contains(&raw, clear.as_bytes()),
            "{clear:?} is in the ledger file in clear"
        );
    }
    // Another ledger has another secret: its hashes of the same key differ.
    let other = open(&dir.path().join("other.sqlite3"));
    assert_ne!(other.hasher().key(body.as_bytes()), c.key);
    assert_eq!(l.hasher().key(body.as_bytes()), c.key);
    // The file is its owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}

#[test]
fn a_ledger_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    drop(open(&path));
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", FORMAT + 1)
        .unwrap();
    let e = Sqlite::open(&path, Options::default())
        .err()
        .expect("refused");
    assert!(
        matches!(e, LedgerError::Newer { found, .. } if found == FORMAT + 1),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("newer version of digidesk-upload"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.sqlite3");
    std::fs::write(&garbage, "Ref,Phone\n1,07700 900123\n".repeat(200)).unwrap();
    let e = Sqlite::open(&garbage, Options::default())
        .err()
        .expect("refused");
    assert!(matches!(e, LedgerError::NotALedger { .. }), "{e:?}");
    assert!(e.to_string().contains("not an SQLite database"), "{e}");
    // Left as it was.
    assert!(std::fs::read(&garbage).unwrap().starts_with(b"Ref,Phone\n"));

    let foreign = dir.path().join("foreign.sqlite3");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = Sqlite::open(&foreign, Options::default())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("another program"), "{e}");

    let dir_path = dir.path().join("a-directory");
    std::fs::create_dir(&dir_path).unwrap();
    let e = Sqlite::open(&dir_path, Options::default())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("it is a directory"), "{e}");
}

#[test]
fn a_ledger_locked_longer_than_the_busy_timeout_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    drop(open(&path));
    // Another process holds the write lock.
    let mut other = Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let busy = Duration::from_millis(200);
    let started = Instant::now();
    let e = Sqlite::open(
        &path,
        Options {
            busy_timeout: busy,
            ..Options::default()
        },
    )
    .err()
    .expect("locked");
    assert!(
        started.elapsed() >= busy,
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(matches!(e, LedgerError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("locked by another process"), "{e}");
    // Once the lock is gone, it opens.
    tx.rollback().unwrap();
    assert!(Sqlite::open(
        &path,
        Options {
            busy_timeout: busy,
            ..Options::default()
        }
    )
    .is_ok());
}

#[test]
fn the_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/digidesk-upload/ledger.sqlite3");
    let l = open(&path);
    assert!(path.is_file());
    assert_eq!(l.location(), path.display().to_string());
    let e = Sqlite::open(&path.join("below-a-file/l.sqlite3"), Options::default())
        .err()
        .expect("a file is not a directory");
    assert!(matches!(e, LedgerError::Directory { .. }), "{e:?}");
}

/// The file grows by less than 150 bytes per survey, contact index
/// included, with keys in random order as real ones are: in `recent`, and
/// folded into `survey`.
#[test]
fn a_survey_costs_less_than_150_bytes_on_disk() {
    for fold_rows in [recent::FOLD_ROWS, 1_000] {
        survey_bytes(fold_rows);
    }
}

fn survey_bytes(fold_rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut l = Sqlite::open(
        &path,
        Options {
            fold_rows,
            ..Options::default()
        },
    )
    .unwrap();
    l.set_clock(T0);
    let empty = {
        l.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        std::fs::metadata(&path).unwrap().len()
    };
    let n = 20_000u64;
    let mut id = 100_000_000u64;
    for batch in 0..n / 500 {
        let run = l
            .begin_run(
                &scope(),
                &run_info(&format!("/data/exports/calls-{batch}.results.csv")),
            )
            .unwrap();
        let claims: Vec<Claim> = (0..500)
            .map(|i| {
                let row = batch * 500 + i + 1;
                let body = format!(r#"{{"customer_contact":"+44740{row:07}","campaign_name":"Post-call survey","account_number":"R{row}"}}"#);
                claim(&l, row, &body, Some(&format!("+44740{row:07}")))
            })
            .collect();
        l.claim(run, Policy::send(None), &claims).unwrap();
        let outcomes: Vec<Recorded> = claims
            .iter()
            .map(|c| {
                id += 1;
                recorded(c, Outcome::Created(id))
            })
            .collect();
        l.record(run, &outcomes).unwrap();
        while l.tidy() {}
    }
    l.conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let per = (std::fs::metadata(&path).unwrap().len() - empty) as f64 / n as f64;
    let folded: i64 = l
        .conn
        .query_row("SELECT count(*) FROM survey", [], |r| r.get(0))
        .unwrap();
    eprintln!("{per:.1} bytes per survey ({folded} folded)");
    assert!(per < 150.0, "{per:.1} bytes per survey ({folded} folded)");
    assert_eq!(folded > 0, fold_rows < n as usize);
}
