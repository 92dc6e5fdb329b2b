//! Fuzz target `image_reference`: see `checks::image_reference` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::image_reference(data));
