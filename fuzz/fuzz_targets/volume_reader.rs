//! Fuzz target `volume_reader`: see `checks::volume_reader` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::volume_reader(data));
