//! Volume boundaries: blobs at the edges, a blob larger than a volume, a
//! bundle of exactly one volume; no volume ever exceeds the limit.

use crate::common::*;
use crate::support::*;

fn layout(dir: &std::path::Path) -> Layout {
    LayoutBuilder::new(dir)
        .seed(7)
        .image(
            "big/one:1",
            ImageSpec::new(vec![LayerSpec::unique(300_000), LayerSpec::unique(5_000)]),
        )
        .image(
            "big/two:1",
            ImageSpec::new(vec![
                LayerSpec::unique(60_000),
                LayerSpec::unique(61_000),
                LayerSpec::unique(1),
            ]),
        )
        .image("small/three:1", ImageSpec::new(vec![LayerSpec::unique(10)]))
        .build()
}

#[test]
fn every_volume_respects_the_limit_and_the_bundle_verifies_at_many_sizes() {
    let tmp = temp_dir();
    let layout = layout(&tmp.path().join("layout"));
    let from = format!("oci:{}", layout.dir.display());
    let keys = keygen();
    let mut spanned = false;
    // Sizes around the blob sizes, so blobs land at every kind of edge.
    for size in [65_536u64, 66_000, 70_000, 100_000, 131_072, 200_000] {
        let out = tmp.path().join(format!("b{size}"));
        create_ok(
            &out,
            &keys.secret,
            &["--from", &from, "--volume-size", &size.to_string()],
        );
        for v in volumes(&out) {
            let len = std::fs::metadata(&v).unwrap().len();
            assert!(len <= size, "{} is {len} bytes, limit {size}", v.display());
            assert!(len > 0);
        }
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("bundle.json")).unwrap()).unwrap();
        let vols = bundle["volumes"].as_array().unwrap();
        // A blob larger than a volume is cut across volumes: some volume starts inside an entry.
        let starts: Vec<u64> = bundle["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["tar_offset"].as_u64().unwrap())
            .collect();
        spanned |= vols
            .iter()
            .any(|v| !starts.contains(&v["tar_offset"].as_u64().unwrap()) && v["tar_offset"] != 0);
        let v = verify(&out, &keys.public, &[]);
        assert_eq!(v.status.code(), Some(0), "size {size}: {}", text(&v));
        // The standard tools read the set as one stream.
        let layout_out = tmp.path().join(format!("l{size}"));
        standard_tools_extract(&out, &keys.public, &layout_out);
        for image in &layout.images {
            for d in image.blob_digests() {
                let got = std::fs::read(layout_out.join("blobs/sha256").join(&d[7..])).unwrap();
                assert_eq!(digest_of(&got), d);
            }
        }
    }
    assert!(spanned, "the 300 KB layer should span volumes");
}

#[test]
fn a_small_bundle_is_exactly_one_volume() {
    let tmp = temp_dir();
    let keys = keygen();
    let out = tmp.path().join("one");
    create_ok(&out, &keys.secret, &["--from", "oci:sample/layout"]);
    assert_eq!(volumes(&out).len(), 1);
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1);
    assert!(sums.ends_with("  images.tar.zst.00000\n"));
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn a_volume_size_below_the_minimum_is_a_usage_error() {
    let tmp = temp_dir();
    let keys = keygen();
    let o = create(
        &tmp.path().join("x"),
        &keys.secret,
        &["--from", "oci:sample/layout", "--volume-size", "1K"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("below the minimum"), "{}", text(&o));
    let o = create(
        &tmp.path().join("y"),
        &keys.secret,
        &["--from", "oci:sample/layout", "--volume-size", "12X"],
    );
    assert_eq!(o.status.code(), Some(2));
}

/// More than 1,000 volumes: the README's `cat images.tar.zst.* | zstd -d |
/// tar -x` must see them in volume order (with three-digit names, `.1000`
/// sorted before `.101`).
#[test]
fn more_than_a_thousand_volumes_go_through_the_standard_tools_in_order() {
    let tmp = temp_dir();
    let layout = LayoutBuilder::new(tmp.path().join("layout"))
        .seed(1001)
        .image(
            "many/volumes:1",
            ImageSpec::new(vec![LayerSpec::unique(66_000_000), LayerSpec::unique(5)]),
        )
        .build();
    let keys = keygen();
    let out = tmp.path().join("out");
    let from = format!("oci:{}", layout.dir.display());
    create_ok(
        &out,
        &keys.secret,
        &["--from", &from, "--volume-size", "64K"],
    );
    let count = volumes(&out).len();
    assert!(count > 1000, "only {count} volumes");
    let extracted = tmp.path().join("extracted");
    standard_tools_extract(&out, &keys.public, &extracted);
    for d in layout.image("many/volumes:1").blob_digests() {
        let got = std::fs::read(extracted.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(digest_of(&got), d);
    }
    assert_eq!(
        layout_refs(&extracted)
            .into_iter()
            .map(|(name, _, _)| name)
            .collect::<Vec<_>>(),
        ["many/volumes:1"]
    );
}
