//! The ledger: every survey sent from this machine, by every run and process,
//! so that none is sent twice across runs. Before a row's request leaves its
//! survey key is claimed, durably; after the answer its outcome is recorded.
//!
//! One small interface, [`Store`], hides where the ledger lives: an SQLite
//! file per machine user today ([`Sqlite`]), a shared database later. Keys
//! and contacts reach it only as keyed hashes ([`Hasher`]). The choices
//! behind it are in `docs/design.md`, "The ledger".
//!
//! ```text
//! row ──survey_key──▶ Hasher ──KeyHash──▶ Store::claim ──Claimed──▶ request
//!                                             └──Duplicate(Earlier)──▶ `duplicate`
//! answer ──▶ Store::record (Created(id) / Unknown / Released)
//! ```

mod error;
mod key;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use error::LedgerError;
pub use key::{claim_for, contact_within, survey_key, ContactHash, Hasher, KeyHash};
pub use sqlite::{Options, Sqlite, BUSY_TIMEOUT, FORMAT};

/// The file name of the default ledger, in the state directory.
pub const FILE_NAME: &str = "ledger.sqlite3";

/// Where surveys go: the DigiDesk account they are created in. A key is a
/// duplicate only of surveys sent to the same endpoint with the same username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The endpoint URL, as `--endpoint` gives it once parsed.
    pub endpoint: String,
    /// The credentials' username.
    pub username: String,
}

impl Scope {
    /// The scope of a run: its endpoint as parsed (so that every command
    /// spells it the same way) and its username.
    pub fn new(endpoint: &url::Url, username: &str) -> Scope {
        Scope {
            endpoint: endpoint.as_str().to_string(),
            username: username.to_string(),
        }
    }
}

/// What a run is, for the ledger's record of where each survey came from.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `send`, `retry` or `import`.
    pub command: String,
    /// The run's results file (for `import`, the file imported).
    pub results: PathBuf,
    /// The run's identity (the journal's fingerprint): `--resume` continues
    /// the latest run with the same results file and fingerprint.
    pub fingerprint: String,
    /// Continue that run instead of starting a new one.
    pub resume: bool,
}

/// A run as the store knows it; claims and outcomes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId {
    scope: i64,
    run: i64,
}

/// One row's claim: its key, and its contact for `contact_within`.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// The row's number in its source (as in `digidesk_row`).
    pub row: u64,
    pub key: KeyHash,
    pub contact: Option<ContactHash>,
}

impl Claim {
    /// The claim of a run without a ledger: nothing is looked up.
    pub fn unhashed(row: u64) -> Claim {
        Claim {
            row,
            key: KeyHash([0; 16]),
            contact: None,
        }
    }
}

/// What an earlier survey must be to stop a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// An earlier survey that may exist (`unknown`, or claimed and never
    /// recorded) stops the row too, not only a `created` one.
    pub unknown_blocks: bool,
    /// The mapping's `contact_within`: a survey created for the same contact
    /// within this long stops the row.
    pub contact_within: Option<Duration>,
}

impl Policy {
    /// `send`: anything that was, or may have been, created stops a row.
    pub fn send(contact_within: Option<Duration>) -> Policy {
        Policy {
            unknown_blocks: true,
            contact_within,
        }
    }

    /// `retry`: the rows asked for are resent unless created since.
    pub fn retry(contact_within: Option<Duration>) -> Policy {
        Policy {
            unknown_blocks: false,
            contact_within,
        }
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is this run's now: send the request.
    Claimed,
    /// An earlier survey stops this row: its status is `duplicate`.
    Duplicate(Earlier),
}

/// What the ledger knows of an earlier survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Claimed, and no outcome recorded: being sent by a run still going, or
    /// by one that stopped before the answer came. It may exist.
    InFlight,
    /// DigiDesk answered with an id.
    Created,
    /// Sent, and no answer came: it may exist.
    Unknown,
}

/// The run an earlier survey came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `send`, `retry` or `import`.
    pub command: String,
    /// Its results file.
    pub results: PathBuf,
}

/// The earlier survey that makes a row a `duplicate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    pub state: State,
    /// Its DigiDesk id, when created.
    pub id: Option<u64>,
    /// When it was claimed or created (for an imported one, when its results
    /// file was last written).
    pub at: SystemTime,
    /// Its run; `None` when that run was forgotten.
    pub origin: Option<Arc<Origin>>,
    /// Its row in that file's source.
    pub row: u64,
    /// It was claimed by the run asking.
    pub same_run: bool,
    /// It stops the row because of its contact, not its key.
    pub by_contact: bool,
}

impl Earlier {
    /// The `digidesk_errors` text of a row this survey makes a duplicate:
    /// what it was, when, and in which results file and row.
    pub fn reason(&self) -> String {
        let what = if self.by_contact {
            "this customer_contact was already surveyed within contact_within"
        } else {
            "this survey was already sent"
        };
        if self.same_run {
            return format!("{what} in this run: row {}", self.row);
        }
        let when = humantime::format_rfc3339_seconds(self.at);
        let place = match self.origin.as_deref() {
            Some(o) if o.command == "import" => {
                format!("imported from {} row {}", o.results.display(), self.row)
            }
            Some(o) => format!(
                "by `{}`, {} row {}",
                o.command,
                o.results.display(),
                self.row
            ),
            None => format!("row {} of a run since forgotten", self.row),
        };
        match self.state {
            State::Created => format!(
                "{what}: created{} on {when}, {place}",
                self.id.map(|i| format!(" as id {i}")).unwrap_or_default()
            ),
            State::Unknown => format!(
                "{what}: sent on {when} with no answer, so it may exist (check DigiDesk), {place}"
            ),
            State::InFlight => format!(
                "{what}: claimed on {when} and its outcome never recorded (that run is still sending it, or stopped before the answer came), so it may exist (check DigiDesk), {place}"
            ),
        }
    }
}

/// A sent row's outcome, for [`Store::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// DigiDesk created it, with this id.
    Created(u64),
    /// It may have been created: it stays claimed, as `unknown`.
    Unknown,
    /// It was definitely not created (`rejected`, `failed`, not sent after
    /// all): the key is free again.
    Released,
}

/// One outcome to record.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub row: u64,
    pub key: KeyHash,
    pub contact: Option<ContactHash>,
    pub outcome: Outcome,
}

/// A `created` or `unknown` row of an existing results file, for `ledger import`.
#[derive(Debug, Clone, Copy)]
pub struct Imported {
    pub row: u64,
    pub key: KeyHash,
    pub contact: Option<ContactHash>,
    /// `Some(id)` or `None` for a created row without an id; see `created`.
    pub id: Option<u64>,
    /// `created` (else `unknown`).
    pub created: bool,
    /// When it was sent, as well as can be told.
    pub at: SystemTime,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Surveys the ledger did not know.
    pub added: u64,
    /// Surveys it knew as `unknown` or in flight, now `created`.
    pub upgraded: u64,
    /// Surveys it already knew.
    pub known: u64,
}

/// What `ledger stats` shows.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Where the ledger is.
    pub location: String,
    /// The file's size, its write-ahead log included.
    pub bytes: u64,
    pub format: i64,
    pub runs: u64,
    pub scopes: Vec<ScopeStats>,
}

/// One endpoint and username's surveys.
#[derive(Debug, Clone)]
pub struct ScopeStats {
    pub scope: Scope,
    pub created: u64,
    pub unknown: u64,
    pub in_flight: u64,
    pub runs: u64,
    pub oldest: Option<SystemTime>,
    pub newest: Option<SystemTime>,
}

impl Stats {
    pub fn surveys(&self) -> u64 {
        self.scopes
            .iter()
            .map(|s| s.created + s.unknown + s.in_flight)
            .sum()
    }
}

/// What `ledger forget` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub surveys: u64,
    pub runs: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Where the ledger lives: one SQLite file per machine user today, a shared
/// database later. The pipeline and the `ledger` command use only this.
pub trait Store: Send {
    /// Where it is, for messages.
    fn location(&self) -> String;

    /// Hashes keys and contacts with this ledger's secret.
    fn hasher(&self) -> &Hasher;

    /// Starts a run in `scope`, or with `info.resume` continues the latest
    /// one with the same results file and fingerprint.
    fn begin_run(&mut self, scope: &Scope, info: &RunInfo) -> Result<RunId, LedgerError>;

    /// Claims keys before their requests leave, all in one durable
    /// transaction (a group commit). Per claim, in order: `Claimed`, or the
    /// earlier survey that makes it a duplicate (an earlier claim in the same
    /// batch included). A key this run already claimed for the same row (a
    /// resumed run whose request never left) is claimed again.
    fn claim(
        &mut self,
        run: RunId,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError>;

    /// Records the outcomes of claimed rows, in one transaction.
    fn record(&mut self, run: RunId, outcomes: &[Recorded]) -> Result<(), LedgerError>;

    /// The claims of `run` that have no outcome recorded: rows in flight,
    /// or claimed and not sent yet, when it stopped. A resumed run records
    /// the outcome of those its results file has decided.
    fn in_flight(&mut self, run: RunId) -> Result<Vec<Claim>, LedgerError>;

    /// Records outcomes, then claims keys, as [`Store::record`] then
    /// [`Store::claim`] would; a store may do both in one transaction.
    fn settle(
        &mut self,
        run: RunId,
        policy: Policy,
        outcomes: &[Recorded],
        claims: &[Claim],
    ) -> Result<Vec<Verdict>, LedgerError> {
        if !outcomes.is_empty() {
            self.record(run, outcomes)?;
        }
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        self.claim(run, policy, claims)
    }

    /// Does a little of the store's housekeeping (a fold, for SQLite),
    /// when the run has nothing else for it; true while some is left. A
    /// failure is the store's to report: nothing depends on it.
    fn tidy(&mut self) -> bool {
        false
    }

    /// Marks a run finished (and finishes any housekeeping under way).
    fn end_run(&mut self, run: RunId) -> Result<(), LedgerError>;

    /// Looks keys (and contacts) up without claiming anything: what a send
    /// in `scope` would find, for `ledger check`.
    fn lookup(
        &mut self,
        scope: &Scope,
        policy: Policy,
        claims: &[Claim],
    ) -> Result<Vec<Option<Earlier>>, LedgerError>;

    /// Records surveys of an existing results file, in one transaction.
    fn import(&mut self, run: RunId, rows: &[Imported]) -> Result<ImportCounts, LedgerError>;

    fn stats(&mut self) -> Result<Stats, LedgerError>;

    /// Forgets every survey (and run) from before `before`.
    fn forget(&mut self, before: SystemTime) -> Result<Forgotten, LedgerError>;
}

/// The default ledger: `$XDG_STATE_HOME/digidesk-upload/ledger.sqlite3`,
/// else `~/.local/state/digidesk-upload/ledger.sqlite3`.
pub fn default_path() -> Result<PathBuf, LedgerError> {
    default_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn default_path_from(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, LedgerError> {
    // The XDG spec ignores a relative XDG_STATE_HOME.
    let state = match xdg_state_home.map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => match home.filter(|h| !h.is_empty()) {
            Some(home) => Path::new(&home).join(".local").join("state"),
            None => return Err(LedgerError::NoHome),
        },
    };
    Ok(state.join("digidesk-upload").join(FILE_NAME))
}

/// Which ledger a command uses: `--ledger FILE` (or `DIGIDESK_LEDGER`),
/// none with `--no-ledger`, else the default.
pub fn location(args: &crate::cli::LedgerArgs) -> Result<Option<PathBuf>, LedgerError> {
    if args.no_ledger {
        return Ok(None);
    }
    file(args.ledger.as_deref()).map(Some)
}

/// The ledger file: the one given, else the default.
pub fn file(given: Option<&Path>) -> Result<PathBuf, LedgerError> {
    match given {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => default_path(),
    }
}

/// Opens (creating it if need be) the ledger at `path`.
pub fn open(path: &Path) -> Result<Box<dyn Store>, LedgerError> {
    open_with(path, Options::default())
}

/// Like [`open`], with options (a larger cache for a command that looks up
/// every row of a large export).
pub fn open_with(path: &Path, options: Options) -> Result<Box<dyn Store>, LedgerError> {
    Ok(Box::new(Sqlite::open(path, options)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_follows_xdg_then_home() {
        let p = default_path_from(Some("/state".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/state/digidesk-upload/ledger.sqlite3"));
        let p = default_path_from(Some("relative".into()), Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            Path::new("/home/u/.local/state/digidesk-upload/ledger.sqlite3")
        );
        let p = default_path_from(None, Some("/home/u".into())).unwrap();
        assert_eq!(
            p,
            Path::new("/home/u/.local/state/digidesk-upload/ledger.sqlite3")
        );
        assert!(matches!(
            default_path_from(None, None),
            Err(LedgerError::NoHome)
        ));
    }

    #[test]
    fn reasons_say_what_when_and_where() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut e = Earlier {
            state: State::Created,
            id: Some(42),
            at,
            origin: Some(Arc::new(Origin {
                command: "send".into(),
                results: "/data/calls.results.csv".into(),
            })),
            row: 17,
            same_run: false,
            by_contact: false,
        };
        assert_eq!(
            e.reason(),
            "this survey was already sent: created as id 42 on 2023-11-14T22:13:20Z, by `send`, /data/calls.results.csv row 17"
        );
        e.state = State::InFlight;
        assert!(e.reason().contains("never recorded"), "{}", e.reason());
        assert!(e.reason().contains("row 17"), "{}", e.reason());
        e.same_run = true;
        e.by_contact = true;
        assert_eq!(
            e.reason(),
            "this customer_contact was already surveyed within contact_within in this run: row 17"
        );
    }
}
