//! Fuzz target `oci_manifest`: see `checks::oci_manifest` for what it calls and asserts.

#![no_main]

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::oci_manifest(data));
