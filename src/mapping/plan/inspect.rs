//! What `check` asks of a plan beyond deciding rows: the columns the
//! conditions test, and the value a reason is about. Neither is used when
//! sending.

use super::{locate, position, Misc, Plan};
use crate::mapping::Mapping;
use crate::spec;

/// A column that a `when` or `[skip]` condition tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestedColumn {
    /// Its position in the header.
    pub index: usize,
    /// How the report names it: the header's name, or `#N "Name"` when the
    /// mapping refers to it by position.
    pub name: String,
    /// Where it is tested (`when in [fields] customer_contact`, `[skip] rule 1`), once each.
    pub places: Vec<String>,
}

/// The mapping's tested columns against a header it fits, once each, in
/// the order the file names them.
pub(super) fn tested(mapping: &Mapping, headers: &[String]) -> Vec<TestedColumn> {
    let mut tested: Vec<TestedColumn> = Vec::new();
    for (column, place) in mapping.columns_tested() {
        let Ok(index) = locate(&column, headers) else {
            continue;
        };
        match tested.iter_mut().find(|t| t.index == index) {
            Some(t) if t.places.contains(&place) => {}
            Some(t) => t.places.push(place),
            None => {
                let header = headers.get(index).map(String::as_str).unwrap_or("");
                let name = if position(&column).is_some() && !header.is_empty() && header != column
                {
                    format!("{column} {header:?}")
                } else {
                    column
                };
                tested.push(TestedColumn {
                    index,
                    name,
                    places: vec![place],
                });
            }
        }
    }
    tested
}

impl Plan {
    /// The columns the conditions test; empty when the mapping has no `when`
    /// and no `[skip]`.
    pub fn tested_columns(&self) -> &[TestedColumn] {
        &self.tested
    }

    /// The value an invalid row's reason is about, as the mapping made it
    /// (`account_number is 300 characters` gives the account number), when
    /// the reason names a field or `misc_data` entry and the value is not
    /// empty. `None` for reasons about the row itself.
    pub fn offending_value(&self, reason: &str, row: &csv::StringRecord) -> Option<String> {
        let value = if let Some(rest) = reason.strip_prefix("misc_data \"") {
            // `misc_data "key" ...`; a long key was cut to 40 characters and "...".
            let key = rest.split_once('"')?.0;
            let cut = key.strip_suffix("...");
            self.misc.iter().find_map(|m| {
                let (k, value) = match m {
                    Misc::Column(k, i) => (k, Ok(row.get(*i).unwrap_or("").trim().into())),
                    Misc::Value(k, v) => (k, v.eval(row)),
                };
                let same = k == key || cut.is_some_and(|c| k.starts_with(c));
                same.then(|| value.ok()).flatten()
            })?
        } else {
            let field = reason.split([' ', ':']).next()?;
            let spec = match field {
                spec::CUSTOMER_CONTACT => Some(&self.contact),
                spec::CAMPAIGN_NAME => Some(&self.campaign),
                spec::CUSTOMER_NAME => self.name.as_ref(),
                spec::ACCOUNT_NUMBER => self.account.as_ref(),
                spec::AGENT_NAME => self.agent.as_ref(),
                _ => self.extra.iter().find(|(k, _)| k == field).map(|(_, v)| v),
            }?;
            spec.eval(row).ok()?
        };
        (!value.is_empty()).then(|| value.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml: &str, headers: &[&str]) -> Plan {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        Plan::compile(&Mapping::parse(toml, "m.toml").unwrap(), &headers, "in.csv").unwrap()
    }

    const TESTS: &str = r##"
[fields]
customer_contact = { when = [
  { if = { column = "Direction", equals = "Inbound" }, then = "From" },
  { if = { any = [{ column = "#2", equals = "Outbound" }, { column = "Queue", empty = false }] }, then = "To" },
], else = "From" }
campaign_name = { value = "C" }
[skip]
rules = [
  { column = "Opt Out", equals = "Y" },
  { not = { column = "Direction", matches = "^(In|Out)" } },
]
only = { column = "Duration", greater_than = 10 }
"##;

    #[test]
    fn tested_columns_are_each_listed_once_with_every_place_that_tests_them() {
        let p = plan(
            TESTS,
            &["From", "Direction", "To", "Opt Out", "Queue", "Duration"],
        );
        let got: Vec<(usize, &str, String)> = p
            .tested_columns()
            .iter()
            .map(|t| (t.index, t.name.as_str(), t.places.join(" | ")))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "Direction",
                    "when in [fields] customer_contact | [skip] rule 2".to_string()
                ),
                (4, "Queue", "when in [fields] customer_contact".to_string()),
                (3, "Opt Out", "[skip] rule 1".to_string()),
                (5, "Duration", "[skip] only".to_string()),
            ],
            "#2 is Direction: one entry"
        );
    }

    #[test]
    fn a_column_named_by_position_shows_its_header_too() {
        let p = plan(
            "[fields]\ncustomer_contact = \"#1\"\ncampaign_name = { value = \"C\" }\n[skip]\nrules = [{ column = \"#2\", equals = \"Y\" }]\n",
            &["Phone", "Status"],
        );
        assert_eq!(p.tested_columns()[0].name, "#2 \"Status\"");
        assert_eq!(p.tested_columns()[0].index, 1);
    }

    #[test]
    fn a_plain_mapping_tests_no_column() {
        let p = plan(
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"C\" }\naccount_number = { column = \"Ref\" }\n",
            &["Phone", "Ref"],
        );
        assert!(p.tested_columns().is_empty());
    }

    #[test]
    fn the_offending_value_is_the_one_the_reason_names() {
        let p = plan(
            r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "C" }
account_number = { template = "{Ref}-{Ref}" }
[contact]
own_numbers = ["+442079460000"]
[misc_data]
columns = ["Note"]
[misc_data.fields]
"Long key for a long note, longer than forty characters" = "Note"
[extra]
source = "Ref"
"#,
            &["Phone", "Ref", "Note"],
        );
        let row = csv::StringRecord::from(vec![" 020 7946 0000 ", "R1 ", "n"]);
        let value = |reason: &str| p.offending_value(reason, &row);
        assert_eq!(
            value("account_number is 300 characters; at most 250 are allowed").as_deref(),
            Some("R1-R1"),
            "the value as mapped"
        );
        assert_eq!(
            value("customer_contact is one of the company's own numbers").as_deref(),
            Some("020 7946 0000")
        );
        assert_eq!(
            value("source is 251 characters").as_deref(),
            Some("R1"),
            "[extra]"
        );
        assert_eq!(
            value("misc_data \"Note\" is 251 characters").as_deref(),
            Some("n")
        );
        assert_eq!(
            value("misc_data \"Long key for a long note, longer than fo...\" is 251 characters")
                .as_deref(),
            Some("n"),
            "a key cut short in the reason"
        );
        for about_the_row in [
            "row has 2 fields, the header has 3",
            "misc_data has 26 entries; at most 25 are allowed",
            "a misc_data key is 251 characters",
            "customer_name is 251 characters",
        ] {
            assert_eq!(value(about_the_row), None, "{about_the_row}");
        }
        let empty = csv::StringRecord::from(vec!["", "", ""]);
        assert_eq!(
            p.offending_value("customer_contact is required but empty", &empty),
            None
        );
    }
}
