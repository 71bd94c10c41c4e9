//! A survey request as it goes over the wire: the fields of the spec, then
//! `misc_data`, then the mapping's custom parameters, serialised to the JSON
//! body in that order. Empty optional fields are absent, never `""`.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One survey request, built by the mapping and checked by validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurveyRequest {
    /// The customer's mobile phone number (E.164 after normalisation) or email.
    pub customer_contact: String,
    /// The campaign configured in DigiDesk.
    pub campaign_name: String,
    /// The customer's name; `None` when empty.
    pub customer_name: Option<String>,
    /// The account number; `None` when empty.
    pub account_number: Option<String>,
    /// The agent's name as configured in DigiDesk; `None` when empty.
    pub agent_name: Option<String>,
    /// `misc_data` entries in the mapping's order; left out when empty.
    pub misc_data: Vec<(String, String)>,
    /// Custom top-level parameters from the mapping's `[extra]` table.
    pub extra: Vec<(String, String)>,
}

impl SurveyRequest {
    /// The JSON body, appended to `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        // Serialising strings into a Vec cannot fail.
        serde_json::to_writer(&mut *buf, self).expect("serialising to memory");
    }

    /// The JSON body as a new vector.
    pub fn to_json(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        self.write_json(&mut buf);
        buf
    }
}

struct Misc<'a>(&'a [(String, String)]);

impl Serialize for Misc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for SurveyRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(crate::spec::CUSTOMER_CONTACT, &self.customer_contact)?;
        map.serialize_entry(crate::spec::CAMPAIGN_NAME, &self.campaign_name)?;
        if let Some(v) = &self.customer_name {
            map.serialize_entry(crate::spec::CUSTOMER_NAME, v)?;
        }
        if let Some(v) = &self.account_number {
            map.serialize_entry(crate::spec::ACCOUNT_NUMBER, v)?;
        }
        if let Some(v) = &self.agent_name {
            map.serialize_entry(crate::spec::AGENT_NAME, v)?;
        }
        if !self.misc_data.is_empty() {
            map.serialize_entry(crate::spec::MISC_DATA, &Misc(&self.misc_data))?;
        }
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_keeps_field_order_and_leaves_out_empty_optionals() {
        let r = SurveyRequest {
            customer_contact: "+447700900123".into(),
            campaign_name: "Post-call".into(),
            customer_name: None,
            account_number: Some("A1".into()),
            agent_name: None,
            misc_data: vec![("Reason".into(), "Billing \"x\"".into())],
            extra: vec![("source".into(), "crm".into())],
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"customer_contact":"+447700900123","campaign_name":"Post-call","account_number":"A1","misc_data":{"Reason":"Billing \"x\""},"source":"crm"}"#
        );
    }
}
