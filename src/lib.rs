//! `bundle` moves container images into air-gapped networks on removable media,
//! with proof that nothing changed on the way.
//!
//! Modules, in the order data flows (see `DESIGN.md`):
//!
//! - [`registry`]: the only network code: distribution API, auth, pagination.
//! - [`source`]: turns a source (registry, image list, OCI layout) and filters
//!   into the images and blobs to bundle, in archive order.
//! - [`archive`]: the volume writer (tar → zstd frames → volumes) and the strict
//!   reader shared by verify, extract and push.
//! - [`manifest`]: bundle.json types and canonical bytes; [`geometry`]: the
//!   tar, frame and volume-name arithmetic it shares with [`archive`].
//! - [`sign`]: minisign-compatible ed25519 keys and signatures.
//! - [`create`] and [`verify`]: the two halves of the product; [`extract`]
//!   writes a verified OCI layout, and [`push`] loads verified images into a
//!   registry and writes the mirror configuration a cluster needs.
//! - [`cli`]: argument parsing, progress, human and `--json` output, exit codes.
//! - [`digest`], [`oci`]: content digests and OCI descriptor walking; [`files`]:
//!   non-blocking opens of untrusted files, atomic writes; [`text`]: characters
//!   that never reach a terminal raw.

pub mod archive;
pub mod cli;
pub mod create;
pub mod digest;
pub mod extract;
pub mod files;
pub mod geometry;
pub mod manifest;
pub mod oci;
pub mod push;
pub mod registry;
pub mod sign;
pub mod source;
pub mod text;
pub mod verify;
