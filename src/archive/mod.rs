//! The volume format: one tar archive of an OCI layout, every entry its own
//! zstd frame, cut into independent volumes.
//!
//! - [`writer`]: tar → zstd frames → volumes, hashing as it writes.
//! - [`reader`]: volumes → sha256 → zstd → strict tar entries, driven by
//!   bundle.json; shared by verify, extract and push.

pub mod reader;
pub mod writer;

use crate::geometry::BLOCK;

/// The exact ustar header bundle writes for a regular file: fixed mode, owner
/// and mtime so the same input gives the same bytes. The reader rebuilds it and
/// compares byte for byte, so any other header is refused.
pub fn tar_header(path: &str, size: u64) -> [u8; BLOCK as usize] {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).expect("bundle paths are short ASCII");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    *header.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_plain_ustar() {
        let h = tar_header("blobs/sha256/ab", 3);
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(h[156], b'0');
    }
}

#[cfg(test)]
mod roundtrip_tests;
