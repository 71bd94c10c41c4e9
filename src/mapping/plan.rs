//! The plan: a mapping compiled against one header (column indexes, not
//! names), and [`Plan::apply`], which decides each row.

use super::value::ValueSpec;
use super::{suggest, Mapping, MappingError};
use crate::contact::ContactRules;
use crate::request::SurveyRequest;
use crate::results::is_result_column;
use crate::spec;

/// What the mapping decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A valid survey request, ready to send.
    Send(SurveyRequest),
    /// The row matched a `[skip]` rule; the string says which.
    Skip(String),
    /// The row cannot be sent; one reason per problem, each naming the field or column.
    Invalid(Vec<String>),
}

/// A `[skip]` rule against the header: column, lower-cased values, and the
/// column's name for the reason.
#[derive(Debug, Clone)]
struct SkipEquals {
    column: usize,
    values: Vec<String>,
    name: String,
}

/// A mapping compiled against one header.
#[derive(Debug, Clone)]
pub struct Plan {
    contact: ValueSpec<usize>,
    campaign: ValueSpec<usize>,
    name: Option<ValueSpec<usize>>,
    account: Option<ValueSpec<usize>>,
    agent: Option<ValueSpec<usize>>,
    rules: ContactRules,
    /// `misc_data` key and column, in order.
    misc: Vec<(String, usize)>,
    skip: Vec<SkipEquals>,
    extra: Vec<(String, ValueSpec<usize>)>,
}

impl Plan {
    /// Checks the mapping against the header: a column the input lacks stops
    /// here, naming it, listing the headers and suggesting the closest one.
    pub fn compile(
        mapping: &Mapping,
        headers: &[String],
        input_name: &str,
    ) -> Result<Plan, MappingError> {
        let origin = &mapping.origin;
        let index_of = |name: &str| headers.iter().position(|h| h == name);
        if let [only] = headers {
            if let Some(d) = [';', '\t', '|'].into_iter().find(|d| only.contains(*d)) {
                let flag = if d == '\t' {
                    "tab".to_string()
                } else {
                    format!("'{d}'")
                };
                return Err(MappingError::Header { message: format!(
                    "{input_name} reads as a single column whose name contains {flag}: it is probably {flag}-delimited; try --delimiter {flag}"
                )});
            }
        }
        let mut problems = Vec::new();
        for (col, place) in mapping.columns_used() {
            if is_result_column(&col) {
                problems.push(format!(
                    "{place} names {col:?}, a column that digidesk-upload writes; results columns are never mapped"
                ));
                continue;
            }
            let count = headers.iter().filter(|h| **h == col).count();
            if count == 0 {
                let hint = suggest(&col, headers.iter().map(String::as_str))
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{place} uses column {col:?}, which {input_name} does not have{hint}"
                ));
            } else if count > 1 {
                problems.push(format!("{place} uses column {col:?}, which {input_name} has {count} times: rename one in the export"));
            }
        }
        if !problems.is_empty() {
            let listed: Vec<String> = headers.iter().map(|h| format!("{h:?}")).collect();
            return Err(MappingError::DoesNotFit {
                origin: origin.clone(),
                input: input_name.to_string(),
                problems,
                columns: listed.join(", "),
            });
        }
        // Every name below was found just above.
        let idx = |name: &str| index_of(name).expect("column checked above");
        let compile = |v: &ValueSpec<String>| v.resolve(&mut |c: &String| idx(c));
        let field = |name: &str| mapping.fields.get(name).map(compile);
        let mut misc: Vec<(String, usize)> = Vec::new();
        let key_for = |col: &str| {
            mapping
                .misc_rename
                .get(col)
                .cloned()
                .unwrap_or_else(|| col.to_string())
        };
        for c in &mapping.misc_columns {
            if !misc.iter().any(|(_, i)| *i == idx(c)) {
                misc.push((key_for(c), idx(c)));
            }
        }
        if mapping.misc_unmapped {
            let used: Vec<String> = mapping.columns_used().into_iter().map(|(c, _)| c).collect();
            for (i, h) in headers.iter().enumerate() {
                if h.is_empty()
                    || is_result_column(h)
                    || used.contains(h)
                    || misc.iter().any(|(_, j)| *j == i)
                {
                    continue;
                }
                misc.push((key_for(h), i));
            }
        }
        if let Some(col) = mapping.misc_rename.keys().find(|c| {
            mapping.misc_unmapped && !misc.iter().any(|(_, i)| headers.get(*i) == Some(c))
        }) {
            return Err(MappingError::Header { message: format!(
                "{origin}: [misc_data] rename {col:?}: {input_name} has no such column among those that go to misc_data"
            )});
        }
        if misc.len() > spec::MAX_MISC_ENTRIES {
            tracing::warn!(
                "{origin}: [misc_data] takes {} columns; a row with more than {} non-empty ones will be invalid",
                misc.len(),
                spec::MAX_MISC_ENTRIES
            );
        }
        Ok(Plan {
            contact: field(spec::CUSTOMER_CONTACT).expect("required field checked at parse"),
            campaign: field(spec::CAMPAIGN_NAME).expect("required field checked at parse"),
            name: field(spec::CUSTOMER_NAME),
            account: field(spec::ACCOUNT_NUMBER),
            agent: field(spec::AGENT_NAME),
            rules: mapping.contact.clone(),
            misc,
            skip: mapping
                .skip
                .iter()
                .map(|r| SkipEquals {
                    column: idx(&r.column),
                    values: r.equals.clone(),
                    name: r.column.clone(),
                })
                .collect(),
            extra: mapping
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), compile(v)))
                .collect(),
        })
    }

    /// Maps and validates one row whose fields line up with the header.
    pub fn apply(&self, row: &csv::StringRecord) -> Decision {
        for rule in &self.skip {
            let cell = row.get(rule.column).unwrap_or("").trim();
            if rule.values.iter().any(|v| {
                v.eq_ignore_ascii_case(cell) || !cell.is_ascii() && *v == cell.to_lowercase()
            }) {
                return Decision::Skip(format!("skipped by [skip]: {} = {cell}", rule.name));
            }
        }
        let mut reasons = Vec::new();
        let raw_contact = self.contact.eval(row);
        let customer_contact = if raw_contact.is_empty() {
            String::new()
        } else {
            match self.rules.normalize(&raw_contact) {
                Ok(c) => c,
                Err(reason) => {
                    reasons.push(reason);
                    raw_contact.into_owned()
                }
            }
        };
        let optional = |v: &Option<ValueSpec<usize>>| {
            v.as_ref()
                .map(|v| v.eval(row))
                .filter(|s| !s.is_empty())
                .map(|s| s.into_owned())
        };
        let req = SurveyRequest {
            customer_contact,
            campaign_name: self.campaign.eval(row).into_owned(),
            customer_name: optional(&self.name),
            account_number: optional(&self.account),
            agent_name: optional(&self.agent),
            misc_data: self
                .misc
                .iter()
                .filter_map(|(k, i)| {
                    let v = row.get(*i).unwrap_or("").trim();
                    (!v.is_empty()).then(|| (k.clone(), v.to_string()))
                })
                .collect(),
            extra: self
                .extra
                .iter()
                .filter_map(|(k, v)| {
                    let v = v.eval(row);
                    (!v.is_empty()).then(|| (k.clone(), v.into_owned()))
                })
                .collect(),
        };
        reasons.extend(crate::validate::validate(&req));
        if reasons.is_empty() {
            Decision::Send(req)
        } else {
            Decision::Invalid(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: [&str; 9] = [
        "Phone", "First", "Last", "Account", "Agent", "Owner", "Reason", "Queue", "Opt Out",
    ];

    fn plan(toml: &str) -> Result<Plan, MappingError> {
        let headers: Vec<String> = HEADERS.iter().map(|s| s.to_string()).collect();
        Plan::compile(&Mapping::parse(toml, "m.toml")?, &headers, "in.csv")
    }

    fn row(cells: [&str; 9]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    const FULL: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
customer_name = { template = "{First} {Last}" }
account_number = { column = "Account", default = "none" }
agent_name = { columns = ["Agent", "Owner"] }
[contact]
phone_region = "GB"
[misc_data]
columns = ["Reason", "Queue"]
rename = { "Reason" = "Contact Reason" }
[skip]
rules = [{ column = "Opt Out", equals = ["Y", "Yes"] }]
[extra]
source = { value = "crm-nightly" }
"#;

    fn send(m: Decision) -> SurveyRequest {
        match m {
            Decision::Send(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn every_construct_maps() {
        let p = plan(FULL).unwrap();
        let r = send(p.apply(&row([
            "07911 123456",
            " Zoë ",
            "Smith",
            "",
            "",
            "Owner O",
            "Billing",
            "",
            "n",
        ])));
        assert_eq!(r.customer_contact, "+447911123456");
        assert_eq!(r.campaign_name, "Post-call survey");
        assert_eq!(r.customer_name.as_deref(), Some("Zoë Smith"));
        assert_eq!(
            r.account_number.as_deref(),
            Some("none"),
            "default when empty"
        );
        assert_eq!(r.agent_name.as_deref(), Some("Owner O"), "first non-empty");
        assert_eq!(
            r.misc_data,
            vec![("Contact Reason".to_string(), "Billing".to_string())],
            "empty Queue left out"
        );
        assert_eq!(
            r.extra,
            vec![("source".to_string(), "crm-nightly".to_string())]
        );
    }

    #[test]
    fn skip_rules_match_trimmed_and_case_insensitively_before_validation() {
        let p = plan(FULL).unwrap();
        assert_eq!(
            p.apply(&row(["", "", "", "", "", "", "", "", " yes "])),
            Decision::Skip("skipped by [skip]: Opt Out = yes".into())
        );
    }

    #[test]
    fn invalid_rows_give_every_reason_without_values() {
        let p = plan(FULL).unwrap();
        match p.apply(&row([
            "12345",
            "",
            "",
            &"x".repeat(251),
            "",
            "",
            "",
            "",
            "",
        ])) {
            Decision::Invalid(reasons) => {
                assert_eq!(reasons.len(), 2, "{reasons:?}");
                assert!(reasons[0].contains("neither a valid phone number"));
                assert_eq!(
                    reasons[1],
                    "account_number is 251 characters; at most 250 are allowed"
                );
                assert!(reasons.iter().all(|r| !r.contains("12345")));
            }
            other => panic!("{other:?}"),
        }
        match p.apply(&row(["", "", "", "", "", "", "", "", ""])) {
            Decision::Invalid(reasons) => {
                assert_eq!(reasons, vec!["customer_contact is required but empty"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unmapped_takes_every_column_no_rule_uses() {
        let p = plan(&FULL.replace(
            "columns = [\"Reason\", \"Queue\"]",
            "columns = [\"Reason\"]\nunmapped = true",
        ))
        .unwrap();
        let r = send(p.apply(&row([
            "07911 123456",
            "Zoë",
            "S",
            "A",
            "Ag",
            "Ow",
            "Billing",
            "Q1",
            "n",
        ])));
        assert_eq!(
            r.misc_data,
            vec![
                ("Contact Reason".to_string(), "Billing".to_string()),
                ("Queue".to_string(), "Q1".to_string())
            ]
        );
    }

    #[test]
    fn a_missing_column_names_it_lists_headers_and_suggests() {
        let e = plan(
            &FULL
                .replace(
                    "customer_contact = \"Phone\"",
                    "customer_contact = \"phone \"",
                )
                .replace("\"Queue\"]", "\"Queu\"]"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[fields] customer_contact uses column \"phone \""),
            "{}",
            e
        );
        assert!(e.contains("did you mean \"Phone\"?"), "{}", e);
        assert!(
            e.contains("\"Queu\""),
            "every missing column at once: {}",
            e
        );
        assert!(e.contains("\"Opt Out\""), "lists the headers: {}", e);
    }

    #[test]
    fn mapping_mistakes_are_explained() {
        let cases = [
            ("[fields]\ncustomer_contact = \"Phone\"\n", "campaign_name is required"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\ncustomer_nam = \"First\"\n", "did you mean customer_name?"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\nmisc_data = \"Reason\"\n", "[misc_data] table"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { valu = \"X\" }\n", "did you mean value?"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"X\", column = \"Y\" }\n", "only one of"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[contact]\nphone_region = \"XX\"\n", "not a region code"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[extra]\nagent_name = \"Agent\"\n", "DigiDesk field"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[misc]\n", "did you mean [misc_data]"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[misc_data]\nrename = { Queue = \"Q\" }\n", "not in [misc_data] columns"),
            ("[fields\n", "not valid TOML"),
        ];
        for (toml, want) in cases {
            let e = Mapping::parse(toml, "m.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{toml:?}: {e}");
            assert!(e.starts_with("m.toml: "), "{e}");
        }
    }

    #[test]
    fn a_header_read_with_the_wrong_delimiter_says_which_one_to_use() {
        let m = Mapping::parse(FULL, "m.toml").unwrap();
        let e = Plan::compile(&m, &["Phone;First;Last".to_string()], "in.csv").unwrap_err();
        assert!(
            e.to_string().contains("try --delimiter ';'"),
            "{}",
            e.to_string()
        );
    }

    #[test]
    fn result_columns_are_never_mapped() {
        let headers: Vec<String> = vec!["Phone".into(), "digidesk_status".into()];
        let m = Mapping::parse(
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"digidesk_status\"\n",
            "m.toml",
        )
        .unwrap();
        let e = Plan::compile(&m, &headers, "in.csv").unwrap_err();
        assert!(e.to_string().contains("never mapped"), "{}", e.to_string());
        let m = Mapping::parse(
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"C\" }\n[misc_data]\nunmapped = true\n",
            "m.toml",
        )
        .unwrap();
        let p = Plan::compile(&m, &headers, "in.csv").unwrap();
        let r = send(p.apply(&csv::StringRecord::from(vec!["+447911123456", "failed"])));
        assert!(r.misc_data.is_empty(), "{:?}", r.misc_data);
    }
}
