//! Command-line tests: one binary, a module per command, each test running
//! the real `bundle` binary in a fresh temp dir against real parts (Debian's
//! `docker-registry`, `skopeo`, `minisign`, `zstd`, `tar`) on loopback.
//!
//! Shared fixtures are in [`support`]; its own tests are in `support_selftest`.

mod boundaries;
mod common;
mod create;
mod extract;
mod failures;
mod faults;
mod hostile;
mod list;
mod mirror;
mod push;
mod resume;
mod roundtrip;
mod support;
mod support_selftest;
mod tls;
mod token_auth;
mod verify;
