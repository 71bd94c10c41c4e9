//! Contacts end to end: a mixed-country export through `send` to the
//! sandbox, what the sandbox recorded, the reasons in the results file and
//! `check`'s report, and no contact in the logs.

use crate::common::*;

const MAPPING_NO_REGION: &str = r#"
[fields]
customer_contact = "Contact"
campaign_name = { value = "Post-call survey" }
account_number = "Ref"
"#;

/// Row's reference, the contact as exported, and the E.164 (or cleaned
/// email) DigiDesk must receive; `None`: invalid, never sent.
const MIXED: [(&str, &str, Option<&str>); 14] = [
    ("R1", "+44 7911 123456", Some("+447911123456")),
    ("R2", "+49 1512 3456789", Some("+4915123456789")),
    ("R3", "+86 131 2345 6789", Some("+8613123456789")),
    ("R4", "+7 800 555 35 35", Some("+78005553535")),
    ("R5", "+1 (650) 253-0000 ext. 5", Some("+16502530000")),
    ("R6", "+39 02 1234 5678", Some("+390212345678")),
    ("R7", "+65 6504 3575", Some("+6565043575")),
    (
        "R8",
        "\u{FF0B}\u{FF14}\u{FF15} 45 49 36 19",
        Some("+4545493619"),
    ),
    (
        "R9",
        "\u{FEFF}<Zoe.Smith@Example.COM>",
        Some("zoe.smith@example.com"),
    ),
    ("R10", "+4990012345675", None),
    ("R11", "07911 123456", None),
    ("R12", "zoe\u{200B}@example.com", None),
    ("R13", "anonymous", None),
    ("R14", "+972 30 577 9650469", None),
];

/// Runs a command outside the sandbox's runtime.
fn output(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.output().expect("run digidesk-upload")
}

fn export() -> String {
    let mut s = String::from("Ref,Contact\n");
    for (r, contact, _) in MIXED {
        s.push_str(&format!("{r},\"{contact}\"\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_country_export_without_a_region_sends_exact_e164() {
    let w = Work::new();
    let input = w.write("mixed.csv", export());
    let mapping = w.write("map.toml", MAPPING_NO_REGION);
    let sb = sandbox(SandboxConfig::default()).await;
    let out = run(send_cmd(&input, &mapping, &sb.endpoint()).args(["--rate", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let accepted = accepted_by_ref(&sb);
    let results = read_results(&w.path("mixed.results.csv"));
    assert_eq!(results.len(), MIXED.len());
    let by_ref: std::collections::HashMap<&str, _> = results
        .iter()
        .map(|row| (row["Ref"].as_str(), row))
        .collect();
    for (r, contact, expected) in MIXED {
        let row = by_ref[r];
        match expected {
            Some(e164) => {
                assert_eq!(row["digidesk_status"], "created", "{r}: {row:?}");
                let bodies = &accepted[r];
                assert_eq!(bodies.len(), 1, "{r}");
                assert_eq!(bodies[0].1["customer_contact"], *e164, "{r}");
            }
            None => {
                assert_eq!(row["digidesk_status"], "invalid", "{r}: {row:?}");
                assert!(!accepted.contains_key(r), "{r} was sent");
                // The reason quotes the value as it was exported.
                let quoted = format!("customer_contact {contact:?} is not a valid");
                assert!(
                    row["digidesk_errors"].starts_with(&quoted),
                    "{r}: {}",
                    row["digidesk_errors"]
                );
            }
        }
    }
    let errors = |r: &str| by_ref[r]["digidesk_errors"].clone();
    assert_eq!(
        errors("R10"),
        "customer_contact \"+4990012345675\" is not a valid international phone number: no such number in the numbering plan of +49"
    );
    assert!(errors("R11").contains("phone_region"), "{}", errors("R11"));
    assert_eq!(
        errors("R12"),
        "customer_contact \"zoe\\u{200b}@example.com\" is not a valid email address: it has an invisible character inside"
    );
    assert_eq!(sb.accepted().len(), 9);

    // The summary counts reasons by kind; no contact, valid or not, is in
    // it or in the logs at default verbosity.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("customer_contact is not a valid international phone number: "),
        "{stdout}"
    );
    let all = text(&out);
    for (_, contact, expected) in MIXED {
        assert!(!all.contains(contact), "{contact:?} in the output: {all}");
        if let Some(e) = expected {
            assert!(!all.contains(e), "{e} in the output: {all}");
        }
    }
    sb.shutdown().await;
}

#[test]
fn check_quotes_invalid_contacts_and_reads_foreign_numbers_under_a_region() {
    let w = Work::new();
    let input = w.write(
        "us.csv",
        "Ref,Contact\nR1,+49 1512 3456789\nR2,+7 800 555 35 35\nR3,(650) 253-0000\nR4,8 (800) 123-45-67\nR5,a..b@example.com\n",
    );
    let mapping = w.write(
        "map.toml",
        format!("{MAPPING_NO_REGION}\n[contact]\nphone_region = \"US\"\n"),
    );
    let out = output(
        bin()
            .arg("check")
            .arg(&input)
            .arg("--mapping")
            .arg(&mapping)
            .args(["--show", "3"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for sent in [
        "\"customer_contact\": \"+4915123456789\"",
        "\"customer_contact\": \"+78005553535\"",
        "\"customer_contact\": \"+16502530000\"",
    ] {
        assert!(stdout.contains(sent), "{sent}: {stdout}");
    }
    // Grouped by kind of reason, each example row with the value it had.
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {stdout}"))
            .to_string()
    };
    let phone = line("(rows 4 \"8 (800) 123-45-67\")");
    assert!(
        phone.contains("1  customer_contact is not a valid phone number for region US: "),
        "{phone}"
    );
    let email = line("(rows 5 \"a..b@example.com\")");
    assert!(
        email.contains("1  customer_contact is not a valid email address: a dot at the start or end of the name, or two dots in a row"),
        "{email}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("8 (800)") && !stderr.contains("a..b@"),
        "{stderr}"
    );
}

#[test]
fn a_region_that_is_not_one_is_a_mapping_error_with_a_suggestion() {
    let w = Work::new();
    let input = w.write("in.csv", "Ref,Contact\nR1,07911 123456\n");
    let mapping = w.write(
        "map.toml",
        format!("{MAPPING_NO_REGION}\n[contact]\nphone_region = \"UK\"\n"),
    );
    let out = output(
        bin()
            .arg("check")
            .arg(&input)
            .arg("--mapping")
            .arg(&mapping),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("phone_region \"UK\" is not a region code; did you mean GB?"),
        "{stderr}"
    );
}
