//! The plan: a mapping compiled against one header (column indexes, not
//! names), and [`Plan::apply`], which decides each row.

use std::borrow::Cow;

use super::condition::Condition;
use super::template::{self, Part};
use super::value::ValueSpec;
use super::{suggest, Mapping, MappingError, SkipReason, SkipRule};
use crate::contact::ContactRules;
use crate::request::SurveyRequest;
use crate::results::is_result_column;
use crate::spec;

mod inspect;

pub use inspect::TestedColumn;

/// What the mapping decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A valid survey request, ready to send.
    Send(SurveyRequest),
    /// The row matched a `[skip]` rule (or not `only`); the string says which.
    Skip(String),
    /// The row cannot be sent; one reason per problem, each naming the field or column.
    Invalid(Vec<String>),
}

/// A `[skip]` rule against the header.
#[derive(Debug, Clone)]
struct Skip {
    condition: Condition<usize>,
    reason: SkipReason,
}

impl Skip {
    fn reason(&self, row: &csv::StringRecord) -> String {
        match (&self.reason, &self.condition) {
            (SkipReason::Equals(name), Condition::Equals { column, .. }) => {
                format!("skipped by [skip]: {name} = {}", super::cell(row, *column))
            }
            (SkipReason::Equals(name), _) => format!("skipped by [skip]: {name}"),
            (SkipReason::Rule(text), _) => text.clone(),
        }
    }
}

/// One `misc_data` entry: a column as it is, or a value built like a field's.
#[derive(Debug, Clone)]
enum Misc {
    Column(String, usize),
    Value(String, ValueSpec<usize>),
}

/// A mapping compiled against one header.
#[derive(Debug, Clone)]
pub struct Plan {
    contact: ValueSpec<usize>,
    campaign: ValueSpec<usize>,
    name: Option<ValueSpec<usize>>,
    account: Option<ValueSpec<usize>>,
    agent: Option<ValueSpec<usize>>,
    rules: ContactRules,
    /// The company's own lines, as E.164: never a customer.
    own_numbers: Vec<String>,
    /// `misc_data` entries, in order.
    misc: Vec<Misc>,
    skip: Vec<Skip>,
    only: Option<Skip>,
    extra: Vec<(String, ValueSpec<usize>)>,
    dedupe_key: Option<Vec<Part<usize>>>,
    /// The columns conditions test, for `check`'s report.
    tested: Vec<TestedColumn>,
}

/// `#N` (1-based) as a 0-based position, when `name` is one.
fn position(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('#')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        digits
            .parse::<usize>()
            .unwrap_or(usize::MAX)
            .saturating_sub(1),
    )
}

/// Where a column the mapping names is in the header, or what is wrong.
fn locate(name: &str, headers: &[String]) -> Result<usize, Vec<usize>> {
    if let Some(i) = position(name) {
        return if name != "#0" && i < headers.len() {
            Ok(i)
        } else {
            Err(Vec::new())
        };
    }
    let found: Vec<usize> = (0..headers.len()).filter(|i| headers[*i] == name).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(found),
    }
}

impl Plan {
    /// Checks the mapping against the header: a column the input lacks stops
    /// here, naming it, listing the headers and suggesting the closest one.
    /// `#N` names the N-th column, whatever its header.
    pub fn compile(
        mapping: &Mapping,
        headers: &[String],
        input_name: &str,
    ) -> Result<Plan, MappingError> {
        let origin = &mapping.origin;
        if let [only] = headers {
            if let Some(d) = [';', '\t', '|'].into_iter().find(|d| only.contains(*d)) {
                let (flag, toml) = if d == '\t' {
                    ("tab".to_string(), "tab".to_string())
                } else {
                    (format!("'{d}'"), d.to_string())
                };
                return Err(MappingError::Header { message: format!(
                    "{input_name} reads as a single column whose name contains {flag}: it is probably {flag}-delimited; try --delimiter {flag} (or delimiter = \"{toml}\" in the mapping's [input])"
                )});
            }
        }
        let mut problems = Vec::new();
        let used = mapping.columns_used();
        for (col, place) in &used {
            let before = problems.len();
            if is_result_column(col) {
                problems.push(format!(
                    "{place} names {col:?}, a column that digidesk-upload writes; results columns are never mapped"
                ));
                continue;
            }
            match locate(col, headers) {
                Ok(_) => {}
                Err(_) if position(col).is_some() => problems.push(format!(
                    "{place} uses column {col}, but {input_name} has {} column{}; #1 is the first",
                    headers.len(),
                    if headers.len() == 1 { "" } else { "s" }
                )),
                Err(found) if found.is_empty() => {
                    let hint = suggest(col, headers.iter().map(String::as_str))
                        .map(|s| format!("; did you mean {s:?}?"))
                        .or_else(|| text_hint(col, place))
                        .unwrap_or_default();
                    problems.push(format!(
                        "{place} uses column {col:?}, which {input_name} does not have{hint}"
                    ));
                }
                Err(found) => {
                    let refs: Vec<String> = found.iter().map(|i| format!("#{}", i + 1)).collect();
                    problems.push(format!(
                        "{place} uses column {col:?}, which {input_name} has {} times ({}): write {} to say which one, or rename one in the export",
                        found.len(),
                        refs.join(", "),
                        refs.join(" or ")
                    ));
                }
            }
            if problems.len() > before {
                if let (Some(last), Some(line)) = (problems.last_mut(), mapping.lines.get(place)) {
                    last.push_str(&format!(" (mapping line {line})"));
                }
            }
        }
        if !problems.is_empty() {
            let listed: Vec<String> = headers.iter().map(|h| format!("{h:?}")).collect();
            return Err(MappingError::DoesNotFit {
                origin: origin.clone(),
                input: input_name.to_string(),
                problems,
                columns: listed.join(", "),
            });
        }
        // Every name below was found just above.
        let idx = |name: &str| locate(name, headers).expect("column checked above");
        let compile = |v: &ValueSpec<String>| v.resolve(&mut |c: &String| idx(c));
        let field = |name: &str| mapping.fields.get(name).map(compile);
        let key_for = |col: &str| {
            mapping
                .misc_rename
                .get(col)
                .cloned()
                .unwrap_or_else(|| col.to_string())
        };
        let mut misc: Vec<Misc> = Vec::new();
        let mut misc_columns: Vec<usize> = Vec::new();
        for c in &mapping.misc_columns {
            if !misc_columns.contains(&idx(c)) {
                misc_columns.push(idx(c));
                misc.push(Misc::Column(key_for(c), idx(c)));
            }
        }
        for (key, value) in &mapping.misc_fields {
            misc.push(Misc::Value(key.clone(), compile(value)));
        }
        if mapping.misc_unmapped {
            let used: Vec<usize> = used.iter().map(|(c, _)| idx(c)).collect();
            for (i, h) in headers.iter().enumerate() {
                if h.is_empty()
                    || is_result_column(h)
                    || used.contains(&i)
                    || misc_columns.contains(&i)
                    || mapping.misc_fields.iter().any(|(k, _)| *k == key_for(h))
                {
                    continue;
                }
                misc_columns.push(i);
                misc.push(Misc::Column(key_for(h), i));
            }
        }
        if let Some(col) = mapping.misc_rename.keys().find(|c| {
            mapping.misc_unmapped && !misc_columns.iter().any(|i| headers.get(*i) == Some(c))
        }) {
            return Err(MappingError::Header { message: format!(
                "{origin}: [misc_data] rename {col:?}: {input_name} has no such column among those that go to misc_data"
            )});
        }
        if misc.len() > spec::MAX_MISC_ENTRIES {
            tracing::warn!(
                "{origin}: [misc_data] takes {} columns; a row with more than {} non-empty ones will be invalid",
                misc.len(),
                spec::MAX_MISC_ENTRIES
            );
        }
        let skip = |r: &SkipRule| Skip {
            condition: r.condition.resolve(&mut |c: &String| idx(c)),
            reason: r.reason.clone(),
        };
        Ok(Plan {
            tested: inspect::tested(mapping, headers),
            contact: field(spec::CUSTOMER_CONTACT).expect("required field checked at parse"),
            campaign: field(spec::CAMPAIGN_NAME).expect("required field checked at parse"),
            name: field(spec::CUSTOMER_NAME),
            account: field(spec::ACCOUNT_NUMBER),
            agent: field(spec::AGENT_NAME),
            rules: mapping.contact.clone(),
            own_numbers: mapping.own_numbers.clone(),
            misc,
            skip: mapping.skip.iter().map(skip).collect(),
            only: mapping.only.as_ref().map(skip),
            extra: mapping
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), compile(v)))
                .collect(),
            dedupe_key: mapping.dedupe.key.as_ref().map(|parts| {
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => Part::Text(t.clone()),
                        Part::Column(c) => Part::Column(idx(c)),
                    })
                    .collect()
            }),
        })
    }

    /// The row's `[dedupe] key`, when the mapping gives one.
    pub fn dedupe_key(&self, row: &csv::StringRecord) -> Option<String> {
        let parts = self.dedupe_key.as_ref()?;
        let mut key = String::new();
        template::render(parts, row, &mut key);
        Some(key)
    }

    /// Every column (by its index in the header the plan was compiled
    /// against) that deciding a row reads.
    pub fn columns_read(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut add = |i: &usize| out.push(*i);
        let values = [
            Some(&self.contact),
            Some(&self.campaign),
            self.name.as_ref(),
            self.account.as_ref(),
            self.agent.as_ref(),
        ];
        for v in values
            .into_iter()
            .flatten()
            .chain(self.extra.iter().map(|(_, v)| v))
        {
            v.visit(&mut add);
        }
        for m in &self.misc {
            match m {
                Misc::Column(_, i) => add(i),
                Misc::Value(_, v) => v.visit(&mut add),
            }
        }
        for rule in self.skip.iter().chain(self.only.as_ref()) {
            rule.condition.visit(&mut add);
        }
        for part in self.dedupe_key.iter().flatten() {
            if let Part::Column(i) = part {
                add(i);
            }
        }
        out
    }

    /// Maps and validates one row whose fields line up with the header.
    pub fn apply(&self, row: &csv::StringRecord) -> Decision {
        let mut req = SurveyRequest::default();
        let verdict = self.apply_into(row, &mut req);
        verdict.with(req)
    }

    /// Like [`apply`](Self::apply), building the request in `req`, whose
    /// strings are overwritten: a caller that keeps `req` for the next row
    /// allocates almost nothing per row. On [`Verdict::Send`], `req` holds
    /// the request; otherwise what it holds is not meant to be used.
    pub fn apply_into(&self, row: &csv::StringRecord, req: &mut SurveyRequest) -> Verdict {
        for rule in &self.skip {
            if rule.condition.holds(row) {
                return Verdict::Skip(rule.reason(row));
            }
        }
        if let Some(only) = &self.only {
            if !only.condition.holds(row) {
                return Verdict::Skip(only.reason(row));
            }
        }
        let mut reasons = Vec::new();
        // Fields whose value could not be made: "required but empty" would
        // only repeat it.
        let mut failed: Vec<&str> = Vec::new();
        match self.contact.eval(row) {
            Err(e) => {
                req.customer_contact.clear();
                reasons.push(format!("{}: {e}", spec::CUSTOMER_CONTACT));
                failed.push(spec::CUSTOMER_CONTACT);
            }
            Ok(raw) if raw.is_empty() => req.customer_contact.clear(),
            Ok(raw) => match self.rules.normalize(&raw) {
                Ok(c) => {
                    if self.own_numbers.contains(&c) {
                        reasons.push("customer_contact is one of the company's own numbers ([contact] own_numbers), not a customer's".into());
                    }
                    req.customer_contact = c;
                }
                Err(reason) => {
                    reasons.push(reason);
                    req.customer_contact.clear();
                    req.customer_contact.push_str(&raw);
                }
            },
        }
        // The value of a field into `out` (emptied when it cannot be made).
        let mut eval = |name: &'static str,
                        v: &ValueSpec<usize>,
                        out: &mut String,
                        reasons: &mut Vec<String>| {
            if let Err(e) = v.eval_into(row, out) {
                out.clear();
                reasons.push(format!("{name}: {e}"));
                failed.push(name);
            }
        };
        eval(
            spec::CAMPAIGN_NAME,
            &self.campaign,
            &mut req.campaign_name,
            &mut reasons,
        );
        // An optional field: absent when empty. Its string is kept for the
        // next row while it has a value.
        let mut optional = |name: &'static str,
                            v: &Option<ValueSpec<usize>>,
                            slot: &mut Option<String>,
                            reasons: &mut Vec<String>| {
            let Some(v) = v else {
                *slot = None;
                return;
            };
            let mut value = slot.take().unwrap_or_default();
            eval(name, v, &mut value, reasons);
            if !value.is_empty() {
                *slot = Some(value);
            }
        };
        optional(
            spec::CUSTOMER_NAME,
            &self.name,
            &mut req.customer_name,
            &mut reasons,
        );
        optional(
            spec::ACCOUNT_NUMBER,
            &self.account,
            &mut req.account_number,
            &mut reasons,
        );
        optional(
            spec::AGENT_NAME,
            &self.agent,
            &mut req.agent_name,
            &mut reasons,
        );
        let mut misc = Pairs::new(&mut req.misc_data);
        for entry in &self.misc {
            let (key, value) = match entry {
                Misc::Column(k, i) => (k, Cow::Borrowed(super::cell(row, *i))),
                Misc::Value(k, v) => match v.eval(row) {
                    Ok(value) => (k, value),
                    Err(e) => {
                        reasons.push(format!("misc_data {k:?}: {e}"));
                        continue;
                    }
                },
            };
            if !value.is_empty() {
                misc.push(key, &value);
            }
        }
        misc.end();
        let mut extra = Pairs::new(&mut req.extra);
        for (k, v) in &self.extra {
            match v.eval(row) {
                Ok(value) if value.is_empty() => {}
                Ok(value) => extra.push(k, &value),
                Err(e) => reasons.push(format!("{k}: {e}")),
            }
        }
        extra.end();
        let checked = crate::validate::validate(req);
        reasons.extend(checked.into_iter().filter(|r| {
            !failed.iter().any(|f| {
                r.strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with(" is required"))
            })
        }));
        if reasons.is_empty() {
            Verdict::Send
        } else {
            Verdict::Invalid(reasons)
        }
    }
}

/// What [`Plan::apply_into`] decided for one row; the request, when there
/// is one, is in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request in the buffer is valid, ready to send.
    Send,
    /// The row matched a `[skip]` rule (or not `only`); the string says which.
    Skip(String),
    /// The row cannot be sent; one reason per problem.
    Invalid(Vec<String>),
}

impl Verdict {
    /// The decision, with the request that was built for it.
    pub fn with(self, req: SurveyRequest) -> Decision {
        match self {
            Verdict::Send => Decision::Send(req),
            Verdict::Skip(reason) => Decision::Skip(reason),
            Verdict::Invalid(reasons) => Decision::Invalid(reasons),
        }
    }
}

/// Key-value pairs written over those of an earlier row, their strings
/// reused; [`end`](Self::end) drops the ones left over.
struct Pairs<'a> {
    pairs: &'a mut Vec<(String, String)>,
    len: usize,
}

impl<'a> Pairs<'a> {
    fn new(pairs: &'a mut Vec<(String, String)>) -> Pairs<'a> {
        Pairs { pairs, len: 0 }
    }

    fn push(&mut self, key: &str, value: &str) {
        match self.pairs.get_mut(self.len) {
            Some((k, v)) => {
                k.clear();
                k.push_str(key);
                v.clear();
                v.push_str(value);
            }
            None => self.pairs.push((key.to_string(), value.to_string())),
        }
        self.len += 1;
    }

    fn end(self) {
        self.pairs.truncate(self.len);
    }
}

/// For a `[fields]` string with a space that is no column: it is likely
/// text meant to be sent as it is.
fn text_hint(col: &str, place: &str) -> Option<String> {
    let field = place.strip_prefix("[fields] ")?;
    col.trim()
        .contains(' ')
        .then(|| format!("; to send this text as is, write `{field} = {{ value = {col:?} }}`"))
}

#[cfg(test)]
mod tests;
