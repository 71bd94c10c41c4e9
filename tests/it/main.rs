//! End-to-end tests: the real binary and the real sandbox over loopback.

mod check;
mod common;
mod sandbox;
mod send;
