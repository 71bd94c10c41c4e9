//! Values: where a field's value comes from (a column, the first non-empty
//! of several, a constant, a template) and its default. `C` names a column:
//! a header name as the file says it, then an index once compiled.

use std::borrow::Cow;

use super::template::{self, Part};

/// Where a value comes from, as the mapping file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ValueSource<C> {
    /// `"Column"`, or `{ column = "Column" }`.
    Column(C),
    /// `{ columns = ["A", "B"] }`: the first non-empty.
    FirstOf(Vec<C>),
    /// `{ value = "text" }`.
    Constant(String),
    /// `{ template = "{First} {Last}" }`.
    Template(Vec<Part<C>>),
}

/// A value's source and its default for an empty result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ValueSpec<C> {
    pub source: ValueSource<C>,
    pub default: Option<String>,
}

impl<C> ValueSpec<C> {
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
        };
        ValueSpec {
            source,
            default: self.default.clone(),
        }
    }
}

impl ValueSpec<usize> {
    /// The trimmed value for a row, or the default when it is empty.
    pub fn eval<'r>(&'r self, row: &'r csv::StringRecord) -> Cow<'r, str> {
        let cell = |i: usize| row.get(i).unwrap_or("").trim();
        let value: Cow<str> = match &self.source {
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
        };
        match &self.default {
            Some(d) if value.is_empty() => Cow::Borrowed(d.trim()),
            _ => value,
        }
    }
}
