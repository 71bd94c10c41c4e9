//! A fast path for the phone numbers exports are mostly made of.
//!
//! `phonenumber::parse` plus `is_valid` costs about 20 µs a number, most of
//! it hashing regex sources to look compiled patterns up in the crate's
//! shared cache. For the mapping's region this module compiles the same
//! metadata patterns once and answers, in well under a microsecond, the two
//! common shapes: the national form (`07400 100001`, `(07400) 100-001`) and
//! the international form with the region's own code (`+44 7400 100001`).
//!
//! It follows `phonenumber`'s own steps for those shapes (international
//! prefix, national prefix, the length check, the choice among the regions
//! sharing a code, then "matches a number type") and is only trusted to say
//! *valid*: for anything it does not recognise, and for every number it
//! would reject, the caller asks `phonenumber` itself, so a reason for
//! rejection always comes from the library. A unit test compares both on
//! generated numbers for every region.

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

/// Longest and shortest national significant numbers `phonenumber` accepts.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// A metadata pattern compiled as the library compiles it (verbose mode),
/// anchored at the start.
fn anchored(source: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{source})"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// One metadata pattern, anchored at the start as `phonenumber` matches it
/// (`find` starting at 0), with its possible lengths.
#[derive(Debug)]
struct Pattern {
    re: Regex,
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(desc: &Descriptor) -> Option<Pattern> {
        let re = anchored(desc.national_number().as_str())?;
        Some(Pattern {
            re,
            lengths: desc.possible_length().to_vec(),
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.re.is_match(national)
    }
}

/// One region's "is this number of a known type" test.
#[derive(Debug)]
struct Region {
    /// `leading_digits`, anchored: decides between regions sharing a code.
    leading: Option<Regex>,
    general: Pattern,
    /// Every typed descriptor `number_type` consults.
    types: Vec<Pattern>,
}

impl Region {
    fn new(meta: &Metadata) -> Option<Region> {
        let d = meta.descriptors();
        // Any match will do, so the commonest types go first.
        let typed = [
            d.mobile(),
            d.fixed_line(),
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        let mut types = Vec::new();
        for desc in typed.into_iter().flatten() {
            types.push(Pattern::new(desc)?);
        }
        let leading = match meta.leading_digits() {
            Some(re) => Some(anchored(re.as_str())?),
            None => None,
        };
        Some(Region {
            leading,
            general: Pattern::new(d.general())?,
            types,
        })
    }

    /// `number_type(meta, national) != Type::Unknown`.
    fn has_type(&self, national: &str) -> bool {
        self.general.matches(national) && self.types.iter().any(|t| t.matches(national))
    }
}

/// The fast path for one region. `None` from [`FastPhone::new`] when the
/// region's metadata uses rules this module does not follow (a national
/// prefix with a transform rule, none at all, or one overlapping the
/// country code): such regions always take the library path.
#[derive(Debug)]
pub struct FastPhone {
    country_code: String,
    national_prefix: String,
    /// The pattern the library strips a national prefix with, anchored.
    prefix_for_parsing: Option<Regex>,
    /// The region's international dialling prefix, anchored.
    idd: Option<Regex>,
    /// The region's general possible and local-only lengths, for the
    /// "too short to strip the national prefix" check.
    possible: Vec<u16>,
    local: Vec<u16>,
    /// Every region with this country code, in the database's order.
    regions: Vec<Region>,
    /// Whether a leading 1, 2 or 3 digits could be another country code
    /// before this one is reached (then `+` numbers take the library path).
    shorter_codes: Vec<String>,
}

impl FastPhone {
    pub fn new(region: &str) -> Option<FastPhone> {
        let meta = DATABASE.by_id(region)?;
        let np = meta.national_prefix()?.to_owned();
        if np.is_empty() || !np.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if meta.national_prefix_transform_rule().is_some() {
            return None;
        }
        let prefix_for_parsing = match meta.national_prefix_for_parsing() {
            Some(re) => Some(anchored(re.as_str())?),
            None => None,
        };
        let code = meta.country_code();
        let country_code = code.to_string();
        if country_code.starts_with(&np) || np.starts_with(&country_code) {
            return None;
        }
        let idd = match meta.international_prefix() {
            Some(re) => Some(anchored(re.as_str())?),
            None => None,
        };
        let mut regions = Vec::new();
        for id in DATABASE.region(&code)? {
            if id == "001" {
                return None;
            }
            regions.push(Region::new(DATABASE.by_id(id)?)?);
        }
        let general = meta.descriptors().general();
        let shorter_codes = (1..country_code.len())
            .map(|len| country_code[..len].to_owned())
            .filter(|prefix| {
                prefix
                    .parse::<u16>()
                    .is_ok_and(|c| DATABASE.by_code(&c).is_some())
            })
            .collect();
        Some(FastPhone {
            country_code,
            national_prefix: np,
            prefix_for_parsing,
            idd,
            possible: general.possible_length().to_vec(),
            local: general.possible_local_length().to_vec(),
            regions,
            shorter_codes,
        })
    }

    /// The E.164 form of `value` when it is a valid number of one of the two
    /// shapes this path follows; `None` means "ask `phonenumber`", not
    /// "invalid".
    pub fn e164(&self, value: &str) -> Option<String> {
        let mut digits = [0u8; 24];
        let (plus, len) = shape(value, &mut digits)?;
        let digits = std::str::from_utf8(&digits[..len]).ok()?;
        if self.idd.as_ref().is_some_and(|re| re.is_match(digits)) {
            return None;
        }
        let national = if plus {
            // `+CC…`: the code is the first 1-3 digits naming a country.
            if self
                .shorter_codes
                .iter()
                .any(|c| digits.starts_with(c.as_str()))
            {
                return None;
            }
            let rest = digits.strip_prefix(self.country_code.as_str())?;
            if rest.starts_with(&self.national_prefix)
                || rest.starts_with('0')
                || self
                    .prefix_for_parsing
                    .as_ref()
                    .is_some_and(|re| re.is_match(rest))
            {
                return None;
            }
            rest
        } else {
            if digits.starts_with(&self.country_code) {
                return None;
            }
            let rest = digits.strip_prefix(self.national_prefix.as_str())?;
            // The library strips what its pattern matches first.
            if let Some(re) = &self.prefix_for_parsing {
                if re.find(digits).map(|m| m.end()) != Some(self.national_prefix.len()) {
                    return None;
                }
            }
            if rest.starts_with(&self.national_prefix) || rest.starts_with('0') {
                return None;
            }
            rest
        };
        let n = national.len();
        if !(MIN_NSN..=MAX_NSN).contains(&n) || self.too_short(n) {
            return None;
        }
        // `source_for`: the first region whose leading digits match, or
        // (without leading digits) where the number has a type.
        let region = self.regions.iter().find(|r| match &r.leading {
            Some(re) => re.is_match(national),
            None => r.has_type(national),
        })?;
        if !region.has_type(national) {
            return None;
        }
        let mut out = String::with_capacity(1 + self.country_code.len() + n);
        out.push('+');
        out.push_str(&self.country_code);
        out.push_str(national);
        Some(out)
    }

    /// `validator::length(meta, number, Type::Unknown) == TooShort`, as the
    /// library computes it for the region's general description.
    fn too_short(&self, n: usize) -> bool {
        let n = n as u16;
        match self.possible.first() {
            Some(&min) => !self.local.contains(&n) && n < min,
            None => false,
        }
    }
}

/// Reads the shapes this path follows: digit groups separated by one space,
/// hyphen or dot, the first group optionally in parentheses; or a `+` and
/// digit groups separated by one space (with hyphens or dots the library
/// reads `+` numbers as RFC 3966 ones, with other rules). Writes the digits;
/// returns whether there was a `+` and how many digits. Anything else is
/// `None`.
fn shape(value: &str, out: &mut [u8; 24]) -> Option<(bool, usize)> {
    let bytes = value.as_bytes();
    let (plus, mut i) = match bytes.first() {
        Some(b'+') => (true, 1),
        _ => (false, 0),
    };
    let paren = !plus && bytes.get(i) == Some(&b'(');
    if paren {
        i += 1;
    }
    let mut n = 0;
    let mut groups = 0;
    loop {
        let start = i;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            *out.get_mut(n)? = b;
            n += 1;
            i += 1;
        }
        if i == start {
            return None;
        }
        groups += 1;
        if paren && groups == 1 {
            if bytes.get(i) != Some(&b')') {
                return None;
            }
            i += 1;
            match bytes.get(i) {
                Some(b' ' | b'-') => i += 1,
                None => return None,
                Some(_) => {}
            }
            continue;
        }
        match bytes.get(i) {
            None => break,
            Some(b' ') => i += 1,
            Some(b'-' | b'.') if !plus => i += 1,
            Some(_) => return None,
        }
    }
    (n >= 3).then_some((plus, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// What the library says: the E.164 form of a valid number.
    fn library(region: &str, value: &str) -> Option<String> {
        let id = region.parse().ok()?;
        phonenumber::parse(Some(id), value)
            .ok()
            .filter(phonenumber::is_valid)
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
    }

    fn formats(rng: &mut SmallRng, digits: &str) -> String {
        let mut s = String::new();
        let paren = rng.random_bool(0.2) && digits.len() > 4;
        let first = rng.random_range(1..=digits.len().min(5));
        if paren {
            s.push('(');
        }
        for (i, c) in digits.chars().enumerate() {
            if i == first && paren {
                s.push(')');
                if rng.random_bool(0.7) {
                    s.push(' ');
                }
            } else if i > 0 && rng.random_bool(0.15) {
                s.push([' ', '-', '.'][rng.random_range(0..3)]);
            }
            s.push(c);
        }
        s
    }

    fn mutate(rng: &mut SmallRng, digits: &str) -> String {
        let mut d: Vec<u8> = digits.bytes().collect();
        match rng.random_range(0..4) {
            0 if !d.is_empty() => {
                let i = rng.random_range(0..d.len());
                d[i] = b'0' + rng.random_range(0..10);
            }
            1 => d.push(b'0' + rng.random_range(0..10)),
            2 if d.len() > 1 => {
                d.pop();
            }
            _ => {}
        }
        String::from_utf8(d).unwrap()
    }

    /// Every answer of the fast path is the library's answer, across every
    /// region, for example numbers in both shapes, their mutations, random
    /// digit strings and formatting.
    #[test]
    fn agrees_with_the_library_everywhere() {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let mut regions: Vec<&Metadata> = DATABASE.iter().collect();
        regions.sort_by_key(|m| m.id().to_owned());
        let mut fast_answers = 0;
        let mut enabled = 0;
        for meta in regions {
            let Some(fast) = FastPhone::new(meta.id()) else {
                continue;
            };
            enabled += 1;
            let d = meta.descriptors();
            let examples: Vec<String> = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|x| x.example().map(str::to_owned))
            .collect();
            let mut candidates = Vec::new();
            for ex in &examples {
                for _ in 0..40 {
                    let m = mutate(&mut rng, ex);
                    candidates.push(format!("{}{}", fast.national_prefix, m));
                    candidates.push(format!("+{}{}", fast.country_code, m));
                    candidates.push(m);
                }
            }
            for _ in 0..200 {
                let len = rng.random_range(3..16);
                let m: String = (0..len)
                    .map(|_| char::from(b'0' + rng.random_range(0..10)))
                    .collect();
                candidates.push(format!("{}{}", fast.national_prefix, m));
                candidates.push(format!("+{}{}", fast.country_code, m));
            }
            for c in candidates {
                let (sign, digits) = match c.strip_prefix('+') {
                    Some(d) => ("+", d),
                    None => ("", c.as_str()),
                };
                let value = format!("{sign}{}", formats(&mut rng, digits));
                for v in [c.as_str(), value.as_str()] {
                    if let Some(got) = fast.e164(v) {
                        fast_answers += 1;
                        assert_eq!(
                            Some(got),
                            library(meta.id(), v),
                            "region {} value {v:?}",
                            meta.id()
                        );
                    }
                }
            }
        }
        assert!(enabled > 100, "only {enabled} regions have the fast path");
        assert!(fast_answers > 10_000, "only {fast_answers} fast answers");
    }

    #[test]
    fn the_common_shapes_take_the_fast_path() {
        let gb = FastPhone::new("GB").expect("GB has a fast path");
        for v in [
            "07400 100001",
            "07400100001",
            "(07400) 100001",
            "07400-100-001",
            "+44 7400 100001",
            "+447400100001",
        ] {
            assert_eq!(gb.e164(v).as_deref(), Some("+447400100001"), "{v}");
        }
        // Left to the library: other shapes, invalid numbers.
        for v in ["0044 7400 100001", "+44 (0)7400 100001", "07400 1", "0740a"] {
            assert_eq!(gb.e164(v), None, "{v}");
        }
    }
}
