use super::*;
use std::sync::Arc;

fn outcome(row: u64, status: Status) -> Outcome {
    Outcome {
        row,
        fields: csv::StringRecord::from(vec!["a,b", "line1\nline2"]),
        status,
        id: (status == Status::Created).then_some(row * 10),
        http: Some(201),
        attempts: 1,
        errors: if status == Status::Created {
            vec![]
        } else {
            vec!["bad\nthing".into(), "other".into()]
        },
        permit: None,
    }
}

#[test]
fn writes_then_reads_back_and_cuts_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    let header = header_for(&["A".into(), "B".into()]);
    let counters = Arc::new(Counters::default());
    let mut w = Writer::create(&p, &header, Format::default(), counters.clone()).unwrap();
    w.write(&outcome(1, Status::Created)).unwrap();
    w.write(&outcome(2, Status::Rejected)).unwrap();
    w.sync().unwrap();
    drop(w);
    let whole = std::fs::read(&p).unwrap();
    // A torn third record: cut inside its quoted newline.
    let mut torn = whole.clone();
    torn.extend_from_slice(b"x,\"line1\n");
    std::fs::write(&p, &torn).unwrap();
    let ex = read_existing(&p, &header, Format::default()).unwrap();
    assert_eq!(ex.good_len, whole.len() as u64);
    assert!(
        ex.decided.contains_key(&1) && ex.decided.contains_key(&2) && !ex.decided.contains_key(&3)
    );
    assert_eq!(ex.counts[&Status::Rejected], 1);
    assert_eq!(ex.tally.errors["bad thing"], 1);
    let mut t = Tally::default();
    t.count_error("try 1: HTTP 503: busy");
    t.count_error("try 2: HTTP 503: busy");
    t.count_error("try x: odd");
    assert_eq!(
        t.top_errors(5),
        vec![
            ("HTTP 503: busy".to_string(), 2),
            ("try x: odd".to_string(), 1)
        ]
    );
    let mut w = Writer::append(
        &p,
        ex.good_len,
        ex.header,
        &header,
        Format::default(),
        counters,
    )
    .unwrap();
    w.write(&outcome(3, Status::Failed)).unwrap();
    w.sync().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.matches(",3,failed,").count(), 1, "{text}");
    assert!(!text.contains("x,\"line1\n"));
}

#[test]
fn record_without_final_newline_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    let header = header_for(&["A".into()]);
    std::fs::write(&p, "A,digidesk_row,digidesk_status,digidesk_id,digidesk_http_status,digidesk_attempts,digidesk_errors\nx,1,created,5,201,1,\nx,2,created,6,201,1,").unwrap();
    let ex = read_existing(&p, &header, Format::default()).unwrap();
    assert!(ex.decided.contains_key(&1) && !ex.decided.contains_key(&2));
}

const HEAD: &str = "A,digidesk_row,digidesk_status,digidesk_id,digidesk_http_status,digidesk_attempts,digidesk_errors\n";

#[test]
fn a_damaged_line_before_the_end_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    let header = header_for(&["A".into()]);
    let cases = [
        (
            "x,1,created,5,201,1,\ngarbage\nx,3,created,7,201,1,\n",
            3,
            "fields",
        ),
        (
            "x,1,created,5,201,1,\nx,2,creatd,6,201,1,\nx,3,created,7,201,1,\n",
            3,
            "status",
        ),
        (
            "x,18446744073709551615,created,5,201,1,\nx,3,created,7,201,1,\n",
            2,
            "row number",
        ),
        (
            "x,68719476736,failed,,,1,\nx,3,created,7,201,1,\n",
            2,
            "row number",
        ),
        (
            "x,3,failed,,,1,\nx,3,created,7,201,1,\nx,4,created,8,201,1,\n",
            3,
            "again",
        ),
    ];
    for (body, line, what) in cases {
        std::fs::write(&p, format!("{HEAD}{body}")).unwrap();
        let e = read_existing(&p, &header, Format::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("line {line} ")) && e.contains(what),
            "{e}"
        );
    }
}

#[test]
fn a_missing_header_is_put_back_and_a_torn_one_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    let header = header_for(&["A".into()]);
    let rows = "x,1,created,5,201,1,\nx,2,created,6,201,1,\nx,3,cre";
    std::fs::write(&p, rows).unwrap();
    let ex = read_existing(&p, &header, Format::default()).unwrap();
    assert_eq!(ex.header, HeaderState::Missing);
    assert_eq!(ex.decided.len(), 2);
    let counters = Arc::new(Counters::default());
    let mut w = Writer::append(
        &p,
        ex.good_len,
        ex.header,
        &header,
        Format::default(),
        counters.clone(),
    )
    .unwrap();
    w.write(&outcome(3, Status::Failed)).unwrap();
    w.sync().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.starts_with(&format!("{HEAD}x,1,created,5,")), "{text}");
    assert_eq!(
        read_existing(&p, &header, Format::default())
            .unwrap()
            .decided
            .len(),
        3
    );

    std::fs::write(&p, &HEAD[..20]).unwrap();
    let ex = read_existing(&p, &header, Format::default()).unwrap();
    assert_eq!(ex.header, HeaderState::Torn);
    let w = Writer::append(
        &p,
        ex.good_len,
        ex.header,
        &header,
        Format::default(),
        counters,
    )
    .unwrap();
    drop(w);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), HEAD);
}

#[test]
fn torn_or_empty_header_means_start_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    let header = header_for(&["A".into()]);
    for content in ["", "A,digidesk_ro"] {
        std::fs::write(&p, content).unwrap();
        let ex = read_existing(&p, &header, Format::default()).unwrap();
        assert_eq!(ex.good_len, 0);
        assert!(ex.decided.is_empty());
    }
    std::fs::write(&p, "B,x").unwrap();
    assert!(read_existing(&p, &header, Format::default()).is_err());
}

#[test]
fn other_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.csv");
    std::fs::write(&p, "x,y\n1,2\n").unwrap();
    let e = read_existing(&p, &header_for(&["A".into()]), Format::default()).unwrap_err();
    assert!(matches!(e, ResultsError::OtherColumns { .. }), "{e}");
}
