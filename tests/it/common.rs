//! Shared helpers: a temporary work directory, generated exports, the real
//! binary with credentials in its environment, and results-file reading.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use digidesk_upload::sandbox::{Sandbox, SandboxConfig};

/// A test's own directory.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write test file");
        p
    }
}

/// The real binary, with the sandbox's credentials and nothing inherited
/// that could change its behaviour.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_digidesk-upload"));
    c.env("DIGIDESK_USERNAME", "demo")
        .env("DIGIDESK_PASSWORD", "demo")
        .env_remove("DIGIDESK_ENDPOINT")
        .env_remove("DIGIDESK_CREDENTIALS_FILE")
        .env_remove("DIGIDESK_LEDGER")
        .env_remove("RUST_LOG");
    // Loopback only: no proxy from the machine's environment.
    for v in digidesk_upload::client::PROXY_VARS {
        c.env_remove(v);
    }
    c.env_remove("NO_PROXY").env_remove("no_proxy");
    c
}

/// Runs a command to its end without blocking the sandbox's runtime.
pub fn run(cmd: &mut Command) -> Output {
    tokio::task::block_in_place(|| cmd.output().expect("run digidesk-upload"))
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A valid UK mobile number in national format, unique per `i`.
pub fn mobile(i: usize) -> String {
    format!("07400 {:06}", 100000 + i)
}

/// The same number in E.164, as DigiDesk receives it.
pub fn mobile_e164(i: usize) -> String {
    format!("+447400{:06}", 100000 + i)
}

/// The mapping used by most tests: every row's `Ref` goes to
/// `account_number`, so the sandbox's record can be matched to rows.
pub const MAPPING: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
customer_name = { template = "{First} {Last}" }
account_number = "Ref"

[contact]
phone_region = "GB"

[misc_data]
columns = ["Reason"]

[skip]
rules = [{ column = "Opt Out", equals = ["Y"] }]
"#;

/// An export of `n` rows for [`MAPPING`]: every 10th row has no phone
/// (invalid), every 25th opted out (skipped).
pub fn export(n: usize) -> String {
    let mut s = String::from("Ref,First,Last,Phone,Reason,Opt Out\n");
    for i in 1..=n {
        let phone = if i % 10 == 0 {
            String::new()
        } else {
            mobile(i)
        };
        let opt = if i % 25 == 0 { "Y" } else { "" };
        s.push_str(&format!(
            "R{i},Zoë,Smith {i},{phone},\"Billing, enquiry\",{opt}\n"
        ));
    }
    s
}

/// What [`export`] says row `i` should be.
pub fn expected_status(i: usize) -> &'static str {
    if i % 25 == 0 {
        "skipped"
    } else if i % 10 == 0 {
        "invalid"
    } else {
        "created"
    }
}

/// The exact body DigiDesk should receive for row `i` of [`export`].
pub fn expected_body(i: usize) -> serde_json::Value {
    serde_json::json!({
        "customer_contact": mobile_e164(i),
        "campaign_name": "Post-call survey",
        "customer_name": format!("Zoë Smith {i}"),
        "account_number": format!("R{i}"),
        "misc_data": {"Reason": "Billing, enquiry"},
    })
}

/// The results file as rows of column → value.
pub fn read_results(path: &Path) -> Vec<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).expect("results file");
    let headers = rdr.headers().expect("header").clone();
    rdr.records()
        .map(|r| {
            let r = r.expect("record");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Sandbox bodies keyed by `account_number`, with how often each came.
pub fn accepted_by_ref(sandbox: &Sandbox) -> HashMap<String, Vec<(u64, serde_json::Value)>> {
    let mut m: HashMap<String, Vec<(u64, serde_json::Value)>> = HashMap::new();
    for a in sandbox.accepted() {
        let key = a.body["account_number"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        m.entry(key).or_default().push((a.id, a.body));
    }
    m
}

/// Starts a sandbox on a free loopback port.
pub async fn sandbox(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg).await.expect("start sandbox")
}

/// Checks the invariants every run must keep against the server's record:
/// every input row exactly once, no survey created twice, every `created`
/// row's id the one the server gave, and any row the server accepted but
/// the results do not call `created` is `unknown` (never `failed`).
pub fn assert_consistent(n: usize, results: &[HashMap<String, String>], sandbox: &Sandbox) {
    let accepted = accepted_by_ref(sandbox);
    for (key, bodies) in &accepted {
        assert_eq!(
            bodies.len(),
            1,
            "row {key} was created {} times",
            bodies.len()
        );
    }
    let mut seen = HashMap::new();
    for r in results {
        let row: usize = r["digidesk_row"].parse().expect("digidesk_row");
        assert!(
            seen.insert(row, r.clone()).is_none(),
            "row {row} appears twice in the results"
        );
    }
    for i in 1..=n {
        let r = seen
            .get(&i)
            .unwrap_or_else(|| panic!("row {i} is missing from the results"));
        assert_eq!(
            r["Ref"],
            format!("R{i}"),
            "row {i} carries another row's columns"
        );
        let status = r["digidesk_status"].as_str();
        let server = accepted.get(&format!("R{i}"));
        match status {
            "created" => {
                let (id, body) = &server
                    .unwrap_or_else(|| panic!("row {i} created but the server has no record"))[0];
                assert_eq!(r["digidesk_id"], id.to_string(), "row {i}: id");
                assert_eq!(body, &expected_body(i), "row {i}: body");
            }
            "unknown" => {}
            "invalid" | "skipped" | "failed" | "rejected" => {
                assert!(
                    server.is_none(),
                    "row {i} is {status} but the server created it"
                );
            }
            other => panic!("row {i}: unexpected status {other}"),
        }
    }
    assert_eq!(seen.len(), n, "results hold rows that are not in the input");
}

/// `digidesk-upload send INPUT --mapping MAPPING --endpoint ENDPOINT`.
pub fn send_cmd(input: &Path, mapping: &Path, endpoint: &str) -> Command {
    let mut c = bin();
    c.arg("send")
        .arg(input)
        .arg("--mapping")
        .arg(mapping)
        .args(["--endpoint", endpoint]);
    c
}
