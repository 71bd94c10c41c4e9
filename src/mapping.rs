//! Mapping: the TOML mapping file, compiled once against the input's header
//! into a plan of column indexes, then applied to each row to give a survey
//! request, a skip, or the reasons the row is invalid.

use std::path::Path;

use crate::exit::Fatal;
use crate::request::SurveyRequest;

/// A parsed, not yet compiled, mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {}

impl Mapping {
    /// Reads and parses a mapping file; errors name the file, line and key.
    pub fn load(_path: &Path) -> Result<Mapping, Fatal> {
        todo!("mapping: load")
    }

    /// Parses mapping text; `origin` names it in errors.
    pub fn parse(_text: &str, _origin: &str) -> Result<Mapping, Fatal> {
        todo!("mapping: parse")
    }
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

/// A mapping compiled against one header.
#[derive(Debug, Clone)]
pub struct Plan {}

impl Plan {
    /// Checks the mapping against the header: a column the input lacks stops
    /// here, naming it, listing the headers and suggesting the closest one.
    pub fn compile(
        _mapping: &Mapping,
        _headers: &[String],
        _input_name: &str,
    ) -> Result<Plan, Fatal> {
        todo!("mapping: compile")
    }

    /// Maps and validates one row whose fields line up with the header.
    pub fn apply(&self, _fields: &csv::StringRecord) -> Mapped {
        todo!("mapping: apply")
    }
}
