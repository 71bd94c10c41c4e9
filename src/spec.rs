//! The DigiDesk Post API 1.7.1 as the product reads it (see `docs/digidesk-api.md`):
//! field names, limits and the default endpoint, in one place so that the
//! uploader's validation and the sandbox's agree on every number.

/// The spec's Resource URL (`docs/digidesk-api.md` §1).
pub const DEFAULT_ENDPOINT: &str = "https://digidesk.citrustelecom.net/api/survey_requests/";

/// Paths on which the sandbox answers (`docs/digidesk-api.md` §1).
pub const PATHS: [&str; 2] = ["/api/survey_requests/", "/api/v1/survey_requests/"];

/// Most characters (Unicode scalar values, not bytes) in any string field.
pub const MAX_CHARS: usize = 250;

/// Most entries in `misc_data`.
pub const MAX_MISC_ENTRIES: usize = 10;

pub const CUSTOMER_CONTACT: &str = "customer_contact";
pub const CAMPAIGN_NAME: &str = "campaign_name";
pub const CUSTOMER_NAME: &str = "customer_name";
pub const ACCOUNT_NUMBER: &str = "account_number";
pub const AGENT_NAME: &str = "agent_name";
pub const MISC_DATA: &str = "misc_data";
pub const FORMAT: &str = "format";

/// The string fields of a survey request, required ones first.
pub const STRING_FIELDS: [&str; 5] = [
    CUSTOMER_CONTACT,
    CAMPAIGN_NAME,
    CUSTOMER_NAME,
    ACCOUNT_NUMBER,
    AGENT_NAME,
];

/// The fields that must be present and not blank.
pub const REQUIRED_FIELDS: [&str; 2] = [CUSTOMER_CONTACT, CAMPAIGN_NAME];

/// Every parameter the spec defines; anything else is a custom parameter.
pub const KNOWN_PARAMS: [&str; 7] = [
    CUSTOMER_CONTACT,
    CAMPAIGN_NAME,
    CUSTOMER_NAME,
    ACCOUNT_NUMBER,
    AGENT_NAME,
    MISC_DATA,
    FORMAT,
];

/// Length of a string as the spec counts it: in characters.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}
