//! The command line, as clap sees it: every command, option and default.
//! Nothing here does work; `config` turns these raw values into a
//! checked, typed configuration before anything touches the network.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default `--rate`: conservative, so that an account whose limit we do
/// not know is not hammered.
pub const DEFAULT_RATE: u32 = 10;

/// Turn CSV exports into DigiDesk survey requests.
///
/// A reader streams rows from a CSV export, a mapping file turns each row into
/// a survey request, and a rate-limited pool of workers posts them to the
/// DigiDesk Post API, writing a results file of ids and errors so that only the
/// failed rows are ever sent again.
#[derive(Debug, Parser)]
#[command(name = "digidesk-upload", version, propagate_version = true)]
#[command(after_help = "Start with `digidesk-upload demo`: it needs no set-up and no network.")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options that control logging; accepted before or after the command.
#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// More logging (-v: debug, -vv: trace). `RUST_LOG` overrides both.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less logging (-q: warnings and errors only, no progress bar).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Log lines for people (`text`) or for log collectors (`json`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Map, validate and post every row of a CSV export; write a results file.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),

    /// Map and validate every row with no network; show counts, errors and bodies.
    ///
    /// Exits 0 when every row is sendable or skipped, 1 when some rows are
    /// invalid, 2 on bad usage, mapping or input.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),

    /// Resend the rows of a results file whose status is `failed` (or those named by --only), from it or from a fixed export (--from).
    #[command(after_help = RETRY_EXAMPLES, mut_arg("results", |a| a.help(RETRY_RESULTS_HELP)))]
    Retry(RetryArgs),

    /// Run a local DigiDesk Post API that follows the spec, with injectable faults.
    #[command(after_help = SANDBOX_EXAMPLES)]
    Sandbox(SandboxArgs),

    /// Print shell completions for bash, zsh or fish.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to generate completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Look after the ledger of surveys sent: import past results, count, forget, check an export.
    #[command(after_help = LEDGER_EXAMPLES)]
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },

    /// No set-up: start the sandbox in-process and send the built-in demo export through it.
    #[command(
        after_help = "Example:\n  digidesk-upload demo\n  digidesk-upload demo --dir ./demo-run"
    )]
    Demo(DemoArgs),
}

// Each example line fits in 80 columns, so that help never wraps one
// mid-command; a longer command goes on with a trailing `\`.
const SEND_EXAMPLES: &str = "\
Examples:
  export DIGIDESK_USERNAME=acme DIGIDESK_PASSWORD=...
  # or --credentials FILE, a file of `username=` and `password=` lines
  digidesk-upload check calls.csv --mapping calls.toml
  digidesk-upload send calls.csv --mapping calls.toml --limit 10
  digidesk-upload send calls.csv --mapping calls.toml --rate 20 --resume
  gunzip -c calls.csv.gz | digidesk-upload send - --mapping calls.toml \\
      --results calls.results.csv";

const CHECK_EXAMPLES: &str = "\
Examples:
  digidesk-upload check calls.csv --mapping calls.toml
  digidesk-upload check export.csv --mapping calls.toml --show 3 \\
      --delimiter ';' --encoding windows-1252";

const RETRY_RESULTS_HELP: &str =
    "Where results go [default: RESULTS with `.retry.csv` in place of \
`.csv`: calls.results.csv gives calls.results.retry.csv]";

const RETRY_EXAMPLES: &str = "\
Examples:
  digidesk-upload retry calls.results.csv --mapping calls.toml
  # resends the failed rows; their results go to calls.results.retry.csv
  digidesk-upload retry calls.results.csv --mapping calls.toml \\
      --only failed,unknown --results again.csv
  # the invalid rows, from the export once they are fixed in it
  digidesk-upload retry calls.results.csv --mapping calls.toml \\
      --from calls-fixed.csv --only invalid";

const LEDGER_EXAMPLES: &str = "\
Examples:
  digidesk-upload ledger import old/*.results.csv --mapping calls.toml
  digidesk-upload ledger check tonight.csv --mapping calls.toml
  digidesk-upload ledger stats
  digidesk-upload ledger forget --before 2025-01-01";

const SANDBOX_EXAMPLES: &str = "\
Examples:
  digidesk-upload sandbox
  digidesk-upload sandbox --listen 127.0.0.1:0 --tls --cert-out sandbox.pem
  digidesk-upload sandbox --latency-ms 200 --jitter-ms 100 --rate-limit 50 \\
      --error-rate 0.05 --seed 7";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  # (the Debian package installs them for all three shells)
  digidesk-upload completions bash \\
      > ~/.local/share/bash-completion/completions/digidesk-upload
  digidesk-upload completions zsh > ~/.zfunc/_digidesk-upload
  digidesk-upload completions fish \\
      > ~/.config/fish/completions/digidesk-upload.fish";

/// Where rows come from and how they are read.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// The CSV export: a path, a `.gz` file, or `-` for standard input.
    pub input: String,

    /// The mapping file (TOML) that turns a row into a survey request.
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,

    /// Input encoding (`utf-8`, `windows-1252`, `iso-8859-1`, ...); overrides the mapping's
    /// `[input] encoding`. A byte-order mark (UTF-8, UTF-16LE/BE) always wins [default: utf-8].
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,

    /// Input delimiter, one character (`;` is common in European exports; `tab` for tabs);
    /// overrides the mapping's `[input] delimiter`. Excel's `sep=` first line wins [default: ,].
    #[arg(long, value_name = "C")]
    pub delimiter: Option<String>,
}

/// Options shared by `send` and `retry`.
#[derive(Debug, Args, Clone)]
pub struct SendOptions {
    /// Where results go [default: INPUT with `.results.csv` in place of `.csv`; required for stdin].
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,

    /// The API endpoint [default: the spec's Resource URL].
    #[arg(long, value_name = "URL", env = "DIGIDESK_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Requests per second, never exceeded in any one-second window; 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE)]
    pub rate: u32,

    /// Requests in flight [default: enough to hold --rate at 250 ms latency].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Tries per row for transient failures (connections refused, 408, 429, 503).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_attempts: u32,

    /// Retry 500, 502, 504 and other 5xx like a 503, for an endpoint known to
    /// answer them before doing anything [default: such rows are `unknown`].
    #[arg(long)]
    pub retry_server_errors: bool,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,

    /// Continue a run whose results file exists.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,

    /// Start afresh, replacing an existing results file and journal.
    #[arg(long)]
    pub force: bool,

    /// An extra trusted root certificate (PEM), e.g. a corporate proxy's or the sandbox's.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// A file holding the credentials: `username=...` and `password=...` lines
    /// [default: DIGIDESK_USERNAME and DIGIDESK_PASSWORD].
    #[arg(long, value_name = "FILE", env = "DIGIDESK_CREDENTIALS_FILE")]
    pub credentials: Option<PathBuf>,

    /// Also write the end-of-run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Send only the first N sendable rows (a canary run); `--resume` sends the rest.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// `csv`: UTF-8, comma, no BOM. `excel`: a UTF-8 BOM and the input's
    /// delimiter, so that Excel opens it in columns whatever its locale.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ResultsFormat::Csv)]
    pub results_format: ResultsFormat,

    /// Seconds between progress log lines when stderr is not a terminal (cron, pipes).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub progress_every: f64,

    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// Which ledger of surveys sent a run uses.
#[derive(Debug, Args, Clone, Default)]
pub struct LedgerArgs {
    /// The ledger of every survey sent, shared by all runs
    /// [default: $XDG_STATE_HOME/digidesk-upload/ledger.sqlite3, else ~/.local/state/digidesk-upload/ledger.sqlite3].
    #[arg(long, value_name = "FILE", env = "DIGIDESK_LEDGER")]
    pub ledger: Option<PathBuf>,

    /// Run without the ledger: surveys sent earlier are not looked up, and
    /// this run's are not recorded (wins over --ledger and DIGIDESK_LEDGER).
    #[arg(long)]
    pub no_ledger: bool,
}

/// How the results file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultsFormat {
    /// UTF-8, comma-separated, no byte order mark.
    Csv,
    /// A UTF-8 byte order mark and the input's delimiter, for Excel.
    Excel,
}

#[derive(Debug, Args, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub send: SendOptions,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Print the first N request bodies as JSON.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub show: usize,

    /// How many example rows to list per error reason.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub examples: usize,
}

#[derive(Debug, Args, Clone)]
pub struct RetryArgs {
    /// A results file written by `send` or `retry`.
    pub results_in: PathBuf,

    /// The mapping file (TOML) that turns a row into a survey request.
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,

    /// Which statuses to resend, comma-separated (failed, unknown, rejected, invalid).
    #[arg(
        long,
        value_name = "STATUSES",
        default_value = "failed",
        value_delimiter = ','
    )]
    pub only: Vec<String>,

    /// Take the selected rows (by their `digidesk_row`) from this export, the
    /// original export with its mistakes fixed, instead of from RESULTS;
    /// they are mapped and validated again. Its rows must be where they were.
    #[arg(long, value_name = "FIXED_EXPORT")]
    pub from: Option<PathBuf>,

    /// Encoding of the file the rows come from: FIXED_EXPORT with --from,
    /// else RESULTS (`windows-1252` once Excel has saved it) [default: with
    /// --from, the mapping's `[input]`; else utf-8]. A UTF-8 BOM is always stripped.
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,

    /// Delimiter of the file the rows come from [default: with --from, the
    /// mapping's `[input]` or `,`; else found in RESULTS' header].
    #[arg(long, value_name = "C")]
    pub delimiter: Option<String>,

    #[command(flatten)]
    pub send: SendOptions,
}

/// The `ledger` subcommands.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Record the `created` and `unknown` rows of existing results files, so
    /// that they are never sent again.
    Import(LedgerImportArgs),

    /// Count what the ledger holds, per endpoint and username.
    Stats(LedgerFile),

    /// Forget every survey sent before a date (retention).
    Forget(LedgerForgetArgs),

    /// Count the rows of an export a send would skip as `duplicate`; no network.
    Check(LedgerCheckArgs),
}

/// Which ledger a `ledger` subcommand works on.
#[derive(Debug, Args, Clone)]
pub struct LedgerFile {
    /// The ledger file
    /// [default: $XDG_STATE_HOME/digidesk-upload/ledger.sqlite3, else ~/.local/state/digidesk-upload/ledger.sqlite3].
    #[arg(long, value_name = "FILE", env = "DIGIDESK_LEDGER")]
    pub ledger: Option<PathBuf>,
}

/// Whose surveys: the ledger keeps them per endpoint and username, as `send` does.
#[derive(Debug, Args, Clone)]
pub struct LedgerScopeArgs {
    /// The API endpoint the surveys went to [default: the spec's Resource URL].
    #[arg(long, value_name = "URL", env = "DIGIDESK_ENDPOINT")]
    pub endpoint: Option<String>,

    /// A credentials file (`username=...`) [default: DIGIDESK_USERNAME; the password is not needed].
    #[arg(long, value_name = "FILE", env = "DIGIDESK_CREDENTIALS_FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct LedgerImportArgs {
    /// Results files written by `send` or `retry`.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// The mapping file the rows were sent with: it gives each row's survey key.
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,

    /// Delimiter of the results files.
    #[arg(long, value_name = "C", default_value = ",")]
    pub delimiter: String,

    #[command(flatten)]
    pub scope: LedgerScopeArgs,

    #[command(flatten)]
    pub file: LedgerFile,
}

#[derive(Debug, Args, Clone)]
pub struct LedgerForgetArgs {
    /// Forget surveys sent before this: a date (`2025-01-01`, midnight UTC),
    /// a time (`2025-01-01T12:00:00Z`), or an age (`90days`, `1year`).
    #[arg(long, value_name = "DATE")]
    pub before: String,

    #[command(flatten)]
    pub file: LedgerFile,
}

#[derive(Debug, Args, Clone)]
pub struct LedgerCheckArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// How many duplicate rows to list with their reason.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub examples: usize,

    #[command(flatten)]
    pub scope: LedgerScopeArgs,

    #[command(flatten)]
    pub file: LedgerFile,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Write the demo's files and results here instead of a fresh temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Options of the local DigiDesk sandbox.
#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// Address to bind; port 0 picks any free port (the bound URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The username it accepts (a local test server: it may be on argv).
    #[arg(long, value_name = "U", default_value = "demo")]
    pub username: String,

    /// The password it accepts.
    #[arg(long, value_name = "P", default_value = "demo")]
    pub password: String,

    /// Serve HTTPS with a certificate it generates for localhost and 127.0.0.1.
    #[arg(long)]
    pub tls: bool,

    /// With --tls, write that certificate (PEM) here, for `send --ca-cert`.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cert_out: Option<PathBuf>,

    /// Append every accepted request as a JSON line {"id", "time", "body"}.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Only these campaign names are accepted (comma-separated) [default: any].
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub campaigns: Option<Vec<String>>,

    /// Accept this custom top-level parameter (repeatable).
    #[arg(long = "allow-param", value_name = "NAME")]
    pub allow_param: Vec<String>,

    /// Delay each answer by this many milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub latency_ms: u64,

    /// Add up to this many milliseconds of random delay to each answer.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jitter_ms: u64,

    /// Token bucket of N requests per second; excess requests get 429 with Retry-After.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<f64>,

    /// Requests the --rate-limit bucket lets through at once [default: one second's worth].
    #[arg(long, value_name = "N")]
    pub rate_limit_burst: Option<u32>,

    /// Share of requests (0..1) answered 500 or 503.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Share of requests (0..1) answered 502 with an HTML body, as a proxy sends.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub html_error_rate: f64,

    /// Share of connections (0..1) closed before anything is created.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub drop_before_rate: f64,

    /// Share of requests (0..1) created and recorded, then closed with no answer.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub drop_after_rate: f64,

    /// Share of requests (0..1) created and recorded, then answered 504 by a gateway.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub gateway_timeout_rate: f64,

    /// Share of requests (0..1) answered --fault-status before anything is created.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub fault_status_rate: f64,

    /// The status --fault-status-rate answers with.
    #[arg(long, value_name = "CODE", default_value_t = 500)]
    pub fault_status: u16,

    /// Send this Retry-After with every 429 and 503 (and --fault-status) answer.
    #[arg(long, value_name = "VALUE")]
    pub retry_after: Option<String>,

    /// Make the injected faults repeatable [default: random].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Skip body validation and answer 201 at once (for benchmarks).
    #[arg(long)]
    pub fast: bool,
}
