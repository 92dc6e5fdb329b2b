//! Tests of key and signature files on disk: modes, overwriting, errors naming the file.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// `text` with the base64 on line 2 decoded, changed by `edit` and encoded again.
fn edit_key_line(text: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let mut bytes = STANDARD.decode(lines[1]).expect("base64 line");
    edit(&mut bytes);
    let encoded = STANDARD.encode(&bytes);
    lines[1] = &encoded;
    lines.join("\n")
}

/// Writes `text` to `path` with mode 0600.
fn write_private(path: &Path, text: &str) {
    fs::write(path, text).expect("writing");
    set_mode(path, 0o600);
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) {}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn key_pair_files_have_safe_modes_and_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = dir.path().join("new/dir/bastion.v2");
    let (secret_path, public_path) = write_key_pair(&prefix, false).expect("writing keys");
    assert_eq!(secret_path, dir.path().join("new/dir/bastion.v2.key"));
    assert_eq!(public_path, dir.path().join("new/dir/bastion.v2.pub"));
    assert_eq!(mode_of(&secret_path), 0o600);
    let public_mode = mode_of(&public_path);
    assert_eq!(
        public_mode & !0o644,
        0,
        "at most 0644 (less under a strict umask)"
    );
    assert_eq!(public_mode & 0o600, 0o600);
    let secret = SecretKey::from_file(&secret_path).expect("0600 is accepted");
    let public = PublicKey::from_file(&public_path).expect("reading the public key");
    assert_eq!(secret.public_key(), public);
}

#[cfg(unix)]
#[test]
fn readable_secret_key_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret_path, _) = write_key_pair(&dir.path().join("k"), false).expect("writing keys");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        set_mode(&secret_path, mode);
        let err = SecretKey::from_file(&secret_path).expect_err("readable key refused");
        assert!(
            matches!(err, SignError::InsecureKeyMode { mode: m, .. } if m == mode),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&secret_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }
    set_mode(&secret_path, 0o400);
    SecretKey::from_file(&secret_path).expect("0400 is private too");
}

#[cfg(unix)]
#[test]
fn existing_key_files_are_kept_unless_forced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = dir.path().join("k");
    let (secret_path, public_path) = write_key_pair(&prefix, false).expect("writing keys");
    let before = fs::read_to_string(&public_path).expect("reading");

    fs::remove_file(&secret_path).expect("removing");
    let err = write_key_pair(&prefix, false).expect_err("the .pub still exists");
    assert!(matches!(&err, SignError::AlreadyExists { path } if *path == public_path));
    assert!(!secret_path.exists(), "a refusal writes nothing");
    assert_eq!(fs::read_to_string(&public_path).expect("reading"), before);

    // Forced over a world-readable old key: the new one is still 0600.
    fs::write(&secret_path, "old").expect("writing");
    set_mode(&secret_path, 0o644);
    write_key_pair(&prefix, true).expect("forced");
    assert_eq!(mode_of(&secret_path), 0o600);
    assert_ne!(fs::read_to_string(&public_path).expect("reading"), before);
    SecretKey::from_file(&secret_path).expect("the new key loads");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bundle.json.minisig");
    fs::write(&path, "not a signature\n").expect("writing");
    let message = Signature::from_file(&path)
        .expect_err("garbage")
        .to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("minisign signature"), "{message}");

    let missing = dir.path().join("missing.pub");
    let message = PublicKey::from_file(&missing)
        .expect_err("missing")
        .to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );

    let big = dir.path().join("big.pub");
    fs::write(&big, vec![b'a'; 100_000]).expect("writing");
    assert!(matches!(
        PublicKey::from_file(&big),
        Err(SignError::TooLarge { .. })
    ));
}

#[test]
fn encrypted_secret_key_without_a_password_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, _) = generate("");
    let text = edit_key_line(&secret.to_file_text(), |b| b[2..4].copy_from_slice(b"Sc"));
    let err = SecretKey::parse(&text).expect_err("encrypted");
    assert!(
        matches!(err, SignError::EncryptedKey { path: None }),
        "{err:?}"
    );

    let path = dir.path().join("locked.key");
    write_private(&path, &text);
    let message = SecretKey::from_file(&path)
        .expect_err("encrypted")
        .to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("is protected by a password"), "{message}");
    assert!(message.contains("--key-password-file"), "{message}");
}
