//! What a value can go through after its source: `extract` (a regular
//! expression takes part of it) and `time` (a date or time re-written from
//! one strftime-style pattern to another). Both are compiled once per run.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::DateTime;
use regex::Regex;

/// `extract = 'regex'`: the first capture group, or the whole match; no match
/// gives an empty value.
pub(super) fn extract<'v>(regex: &Regex, value: Cow<'v, str>) -> Cow<'v, str> {
    let range = if regex.captures_len() > 1 {
        regex
            .captures(&value)
            .and_then(|c| c.get(1))
            .map(|m| m.range())
    } else {
        regex.find(&value).map(|m| m.range())
    };
    let Some(range) = range else {
        return Cow::Borrowed("");
    };
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(s[range].trim()),
        Cow::Owned(s) => Cow::Owned(s[range].trim().to_string()),
    }
}

/// `time = { from = "%d.%m.%y %H:%M", to = "%Y-%m-%d %H:%M" }`.
#[derive(Debug, Clone)]
pub(super) struct TimeFormat {
    /// The `from` pattern as written, for reasons.
    pub from: String,
    parse: Vec<Item<'static>>,
    format: Vec<Item<'static>>,
}

impl TimeFormat {
    /// Compiles both patterns and checks that what `from` reads is enough for
    /// what `to` writes (a date, a time, an offset); the error says which.
    pub fn new(from: &str, to: &str) -> Result<TimeFormat, String> {
        let compile = |key: &str, pattern: &str| {
            StrftimeItems::new(pattern).parse_to_owned().map_err(|_| {
                format!("{key} {pattern:?} is not a valid time pattern; use strftime-style specifiers such as %Y-%m-%d %H:%M:%S, %d/%m/%y, %a, %d %b %Y %H:%M:%S %z")
            })
        };
        let time = TimeFormat {
            from: from.to_string(),
            parse: compile("from", from)?,
            format: compile("to", to)?,
        };
        // A sample written with `from` must read back and re-write with `to`.
        let sample =
            DateTime::parse_from_rfc3339("2024-12-31T23:58:59+01:00").expect("a valid constant");
        let mut written = String::new();
        write!(written, "{}", sample.format_with_items(time.parse.iter())).map_err(|_| {
            format!("from {from:?} cannot be read back; use strftime-style specifiers such as %Y-%m-%d %H:%M")
        })?;
        let mut parsed = Parsed::new();
        if chrono::format::parse(&mut parsed, &written, time.parse.iter()).is_err() {
            return Err(format!(
                "from {from:?} cannot be used to read a time; use specifiers that read a value, such as %d.%m.%Y %H:%M (not %Z or %+)"
            ));
        }
        if time.reformat(&written).is_none() {
            return Err(format!(
                "to {to:?} writes something (a date, a time of day or an offset) that from {from:?} does not read; make the two patterns agree"
            ));
        }
        Ok(time)
    }

    /// The value re-written, or `None` when it does not match `from`. What
    /// `from` does not read is left out (a missing time of day is midnight).
    pub fn reformat(&self, value: &str) -> Option<String> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, value, self.parse.iter()).ok()?;
        let date = parsed.to_naive_date().ok();
        let mut time = parsed.to_naive_time().ok();
        if date.is_none() && time.is_none() {
            return None;
        }
        if date.is_some() && time.is_none() && parsed.hour_div_12().is_none() {
            time = chrono::NaiveTime::from_hms_opt(0, 0, 0);
        }
        let mut out = String::with_capacity(value.len() + 8);
        let written = match parsed.to_fixed_offset().ok() {
            Some(offset) => write!(
                out,
                "{}",
                chrono::format::DelayedFormat::new_with_offset(
                    date,
                    time,
                    &offset,
                    self.format.iter()
                )
            ),
            None => write!(
                out,
                "{}",
                chrono::format::DelayedFormat::new(date, time, self.format.iter())
            ),
        };
        written.ok().map(|_| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: &str, to: &str) -> TimeFormat {
        TimeFormat::new(from, to).unwrap()
    }

    #[test]
    fn extract_takes_the_first_group_or_the_whole_match() {
        let name = Regex::new(r"^\s*([^(;]+?)\s*\(").unwrap();
        let v = "Jo Bloggs (jo@x.co.nz);Ann (ann@y.nz)";
        assert_eq!(extract(&name, Cow::Borrowed(v)), "Jo Bloggs");
        let email = Regex::new(r"[^\s(]+@[^\s);]+").unwrap();
        assert_eq!(extract(&email, Cow::Borrowed(v)), "jo@x.co.nz");
        assert_eq!(
            extract(&name, Cow::Borrowed("no brackets")),
            "",
            "no match: empty"
        );
        assert_eq!(extract(&name, Cow::Borrowed("")), "");
        assert_eq!(
            extract(&Regex::new("(x)?y").unwrap(), Cow::Owned("y".to_string())),
            "",
            "a group that took no part is empty"
        );
    }

    #[test]
    fn time_rewrites_the_shapes_exports_use() {
        assert_eq!(
            t("%d.%m.%y %H:%M", "%Y-%m-%d %H:%M")
                .reformat("25.04.13 15:15")
                .as_deref(),
            Some("2013-04-25 15:15")
        );
        assert_eq!(
            t("%m/%d/%Y %H:%M", "%Y-%m-%dT%H:%M")
                .reformat("1/10/2026 21:52")
                .as_deref(),
            Some("2026-01-10T21:52")
        );
        assert_eq!(
            t("%a, %d %b %Y %H:%M:%S %z", "%Y-%m-%d %H:%M:%S %z")
                .reformat("Tue, 14 Oct 2025 15:02:11 +0000")
                .as_deref(),
            Some("2025-10-14 15:02:11 +0000")
        );
        assert_eq!(
            t("%d/%m/%Y", "%Y-%m-%d %H:%M")
                .reformat("03/02/2026")
                .as_deref(),
            Some("2026-02-03 00:00"),
            "a date alone is at midnight"
        );
        assert_eq!(
            t("%H:%M:%S", "%H.%M").reformat("09:05:00").as_deref(),
            Some("09.05")
        );
    }

    #[test]
    fn a_value_that_does_not_fit_the_pattern_is_none() {
        let f = t("%d.%m.%y %H:%M", "%Y-%m-%d");
        for bad in [
            "",
            "2013-04-25",
            "25.04.13",
            "32.01.13 10:00",
            "25.04.13 15:15 extra",
        ] {
            assert_eq!(f.reformat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn patterns_that_cannot_work_are_refused_at_load() {
        assert!(TimeFormat::new("%d.%m.%Q", "%Y")
            .unwrap_err()
            .contains("not a valid time pattern"));
        assert!(TimeFormat::new("%Y", "%Y-%m-%d %")
            .unwrap_err()
            .starts_with("to "));
        let e = TimeFormat::new("%H:%M", "%Y-%m-%d").unwrap_err();
        assert!(e.contains("does not read"), "{e}");
        let e = TimeFormat::new("%d.%m.%Y", "%Y-%m-%d %z").unwrap_err();
        assert!(e.contains("does not read"), "{e}");
    }
}
