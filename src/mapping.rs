//! Mapping: the TOML mapping file, compiled once against the input's header
//! into a plan of column indexes, then applied to each row to give a survey
//! request, a skip, or the reasons the row is invalid.

use std::collections::BTreeMap;
use std::path::Path;

use crate::contact::{self, ContactRules};
use crate::exit::Fatal;
use crate::request::SurveyRequest;
use crate::results::is_result_column;
use crate::spec;

/// Where a value comes from, as the mapping file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `"Column"`, or `{ column = "Column" }`.
    Column(String),
    /// `{ columns = ["A", "B"] }`: the first non-empty.
    Columns(Vec<String>),
    /// `{ value = "text" }`.
    Value(String),
    /// `{ template = "{First} {Last}" }`.
    Template(Vec<Part>),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

/// A value's source and its default for an empty result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ValueSpec {
    source: Source,
    default: Option<String>,
}

/// A `[skip]` rule.
#[derive(Debug, Clone)]
struct SkipRule {
    column: String,
    /// Compared trimmed and case-insensitively.
    equals: Vec<String>,
}

/// A parsed, not yet compiled, mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    origin: String,
    /// `[fields]`: DigiDesk field name -> where its value comes from.
    fields: BTreeMap<String, ValueSpec>,
    region: Option<contact::Region>,
    misc_columns: Vec<String>,
    misc_unmapped: bool,
    misc_rename: BTreeMap<String, String>,
    skip: Vec<SkipRule>,
    extra: BTreeMap<String, ValueSpec>,
}

const TABLES: [&str; 5] = ["fields", "contact", "misc_data", "skip", "extra"];
const VALUE_KEYS: [&str; 5] = ["column", "columns", "value", "template", "default"];

impl Mapping {
    /// Reads and parses a mapping file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Mapping, Fatal> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Fatal::usage(format!(
                "cannot read the mapping file {}: {e}",
                path.display()
            ))
        })?;
        Mapping::parse(&text, &path.display().to_string())
    }

    /// Parses mapping text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Mapping, Fatal> {
        let err = |msg: String| Fatal::usage(format!("{origin}: {msg}"));
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            err(format!("not valid TOML: {}", e.to_string().trim_end()))
        })?;
        for key in table.keys() {
            if !TABLES.contains(&key.as_str()) {
                return Err(err(format!(
                    "unknown table [{key}]; a mapping has [fields], [contact], [misc_data], [skip] and [extra]{}",
                    suggest(key, TABLES.iter().copied()).map(|s| format!(" (did you mean [{s}]?)")).unwrap_or_default()
                )));
            }
        }
        let sub = |name: &str| -> Result<toml::Table, Fatal> {
            match table.get(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t.clone()),
                Some(_) => Err(err(format!("[{name}] must be a table"))),
            }
        };

        // [fields]
        let mut fields = BTreeMap::new();
        for (key, value) in sub("fields")? {
            match key.as_str() {
                spec::MISC_DATA => {
                    return Err(err("[fields] misc_data: misc_data is built by the [misc_data] table (columns, unmapped, rename)".into()))
                }
                spec::FORMAT => {
                    return Err(err("[fields] format: the uploader always asks for JSON answers; remove it".into()))
                }
                k if spec::STRING_FIELDS.contains(&k) => {}
                k => {
                    let hint = suggest(k, spec::STRING_FIELDS.iter().copied())
                        .map(|s| format!("did you mean {s}? "))
                        .unwrap_or_default();
                    return Err(err(format!(
                        "[fields] {k}: not a DigiDesk field ({}); {hint}custom parameters agreed with DigiDesk go in [extra]",
                        spec::STRING_FIELDS.join(", ")
                    )));
                }
            }
            fields.insert(
                key.clone(),
                value_spec(&value, &format!("[fields] {key}")).map_err(err)?,
            );
        }
        for required in spec::REQUIRED_FIELDS {
            if !fields.contains_key(required) {
                return Err(err(format!(
                    "[fields] {required} is required: say which column (or constant) it comes from, e.g. {required} = \"Column name\""
                )));
            }
        }

        // [contact]
        let mut region = None;
        for (key, value) in sub("contact")? {
            match (key.as_str(), value) {
                ("phone_region", toml::Value::String(code)) => {
                    region = Some(contact::parse_region(&code).ok_or_else(|| {
                        let hint = contact::region_hint(&code)
                            .map(|r| format!("did you mean {r}? "))
                            .unwrap_or_default();
                        err(format!("[contact] phone_region {code:?} is not a region code; {hint}phone_region takes an ISO 3166 alpha-2 code such as GB, IE, US"))
                    })?);
                }
                ("phone_region", _) => {
                    return Err(err(
                        "[contact] phone_region must be a string such as \"GB\"".into(),
                    ))
                }
                (k, _) => {
                    return Err(err(format!(
                        "[contact] {k}: unknown key; [contact] has phone_region"
                    )))
                }
            }
        }

        // [misc_data]
        let (mut misc_columns, mut misc_unmapped, mut misc_rename) =
            (Vec::new(), false, BTreeMap::new());
        for (key, value) in sub("misc_data")? {
            match key.as_str() {
                "columns" => {
                    misc_columns = string_list(&value).ok_or_else(|| {
                        err("[misc_data] columns must be a list of column names".into())
                    })?
                }
                "unmapped" => {
                    misc_unmapped = value
                        .as_bool()
                        .ok_or_else(|| err("[misc_data] unmapped must be true or false".into()))?
                }
                "rename" => {
                    let t = value.as_table().ok_or_else(|| {
                        err("[misc_data] rename must be a table: { \"Column\" = \"Key\" }".into())
                    })?;
                    for (col, to) in t {
                        let to = to.as_str().ok_or_else(|| {
                            err(format!("[misc_data] rename {col:?} must be a string"))
                        })?;
                        misc_rename.insert(col.clone(), to.to_string());
                    }
                }
                k => {
                    return Err(err(format!(
                    "[misc_data] {k}: unknown key; [misc_data] has columns, unmapped and rename"
                )))
                }
            }
        }
        for col in misc_rename.keys() {
            if !misc_unmapped && !misc_columns.contains(col) {
                return Err(err(format!(
                    "[misc_data] rename {col:?}: that column is not in [misc_data] columns; add it there, or set unmapped = true"
                )));
            }
        }

        // [skip]
        let mut skip = Vec::new();
        for (key, value) in sub("skip")? {
            if key != "rules" {
                return Err(err(format!("[skip] {key}: unknown key; [skip] has rules = [{{ column = \"...\", equals = [\"...\"] }}]")));
            }
            let rules = value
                .as_array()
                .ok_or_else(|| err("[skip] rules must be a list of { column, equals }".into()))?;
            for (i, rule) in rules.iter().enumerate() {
                let where_ = format!("[skip] rule {}", i + 1);
                let t = rule.as_table().ok_or_else(|| {
                    err(format!(
                        "{where_} must be {{ column = \"...\", equals = [\"...\"] }}"
                    ))
                })?;
                let mut column = None;
                let mut equals = None;
                for (k, v) in t {
                    match k.as_str() {
                        "column" => column = v.as_str().map(str::to_string),
                        "equals" => {
                            equals =
                                string_list(v).or_else(|| v.as_str().map(|s| vec![s.to_string()]))
                        }
                        other => {
                            return Err(err(format!(
                                "{where_}: unknown key {other:?}; a rule has column and equals"
                            )))
                        }
                    }
                }
                let column =
                    column.ok_or_else(|| err(format!("{where_} needs column = \"...\"")))?;
                let equals =
                    equals.ok_or_else(|| err(format!("{where_} needs equals = [\"...\"]")))?;
                skip.push(SkipRule {
                    column,
                    equals: equals.iter().map(|e| e.trim().to_lowercase()).collect(),
                });
            }
        }

        // [extra]
        let mut extra = BTreeMap::new();
        for (key, value) in sub("extra")? {
            if spec::KNOWN_PARAMS.contains(&key.as_str()) {
                return Err(err(format!(
                    "[extra] {key}: {key} is a DigiDesk field; map it in [fields] (or [misc_data]) instead"
                )));
            }
            extra.insert(
                key.clone(),
                value_spec(&value, &format!("[extra] {key}")).map_err(err)?,
            );
        }

        Ok(Mapping {
            origin: origin.to_string(),
            fields,
            region,
            misc_columns,
            misc_unmapped,
            misc_rename,
            skip,
            extra,
        })
    }

    /// Every column the mapping names, with where it names it.
    fn columns_used(&self) -> Vec<(String, String)> {
        let mut used = Vec::new();
        let mut from_spec = |spec: &ValueSpec, place: String| match &spec.source {
            Source::Column(c) => used.push((c.clone(), place)),
            Source::Columns(cs) => used.extend(cs.iter().map(|c| (c.clone(), place.clone()))),
            Source::Template(parts) => used.extend(parts.iter().filter_map(|p| match p {
                Part::Column(c) => Some((c.clone(), place.clone())),
                Part::Text(_) => None,
            })),
            Source::Value(_) => {}
        };
        for (k, v) in &self.fields {
            from_spec(v, format!("[fields] {k}"));
        }
        for (k, v) in &self.extra {
            from_spec(v, format!("[extra] {k}"));
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

/// Reads one value source: a string (a column), or a table with one of
/// `column`, `columns`, `value`, `template`, and optionally `default`.
fn value_spec(value: &toml::Value, place: &str) -> Result<ValueSpec, String> {
    let table = match value {
        toml::Value::String(col) => return Ok(ValueSpec { source: Source::Column(col.clone()), default: None }),
        toml::Value::Table(t) => t,
        _ => {
            return Err(format!(
                "{place}: expected a column name (\"Column\") or a table such as {{ value = \"...\" }}, {{ template = \"...\" }}, {{ column = \"...\", default = \"...\" }}, {{ columns = [\"A\", \"B\"] }}"
            ))
        }
    };
    for k in table.keys() {
        if !VALUE_KEYS.contains(&k.as_str()) {
            return Err(format!(
                "{place}: unknown key {k:?}; use one of column, columns, value, template (and default){}",
                suggest(k, VALUE_KEYS.iter().copied()).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
            ));
        }
    }
    let text = |k: &str| -> Result<Option<String>, String> {
        match table.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{place}: {k} must be a string")),
        }
    };
    let mut sources = Vec::new();
    if let Some(c) = text("column")? {
        sources.push(Source::Column(c));
    }
    if let Some(v) = table.get("columns") {
        let list = string_list(v)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("{place}: columns must be a non-empty list of column names"))?;
        sources.push(Source::Columns(list));
    }
    if let Some(v) = text("value")? {
        sources.push(Source::Value(v));
    }
    if let Some(t) = text("template")? {
        sources.push(Source::Template(
            parse_template(&t).map_err(|e| format!("{place}: template {t:?}: {e}"))?,
        ));
    }
    let default = text("default")?;
    match sources.len() {
        1 => Ok(ValueSpec {
            source: sources.remove(0),
            default,
        }),
        0 => Err(format!(
            "{place}: say where the value comes from: column, columns, value or template"
        )),
        _ => Err(format!(
            "{place}: use only one of column, columns, value and template"
        )),
    }
}

/// Splits `"{First} {Last}"` into text and columns; `{{` and `}}` are braces.
fn parse_template(t: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') => {
                            return Err(
                                "a '{' inside a column name; write {{ for a literal brace".into()
                            )
                        }
                        Some(ch) => name.push(ch),
                        None => {
                            return Err("a '{' is never closed; write {{ for a literal brace".into())
                        }
                    }
                }
                if name.trim().is_empty() {
                    return Err("an empty {} names no column".into());
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Column(name.trim().to_string()));
            }
            '}' => return Err("a '}' with no '{'; write }} for a literal brace".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
        return Err("it names no {column}; use { value = \"...\" } for a constant".into());
    }
    Ok(parts)
}

fn string_list(v: &toml::Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
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

/// What the mapping made of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// A valid survey request, ready to send.
    Send(SurveyRequest),
    /// The row matched a `[skip]` rule; the string says which.
    Skip(String),
    /// The row cannot be sent; one reason per problem, each naming the field or column.
    Invalid(Vec<String>),
}

/// A value source resolved to column indexes.
#[derive(Debug, Clone)]
enum Compiled {
    Column(usize),
    Columns(Vec<usize>),
    Value(String),
    Template(Vec<CompiledPart>),
}

#[derive(Debug, Clone)]
enum CompiledPart {
    Text(String),
    Column(usize),
}

#[derive(Debug, Clone)]
struct CompiledValue {
    source: Compiled,
    default: Option<String>,
}

impl CompiledValue {
    /// The trimmed value for a row, or the default when it is empty.
    fn eval(&self, row: &csv::StringRecord) -> String {
        let cell = |i: usize| row.get(i).unwrap_or("").trim();
        let value = match &self.source {
            Compiled::Column(i) => cell(*i).to_string(),
            Compiled::Columns(is) => is
                .iter()
                .map(|i| cell(*i))
                .find(|v| !v.is_empty())
                .unwrap_or("")
                .to_string(),
            Compiled::Value(v) => v.trim().to_string(),
            Compiled::Template(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        CompiledPart::Text(t) => s.push_str(t),
                        CompiledPart::Column(i) => s.push_str(cell(*i)),
                    }
                }
                let trimmed = s.trim();
                if trimmed.len() == s.len() {
                    s
                } else {
                    trimmed.to_string()
                }
            }
        };
        match (&self.default, value.is_empty()) {
            (Some(d), true) => d.trim().to_string(),
            _ => value,
        }
    }
}

/// A mapping compiled against one header.
#[derive(Debug, Clone)]
pub struct Plan {
    contact: CompiledValue,
    campaign: CompiledValue,
    name: Option<CompiledValue>,
    account: Option<CompiledValue>,
    agent: Option<CompiledValue>,
    rules: ContactRules,
    /// `misc_data` key and column, in order.
    misc: Vec<(String, usize)>,
    /// Column, lower-cased values, and the rule in words.
    skip: Vec<(usize, Vec<String>, String)>,
    extra: Vec<(String, CompiledValue)>,
}

impl Plan {
    /// Checks the mapping against the header: a column the input lacks stops
    /// here, naming it, listing the headers and suggesting the closest one.
    pub fn compile(mapping: &Mapping, headers: &[String], input_name: &str) -> Result<Plan, Fatal> {
        let origin = &mapping.origin;
        let index_of = |name: &str| headers.iter().position(|h| h == name);
        if let [only] = headers {
            if let Some(d) = [';', '\t', '|'].into_iter().find(|d| only.contains(*d)) {
                let flag = if d == '\t' {
                    "tab".to_string()
                } else {
                    format!("'{d}'")
                };
                return Err(Fatal::usage(format!(
                    "{input_name} reads as a single column whose name contains {flag}: it is probably {flag}-delimited; try --delimiter {flag}"
                )));
            }
        }
        let mut problems = Vec::new();
        for (col, place) in mapping.columns_used() {
            if is_result_column(&col) {
                problems.push(format!(
                    "{place} names {col:?}, a column that digidesk-upload writes; results columns are never mapped"
                ));
                continue;
            }
            let count = headers.iter().filter(|h| **h == col).count();
            if count == 0 {
                let hint = suggest(&col, headers.iter().map(String::as_str))
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{place} uses column {col:?}, which {input_name} does not have{hint}"
                ));
            } else if count > 1 {
                problems.push(format!("{place} uses column {col:?}, which {input_name} has {count} times: rename one in the export"));
            }
        }
        if !problems.is_empty() {
            let listed: Vec<String> = headers.iter().map(|h| format!("{h:?}")).collect();
            return Err(Fatal::usage(format!(
                "{origin}: the mapping does not fit the input:\n  - {}\n  {input_name} has these columns: {}",
                problems.join("\n  - "),
                listed.join(", ")
            )));
        }
        // Every name below was found just above.
        let idx = |name: &str| index_of(name).expect("column checked above");
        let compile = |v: &ValueSpec| CompiledValue {
            source: match &v.source {
                Source::Column(c) => Compiled::Column(idx(c)),
                Source::Columns(cs) => Compiled::Columns(cs.iter().map(|c| idx(c)).collect()),
                Source::Value(s) => Compiled::Value(s.clone()),
                Source::Template(parts) => Compiled::Template(
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => CompiledPart::Text(t.clone()),
                            Part::Column(c) => CompiledPart::Column(idx(c)),
                        })
                        .collect(),
                ),
            },
            default: v.default.clone(),
        };
        let field = |name: &str| mapping.fields.get(name).map(compile);
        let mut misc: Vec<(String, usize)> = Vec::new();
        let key_for = |col: &str| {
            mapping
                .misc_rename
                .get(col)
                .cloned()
                .unwrap_or_else(|| col.to_string())
        };
        for c in &mapping.misc_columns {
            if !misc.iter().any(|(_, i)| *i == idx(c)) {
                misc.push((key_for(c), idx(c)));
            }
        }
        if mapping.misc_unmapped {
            let used: Vec<String> = mapping.columns_used().into_iter().map(|(c, _)| c).collect();
            for (i, h) in headers.iter().enumerate() {
                if h.is_empty()
                    || is_result_column(h)
                    || used.contains(h)
                    || misc.iter().any(|(_, j)| *j == i)
                {
                    continue;
                }
                misc.push((key_for(h), i));
            }
        }
        if let Some(col) = mapping.misc_rename.keys().find(|c| {
            mapping.misc_unmapped && !misc.iter().any(|(_, i)| headers.get(*i) == Some(c))
        }) {
            return Err(Fatal::usage(format!(
                "{origin}: [misc_data] rename {col:?}: {input_name} has no such column among those that go to misc_data"
            )));
        }
        if misc.len() > spec::MAX_MISC_ENTRIES {
            tracing::warn!(
                "{origin}: [misc_data] takes {} columns; a row with more than {} non-empty ones will be invalid",
                misc.len(),
                spec::MAX_MISC_ENTRIES
            );
        }
        Ok(Plan {
            contact: field(spec::CUSTOMER_CONTACT).expect("required field checked at parse"),
            campaign: field(spec::CAMPAIGN_NAME).expect("required field checked at parse"),
            name: field(spec::CUSTOMER_NAME),
            account: field(spec::ACCOUNT_NUMBER),
            agent: field(spec::AGENT_NAME),
            rules: ContactRules::new(mapping.region),
            misc,
            skip: mapping
                .skip
                .iter()
                .map(|r| (idx(&r.column), r.equals.clone(), r.column.clone()))
                .collect(),
            extra: mapping
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), compile(v)))
                .collect(),
        })
    }

    /// Maps and validates one row whose fields line up with the header.
    pub fn apply(&self, row: &csv::StringRecord) -> Mapped {
        for (col, values, name) in &self.skip {
            let cell = row.get(*col).unwrap_or("").trim();
            if values.iter().any(|v| {
                v.eq_ignore_ascii_case(cell) || !cell.is_ascii() && *v == cell.to_lowercase()
            }) {
                return Mapped::Skip(format!("skipped by [skip]: {name} = {cell}"));
            }
        }
        let mut reasons = Vec::new();
        let raw_contact = self.contact.eval(row);
        let customer_contact = if raw_contact.is_empty() {
            raw_contact
        } else {
            match self.rules.normalize(&raw_contact) {
                Ok(c) => c,
                Err(reason) => {
                    reasons.push(reason);
                    raw_contact
                }
            }
        };
        let optional =
            |v: &Option<CompiledValue>| v.as_ref().map(|v| v.eval(row)).filter(|s| !s.is_empty());
        let req = SurveyRequest {
            customer_contact,
            campaign_name: self.campaign.eval(row),
            customer_name: optional(&self.name),
            account_number: optional(&self.account),
            agent_name: optional(&self.agent),
            misc_data: self
                .misc
                .iter()
                .filter_map(|(k, i)| {
                    let v = row.get(*i).unwrap_or("").trim();
                    (!v.is_empty()).then(|| (k.clone(), v.to_string()))
                })
                .collect(),
            extra: self
                .extra
                .iter()
                .filter_map(|(k, v)| {
                    let v = v.eval(row);
                    (!v.is_empty()).then(|| (k.clone(), v))
                })
                .collect(),
        };
        reasons.extend(crate::validate::validate(&req));
        if reasons.is_empty() {
            Mapped::Send(req)
        } else {
            Mapped::Invalid(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: [&str; 9] = [
        "Phone", "First", "Last", "Account", "Agent", "Owner", "Reason", "Queue", "Opt Out",
    ];

    fn plan(toml: &str) -> Result<Plan, Fatal> {
        let headers: Vec<String> = HEADERS.iter().map(|s| s.to_string()).collect();
        Plan::compile(&Mapping::parse(toml, "m.toml")?, &headers, "in.csv")
    }

    fn row(cells: [&str; 9]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    const FULL: &str = r#"
[fields]
customer_contact = "Phone"
campaign_name = { value = "Post-call survey" }
customer_name = { template = "{First} {Last}" }
account_number = { column = "Account", default = "none" }
agent_name = { columns = ["Agent", "Owner"] }
[contact]
phone_region = "GB"
[misc_data]
columns = ["Reason", "Queue"]
rename = { "Reason" = "Contact Reason" }
[skip]
rules = [{ column = "Opt Out", equals = ["Y", "Yes"] }]
[extra]
source = { value = "crm-nightly" }
"#;

    fn send(m: Mapped) -> SurveyRequest {
        match m {
            Mapped::Send(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn every_construct_maps() {
        let p = plan(FULL).unwrap();
        let r = send(p.apply(&row([
            "07911 123456",
            " Zoë ",
            "Smith",
            "",
            "",
            "Owner O",
            "Billing",
            "",
            "n",
        ])));
        assert_eq!(r.customer_contact, "+447911123456");
        assert_eq!(r.campaign_name, "Post-call survey");
        assert_eq!(r.customer_name.as_deref(), Some("Zoë Smith"));
        assert_eq!(
            r.account_number.as_deref(),
            Some("none"),
            "default when empty"
        );
        assert_eq!(r.agent_name.as_deref(), Some("Owner O"), "first non-empty");
        assert_eq!(
            r.misc_data,
            vec![("Contact Reason".to_string(), "Billing".to_string())],
            "empty Queue left out"
        );
        assert_eq!(
            r.extra,
            vec![("source".to_string(), "crm-nightly".to_string())]
        );
    }

    #[test]
    fn skip_rules_match_trimmed_and_case_insensitively_before_validation() {
        let p = plan(FULL).unwrap();
        assert_eq!(
            p.apply(&row(["", "", "", "", "", "", "", "", " yes "])),
            Mapped::Skip("skipped by [skip]: Opt Out = yes".into())
        );
    }

    #[test]
    fn invalid_rows_give_every_reason() {
        let p = plan(FULL).unwrap();
        match p.apply(&row([
            "12345",
            "",
            "",
            &"x".repeat(251),
            "",
            "",
            "",
            "",
            "",
        ])) {
            Mapped::Invalid(reasons) => {
                assert_eq!(reasons.len(), 2, "{reasons:?}");
                assert!(
                    reasons[0].starts_with(
                        "customer_contact \"12345\" is not a valid phone number for region GB"
                    ),
                    "{reasons:?}"
                );
                assert_eq!(
                    reasons[1],
                    "account_number is 251 characters; at most 250 are allowed"
                );
            }
            other => panic!("{other:?}"),
        }
        match p.apply(&row(["", "", "", "", "", "", "", "", ""])) {
            Mapped::Invalid(reasons) => {
                assert_eq!(reasons, vec!["customer_contact is required but empty"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unmapped_takes_every_column_no_rule_uses() {
        let p = plan(&FULL.replace(
            "columns = [\"Reason\", \"Queue\"]",
            "columns = [\"Reason\"]\nunmapped = true",
        ))
        .unwrap();
        let r = send(p.apply(&row([
            "07911 123456",
            "Zoë",
            "S",
            "A",
            "Ag",
            "Ow",
            "Billing",
            "Q1",
            "n",
        ])));
        assert_eq!(
            r.misc_data,
            vec![
                ("Contact Reason".to_string(), "Billing".to_string()),
                ("Queue".to_string(), "Q1".to_string())
            ]
        );
    }

    #[test]
    fn templates_escape_braces_and_reject_mistakes() {
        assert_eq!(
            parse_template("{{x}} {A}!").unwrap(),
            vec![
                Part::Text("{x} ".into()),
                Part::Column("A".into()),
                Part::Text("!".into())
            ]
        );
        assert!(parse_template("{A").unwrap_err().contains("never closed"));
        assert!(parse_template("A}").is_err());
        assert!(parse_template("no columns").is_err());
    }

    #[test]
    fn a_missing_column_names_it_lists_headers_and_suggests() {
        let e = plan(
            &FULL
                .replace(
                    "customer_contact = \"Phone\"",
                    "customer_contact = \"phone \"",
                )
                .replace("\"Queue\"]", "\"Queu\"]"),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("[fields] customer_contact uses column \"phone \""),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("did you mean \"Phone\"?"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("\"Queu\""),
            "every missing column at once: {}",
            e.message
        );
        assert!(
            e.message.contains("\"Opt Out\""),
            "lists the headers: {}",
            e.message
        );
    }

    #[test]
    fn mapping_mistakes_are_explained() {
        let cases = [
            ("[fields]\ncustomer_contact = \"Phone\"\n", "campaign_name is required"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\ncustomer_nam = \"First\"\n", "did you mean customer_name?"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\nmisc_data = \"Reason\"\n", "[misc_data] table"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { valu = \"X\" }\n", "did you mean value?"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"X\", column = \"Y\" }\n", "only one of"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[contact]\nphone_region = \"XX\"\n", "not a region code"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[extra]\nagent_name = \"Agent\"\n", "DigiDesk field"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[misc]\n", "did you mean [misc_data]"),
            ("[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"X\"\n[misc_data]\nrename = { Queue = \"Q\" }\n", "not in [misc_data] columns"),
            ("[fields\n", "not valid TOML"),
        ];
        for (toml, want) in cases {
            let e = Mapping::parse(toml, "m.toml").unwrap_err();
            assert!(e.message.contains(want), "{toml:?}: {}", e.message);
            assert!(e.message.starts_with("m.toml: "), "{}", e.message);
        }
    }

    #[test]
    fn a_header_read_with_the_wrong_delimiter_says_which_one_to_use() {
        let m = Mapping::parse(FULL, "m.toml").unwrap();
        let e = Plan::compile(&m, &["Phone;First;Last".to_string()], "in.csv").unwrap_err();
        assert!(e.message.contains("try --delimiter ';'"), "{}", e.message);
    }

    #[test]
    fn result_columns_are_never_mapped() {
        let headers: Vec<String> = vec!["Phone".into(), "digidesk_status".into()];
        let m = Mapping::parse(
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = \"digidesk_status\"\n",
            "m.toml",
        )
        .unwrap();
        let e = Plan::compile(&m, &headers, "in.csv").unwrap_err();
        assert!(e.message.contains("never mapped"), "{}", e.message);
        let m = Mapping::parse(
            "[fields]\ncustomer_contact = \"Phone\"\ncampaign_name = { value = \"C\" }\n[misc_data]\nunmapped = true\n",
            "m.toml",
        )
        .unwrap();
        let p = Plan::compile(&m, &headers, "in.csv").unwrap();
        let r = send(p.apply(&csv::StringRecord::from(vec!["+447911123456", "failed"])));
        assert!(r.misc_data.is_empty(), "{:?}", r.misc_data);
    }
}
