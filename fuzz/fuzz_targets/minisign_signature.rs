//! Fuzz target `minisign_signature`: see `checks::minisign_signature` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::minisign_signature(data));
