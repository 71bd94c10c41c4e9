//! End-to-end tests: the real binary and the real sandbox over loopback.

mod check;
mod common;
mod constructs;
mod contacts;
mod demo;
mod faults;
mod hardening;
mod integrity;
mod interrupt;
mod ledger;
mod logs;
mod mappings;
mod memory;
mod never_twice;
mod next_morning;
mod operator;
mod readme;
mod ready_mappings;
mod resume;
mod retry;
mod sandbox;
mod send;
mod shapes;
mod stops;
