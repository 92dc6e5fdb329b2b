//! Minisign-compatible Ed25519 keys and signatures.
//!
//! `bundle.json` is signed so that `minisign -Vm bundle.json -p bastion.pub`
//! verifies it without this tool. The formats are minisign's
//! (<https://jedisct1.github.io/minisign/>):
//!
//! - a public key file is an untrusted comment and base64 of
//!   `"Ed" ‖ key id (8) ‖ Ed25519 public key (32)`;
//! - a secret key file is an untrusted comment and base64 of `"Ed" ‖ KDF ‖ "B2"
//!   ‖ salt ‖ limits ‖ key id ‖ seed ‖ public key ‖ BLAKE2b-256 checksum`; keys
//!   without a password (KDF `0 0`) and password-protected ones (`minisign -G`,
//!   KDF `Sc`: scrypt, as libsodium's `crypto_pwhash_scryptsalsa208sha256`,
//!   whose output is XORed over key id, seed, public key and checksum) are both
//!   read;
//! - a signature file is four lines: an untrusted comment, base64 of `"ED" ‖ key id ‖
//!   Ed25519(BLAKE2b-512(file))`, a trusted comment, and base64 of
//!   `Ed25519(signature ‖ trusted comment)`.
//!
//! Parsers take text ([`PublicKey::parse`], [`SecretKey::parse`],
//! [`Signature::parse`]); the `from_file` functions read the file and name it
//! in errors. [`verify`] checks the key id first, then both signatures with
//! ed25519-dalek's strict verification and again with the independent
//! `minisign-verify` crate. Nothing here prints.

mod error;
mod files;
mod keys;
mod signature;
mod text;

pub use error::{FileKind, FormatError, SignError};
pub use files::{write_key_files, write_key_pair};
pub use keys::{DEMO_PUBLIC_KEY, KeyId, PublicKey, SecretKey, generate};
pub use signature::{MAX_TRUSTED_COMMENT, Signature, verify};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod file_tests;

#[cfg(test)]
mod interop_tests;
