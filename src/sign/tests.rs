//! Unit tests: signing and verifying, every parse error, key files and their modes.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

const DATA: &[u8] = b"{\"format\":1,\"images\":[]}\n";
const COMMENT: &str = "timestamp:1700000000\tfile:bundle.json\thashed";

fn signed() -> (SecretKey, PublicKey, Signature) {
    let (secret, public) = generate("test");
    let sig = secret.sign(DATA, COMMENT).expect("signing");
    (secret, public, sig)
}

/// `text` with 1-based line `n` replaced by `line`.
fn with_line(text: &str, n: usize, line: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines[n - 1] = line;
    lines.join("\n")
}

/// `text` with the base64 on 1-based line `n` decoded, changed by `edit` and encoded again.
fn edit_base64(text: &str, n: usize, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let line = text.split('\n').nth(n - 1).expect("line exists");
    let mut bytes = STANDARD.decode(line).expect("base64 line");
    edit(&mut bytes);
    with_line(text, n, &STANDARD.encode(&bytes))
}

fn malformed(result: Result<impl std::fmt::Debug, SignError>) -> FormatError {
    match result {
        Err(SignError::Malformed { source, .. }) => source,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn sign_parse_verify_round_trip() {
    let (_, public, sig) = signed();
    let text = sig.to_file_text();
    assert_eq!(text.lines().count(), 4);
    assert!(text.ends_with('\n'));
    let parsed = Signature::parse(&text).expect("parsing our own signature");
    assert_eq!(parsed, sig);
    assert_eq!(parsed.to_file_text(), text);
    assert_eq!(parsed.trusted_comment(), COMMENT);
    assert_eq!(parsed.key_id(), public.key_id());
    assert!(parsed.is_prehashed());
    verify(&public, DATA, &parsed).expect("a fresh signature verifies");
}

#[test]
fn flipped_data_byte_fails() {
    let (_, public, sig) = signed();
    let mut data = DATA.to_vec();
    data[3] ^= 1;
    let err = verify(&public, &data, &sig).expect_err("changed data must fail");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");
    assert!(verify(&public, &DATA[..DATA.len() - 1], &sig).is_err());
}

#[test]
fn changed_trusted_comment_fails() {
    let (_, public, sig) = signed();
    let text = with_line(
        &sig.to_file_text(),
        3,
        "trusted comment: timestamp:1700000001\tfile:bundle.json\thashed",
    );
    let changed = Signature::parse(&text).expect("still well-formed");
    let err = verify(&public, DATA, &changed).expect_err("changed comment must fail");
    assert!(
        matches!(err, SignError::BadTrustedComment { .. }),
        "{err:?}"
    );
}

#[test]
fn changed_untrusted_comment_still_verifies() {
    let (_, public, sig) = signed();
    let text = with_line(&sig.to_file_text(), 1, "untrusted comment: anything at all");
    let changed = Signature::parse(&text).expect("still well-formed");
    assert_eq!(changed.untrusted_comment(), "anything at all");
    verify(&public, DATA, &changed).expect("untrusted comments are not signed");
}

#[test]
fn other_key_is_a_key_id_mismatch_naming_both_ids() {
    let (_, _, sig) = signed();
    let (_, other) = generate("other");
    let err = verify(&other, DATA, &sig).expect_err("another key must fail");
    match &err {
        SignError::KeyIdMismatch { signature, trusted } => {
            assert_eq!(*signature, sig.key_id());
            assert_eq!(*trusted, other.key_id());
        }
        other => panic!("expected KeyIdMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&sig.key_id().to_string()), "{message}");
    assert!(message.contains(&other.key_id().to_string()), "{message}");
}

#[test]
fn same_key_id_with_wrong_bytes_fails() {
    let (_, public, sig) = signed();
    let text = sig.to_file_text();

    let flipped = edit_base64(&text, 2, |b| b[40] ^= 0x01);
    let err = verify(&public, DATA, &Signature::parse(&flipped).expect("parses"))
        .expect_err("flipped signature byte");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");

    let flipped = edit_base64(&text, 4, |b| b[0] ^= 0x80);
    let err = verify(&public, DATA, &Signature::parse(&flipped).expect("parses"))
        .expect_err("flipped global signature byte");
    assert!(
        matches!(err, SignError::BadTrustedComment { .. }),
        "{err:?}"
    );

    // Another key's valid signature, relabelled with our key id.
    let (other_secret, _) = generate("other");
    let forged = other_secret.sign(DATA, COMMENT).expect("signing");
    let forged = edit_base64(&forged.to_file_text(), 2, |b| {
        b[2..10].copy_from_slice(public.key_id().as_bytes())
    });
    let forged = Signature::parse(&forged).expect("parses");
    assert_eq!(forged.key_id(), public.key_id());
    let err = verify(&public, DATA, &forged).expect_err("forged key id");
    assert!(matches!(err, SignError::BadSignature { .. }), "{err:?}");
}

#[test]
fn legacy_form_is_refused_after_the_key_id_check() {
    let (_, public, sig) = signed();
    let legacy = edit_base64(&sig.to_file_text(), 2, |b| b[1] = b'd');
    let legacy = Signature::parse(&legacy).expect("the legacy form parses");
    assert!(!legacy.is_prehashed());
    let err = verify(&public, DATA, &legacy).expect_err("legacy refused");
    assert!(matches!(err, SignError::LegacySignature { .. }), "{err:?}");
    assert!(err.to_string().contains("legacy"));

    let (_, other) = generate("");
    let err = verify(&other, DATA, &legacy).expect_err("other key");
    assert!(matches!(err, SignError::KeyIdMismatch { .. }), "{err:?}");
}

#[test]
fn signature_format_errors_each_have_their_variant() {
    let (_, _, sig) = signed();
    let text = sig.to_file_text();

    let extra = format!("{text}one more line\n");
    assert!(matches!(
        malformed(Signature::parse(&extra)),
        FormatError::ExtraLine { line: 5 }
    ));
    Signature::parse(&format!("{text}\n\n")).expect("trailing empty lines are fine");
    Signature::parse(&text.replace('\n', "\r\n")).expect("CRLF line ends are fine");
    Signature::parse(text.trim_end()).expect("a missing final newline is fine");

    let short: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert!(matches!(
        malformed(Signature::parse(&short)),
        FormatError::MissingLine { line: 4, .. }
    ));
    let no_prefix = with_line(&text, 1, "signature from someone");
    assert!(matches!(
        malformed(Signature::parse(&no_prefix)),
        FormatError::MissingPrefix { line: 1, .. }
    ));
    let no_prefix = with_line(&text, 3, COMMENT);
    assert!(matches!(
        malformed(Signature::parse(&no_prefix)),
        FormatError::MissingPrefix { line: 3, .. }
    ));
    let bad = with_line(&text, 2, "RUT!not base64!");
    assert!(matches!(
        malformed(Signature::parse(&bad)),
        FormatError::Base64 { line: 2, .. }
    ));
    let long = edit_base64(&text, 2, |b| b.push(0));
    assert!(matches!(
        malformed(Signature::parse(&long)),
        FormatError::Length {
            line: 2,
            expected: 74,
            found: 75
        }
    ));
    let short_global = edit_base64(&text, 4, |b| {
        b.pop();
    });
    assert!(matches!(
        malformed(Signature::parse(&short_global)),
        FormatError::Length { line: 4, .. }
    ));
    let algorithm = edit_base64(&text, 2, |b| b[..2].copy_from_slice(b"XX"));
    assert!(matches!(
        malformed(Signature::parse(&algorithm)),
        FormatError::Algorithm { found, .. } if &found == b"XX"
    ));
    let nul = with_line(&text, 3, "trusted comment: a\0b");
    assert!(matches!(
        malformed(Signature::parse(&nul)),
        FormatError::NulCharacter { line: 3 }
    ));
}

#[test]
fn key_id_prints_like_minisign() {
    // minisign stores the id little-endian and prints it as a zero-padded hex number.
    let id = KeyId::from_bytes([0x73, 0xd5, 0x16, 0x60, 0x2b, 0x76, 0xb0, 0x02]);
    assert_eq!(id.to_string(), "02B0762B6016D573");
    assert_eq!(format!("{id:?}"), "KeyId(02B0762B6016D573)");
}

#[test]
fn public_key_round_trip_and_errors() {
    let (_, public) = generate("laptop");
    let text = public.to_file_text();
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "untrusted comment: laptop - minisign public key {}",
                public.key_id()
            )
            .as_str()
        )
    );
    let parsed = PublicKey::parse(&text).expect("parsing our own key");
    assert_eq!(parsed, public);
    assert_eq!(parsed.to_file_text(), text);

    let algorithm = edit_base64(&text, 2, |b| b[1] = b'D');
    assert!(matches!(
        malformed(PublicKey::parse(&algorithm)),
        FormatError::Algorithm { .. }
    ));
    let short = edit_base64(&text, 2, |b| {
        b.pop();
    });
    assert!(matches!(
        malformed(PublicKey::parse(&short)),
        FormatError::Length { expected: 42, .. }
    ));
    let small_order = edit_base64(&text, 2, |b| {
        b[10..].fill(0);
        b[10] = 1; // the identity point
    });
    assert!(matches!(
        malformed(PublicKey::parse(&small_order)),
        FormatError::WeakPublicKey
    ));
    assert!(matches!(
        malformed(PublicKey::parse(&format!("{text}x\n"))),
        FormatError::ExtraLine { line: 3 }
    ));
}

#[test]
fn secret_key_round_trip() {
    let (secret, public) = generate("bastion\nsecond line");
    let text = secret.to_file_text();
    assert_eq!(text.lines().count(), 2, "comments are made one line");
    let parsed = SecretKey::parse(&text).expect("parsing our own key");
    assert_eq!(parsed.key_id(), secret.key_id());
    assert_eq!(parsed.public_key(), public);
    assert_eq!(*parsed.to_file_text(), *text);
    let sig = parsed.sign(DATA, COMMENT).expect("signing");
    verify(&public, DATA, &sig).expect("the parsed key signs for the public key");
    assert!(
        !format!("{secret:?}").contains(&*text),
        "Debug shows no key material"
    );
}

#[test]
fn secret_key_checksum_is_blake2b_256() {
    // Expected value from Python: hashlib.blake2b(b"Ed" + bytes(range(1, 9)) + bytes(range(64)), digest_size=32)
    let pair: [u8; 64] = std::array::from_fn(|i| i as u8);
    let sum = keys::checksum(&KeyId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]), &pair);
    assert_eq!(
        hex::encode(sum),
        "50d2925ad603b64e627e8860297f78f76c5a7b552e28425809e2102eff446577"
    );
}

#[test]
fn secret_key_damage_is_detected() {
    let (secret, _) = generate("");
    let text = secret.to_file_text();

    let checksum = edit_base64(&text, 2, |b| b[157] ^= 1);
    assert!(matches!(
        malformed(SecretKey::parse(&checksum)),
        FormatError::Checksum
    ));
    // minisign -G -W leaves the checksum zero; that is accepted.
    let zero = edit_base64(&text, 2, |b| b[126..].fill(0));
    SecretKey::parse(&zero).expect("an all-zero checksum is accepted");
    // A public half that does not belong to the seed, with a checksum that matches.
    let mismatched = edit_base64(&text, 2, |b| {
        b[100] ^= 1;
        let pair: [u8; 64] = b[62..126].try_into().expect("64 bytes");
        let sum = keys::checksum(&secret.key_id(), &pair);
        b[126..].copy_from_slice(&sum);
    });
    assert!(matches!(
        malformed(SecretKey::parse(&mismatched)),
        FormatError::KeyPairMismatch { .. }
    ));
    let kdf = edit_base64(&text, 2, |b| b[2..4].copy_from_slice(b"Xx"));
    assert!(matches!(
        malformed(SecretKey::parse(&kdf)),
        FormatError::Kdf { .. }
    ));
    let chk = edit_base64(&text, 2, |b| b[4..6].copy_from_slice(b"B3"));
    assert!(matches!(
        malformed(SecretKey::parse(&chk)),
        FormatError::ChecksumAlgorithm { .. }
    ));
}

#[test]
fn trusted_comment_must_be_one_line_and_short_enough() {
    let (secret, public) = generate("");
    for bad in ["a\nb", "a\rb", "a\0b"] {
        let err = secret.sign(DATA, bad).expect_err("not one line");
        assert!(
            matches!(err, SignError::TrustedCommentNotOneLine),
            "{err:?}"
        );
    }
    let longest = "x".repeat(MAX_TRUSTED_COMMENT);
    let sig = secret.sign(DATA, &longest).expect("the longest comment");
    verify(&public, DATA, &sig).expect("verifies");
    let err = secret
        .sign(DATA, &format!("{longest}x"))
        .expect_err("too long");
    assert!(
        matches!(err, SignError::TrustedCommentTooLong { .. }),
        "{err:?}"
    );
}

#[test]
fn demo_key_is_recognised_by_its_key_not_its_comment() {
    let demo = PublicKey::parse(DEMO_PUBLIC_KEY).expect("keys/demo.pub parses");
    assert!(demo.is_demo());
    assert!(demo.comment().contains("DEMO KEY - NOT SECRET"));
    let recommented = with_line(DEMO_PUBLIC_KEY, 1, "untrusted comment: my real key, honest");
    assert!(PublicKey::parse(&recommented).expect("parses").is_demo());
    let (_, other) = generate("");
    assert!(!other.is_demo());
}

#[test]
fn demo_secret_key_matches_demo_public_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/demo.key");
    let text = fs::read_to_string(&path).expect("reading keys/demo.key");
    let secret = SecretKey::parse(&text).expect("keys/demo.key parses");
    assert!(secret.public_key().is_demo());
}
