//! The values `check` shows: the distinct values of each column a condition
//! tests, counted, and the values quoted in reasons taken out of them so that
//! rows group by what is wrong. Printed on stdout only, never logged.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::mapping::TestedColumn;
use crate::summary::thousands;

/// Distinct values tracked per column; the values first seen past this many
/// are counted together, so memory stays flat on a column of ids.
const MAX_TRACKED: usize = 1000;

/// Values shown per column, most frequent first.
const SHOWN: usize = 20;

/// Characters of a value shown before it is cut.
const CUT: usize = 40;

/// How many rows have each value of one column (trimmed, as conditions see it).
#[derive(Debug, Default)]
pub(super) struct Tally {
    column: usize,
    counts: HashMap<Box<str>, u64>,
    /// Rows whose value was first seen past `MAX_TRACKED` distinct ones.
    untracked: u64,
}

impl Tally {
    /// A tally for each tested column: none for a mapping without conditions.
    pub fn for_columns(tested: &[TestedColumn]) -> Vec<Tally> {
        tested
            .iter()
            .map(|t| Tally {
                column: t.index,
                ..Tally::default()
            })
            .collect()
    }

    /// Counts one row (a column past the row's end is empty).
    pub fn count(&mut self, row: &csv::StringRecord) {
        let value = crate::mapping::cell(row, self.column);
        self.add(value, 1);
    }

    fn add(&mut self, value: &str, n: u64) {
        if let Some(c) = self.counts.get_mut(value) {
            *c += n;
        } else if self.counts.len() < MAX_TRACKED {
            self.counts.insert(value.into(), n);
        } else {
            self.untracked += n;
        }
    }

    /// Adds a later batch's counts.
    pub fn merge(&mut self, later: Tally) {
        for (value, n) in later.counts {
            let full = self.counts.len() >= MAX_TRACKED;
            match self.counts.get_mut(&value) {
                Some(c) => *c += n,
                None if !full => {
                    self.counts.insert(value, n);
                }
                None => self.untracked += n,
            }
        }
        self.untracked += later.untracked;
    }
}

/// The section listing each tested column's values; nothing when the
/// mapping tests none.
pub(super) fn render(tested: &[TestedColumn], tallies: &[Tally], out: &mut String) {
    if tested.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Values of the columns your rules test, with their rows, most frequent first:"
    );
    for (t, tally) in tested.iter().zip(tallies) {
        let _ = writeln!(out, "  {} ({}):", t.name, t.places.join(", "));
        let mut values: Vec<(&str, u64)> =
            tally.counts.iter().map(|(v, n)| (v.as_ref(), *n)).collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (value, n) in values.iter().take(SHOWN) {
            let _ = writeln!(out, "    {:>8}  {}", thousands(*n), cut(value));
        }
        let rest = &values[values.len().min(SHOWN)..];
        let rest_rows: u64 = rest.iter().map(|(_, n)| n).sum::<u64>() + tally.untracked;
        if rest_rows > 0 {
            let more = if tally.untracked > 0 {
                format!("more than {}", thousands(rest.len() as u64))
            } else {
                thousands(rest.len() as u64)
            };
            let _ = writeln!(
                out,
                "    {:>8}  and {more} more values",
                thousands(rest_rows)
            );
        }
    }
}

/// A value for the report: quoted, cut after `CUT` characters.
pub(super) fn cut(value: &str) -> String {
    match value.char_indices().nth(CUT) {
        Some((end, _)) => format!("{:?}...", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// A reason that quotes the row's value, split into the reason without it
/// (what rows are grouped by) and the quoted value: a contact that is not one,
/// a time that does not match its pattern, a `when` no rule holds for. `None`
/// for any other reason.
pub(super) fn split_value(reason: &str) -> Option<(String, String)> {
    if let Some((kind, value)) = crate::contact::split_reason(reason) {
        return Some((kind, value.to_string()));
    }
    const WHEN: &str = ": no when rule holds and there is no else (";
    if let Some(at) = reason.find(WHEN) {
        let values = reason[at + WHEN.len()..].strip_suffix(')')?;
        let kind = &reason[..at + WHEN.len() - 2];
        return Some((kind.to_string(), values.to_string()));
    }
    if reason.contains(" does not match the time pattern ") {
        // `field: "value" in column "Start" does not match ...`
        for (at, _) in reason.match_indices(": \"") {
            let end = at + 2 + quoted_len(&reason[at + 2..])?;
            if let Some(rest) = reason[end..].strip_prefix(" in ") {
                let kind = format!("{}: the value in {rest}", &reason[..at]);
                return Some((kind, reason[at + 2..end].to_string()));
            }
        }
    }
    None
}

/// The length of the `{:?}`-quoted string `s` starts with.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, index: usize, place: &str) -> TestedColumn {
        TestedColumn {
            index,
            name: name.into(),
            places: vec![place.into()],
        }
    }

    fn row(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn values_are_counted_trimmed_across_batches_most_frequent_first() {
        let tested = [column("Opt Out", 1, "[skip] rule 1")];
        let mut total = Tally::for_columns(&tested);
        for batch in [
            &["", " Y", "", "Opted out"][..],
            &["Y ", "", "", "Opted out"],
        ] {
            let mut tally = Tally::for_columns(&tested);
            for v in batch {
                tally[0].count(&row(&["x", v]));
            }
            tally[0].count(&row(&["short row"]));
            total[0].merge(tally.pop().unwrap());
        }
        let mut out = String::new();
        render(&tested, &total, &mut out);
        assert_eq!(
            out,
            "Values of the columns your rules test, with their rows, most frequent first:\n  \
             Opt Out ([skip] rule 1):\n           6  \"\"\n           2  \"Opted out\"\n           2  \"Y\"\n"
        );
    }

    #[test]
    fn twenty_values_are_shown_and_the_rest_summed() {
        let tested = [column("Queue", 0, "[skip] only")];
        let mut tally = Tally::for_columns(&tested);
        for i in 0..25u64 {
            for _ in 0..(100 - i) {
                tally[0].count(&row(&[&format!("q{i:02}")]));
            }
        }
        let mut out = String::new();
        render(&tested, &tally, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 + 20 + 1, "{out}");
        assert_eq!(lines[2], "         100  \"q00\"");
        assert_eq!(lines[21], "          81  \"q19\"");
        // q20..q24: 80 + 79 + 78 + 77 + 76 rows.
        assert_eq!(lines[22], "         390  and 5 more values");
    }

    #[test]
    fn distinct_values_past_the_cap_are_counted_not_kept() {
        let tested = [column("Id", 0, "[skip] rule 1")];
        let mut total = Tally::for_columns(&tested);
        for batch in 0..3 {
            let mut tally = Tally::for_columns(&tested);
            for i in 0..1000 {
                tally[0].count(&row(&[&format!("{batch}-{i}")]));
            }
            total[0].merge(tally.pop().unwrap());
        }
        assert_eq!(total[0].counts.len(), MAX_TRACKED);
        assert_eq!(total[0].untracked, 2000);
        let mut out = String::new();
        render(&tested, &total, &mut out);
        assert!(
            out.ends_with("       2,980  and more than 980 more values\n"),
            "{out}"
        );
    }

    #[test]
    fn no_tested_column_renders_nothing() {
        let mut out = String::new();
        render(&[], &Tally::for_columns(&[]), &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn long_values_are_cut_and_quoted() {
        assert_eq!(cut("Y"), "\"Y\"");
        assert_eq!(cut(""), "\"\"");
        let long = "é".repeat(41);
        assert_eq!(cut(&long), format!("\"{}\"...", "é".repeat(40)));
    }

    #[test]
    fn quoted_values_are_taken_out_of_reasons() {
        assert_eq!(
            split_value("start_time: \"25.13.13\" in column \"Start\" does not match the time pattern \"%d.%m.%y\""),
            Some((
                "start_time: the value in column \"Start\" does not match the time pattern \"%d.%m.%y\"".into(),
                "\"25.13.13\"".into()
            ))
        );
        assert_eq!(
            split_value("misc_data \"Call: \\\"x\": \"a \\\" b\" in template \"{Start}\" does not match the time pattern \"%d\""),
            Some((
                "misc_data \"Call: \\\"x\": the value in template \"{Start}\" does not match the time pattern \"%d\"".into(),
                "\"a \\\" b\"".into()
            )),
            "quotes inside the key and the value"
        );
        assert_eq!(
            split_value("customer_contact: no when rule holds and there is no else (Direction = \"transfer\", Queue = \"\")"),
            Some((
                "customer_contact: no when rule holds and there is no else".into(),
                "Direction = \"transfer\", Queue = \"\"".into()
            ))
        );
        let (kind, value) = split_value(
            "customer_contact \"123\" is not a valid phone number for region GB: too short",
        )
        .unwrap();
        assert_eq!(
            (kind.as_str(), value.as_str()),
            (
                "customer_contact is not a valid phone number for region GB: too short",
                "\"123\""
            )
        );
        for plain in [
            "account_number is 251 characters; at most 250 are allowed",
            "customer_contact is required but empty",
            "row has 2 fields, the header has 3",
        ] {
            assert_eq!(split_value(plain), None, "{plain}");
        }
    }
}
