//! Signature files (prehashed minisign "ED" form): signing, parsing and verifying.

use std::path::Path;

use blake2::{Blake2b512, Digest};
use ed25519_dalek::Signer;

use super::error::{FileKind, FormatError, SignError};
use super::keys::{ALG_ED, KeyId, PublicKey, SecretKey, array};
use super::text::{self, Origin, TRUSTED_PREFIX, UNTRUSTED_PREFIX};

/// Signature algorithm bytes of a prehashed signature: Ed25519 over BLAKE2b-512 of the file.
const ALG_PREHASHED: [u8; 2] = *b"ED";
/// Length of a decoded signature line: algorithm, key id, Ed25519 signature.
const SIGNATURE_LEN: usize = 2 + 8 + 64;

/// The longest trusted comment minisign reads back (its line buffer holds 8192 bytes).
pub const MAX_TRUSTED_COMMENT: usize = 8192 - TRUSTED_PREFIX.len() - 2;

/// A minisign signature: the signature of a file's hash and the signature of a trusted comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    untrusted_comment: String,
    prehashed: bool,
    key_id: KeyId,
    signature: [u8; 64],
    trusted_comment: String,
    global_signature: [u8; 64],
}

impl Signature {
    /// Parses the text of a minisign signature file (four lines).
    ///
    /// Both the prehashed ("ED") and the legacy ("Ed") forms parse; [`verify`]
    /// refuses the legacy one.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        Self::parse_from(text, None)
    }

    /// Reads and parses a minisign signature file.
    pub fn from_file(path: &Path) -> Result<Self, SignError> {
        // On the medium: only the regular file itself.
        let text = text::read_small_file(path, crate::files::Links::Refuse)?;
        Self::parse_from(&text, Some(path))
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Self, SignError> {
        let origin = Origin {
            kind: FileKind::Signature,
            path,
        };
        Self::parse_lines(text).map_err(|e| origin.malformed(e))
    }

    fn parse_lines(text: &str) -> Result<Self, FormatError> {
        let [untrusted, signature, trusted, global] = text::split_lines(
            text,
            [
                "untrusted comment",
                "base64 signature",
                "trusted comment",
                "base64 global signature",
            ],
        )?;
        let untrusted = text::strip_prefix(untrusted, 1, UNTRUSTED_PREFIX)?;
        let bytes = text::decode_base64(signature, 2, SIGNATURE_LEN)?;
        let trusted = text::strip_prefix(trusted, 3, TRUSTED_PREFIX)?;
        let global = text::decode_base64(global, 4, 64)?;
        let prehashed = match [bytes[0], bytes[1]] {
            ALG_PREHASHED => true,
            ALG_ED => false,
            found => {
                return Err(FormatError::Algorithm {
                    found,
                    expected: "ED",
                });
            }
        };
        Ok(Signature {
            untrusted_comment: untrusted.to_owned(),
            prehashed,
            key_id: KeyId::from_bytes(array(&bytes[2..10])),
            signature: array(&bytes[10..]),
            trusted_comment: trusted.to_owned(),
            global_signature: array(&global),
        })
    }

    /// The text of a minisign signature file (four lines, trailing newline).
    pub fn to_file_text(&self) -> String {
        let mut line2 = [0u8; SIGNATURE_LEN];
        line2[..2].copy_from_slice(if self.prehashed {
            &ALG_PREHASHED
        } else {
            &ALG_ED
        });
        line2[2..10].copy_from_slice(self.key_id.as_bytes());
        line2[10..].copy_from_slice(&self.signature);
        format!(
            "{UNTRUSTED_PREFIX}{}\n{}\n{TRUSTED_PREFIX}{}\n{}\n",
            self.untrusted_comment,
            text::encode_base64(&line2),
            self.trusted_comment,
            text::encode_base64(&self.global_signature),
        )
    }

    /// The id of the key that made the signature (as the signature claims it).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The trusted comment, without its prefix; covered by the global signature.
    pub fn trusted_comment(&self) -> &str {
        &self.trusted_comment
    }

    /// The untrusted comment, without its prefix; anyone can change it.
    pub fn untrusted_comment(&self) -> &str {
        &self.untrusted_comment
    }

    /// Whether this is the prehashed ("ED") form, the only one [`verify`] accepts.
    pub fn is_prehashed(&self) -> bool {
        self.prehashed
    }
}

impl SecretKey {
    /// Signs `data` in minisign's prehashed form, with `trusted_comment` covered by the global signature.
    ///
    /// The trusted comment must be one line without NUL characters and at most
    /// [`MAX_TRUSTED_COMMENT`] bytes, so that minisign reads back exactly what was signed.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<Signature, SignError> {
        if trusted_comment.contains(['\n', '\r', '\0']) {
            return Err(SignError::TrustedCommentNotOneLine);
        }
        if trusted_comment.len() > MAX_TRUSTED_COMMENT {
            return Err(SignError::TrustedCommentTooLong {
                len: trusted_comment.len(),
                max: MAX_TRUSTED_COMMENT,
            });
        }
        let key = self.signing_key();
        let signature = key.sign(&Blake2b512::digest(data)).to_bytes();
        let global_signature = key
            .sign(&global_message(&signature, trusted_comment))
            .to_bytes();
        Ok(Signature {
            untrusted_comment: format!("signature from bundle secret key {}", self.key_id()),
            prehashed: true,
            key_id: self.key_id(),
            signature,
            trusted_comment: trusted_comment.to_owned(),
            global_signature,
        })
    }
}

/// Checks that `sig` is `public`'s signature of `data` and of its trusted comment.
///
/// In order: the key ids must match ([`SignError::KeyIdMismatch`]); the
/// legacy non-prehashed form is refused; both Ed25519 signatures are checked
/// with ed25519-dalek's `verify_strict`; then jedisct1's independent
/// `minisign-verify` must accept the signature too.
pub fn verify(public: &PublicKey, data: &[u8], sig: &Signature) -> Result<(), SignError> {
    let key_id = sig.key_id;
    if key_id != public.key_id() {
        return Err(SignError::KeyIdMismatch {
            signature: key_id,
            trusted: public.key_id(),
        });
    }
    if !sig.prehashed {
        return Err(SignError::LegacySignature { key_id });
    }
    let key = public.verifying_key();
    let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
    key.verify_strict(&Blake2b512::digest(data), &signature)
        .map_err(|source| SignError::BadSignature { key_id, source })?;
    let global = ed25519_dalek::Signature::from_bytes(&sig.global_signature);
    key.verify_strict(
        &global_message(&sig.signature, &sig.trusted_comment),
        &global,
    )
    .map_err(|source| SignError::BadTrustedComment { key_id, source })?;

    let independent = |source| SignError::IndependentCheck { key_id, source };
    let their_key =
        minisign_verify::PublicKey::from_base64(&public.to_base64()).map_err(independent)?;
    let their_sig = minisign_verify::Signature::decode(&sig.to_file_text()).map_err(independent)?;
    their_key
        .verify(data, &their_sig, false)
        .map_err(independent)
}

/// What the global signature covers: the signature ‖ the trusted comment's bytes.
fn global_message(signature: &[u8; 64], trusted_comment: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(signature.len() + trusted_comment.len());
    message.extend_from_slice(signature);
    message.extend_from_slice(trusted_comment.as_bytes());
    message
}
