//! One module per command; each takes its parsed arguments and returns an exit code.

pub mod check;
pub mod demo;
pub mod retry;
pub mod sandbox;
pub mod send;

use crate::cli::InputArgs;
use crate::exit::Fatal;
use crate::mapping::Mapping;
use crate::reading::{self, InputSource, ReadOptions, Reader};

/// Opens the input as the command line and the mapping's `[input]` say:
/// `--delimiter` and `--encoding` override the mapping, which overrides the
/// defaults (`,` and UTF-8). Returns the reading options actually used.
pub fn open_input(
    args: &InputArgs,
    input: &InputSource,
    mapping: &Mapping,
) -> Result<(Reader, ReadOptions), Fatal> {
    let shape = mapping.input();
    let read = ReadOptions {
        encoding: match &args.encoding {
            Some(name) => reading::parse_encoding(name)?,
            None => shape.encoding.unwrap_or(encoding_rs::UTF_8),
        },
        delimiter: match &args.delimiter {
            Some(d) => reading::parse_delimiter(d)?,
            None => shape.delimiter.unwrap_or(b','),
        },
    };
    let reader = Reader::open_with_header(input, &read, shape.header)?;
    Ok((reader, read))
}
