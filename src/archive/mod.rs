//! The volume format: one tar archive of an OCI layout, every entry its own
//! zstd frame, cut into independent volumes.
//!
//! - [`writer`]: tar → zstd frames → volumes, hashing as it writes.
//! - [`reader`]: volumes → sha256 → zstd → strict tar entries, driven by
//!   bundle.json; shared by verify, extract and push.

pub mod reader;
pub mod writer;

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// The end-of-archive marker: two zero blocks, written as a frame of their own.
pub const TRAILER_LEN: u64 = 2 * BLOCK;

/// Bytes an entry of `size` content bytes takes in the tar stream: header, data, padding.
pub fn entry_len(size: u64) -> u64 {
    // Saturating: sizes come from untrusted bundle.json files before they are checked.
    size.div_ceil(BLOCK)
        .saturating_mul(BLOCK)
        .saturating_add(BLOCK)
}

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

/// The largest compressed size zstd may give for `len` input bytes in one frame.
pub fn frame_bound(len: u64) -> u64 {
    // ZSTD_compressBound plus room for the frame header.
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    zstd::zstd_safe::compress_bound(len_usize) as u64 + FRAME_SLACK
}

/// Extra bytes allowed over `ZSTD_compressBound` per frame.
const FRAME_SLACK: u64 = 32;

/// The most input bytes whose frame is sure to fit in `room` compressed bytes.
pub fn max_input_for(room: u64) -> u64 {
    let (mut lo, mut hi) = (0u64, room);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if frame_bound(mid) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_len_pads_to_blocks() {
        assert_eq!(entry_len(0), 512);
        assert_eq!(entry_len(1), 1024);
        assert_eq!(entry_len(512), 1024);
        assert_eq!(entry_len(513), 1536);
        assert_eq!(entry_len(u64::MAX), u64::MAX);
    }

    #[test]
    fn max_input_for_is_the_tight_inverse_of_the_bound() {
        for room in [0, 1, 100, 600, 4096, 131_072, 1 << 20, 700 << 20] {
            let n = max_input_for(room);
            assert!(frame_bound(n) <= room || n == 0, "room {room}");
            assert!(frame_bound(n + 1) > room, "room {room}");
        }
    }

    #[test]
    fn header_is_plain_ustar() {
        let h = tar_header("blobs/sha256/ab", 3);
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(h[156], b'0');
    }
}

#[cfg(test)]
mod roundtrip_tests;
