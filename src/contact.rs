//! Contact normalisation: a phone number becomes what Google's libphonenumber
//! makes of it (its E.164, when valid), an email address is cleaned and
//! lower-cased, anything else is not a contact DigiDesk can survey.
//!
//! How a contact is read, and why, is in `docs/design.md` ("Contacts").

use rlibphonenumber::{
    ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberUtil, ValidationError,
};

mod copies;

/// A region whose national numbers libphonenumber knows, such as `GB`.
pub use rlibphonenumber::Region;

/// How `customer_contact` is normalised.
#[derive(Debug, Clone, Default)]
pub struct ContactRules {
    /// The region national numbers belong to (`[contact] phone_region`).
    pub region: Option<Region>,
    /// The region's calling code, when the region is the first of those
    /// with that code (GB for +44, US for +1, and every region with a code
    /// of its own), and whether other regions share it.
    main_code: Option<(i32, bool)>,
}

/// Parses an ISO 3166 alpha-2 region code such as `GB` (any case); `None`
/// unless libphonenumber has the region's numbering plan.
pub fn parse_region(code: &str) -> Option<Region> {
    let region = Region::from_code(&code.trim().to_ascii_uppercase()).ok()?;
    copies::with_any(|util| util.get_country_code_for_region(region))
        .is_some()
        .then_some(region)
}

/// The region a mistaken `phone_region` most likely meant: `UK` and `EL`
/// (codes in common use that are not ISO 3166) and calling codes (`44`,
/// `+44`).
pub fn region_hint(code: &str) -> Option<Region> {
    let code = code.trim().to_ascii_uppercase();
    match code.as_str() {
        "UK" => return parse_region("GB"),
        "EL" => return parse_region("GR"),
        _ => {}
    }
    let digits = code.strip_prefix('+').unwrap_or(&code);
    let calling_code: i32 = digits.parse().ok()?;
    copies::with_any(|util| util.get_region_for_country_code(calling_code))
        .filter(|r| *r != Region::World)
}

impl ContactRules {
    /// Rules for national numbers of `region`; without one, only numbers in
    /// international form (`+44 ...`) are phone numbers.
    pub fn new(region: Option<Region>) -> ContactRules {
        let main_code = region.and_then(|region| {
            copies::with_any(|util| {
                let code = util.get_country_code_for_region(region)?;
                let mut regions = util.get_regions_for_country_calling_code(code)?;
                let shared = regions.len() > 1;
                (regions.next() == Some(region)).then_some((code, shared))
            })
        });
        ContactRules { region, main_code }
    }

    /// The contact as DigiDesk should receive it, or why it is not one. The
    /// reason quotes the value, so it belongs in the results file and
    /// `check`'s report, never in a log line at default verbosity.
    pub fn normalize(&self, raw: &str) -> Result<String, String> {
        if raw.contains('@') {
            return email(raw).map_err(|why| {
                format!(
                    "customer_contact {} is not a valid email address: {why}",
                    quote(raw)
                )
            });
        }
        self.phone(raw.trim())
    }

    fn phone(&self, value: &str) -> Result<String, String> {
        copies::with_own(|util| {
            let number = match util.parse(value, self.region) {
                Ok(number) => number,
                Err(e) => return (Err(self.not_a_phone(value, parse_failure(&e))), None),
            };
            let code = Some(number.country_code);
            if self.is_valid(util, &number) {
                // E.164 has no extension: one the value had is dropped here.
                let e164 = util.format(&number, PhoneNumberFormat::E164).into_owned();
                return (Ok(e164), code);
            }
            let why = match util.is_possible_number_with_reason(&number) {
                Err(ValidationError::TooShort) => "too short",
                Err(ValidationError::TooLong) => "too long",
                Err(ValidationError::InvalidCountryCode) => "unknown country code",
                _ => "no such number",
            };
            let why = format!("{why} in the numbering plan of +{}", number.country_code);
            (Err(self.not_a_phone(value, &why)), code)
        })
    }

    /// libphonenumber's `is_valid_number`, in fewer steps for numbers with
    /// the mapping's region's calling code. `is_valid_number` first finds
    /// the number's region: the only one with its calling code, or else the
    /// first of them (GB for +44, US for +1) whose leading digits or number
    /// patterns the number matches, the first region tried first; then it
    /// matches the number against that region's patterns. So a number valid
    /// in the first region is valid, and where a region has its calling code
    /// to itself, valid in it or not at all. Any other number gets the
    /// whole check.
    fn is_valid(&self, util: &PhoneNumberUtil, number: &PhoneNumber) -> bool {
        if let (Some(region), Some((code, shared))) = (self.region, self.main_code) {
            if number.country_code == code {
                if util.is_valid_number_for_region(number, region) {
                    return true;
                }
                if !shared {
                    return false;
                }
            }
        }
        util.is_valid_number(number)
    }

    fn not_a_phone(&self, value: &str, why: &str) -> String {
        let quoted = quote(value);
        match self.region {
            Some(region) => {
                format!("customer_contact {quoted} is not a valid phone number for region {region}: {why}")
            }
            None if value.starts_with(['+', '\u{FF0B}']) => {
                format!("customer_contact {quoted} is not a valid international phone number: {why}")
            }
            None => format!(
                "customer_contact {quoted} is not a valid international phone number: {why}; for national numbers set [contact] phone_region in the mapping"
            ),
        }
    }
}

/// A reason that quotes a contact, split into the reason without the value
/// and the quoted value: reasons are counted and grouped by the first, so
/// that summaries group them and hold no contact. `None` for any other
/// reason.
pub fn split_reason(reason: &str) -> Option<(String, &str)> {
    const FIELD: &str = "customer_contact ";
    let quoted = reason.strip_prefix(FIELD)?;
    let mut chars = quoted.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    // The value was quoted with `{:?}`: a backslash escapes the next character.
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => {
                end = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let mut end = end?;
    if quoted[end..].starts_with("...") {
        end += 3;
    }
    Some((
        format!("customer_contact{}", &quoted[end..]),
        &quoted[..end],
    ))
}

fn parse_failure(e: &ParseError) -> &'static str {
    match e {
        ParseError::InvalidCountryCode => "no known country code (a national number needs [contact] phone_region; an international one starts with + or the region's international prefix)",
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => "too short",
        ParseError::TooLongNsn => "too long",
        ParseError::NotANumber(_) => "not a phone number nor an email address",
    }
}

/// The value quoted for a reason, shortened when it is long; invisible and
/// control characters are shown escaped.
fn quote(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Characters that show as nothing: zero-width spaces and joiners, the
/// byte-order mark, the soft hyphen, direction marks and embeddings.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}')
}

/// Removed at either end of an email address, as spaces are: what wraps an
/// address copied out of a mail header or a quoted list.
fn is_wrapping(c: char) -> bool {
    c.is_whitespace()
        || is_invisible(c)
        || matches!(
            c,
            '"' | '\''
                | '<'
                | '>'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{00AB}'
                | '\u{00BB}'
        )
}

/// The address, cleaned and lower-cased, or why it is not one.
fn email(raw: &str) -> Result<String, &'static str> {
    let address = raw.trim_matches(is_wrapping).to_lowercase();
    if address.chars().any(is_invisible) {
        return Err("it has an invisible character inside");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it has a space or control character inside");
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("no @");
    };
    if local.is_empty() {
        return Err("nothing before the @");
    }
    if local.contains('@') {
        return Err("more than one @");
    }
    if local.chars().count() > 64 {
        return Err("more than 64 characters before the @");
    }
    if local.chars().any(|c| "<>()[],;:\"\\".contains(c)) {
        return Err("a character an address cannot have before the @");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("a dot at the start or end of the name, or two dots in a row");
    }
    host(domain).map(|()| address.clone())
}

/// Whether `domain` is a host name: labels of letters, digits and inner
/// hyphens, at least two of them, the last not all digits.
fn host(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("nothing after the @");
    }
    if domain.len() > 253 {
        return Err("the domain is longer than 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain has no dot");
    }
    for label in &labels {
        if label.is_empty() {
            return Err("the domain has an empty part (two dots in a row, or a dot at an end)");
        }
        if label.len() > 63 {
            return Err("a part of the domain is longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err("the domain is not a host name (only letters, digits, hyphens and dots)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of the domain starts or ends with a hyphen");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("the domain ends in a number, not a top-level domain");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
