//! Contact normalisation: national phone numbers become E.164 for the
//! mapping's region, emails are trimmed and lower-cased, anything else is
//! not a contact DigiDesk can survey.

use std::sync::Arc;

use phonenumber::country::Id;

use crate::phone::FastPhone;

/// How `customer_contact` is normalised.
#[derive(Debug, Clone, Default)]
pub struct ContactRules {
    /// The region national numbers belong to (`[contact] phone_region`).
    pub region: Option<Id>,
    /// The region's fast path for the common shapes of number.
    fast: Option<Arc<FastPhone>>,
}

/// Parses an ISO 3166 alpha-2 region code such as `GB`.
pub fn parse_region(code: &str) -> Option<Id> {
    code.trim().to_ascii_uppercase().parse::<Id>().ok()
}

impl ContactRules {
    /// Rules for national numbers of `region` (international ones only
    /// without it).
    pub fn new(region: Option<Id>) -> ContactRules {
        ContactRules {
            region,
            fast: region.and_then(|r| FastPhone::new(r.as_ref()).map(Arc::new)),
        }
    }

    /// The contact as DigiDesk should receive it, or why it is not one.
    /// The reason never repeats the value: reasons are counted and logged.
    pub fn normalize(&self, raw: &str) -> Result<String, String> {
        let value = raw.trim();
        if value.contains('@') {
            let email = value.to_lowercase();
            return if is_email(&email) {
                Ok(email)
            } else {
                Err("customer_contact looks like an email address but is not a valid one".into())
            };
        }
        if let Some(e164) = self.fast.as_ref().and_then(|f| f.e164(value)) {
            return Ok(e164);
        }
        let parsed = phonenumber::parse(self.region, value)
            .ok()
            .filter(phonenumber::is_valid);
        match (parsed, self.region) {
            (Some(number), _) => Ok(number.format().mode(phonenumber::Mode::E164).to_string()),
            (None, Some(region)) => Err(format!(
                "customer_contact is neither a valid phone number (region {region:?}) nor an email address"
            )),
            (None, None) => Err(
                "customer_contact is neither a valid international phone number nor an email address; for national numbers set [contact] phone_region in the mapping"
                    .into(),
            ),
        }
    }
}

/// A reasonable email check: one `@`, a non-empty local part, a domain with a
/// dot and no empty labels, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>(),;:\"[]\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb() -> ContactRules {
        ContactRules::new(parse_region("gb"))
    }

    #[test]
    fn national_and_international_numbers_become_e164() {
        assert_eq!(gb().normalize(" 07911 123456 ").unwrap(), "+447911123456");
        assert_eq!(
            gb().normalize("+44 (0)7911-123456").unwrap(),
            "+447911123456"
        );
        assert_eq!(gb().normalize("0044 7911 123456").unwrap(), "+447911123456");
        assert_eq!(
            ContactRules::default()
                .normalize("+44 7911 123456")
                .unwrap(),
            "+447911123456"
        );
        assert_eq!(gb().normalize("+33 6 12 34 56 78").unwrap(), "+33612345678");
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            gb().normalize("  Zoe.Smith@Example.COM ").unwrap(),
            "zoe.smith@example.com"
        );
        for bad in [
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@@example.com",
            "a@example..com",
        ] {
            assert!(gb().normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn neither_is_an_error_without_the_value() {
        let e = gb().normalize("12345").unwrap_err();
        assert!(e.contains("region GB") && !e.contains("12345"), "{e}");
        let e = ContactRules::default()
            .normalize("07911 123456")
            .unwrap_err();
        assert!(e.contains("phone_region"), "{e}");
        assert!(gb().normalize("anonymous").is_err());
    }

    #[test]
    fn regions_parse() {
        assert!(parse_region("GB").is_some());
        assert!(parse_region("us").is_some());
        assert!(parse_region("XX").is_none());
    }
}
