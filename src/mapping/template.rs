//! Templates: `"{First Name} {Last Name}"`, text with columns in braces
//! (`{{` and `}}` are literal braces).

/// A piece of a template; `C` names a column (a header name, then an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part<C> {
    Text(String),
    Column(C),
}

/// Splits `"{First} {Last}"` into text and columns.
pub(super) fn parse(t: &str) -> Result<Vec<Part<String>>, String> {
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

/// Appends the template's text for one row: each column's trimmed cell.
pub(super) fn render(parts: &[Part<usize>], row: &csv::StringRecord, out: &mut String) {
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Column(i) => out.push_str(super::cell(row, *i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_braces_and_reject_mistakes() {
        assert_eq!(
            parse("{{x}} {A}!").unwrap(),
            vec![
                Part::Text("{x} ".into()),
                Part::Column("A".into()),
                Part::Text("!".into())
            ]
        );
        assert!(parse("{A").unwrap_err().contains("never closed"));
        assert!(parse("A}").is_err());
        assert!(parse("no columns").is_err());
        assert!(parse("{ }").unwrap_err().contains("empty"));
    }

    #[test]
    fn rendering_trims_each_cell_and_keeps_the_text() {
        let parts = vec![
            Part::Column(1),
            Part::Text(" / ".into()),
            Part::Column(0),
            Part::Column(5),
        ];
        let mut out = String::new();
        render(&parts, &csv::StringRecord::from(vec![" b ", "a"]), &mut out);
        assert_eq!(out, "a / b", "a column past the row's end is empty");
    }
}
