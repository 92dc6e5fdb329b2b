//! `bundle verify` on good and damaged bundles: each kind of damage fails
//! with exit code 1 and a message that names what is wrong and where.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::*;

/// A bundle of several volumes made from a generated layout (no registry needed).
struct Fixture {
    _tmp: tempfile::TempDir,
    keys: Keys,
    good: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = temp_dir();
    let layout = LayoutBuilder::new(tmp.path().join("layout"))
        .image(
            "app/one:1",
            ImageSpec::new(vec![
                LayerSpec::shared("base", 150_000),
                LayerSpec::unique(90_000),
            ]),
        )
        .image(
            "app/two:2",
            ImageSpec::new(vec![
                LayerSpec::shared("base", 150_000),
                LayerSpec::unique(120_000),
            ]),
        )
        .image(
            "app/multi:3",
            ImageSpec::new(vec![LayerSpec::unique(70_000)])
                .platforms(&[Platform::LINUX_AMD64, Platform::LINUX_ARM64]),
        )
        .build();
    let keys = keygen();
    let good = tmp.path().join("good");
    create_ok(
        &good,
        &keys.secret,
        &[
            "--from",
            &format!("oci:{}", layout.dir.display()),
            "--volume-size",
            "128K",
        ],
    );
    assert!(volumes(&good).len() >= 4, "want several volumes");
    let root = tmp.path().to_path_buf();
    Fixture {
        _tmp: tmp,
        keys,
        good,
        root,
    }
}

impl Fixture {
    /// A fresh copy of the good bundle to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        copy_dir_all(&self.good, &dir);
        dir
    }

    /// Verifies `dir`, expects exit code 1 and every needle in the output.
    fn expect_bad(&self, dir: &Path, needles: &[&str]) -> String {
        let out = verify(dir, &self.keys.public, &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(t.contains("BAD BUNDLE"), "{t}");
        for n in needles {
            assert!(t.contains(n), "expected {n:?} in:\n{t}");
        }
        t
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_good_bundle_verifies_deep_and_quick() {
    let fx = fixture();
    let out = verify(&fx.good, &fx.keys.public, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("VERIFIED: 3 images"), "{t}");
    let out = verify(&fx.good, &fx.keys.public, &["--quick"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--quick"));
    let out = verify(&fx.good, &fx.keys.public, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["images"], 3);
    assert_eq!(report["volumes_ok"], report["volumes"]);
}

#[test]
fn a_flipped_byte_in_any_volume_is_found_and_named() {
    let fx = fixture();
    for (i, vol) in volumes(&fx.good).iter().enumerate() {
        let dir = fx.copy(&format!("flip{i}"));
        let path = dir.join(name(vol));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let t = fx.expect_bad(&dir, &[&name(vol), "volume sha256 is"]);
        // The blob-level report names a blob or a frame of that volume, and the images it affects.
        assert!(
            t.contains("FAILED Blobs") || t.contains("FAILED Images"),
            "volume {i}: {t}"
        );
        assert!(t.contains("affects: app/"), "volume {i}: {t}");
        // --quick finds it too, from the volume hash alone.
        let out = verify(&dir, &fx.keys.public, &["--quick"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
}

#[test]
fn truncated_missing_extra_and_swapped_volumes_are_refused() {
    let fx = fixture();
    let vols = volumes(&fx.good);
    let second = name(&vols[1]);

    let dir = fx.copy("truncated");
    let bytes = std::fs::read(dir.join(&second)).unwrap();
    std::fs::write(dir.join(&second), &bytes[..bytes.len() - 100]).unwrap();
    fx.expect_bad(
        &dir,
        &[
            &second,
            &format!(
                "volume is {} bytes, bundle.json says {}",
                bytes.len() - 100,
                bytes.len()
            ),
        ],
    );

    let dir = fx.copy("missing");
    std::fs::remove_file(dir.join(&second)).unwrap();
    fx.expect_bad(&dir, &[&format!("{second}: volume is missing"), "not read"]);

    let dir = fx.copy("extra");
    std::fs::copy(dir.join(&second), dir.join("images.tar.zst.00999")).unwrap();
    fx.expect_bad(
        &dir,
        &["images.tar.zst.00999: extra volume not listed in bundle.json"],
    );

    let dir = fx.copy("swapped");
    let first = name(&vols[0]);
    std::fs::rename(dir.join(&first), dir.join("tmp")).unwrap();
    std::fs::rename(dir.join(&second), dir.join(&first)).unwrap();
    std::fs::rename(dir.join("tmp"), dir.join(&second)).unwrap();
    let t = fx.expect_bad(&dir, &[&first, &second]);
    assert!(t.matches("FAILED Volumes").count() >= 2, "{t}");
}

#[test]
fn an_edited_manifest_or_a_foreign_signature_is_refused_before_reading_volumes() {
    let fx = fixture();
    let dir = fx.copy("edited");
    let text_json = std::fs::read_to_string(dir.join("bundle.json")).unwrap();
    let edited = text_json.replacen("app/one:1", "app/evil:1", 1);
    assert_ne!(edited, text_json);
    std::fs::write(dir.join("bundle.json"), edited).unwrap();
    let t = fx.expect_bad(&dir, &["FAILED Signature", "bundle.json"]);
    assert!(
        !t.contains("volumes      "),
        "volumes must not be read: {t}"
    );

    // Signed by another key: the key ids are named.
    let other = keygen();
    let dir = fx.copy("foreign");
    let bytes = std::fs::read(dir.join("bundle.json")).unwrap();
    std::fs::write(dir.join("msg"), &bytes).unwrap();
    let other_bundle = fx.root.join("other-signed");
    create_ok(
        &other_bundle,
        &other.secret,
        &["--from", "oci:sample/layout"],
    );
    std::fs::copy(
        other_bundle.join("bundle.json.minisig"),
        dir.join("bundle.json.minisig"),
    )
    .unwrap();
    let ours = std::fs::read_to_string(&fx.keys.public).unwrap();
    let theirs = std::fs::read_to_string(&other.public).unwrap();
    let id = |pubkey: &str| {
        pubkey
            .lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let t = fx.expect_bad(&dir, &["FAILED Signature"]);
    assert!(
        t.contains(&id(&theirs)) || t.to_lowercase().contains("key id"),
        "{t}"
    );
    let _ = ours;

    // No signature at all.
    let dir = fx.copy("unsigned");
    std::fs::remove_file(dir.join("bundle.json.minisig")).unwrap();
    fx.expect_bad(&dir, &["FAILED Signature", "bundle.json.minisig"]);
}

#[test]
fn json_report_names_stage_file_blob_and_images() {
    let fx = fixture();
    let dir = fx.copy("json");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    // Flip a byte inside the data of the largest blob.
    let entry = bundle["entries"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|e| e["size"].as_u64().unwrap())
        .unwrap()
        .clone();
    let vol = dir.join(format!(
        "images.tar.zst.{:05}",
        entry["volume"].as_u64().unwrap()
    ));
    let mut bytes = std::fs::read(&vol).unwrap();
    let at = entry["frame_offset"].as_u64().unwrap() as usize + 4096;
    bytes[at] ^= 0xff;
    std::fs::write(&vol, bytes).unwrap();
    let out = verify(&dir, &fx.keys.public, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let blob = findings
        .iter()
        .find(|f| f["stage"] == "blobs" && f["blob"] == entry["digest"])
        .unwrap_or_else(|| panic!("no blob finding for {}: {findings:#?}", entry["digest"]));
    assert_eq!(blob["file"], name(&vol).as_str());
    assert!(!blob["images"].as_array().unwrap().is_empty());
    assert!(findings.iter().any(|f| f["stage"] == "volumes"));
}

#[test]
fn the_demo_key_is_warned_about() {
    let tmp = temp_dir();
    let key = tmp.path().join("demo.key");
    std::fs::copy("keys/demo.key", &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tmp.path().join("b");
    create_ok(&out, &key, &["--from", "oci:sample/layout"]);
    let v = verify(&out, Path::new("keys/demo.pub"), &[]);
    assert_eq!(v.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("DEMO key"),
        "{}",
        text(&v)
    );
}

#[test]
fn volumes_on_other_media_are_found_with_volumes_from() {
    let fx = fixture();
    let dir = fx.copy("split-media");
    let second_medium = fx.root.join("dvd2");
    std::fs::create_dir_all(&second_medium).unwrap();
    let vols = volumes(&dir);
    for v in &vols[vols.len() / 2..] {
        std::fs::rename(v, second_medium.join(name(v))).unwrap();
    }
    fx.expect_bad(&dir, &["volume is missing"]);
    let out = verify(
        &dir,
        &fx.keys.public,
        &["--volumes-from", second_medium.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The key id in the first line of a minisign public key file.
fn key_id_of(pubkey: &Path) -> String {
    let text = std::fs::read_to_string(pubkey).unwrap();
    let first = text.lines().next().unwrap();
    first.rsplit(' ').next().unwrap().to_owned()
}

/// Several trusted keys (`--pubkey` repeated, or a directory of `.pub`
/// files): a bundle signed by any of them verifies and the report names the
/// one that signed; signed by none, it is refused naming the signer's key id
/// and the trusted ones.
#[test]
fn several_trusted_keys_name_the_one_that_signed() {
    let fx = fixture();
    let (other, third) = (keygen(), keygen());
    let signer = key_id_of(&fx.keys.public);
    let out = bundle_cmd()
        .arg("verify")
        .arg(&fx.good)
        .arg("--pubkey")
        .arg(&other.public)
        .arg("--pubkey")
        .arg(&fx.keys.public)
        .args(["--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key_id"], signer.as_str());

    // A directory of trusted keys (other files in it are not keys).
    let keyring = fx.root.join("trusted");
    std::fs::create_dir(&keyring).unwrap();
    std::fs::copy(&other.public, keyring.join("other.pub")).unwrap();
    std::fs::copy(&fx.keys.public, keyring.join("bastion.pub")).unwrap();
    std::fs::write(keyring.join("README"), "not a key").unwrap();
    let out = verify(&fx.good, &keyring, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("signed by key {signer}")), "{t}");

    // Without the signer among them: refused, before any volume is read.
    std::fs::remove_file(keyring.join("bastion.pub")).unwrap();
    std::fs::copy(&third.public, keyring.join("third.pub")).unwrap();
    let out = verify(&fx.good, &keyring, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "signed by key {signer}, which is not a trusted key"
        )),
        "{t}"
    );
    assert!(t.contains(&key_id_of(&other.public)), "{t}");
    assert!(t.contains(&key_id_of(&third.public)), "{t}");
    assert!(
        !t.contains("volumes      "),
        "volumes must not be read: {t}"
    );

    // An empty key directory is an error of the command, not a bad bundle.
    let empty = fx.root.join("empty-keyring");
    std::fs::create_dir(&empty).unwrap();
    let out = verify(&fx.good, &empty, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("holds no .pub file"), "{}", text(&out));
}

/// A valid older bundle replayed: verify prints when it was made and its id
/// (from the signed data); `--not-before` refuses one made earlier, before
/// any volume is read, and extract then creates nothing.
#[test]
fn not_before_refuses_an_older_bundle() {
    let fx = fixture();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.good.join("bundle.json")).unwrap()).unwrap();
    let (id, created) = (
        m["bundle_id"].as_str().unwrap(),
        m["created"].as_str().unwrap(),
    );
    let out = verify(&fx.good, &fx.keys.public, &["--not-before", "2020-01-01"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("bundle {id}, created {created}")),
        "{t}"
    );
    // Exactly its creation time is still accepted.
    let out = verify(&fx.good, &fx.keys.public, &["--not-before", created]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = verify(&fx.good, &fx.keys.public, &["--not-before", "2999-01-01"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "bundle {id} was created {created}, before --not-before 2999-01-01T00:00:00Z"
        )),
        "{t}"
    );
    assert!(
        !t.contains("volumes      "),
        "volumes must not be read: {t}"
    );

    let layout = fx.root.join("extracted");
    let out = bundle_cmd()
        .arg("extract")
        .arg(&fx.good)
        .arg("--pubkey")
        .arg(&fx.keys.public)
        .args(["--not-before", "2999-01-01", "--to"])
        .arg(&layout)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!layout.exists(), "extract created {}", layout.display());

    let out = verify(&fx.good, &fx.keys.public, &["--not-before", "last week"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not a date like 2026-11-01"),
        "{}",
        text(&out)
    );
}

/// Names, sizes and modification times of everything in `dir`.
fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `bundle ARGS…` with `dir` bind-mounted read-only over itself in a private
/// mount namespace (a write-protected medium; needs root, as CI runs).
fn on_read_only(dir: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let script = r#"dir=$1; shift; mount --bind -o ro "$dir" "$dir" && touch "$dir/.probe" 2>/dev/null && { echo "the mount is writable"; exit 99; }; exec "$@""#;
    let output = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(dir)
        .arg(env!("CARGO_BIN_EXE_bundle"))
        .args(args)
        .output()
        .expect("unshare (util-linux) runs");
    assert_no_panic(&output);
    output
}

/// verify writes nothing into the bundle directory (names, sizes and times
/// unchanged), and a bundle on a read-only medium verifies and extracts; a
/// damaged one there is still reported as such.
#[test]
fn verify_writes_nothing_and_works_on_read_only_media() {
    let fx = fixture();
    let before = listing(&fx.good);
    let out = verify(&fx.good, &fx.keys.public, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        listing(&fx.good),
        before,
        "verify changed the bundle directory"
    );

    let pubkey = fx.keys.public.as_os_str();
    let o = on_read_only(
        &fx.good,
        &[
            "verify".as_ref(),
            fx.good.as_os_str(),
            "--pubkey".as_ref(),
            pubkey,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("VERIFIED"), "{}", text(&o));

    let layout = fx.root.join("from-read-only");
    let o = on_read_only(
        &fx.good,
        &[
            "extract".as_ref(),
            fx.good.as_os_str(),
            "--pubkey".as_ref(),
            pubkey,
            "--to".as_ref(),
            layout.as_os_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(layout.join("index.json").exists());

    let bad = fx.copy("bad-read-only");
    let v = volumes(&bad);
    let mut bytes = std::fs::read(&v[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&v[1], bytes).unwrap();
    let o = on_read_only(
        &bad,
        &[
            "verify".as_ref(),
            bad.as_os_str(),
            "--pubkey".as_ref(),
            pubkey,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&name(&v[1])), "{}", text(&o));
}

/// SHA256SUMS is a convenience for `sha256sum -c`; bundle.json is what is
/// signed. One that disagrees, or that is absurdly large (a sparse 10 GiB
/// file: not read), is reported as a warning and the bundle still verifies.
#[test]
fn a_sha256sums_that_disagrees_is_reported_not_trusted() {
    let fx = fixture();
    let dir = fx.copy("sums-edited");
    let sums = dir.join("SHA256SUMS");
    let text_sums = std::fs::read_to_string(&sums).unwrap();
    let first_hex = text_sums.split_whitespace().next().unwrap().to_owned();
    std::fs::write(&sums, text_sums.replacen(&first_hex, &"0".repeat(64), 1)).unwrap();
    let out = verify(&dir, &fx.keys.public, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("SHA256SUMS disagrees with the signed bundle.json"),
        "{t}"
    );

    let dir = fx.copy("sums-huge");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("SHA256SUMS"))
        .unwrap();
    f.set_len(10 << 30).unwrap();
    drop(f);
    let out = verify(&dir, &fx.keys.public, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("is larger than"), "{warnings}");
}
