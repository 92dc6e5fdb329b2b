//! Fuzz target `mirror_config`: see `checks::mirror_config` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::mirror_config(data));
