//! Conditions on a row: `{ column, equals }`, `{ column, empty }`,
//! `{ column, matches }`, `{ column, less_than }`, `{ column, greater_than }`,
//! and `all`, `any`, `not` over them. They serve `when`, `[skip] rules` and
//! `[skip] only`. `C` names a column: a header name, then an index.

use regex::Regex;

/// A condition, checked; regular expressions compiled once, here.
#[derive(Debug, Clone)]
pub(super) enum Condition<C> {
    /// The trimmed cell is one of these (lower-cased: compared case-insensitively).
    Equals { column: C, values: Vec<String> },
    /// The trimmed cell is empty (`empty = true`) or not (`empty = false`).
    Empty { column: C, empty: bool },
    /// The regular expression finds a match in the trimmed cell.
    Matches { column: C, regex: Regex },
    /// The cell is a number below this one (a cell that is not a number never is).
    LessThan { column: C, than: f64 },
    /// The cell is a number above this one (a cell that is not a number never is).
    GreaterThan { column: C, than: f64 },
    /// Every condition holds.
    All(Vec<Condition<C>>),
    /// At least one condition holds.
    Any(Vec<Condition<C>>),
    /// The condition does not hold.
    Not(Box<Condition<C>>),
}

impl<C> Condition<C> {
    /// Calls `f` with every column the condition tests, in order.
    pub fn visit(&self, f: &mut dyn FnMut(&C)) {
        match self {
            Condition::Equals { column, .. }
            | Condition::Empty { column, .. }
            | Condition::Matches { column, .. }
            | Condition::LessThan { column, .. }
            | Condition::GreaterThan { column, .. } => f(column),
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.visit(f)),
            Condition::Not(c) => c.visit(f),
        }
    }

    /// The same condition with each column replaced by `f`'s answer.
    pub fn resolve<D>(&self, f: &mut dyn FnMut(&C) -> D) -> Condition<D> {
        match self {
            Condition::Equals { column, values } => Condition::Equals {
                column: f(column),
                values: values.clone(),
            },
            Condition::Empty { column, empty } => Condition::Empty {
                column: f(column),
                empty: *empty,
            },
            Condition::Matches { column, regex } => Condition::Matches {
                column: f(column),
                regex: regex.clone(),
            },
            Condition::LessThan { column, than } => Condition::LessThan {
                column: f(column),
                than: *than,
            },
            Condition::GreaterThan { column, than } => Condition::GreaterThan {
                column: f(column),
                than: *than,
            },
            Condition::All(cs) => Condition::All(cs.iter().map(|c| c.resolve(f)).collect()),
            Condition::Any(cs) => Condition::Any(cs.iter().map(|c| c.resolve(f)).collect()),
            Condition::Not(c) => Condition::Not(Box::new(c.resolve(f))),
        }
    }
}

impl Condition<String> {
    /// The condition in words, for reasons: `Direction = "inbound"`.
    pub fn describe(&self) -> String {
        let list = |cs: &[Condition<String>]| {
            cs.iter()
                .map(Condition::describe)
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            Condition::Equals { column, values } => {
                let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                format!("{column} = {}", values.join(" or "))
            }
            Condition::Empty {
                column,
                empty: true,
            } => format!("{column} is empty"),
            Condition::Empty {
                column,
                empty: false,
            } => format!("{column} is not empty"),
            Condition::Matches { column, regex } => {
                format!("{column} matches {:?}", regex.as_str())
            }
            Condition::LessThan { column, than } => format!("{column} < {than}"),
            Condition::GreaterThan { column, than } => format!("{column} > {than}"),
            Condition::All(cs) => format!("all of ({})", list(cs)),
            Condition::Any(cs) => format!("any of ({})", list(cs)),
            Condition::Not(c) => format!("not ({})", c.describe()),
        }
    }
}

impl Condition<usize> {
    /// Whether the condition holds for a row (a column past the row's end is empty).
    pub fn holds(&self, row: &csv::StringRecord) -> bool {
        let cell = |i: &usize| super::cell(row, *i);
        match self {
            Condition::Equals { column, values } => {
                let cell = cell(column);
                values.iter().any(|v| {
                    v.eq_ignore_ascii_case(cell) || !cell.is_ascii() && *v == cell.to_lowercase()
                })
            }
            Condition::Empty { column, empty } => cell(column).is_empty() == *empty,
            Condition::Matches { column, regex } => regex.is_match(cell(column)),
            Condition::LessThan { column, than } => number(cell(column)).is_some_and(|n| n < *than),
            Condition::GreaterThan { column, than } => {
                number(cell(column)).is_some_and(|n| n > *than)
            }
            Condition::All(cs) => cs.iter().all(|c| c.holds(row)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(row)),
            Condition::Not(c) => !c.holds(row),
        }
    }
}

/// A cell as a number: `10`, `-2.5`, `1e3`; not `NaN`, `inf`, `10 s` or empty.
fn number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    fn equals(column: usize, values: &[&str]) -> Condition<usize> {
        Condition::Equals {
            column,
            values: values.iter().map(|v| v.to_lowercase()).collect(),
        }
    }

    #[test]
    fn equals_is_trimmed_and_case_insensitive_and_takes_a_list() {
        let c = equals(0, &["Inbound", "In"]);
        assert!(c.holds(&row(&[" INBOUND "])));
        assert!(c.holds(&row(&["in"])));
        assert!(!c.holds(&row(&["Outbound"])));
        assert!(!c.holds(&row(&[""])), "an empty cell equals nothing listed");
        assert!(
            equals(0, &["Ça"]).holds(&row(&["ÇA"])),
            "non-ASCII case too"
        );
        assert!(
            equals(0, &[""]).holds(&row(&["  "])),
            "\"\" matches an empty cell"
        );
    }

    #[test]
    fn empty_is_after_trimming_and_a_missing_cell_is_empty() {
        let empty = Condition::Empty {
            column: 1,
            empty: true,
        };
        let full = Condition::Empty {
            column: 1,
            empty: false,
        };
        assert!(empty.holds(&row(&["a", "  "])));
        assert!(empty.holds(&row(&["a"])), "past the row's end");
        assert!(full.holds(&row(&["a", "CA12"])));
        assert!(!full.holds(&row(&["a", ""])));
    }

    #[test]
    fn matches_searches_the_trimmed_cell() {
        let c = Condition::Matches {
            column: 0,
            regex: Regex::new("^(Test|QA)").unwrap(),
        };
        assert!(c.holds(&row(&["  QA queue"])));
        assert!(!c.holds(&row(&["Sales QA"])));
        assert!(!c.holds(&row(&[""])));
    }

    #[test]
    fn numbers_compare_and_a_non_number_never_matches() {
        let lt = Condition::LessThan {
            column: 0,
            than: 10.0,
        };
        let gt = Condition::GreaterThan {
            column: 0,
            than: 10.0,
        };
        assert!(lt.holds(&row(&[" 9 "])));
        assert!(lt.holds(&row(&["-2.5"])));
        assert!(!lt.holds(&row(&["10"])), "not below itself");
        assert!(gt.holds(&row(&["10.5"])));
        for not_a_number in ["", "ten", "9 s", "NaN", "inf", "0:09"] {
            assert!(!lt.holds(&row(&[not_a_number])), "{not_a_number:?}");
            assert!(!gt.holds(&row(&[not_a_number])), "{not_a_number:?}");
            assert!(
                Condition::Not(Box::new(lt.clone())).holds(&row(&[not_a_number])),
                "not (less_than) holds for {not_a_number:?}"
            );
        }
    }

    #[test]
    fn all_any_and_not_combine() {
        let missed = equals(0, &["Missed"]);
        let voicemail = Condition::Not(Box::new(Condition::Empty {
            column: 1,
            empty: true,
        }));
        let all = Condition::All(vec![missed.clone(), voicemail.clone()]);
        assert!(all.holds(&row(&["missed", "vm-1"])));
        assert!(!all.holds(&row(&["missed", ""])));
        let any = Condition::Any(vec![missed, voicemail]);
        assert!(any.holds(&row(&["answered", "vm-1"])));
        assert!(!any.holds(&row(&["answered", ""])));
    }

    #[test]
    fn conditions_describe_themselves_without_cell_values() {
        let c: Condition<String> = Condition::All(vec![
            Condition::Equals {
                column: "Result".into(),
                values: vec!["missed".into()],
            },
            Condition::Not(Box::new(Condition::Empty {
                column: "Voicemail".into(),
                empty: true,
            })),
            Condition::LessThan {
                column: "Duration".into(),
                than: 10.0,
            },
        ]);
        assert_eq!(
            c.describe(),
            "all of (Result = \"missed\"; not (Voicemail is empty); Duration < 10)"
        );
    }
}
