//! The input: the export's records, read and decoded.

pub mod read;
