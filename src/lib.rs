//! digidesk-upload: turns CSV exports into DigiDesk survey requests.
//!
//! # Layout
//!
//! The data's path, one module per stage:
//!
//! - [`input`]: the export's rows (file, stdin, `.gz`, any encoding), `digidesk_*`
//!   columns dropped and `retry`'s selection applied; and `decide`, the verdict on
//!   a row before any request, shared by `check` and `send`.
//! - [`mapping`]: the TOML mapping file, read once with serde (`file`), checked
//!   (`semantic`), compiled against the header into a `Plan` whose `apply` gives a
//!   row's `Decision`; values (`value`, `template`, `transform`: extract and time)
//!   and `condition`s (for `when` and `[skip]`) each in their own file.
//! - [`contact`]: phone numbers to E.164 as libphonenumber reads them, emails cleaned.
//! - [`validate`]: the spec's field rules, applied before anything is sent.
//! - [`request`]: the survey request and its JSON body.
//! - [`api`]: what a DigiDesk answer means (JSON or XML, `message` or `messages`).
//! - [`transport`]: one HTTP POST (direct, or through a proxy), sorted into answered /
//!   never sent / maybe arrived / TLS; the TLS set-up and the credentials.
//! - [`pace`]: how fast requests start: the rate, and slowing down on 429.
//! - [`journal`]: the write-ahead record of rows in flight, for crash-safe `--resume`.
//! - [`ledger`]: every survey sent by any run on this machine, so none is sent twice.
//! - [`lock`]: one process per results file.
//! - [`results`]: the results file and the counters.
//! - [`pipeline`]: runs a job with the client it is given; `run` wires its stages,
//!   one file each: `feed` (the reader thread), `dispatch` (rows to workers, their
//!   claims in the input's order), `keeper` (the thread that writes ledger claims,
//!   outcomes and journal lines, in groups), `turn` (a row's claim, rate slot and
//!   journal line), `worker` (tries, backoff), `ctx` (what workers share, the
//!   circuit breaker), `pool` (Little's law), `resume` (how a run starts, its
//!   fingerprint), `stop`, and `error`.
//! - [`summary`]: the end-of-run table and its JSON twin.
//! - [`progress`]: a bar on a terminal, a log line every few seconds elsewhere.
//!
//! Around it: [`cli`] (the command line), [`config`] (checked, typed settings),
//! [`cmd`] (one module per command; `cmd::job` runs a job of `send`, `retry` or
//! `demo` with progress and signals, and prints its summary), [`sandbox`] (a local DigiDesk), [`spec`]
//! (the API's names and limits), [`exit`] (exit codes, and how each stage's
//! error becomes one), [`assets`] (man pages and completions), [`logging`],
//! [`signals`] (Ctrl-C and SIGTERM) and [`output`] (stdout that survives a
//! closed pipe).

pub mod api;
pub mod assets;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod contact;
pub mod exit;
pub mod input;
pub mod journal;
pub mod ledger;
pub mod lock;
pub mod logging;
pub mod mapping;
pub mod output;
pub mod pace;
pub mod pipeline;
pub mod progress;
pub mod request;
pub mod results;
pub mod sandbox;
pub mod signals;
pub mod spec;
pub mod summary;
pub mod transport;
pub mod validate;

pub use exit::{Exit, Fatal};
