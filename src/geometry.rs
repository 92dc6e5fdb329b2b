//! The geometry of the bundle format, which bundle.json's checks and the
//! archive writer and reader share: tar blocks and entry lengths, the zstd
//! frame bound that decides placement, and volume names. A leaf: it depends
//! on no other module of the crate, so `manifest` and `archive` need not
//! depend on each other.

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

/// Prefix of every volume's file name; the suffix is the index in [`VOLUME_DIGITS`] digits.
pub const VOLUME_PREFIX: &str = "images.tar.zst.";
/// Digits in a volume's index: every name has the same length, so a shell's
/// sorted glob (`images.tar.zst.*`, in any locale) lists the volumes in order.
pub const VOLUME_DIGITS: usize = 5;
/// Most volumes a bundle holds: as many as [`VOLUME_DIGITS`] digits can number.
pub const MAX_VOLUMES: usize = 100_000;

/// The name of volume `index`: `images.tar.zst.00000`, `images.tar.zst.00001`, …
/// (The writer opens no volume from [`MAX_VOLUMES`] on, and
/// [`crate::manifest::BundleManifest::check`] refuses a bundle that lists more.)
pub fn volume_name(index: usize) -> String {
    format!("{VOLUME_PREFIX}{index:0width$}", width = VOLUME_DIGITS)
}

/// The index of the volume called `name`, when it is a volume's name exactly
/// (the prefix and [`VOLUME_DIGITS`] ASCII digits).
pub fn volume_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(VOLUME_PREFIX)?;
    let exact = digits.len() == VOLUME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    exact.then(|| digits.parse().ok()).flatten()
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
}
