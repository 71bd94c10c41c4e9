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
fn invalid_rows_give_every_reason() {
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
            assert!(
                reasons[0].starts_with(
                    "customer_contact \"12345\" is not a valid phone number for region GB"
                ),
                "{reasons:?}"
            );
            assert_eq!(
                reasons[1],
                "account_number is 251 characters; at most 250 are allowed"
            );
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

/// One request buffer kept from row to row decides every row exactly as a
/// fresh request does: nothing of an earlier row stays behind (optional
/// fields, misc_data entries, extra parameters, a contact left as typed).
#[test]
fn a_reused_request_buffer_decides_as_a_fresh_one() {
    let templated = r#"
[fields]
customer_contact = "Phone"
campaign_name = { template = " {Queue} ", default = "General" }
customer_name = { template = "  {First} {Last}  ", default = "Customer" }
agent_name = { column = "Agent", extract = '^([^<]+?)\s*<' }
[contact]
phone_region = "GB"
[misc_data]
columns = ["Reason", "Queue"]
[extra]
owner = "Owner"
"#;
    let rows = [
        [
            "07911 123456",
            " Zoë ",
            "Smith",
            "A1",
            "Ann <a@x.io>",
            "O",
            "Billing",
            "Q1",
            "",
        ],
        ["07911 123457", "", "", "", "", "", "", "", "n"],
        [
            "07911 12",
            "Al",
            "B",
            "",
            "Bob <b@x.io>",
            "",
            "Late",
            "",
            "",
        ],
        [
            "+44 7911 123458",
            "Cy",
            "",
            "A3",
            "",
            "Own",
            "",
            "Q3",
            "yes",
        ],
        ["", "Di", "E", "A4", "Eve", "", "Refund", "Q4", ""],
        [
            "a@B.example.COM",
            "  ",
            " ",
            "",
            "Fay <f@x.io>",
            "",
            "",
            "",
            "",
        ],
        ["07911 123459", "Gus", "H", "A6", "", "", "Other", "Q6", ""],
    ];
    for toml in [FULL, templated] {
        let p = plan(toml).unwrap();
        let mut req = SurveyRequest::default();
        for cells in rows {
            let fresh = p.apply(&row(cells));
            let reused = p.apply_into(&row(cells), &mut req).with(req.clone());
            assert_eq!(reused, fresh, "{cells:?}");
        }
    }
}

/// A template is trimmed, falls back to its default when empty, and keeps
/// the inner spaces, whether built in a buffer or not.
#[test]
fn a_template_built_in_a_buffer_is_trimmed_and_defaulted() {
    let p = plan(
        r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "C" }
customer_name = { template = " {First}  {Last} ", default = "Customer" }
[contact]
phone_region = "GB"
"#,
    )
    .unwrap();
    let name = |first: &str, last: &str| {
        let mut req = SurveyRequest {
            customer_name: Some("left over from an earlier row".into()),
            ..SurveyRequest::default()
        };
        let cells = ["07911 123456", first, last, "", "", "", "", "", ""];
        assert_eq!(p.apply_into(&row(cells), &mut req), Verdict::Send);
        req.customer_name
    };
    assert_eq!(name("Zoë", "Smith").as_deref(), Some("Zoë  Smith"));
    assert_eq!(name("", "Smith").as_deref(), Some("Smith"));
    assert_eq!(name(" ", "\u{a0}").as_deref(), Some("Customer"));
}
