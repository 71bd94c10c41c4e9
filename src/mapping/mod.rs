//! Mapping: the TOML mapping file, read once (`file`: plain structs with
//! serde), checked (`semantic`: names, conditions, patterns compiled once),
//! then compiled against the input's header into a [`Plan`] of column indexes
//! that decides each row: a survey request, a skip, or why the row is invalid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use encoding_rs::Encoding;

use crate::contact::ContactRules;

mod condition;
mod error;
mod file;
mod plan;
mod semantic;
mod template;
mod transform;
mod value;

pub use error::{MappingError, Position};
pub use plan::{Decision, Plan, TestedColumn, Verdict};

use condition::Condition;
use template::Part;
use value::ValueSpec;

/// Cell `i` of a row as the mapping reads it: trimmed of spaces; a column
/// past the row's end is empty.
pub fn cell(row: &csv::StringRecord, i: usize) -> &str {
    let value = row.get(i).unwrap_or("");
    // Most cells start and end with a visible ASCII character: nothing to trim.
    match value.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => value,
        [only] if only.is_ascii_graphic() => value,
        _ => value.trim(),
    }
}

/// `[input]`: the export's shape, as the mapping says it. A command-line
/// option overrides the delimiter and the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputShape {
    /// `delimiter`, when given.
    pub delimiter: Option<u8>,
    /// `encoding`, when given (a byte-order mark still wins).
    pub encoding: Option<&'static Encoding>,
    /// `header = false`: the first line is data; columns are named `#1`, `#2`, ...
    pub header: bool,
}

impl Default for InputShape {
    fn default() -> Self {
        InputShape {
            delimiter: None,
            encoding: None,
            header: true,
        }
    }
}

/// `[dedupe]`: which rows are the same survey, and how often one customer
/// may be surveyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dedupe {
    /// `key`: a template; rows with the same key are the same survey
    /// (see [`Plan::dedupe_key`]).
    key: Option<Vec<Part<String>>>,
    /// `contact_within`: at most one survey per `customer_contact` in this window.
    pub contact_within: Option<Duration>,
}

impl Dedupe {
    /// Whether the mapping gives a `key`.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }
}

/// A `[skip]` rule or `only`.
#[derive(Debug, Clone)]
struct SkipRule {
    condition: Condition<String>,
    reason: SkipReason,
}

/// What a skipped row's reason says.
#[derive(Debug, Clone)]
enum SkipReason {
    /// `skipped by [skip]: Column = value`, for a rule that is one `equals`.
    Equals(String),
    /// The rule in words.
    Rule(String),
}

/// A checked mapping file, not yet fitted to an input's header.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// How errors name the file.
    origin: String,
    /// The file's bytes, as read: what a run's fingerprint is made of.
    bytes: Vec<u8>,
    /// `[input]`.
    input: InputShape,
    /// `[fields]`: DigiDesk field name -> where its value comes from.
    fields: BTreeMap<String, ValueSpec<String>>,
    /// `[contact]`: how `customer_contact` is normalised.
    contact: ContactRules,
    /// `[contact] own_numbers`, normalised: the company's own lines.
    own_numbers: Vec<String>,
    /// `[misc_data] columns`.
    misc_columns: Vec<String>,
    /// `[misc_data] unmapped`.
    misc_unmapped: bool,
    /// `[misc_data] rename`: column -> key shown in DigiDesk.
    misc_rename: BTreeMap<String, String>,
    /// `[misc_data.fields]`: key -> value.
    misc_fields: Vec<(String, ValueSpec<String>)>,
    /// `[skip] rules`.
    skip: Vec<SkipRule>,
    /// `[skip] only`.
    only: Option<SkipRule>,
    /// `[dedupe]`.
    dedupe: Dedupe,
    /// The line of each place that names columns (`[fields] customer_contact`),
    /// for errors found once the header is known.
    lines: BTreeMap<String, usize>,
    /// `[extra]`: custom top-level parameters, by name.
    extra: Vec<(String, ValueSpec<String>)>,
}

impl Mapping {
    /// Reads and checks a mapping file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let bytes = std::fs::read(path).map_err(|source| MappingError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Mapping::from_bytes(bytes, &path.display().to_string())
    }

    /// Checks mapping text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Mapping, MappingError> {
        Mapping::from_bytes(text.as_bytes().to_vec(), origin)
    }

    fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Mapping, MappingError> {
        let mut mapping = Mapping::from_text(&bytes, origin)?;
        mapping.bytes = bytes;
        Ok(mapping)
    }

    fn from_text(bytes: &[u8], origin: &str) -> Result<Mapping, MappingError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = Position::of(
                    &String::from_utf8_lossy(&bytes[..e.valid_up_to()]),
                    e.valid_up_to(),
                );
                return Err(MappingError::File {
                    origin: origin.to_string(),
                    at: error::At(Some(at)),
                    message: "the mapping file is not UTF-8 text; save it as UTF-8".into(),
                    source: Some(Box::new(e)),
                });
            }
        };
        let raw = file::read(text, origin)?;
        semantic::check(raw, text, origin)
    }

    /// The file's bytes as they were read, for fingerprinting the run.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How errors name the mapping file.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `[input]`: the export's shape.
    pub fn input(&self) -> &InputShape {
        &self.input
    }

    /// `[dedupe]`.
    pub fn dedupe(&self) -> &Dedupe {
        &self.dedupe
    }

    /// Every column the mapping names, with where it names it.
    fn columns_used(&self) -> Vec<(String, String)> {
        let mut used = Vec::new();
        for (k, v) in &self.fields {
            let place = format!("[fields] {k}");
            v.visit(&mut |c: &String| used.push((c.clone(), place.clone())));
        }
        for (k, v) in &self.extra {
            let place = format!("[extra] {k}");
            v.visit(&mut |c: &String| used.push((c.clone(), place.clone())));
        }
        for c in &self.misc_columns {
            used.push((c.clone(), "[misc_data] columns".into()));
        }
        for (k, v) in &self.misc_fields {
            let place = format!("[misc_data.fields] {k:?}");
            v.visit(&mut |c: &String| used.push((c.clone(), place.clone())));
        }
        for (i, r) in self.skip.iter().enumerate() {
            let place = format!("[skip] rule {}", i + 1);
            r.condition
                .visit(&mut |c: &String| used.push((c.clone(), place.clone())));
        }
        if let Some(only) = &self.only {
            only.condition
                .visit(&mut |c: &String| used.push((c.clone(), "[skip] only".into())));
        }
        for part in self.dedupe.key.iter().flatten() {
            if let Part::Column(c) = part {
                used.push((c.clone(), "[dedupe] key".into()));
            }
        }
        used
    }
}

impl Mapping {
    /// Every column a condition tests (`when`, `[skip] rules`, `[skip] only`),
    /// with where it is tested, in the file's order.
    fn columns_tested(&self) -> Vec<(String, String)> {
        let mut tested = Vec::new();
        let values = self
            .fields
            .iter()
            .map(|(k, v)| (format!("[fields] {k}"), v))
            .chain(self.extra.iter().map(|(k, v)| (format!("[extra] {k}"), v)))
            .chain(
                self.misc_fields
                    .iter()
                    .map(|(k, v)| (format!("[misc_data.fields] {k:?}"), v)),
            );
        for (place, v) in values {
            let place = format!("when in {place}");
            v.visit_tested(&mut |c: &String| tested.push((c.clone(), place.clone())));
        }
        let rules = self
            .skip
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("[skip] rule {}", i + 1), r));
        for (place, r) in rules.chain(self.only.iter().map(|r| ("[skip] only".to_string(), r))) {
            r.condition
                .visit(&mut |c: &String| tested.push((c.clone(), place.clone())));
        }
        tested
    }
}

/// The closest of `options` to `word`, if close enough to be a likely typo
/// (or one name contains the other, as "Phone" and "Mobile Phone").
pub fn suggest<'a>(word: &str, options: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| {
        s.to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
    };
    let w = norm(word);
    options
        .map(|o| {
            let n = norm(o);
            let contains = w.len() >= 3 && n.len() >= 3 && (n.contains(&w) || w.contains(&n));
            let score = strsim::jaro_winkler(&w, &n).max(if contains { 0.8 } else { 0.0 });
            (score, o)
        })
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests;
