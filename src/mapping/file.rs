//! The mapping file as written: plain structs read with serde. Every table
//! refuses keys it does not know (`deny_unknown_fields`), and spans are kept
//! so that the checks that follow can point at a line. Serde's own messages
//! are turned into ones that say what to write instead.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::error::{At, MappingError, Position};
use super::suggest;

/// The tables a mapping may have, in the order the documentation gives them.
pub(super) const TABLES: [&str; 7] = [
    "input",
    "fields",
    "contact",
    "misc_data",
    "skip",
    "dedupe",
    "extra",
];

/// Names and their values, with the span of each.
pub(super) type Entries = BTreeMap<Spanned<String>, Spanned<RawValue>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(default)]
    pub input: RawInput,
    #[serde(default)]
    pub fields: Entries,
    #[serde(default)]
    pub contact: RawContact,
    #[serde(default)]
    pub misc_data: RawMisc,
    #[serde(default)]
    pub skip: RawSkip,
    #[serde(default)]
    pub dedupe: RawDedupe,
    #[serde(default)]
    pub extra: Entries,
}

/// `[input]`: the export's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInput {
    pub delimiter: Option<Spanned<String>>,
    pub encoding: Option<Spanned<String>>,
    pub header: Option<bool>,
}

/// `[dedupe]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDedupe {
    pub key: Option<Spanned<String>>,
    pub contact_within: Option<Spanned<String>>,
}

/// `[contact]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContact {
    pub phone_region: Option<Spanned<String>>,
    pub own_numbers: Option<Vec<Spanned<String>>>,
}

/// `[misc_data]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMisc {
    #[serde(default)]
    pub columns: Vec<Spanned<String>>,
    #[serde(default)]
    pub unmapped: bool,
    #[serde(default)]
    pub rename: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    pub fields: Entries,
}

/// `[skip]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSkip {
    #[serde(default)]
    pub rules: Vec<Spanned<RawCondition>>,
    pub only: Option<Spanned<RawCondition>>,
}

/// A condition on a row: `{ column = "Opt Out", equals = ["Y", "Yes"] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    pub column: Option<Spanned<String>>,
    pub equals: Option<OneOrMany>,
    pub empty: Option<bool>,
    pub matches: Option<Spanned<String>>,
    pub less_than: Option<Number>,
    pub greater_than: Option<Number>,
    pub all: Option<Vec<Spanned<RawCondition>>>,
    pub any: Option<Vec<Spanned<RawCondition>>>,
    pub not: Option<Box<Spanned<RawCondition>>>,
}

/// `{ if = CONDITION, then = VALUE }`, a rule of `when`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "if")]
    pub condition: Spanned<RawCondition>,
    pub then: Spanned<RawValue>,
}

/// `time = { from = "%d.%m.%y", to = "%Y-%m-%d" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTime {
    pub from: String,
    pub to: String,
}

/// Where a value comes from: a column name, or a table.
#[derive(Debug)]
pub(super) enum RawValue {
    Column(String),
    Table(Box<ValueTable>),
}

/// `{ column | columns | value | template | when (+ else), extract, time, default }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValueTable {
    pub column: Option<String>,
    pub columns: Option<Vec<String>>,
    pub value: Option<String>,
    pub template: Option<String>,
    pub when: Option<Vec<Spanned<RawRule>>>,
    #[serde(rename = "else")]
    pub otherwise: Option<Spanned<RawValue>>,
    pub extract: Option<Spanned<String>>,
    pub time: Option<Spanned<RawTime>>,
    pub default: Option<String>,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name (\"Column\") or a table such as { value = \"...\" }, { template = \"...\" }, { column = \"...\", default = \"...\" }, { columns = [\"A\", \"B\"] }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawValue, E> {
                Ok(RawValue::Column(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue, A::Error> {
                ValueTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawValue::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number written as a TOML number (`10`, `2.5`), not in quotes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number such as 10 (without quotes)")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Number, E> {
                if n.is_finite() {
                    Ok(Number(n))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(n), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or a list of them.
#[derive(Debug, Clone)]
pub(super) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings such as [\"Y\", \"Yes\"]")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads the file's text into [`RawMapping`]; errors carry the line and column.
pub(super) fn read(text: &str, origin: &str) -> Result<RawMapping, MappingError> {
    let at = |e: &toml::de::Error| At(e.span().map(|s| Position::of(text, s.start)));
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(MappingError::File {
            origin: origin.to_string(),
            at: at(&e),
            message: format!("not valid TOML: {}", e.message().trim_end()),
            source: Some(Box::new(e)),
        });
    }
    toml::from_str::<RawMapping>(text).map_err(|e| {
        let place = e
            .span()
            .map(|s| place_of(text, s.start))
            .unwrap_or_default();
        MappingError::File {
            origin: origin.to_string(),
            at: at(&e),
            message: explain(e.message(), &place),
            source: Some(Box::new(e)),
        }
    })
}

/// Serde's message, said for a person: an unknown key gets the nearest known
/// one; other messages are prefixed with where they are (`[fields] name`).
fn explain(message: &str, place: &str) -> String {
    let message = message.trim_end();
    if let Some((name, expected)) = unknown_field(message) {
        if expected.iter().copied().eq(TABLES.iter().copied()) {
            let hint = suggest(name, TABLES.iter().copied())
                .map(|s| format!(" (did you mean [{s}]?)"))
                .unwrap_or_default();
            return format!(
                "unknown table [{name}]; a mapping has [input], [fields], [contact], [misc_data], [skip], [dedupe] and [extra]{hint}"
            );
        }
        let hint = suggest(name, expected.iter().copied())
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        let prefix = if place.is_empty() {
            String::new()
        } else {
            format!("{place}: ")
        };
        return format!(
            "{prefix}unknown key {name:?}; use one of {}{hint}",
            expected.join(", ")
        );
    }
    if place.is_empty() {
        message.to_string()
    } else {
        format!("{place}: {message}")
    }
}

/// The key and the expected keys of serde's "unknown field `x`, expected
/// one of `a`, `b`" message.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect::<Vec<&str>>();
    Some((name, expected))
}

/// Where byte `offset` is, in the file's words: the table and the key of
/// its line (`[fields] customer_name`), as far as the text shows it.
fn place_of(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut key = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[[") {
            if let Some(end) = trimmed.find(']') {
                table = format!("[{}]", trimmed[1..end].trim());
                key.clear();
            }
        } else if let Some((k, _)) = trimmed.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && !k.contains(['{', '[', ',']) {
                key = k.to_string();
            }
        }
        start += line.len();
        if start > offset {
            break;
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table} {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_taken_apart() {
        assert_eq!(
            unknown_field("unknown field `valu`, expected one of `column`, `value`"),
            Some(("valu", vec!["column", "value"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `rules`"),
            Some(("x", vec!["rules"]))
        );
        assert_eq!(unknown_field("invalid type"), None);
    }

    #[test]
    fn places_name_the_table_and_the_key() {
        let text =
            "[fields]\ncampaign_name = { valu = \"X\" }\n[skip]\nrules = [\n  { column = 1 },\n]\n";
        assert_eq!(place_of(text, 20), "[fields] campaign_name");
        assert_eq!(place_of(text, text.find("column").unwrap()), "[skip] rules");
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = read(
            "[fields]\ncustomer_contact = \"P\"\ncampaign_name = { valu = \"X\" }\n",
            "m.toml",
        )
        .unwrap_err();
        assert_eq!(e.position().map(|p| p.line), Some(3), "{e}");
        assert!(e.to_string().contains("did you mean value?"), "{e}");
        let e = read("[contact]\nphone_region = 44\n", "m.toml").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("m.toml: [contact] phone_region: "),
            "{text}"
        );
        assert!(text.ends_with(" (line 2, column 16)"), "{text}");
    }
}
