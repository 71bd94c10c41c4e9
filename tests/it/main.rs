//! End-to-end tests: the real binary and the real sandbox over loopback.

mod check;
mod common;
mod constructs;
mod contacts;
mod demo;
mod faults;
mod hardening;
mod interrupt;
mod ledger;
mod logs;
mod mappings;
mod memory;
mod operator;
mod readme;
mod resume;
mod retry;
mod sandbox;
mod send;
mod stops;
