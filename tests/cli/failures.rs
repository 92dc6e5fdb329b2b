//! Faults on the bastion side: a registry that serves the wrong bytes, a run
//! killed half-way. Neither may leave a bundle that verifies.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

#[test]
fn a_registry_serving_corrupt_bytes_fails_the_run_and_signs_nothing() {
    let fx = standard_fixture();
    // Flip one byte of a layer in the registry's own storage: same size, wrong content.
    let image = fx.layout.image("tools/helm:3.14");
    let layer = &image.manifests[0].layers[0].digest;
    let hex = &layer[7..];
    let data = fx.registry.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();

    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("bundle");
    let o = create(
        &out,
        &keys.secret,
        &["--from", &fx.registry.host(), "--tls-verify=false"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(hex), "the blob must be named: {t}");
    assert!(
        t.contains("tools/helm"),
        "the repository must be named: {t}"
    );
    assert!(t.to_lowercase().contains("digest"), "{t}");
    assert!(!out.join("bundle.json").exists());
    assert!(!out.join("bundle.json.minisig").exists());
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
}

#[test]
fn a_source_layout_with_a_corrupt_blob_is_refused() {
    let tmp = temp_dir();
    let layout_dir = tmp.path().join("layout");
    copy_dir_all(Path::new("sample/layout"), &layout_dir);
    // The largest blob of the sample, changed in place.
    let blobs = layout_dir.join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&victim, bytes).unwrap();
    let keys = keygen();
    let out = tmp.path().join("bundle");
    let o = create(
        &out,
        &keys.secret,
        &["--from", &format!("oci:{}", layout_dir.display())],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&victim.file_name().unwrap().to_string_lossy().to_string()),
        "{t}"
    );
    assert!(!out.join("bundle.json").exists());
}

/// kill -9 mid-volume: nothing verifies; the same command carries on to a
/// bundle that does, another command is refused.
#[test]
fn a_create_killed_half_way_leaves_nothing_that_verifies_until_resumed() {
    let tmp = temp_dir();
    let layout = LayoutBuilder::new(tmp.path().join("layout"))
        .image(
            "big/one:1",
            ImageSpec::new(vec![
                LayerSpec::unique(40_000_000),
                LayerSpec::unique(40_000_000),
            ]),
        )
        .image(
            "big/two:1",
            ImageSpec::new(vec![LayerSpec::unique(40_000_000)]),
        )
        .build();
    let keys = keygen();
    let out = tmp.path().join("bundle");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bundle"))
        .args(["create", "--volume-size", "8M", "--from"])
        .arg(format!("oci:{}", layout.dir.display()))
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&keys.secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the second volume appears, mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("images.tar.zst.00001").exists() {
        assert!(
            Instant::now() < deadline,
            "create never reached its second volume"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "create finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("bundle.json").exists());
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    // A re-run with other arguments refuses to mix with the partial output,
    // and says why; with the same ones it carries on to a bundle that verifies.
    let from = format!("oci:{}", layout.dir.display());
    let o = create(&out, &keys.secret, &["--from", &from]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("interrupted create made with --volume-size 8388608"),
        "{}",
        text(&o)
    );
    let o = create_ok(
        &out,
        &keys.secret,
        &["--volume-size", "8M", "--from", &from],
    );
    assert!(
        text(&o).contains("resuming the interrupted create"),
        "{}",
        text(&o)
    );
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}
