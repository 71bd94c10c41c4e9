use super::*;

fn rules(region: &str) -> ContactRules {
    ContactRules::new(Some(parse_region(region).expect(region)))
}

fn e164(region: &str, value: &str) -> Result<String, String> {
    rules(region).normalize(value)
}

#[track_caller]
fn valid(region: &str, value: &str, expected: &str) {
    assert_eq!(
        e164(region, value).as_deref(),
        Ok(expected),
        "{region} {value:?}"
    );
}

#[track_caller]
fn invalid(region: &str, value: &str) -> String {
    match e164(region, value) {
        Ok(got) => panic!("{region} {value:?} read as {got}, expected invalid"),
        Err(reason) => reason,
    }
}

#[test]
fn a_foreign_international_number_keeps_its_country() {
    // The region's trunk prefix is not stripped from another country's number.
    valid("US", "+49 1512 3456789", "+4915123456789");
    valid("US", "+86 131 2345 6789", "+8613123456789");
    valid("GB", "+39 02 1234 5678", "+390212345678");
    valid("GB", "+33 6 12 34 56 78", "+33612345678");
}

#[test]
fn letters_and_national_numbers_read_as_libphonenumber_reads_them() {
    valid("AE", "08001AFPIX", "+971800123749");
    valid("NL", "318001234", "+31318001234");
    valid("GB", " 07911 123456 ", "+447911123456");
    valid("GB", "+44 (0)7911-123456", "+447911123456");
    valid("GB", "0044 7911 123456", "+447911123456");
}

#[test]
fn numbers_with_extra_digits_are_invalid() {
    invalid("IE", "02212345848");
    invalid("DE", "+4990012345675");
    invalid("IL", "0305779650469");
}

#[test]
fn russian_numbers_starting_with_8_are_valid() {
    valid("US", "+7 800 555 35 35", "+78005553535");
    valid("RU", "8 (800) 123-45-67", "+78001234567");
    valid("RU", "+7 812 123-45-67", "+78121234567");
}

#[test]
fn an_extension_is_dropped() {
    valid("US", "+1 650 253 0000;ext=77", "+16502530000");
    valid("GB", "07911 123456 x123", "+447911123456");
    valid("GB", "07911 123456 ext. 5", "+447911123456");
}

#[test]
fn digits_in_other_scripts_count() {
    valid(
        "GB",
        "\u{FF10}\u{FF17}\u{FF19}\u{FF11}\u{FF11} \u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}",
        "+447911123456",
    );
    valid(
        "EG",
        "\u{0660}\u{0661}\u{0660}\u{0660}\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}\u{0667}",
        "+201001234567",
    );
}

#[test]
fn national_numbers_that_begin_like_the_country_code() {
    valid("NO", "478 37 965", "+4747837965");
    valid("DK", "45 49 36 19", "+4545493619");
    valid("IN", "9155463260", "+919155463260");
    valid("SG", "6504 3575", "+6565043575");
}

#[test]
fn without_a_region_only_international_numbers_are_phone_numbers() {
    let none = ContactRules::default();
    assert_eq!(none.normalize("+44 7911 123456").unwrap(), "+447911123456");
    assert_eq!(none.normalize("+7 800 555 35 35").unwrap(), "+78005553535");
    let e = none.normalize("07911 123456").unwrap_err();
    assert!(
        e.contains("\"07911 123456\"") && e.contains("phone_region"),
        "{e}"
    );
}

#[test]
fn a_reason_quotes_the_value() {
    assert_eq!(
        invalid("US", "12345"),
        "customer_contact \"12345\" is not a valid phone number for region US: too short in the numbering plan of +1"
    );
    let e = invalid("IE", "02212345848");
    assert!(
        e.starts_with("customer_contact \"02212345848\" is not a valid phone number for region IE"),
        "{e}"
    );
    let e = invalid("GB", "anonymous");
    assert!(e.contains("\"anonymous\"") && e.contains("email"), "{e}");
    // Long values are shortened; invisible characters are shown escaped.
    let e = invalid("GB", &"9".repeat(500));
    assert!(e.len() < 300, "{e}");
    let e = rules("GB").normalize("a\u{200B}b@example.com").unwrap_err();
    assert!(e.contains("\"a\\u{200b}b@example.com\""), "{e}");
}

#[test]
fn a_reason_splits_into_its_kind_and_the_value() {
    let gb = rules("GB");
    for (value, kind) in [
        ("12345", "customer_contact is not a valid phone number for region GB: no such number in the numbering plan of +44"),
        ("a \"b\" \\ c@example.com", "customer_contact is not a valid email address: it has a space or control character inside"),
    ] {
        let reason = gb.normalize(value).unwrap_err();
        let (k, quoted) = split_reason(&reason).expect(&reason);
        assert_eq!(k, kind);
        assert_eq!(quoted, format!("{value:?}"));
    }
    let long = gb.normalize(&"9".repeat(200)).unwrap_err();
    let (k, quoted) = split_reason(&long).unwrap();
    assert!(
        quoted.ends_with("\"...") && k.starts_with("customer_contact is not"),
        "{k} / {quoted}"
    );
    assert_eq!(split_reason("customer_contact is required but empty"), None);
    assert_eq!(split_reason("HTTP 503: busy"), None);
}

#[test]
fn emails_are_cleaned_and_lower_cased() {
    let gb = rules("GB");
    for (raw, expected) in [
        ("  Zoe.Smith@Example.COM ", "zoe.smith@example.com"),
        ("\u{FEFF}zoe@example.com", "zoe@example.com"),
        ("zoe@example.com\u{200B}", "zoe@example.com"),
        ("\u{200E}zoe@example.com\u{200F}", "zoe@example.com"),
        ("\u{00AD}zoe@example.com", "zoe@example.com"),
        ("<Zoe@Example.com>", "zoe@example.com"),
        ("\"zoe@example.com\"", "zoe@example.com"),
        ("'zoe@example.com'", "zoe@example.com"),
        (" \"<zoe@example.com>\" ", "zoe@example.com"),
        (
            "o'brien+tag@mail.example.co.uk",
            "o'brien+tag@mail.example.co.uk",
        ),
        ("ZOË@EXAMPLE.COM", "zoë@example.com"),
        ("a@münchen.de", "a@münchen.de"),
    ] {
        assert_eq!(gb.normalize(raw).as_deref(), Ok(expected), "{raw:?}");
    }
}

#[test]
fn emails_that_are_not_addresses_are_invalid() {
    let gb = rules("GB");
    for bad in [
        "a@b",
        "@example.com",
        "a@",
        "a b@example.com",
        "a@@example.com",
        "a@b@example.com",
        "a@example..com",
        "a@.example.com",
        "a@example.com.",
        "a\u{200B}b@example.com",
        "a@exa\u{FEFF}mple.com",
        "a\u{00AD}b@example.com",
        "a@example.com/path",
        "a@example.com?x=1",
        "a@exam!ple.com",
        "a@ex_ample.com",
        "a@1.2.3.4",
        "a@example.123",
        "a@-example.com",
        "a@example-.com",
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        "a<b@example.com",
        "Zoe <zoe@example.com>",
        "a,b@example.com",
    ] {
        let e = gb.normalize(bad).expect_err(bad);
        assert!(
            e.starts_with("customer_contact \"") && e.contains("not a valid email address"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn regions_parse_and_mistakes_get_a_hint() {
    assert_eq!(parse_region("GB"), Some(Region::GB));
    assert_eq!(parse_region(" us "), Some(Region::US));
    assert_eq!(parse_region("UK"), None);
    assert_eq!(parse_region("XX"), None);
    assert_eq!(parse_region("001"), None);
    assert_eq!(parse_region("GBR"), None);
    assert_eq!(region_hint("UK"), Some(Region::GB));
    assert_eq!(region_hint("uk"), Some(Region::GB));
    assert_eq!(region_hint("+44"), Some(Region::GB));
    assert_eq!(region_hint("1"), Some(Region::US));
    assert_eq!(region_hint("XX"), None);
}

/// Every row of the fixture generated with Google's libphonenumber (its
/// Python port; see tests/contacts/generate.py) is read the same way.
#[test]
fn agrees_with_libphonenumber_on_the_fixture() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contacts/libphonenumber.tsv"
    );
    let text = std::fs::read_to_string(path).expect("the fixture is in the repository");
    let mut rows = 0;
    let mut regions = std::collections::HashSet::new();
    let mut disagree = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.split('\t');
        let (Some(region), Some(input), Some(expected), None) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            panic!("malformed fixture line {line:?}");
        };
        let rules = if region.is_empty() {
            ContactRules::default()
        } else {
            rules(region)
        };
        let got = match rules.normalize(input) {
            Ok(e164) => e164,
            Err(_) => "invalid".to_string(),
        };
        if got != expected {
            disagree.push(format!(
                "{region} {input:?}: {got}, libphonenumber {expected}"
            ));
        }
        rows += 1;
        regions.insert(region.to_string());
    }
    assert!(
        rows > 5000 && regions.len() > 20,
        "{rows} rows, {} regions",
        regions.len()
    );
    assert!(
        disagree.is_empty(),
        "{} of {rows} rows disagree:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}

/// The shortcuts taken around libphonenumber change no answer: every
/// region's example numbers of every type, national and international, cut
/// short or run long, read with the region, with no region and with the
/// first region of the calling code, are what the library itself makes of
/// them (its `parse`, `is_valid_number` and E.164).
#[test]
fn agrees_with_the_library_called_directly_on_every_region() {
    use rlibphonenumber::{PhoneNumberFormat, PHONE_NUMBER_UTIL as UTIL};
    let direct = |value: &str, region: Option<Region>| -> Option<String> {
        let number = UTIL.parse(value.trim(), region).ok()?;
        UTIL.is_valid_number(&number)
            .then(|| UTIL.format(&number, PhoneNumberFormat::E164).into_owned())
    };
    let mut compared = 0;
    let mut valid = 0;
    let mut disagree = Vec::new();
    let mut regions: Vec<Region> = UTIL.get_supported_regions().collect();
    regions.sort_by_key(|r| r.to_string());
    for region in regions {
        let mut numbers: Vec<_> = UTIL
            .get_supported_types_for_region(region)
            .into_iter()
            .flatten()
            .filter_map(|t| UTIL.get_example_number_for_type_and_region(region, t).ok())
            .collect();
        numbers.extend(UTIL.get_invalid_example_number(region).ok());
        let code = UTIL.get_country_code_for_region(region).expect("a code");
        let first = UTIL.get_region_for_country_code(code).expect("a region");
        for number in numbers {
            let e164 = UTIL.format(&number, PhoneNumberFormat::E164).into_owned();
            let national = UTIL
                .format(&number, PhoneNumberFormat::National)
                .into_owned();
            let mut values = vec![
                format!("{e164}0"),
                format!("{national}0"),
                e164[..e164.len() - 1].to_string(),
                national[..national.len() - 1].to_string(),
            ];
            values.push(e164);
            values.push(national);
            for value in &values {
                for rules in [Some(region), Some(first), None] {
                    let got = ContactRules::new(rules).normalize(value).ok();
                    let expected = direct(value, rules);
                    valid += usize::from(expected.is_some());
                    if got != expected {
                        disagree.push(format!(
                            "{rules:?} {value:?}: {got:?}, library {expected:?}"
                        ));
                    }
                    compared += 1;
                }
            }
        }
    }
    assert!(
        compared > 10_000 && valid > 3_000,
        "{compared} compared, {valid} valid"
    );
    assert!(
        disagree.is_empty(),
        "{} of {compared} disagree:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
