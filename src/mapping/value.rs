//! Values: where a field's value comes from (a column, the first non-empty
//! of several, a constant, a template, or a choice by conditions), what it
//! goes through (`extract`, `time`) and its default. `C` names a column: a
//! header name as the file says it, then an index once compiled.

use std::borrow::Cow;

use regex::Regex;

use super::condition::Condition;
use super::template::{self, Part};
use super::transform::{self, TimeFormat};

/// Where a value comes from, as the mapping file says it.
#[derive(Debug, Clone)]
pub(super) enum ValueSource<C> {
    /// `"Column"`, or `{ column = "Column" }`.
    Column(C),
    /// `{ columns = ["A", "B"] }`: the first non-empty.
    FirstOf(Vec<C>),
    /// `{ value = "text" }`.
    Constant(String),
    /// `{ template = "{First} {Last}" }`.
    Template(Vec<Part<C>>),
    /// `{ when = [ { if = .., then = .. }, .. ], else = .. }`: the first rule
    /// that holds gives the value.
    When(Box<When<C>>),
}

/// A choice of value by conditions.
#[derive(Debug, Clone)]
pub(super) struct When<C> {
    pub rules: Vec<(Condition<C>, ValueSpec<C>)>,
    /// `else`; without it, a row no rule holds for is invalid.
    pub otherwise: Option<ValueSpec<C>>,
    /// Every column the rules test, once each, with its name: the reason
    /// for a row no rule holds for shows their values.
    pub tested: Vec<(String, C)>,
}

/// A value: its source, what it goes through, and its default for an empty result.
#[derive(Debug, Clone)]
pub(super) struct ValueSpec<C> {
    pub source: ValueSource<C>,
    /// `extract`: a regular expression that takes part of the value.
    pub extract: Option<Regex>,
    /// `time`: re-writes a date or time.
    pub time: Option<TimeFormat>,
    pub default: Option<String>,
    /// The source in words (`column "Start"`), for reasons.
    pub label: String,
}

impl<C> ValueSpec<C> {
    /// A value straight from one column.
    pub fn column(name: String, c: C) -> ValueSpec<C> {
        ValueSpec {
            source: ValueSource::Column(c),
            extract: None,
            time: None,
            default: None,
            label: format!("column {name:?}"),
        }
    }

    /// Calls `f` with every column the value reads.
    pub fn visit(&self, f: &mut dyn FnMut(&C)) {
        match &self.source {
            ValueSource::Column(c) => f(c),
            ValueSource::FirstOf(cs) => cs.iter().for_each(f),
            ValueSource::Template(parts) => parts.iter().for_each(|p| {
                if let Part::Column(c) = p {
                    f(c)
                }
            }),
            ValueSource::Constant(_) => {}
            ValueSource::When(when) => {
                for (condition, value) in &when.rules {
                    condition.visit(f);
                    value.visit(f);
                }
                if let Some(v) = &when.otherwise {
                    v.visit(f);
                }
            }
        }
    }

    /// Calls `f` with every column a `when` condition in the value tests.
    pub fn visit_tested(&self, f: &mut dyn FnMut(&C)) {
        if let ValueSource::When(when) = &self.source {
            for (condition, value) in &when.rules {
                condition.visit(f);
                value.visit_tested(f);
            }
            if let Some(v) = &when.otherwise {
                v.visit_tested(f);
            }
        }
    }

    /// The same value with each column replaced by `f`'s answer.
    pub fn resolve<D>(&self, f: &mut dyn FnMut(&C) -> D) -> ValueSpec<D> {
        let source = match &self.source {
            ValueSource::Column(c) => ValueSource::Column(f(c)),
            ValueSource::FirstOf(cs) => ValueSource::FirstOf(cs.iter().map(&mut *f).collect()),
            ValueSource::Constant(v) => ValueSource::Constant(v.clone()),
            ValueSource::Template(parts) => ValueSource::Template(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => Part::Text(t.clone()),
                        Part::Column(c) => Part::Column(f(c)),
                    })
                    .collect(),
            ),
            ValueSource::When(when) => ValueSource::When(Box::new(When {
                rules: when
                    .rules
                    .iter()
                    .map(|(c, v)| (c.resolve(f), v.resolve(f)))
                    .collect(),
                otherwise: when.otherwise.as_ref().map(|v| v.resolve(f)),
                tested: when
                    .tested
                    .iter()
                    .map(|(name, c)| (name.clone(), f(c)))
                    .collect(),
            })),
        };
        ValueSpec {
            source,
            extract: self.extract.clone(),
            time: self.time.clone(),
            default: self.default.clone(),
            label: self.label.clone(),
        }
    }
}

impl ValueSpec<usize> {
    /// Like [`eval`](Self::eval), into `out` (emptied first): a template
    /// with nothing to go through is rendered there, with no string of its own.
    pub fn eval_into(&self, row: &csv::StringRecord, out: &mut String) -> Result<(), String> {
        out.clear();
        match &self.source {
            ValueSource::Template(parts) if self.extract.is_none() && self.time.is_none() => {
                template::render(parts, row, out);
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
                let start = out.len() - out.trim_start().len();
                out.drain(..start);
                if let (Some(d), true) = (&self.default, out.is_empty()) {
                    out.push_str(d.trim());
                }
            }
            _ => out.push_str(&self.eval(row)?),
        }
        Ok(())
    }

    /// The trimmed value for a row (through `extract` and `time`), or the
    /// default when it is empty; or why the row has no value here.
    pub fn eval<'r>(&'r self, row: &'r csv::StringRecord) -> Result<Cow<'r, str>, String> {
        let cell = |i: usize| super::cell(row, i);
        let mut value: Cow<str> = match &self.source {
            ValueSource::Column(i) => Cow::Borrowed(cell(*i)),
            ValueSource::FirstOf(is) => Cow::Borrowed(
                is.iter()
                    .map(|i| cell(*i))
                    .find(|v| !v.is_empty())
                    .unwrap_or(""),
            ),
            ValueSource::Constant(v) => Cow::Borrowed(v.trim()),
            ValueSource::Template(parts) => {
                let mut s = String::new();
                template::render(parts, row, &mut s);
                let trimmed = s.trim();
                if trimmed.len() == s.len() {
                    Cow::Owned(s)
                } else {
                    Cow::Owned(trimmed.to_string())
                }
            }
            ValueSource::When(when) => match when.rules.iter().find(|(c, _)| c.holds(row)) {
                Some((_, v)) => v.eval(row)?,
                None => match &when.otherwise {
                    Some(v) => v.eval(row)?,
                    None => {
                        let seen: Vec<String> = when
                            .tested
                            .iter()
                            .map(|(name, i)| format!("{name} = {:?}", cell(*i)))
                            .collect();
                        return Err(format!(
                            "no when rule holds and there is no else ({})",
                            seen.join(", ")
                        ));
                    }
                },
            },
        };
        if let Some(regex) = &self.extract {
            if !value.is_empty() {
                value = transform::extract(regex, value);
            }
        }
        if let Some(time) = &self.time {
            if !value.is_empty() {
                match time.reformat(&value) {
                    Some(v) => value = Cow::Owned(v),
                    None => {
                        return Err(format!(
                            "{value:?} in {} does not match the time pattern {:?}",
                            self.label, time.from
                        ))
                    }
                }
            }
        }
        Ok(match &self.default {
            Some(d) if value.is_empty() => Cow::Borrowed(d.trim()),
            _ => value,
        })
    }
}
