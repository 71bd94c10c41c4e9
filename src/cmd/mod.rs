//! One module per command; each takes its parsed arguments and returns an exit code.

pub mod check;
pub mod demo;
pub mod job;
pub mod ledger;
pub mod retry;
pub mod sandbox;
pub mod selection;
pub mod send;

use crate::cli::InputArgs;
use crate::config::{parse_delimiter, parse_encoding};
use crate::exit::Fatal;
use crate::input::{Origin, ReadOptions, Reader};
use crate::mapping::Mapping;

/// Opens the input as the command line and the mapping's `[input]` say:
/// `--delimiter` and `--encoding` override the mapping, which overrides the
/// defaults (`,` and UTF-8). Returns the reading options actually used.
pub fn open_input(
    args: &InputArgs,
    input: &Origin,
    mapping: &Mapping,
) -> Result<(Reader, ReadOptions), Fatal> {
    let shape = mapping.input();
    let read = ReadOptions {
        encoding: match &args.encoding {
            Some(name) => parse_encoding(name)?,
            None => shape.encoding.unwrap_or(encoding_rs::UTF_8),
        },
        delimiter: match &args.delimiter {
            Some(d) => parse_delimiter(d)?,
            None => shape.delimiter.unwrap_or(b','),
        },
    };
    let reader = Reader::open_with_header(input, &read, shape.header)?;
    Ok((reader, read))
}
