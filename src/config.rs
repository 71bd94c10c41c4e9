//! config

/// The default `--rate`: conservative, so that an account whose limit we do
/// not know is not hammered.
pub const DEFAULT_RATE: u32 = 10;
