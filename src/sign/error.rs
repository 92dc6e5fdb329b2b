//! Errors of the `sign` module: one enum for what went wrong with a key or
//! signature, one for what is wrong inside the text of a file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::KeyId;

/// Which kind of minisign file a [`FormatError`] was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A public key file (`*.pub`).
    PublicKey,
    /// A secret key file (`*.key`).
    SecretKey,
    /// A signature file (`*.minisig`).
    Signature,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::PublicKey => "minisign public key",
            FileKind::SecretKey => "minisign secret key",
            FileKind::Signature => "minisign signature",
        })
    }
}

/// Something wrong with keys or signatures: reading, writing, parsing or verifying them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A key or signature file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// A key or signature file is not a regular file (or is a link where none is accepted).
    #[error(transparent)]
    Open(#[from] crate::files::OpenError),

    /// A file is far larger than any key or signature can be.
    #[error("{} is larger than {limit} bytes, too large for a minisign key or signature", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The largest size accepted.
        limit: u64,
    },

    /// A key file or its directory could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// A key file already exists and overwriting was not asked for.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A secret key file can be read by its group or by others.
    #[error(
        "secret key {} has mode {mode:04o}, so group or others can read it; \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecureKeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },

    /// A secret key is protected by a password (scrypt) and none was given.
    #[error(
        "{} is protected by a password: give it on the terminal, in a file \
         (--key-password-file), or in BUNDLE_KEY_PASSWORD",
        describe(FileKind::SecretKey, path.as_deref())
    )]
    EncryptedKey {
        /// The key file, when it was read from one.
        path: Option<PathBuf>,
    },

    /// The password does not open a password-protected secret key.
    #[error("wrong password for {}", describe(FileKind::SecretKey, path.as_deref()))]
    WrongPassword {
        /// The key file, when it was read from one.
        path: Option<PathBuf>,
    },

    /// The key's scrypt parameters are not ones minisign writes.
    #[error("{}: unusable scrypt parameters ({reason})", describe(FileKind::SecretKey, path.as_deref()))]
    KdfParams {
        /// The key file, when it was read from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },

    /// The text of a key or signature is not in minisign format.
    #[error("malformed {}", describe(*kind, path.as_deref()))]
    Malformed {
        /// What the text should have been.
        kind: FileKind,
        /// The file, when it was read from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },

    /// A trusted comment to sign contains a line break or NUL character.
    #[error("a trusted comment must be one line without NUL characters")]
    TrustedCommentNotOneLine,

    /// A trusted comment to sign is longer than minisign can read back.
    #[error("the trusted comment is {len} bytes long; minisign reads at most {max}")]
    TrustedCommentTooLong {
        /// Its length in bytes.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },

    /// The signature was made by another key than the trusted one.
    #[error("the signature was made with key {signature}, but the trusted public key is {trusted}")]
    KeyIdMismatch {
        /// The key id recorded in the signature.
        signature: KeyId,
        /// The key id of the trusted public key.
        trusted: KeyId,
    },

    /// The signature is in minisign's legacy form (Ed25519 over the whole file, "Ed").
    #[error(
        "the signature by key {key_id} is in the legacy non-prehashed minisign form, \
         which is refused; sign again with `bundle` or minisign 0.8 or later"
    )]
    LegacySignature {
        /// The key id recorded in the signature.
        key_id: KeyId,
    },

    /// The signature does not match the data: the data or the signature was changed.
    #[error(
        "the signature by key {key_id} does not match the data: the data or the signature was changed"
    )]
    BadSignature {
        /// The key id recorded in the signature.
        key_id: KeyId,
        /// The Ed25519 failure.
        #[source]
        source: ed25519_dalek::SignatureError,
    },

    /// The global signature does not match the trusted comment: it was changed.
    #[error("the trusted comment signed by key {key_id} was changed")]
    BadTrustedComment {
        /// The key id recorded in the signature.
        key_id: KeyId,
        /// The Ed25519 failure.
        #[source]
        source: ed25519_dalek::SignatureError,
    },

    /// The independent verifier (`minisign-verify`) refused a signature.
    #[error("the independent minisign verifier refused the signature by key {key_id}")]
    IndependentCheck {
        /// The key id recorded in the signature.
        key_id: KeyId,
        /// What `minisign-verify` said.
        #[source]
        source: minisign_verify::Error,
    },
}

/// What is wrong inside the text of a minisign key or signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The text ends before an expected line.
    #[error("line {line} ({expected}) is missing")]
    MissingLine {
        /// 1-based line number.
        line: usize,
        /// What the line should hold.
        expected: &'static str,
    },

    /// A comment line lacks its prefix.
    #[error("line {line} does not start with {prefix:?}")]
    MissingPrefix {
        /// 1-based line number.
        line: usize,
        /// The prefix expected.
        prefix: &'static str,
    },

    /// There is text after the last expected line.
    #[error("unexpected text on line {line}, after the end of the file's content")]
    ExtraLine {
        /// 1-based line number.
        line: usize,
    },

    /// A line holds a NUL character, which minisign cannot read.
    #[error("line {line} contains a NUL character")]
    NulCharacter {
        /// 1-based line number.
        line: usize,
    },

    /// A line that should be base64 is not.
    #[error("line {line} is not valid base64")]
    Base64 {
        /// 1-based line number.
        line: usize,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },

    /// A base64 line decodes to the wrong number of bytes.
    #[error("line {line} decodes to {found} bytes instead of {expected}")]
    Length {
        /// 1-based line number.
        line: usize,
        /// The length the format requires.
        expected: usize,
        /// The length found.
        found: usize,
    },

    /// The signature algorithm is not one this format allows here.
    #[error(
        "unsupported signature algorithm {:?} (expected {expected:?})",
        String::from_utf8_lossy(found)
    )]
    Algorithm {
        /// The two algorithm bytes found.
        found: [u8; 2],
        /// The algorithm expected.
        expected: &'static str,
    },

    /// The secret key names an unknown key derivation function.
    #[error(
        "unsupported key derivation function {:?}",
        String::from_utf8_lossy(found)
    )]
    Kdf {
        /// The two KDF bytes found.
        found: [u8; 2],
    },

    /// The secret key names an unknown checksum function.
    #[error(
        "unsupported checksum function {:?} (expected \"B2\")",
        String::from_utf8_lossy(found)
    )]
    ChecksumAlgorithm {
        /// The two checksum-algorithm bytes found.
        found: [u8; 2],
    },

    /// The secret key's BLAKE2b checksum does not match its content.
    #[error("the checksum does not match: the secret key is damaged")]
    Checksum,

    /// The public half stored in the secret key does not belong to its seed.
    #[error("the public half of the secret key does not match its seed: the key is damaged")]
    KeyPairMismatch {
        /// The Ed25519 failure.
        #[source]
        source: ed25519_dalek::SignatureError,
    },

    /// The 32 bytes of a public key are not a valid Ed25519 point.
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey {
        /// The Ed25519 failure.
        #[source]
        source: ed25519_dalek::SignatureError,
    },

    /// The public key is of small order, so it would accept forged signatures.
    #[error("weak Ed25519 public key (small order); refusing it")]
    WeakPublicKey,
}

/// "minisign signature bundle.json.minisig", or "minisign signature" without a file.
fn describe(kind: FileKind, path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("{kind} {}", path.display()),
        None => kind.to_string(),
    }
}
