//! Key ids, public keys and secret keys in minisign's file formats.

use std::fmt;
use std::path::Path;

use blake2::Blake2b;
use blake2::digest::Digest;
use blake2::digest::consts::U32;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::error::{FileKind, FormatError, SignError};
use super::text::{self, Origin, UNTRUSTED_PREFIX};

/// The demo public key shipped in `keys/demo.pub`; its secret key is public too.
pub const DEMO_PUBLIC_KEY: &str = include_str!("../../keys/demo.pub");

/// Signature algorithm bytes of keys (and of legacy signatures).
pub(super) const ALG_ED: [u8; 2] = *b"Ed";
/// Key derivation of an encrypted secret key (scrypt).
const KDF_SCRYPT: [u8; 2] = *b"Sc";
/// Key derivation of an unencrypted secret key.
const KDF_NONE: [u8; 2] = [0, 0];
/// Checksum algorithm of secret keys (BLAKE2b-256).
const CHK_B2: [u8; 2] = *b"B2";

/// Length of a decoded public key: algorithm, key id, Ed25519 key.
const PUBLIC_LEN: usize = 2 + 8 + 32;
/// Length of a decoded secret key: algorithms, KDF parameters, key id, key pair, checksum.
const SECRET_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;
/// Where the key id starts in a decoded secret key.
const SECRET_KEY_ID_AT: usize = 54;

/// The 8-byte id minisign gives a key pair; signatures name the key that made them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// Wraps the 8 bytes as they appear in minisign files.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        KeyId(bytes)
    }

    /// The 8 bytes as they appear in minisign files.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    /// 16 upper-case hex digits of the little-endian number, as minisign prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A minisign public key: the key id and the Ed25519 key that checks signatures.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key_id: KeyId,
    key: VerifyingKey,
    comment: String,
}

impl PartialEq for PublicKey {
    /// Two public keys are equal when their key ids and keys are; comments do not count.
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id && self.key == other.key
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// Parses the text of a minisign public key file.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        Self::parse_from(text, None)
    }

    /// Reads and parses a minisign public key file.
    pub fn from_file(path: &Path) -> Result<Self, SignError> {
        // The operator's own file: a link to a regular file is fine.
        let text = text::read_small_file(path, crate::files::Links::Follow)?;
        Self::parse_from(&text, Some(path))
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Self, SignError> {
        let origin = Origin {
            kind: FileKind::PublicKey,
            path,
        };
        Self::parse_lines(text).map_err(|e| origin.malformed(e))
    }

    fn parse_lines(text: &str) -> Result<Self, FormatError> {
        let [comment, key] = text::split_lines(text, ["untrusted comment", "base64 key"])?;
        let comment = text::strip_prefix(comment, 1, UNTRUSTED_PREFIX)?;
        let bytes = text::decode_base64(key, 2, PUBLIC_LEN)?;
        let algorithm = [bytes[0], bytes[1]];
        if algorithm != ALG_ED {
            return Err(FormatError::Algorithm {
                found: algorithm,
                expected: "Ed",
            });
        }
        let key_id = KeyId(array(&bytes[2..10]));
        let key = checked_verifying_key(&array(&bytes[10..42]))?;
        Ok(PublicKey {
            key_id,
            key,
            comment: comment.to_owned(),
        })
    }

    /// The key id that signatures made by the matching secret key carry.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The untrusted comment of the key file, without its prefix.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The key as one base64 string, the form `minisign -P` takes.
    pub fn to_base64(&self) -> String {
        let mut bytes = [0u8; PUBLIC_LEN];
        bytes[..2].copy_from_slice(&ALG_ED);
        bytes[2..10].copy_from_slice(&self.key_id.0);
        bytes[10..].copy_from_slice(self.key.as_bytes());
        text::encode_base64(&bytes)
    }

    /// The text of a minisign public key file (two lines).
    pub fn to_file_text(&self) -> String {
        format!("{UNTRUSTED_PREFIX}{}\n{}\n", self.comment, self.to_base64())
    }

    /// Whether this is the demo key of `keys/demo.pub`, whose secret key anyone can read.
    pub fn is_demo(&self) -> bool {
        // DEMO_PUBLIC_KEY parses: a unit test holds it to that.
        PublicKey::parse(DEMO_PUBLIC_KEY).is_ok_and(|demo| demo == *self)
    }

    pub(super) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// A minisign secret key (unencrypted); its key material is wiped when dropped.
pub struct SecretKey {
    key_id: KeyId,
    /// Wipes itself on drop (ed25519-dalek's `zeroize` feature).
    signing: SigningKey,
    comment: String,
    public_comment: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Parses the text of an unencrypted minisign secret key file.
    ///
    /// Keys written by `minisign -G -W` carry an all-zero checksum (minisign
    /// only computes it for encrypted keys); those are accepted, any other
    /// checksum must match. Either way the public half must match the seed.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        Self::parse_from(text, None)
    }

    /// Reads and parses an unencrypted secret key file, refusing one that
    /// group or others can read.
    pub fn from_file(path: &Path) -> Result<Self, SignError> {
        Self::from_file_with(path, &mut || None)
    }

    /// Like [`SecretKey::from_file`], also opening a password-protected key
    /// (`minisign -G`): `password` is asked only for such a key; `None` means
    /// none was given.
    pub fn from_file_with(
        path: &Path,
        password: &mut dyn FnMut() -> Option<Zeroizing<String>>,
    ) -> Result<Self, SignError> {
        let file = crate::files::open_regular(path, crate::files::Links::Follow)?;
        check_private(&file, path)?;
        let text = text::read_small(file, path)?;
        Self::parse_with(&text, Some(path), password)
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Self, SignError> {
        Self::parse_with(text, path, &mut || None)
    }

    fn parse_with(
        text: &str,
        path: Option<&Path>,
        password: &mut dyn FnMut() -> Option<Zeroizing<String>>,
    ) -> Result<Self, SignError> {
        let origin = Origin {
            kind: FileKind::SecretKey,
            path,
        };
        let [comment, key] = text::split_lines(text, ["untrusted comment", "base64 key"])
            .map_err(|e| origin.malformed(e))?;
        let comment =
            text::strip_prefix(comment, 1, UNTRUSTED_PREFIX).map_err(|e| origin.malformed(e))?;
        let mut bytes = Zeroizing::new(
            text::decode_base64(key, 2, SECRET_LEN).map_err(|e| origin.malformed(e))?,
        );
        let field = |at: usize| [bytes[at], bytes[at + 1]];
        if field(0) != ALG_ED {
            return Err(origin.malformed(FormatError::Algorithm {
                found: field(0),
                expected: "Ed",
            }));
        }
        let encrypted = match field(2) {
            KDF_NONE => false,
            KDF_SCRYPT => true,
            found => return Err(origin.malformed(FormatError::Kdf { found })),
        };
        if field(4) != CHK_B2 {
            return Err(origin.malformed(FormatError::ChecksumAlgorithm { found: field(4) }));
        }
        if encrypted {
            let owned = || path.map(Path::to_path_buf);
            let password = password().ok_or_else(|| SignError::EncryptedKey { path: owned() })?;
            let stream = scrypt_stream(password.as_bytes(), &bytes).map_err(|reason| {
                SignError::KdfParams {
                    path: owned(),
                    reason,
                }
            })?;
            for (b, s) in bytes[SECRET_KEY_ID_AT..].iter_mut().zip(stream.iter()) {
                *b ^= s;
            }
        }
        let key_id = KeyId(array(&bytes[SECRET_KEY_ID_AT..SECRET_KEY_ID_AT + 8]));
        let pair = Zeroizing::new(array::<64>(&bytes[62..126]));
        let stored = &bytes[126..];
        let sum_ok = stored == checksum(&key_id, &pair).as_slice();
        if encrypted && !sum_ok {
            // The checksum is what tells a wrong password from a right one.
            return Err(SignError::WrongPassword {
                path: path.map(Path::to_path_buf),
            });
        }
        if stored.iter().any(|&b| b != 0) && !sum_ok {
            return Err(origin.malformed(FormatError::Checksum));
        }
        let signing = SigningKey::from_keypair_bytes(&pair)
            .map_err(|source| origin.malformed(FormatError::KeyPairMismatch { source }))?;
        Ok(SecretKey {
            key_id,
            signing,
            comment: comment.to_owned(),
            public_comment: format!("minisign public key {key_id}"),
        })
    }

    /// The key id written into every signature this key makes.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id,
            key: self.signing.verifying_key(),
            comment: self.public_comment.clone(),
        }
    }

    /// The text of an unencrypted minisign secret key file, with its checksum.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        bytes[..2].copy_from_slice(&ALG_ED);
        bytes[2..4].copy_from_slice(&KDF_NONE);
        bytes[4..6].copy_from_slice(&CHK_B2);
        // Salt and KDF limits stay zero, as `minisign -G -W` leaves them.
        bytes[SECRET_KEY_ID_AT..62].copy_from_slice(&self.key_id.0);
        let pair = Zeroizing::new(self.signing.to_keypair_bytes());
        bytes[62..126].copy_from_slice(pair.as_slice());
        bytes[126..].copy_from_slice(&checksum(&self.key_id, &pair));
        let encoded = Zeroizing::new(text::encode_base64(bytes.as_slice()));
        let mut out = Zeroizing::new(String::with_capacity(
            UNTRUSTED_PREFIX.len() + self.comment.len() + encoded.len() + 2,
        ));
        out.push_str(UNTRUSTED_PREFIX);
        out.push_str(&self.comment);
        out.push('\n');
        out.push_str(&encoded);
        out.push('\n');
        out
    }

    pub(super) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// The 104 bytes minisign XORs over the key id, key pair and checksum of a
/// password-protected key: scrypt of the password with the key's salt, its
/// parameters chosen from the stored opslimit and memlimit as libsodium's
/// `crypto_pwhash_scryptsalsa208sha256` does (minisign's defaults give
/// N = 2^20, r = 8, p = 1: 1 GiB and about a second).
fn scrypt_stream(password: &[u8], key: &[u8]) -> Result<Zeroizing<[u8; 104]>, String> {
    let salt = &key[6..38];
    let opslimit = u64::from_le_bytes(array(&key[38..46]));
    let memlimit = u64::from_le_bytes(array(&key[46..54]));
    let (log_n, r, p) = pick_scrypt_params(opslimit, memlimit);
    // More than minisign's 1 GiB default by far is a hostile file, not a key.
    if log_n > 22 || u64::from(p) * u64::from(r) > 64 {
        return Err(format!("N = 2^{log_n}, r = {r}, p = {p}"));
    }
    // (The length here is only for the PHC string API; the output is 104 bytes.)
    let params = scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN)
        .map_err(|e| e.to_string())?;
    let mut out = Zeroizing::new([0u8; 104]);
    scrypt::scrypt(password, salt, &params, out.as_mut_slice()).map_err(|e| e.to_string())?;
    Ok(out)
}

/// libsodium's `pickparams` for scrypt: (log2 N, r, p).
fn pick_scrypt_params(opslimit: u64, memlimit: u64) -> (u8, u32, u32) {
    let opslimit = opslimit.max(32_768);
    let r: u64 = 8;
    let log_n_for = |max_n: u64| (1..63u8).find(|&l| (1u64 << l) > max_n / 2).unwrap_or(63);
    if opslimit < memlimit / 32 {
        (log_n_for(opslimit / (r * 4)), r as u32, 1)
    } else {
        let log_n = log_n_for(memlimit / (r * 128));
        let max_rp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
        (log_n, r as u32, (max_rp / r) as u32)
    }
}

/// Makes a new key pair from the operating system's random source.
///
/// `comment` (made one line) starts the untrusted comments of both key files,
/// before `minisign secret/public key <KEY ID>`; it may be empty.
pub fn generate(comment: &str) -> (SecretKey, PublicKey) {
    let signing = SigningKey::generate(&mut OsRng);
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let key_id = KeyId(id);
    let label = text::one_line(comment.trim());
    let comment_for = |what: &str| match label.as_str() {
        "" => format!("minisign {what} key {key_id}"),
        label => format!("{label} - minisign {what} key {key_id}"),
    };
    let secret = SecretKey {
        key_id,
        signing,
        comment: comment_for("secret"),
        public_comment: comment_for("public"),
    };
    let public = secret.public_key();
    (secret, public)
}

/// BLAKE2b-256 of "Ed" ‖ key id ‖ key pair: the checksum of a secret key file.
pub(super) fn checksum(key_id: &KeyId, pair: &[u8; 64]) -> [u8; 32] {
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(ALG_ED);
    hasher.update(key_id.0);
    hasher.update(pair);
    hasher.finalize().into()
}

/// A valid, non-weak Ed25519 public key.
fn checked_verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, FormatError> {
    let key = VerifyingKey::from_bytes(bytes)
        .map_err(|source| FormatError::InvalidPublicKey { source })?;
    if key.is_weak() {
        return Err(FormatError::WeakPublicKey);
    }
    Ok(key)
}

/// Copies a slice whose length the caller has already checked into an array.
pub(super) fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

/// Refuses an open secret key file whose mode lets group or others in, as ssh does.
///
/// Checks the opened file itself, so the file checked is the file read.
#[cfg(unix)]
fn check_private(file: &std::fs::File, path: &Path) -> Result<(), SignError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = file.metadata().map_err(|source| SignError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SignError::InsecureKeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Elsewhere file modes do not exist; access control is the platform's ACLs.
#[cfg(not(unix))]
fn check_private(_file: &std::fs::File, _path: &Path) -> Result<(), SignError> {
    Ok(())
}

#[cfg(test)]
mod scrypt_tests {
    use super::*;

    #[test]
    fn minisign_defaults_pick_libsodiums_parameters() {
        // minisign -G: opslimit 2^25, memlimit 2^30 → N = 2^20, r = 8, p = 1.
        assert_eq!(pick_scrypt_params(1 << 25, 1 << 30), (20, 8, 1));
        // libsodium's interactive limits (2^19, 2^24) → N = 2^14, r = 8, p = 1.
        assert_eq!(pick_scrypt_params(1 << 19, 1 << 24), (14, 8, 1));
        // opslimit below memlimit / 32 takes the first branch.
        assert_eq!(pick_scrypt_params(1 << 19, 1 << 30), (14, 8, 1));
    }

    #[test]
    fn absurd_scrypt_parameters_are_refused_before_any_work() {
        let mut key = vec![0u8; SECRET_LEN];
        key[38..46].copy_from_slice(&u64::MAX.to_le_bytes());
        key[46..54].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = scrypt_stream(b"pw", &key).unwrap_err();
        assert!(e.contains("N = 2^"), "{e}");
    }
}
