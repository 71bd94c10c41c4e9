//! What can be wrong with a mapping: the file, a key or value in it (with its
//! line and column), or its fit to the input's header.

use std::fmt;

/// A place in the mapping file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The line and column of byte `offset` of `text`.
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// ` (line L, column C)` when the place is known, else nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " (line {}, column {})", p.line, p.column),
            None => Ok(()),
        }
    }
}

/// Why a mapping cannot be used. Nothing is sent when one of these occurs.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read the mapping file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key or value in it is wrong; the
    /// message says what to write instead.
    #[error("{origin}: {message}{at}")]
    File {
        origin: String,
        at: At,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The mapping names columns the input lacks, or has more than once.
    #[error(
        "{origin}: the mapping does not fit the input:\n  - {}\n  {input} has these columns: {columns}",
        problems.join("\n  - ")
    )]
    DoesNotFit {
        origin: String,
        input: String,
        problems: Vec<String>,
        columns: String,
    },
    /// The input's header cannot be what the export meant (read with the
    /// wrong delimiter, for instance).
    #[error("{message}")]
    Header { message: String },
}

impl MappingError {
    /// An error at a place in the file.
    pub(super) fn at(origin: &str, at: Option<Position>, message: impl Into<String>) -> Self {
        MappingError::File {
            origin: origin.to_string(),
            at: At(at),
            message: message.into(),
            source: None,
        }
    }

    /// Where in the mapping file the error is, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            MappingError::File { at, .. } => at.0,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nzoë = \"x\"\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // "zoë " is five bytes but four characters.
        assert_eq!(Position::of(text, 11), Position { line: 2, column: 5 });
        assert_eq!(Position::of(text, 999).line, 3);
    }
}
