use super::*;
use crate::config::{parse_delimiter, parse_encoding};
use crate::input::error::encoding_hint;
use std::io::Write;

/// What the user reads for `e`.
fn message(e: ReadError) -> String {
    e.message()
}

fn open(bytes: &[u8], name: &str, enc: &str, delim: &str) -> Result<Reader, ReadError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let opts = ReadOptions {
        encoding: parse_encoding(enc).unwrap(),
        delimiter: parse_delimiter(delim).unwrap(),
    };
    let r = Reader::open(&Origin::File(path), &opts);
    drop(dir); // the reader holds the file open
    r
}

fn all(r: &mut Reader) -> Vec<(u64, Vec<String>)> {
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.row, rec.fields.iter().map(str::to_string).collect()));
    }
    out
}

#[test]
fn bom_crlf_quotes_and_newlines() {
    let data = "\u{feff}Name, Phone \r\n\"Smith, \"\"J\"\"\",\"07911\n123456\"\r\nZoë,1\r\n";
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    assert_eq!(r.headers(), ["Name", "Phone"]);
    let rows = all(&mut r);
    assert_eq!(
        rows[0],
        (
            1,
            vec!["Smith, \"J\"".to_string(), "07911\n123456".to_string()]
        )
    );
    assert_eq!(rows[1], (2, vec!["Zoë".to_string(), "1".to_string()]));
}

#[test]
fn semicolons_and_windows_1252() {
    let mut data = b"Name;City\n".to_vec();
    data.extend_from_slice(b"Ren\xe9e;M\xfcnchen\n");
    let mut r = open(&data, "a.csv", "windows-1252", ";").unwrap();
    assert_eq!(
        all(&mut r),
        vec![(1, vec!["Renée".to_string(), "München".to_string()])]
    );
}

#[test]
fn a_byte_not_valid_utf8_is_replaced_and_its_cell_reported() {
    let data = b"Name,City\nA,B\nRen\xe9e,X\n";
    let mut r = open(data, "a.csv", "utf-8", ",").unwrap();
    let first = r.next_record().unwrap().unwrap();
    assert!(first.meta.bad.is_empty());
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(rec.row, 2);
    assert_eq!(&rec.fields[0], "Ren\u{FFFD}e");
    assert_eq!(
        rec.meta.bad,
        vec![BadCell {
            column: 0,
            at: Some((3, 0xE9))
        }]
    );
    assert_eq!(rec.meta.line, 3);
    assert!(r.next_record().unwrap().is_none());
}

#[test]
fn a_byte_not_valid_in_a_single_byte_encoding_is_found_too() {
    // 0xAA has no character in windows-1253.
    let mut r = open(b"A,B\nx,ab\xAAc\n", "a.csv", "windows-1253", ",").unwrap();
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(&rec.fields[1], "ab\u{FFFD}c");
    assert_eq!(
        rec.meta.bad,
        vec![BadCell {
            column: 1,
            at: Some((2, 0xAA))
        }]
    );
}

#[test]
fn gzip_by_name_and_by_magic() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"A,B\n1,2\n").unwrap();
    let bytes = gz.finish().unwrap();
    for name in ["a.csv.gz", "a.csv"] {
        let mut r = open(&bytes, name, "utf-8", ",").unwrap();
        assert_eq!(r.headers(), ["A", "B"]);
        assert_eq!(all(&mut r).len(), 1);
    }
}

#[test]
fn wrong_field_counts_are_returned_as_read() {
    let mut r = open(b"A,B,C\n1,2\n1,2,3,4\n", "a.csv", "utf-8", ",").unwrap();
    let rows = all(&mut r);
    assert_eq!(rows[0].1.len(), 2);
    assert_eq!(rows[1].1.len(), 4);
}

#[test]
fn utf16_is_transcoded() {
    let text = "A,B\n\u{e9},2\n";
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let mut r = open(&bytes, "a.csv", "utf-16le", ",").unwrap();
    assert_eq!(r.headers(), ["A", "B"]);
    assert_eq!(
        all(&mut r),
        vec![(1, vec!["é".to_string(), "2".to_string()])]
    );
}

#[test]
fn utf16_across_many_reads_keeps_every_character() {
    let mut text = String::from("A,B\n");
    for i in 0..5000 {
        text.push_str(&format!("{i},Zoë 🙂 {i}\n"));
    }
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let mut r = open(&bytes, "a.csv", "utf-16le", ",").unwrap();
    let rows = all(&mut r);
    assert_eq!(rows.len(), 5000);
    assert_eq!(rows[4999].1[1], "Zoë 🙂 4999");
    // An unpaired surrogate is replaced and its cell reported.
    let mut bad = vec![0xFF, 0xFE];
    for u in "A,B\n1,".encode_utf16() {
        bad.extend_from_slice(&u.to_le_bytes());
    }
    bad.extend_from_slice(&0xD800u16.to_le_bytes());
    bad.extend_from_slice(&(b'x' as u16).to_le_bytes());
    let mut r = open(&bad, "a.csv", "utf-16le", ",").unwrap();
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(&rec.fields[1], "\u{FFFD}x");
    assert_eq!(
        rec.meta.bad,
        vec![BadCell {
            column: 1,
            at: None
        }]
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

#[test]
fn a_byte_order_mark_wins_over_the_encoding_asked_for() {
    for be in [false, true] {
        for asked in ["utf-8", "windows-1252"] {
            let bytes = utf16("Name\tPhone\r\nZo\u{eb}\t07700 900123\r\n", be);
            let mut r = open(&bytes, "a.txt", asked, "tab").unwrap();
            assert_eq!(r.headers(), ["Name", "Phone"], "be {be}, {asked}");
            let rows = all(&mut r);
            let want = vec!["Zo\u{eb}".to_string(), "07700 900123".to_string()];
            assert_eq!(rows, vec![(1, want)]);
            let enc = if be { "UTF-16BE" } else { "UTF-16LE" };
            assert_eq!(r.notes().lock().unwrap().bom, Some(enc));
        }
    }
    // A UTF-8 one too: windows-1252 asked for, UTF-8 read.
    let data = "\u{feff}A,B\nZo\u{eb},1\n";
    let mut r = open(data.as_bytes(), "a.csv", "windows-1252", ",").unwrap();
    assert_eq!(r.headers(), ["A", "B"]);
    assert_eq!(all(&mut r)[0].1[0], "Zo\u{eb}");
}

#[test]
fn utf16_without_a_byte_order_mark_is_never_told_to_try_windows_1252() {
    let bytes = utf16("Name,Phone\n", false)[2..].to_vec();
    let e = message(open(&bytes, "a.csv", "utf-8", ",").err().unwrap());
    assert!(e.contains("utf-16le"), "{e}");
    assert!(!e.contains("windows-1252"), "{e}");
    assert!(!encoding_hint("UTF-16LE", false).contains("windows-1252"));
    assert!(!encoding_hint("UTF-8", true).contains("windows-1252"));
    assert!(encoding_hint("UTF-8", false).contains("windows-1252"));
}

#[test]
fn excel_sep_line_sets_the_delimiter_and_is_not_the_header() {
    for asked in [",", ";", "|"] {
        let data = b"sep=;\r\nName;Phone\r\nAnn;1\r\n";
        let mut r = open(data, "a.csv", "utf-8", asked).unwrap();
        assert_eq!(r.headers(), ["Name", "Phone"], "--delimiter {asked}");
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!((rec.row, rec.meta.line), (1, 3));
        assert_eq!(r.notes().lock().unwrap().sep, Some(';'));
    }
    // After a byte-order mark, in UTF-16 too.
    let bytes = utf16("sep=|\r\nA|B\r\n1|2\r\n", false);
    let mut r = open(&bytes, "a.csv", "utf-8", ",").unwrap();
    assert_eq!(r.headers(), ["A", "B"]);
    assert_eq!(
        all(&mut r),
        vec![(1, vec!["1".to_string(), "2".to_string()])]
    );
    // Without one, nothing changes.
    let r = open(b"A,B\n1,2\n", "a.csv", "utf-8", ",").unwrap();
    assert_eq!(r.notes().lock().unwrap().sep, None);
}

const SALESFORCE: &str = "\"Subject\",\"Phone\",\"Owner\"\n\
    \"Call\",\"0161 496 0000\",\"Ann\"\n\
    \"Call\",\"0161 496 0001\",\"Bob\"\n\
    \n\
    \"\"\n\
    \"Grand Totals (2 records)\"\n\
    \"\"\n\
    \"Confidential Information - Do Not Distribute\"\n\
    \"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\"\n";

#[test]
fn a_footer_after_the_data_is_ignored_and_counted() {
    let mut r = open(SALESFORCE.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    let rows = all(&mut r);
    assert_eq!(rows.len(), 2);
    let notes = r.notes().lock().unwrap().clone();
    let footer = Footer {
        records: 5,
        first_line: 5,
        last_line: 9,
    };
    assert_eq!(notes.footer, Some(footer));
    assert_eq!(notes.ignored(), 5);
    // Trailing lines of delimiters only are blank too.
    let mut r = open(b"A,B\n1,2\n,\n , \n", "a.csv", "utf-8", ",").unwrap();
    assert_eq!(all(&mut r).len(), 1);
    assert_eq!(r.notes().lock().unwrap().ignored(), 2);
}

#[test]
fn a_short_row_in_the_middle_is_a_row() {
    let data = "A,B,C\n1,2,3\nnote\n\"\"\n4,5,6\nGrand Totals\n";
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    let rows = all(&mut r);
    let numbers: Vec<u64> = rows.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(rows[1].1, ["note"]);
    assert_eq!(rows[3].1, ["4", "5", "6"]);
    assert_eq!(r.notes().lock().unwrap().ignored(), 1);
    // A long run of short rows at the end is not a footer: rows.
    let mut data = String::from("A,B\n1,2\n");
    for i in 0..=MAX_FOOTER_RECORDS {
        data.push_str(&format!("{i}\n"));
    }
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    assert_eq!(all(&mut r).len(), MAX_FOOTER_RECORDS + 2);
    assert_eq!(r.notes().lock().unwrap().ignored(), 0);
}

#[test]
fn an_unclosed_quote_is_a_broken_record_naming_its_lines() {
    let data = "A,B,C\n1,2,3\n4,\"5,6\n7,8,9\n10,11,12\n";
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(rec.row, 2);
    assert_eq!((rec.meta.line, rec.meta.lines), (3, 3));
    let why = rec.meta.broken.unwrap();
    assert!(why.contains("starting on line 3 is never closed"), "{why}");
    assert!(why.contains("lines 3-5 (3 lines)"), "{why}");
    assert!(r.next_record().unwrap().is_none());
    // Rows folded into a field by two stray quotes, whatever the width.
    let data = "A,B,C\n1,\"2\n3,4,5\n6,7\",8\n9,10,11\n";
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(rec.fields.len(), 3, "a width that happens to fit");
    let why = rec.meta.broken.unwrap();
    assert!(
        why.contains("lines 2-4 (3 lines) that look like rows"),
        "{why}"
    );
    assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
    // A note over several lines is not.
    let data = "A,B,C\n1,\"line one\nline two, more\",3\n";
    let mut r = open(data.as_bytes(), "a.csv", "utf-8", ",").unwrap();
    assert!(r.next_record().unwrap().unwrap().meta.broken.is_none());
    // A broken record at the end is never taken for a footer.
    let mut r = open(b"A,B\n1,2\n\"open\n", "a.csv", "utf-8", ",").unwrap();
    assert_eq!(all(&mut r).len(), 2);
}

#[test]
fn a_headerless_file_names_columns_by_position_and_keeps_its_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Master.csv");
    let data = "\u{feff}\"\",\"100\",\"+15551234\"\n\"\",\"101\",\"x\"\n\"total\"\n";
    std::fs::write(&path, data).unwrap();
    let opts = ReadOptions {
        encoding: encoding_rs::UTF_8,
        delimiter: b',',
    };
    let mut r = Reader::open_with_header(&Origin::File(path), &opts, false).unwrap();
    assert_eq!(r.headers(), ["#1", "#2", "#3"]);
    assert_eq!(
        all(&mut r),
        vec![
            (1, vec!["".to_string(), "100".into(), "+15551234".into()]),
            (2, vec!["".to_string(), "101".into(), "x".into()]),
        ],
        "the first line is row 1, without its byte-order mark"
    );
    assert_eq!(r.notes().lock().unwrap().ignored(), 1);
    let first =
        Reader::open_with_header(&Origin::File(dir.path().join("Master.csv")), &opts, false)
            .unwrap()
            .next_record()
            .unwrap()
            .unwrap();
    assert_eq!(first.meta.line, 1);
}

#[test]
fn bad_options_are_explained() {
    assert!(parse_encoding("klingon")
        .unwrap_err()
        .to_string()
        .contains("windows-1252"));
    assert_eq!(parse_delimiter("tab").unwrap(), b'\t');
    assert!(parse_delimiter(";;").is_err());
    let dir = tempfile::tempdir().unwrap();
    let missing = Origin::File(dir.path().join("nope.csv"));
    let opts = ReadOptions {
        encoding: encoding_rs::UTF_8,
        delimiter: b',',
    };
    assert!(Reader::open(&missing, &opts)
        .err()
        .unwrap()
        .to_string()
        .contains("nope.csv"));
    assert!(open(b"", "e.csv", "utf-8", ",")
        .err()
        .unwrap()
        .to_string()
        .contains("empty"));
}
