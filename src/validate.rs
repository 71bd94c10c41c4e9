//! Validation: the spec's field rules as `docs/digidesk-api.md` reads them, applied to a
//! built survey request before it can be sent. One reason per problem, each
//! naming the field, never the value (reasons are counted and logged).

use crate::request::SurveyRequest;
use crate::spec::{self, char_len, MAX_CHARS, MAX_MISC_ENTRIES};

/// Every rule the request breaks; empty when it may be sent.
pub fn validate(req: &SurveyRequest) -> Vec<String> {
    let mut reasons = Vec::new();
    for (name, value) in [
        (spec::CUSTOMER_CONTACT, &req.customer_contact),
        (spec::CAMPAIGN_NAME, &req.campaign_name),
    ] {
        if value.trim().is_empty() {
            reasons.push(format!("{name} is required but empty"));
        }
    }
    let optional = [
        (spec::CUSTOMER_NAME, &req.customer_name),
        (spec::ACCOUNT_NUMBER, &req.account_number),
        (spec::AGENT_NAME, &req.agent_name),
    ];
    let strings = [
        (spec::CUSTOMER_CONTACT, Some(&req.customer_contact)),
        (spec::CAMPAIGN_NAME, Some(&req.campaign_name)),
    ]
    .into_iter()
    .chain(optional.iter().map(|(n, v)| (*n, v.as_ref())));
    for (name, value) in strings {
        if let Some(v) = value {
            too_long(&mut reasons, name, v);
        }
    }
    if req.misc_data.len() > MAX_MISC_ENTRIES {
        reasons.push(format!(
            "misc_data has {} entries; at most {MAX_MISC_ENTRIES} are allowed",
            req.misc_data.len()
        ));
    }
    for (key, value) in &req.misc_data {
        if key.len() > MAX_CHARS && char_len(key) > MAX_CHARS {
            reasons.push(format!(
                "a misc_data key is {} characters; at most {MAX_CHARS} are allowed",
                char_len(key)
            ));
        }
        // (The name is only built for a value that may be too long.)
        if value.len() > MAX_CHARS {
            too_long(
                &mut reasons,
                &format!("misc_data \"{}\"", short(key)),
                value,
            );
        }
    }
    for (key, value) in &req.extra {
        too_long(&mut reasons, key, value);
    }
    reasons
}

fn too_long(reasons: &mut Vec<String>, name: &str, value: &str) {
    // A string of at most MAX_CHARS bytes has at most as many characters.
    if value.len() <= MAX_CHARS {
        return;
    }
    let n = char_len(value);
    if n > MAX_CHARS {
        reasons.push(format!(
            "{name} is {n} characters; at most {MAX_CHARS} are allowed"
        ));
    }
}

/// A key shortened for a message.
fn short(key: &str) -> String {
    if char_len(key) > 40 {
        format!("{}...", key.chars().take(40).collect::<String>())
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> SurveyRequest {
        SurveyRequest {
            customer_contact: "+447911123456".into(),
            campaign_name: "C".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_request_passes() {
        assert!(validate(&ok()).is_empty());
    }

    #[test]
    fn required_fields_must_not_be_blank() {
        let r = SurveyRequest {
            customer_contact: " ".into(),
            campaign_name: "".into(),
            ..Default::default()
        };
        assert_eq!(
            validate(&r),
            vec![
                "customer_contact is required but empty",
                "campaign_name is required but empty"
            ]
        );
    }

    #[test]
    fn length_is_counted_in_characters_at_the_boundary() {
        let mut r = ok();
        r.customer_name = Some("é".repeat(250)); // 500 bytes, 250 characters
        assert!(validate(&r).is_empty());
        r.customer_name = Some("é".repeat(251));
        assert_eq!(
            validate(&r),
            vec!["customer_name is 251 characters; at most 250 are allowed"]
        );
        r.customer_name = None;
        r.agent_name = Some("a".repeat(251));
        r.account_number = Some("🙂".repeat(250));
        assert_eq!(
            validate(&r),
            vec!["agent_name is 251 characters; at most 250 are allowed"]
        );
    }

    #[test]
    fn misc_data_has_at_most_ten_entries_of_short_strings() {
        let mut r = ok();
        r.misc_data = (0..10)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(validate(&r).is_empty());
        r.misc_data.push(("k10".into(), "v".into()));
        assert_eq!(
            validate(&r),
            vec!["misc_data has 11 entries; at most 10 are allowed"]
        );
        r.misc_data = vec![
            ("Reason".into(), "x".repeat(251)),
            ("y".repeat(251), "v".into()),
        ];
        let reasons = validate(&r);
        assert!(reasons.contains(
            &"misc_data \"Reason\" is 251 characters; at most 250 are allowed".to_string()
        ));
        assert!(reasons
            .contains(&"a misc_data key is 251 characters; at most 250 are allowed".to_string()));
    }
}
