//! The ready mappings in `mappings/`, each on a fixture shaped like the
//! vendor's own export (`fixtures/`): `check` exits as expected, and `send`
//! makes the sandbox record exactly the expected request body for each
//! sendable row, and nothing else. No survey goes to one of the company's own
//! lines: on an inbound call the customer is the caller, never the number
//! that was called.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::*;

/// A ready mapping and what its fixture holds.
struct Ready {
    name: &'static str,
    /// Data rows in the fixture (a footer is not data).
    rows: usize,
    skipped: usize,
    /// Rows (1-based) that are invalid: their customer is a company line.
    invalid: &'static [usize],
    /// The company's own lines, as DigiDesk would receive them (E.164).
    own: &'static [&'static str],
    /// Rows (1-based) that are inbound calls.
    inbound: &'static [usize],
}

impl Ready {
    /// The fixture and the ready mapping, as they are in the repository.
    fn scenario(&self) -> Scenario {
        Scenario::new()
            .input_path(repo(&format!("fixtures/{}.csv", self.name)))
            .mapping_path(repo(&format!("mappings/{}.toml", self.name)))
    }

    /// 1 when some row is invalid, else 0.
    fn exit_code(&self) -> i32 {
        i32::from(!self.invalid.is_empty())
    }
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The body every ready mapping sends, with the fields that vary.
fn body(contact: &str, fields: &[(&str, &str)], misc: &[(&str, &str)]) -> Value {
    let mut b = json!({ "customer_contact": contact, "campaign_name": "Post-call survey" });
    for (k, v) in fields {
        b[*k] = json!(v);
    }
    if !misc.is_empty() {
        let m: serde_json::Map<String, Value> = misc
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        b["misc_data"] = Value::Object(m);
    }
    b
}

/// `check` on the fixture exits 0 when every row is sendable or skipped, 1
/// when the fixture holds invalid rows.
fn check_exits_as_expected(r: &Ready) {
    r.scenario().check(&[]).exits(r.exit_code());
}

/// `send` to the sandbox: the statuses add up, each created row's body (found
/// by the id the sandbox gave it) is exactly the expected one, the sandbox
/// accepted nothing else, and no inbound call's survey went to a company line.
async fn send_sends_exactly(r: &Ready, expected: &[(usize, Value)]) {
    let s = r.scenario().sandbox(SandboxConfig::default()).await;
    // A ledger of the run's own, never the machine user's.
    let mut cmd = s.send_cmd(&["--rate", "0", "--results", "results.csv"]);
    cmd.env("DIGIDESK_LEDGER", s.path("ledger.sqlite3"))
        .env("XDG_STATE_HOME", s.path("state"));
    let run = s.run(&mut cmd).exits(r.exit_code());

    let rows = run.results();
    assert_eq!(rows.len(), r.rows, "{}: rows in the results", r.name);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *counts.entry(row["digidesk_status"].as_str()).or_default() += 1;
    }
    let want: HashMap<&str, usize> = [
        ("created", expected.len()),
        ("skipped", r.skipped),
        ("invalid", r.invalid.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert_eq!(counts, want, "{}: statuses", r.name);

    let accepted = s.accepted();
    assert_eq!(
        accepted.len(),
        expected.len(),
        "{}: the sandbox accepted {:?}",
        r.name,
        accepted.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let by_id: HashMap<String, &Value> = accepted
        .iter()
        .map(|a| (a.id.to_string(), &a.body))
        .collect();
    let expected: HashMap<usize, &Value> = expected.iter().map(|(n, b)| (*n, b)).collect();
    for row in &rows {
        let n: usize = row["digidesk_row"].parse().expect("digidesk_row");
        match expected.get(&n) {
            Some(want) => {
                assert_eq!(
                    row["digidesk_status"], "created",
                    "{} row {n}: {row:?}",
                    r.name
                );
                let got = by_id
                    .get(&row["digidesk_id"])
                    .unwrap_or_else(|| panic!("{} row {n}: no such id in the sandbox", r.name));
                assert_eq!(
                    *got, *want,
                    "{} row {n}: the body the sandbox recorded",
                    r.name
                );
            }
            None if r.invalid.contains(&n) => assert_eq!(
                row["digidesk_status"], "invalid",
                "{} row {n}: {row:?}",
                r.name
            ),
            None => assert_eq!(
                row["digidesk_status"], "skipped",
                "{} row {n}: {row:?}",
                r.name
            ),
        }
    }

    for a in &accepted {
        let contact = a.body["customer_contact"].as_str().unwrap_or_default();
        assert!(
            !r.own.contains(&contact),
            "{}: a survey went to the company's own line {contact}",
            r.name
        );
    }
    for row in rows
        .iter()
        .filter(|row| row["digidesk_status"] == "created")
    {
        let n: usize = row["digidesk_row"].parse().expect("digidesk_row");
        if r.inbound.contains(&n) {
            let contact = by_id[&row["digidesk_id"]]["customer_contact"]
                .as_str()
                .unwrap_or_default();
            assert!(
                !r.own.contains(&contact),
                "{} row {n}: an inbound call's survey went to the company's line {contact}",
                r.name
            );
        }
    }
    s.shutdown().await;
}

const RINGCENTRAL: Ready = Ready {
    name: "ringcentral-call-log",
    rows: 8,
    skipped: 3,
    invalid: &[5],
    own: &["+16505550100", "+16505550101"],
    inbound: &[1, 3, 4, 5, 7, 8],
};

fn ringcentral_bodies() -> Vec<(usize, Value)> {
    let misc = |id, secs, time| {
        vec![
            ("RingCentral call", id),
            ("Duration (s)", secs),
            ("Call time", time),
        ]
    };
    vec![
        (
            1,
            body(
                "+14155550132",
                &[
                    ("customer_name", "Jo Bloggs"),
                    ("agent_name", "Dana Whitfield"),
                ],
                &misc("Y3s8kT3GmbJbUQA", "184", "2026-11-02 09:07"),
            ),
        ),
        (
            2,
            body(
                "+12125550147",
                &[
                    ("customer_name", "O'Brien, Renée"),
                    ("agent_name", "Marcus Lee"),
                ],
                &misc("Y3s8kT3Hn2KcUQA", "95", "2026-11-02 10:15"),
            ),
        ),
        (
            6,
            body(
                "+12065550166",
                &[("customer_name", "Ann Lee"), ("agent_name", "Priya Sharma")],
                &misc("Y3s8kT3Ls4OgUQA", "240", "2026-11-03 14:20"),
            ),
        ),
        (
            8,
            body(
                "+15125550190",
                &[
                    ("customer_name", "Sam Kowalski"),
                    ("agent_name", "Priya Sharma"),
                ],
                &misc("Y3s8kT3Nu2QiUQA", "132", "2026-11-05 12:00"),
            ),
        ),
    ]
}

const TWILIO: Ready = Ready {
    name: "twilio-calls",
    rows: 8,
    skipped: 5,
    invalid: &[],
    own: &["+14155550100", "+14155550199"],
    inbound: &[1, 4, 5, 7],
};

fn twilio_bodies() -> Vec<(usize, Value)> {
    let misc = |sid, secs, time| {
        vec![
            ("Twilio call", sid),
            ("Duration (s)", secs),
            ("Call time", time),
        ]
    };
    vec![
        (
            1,
            body(
                "+12125550147",
                &[("customer_name", "RENEE O BRIEN")],
                &misc(
                    "CAa9f7e97965d6cf799a529102a973b8b9",
                    "95",
                    "2026-11-02 09:07",
                ),
            ),
        ),
        (
            3,
            body(
                "+16175550134",
                &[],
                &misc(
                    "CA0a3d72134fb3d6c024db4c510bc1605b",
                    "240",
                    "2026-11-02 14:20",
                ),
            ),
        ),
        (
            7,
            body(
                "+17185550111",
                &[],
                &misc(
                    "CA4d3a21d8c684c09c19b93be911827fd5",
                    "61",
                    "2026-11-05 16:05",
                ),
            ),
        ),
    ]
}

const HUBSPOT: Ready = Ready {
    name: "hubspot-calls",
    rows: 7,
    skipped: 2,
    invalid: &[],
    own: &["+6495550100", "+6495550101"],
    inbound: &[1, 5, 6],
};

fn hubspot_bodies() -> Vec<(usize, Value)> {
    vec![
        (
            1,
            body(
                "+64215550132",
                &[
                    ("customer_name", "Jo Bloggs"),
                    ("agent_name", "Aroha Ngata"),
                ],
                &[
                    ("HubSpot call", "51234000101"),
                    ("Company", "Bloggs Builders Ltd"),
                    ("Call date", "02/11/2026 09:07"),
                ],
            ),
        ),
        (
            2,
            body(
                "+64275550147",
                &[
                    ("customer_name", "Ann Smith"),
                    ("agent_name", "Wiremu Tane"),
                ],
                &[
                    ("HubSpot call", "51234000102"),
                    ("Company", "Bloggs Builders Ltd"),
                    ("Call date", "02/11/2026 10:15"),
                ],
            ),
        ),
        (
            4,
            body(
                "tama.wiremu@example.co.nz",
                &[
                    ("customer_name", "Tama Wiremu"),
                    ("agent_name", "Aroha Ngata"),
                ],
                &[
                    ("HubSpot call", "51234000104"),
                    ("Company", "Wiremu Farms"),
                    ("Call date", "03/11/2026 14:20"),
                ],
            ),
        ),
        (
            6,
            body(
                "+6445550190",
                &[("agent_name", "Wiremu Tane")],
                &[
                    ("HubSpot call", "51234000106"),
                    ("Call date", "04/11/2026 16:05"),
                ],
            ),
        ),
        (
            7,
            body(
                "+64225550174",
                &[
                    ("customer_name", "Zoë Müller"),
                    ("agent_name", "Aroha Ngata"),
                ],
                &[
                    ("HubSpot call", "51234000107"),
                    ("Company", "Müller & Söhne NZ"),
                    ("Call date", "05/11/2026 12:00"),
                ],
            ),
        ),
    ]
}

const SALESFORCE: Ready = Ready {
    name: "salesforce-activities-report",
    rows: 6,
    skipped: 2,
    invalid: &[],
    own: &["+14155550100"],
    inbound: &[2, 5],
};

fn salesforce_bodies() -> Vec<(usize, Value)> {
    let misc = |account, id, time| {
        vec![
            ("Account Name", account),
            ("Outcome", "Connected"),
            ("Salesforce activity", id),
            ("Call time", time),
        ]
    };
    vec![
        (
            1,
            body(
                "+14155550132",
                &[
                    ("customer_name", "Jo Bloggs"),
                    ("agent_name", "Dana Whitfield"),
                ],
                &misc("Acme Inc", "00T5g00000AbCdEAA1", "2026-11-02 09:07"),
            ),
        ),
        (
            2,
            body(
                "ann.lee@example.com",
                &[("customer_name", "Ann Lee"), ("agent_name", "Marcus Lee")],
                &misc("Globex Corp", "00T5g00000AbCdFAA1", "2026-11-02 10:15"),
            ),
        ),
        (
            5,
            body(
                "+12125550147",
                &[
                    ("customer_name", "O'Brien, Renée"),
                    ("agent_name", "Marcus Lee"),
                ],
                &misc("Globex Corp", "00T5g00000AbCdIAA1", "2026-11-04 16:05"),
            ),
        ),
        (
            6,
            body(
                "+12065550166",
                &[
                    ("customer_name", "Hemi Parata"),
                    ("agent_name", "Priya Sharma"),
                ],
                &misc("Acme Inc", "00T5g00000AbCdJAA1", "2026-11-05 21:52"),
            ),
        ),
    ]
}

const ZENDESK: Ready = Ready {
    name: "zendesk-talk-calls",
    rows: 6,
    skipped: 2,
    invalid: &[4],
    own: &["+441614960000", "+442079460000"],
    inbound: &[1, 3, 4, 5, 6],
};

fn zendesk_bodies() -> Vec<(usize, Value)> {
    let with_campaign = |mut b: Value| {
        b["campaign_name"] = json!("Support follow-up");
        b
    };
    let misc = |id, outcome, agent, time| {
        vec![
            ("Zendesk call", id),
            ("Outcome", outcome),
            ("Zendesk agent", agent),
            ("Call time", time),
        ]
    };
    vec![
        (
            1,
            with_campaign(body(
                "+447400123456",
                &[("account_number", "88101")],
                &misc(
                    "9500012345601",
                    "problem solved",
                    "385473779372",
                    "02/11/2026 09:07",
                ),
            )),
        ),
        (
            2,
            with_campaign(body(
                "+447400654321",
                &[("account_number", "88102")],
                &misc(
                    "9500012345602",
                    "escalated",
                    "385473779373",
                    "02/11/2026 10:15",
                ),
            )),
        ),
        (
            5,
            with_campaign(body(
                "+447400987654",
                &[],
                &misc(
                    "9500012345605",
                    "billing question, resolved",
                    "385473779373",
                    "03/11/2026 14:20",
                ),
            )),
        ),
    ]
}

const ASTERISK: Ready = Ready {
    name: "asterisk-cdr",
    rows: 7,
    skipped: 4,
    invalid: &[],
    own: &["+6495550100", "+6495550101"],
    inbound: &[1, 3, 5, 6],
};

fn asterisk_bodies() -> Vec<(usize, Value)> {
    vec![
        (
            1,
            body(
                "+64215550132",
                &[("customer_name", "Jo Bloggs")],
                &[
                    ("Call time", "02/11/2026 09:07"),
                    ("Asterisk call", "1793610432.1"),
                ],
            ),
        ),
        (
            2,
            body(
                "+64275550147",
                &[("agent_name", "Aroha Ngata")],
                &[
                    ("Call time", "02/11/2026 10:15"),
                    ("Asterisk call", "1793614540.3"),
                ],
            ),
        ),
        (
            6,
            body(
                "+6445550190",
                &[],
                &[
                    ("Call time", "04/11/2026 16:05"),
                    ("Asterisk call", "1793817955.11"),
                ],
            ),
        ),
    ]
}

#[test]
fn ringcentral_call_log_check() {
    check_exits_as_expected(&RINGCENTRAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringcentral_call_log_send() {
    send_sends_exactly(&RINGCENTRAL, &ringcentral_bodies()).await;
}

#[test]
fn twilio_calls_check() {
    check_exits_as_expected(&TWILIO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_calls_send() {
    send_sends_exactly(&TWILIO, &twilio_bodies()).await;
}

#[test]
fn hubspot_calls_check() {
    check_exits_as_expected(&HUBSPOT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_calls_send() {
    send_sends_exactly(&HUBSPOT, &hubspot_bodies()).await;
}

#[test]
fn salesforce_activities_report_check() {
    check_exits_as_expected(&SALESFORCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_activities_report_send() {
    send_sends_exactly(&SALESFORCE, &salesforce_bodies()).await;
}

#[test]
fn zendesk_talk_calls_check() {
    check_exits_as_expected(&ZENDESK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_talk_calls_send() {
    send_sends_exactly(&ZENDESK, &zendesk_bodies()).await;
}

#[test]
fn asterisk_cdr_check() {
    check_exits_as_expected(&ASTERISK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_cdr_send() {
    send_sends_exactly(&ASTERISK, &asterisk_bodies()).await;
}

/// The fixtures keep the shapes the vendors write, so that the tests above
/// test those shapes and not an easier file.
#[test]
fn fixtures_keep_the_vendors_shapes() {
    let read = |name: &str| std::fs::read(repo(&format!("fixtures/{name}.csv"))).unwrap();

    // HubSpot: UTF-16 little-endian with a byte-order mark, CRLF line ends.
    let hubspot = read("hubspot-calls");
    assert_eq!(&hubspot[..2], b"\xff\xfe", "HubSpot's byte-order mark");
    let units: Vec<u16> = hubspot[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).expect("HubSpot's fixture is UTF-16LE");
    assert!(text.starts_with("Record ID,Activity date,"), "{text}");
    assert_eq!(
        text.matches("\r\n").count(),
        9,
        "CRLF ends, one inside a quoted note"
    );

    // Salesforce: every field quoted, and the report's footer after the data.
    let salesforce = String::from_utf8(read("salesforce-activities-report")).unwrap();
    assert!(salesforce.starts_with("\"Assigned\",\"Subject\","));
    assert!(salesforce.ends_with(
        "\n\n\"Grand Totals (6 records)\"\n\n\"Confidential Information - Do Not Distribute\"\n\
         \"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\"\n"
    ));

    // Asterisk: no header; strings quoted, durations bare, a missing answer
    // time as nothing at all.
    let asterisk = String::from_utf8(read("asterisk-cdr")).unwrap();
    assert!(asterisk.starts_with("\"\",\"0215550132\",\"095550100\",\"from-trunk\","));
    assert!(
        asterisk.contains("\"2026-11-02 11:02:03\",,\"2026-11-02 11:02:33\",30,0,\"NO ANSWER\"")
    );

    // Twilio: RFC 2822 dates, quoted because of their commas.
    let twilio = String::from_utf8(read("twilio-calls")).unwrap();
    assert!(twilio.starts_with("Sid,DateCreated,DateUpdated,ParentCallSid,"));
    assert!(twilio.contains(",\"Mon, 02 Nov 2026 09:07:12 +0000\","));
}
