//! The checks serde cannot make: DigiDesk field names (with a "did you mean"),
//! required fields, one source per value, templates, conditions, regular
//! expressions and time patterns (compiled here, once), regions, renames, the
//! export's shape. Turns the file's [`RawMapping`] into a [`Mapping`].

use std::collections::BTreeMap;
use std::ops::Range;

use regex::Regex;
use toml::Spanned;

use super::condition::Condition;
use super::error::{MappingError, Position};
use super::file::{Entries, RawCondition, RawMapping, RawValue};
use super::template;
use super::transform::TimeFormat;
use super::value::{ValueSource, ValueSpec, When};
use super::{suggest, Dedupe, InputShape, Mapping, SkipReason, SkipRule};
use crate::contact::{self, ContactRules};
use crate::spec;

/// What a condition can be, for messages.
const CONDITION_FORMS: &str = "{ column = \"...\", equals = [\"...\"] }, { column, empty = true }, { column, matches = \"regex\" }, { column, less_than = N }, { column, greater_than = N }, { all = [..] }, { any = [..] } or { not = {..} }";

/// Errors of one file: each names the file and, where known, the line.
struct Check<'a> {
    text: &'a str,
    origin: &'a str,
    /// The line of each place that names columns.
    lines: std::cell::RefCell<BTreeMap<String, usize>>,
}

impl Check<'_> {
    fn error(&self, span: Option<Range<usize>>, message: String) -> MappingError {
        MappingError::at(
            self.origin,
            span.map(|s| Position::of(self.text, s.start)),
            message,
        )
    }

    /// Notes where `place` is, for errors found against the header.
    fn place(&self, place: &str, span: Range<usize>) {
        let line = Position::of(self.text, span.start).line;
        self.lines
            .borrow_mut()
            .entry(place.to_string())
            .or_insert(line);
    }

    fn err<T>(&self, span: Option<Range<usize>>, message: String) -> Result<T, MappingError> {
        Err(self.error(span, message))
    }

    /// A regular expression, compiled once for the run.
    fn regex(
        &self,
        pattern: &Spanned<String>,
        place: &str,
        key: &str,
    ) -> Result<Regex, MappingError> {
        Regex::new(pattern.as_ref()).map_err(|e| MappingError::File {
            origin: self.origin.to_string(),
            at: super::error::At(Some(Position::of(self.text, pattern.span().start))),
            message: format!(
                "{place}: {key} {:?} is not a regular expression ({}); write it in single quotes ('...') so backslashes stay as written",
                pattern.as_ref(),
                e.to_string().lines().last().unwrap_or("").trim().trim_start_matches("error: ")
            ),
            source: Some(Box::new(e)),
        })
    }

    /// Reads one value: a column, or a table with one source (`column`,
    /// `columns`, `value`, `template`, `when`) and optionally `extract`,
    /// `time`, `default`.
    fn value(
        &self,
        raw: &Spanned<RawValue>,
        place: &str,
    ) -> Result<ValueSpec<String>, MappingError> {
        let span = Some(raw.span());
        let table = match raw.as_ref() {
            RawValue::Column(c) => return Ok(ValueSpec::column(c.clone(), c.clone())),
            RawValue::Table(t) => t,
        };
        let mut sources = Vec::new();
        if let Some(c) = &table.column {
            sources.push((ValueSource::Column(c.clone()), format!("column {c:?}")));
        }
        if let Some(list) = &table.columns {
            if list.is_empty() {
                return self.err(
                    span,
                    format!("{place}: columns must be a non-empty list of column names"),
                );
            }
            let label = format!("columns {}", quoted(list));
            sources.push((ValueSource::FirstOf(list.clone()), label));
        }
        if let Some(v) = &table.value {
            sources.push((ValueSource::Constant(v.clone()), format!("value {v:?}")));
        }
        if let Some(t) = &table.template {
            match template::parse(t) {
                Ok(parts) => {
                    sources.push((ValueSource::Template(parts), format!("template {t:?}")))
                }
                Err(e) => return self.err(span, format!("{place}: template {t:?}: {e}")),
            }
        }
        if let Some(rules) = &table.when {
            if rules.is_empty() {
                return self.err(span, format!("{place}: when needs at least one rule: when = [ {{ if = {{ column = \"...\", equals = [\"...\"] }}, then = \"Column\" }} ]"));
            }
            let mut when = When {
                rules: Vec::new(),
                otherwise: None,
                tested: Vec::new(),
            };
            for (i, rule) in rules.iter().enumerate() {
                let rule = rule.as_ref();
                let condition =
                    self.condition(&rule.condition, &format!("{place} when rule {} if", i + 1))?;
                let then = self.value(&rule.then, &format!("{place} when rule {} then", i + 1))?;
                condition.visit(&mut |c: &String| {
                    if !when.tested.iter().any(|(n, _)| n == c) {
                        when.tested.push((c.clone(), c.clone()));
                    }
                });
                when.rules.push((condition, then));
            }
            if let Some(otherwise) = &table.otherwise {
                when.otherwise = Some(self.value(otherwise, &format!("{place} else"))?);
            }
            sources.push((
                ValueSource::When(Box::new(when)),
                "the value when chose".to_string(),
            ));
        } else if let Some(otherwise) = &table.otherwise {
            return self.err(Some(otherwise.span()), format!("{place}: else goes with when = [..]; for a value to use when the result is empty, write default = \"...\""));
        }
        let extract = match &table.extract {
            Some(pattern) => Some(self.regex(pattern, place, "extract")?),
            None => None,
        };
        let time = match &table.time {
            Some(t) => Some(
                TimeFormat::new(&t.as_ref().from, &t.as_ref().to)
                    .map_err(|e| self.error(Some(t.span()), format!("{place}: time {e}")))?,
            ),
            None => None,
        };
        match sources.len() {
            1 => {
                let (source, label) = sources.remove(0);
                Ok(ValueSpec {
                    source,
                    extract,
                    time,
                    default: table.default.clone(),
                    label,
                })
            }
            0 => self.err(
                span,
                format!("{place}: say where the value comes from: column, columns, value, template or when"),
            ),
            _ => self.err(
                span,
                format!("{place}: use only one of column, columns, value, template and when"),
            ),
        }
    }

    /// Reads one condition; what is wrong with it is said with what to write.
    fn condition(
        &self,
        raw: &Spanned<RawCondition>,
        place: &str,
    ) -> Result<Condition<String>, MappingError> {
        let span = Some(raw.span());
        let c = raw.as_ref();
        let mut tests = Vec::new();
        if let Some(values) = &c.equals {
            tests.push("equals");
            if values.0.is_empty() {
                return self.err(
                    span,
                    format!("{place}: equals needs at least one value: equals = [\"...\"]"),
                );
            }
        }
        if c.empty.is_some() {
            tests.push("empty");
        }
        if c.matches.is_some() {
            tests.push("matches");
        }
        if c.less_than.is_some() {
            tests.push("less_than");
        }
        if c.greater_than.is_some() {
            tests.push("greater_than");
        }
        let mut combined = Vec::new();
        if c.all.is_some() {
            combined.push("all");
        }
        if c.any.is_some() {
            combined.push("any");
        }
        if c.not.is_some() {
            combined.push("not");
        }
        if let Some(op) = combined.first() {
            if combined.len() > 1 || c.column.is_some() || !tests.is_empty() {
                return self.err(span, format!("{place}: {op} stands alone in its condition; write {{ {op} = .. }} and put the other tests inside it, e.g. {{ all = [ {{ column = \"A\", empty = false }}, {{ column = \"B\", less_than = 10 }} ] }}"));
            }
            let list = |conditions: &Vec<Spanned<RawCondition>>, op: &str| {
                if conditions.is_empty() {
                    return self.err(span.clone(), format!("{place}: {op} needs at least one condition: {op} = [ {{ column = \"...\", equals = [\"...\"] }} ]"));
                }
                conditions
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.condition(c, &format!("{place} {op} {}", i + 1)))
                    .collect::<Result<Vec<_>, _>>()
            };
            return Ok(match (&c.all, &c.any, &c.not) {
                (Some(all), _, _) => Condition::All(list(all, "all")?),
                (_, Some(any), _) => Condition::Any(list(any, "any")?),
                (_, _, Some(not)) => {
                    Condition::Not(Box::new(self.condition(not, &format!("{place} not"))?))
                }
                _ => unreachable!("one of all, any, not is set"),
            });
        }
        let Some(column) = &c.column else {
            return match tests.first() {
                Some(test) => self.err(span, format!("{place}: {test} needs the column it tests: {{ column = \"...\", {test} = .. }}")),
                None => self.err(span, format!("{place}: a condition is one of {CONDITION_FORMS}")),
            };
        };
        let column = column.as_ref().clone();
        if tests.len() != 1 {
            return self.err(span, match tests.len() {
                0 => format!("{place}: say what to test {column:?} for: equals = [\"...\"], empty = true, matches = \"regex\", less_than = N or greater_than = N"),
                _ => format!("{place}: one test per condition ({} here); combine tests with {{ all = [ {{..}}, {{..}} ] }}", tests.join(", ")),
            });
        }
        Ok(if let Some(values) = &c.equals {
            Condition::Equals {
                column,
                values: values.0.iter().map(|v| v.trim().to_lowercase()).collect(),
            }
        } else if let Some(empty) = c.empty {
            Condition::Empty { column, empty }
        } else if let Some(pattern) = &c.matches {
            Condition::Matches {
                column,
                regex: self.regex(pattern, place, "matches")?,
            }
        } else if let Some(than) = c.less_than {
            Condition::LessThan {
                column,
                than: than.0,
            }
        } else if let Some(than) = c.greater_than {
            Condition::GreaterThan {
                column,
                than: than.0,
            }
        } else {
            unreachable!("one test is set")
        })
    }

    fn fields(&self, raw: &Entries) -> Result<BTreeMap<String, ValueSpec<String>>, MappingError> {
        let mut fields = BTreeMap::new();
        for (key, value) in raw {
            let span = Some(key.span());
            match key.as_ref().as_str() {
                spec::MISC_DATA => {
                    return self.err(span, "[fields] misc_data: misc_data is built by the [misc_data] table (columns, unmapped, rename, fields)".into())
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
            self.place(&format!("[fields] {name}"), key.span());
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
            self.place(&format!("[extra] {key_text}"), key.span());
            extra.push((
                key_text.clone(),
                self.value(value, &format!("[extra] {key_text}"))?,
            ));
        }
        Ok(extra)
    }

    fn input(&self, raw: &super::file::RawInput) -> Result<InputShape, MappingError> {
        let mut shape = InputShape::default();
        if let Some(d) = &raw.delimiter {
            shape.delimiter = Some(match d.as_ref().as_str() {
                "tab" | "\\t" | "\t" => b'\t',
                s if s.len() == 1 && s.is_ascii() && !["\"", "\n", "\r"].contains(&s) => s.as_bytes()[0],
                s => return self.err(Some(d.span()), format!(
                    "[input] delimiter {s:?} must be one ASCII character such as \",\" \";\" \"|\" or the word \"tab\""
                )),
            });
        }
        if let Some(e) = &raw.encoding {
            shape.encoding = Some(encoding_rs::Encoding::for_label(e.as_ref().trim().as_bytes()).ok_or_else(|| {
                self.error(Some(e.span()), format!(
                    "[input] encoding {:?} is not an encoding I know; common ones: \"utf-8\", \"windows-1252\" (Excel on Windows), \"iso-8859-1\", \"utf-16le\"",
                    e.as_ref()
                ))
            })?);
        }
        if let Some(header) = raw.header {
            shape.header = header;
        }
        Ok(shape)
    }

    fn dedupe(&self, raw: &super::file::RawDedupe) -> Result<Dedupe, MappingError> {
        let mut dedupe = Dedupe::default();
        if let Some(key) = &raw.key {
            let parts = template::parse(key.as_ref()).map_err(|e| {
                self.error(
                    Some(key.span()),
                    format!(
                        "[dedupe] key {:?}: {e}; the key is a template such as \"{{Call ID}}\"",
                        key.as_ref()
                    ),
                )
            })?;
            self.place("[dedupe] key", key.span());
            dedupe.key = Some(parts);
        }
        if let Some(within) = &raw.contact_within {
            let d = humantime::parse_duration(within.as_ref().trim())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    self.error(Some(within.span()), format!(
                        "[dedupe] contact_within {:?} is not a duration; write a number and a unit such as \"30d\", \"12h\" or \"2w\"",
                        within.as_ref()
                    ))
                })?;
            dedupe.contact_within = Some(d);
        }
        Ok(dedupe)
    }
}

/// `"A", "B"`.
fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the file's content and builds the mapping.
pub(super) fn check(raw: RawMapping, text: &str, origin: &str) -> Result<Mapping, MappingError> {
    let c = Check {
        text,
        origin,
        lines: Default::default(),
    };
    let input = c.input(&raw.input)?;
    let fields = c.fields(&raw.fields)?;

    let mut region = None;
    if let Some(code) = &raw.contact.phone_region {
        region = Some(contact::parse_region(code.as_ref()).ok_or_else(|| {
            let hint = contact::region_hint(code.as_ref())
                .map(|r| format!("did you mean {r}? "))
                .unwrap_or_default();
            c.error(Some(code.span()), format!(
                "[contact] phone_region {:?} is not a region code; {hint}phone_region takes an ISO 3166 alpha-2 code such as GB, IE, US",
                code.as_ref()
            ))
        })?);
    }
    let rules = ContactRules::new(region);
    let mut own_numbers = Vec::new();
    for number in raw.contact.own_numbers.iter().flatten() {
        let e164 = rules.normalize(number.as_ref()).map_err(|_| {
            c.error(Some(number.span()), format!(
                "[contact] own_numbers {:?} is not a phone number{}; write it in international form such as \"+1 415 555 0100\"",
                number.as_ref(),
                if region.is_some() { " for phone_region" } else { "" }
            ))
        })?;
        own_numbers.push(e164);
    }

    let misc = &raw.misc_data;
    let misc_columns: Vec<String> = misc.columns.iter().map(|c| c.as_ref().clone()).collect();
    if let Some(first) = misc.columns.first() {
        c.place("[misc_data] columns", first.span());
    }
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
    let mut misc_fields = Vec::new();
    for (key, value) in &misc.fields {
        let key_text = key.as_ref();
        let clash = misc_columns
            .iter()
            .any(|col| misc_rename.get(col).unwrap_or(col) == key_text);
        if clash {
            return c.err(Some(key.span()), format!(
                "[misc_data.fields] {key_text:?}: misc_data already has this key from [misc_data] columns; give one of them another name (rename)"
            ));
        }
        c.place(&format!("[misc_data.fields] {key_text:?}"), key.span());
        misc_fields.push((
            key_text.clone(),
            c.value(value, &format!("[misc_data.fields] {key_text:?}"))?,
        ));
    }

    let mut skip = Vec::new();
    for (i, rule) in raw.skip.rules.iter().enumerate() {
        let place = format!("[skip] rule {}", i + 1);
        c.place(&place, rule.span());
        let condition = c.condition(rule, &place)?;
        // A plain `equals` rule keeps its short reason, with the cell's value.
        let reason = match &condition {
            Condition::Equals { column, .. } => SkipReason::Equals(column.clone()),
            other => SkipReason::Rule(format!("skipped by {place}: {}", other.describe())),
        };
        skip.push(SkipRule { condition, reason });
    }
    let only = match &raw.skip.only {
        Some(only) => {
            c.place("[skip] only", only.span());
            let condition = c.condition(only, "[skip] only")?;
            let reason = format!(
                "skipped by [skip] only: {} does not hold",
                condition.describe()
            );
            Some(SkipRule {
                condition,
                reason: SkipReason::Rule(reason),
            })
        }
        None => None,
    };

    let extra = c.extra(&raw.extra)?;
    let dedupe = c.dedupe(&raw.dedupe)?;
    Ok(Mapping {
        origin: origin.to_string(),
        bytes: Vec::new(),
        input,
        fields,
        contact: rules,
        own_numbers,
        misc_columns,
        misc_unmapped: misc.unmapped,
        misc_rename,
        misc_fields,
        skip,
        only,
        dedupe,
        extra,
        lines: c.lines.into_inner(),
    })
}
