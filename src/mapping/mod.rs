//! Mapping: the TOML mapping file, read once ([`file`], plain structs with
//! serde), checked ([`semantic`]), then compiled against the input's header
//! into a [`Plan`] of column indexes that decides each row: a survey request,
//! a skip, or the reasons the row is invalid.

use std::collections::BTreeMap;
use std::path::Path;

use crate::contact::ContactRules;

mod error;
mod file;
mod plan;
mod semantic;
mod template;
mod value;

pub use error::{MappingError, Position};
pub use plan::{Decision, Plan};

use value::ValueSpec;

/// A `[skip]` rule.
#[derive(Debug, Clone)]
struct SkipRule {
    column: String,
    /// Compared trimmed and case-insensitively: lower-cased here.
    equals: Vec<String>,
}

/// A checked mapping file, not yet fitted to an input's header.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// How errors name the file.
    origin: String,
    /// The file's bytes, as read: what a run's fingerprint is made of.
    bytes: Vec<u8>,
    /// `[fields]`: DigiDesk field name -> where its value comes from.
    fields: BTreeMap<String, ValueSpec<String>>,
    /// `[contact]`: how `customer_contact` is normalised.
    contact: ContactRules,
    /// `[misc_data] columns`.
    misc_columns: Vec<String>,
    /// `[misc_data] unmapped`.
    misc_unmapped: bool,
    /// `[misc_data] rename`: column -> key shown in DigiDesk.
    misc_rename: BTreeMap<String, String>,
    /// `[skip] rules`.
    skip: Vec<SkipRule>,
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
        for (i, r) in self.skip.iter().enumerate() {
            used.push((r.column.clone(), format!("[skip] rule {}", i + 1)));
        }
        used
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
