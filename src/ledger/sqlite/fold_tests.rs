//! The log and folds: moving the log into `survey` changes no answer,
//! whichever connection folds and whenever.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::tests::{earlier, recorded, run_info, scope, T0};
use super::*;
use crate::ledger::Outcome;

fn open_folding(path: &Path, fold_rows: usize) -> Sqlite {
    open_chunked(path, fold_rows, None)
}

/// Folds at `fold_rows` keys, `chunk` rows per transaction, with the
/// filter of `survey`'s keys from the first lookup.
fn open_chunked(path: &Path, fold_rows: usize, chunk: Option<usize>) -> Sqlite {
    let mut l = Sqlite::open(
        path,
        Options {
            fold_rows,
            fold_chunk: chunk,
            filter_after: 1,
            ..Options::default()
        },
    )
    .expect("open the ledger");
    l.set_clock(T0);
    l
}

/// Keys in the log.
fn in_log(l: &Sqlite) -> usize {
    let tx = l.conn.unchecked_transaction().unwrap();
    recent::whole_log(&tx).unwrap().1.len()
}

fn in_table(l: &Sqlite, table: &str) -> i64 {
    l.conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Two connections to one file, one per run, as two processes would have.
struct Pair {
    a: Sqlite,
    b: Sqlite,
}

impl Pair {
    fn conn(&mut self, b: bool) -> &mut Sqlite {
        if b {
            &mut self.b
        } else {
            &mut self.a
        }
    }

    fn set_clock(&mut self, now: i64) {
        self.a.set_clock(now);
        self.b.set_clock(now);
    }
}

fn claim_of(l: &Sqlite, row: u64, key: usize, contact: usize) -> Claim {
    Claim {
        row,
        key: l.hasher().key(format!("survey {key}").as_bytes()),
        contact: Some(l.hasher().contact(&format!("+4474000000{contact:02}"))),
    }
}

/// Random claims, outcomes and lookups by two runs on two connections,
/// against a ledger that never folds and one that folds every few rows,
/// mostly a row or two at a time: every verdict, every lookup and every
/// count agree.
#[test]
fn folding_changes_no_answer() {
    for seed in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x.sqlite3"), dir.path().join("y.sqlite3"));
        let never = usize::MAX / 2;
        let mut xs = Pair {
            a: open_folding(&x, never),
            b: open_folding(&x, never),
        };
        // Folds of a few rows: some at once, most a row or two per
        // transaction, between claims, the two connections' overlapping.
        let mut ys = Pair {
            a: open_chunked(&y, 3 + seed as usize, (seed % 3 != 0).then_some(1)),
            b: open_chunked(&y, 5, Some(2)),
        };
        let info_a = run_info("/data/a.results.csv");
        let info_b = run_info("/data/b.results.csv");
        let runs_x = [
            xs.a.begin_run(&scope(), &info_a).unwrap(),
            xs.b.begin_run(&scope(), &info_b).unwrap(),
        ];
        let runs_y = [
            ys.a.begin_run(&scope(), &info_a).unwrap(),
            ys.b.begin_run(&scope(), &info_b).unwrap(),
        ];
        let mut rng = SmallRng::seed_from_u64(seed);
        // Per run: claimed rows (row, key, contact) with no outcome yet.
        let mut open_rows: [Vec<(u64, usize, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut next_row = 1u64;
        let mut next_id = 1000u64;
        let mut duplicates = 0;
        for step in 0..400i64 {
            xs.set_clock(T0 + step * 60);
            ys.set_clock(T0 + step * 60);
            let who = rng.random_range(0..2usize);
            let within = rng
                .random_bool(0.3)
                .then(|| Duration::from_secs(rng.random_range(1..4) * 3600));
            let policy = if who == 1 && rng.random_bool(0.5) {
                Policy::retry(within)
            } else {
                Policy::send(within)
            };
            // Outcomes for some of this run's open rows.
            let mut outcomes = Vec::new();
            open_rows[who].retain(|&(row, key, contact)| {
                if !rng.random_bool(0.5) {
                    return true;
                }
                let outcome = match rng.random_range(0..3) {
                    0 => {
                        next_id += 1;
                        Outcome::Created(next_id)
                    }
                    1 => Outcome::Unknown,
                    _ => Outcome::Released,
                };
                outcomes.push((row, key, contact, outcome));
                false
            });
            // New claims: distinct contacts, so that no two rows of one
            // contact share a time.
            let mut batch: Vec<(u64, usize, usize)> = Vec::new();
            for _ in 0..rng.random_range(0..4) {
                let contact = rng.random_range(0..12);
                if batch.iter().any(|b| b.2 == contact) {
                    continue;
                }
                batch.push((next_row, rng.random_range(0..30), contact));
                next_row += 1;
            }
            let mut verdicts = Vec::new();
            for (pair, runs) in [(&mut xs, runs_x), (&mut ys, runs_y)] {
                let l = pair.conn(who == 1);
                let outs: Vec<Recorded> = outcomes
                    .iter()
                    .map(|&(row, key, contact, outcome)| {
                        recorded(&claim_of(l, row, key, contact), outcome)
                    })
                    .collect();
                let claims: Vec<Claim> = batch
                    .iter()
                    .map(|&(row, key, contact)| claim_of(l, row, key, contact))
                    .collect();
                verdicts.push(l.settle(runs[who], policy, &outs, &claims).unwrap());
                // As the keeper does when it has nothing else to do.
                l.tidy();
            }
            assert_eq!(verdicts[0], verdicts[1], "seed {seed}, step {step}");
            for (v, b) in verdicts[0].iter().zip(&batch) {
                match v {
                    Verdict::Claimed => open_rows[who].push(*b),
                    Verdict::Duplicate(_) => duplicates += 1,
                }
            }
            // What `ledger check` would say of a few keys, from the other connection.
            if step % 7 == 0 {
                let probe: Vec<(u64, usize, usize)> = (0..5)
                    .map(|i| (i, rng.random_range(0..30), rng.random_range(0..12)))
                    .collect();
                let mut found = Vec::new();
                for pair in [&mut xs, &mut ys] {
                    let l = pair.conn(who == 0);
                    let claims: Vec<Claim> = probe
                        .iter()
                        .map(|&(row, key, contact)| claim_of(l, row, key, contact))
                        .collect();
                    found.push(l.lookup(&scope(), policy, &claims).unwrap());
                }
                assert_eq!(found[0], found[1], "seed {seed}, step {step}: lookups");
            }
            if step % 50 == 49 {
                let count = |l: &mut Sqlite| {
                    let s = l.stats().unwrap();
                    s.scopes
                        .iter()
                        .map(|s| (s.created, s.unknown, s.in_flight))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    count(&mut xs.a),
                    count(&mut ys.b),
                    "seed {seed}, step {step}"
                );
            }
        }
        assert!(duplicates > 20, "seed {seed}: only {duplicates} duplicates");
        assert_eq!(in_table(&xs.a, "survey"), 0, "the first ledger never folds");
        assert!(in_table(&ys.a, "survey") > 10, "the second folds");
    }
}

/// `seq` numbers are never given twice, even once every row of the log
/// is gone: a connection that has read up to a number still sees every
/// row added after it.
#[test]
fn a_row_added_after_every_row_was_forgotten_is_still_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut a = open_folding(&path, FOLD_NEVER);
    let mut b = open_folding(&path, FOLD_NEVER);
    let run_a = a.begin_run(&scope(), &run_info("/data/a.csv")).unwrap();
    let run_b = b.begin_run(&scope(), &run_info("/data/b.csv")).unwrap();
    let old: Vec<Claim> = (1..=5).map(|i| claim_of(&a, i, i as usize, 0)).collect();
    a.claim(run_a, Policy::send(None), &old).unwrap();
    // `b` reads them all.
    let v = b.claim(run_b, Policy::send(None), &old).unwrap();
    assert!(v.iter().all(|v| matches!(v, Verdict::Duplicate(_))));
    // `a` forgets everything, then claims a new key.
    a.set_clock(T0 + 10 * DAY_SECS);
    a.forget(from_unix(T0 + DAY_SECS)).unwrap();
    assert_eq!(in_log(&a), 0);
    let new = claim_of(&a, 9, 99, 1);
    a.claim(run_a, Policy::send(None), &[new]).unwrap();
    a.record(run_a, &[recorded(&new, Outcome::Created(7))])
        .unwrap();
    let v = b
        .claim(run_b, Policy::send(None), &[claim_of(&b, 1, 99, 1)])
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(7));
}

const FOLD_NEVER: usize = usize::MAX / 2;
const DAY_SECS: i64 = 86_400;

/// A key whose row another connection folded is found in `survey`; its
/// outcome is recorded there, and a released one is free again.
#[test]
fn outcomes_find_their_row_after_another_connection_folded_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut a = open_folding(&path, FOLD_NEVER);
    let mut b = open_folding(&path, 1);
    let run_a = a.begin_run(&scope(), &run_info("/data/a.csv")).unwrap();
    let run_b = b.begin_run(&scope(), &run_info("/data/b.csv")).unwrap();
    let (k1, k2) = (claim_of(&a, 1, 1, 1), claim_of(&a, 2, 2, 2));
    a.claim(run_a, Policy::send(None), &[k1, k2]).unwrap();
    // `b` claims something else and, folding at one row, folds them all.
    b.claim(run_b, Policy::send(None), &[claim_of(&b, 1, 3, 3)])
        .unwrap();
    while b.tidy() {}
    assert_eq!(in_log(&a), 0);
    assert_eq!(in_table(&a, "survey"), 3);
    a.record(
        run_a,
        &[
            recorded(&k1, Outcome::Created(11)),
            recorded(&k2, Outcome::Released),
        ],
    )
    .unwrap();
    let v = b
        .claim(
            run_b,
            Policy::send(None),
            &[claim_of(&b, 5, 1, 1), claim_of(&b, 6, 2, 2)],
        )
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(11));
    assert_eq!(v[1], Verdict::Claimed);
}

/// A ledger written before `recent` and `log` existed (format 1) is
/// upgraded when opened, and what it knew still stops a row.
#[test]
fn a_format_1_ledger_is_upgraded_and_keeps_its_surveys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    {
        let mut l = open_folding(&path, 1);
        let run = l.begin_run(&scope(), &run_info("/data/old.csv")).unwrap();
        let c = claim_of(&l, 3, 1, 1);
        l.claim(run, Policy::send(None), &[c]).unwrap();
        l.record(run, &[recorded(&c, Outcome::Created(5))]).unwrap();
        l.fold_recent();
        assert_eq!(in_log(&l), 0);
        l.conn
            .execute_batch(&format!(
                "DROP TABLE log; DROP TABLE contact; DELETE FROM meta WHERE name = 'folded';
                 ALTER TABLE survey DROP COLUMN seq; {SURVEY_CONTACT} PRAGMA user_version = 1;"
            ))
            .unwrap();
    }
    let mut l = open_folding(&path, FOLD_NEVER);
    let format: i64 = l
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(format, FORMAT);
    let run = l.begin_run(&scope(), &run_info("/data/new.csv")).unwrap();
    let v = l
        .claim(
            run,
            Policy::send(None),
            &[claim_of(&l, 1, 1, 1), claim_of(&l, 2, 2, 2)],
        )
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(5));
    assert_eq!(v[1], Verdict::Claimed);
    assert_eq!(in_log(&l), 1);
}

/// A format-2 ledger (claims and outcomes in `recent`, a row each;
/// contacts an index of `survey`) and a format-3 one (contacts in
/// `contact`) are upgraded when opened: `recent` is folded, and a contact
/// each knew still stops a row within `contact_within`, whether it was
/// folded already or in `recent`.
#[test]
fn format_2_and_3_ledgers_are_upgraded_and_keep_their_surveys_and_contacts() {
    for format in [2, 3] {
        upgrade_from(format);
    }
}

fn upgrade_from(format: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let (folded, recent) = {
        let mut l = open_folding(&path, FOLD_NEVER);
        let run = l.begin_run(&scope(), &run_info("/data/old.csv")).unwrap();
        let (c1, c2) = (claim_of(&l, 1, 1, 1), claim_of(&l, 2, 2, 2));
        l.claim(run, Policy::send(None), &[c1]).unwrap();
        l.record(run, &[recorded(&c1, Outcome::Created(5))])
            .unwrap();
        l.fold_recent();
        assert_eq!(in_table(&l, "survey"), 1);
        // The second as the older version left it: in `recent`.
        let contacts = if format == 2 {
            format!("DROP TABLE contact; {SURVEY_CONTACT}")
        } else {
            String::new()
        };
        l.conn
            .execute_batch(&format!(
                "DROP TABLE log; DELETE FROM meta WHERE name = 'folded'; {contacts} {RECENT}
                 ALTER TABLE survey DROP COLUMN seq; PRAGMA user_version = {format};"
            ))
            .unwrap();
        l.conn
            .execute(
                "INSERT INTO recent (scope, key, state, at, run, row, id, contact)
                    VALUES (?1, ?2, 1, ?3, ?4, 2, 6, ?5)",
                rusqlite::params![
                    run.scope,
                    &c2.key.0[..],
                    T0,
                    run.run,
                    &c2.contact.unwrap().0[..]
                ],
            )
            .unwrap();
        (c1, c2)
    };
    let mut l = open_folding(&path, FOLD_NEVER);
    let found: i64 = l
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(found, FORMAT);
    let old: i64 = l
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('survey_contact', 'recent')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "format {format}: the old index and table are gone");
    assert_eq!(in_table(&l, "survey"), 2, "format {format}");
    assert_eq!(in_table(&l, "contact"), 2, "format {format}");
    let run = l.begin_run(&scope(), &run_info("/data/new.csv")).unwrap();
    let within = Policy::send(Some(std::time::Duration::from_secs(30 * DAY_SECS as u64)));
    // The same keys: each a duplicate of its survey, with its id.
    let v = l
        .claim(
            run,
            Policy::send(None),
            &[Claim { row: 7, ..folded }, Claim { row: 8, ..recent }],
        )
        .unwrap();
    assert_eq!(earlier(&v[0]).id, Some(5));
    assert_eq!(earlier(&v[1]).id, Some(6));
    // New keys, the same contacts: each stops its row by contact.
    let v = l
        .claim(
            run,
            within,
            &[
                Claim {
                    key: l.hasher().key(b"another survey 1"),
                    ..folded
                },
                Claim {
                    key: l.hasher().key(b"another survey 2"),
                    ..recent
                },
            ],
        )
        .unwrap();
    assert!(earlier(&v[0]).by_contact, "format {format}");
    assert_eq!(earlier(&v[0]).id, Some(5));
    assert!(earlier(&v[1]).by_contact, "format {format}");
    assert_eq!(earlier(&v[1]).id, Some(6));
}

/// `contact` follows `survey` where a row changes outside a fold: an import
/// upgrading a folded survey with its contact adds that contact's entry
/// (found by `contact_within`), and `ledger forget` deletes the entries of
/// the surveys it deletes.
#[test]
fn contact_entries_follow_imports_and_forget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let mut l = open_folding(&path, FOLD_NEVER);
    let run = l.begin_run(&scope(), &run_info("/data/a.csv")).unwrap();
    // Sent and never answered, with no contact known; folded.
    let c = Claim {
        contact: None,
        ..claim_of(&l, 1, 1, 1)
    };
    l.claim(run, Policy::send(None), &[c]).unwrap();
    l.record(run, &[recorded(&c, Outcome::Unknown)]).unwrap();
    l.fold_recent();
    assert_eq!(in_table(&l, "contact"), 0);
    // Its old results file says it was created, for this contact.
    let contact = claim_of(&l, 1, 1, 7).contact;
    let imported = crate::ledger::Imported {
        row: 1,
        key: c.key,
        contact,
        id: Some(42),
        created: true,
        at: from_unix(T0),
    };
    let counts = l.import(run, &[imported]).unwrap();
    assert_eq!(counts.upgraded, 1);
    let within = Policy::send(Some(std::time::Duration::from_secs(30 * DAY_SECS as u64)));
    let v = l
        .claim(
            run,
            within,
            &[Claim {
                row: 2,
                key: l.hasher().key(b"another survey"),
                contact,
            }],
        )
        .unwrap();
    assert!(earlier(&v[0]).by_contact, "{v:?}");
    assert_eq!(earlier(&v[0]).id, Some(42));
    // Forgetting every survey leaves no contact entry behind.
    l.forget(from_unix(T0 + DAY_SECS)).unwrap();
    assert_eq!((in_table(&l, "survey"), in_table(&l, "contact")), (0, 0));
}
