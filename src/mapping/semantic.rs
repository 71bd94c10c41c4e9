//! The checks serde cannot make: DigiDesk field names (with a "did you mean"),
//! required fields, one source per value, templates, regions, renames. Turns
//! the file's [`RawMapping`] into a [`Mapping`].

use std::collections::BTreeMap;

use toml::Spanned;

use super::error::{MappingError, Position};
use super::file::{Entries, RawMapping, RawValue};
use super::template;
use super::value::{ValueSource, ValueSpec};
use super::{suggest, Mapping, SkipRule};
use crate::contact::{self, ContactRules};
use crate::spec;

/// Errors of one file: each names the file and, where known, the line.
struct Check<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Check<'_> {
    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: String,
    ) -> Result<T, MappingError> {
        Err(MappingError::at(
            self.origin,
            span.map(|s| Position::of(self.text, s.start)),
            message,
        ))
    }

    /// Reads one value source: a column, or one of `column`, `columns`,
    /// `value`, `template`, and optionally `default`.
    fn value(
        &self,
        raw: &Spanned<RawValue>,
        place: &str,
    ) -> Result<ValueSpec<String>, MappingError> {
        let span = Some(raw.span());
        let table = match raw.as_ref() {
            RawValue::Column(c) => {
                return Ok(ValueSpec {
                    source: ValueSource::Column(c.clone()),
                    default: None,
                })
            }
            RawValue::Table(t) => t,
        };
        let mut sources = Vec::new();
        if let Some(c) = &table.column {
            sources.push(ValueSource::Column(c.clone()));
        }
        if let Some(list) = &table.columns {
            if list.is_empty() {
                return self.err(
                    span,
                    format!("{place}: columns must be a non-empty list of column names"),
                );
            }
            sources.push(ValueSource::FirstOf(list.clone()));
        }
        if let Some(v) = &table.value {
            sources.push(ValueSource::Constant(v.clone()));
        }
        if let Some(t) = &table.template {
            match template::parse(t) {
                Ok(parts) => sources.push(ValueSource::Template(parts)),
                Err(e) => return self.err(span, format!("{place}: template {t:?}: {e}")),
            }
        }
        match sources.len() {
            1 => Ok(ValueSpec {
                source: sources.remove(0),
                default: table.default.clone(),
            }),
            0 => self.err(
                span,
                format!(
                    "{place}: say where the value comes from: column, columns, value or template"
                ),
            ),
            _ => self.err(
                span,
                format!("{place}: use only one of column, columns, value and template"),
            ),
        }
    }

    fn fields(&self, raw: &Entries) -> Result<BTreeMap<String, ValueSpec<String>>, MappingError> {
        let mut fields = BTreeMap::new();
        for (key, value) in raw {
            let span = Some(key.span());
            match key.as_ref().as_str() {
                spec::MISC_DATA => {
                    return self.err(span, "[fields] misc_data: misc_data is built by the [misc_data] table (columns, unmapped, rename)".into())
                }
                spec::FORMAT => {
                    return self.err(span, "[fields] format: the uploader always asks for JSON answers; remove it".into())
                }
                k if spec::STRING_FIELDS.contains(&k) => {}
                k => {
                    let hint = suggest(k, spec::STRING_FIELDS.iter().copied())
                        .map(|s| format!("did you mean {s}? "))
                        .unwrap_or_default();
                    return self.err(span, format!(
                        "[fields] {k}: not a DigiDesk field ({}); {hint}custom parameters agreed with DigiDesk go in [extra]",
                        spec::STRING_FIELDS.join(", ")
                    ));
                }
            }
            let name = key.as_ref().clone();
            let spec = self.value(value, &format!("[fields] {name}"))?;
            fields.insert(name, spec);
        }
        for required in spec::REQUIRED_FIELDS {
            if !fields.contains_key(required) {
                return self.err(None, format!(
                    "[fields] {required} is required: say which column (or constant) it comes from, e.g. {required} = \"Column name\""
                ));
            }
        }
        Ok(fields)
    }

    fn extra(&self, raw: &Entries) -> Result<Vec<(String, ValueSpec<String>)>, MappingError> {
        let mut extra = Vec::new();
        for (key, value) in raw {
            let key_text = key.as_ref();
            if spec::KNOWN_PARAMS.contains(&key_text.as_str()) {
                return self.err(Some(key.span()), format!(
                    "[extra] {key_text}: {key_text} is a DigiDesk field; map it in [fields] (or [misc_data]) instead"
                ));
            }
            extra.push((
                key_text.clone(),
                self.value(value, &format!("[extra] {key_text}"))?,
            ));
        }
        Ok(extra)
    }
}

/// Checks the file's content and builds the mapping.
pub(super) fn check(raw: RawMapping, text: &str, origin: &str) -> Result<Mapping, MappingError> {
    let c = Check { text, origin };
    let fields = c.fields(&raw.fields)?;

    let mut region = None;
    if let Some(code) = &raw.contact.phone_region {
        region = Some(contact::parse_region(code.as_ref()).ok_or_else(|| {
            MappingError::at(
                origin,
                Some(Position::of(text, code.span().start)),
                format!("[contact] phone_region {:?} is not a region code; use ISO 3166 alpha-2 such as GB, IE, US", code.as_ref()),
            )
        })?);
    }

    let misc = &raw.misc_data;
    let misc_columns: Vec<String> = misc.columns.iter().map(|c| c.as_ref().clone()).collect();
    let mut misc_rename = BTreeMap::new();
    for (col, to) in &misc.rename {
        if !misc.unmapped && !misc_columns.contains(col.as_ref()) {
            return c.err(Some(col.span()), format!(
                "[misc_data] rename {:?}: that column is not in [misc_data] columns; add it there, or set unmapped = true",
                col.as_ref()
            ));
        }
        misc_rename.insert(col.as_ref().clone(), to.clone());
    }

    let mut skip = Vec::new();
    for (i, rule) in raw.skip.rules.iter().enumerate() {
        let where_ = format!("[skip] rule {}", i + 1);
        let span = Some(rule.span());
        let Some(column) = &rule.as_ref().column else {
            return c.err(span, format!("{where_} needs column = \"...\""));
        };
        let Some(equals) = &rule.as_ref().equals else {
            return c.err(span, format!("{where_} needs equals = [\"...\"]"));
        };
        skip.push(SkipRule {
            column: column.as_ref().clone(),
            equals: equals.0.iter().map(|e| e.trim().to_lowercase()).collect(),
        });
    }

    let extra = c.extra(&raw.extra)?;
    Ok(Mapping {
        origin: origin.to_string(),
        bytes: Vec::new(),
        fields,
        contact: ContactRules::new(region),
        misc_columns,
        misc_unmapped: misc.unmapped,
        misc_rename,
        skip,
        extra,
    })
}
