//! The sandbox's reading of a survey request body: every rule of the spec
//! as `docs/digidesk-api.md` reads it, checked independently of the uploader's own
//! validation, with one message per problem.

use serde_json::{Map, Value};

use crate::spec::{self, char_len, MAX_CHARS, MAX_MISC_ENTRIES};

/// What the sandbox accepts besides the spec's fields.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Only these campaigns are accepted, when set.
    pub campaigns: Option<Vec<String>>,
    /// Custom top-level parameters agreed with DigiDesk.
    pub allowed_params: Vec<String>,
}

impl Rules {
    /// Every problem with a body; empty when it may be created.
    pub fn check(&self, body: &Map<String, Value>) -> Vec<String> {
        let mut problems = Vec::new();
        for name in spec::REQUIRED_FIELDS {
            match body.get(name) {
                None | Some(Value::Null) => problems.push(format!("{name} is required")),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    problems.push(format!("{name} must not be blank"))
                }
                _ => {}
            }
        }
        for name in spec::STRING_FIELDS {
            match body.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    let n = char_len(s);
                    if n > MAX_CHARS {
                        problems.push(format!(
                            "{name} must be at most {MAX_CHARS} characters (got {n})"
                        ));
                    }
                }
                Some(other) => {
                    problems.push(format!("{name} must be a string (got {})", kind(other)))
                }
            }
        }
        if let (Some(campaigns), Some(Value::String(c))) =
            (&self.campaigns, body.get(spec::CAMPAIGN_NAME))
        {
            if !c.trim().is_empty() && !campaigns.iter().any(|x| x == c) {
                problems.push(format!(
                    "campaign_name \"{c}\" is not a configured campaign"
                ));
            }
        }
        match body.get(spec::MISC_DATA) {
            None | Some(Value::Null) => {}
            Some(Value::Object(misc)) => {
                if misc.len() > MAX_MISC_ENTRIES {
                    problems.push(format!(
                        "misc_data may have at most {MAX_MISC_ENTRIES} entries (got {})",
                        misc.len()
                    ));
                }
                for (k, v) in misc {
                    if char_len(k) > MAX_CHARS {
                        problems.push(format!(
                            "misc_data keys must be at most {MAX_CHARS} characters (got {})",
                            char_len(k)
                        ));
                    }
                    match v {
                        Value::String(s) if char_len(s) > MAX_CHARS => problems.push(format!(
                            "misc_data \"{k}\" must be at most {MAX_CHARS} characters (got {})",
                            char_len(s)
                        )),
                        Value::String(_) => {}
                        other => problems.push(format!(
                            "misc_data \"{k}\" must be a string (got {})",
                            kind(other)
                        )),
                    }
                }
            }
            Some(other) => problems.push(format!(
                "misc_data must be an object of key -> value strings (got {})",
                kind(other)
            )),
        }
        match body.get(spec::FORMAT) {
            None => {}
            Some(Value::String(f))
                if ["json", "xml"].contains(&f.to_ascii_lowercase().as_str()) => {}
            Some(_) => problems.push("format must be 'json' or 'xml'".to_string()),
        }
        for key in body.keys() {
            if !spec::KNOWN_PARAMS.contains(&key.as_str()) && !self.allowed_params.contains(key) {
                problems.push(format!("unknown parameter \"{key}\""));
            }
        }
        problems
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rules: &Rules, v: Value) -> Vec<String> {
        rules.check(v.as_object().unwrap())
    }

    #[test]
    fn the_spec_example_is_valid() {
        let body = json!({
            "customer_contact": "john.smith@email.com",
            "campaign_name": "My Survey Campaign",
            "customer_name": "John Smith",
            "account_number": "ABC123",
            "agent_name": "A.N. Agent",
            "misc_data": { "Contact Reason": "Billing enquiry" }
        });
        assert!(check(&Rules::default(), body).is_empty());
    }

    #[test]
    fn every_problem_gets_its_own_message() {
        let body = json!({
            "campaign_name": " ",
            "customer_name": "é".repeat(251),
            "agent_name": 7,
            "misc_data": (0..11).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>(),
            "format": "csv",
            "foo": "bar"
        });
        assert_eq!(
            check(&Rules::default(), body),
            vec![
                "customer_contact is required",
                "campaign_name must not be blank",
                "customer_name must be at most 250 characters (got 251)",
                "agent_name must be a string (got a number)",
                "misc_data may have at most 10 entries (got 11)",
                "format must be 'json' or 'xml'",
                "unknown parameter \"foo\"",
            ]
        );
    }

    #[test]
    fn exactly_250_characters_is_valid() {
        let body = json!({"customer_contact": "x", "campaign_name": "é".repeat(250), "misc_data": {"k": "é".repeat(250)}});
        assert!(check(&Rules::default(), body).is_empty());
    }

    #[test]
    fn campaigns_and_custom_parameters_can_be_configured() {
        let rules = Rules {
            campaigns: Some(vec!["A".into()]),
            allowed_params: vec!["source".into()],
        };
        assert!(check(
            &rules,
            json!({"customer_contact": "x", "campaign_name": "A", "source": "crm"})
        )
        .is_empty());
        assert_eq!(
            check(
                &rules,
                json!({"customer_contact": "x", "campaign_name": "B"})
            ),
            vec!["campaign_name \"B\" is not a configured campaign"]
        );
    }
}
