//! Interoperability with jedisct1's `minisign`: frozen known answers, and tests that run
//! the real binary (they fail, never skip, when it is missing).

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::*;

/// A key pair made once with `minisign -G -W` (minisign 0.11); test use only.
const KAT_PUBLIC: &str = "untrusted comment: minisign public key F35E551E363FFFEB
RWTr/z82HlVe87tQ0XiIrd6fMud9JphtcDfApMslsshJ79Jx4R6uOZoV
";
const KAT_SECRET: &str = "untrusted comment: minisign encrypted secret key
RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA6/8/Nh5VXvOC3U7C4HB+N9carrTI1gJPIOMuuIWSwQ4WVGs2cvmlQLtQ0XiIrd6fMud9JphtcDfApMslsshJ79Jx4R6uOZoVAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
";
/// The file signed, and its signature by `minisign -S -c ... -t ...` with the key above.
const KAT_DATA: &[u8] = b"{\"format\":1,\"images\":[]}\n";
const KAT_SIGNATURE: &str = "untrusted comment: signature from minisign secret key
RUTr/z82HlVe8/IeULRMvipJcpxsQ31KWT2NYs91AKWRJQXHRZECyoAldTbtRnyyZ/kBaysnQuUw8J5xp2J/H/z4ZHqJFDGYkQM=
trusted comment: timestamp:1700000000\tfile:bundle.json\thashed
wjTR+eAoFteLJprGmkY+MdKWZ30qQuXhVciZ+iiXJLLCjV8wjWrplkVNDSivQg6VVKR2TclCiHoYVds+cJF/Dw==
";

#[test]
fn known_answer_from_minisign_verifies() {
    let public = PublicKey::parse(KAT_PUBLIC).expect("minisign's public key parses");
    assert_eq!(public.key_id().to_string(), "F35E551E363FFFEB");
    let sig = Signature::parse(KAT_SIGNATURE).expect("minisign's signature parses");
    assert_eq!(sig.to_file_text(), KAT_SIGNATURE, "byte-exact round trip");
    assert_eq!(
        sig.trusted_comment(),
        "timestamp:1700000000\tfile:bundle.json\thashed"
    );
    verify(&public, KAT_DATA, &sig).expect("minisign's signature verifies");
    let mut changed = KAT_DATA.to_vec();
    changed[0] = b'[';
    assert!(verify(&public, &changed, &sig).is_err());
}

#[test]
fn known_answer_secret_key_signs_exactly_like_minisign() {
    // Ed25519 is deterministic, so the same key, data and comment give the same bytes.
    let secret = SecretKey::parse(KAT_SECRET).expect("minisign's -W secret key parses");
    let public = PublicKey::parse(KAT_PUBLIC).expect("parses");
    assert_eq!(secret.public_key(), public);
    let ours = secret
        .sign(KAT_DATA, "timestamp:1700000000\tfile:bundle.json\thashed")
        .expect("signing");
    let ours_text = ours.to_file_text();
    let theirs: Vec<&str> = KAT_SIGNATURE.lines().skip(1).collect();
    let ours_lines: Vec<&str> = ours_text.lines().skip(1).collect();
    assert_eq!(ours_lines, theirs);
}

/// `minisign` with `args`, run in `dir`; fails the test if minisign is not installed.
fn minisign(dir: &Path, args: &[&str]) -> Output {
    match Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`minisign` is not on PATH; these interop tests need it and never skip: \
             `apt-get install minisign`"
        ),
        Err(e) => panic!("running minisign: {e}"),
    }
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: minisign exited {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[test]
fn minisign_verifies_our_keys_and_signatures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret_path, public_path) =
        write_key_pair(&dir.path().join("bastion"), false).expect("writing keys");
    let secret = SecretKey::from_file(&secret_path).expect("loading the secret key");
    let data = dir.path().join("bundle.json");
    fs::write(&data, KAT_DATA).expect("writing data");
    let comment = "bundle v1\tfile:bundle.json";
    let sig = secret.sign(KAT_DATA, comment).expect("signing");
    fs::write(dir.path().join("bundle.json.minisig"), sig.to_file_text()).expect("writing");

    let output = minisign(dir.path(), &["-Vm", "bundle.json", "-p", "bastion.pub"]);
    assert_success(&output, "minisign -V of our signature");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("Trusted comment: {comment}")),
        "{stdout}"
    );

    // The inline form takes our base64 too.
    let public = PublicKey::from_file(&public_path).expect("loading");
    let output = minisign(
        dir.path(),
        &["-Vm", "bundle.json", "-P", &public.to_base64()],
    );
    assert_success(&output, "minisign -V -P");

    // The longest trusted comment we allow is one minisign still reads back.
    let longest = "y".repeat(MAX_TRUSTED_COMMENT);
    let long_sig = secret.sign(KAT_DATA, &longest).expect("signing");
    fs::write(dir.path().join("long.minisig"), long_sig.to_file_text()).expect("writing");
    let output = minisign(
        dir.path(),
        &[
            "-Vm",
            "bundle.json",
            "-x",
            "long.minisig",
            "-p",
            "bastion.pub",
        ],
    );
    assert_success(&output, "minisign -V with the longest trusted comment");

    // And minisign does fail when the data changed, so the checks above mean something.
    fs::write(&data, b"changed").expect("writing");
    let output = minisign(dir.path(), &["-Vm", "bundle.json", "-p", "bastion.pub"]);
    assert!(!output.status.success(), "minisign accepted changed data");
}

#[test]
fn we_verify_minisign_keys_and_signatures_and_sign_with_its_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = minisign(
        dir.path(),
        &["-G", "-W", "-p", "mini.pub", "-s", "mini.key"],
    );
    assert_success(&output, "minisign -G -W");
    fs::write(dir.path().join("bundle.json"), KAT_DATA).expect("writing data");
    let comment = "timestamp:1\tfile:bundle.json\thashed";
    let output = minisign(
        dir.path(),
        &["-S", "-m", "bundle.json", "-s", "mini.key", "-t", comment],
    );
    assert_success(&output, "minisign -S");

    let public = PublicKey::from_file(&dir.path().join("mini.pub")).expect("minisign's .pub");
    let sig = Signature::from_file(&dir.path().join("bundle.json.minisig"))
        .expect("minisign's signature");
    assert_eq!(sig.trusted_comment(), comment);
    verify(&public, KAT_DATA, &sig).expect("minisign's signature verifies");
    assert!(verify(&public, b"other data", &sig).is_err());

    let secret = SecretKey::from_file(&dir.path().join("mini.key")).expect("minisign's .key");
    assert_eq!(secret.public_key(), public);
    let ours = secret.sign(KAT_DATA, "signed by bundle").expect("signing");
    fs::write(dir.path().join("ours.minisig"), ours.to_file_text()).expect("writing");
    let output = minisign(
        dir.path(),
        &["-Vm", "bundle.json", "-x", "ours.minisig", "-p", "mini.pub"],
    );
    assert_success(
        &output,
        "minisign -V of a signature by its own key, made by us",
    );
}
