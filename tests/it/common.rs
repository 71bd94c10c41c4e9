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
        .env_remove("RUST_LOG")
        // The default ledger is this command's own, never the machine's.
        .env("XDG_STATE_HOME", fresh_state_dir());
    // Loopback only: no proxy from the machine's environment.
    for v in digidesk_upload::transport::PROXY_VARS {
        c.env_remove(v);
    }
    c.env_remove("NO_PROXY").env_remove("no_proxy");
    c
}

/// A new, empty directory under the build's temporary directory, for one
/// command's default ledger.
fn fresh_state_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{}-{n}", std::process::id()))
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

/// The number on the line of `ledger check`'s report that starts with `label`.
pub fn count_of(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{report}"));
    line[line.len() - 10..]
        .trim()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("no count on {line:?}"))
}

/// Rows of `export(n)` that `send` creates.
pub fn created_of(n: usize) -> u64 {
    (1..=n).filter(|&i| expected_status(i) == "created").count() as u64
}

/// What [`export`] says row `i` should be.
pub fn expected_status(i: usize) -> &'static str {
    if i.is_multiple_of(25) {
        "skipped"
    } else if i.is_multiple_of(10) {
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

/// A row of a results file: column → value.
pub type Row = HashMap<String, String>;

/// How many rows of `results` have `status`.
pub fn count(results: &[Row], status: &str) -> usize {
    results
        .iter()
        .filter(|r| r["digidesk_status"] == status)
        .count()
}

/// An endpoint on a loopback port nothing listens on (bound, then let go).
pub fn unreachable_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port();
    format!("http://127.0.0.1:{port}/api/survey_requests/")
}

/// One end-to-end scenario: a work directory holding an input and a mapping
/// (`map.toml`, [`MAPPING`] unless told otherwise), usually a sandbox, and
/// runs of the real binary against them, from inside the work directory (so
/// relative paths in arguments, such as `--results out.csv`, land there).
///
/// ```ignore
/// let s = Scenario::new().export(120).sandbox(SandboxConfig::default()).await;
/// let results = s.send(&["--rate", "0"]).exits(1).results();
/// s.assert_consistent(&results);
/// ```
pub struct Scenario {
    pub work: Work,
    input: PathBuf,
    mapping: PathBuf,
    rows: Option<usize>,
    server: Option<Sandbox>,
    endpoint: Option<String>,
}

impl Scenario {
    /// A fresh work directory with `map.toml` holding [`MAPPING`] and no input yet.
    pub fn new() -> Scenario {
        let work = Work::new();
        let mapping = work.write("map.toml", MAPPING);
        Scenario {
            input: work.path("calls.csv"),
            work,
            mapping,
            rows: None,
            server: None,
            endpoint: None,
        }
    }

    /// The input is `calls.csv` holding [`export`]`(n)`; [`Self::assert_consistent`]
    /// then checks rows 1 to `n`.
    pub fn export(mut self, n: usize) -> Scenario {
        self.input = self.work.write("calls.csv", export(n));
        self.rows = Some(n);
        self
    }

    /// The input is `name` in the work directory, holding `content`.
    pub fn input(mut self, name: &str, content: impl AsRef<[u8]>) -> Scenario {
        self.input = self.work.write(name, content);
        self
    }

    /// The input is a file outside the work directory (a fixture).
    pub fn input_path(mut self, path: impl Into<PathBuf>) -> Scenario {
        self.input = path.into();
        self
    }

    /// `map.toml` holds `toml` instead of [`MAPPING`].
    pub fn mapping(self, toml: impl AsRef<[u8]>) -> Scenario {
        self.work.write("map.toml", toml);
        self
    }

    /// The mapping is `name` in the work directory, holding `toml`.
    pub fn mapping_file(mut self, name: &str, toml: impl AsRef<[u8]>) -> Scenario {
        self.mapping = self.work.write(name, toml);
        self
    }

    /// The mapping is a file outside the work directory (a ready mapping).
    pub fn mapping_path(mut self, path: impl Into<PathBuf>) -> Scenario {
        self.mapping = path.into();
        self
    }

    /// Runs go to `endpoint` rather than to the sandbox.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Scenario {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Starts a sandbox on a free loopback port; runs go to it.
    pub async fn sandbox(mut self, cfg: SandboxConfig) -> Scenario {
        self.server = Some(sandbox(cfg).await);
        self
    }

    /// The running sandbox.
    pub fn server(&self) -> &Sandbox {
        self.server.as_ref().expect("the scenario has a sandbox")
    }

    /// What the sandbox has accepted so far.
    pub fn accepted(&self) -> Vec<digidesk_upload::sandbox::Accepted> {
        self.server().accepted()
    }

    /// Where runs send to: the given endpoint, else the sandbox's, else none.
    pub fn target(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| self.server.as_ref().map(Sandbox::endpoint))
    }

    /// From now on, runs go to `endpoint` (a second server).
    pub fn retarget(&mut self, endpoint: impl Into<String>) {
        self.endpoint = Some(endpoint.into());
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path(name)
    }

    /// Writes a file in the work directory.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        self.work.write(name, content)
    }

    /// A results file in the work directory, as rows.
    pub fn results_in(&self, name: &str) -> Vec<Row> {
        read_results(&self.path(name))
    }

    /// Rewrites the mapping file in place (between runs).
    pub fn rewrite_mapping(&self, toml: impl AsRef<[u8]>) {
        std::fs::write(&self.mapping, toml).expect("write the mapping");
    }

    /// Where `send` writes its results by default: the input with
    /// `.results.csv` in place of `.csv`.
    pub fn results_path(&self) -> PathBuf {
        let name = self
            .input
            .file_name()
            .and_then(|n| n.to_str())
            .expect("the input has a file name");
        let stem = name
            .strip_suffix(".csv.gz")
            .or_else(|| name.strip_suffix(".csv"))
            .unwrap_or(name);
        self.input.with_file_name(format!("{stem}.results.csv"))
    }

    /// The default results file of `send`, as rows.
    pub fn results(&self) -> Vec<Row> {
        read_results(&self.results_path())
    }

    /// `digidesk-upload send INPUT --mapping MAPPING [--endpoint E] ARGS`,
    /// run from the work directory.
    pub fn send_cmd(&self, args: &[&str]) -> Command {
        self.cmd("send", &self.input, true, args)
    }

    /// `digidesk-upload retry RESULTS --mapping MAPPING [--endpoint E] ARGS`,
    /// where RESULTS is `send`'s default results file.
    pub fn retry_cmd(&self, args: &[&str]) -> Command {
        self.cmd("retry", &self.results_path(), true, args)
    }

    /// `digidesk-upload check INPUT --mapping MAPPING ARGS`.
    pub fn check_cmd(&self, args: &[&str]) -> Command {
        self.cmd("check", &self.input, false, args)
    }

    fn cmd(&self, command: &str, input: &Path, endpoint: bool, args: &[&str]) -> Command {
        let mut c = self.bin();
        c.arg(command)
            .arg(input)
            .arg("--mapping")
            .arg(&self.mapping);
        if let Some(e) = self.target().filter(|_| endpoint) {
            c.args(["--endpoint", &e]);
        }
        c.args(args);
        c
    }

    /// The binary (as [`bin`]), run from the work directory.
    pub fn bin(&self) -> Command {
        let mut c = bin();
        c.current_dir(self.work.dir.path())
            // The default ledger is the scenario's own, not the machine's.
            .env("XDG_STATE_HOME", self.work.path("state"));
        c
    }

    /// Runs `send` with `args` to its end.
    pub fn send(&self, args: &[&str]) -> Run {
        self.run(&mut self.send_cmd(args))
    }

    /// Runs `retry` with `args` to its end.
    pub fn retry(&self, args: &[&str]) -> Run {
        self.run(&mut self.retry_cmd(args))
    }

    /// Runs `check` with `args` to its end.
    pub fn check(&self, args: &[&str]) -> Run {
        self.run(&mut self.check_cmd(args))
    }

    /// Runs any command of this scenario to its end; its results file is
    /// the one its `--results` names, else the command's default.
    pub fn run(&self, cmd: &mut Command) -> Run {
        let out = run(cmd);
        self.finished(cmd, out)
    }

    /// Runs a command of this scenario to its end with `input` on its stdin.
    pub fn run_with_stdin(&self, cmd: &mut Command, input: &[u8]) -> Run {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start digidesk-upload");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let out = tokio::task::block_in_place(|| {
            stdin.write_all(input).expect("write to its stdin");
            drop(stdin);
            child.wait_with_output().expect("wait for digidesk-upload")
        });
        self.finished(cmd, out)
    }

    /// Starts `send` with `args`, its output piped, to be stopped or waited on.
    pub fn spawn_send(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::from(self.send_cmd(args))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start digidesk-upload")
    }

    /// Waits for a run started by [`Self::spawn_send`].
    pub async fn wait(&self, child: tokio::process::Child) -> Run {
        let out = child
            .wait_with_output()
            .await
            .expect("wait for digidesk-upload");
        Run {
            out,
            results: Some(self.results_path()),
        }
    }

    fn finished(&self, cmd: &Command, out: Output) -> Run {
        let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
        let named = args
            .iter()
            .position(|a| *a == "--results")
            .and_then(|i| args.get(i + 1))
            .map(|p| self.work.dir.path().join(p));
        let results = named.or_else(|| match args.first().and_then(|a| a.to_str()) {
            Some("send") => Some(self.results_path()),
            Some("retry") => {
                let r = self.results_path();
                Some(r.with_extension("retry.csv"))
            }
            _ => None,
        });
        Run { out, results }
    }

    /// [`assert_consistent`] for this scenario's [`export`] and sandbox.
    pub fn assert_consistent(&self, results: &[Row]) {
        let n = self.rows.expect("the scenario's input is an export(n)");
        assert_consistent(n, results, self.server());
    }

    /// Stops the sandbox, if there is one.
    pub async fn shutdown(self) {
        if let Some(sb) = self.server {
            sb.shutdown().await;
        }
    }
}

/// A finished run of the binary: its output, and where its results are.
pub struct Run {
    pub out: Output,
    results: Option<PathBuf>,
}

impl Run {
    /// Asserts the exit code (showing the run's output if it differs).
    #[track_caller]
    pub fn exits(self, code: i32) -> Run {
        assert_eq!(self.out.status.code(), Some(code), "{}", self.text());
        self
    }

    /// The exit code, `None` if a signal ended the run.
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Exit code, stdout and stderr, for assertion messages and searches.
    pub fn text(&self) -> String {
        text(&self.out)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Where this run's results file is.
    pub fn results_path(&self) -> &Path {
        self.results
            .as_deref()
            .expect("this command writes no results file")
    }

    /// This run's results file, as rows.
    pub fn results(&self) -> Vec<Row> {
        read_results(self.results_path())
    }
}
