//! `bundle extract`: a verified OCI layout that skopeo and umoci read; nothing
//! published from a bad bundle; existing layouts only added to.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::support::*;

fn extract(bundle: &Path, layout: &Path, pubkey: &Path) -> std::process::Output {
    bundle_cmd()
        .arg("extract")
        .arg(bundle)
        .arg("--to")
        .arg(layout)
        .arg("--pubkey")
        .arg(pubkey)
        .output()
        .unwrap()
}

#[test]
fn extracts_a_layout_that_skopeo_and_umoci_read_with_the_source_digests() {
    let Bundled {
        fx,
        keys,
        tmp,
        dir: out,
    } = bundled("300K");
    let layout = tmp.path().join("layout");
    let o = extract(&out, &layout, &keys.public);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("7 images added"), "{}", text(&o));
    assert!(
        !std::fs::read_dir(layout.join("blobs/sha256"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".tmp"))
    );

    let target = TestRegistry::start();
    for pushed in fx
        .images
        .iter()
        .filter(|p| p.media_type.starts_with("application/vnd.oci."))
    {
        let reference = pushed.reference();
        run(Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{reference}", layout.display()))
            .arg(format!("docker://{}/{reference}", target.host())));
        assert_eq!(
            fetch_manifest(&target, &pushed.repo, &pushed.tag).digest,
            pushed.digest,
            "{reference}"
        );
    }
    require_tool("umoci", "umoci");
    let stat = run_stdout(
        Command::new("umoci")
            .args(["stat", "--image"])
            .arg(format!("{}:openshift/php:5.5", layout.display())),
    );
    assert!(stat.contains("LAYER"), "{stat}");

    // Again into the same layout: nothing new, nothing replaced.
    let o = extract(&out, &layout, &keys.public);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("0 images added, 0 blobs written"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_bad_bundle_publishes_no_layout() {
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("bundle");
    create_ok(
        &out,
        &keys.secret,
        &["--from", "oci:sample/layout", "--volume-size", "64K"],
    );
    let vol = volumes(&out)[1].clone();
    let mut bytes = std::fs::read(&vol).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&vol, bytes).unwrap();
    let layout = tmp.path().join("layout");
    let o = extract(&out, &layout, &keys.public);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        !layout.join("index.json").exists(),
        "a bad bundle must not publish index.json"
    );
    assert!(text(&o).contains("nothing published"), "{}", text(&o));
    // No temporary file is left behind.
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        assert!(!e.unwrap().file_name().to_string_lossy().starts_with(".tmp"));
    }
}

#[test]
fn adds_to_an_existing_layout_and_never_replaces_a_different_file() {
    let keys = keygen();
    let tmp = temp_dir();
    let layout = tmp.path().join("layout");
    // An existing layout with one foreign image, index.json fields kept as they are.
    let other = LayoutBuilder::new(&layout)
        .seed(99)
        .image(
            "other/app:1",
            ImageSpec::new(vec![LayerSpec::unique(1_000)]),
        )
        .build();
    let before = std::fs::read_to_string(layout.join("index.json")).unwrap();
    let out = tmp.path().join("bundle");
    create_ok(&out, &keys.secret, &["--from", "oci:sample/layout"]);
    let o = extract(&out, &layout, &keys.public);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let refs: Vec<String> = layout_refs(&layout)
        .into_iter()
        .map(|(r, _, _)| r)
        .collect();
    assert!(
        refs.contains(&"other/app:1".to_owned()),
        "{refs:?} (before: {before})"
    );
    assert!(refs.contains(&"openshift/php:5.5".to_owned()), "{refs:?}");
    let _ = other;

    // A file at a blob's path that is not that blob is left alone and refused.
    let layout2 = tmp.path().join("layout2");
    let blob = layout_refs(&layout)
        .into_iter()
        .find(|(r, _, _)| r == "openshift/php:5.5")
        .unwrap()
        .1;
    std::fs::create_dir_all(layout2.join("blobs/sha256")).unwrap();
    let squatter = layout2.join("blobs/sha256").join(&blob[7..]);
    std::fs::write(&squatter, b"not the manifest").unwrap();
    let o = extract(&out, &layout2, &keys.public);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not replaced"), "{}", text(&o));
    assert_eq!(std::fs::read(&squatter).unwrap(), b"not the manifest");
    assert!(!layout2.join("index.json").exists());

    // A layout path that is a symbolic link is refused.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&layout, &link).unwrap();
    let o = extract(&out, &link, &keys.public);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
}

#[test]
fn a_missing_volume_is_named_before_anything_is_written() {
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("bundle");
    create_ok(
        &out,
        &keys.secret,
        &["--from", "oci:sample/layout", "--volume-size", "64K"],
    );
    let vols = volumes(&out);
    assert!(vols.len() >= 2, "{vols:?}");
    let second = tmp.path().join("dvd2");
    std::fs::create_dir(&second).unwrap();
    let moved = second.join(vols[1].file_name().unwrap());
    std::fs::rename(&vols[1], &moved).unwrap();

    let layout = tmp.path().join("layout");
    let o = extract(&out, &layout, &keys.public);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text(&o).contains(&name) && text(&o).contains("missing"),
        "{}",
        text(&o)
    );
    assert!(
        !layout.exists(),
        "nothing is created before every volume is there"
    );

    // With the second medium named, the same bundle extracts.
    let o = bundle_cmd()
        .arg("extract")
        .arg(&out)
        .arg("--to")
        .arg(&layout)
        .arg("--pubkey")
        .arg(&keys.public)
        .arg("--volumes-from")
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(layout.join("index.json").exists());
}
