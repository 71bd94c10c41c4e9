//! One module per command; each takes its parsed arguments and returns an exit code.

pub mod check;
pub mod demo;
pub mod job;
pub mod retry;
pub mod sandbox;
pub mod send;
