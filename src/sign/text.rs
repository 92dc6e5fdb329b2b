//! Line-level parsing shared by the key and signature parsers, and bounded file reading.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::error::{FileKind, FormatError, SignError};

/// Prefix of the first line of every minisign file.
pub(super) const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
/// Prefix of the third line of a signature file.
pub(super) const TRUSTED_PREFIX: &str = "trusted comment: ";

/// The largest key or signature file read (a signature's trusted comment is at most ~8 KiB).
pub(super) const MAX_FILE_SIZE: u64 = 64 * 1024;

/// Where a text being parsed came from, to name it in errors.
#[derive(Clone, Copy)]
pub(super) struct Origin<'a> {
    pub(super) kind: FileKind,
    pub(super) path: Option<&'a Path>,
}

impl Origin<'_> {
    /// Wraps a format problem into the error that names this text.
    pub(super) fn malformed(self, source: FormatError) -> SignError {
        SignError::Malformed {
            kind: self.kind,
            path: self.path.map(Path::to_path_buf),
            source,
        }
    }
}

/// Splits `text` into exactly `N` lines named by `expected`; only empty lines may follow.
///
/// Lines end with `\n`; one `\r` before it is dropped, as minisign does.
pub(super) fn split_lines<'t, const N: usize>(
    text: &'t str,
    expected: [&'static str; N],
) -> Result<[&'t str; N], FormatError> {
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let mut out = [""; N];
    for (index, (slot, what)) in out.iter_mut().zip(expected).enumerate() {
        let line = index + 1;
        match lines.next() {
            Some(text) if !text.is_empty() => *slot = text,
            _ => {
                return Err(FormatError::MissingLine {
                    line,
                    expected: what,
                });
            }
        }
        if slot.contains('\0') {
            return Err(FormatError::NulCharacter { line });
        }
    }
    for (index, rest) in lines.enumerate() {
        if !rest.is_empty() {
            return Err(FormatError::ExtraLine {
                line: N + index + 1,
            });
        }
    }
    Ok(out)
}

/// Returns what follows `prefix` on 1-based line `line`.
pub(super) fn strip_prefix<'t>(
    text: &'t str,
    line: usize,
    prefix: &'static str,
) -> Result<&'t str, FormatError> {
    text.strip_prefix(prefix)
        .ok_or(FormatError::MissingPrefix { line, prefix })
}

/// Decodes base64 line `line` (standard alphabet, padded, canonical) of exactly `expected` bytes.
///
/// The bytes are wiped when dropped, since secret keys pass through here.
pub(super) fn decode_base64(
    text: &str,
    line: usize,
    expected: usize,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text)
            .map_err(|source| FormatError::Base64 { line, source })?,
    );
    if bytes.len() != expected {
        return Err(FormatError::Length {
            line,
            expected,
            found: bytes.len(),
        });
    }
    Ok(bytes)
}

/// Encodes bytes as one base64 line (standard alphabet, padded), as minisign writes them.
pub(super) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Reads a small text file whole, refusing anything over [`MAX_FILE_SIZE`].
pub(super) fn read_small(file: File, path: &Path) -> Result<Zeroizing<String>, SignError> {
    let read_error = |source| SignError::Read {
        path: PathBuf::from(path),
        source,
    };
    // Room for any key up front, so growing the string leaves no copies of a secret behind.
    let mut text = Zeroizing::new(String::with_capacity(16 * 1024));
    file.take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(SignError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_SIZE,
        });
    }
    Ok(text)
}

/// Opens `path` (a regular file, without blocking: see
/// [`crate::files::open_regular`]) and reads it with [`read_small`].
pub(super) fn read_small_file(
    path: &Path,
    links: crate::files::Links,
) -> Result<Zeroizing<String>, SignError> {
    read_small(crate::files::open_regular(path, links)?, path)
}

/// Replaces line breaks and NUL characters so `text` fits on one comment line.
pub(super) fn one_line(text: &str) -> String {
    text.replace(['\r', '\n', '\0'], " ")
}
