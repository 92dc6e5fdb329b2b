//! Fuzz target `signed_bundle`: see `checks::signed_bundle` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::signed_bundle(data));
