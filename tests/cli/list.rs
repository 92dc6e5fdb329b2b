//! `bundle list`: what a bundle holds, from its signed manifest.

use crate::common::*;
use crate::support::*;

#[test]
fn lists_images_and_volumes_and_checks_the_signature_when_given_a_key() {
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("b");
    create_ok(
        &out,
        &keys.secret,
        &["--from", "oci:sample/layout", "--volume-size", "64K"],
    );

    let o = bundle_cmd()
        .arg("list")
        .arg(&out)
        .arg("--pubkey")
        .arg(&keys.public)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for needle in [
        "library/busybox:1.36",
        "linux/amd64,linux/arm64/v8",
        "openshift/php:5.5",
        "images.tar.zst.00002",
    ] {
        assert!(t.contains(needle), "{needle:?} in {t}");
    }
    let listing = list_json(&out, &keys.public);
    assert_eq!(listing["signature_checked"], true);
    assert_eq!(
        listing["volumes"].as_array().unwrap().len(),
        volumes(&out).len()
    );
    let php = &listing["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "openshift/php:5.5")
        .unwrap();
    assert!(php["size"].as_u64().unwrap() > 50_000);
    assert!(php["digest"].as_str().unwrap().starts_with("sha256:"));

    // Without a key it still lists, and says the signature was not checked.
    let o = bundle_cmd().arg("list").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signature not checked"));

    // With the wrong key it refuses, as verify does.
    let other = keygen();
    let o = bundle_cmd()
        .arg("list")
        .arg(&out)
        .arg("--pubkey")
        .arg(&other.public)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("openshift/php"));
}

/// `list --pubkey` takes what `verify --pubkey` takes: repeated, or a
/// directory of `.pub` files, the signer among them.
#[test]
fn list_trusts_several_keys_or_a_key_directory_as_verify_does() {
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("b");
    create_ok(&out, &keys.secret, &["--from", "oci:sample/layout"]);
    let other = keygen();
    let dir = tmp.path().join("trusted");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&other.public, dir.join("other.pub")).unwrap();
    let list = |pubkeys: &[&std::path::Path]| {
        let mut cmd = bundle_cmd();
        cmd.arg("list").arg(&out);
        for k in pubkeys {
            cmd.arg("--pubkey").arg(k);
        }
        cmd.output().unwrap()
    };

    // Only a foreign key in the directory: refused, naming the signer.
    let o = list(&[&dir]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a trusted key"), "{}", text(&o));

    // The signer repeated after it, or added to the directory: listed.
    let o = list(&[&other.public, &keys.public]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("openshift/php:5.5"), "{}", text(&o));
    std::fs::copy(&keys.public, dir.join("signer.pub")).unwrap();
    let o = list(&[&dir]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("openshift/php:5.5"), "{}", text(&o));
}

/// Columns stay aligned whatever the length of the references, and create,
/// verify and list count the same images and blobs.
#[test]
fn columns_align_for_long_references_and_the_counts_agree() {
    let tmp = temp_dir();
    let long = format!("{}app:{}", "org/".repeat(8), "v".repeat(40));
    let layout = LayoutBuilder::new(tmp.path().join("layout"))
        .seed(5)
        .image("a:1", ImageSpec::new(vec![LayerSpec::unique(100)]))
        .image(&long, ImageSpec::new(vec![LayerSpec::unique(200)]))
        .build();
    let keys = keygen();
    let out = tmp.path().join("b");
    let o = create(
        &out,
        &keys.secret,
        &["--from", &format!("oci:{}", layout.dir.display())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Two images of a config, a layer and a manifest each: 6 blobs.
    assert!(
        text(&o).contains(": 2 images, 6 blobs, ") && text(&o).contains(" in 1 volume ("),
        "{}",
        text(&o)
    );
    let v = verify(&out, &keys.public, &[]);
    assert!(text(&v).contains("blobs        6/6 ok"), "{}", text(&v));
    assert!(text(&v).contains("VERIFIED: 2 images"), "{}", text(&v));

    let o = bundle_cmd()
        .arg("list")
        .arg(&out)
        .arg("--pubkey")
        .arg(&keys.public)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let table: Vec<&str> = t
        .lines()
        .skip_while(|l| !l.starts_with("IMAGE"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 3, "{t}");
    let digest_at: Vec<usize> = table
        .iter()
        .map(|l| l.find("sha256:").or_else(|| l.find("DIGEST")).unwrap())
        .collect();
    assert!(digest_at.iter().all(|&c| c == digest_at[0]), "{t}");
    assert!(digest_at[0] > long.len(), "{t}");
    let ends: Vec<usize> = table.iter().map(|l| l.len()).collect();
    assert!(
        ends.iter().all(|&e| e == ends[0]),
        "sizes right-aligned: {t}"
    );
}
