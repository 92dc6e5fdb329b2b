//! The whole journey with independent tools on the far side: create → verify
//! → the README's standard-tools path → `skopeo copy` into a second registry
//! → the same manifest digests as the source.

use std::process::Command;

use crate::common::*;
use crate::support::*;

#[test]
fn create_verify_extract_with_standard_tools_and_skopeo_copy_to_a_second_registry() {
    let Bundled {
        fx,
        keys,
        tmp,
        dir: out,
    } = bundled("300K");
    assert!(volumes(&out).len() > 1);
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // Exactly the README's steps.
    let layout = tmp.path().join("layout");
    standard_tools_extract(&out, &keys.public, &layout);

    let target = TestRegistry::start();
    let mut copied = 0;
    for pushed in &fx.images {
        // Debian's skopeo 1.9.3 skips Docker-typed entries of an oci: layout.
        if !pushed.media_type.starts_with("application/vnd.oci.") {
            continue;
        }
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
        let arrived = fetch_manifest(&target, &pushed.repo, &pushed.tag);
        assert_eq!(
            arrived.digest, pushed.digest,
            "{reference} changed on the way"
        );
        copied += 1;
    }
    assert!(copied >= 4, "copied {copied} OCI images");
    // The multi-arch index arrived whole.
    let index = fetch_manifest(&target, "library/busybox", "1.36").json();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);

    // Docker-typed images are byte for byte in the layout too.
    for pushed in fx.images.iter().filter(|p| p.media_type.contains("docker")) {
        let stored = std::fs::read(layout.join("blobs/sha256").join(&pushed.digest[7..])).unwrap();
        assert_eq!(digest_of(&stored), pushed.digest, "{}", pushed.reference());
    }
}
