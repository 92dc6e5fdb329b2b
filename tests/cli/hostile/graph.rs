//! Hostile bundles whose entries are all well-formed but whose image graph
//! lies: a manifest naming a blob the bundle lacks, a descriptor whose size
//! lies, a manifest claiming to be an index, indexes nested without end,
//! children after their parent, and entries out of the order bundle.json
//! declares or listed twice. Forged as in the parent module (a valid
//! signature over a truthful bundle.json), so only the deep checks stand
//! between them and a layout or a registry.
//!
//! A real cycle between indexes cannot be built: a descriptor names its
//! child by the sha256 of the child's bytes, so a child naming its parent
//! would need a hash collision. What an attacker can build instead is an
//! arbitrarily deep chain, which is refused past 8 levels.

use std::fs;

use bundle::digest::Digest;
use bundle::geometry::BLOCK;
use bundle::manifest::{BundleManifest, EntryKind};
use bundle::oci;
use serde_json::{Value, json};

use super::{BAD_HEADER, Case, Forge, IMAGE, RawEntry, forge, header};
use crate::common::*;
use crate::support::*;

/// A tar entry of `kind` holding `value` as JSON, recorded with `media_type`.
pub(super) fn json_entry(kind: EntryKind, value: &Value, media_type: Option<&str>) -> RawEntry {
    let body = serde_json::to_vec(value).unwrap();
    let path = kind.path(&Digest::of(&body));
    let mut raw = RawEntry::blob(header(&path, b'0', "", body.len() as u64), &body);
    raw.kind = kind;
    raw.media_type = media_type.map(str::to_owned);
    raw
}

/// A JSON blob (a manifest or an index) recorded with `media_type`.
pub(super) fn json_blob(value: &Value, media_type: &str) -> RawEntry {
    json_entry(EntryKind::Blob, value, Some(media_type))
}

/// A descriptor of `raw` as `media_type`.
pub(super) fn descriptor(raw: &RawEntry, media_type: &str) -> Value {
    json!({"mediaType": media_type, "digest": raw.digest.to_string(), "size": raw.size})
}

impl Forge {
    /// The position of the genuine image manifest among the entries.
    pub(super) fn manifest_index(&self) -> usize {
        self.entries
            .iter()
            .position(|e| e.media_type.as_deref() == Some(oci::OCI_MANIFEST))
            .expect("the genuine bundle holds an OCI image manifest")
    }

    /// The genuine image manifest, as JSON.
    pub(super) fn image_manifest(&self) -> Value {
        let raw = &self.entries[self.manifest_index()];
        serde_json::from_slice(&raw.tar[BLOCK as usize..][..raw.size as usize]).unwrap()
    }

    /// The genuine entries with the image manifest replaced by `blobs`
    /// (children first; the last is the image's new top, recorded as
    /// `top_type`), and bundle.json's image (and so index.json) pointing at
    /// that top, so that only the graph inside the blobs can be wrong.
    fn with_top(&self, blobs: Vec<RawEntry>, top_type: &str) -> (Vec<RawEntry>, BundleManifest) {
        let old = self.manifest_index();
        let old_digest = self.entries[old].digest;
        let top = blobs.last().expect("a top manifest").clone();
        let mut entries = self.entries.clone();
        entries.splice(old..=old, blobs.iter().cloned());

        let mut template = self.manifest.clone();
        let img = &mut template.images[0];
        img.digest = top.digest;
        img.size = top.size;
        img.media_type = top_type.to_owned();
        img.blobs.retain(|d| *d != old_digest);
        img.blobs.extend(blobs.iter().map(|b| b.digest));
        (entries, template)
    }

    /// Writes the genuine bundle with its image manifest replaced by
    /// `manifest`, recorded (in index.json and bundle.json too) as `media_type`.
    fn write_image(&self, case: &Case, manifest: &Value, media_type: &str) {
        let (entries, template) = self.with_top(vec![json_blob(manifest, media_type)], media_type);
        self.write_with(case, &template, &entries);
    }
}

#[test]
fn a_rebuilt_graph_verifies_when_nothing_in_it_lies() {
    // The test of the forging for this module: the genuine manifest, re-
    // serialized and re-pointed, and an index wrapped around it, verify.
    let fx = forge();
    let manifest = json_blob(&fx.image_manifest(), oci::OCI_MANIFEST);
    let case = fx.case("rebuilt");
    let (entries, template) = fx.with_top(vec![manifest.clone()], oci::OCI_MANIFEST);
    fx.write_with(&case, &template, &entries);
    let out = fx.verify(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let case = fx.case("wrapped");
    let index = json_blob(
        &json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX,
                "manifests": [descriptor(&manifest, oci::OCI_MANIFEST)]}),
        oci::OCI_INDEX,
    );
    let (entries, template) = fx.with_top(vec![manifest, index], oci::OCI_INDEX);
    fx.write_with(&case, &template, &entries);
    let out = fx.verify(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = fx.extract(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(layout_refs(&case.layout)[0].0, IMAGE);
}

#[test]
fn a_manifest_naming_a_blob_the_bundle_lacks_is_refused() {
    let fx = forge();
    let case = fx.case("missing-blob");
    let absent = Digest::of(b"a layer that is not in the bundle");
    let mut m = fx.image_manifest();
    m["layers"][0]["digest"] = json!(absent.to_string());
    fx.write_image(&case, &m, oci::OCI_MANIFEST);
    fx.expect_refused(
        &case,
        &[&format!(
            "{IMAGE}: needs {absent}, which is missing or did not verify"
        )],
    );
}

#[test]
fn a_descriptor_whose_size_lies_is_refused() {
    let fx = forge();
    let case = fx.case("size-lie");
    let mut m = fx.image_manifest();
    let real = m["layers"][0]["size"].as_u64().unwrap();
    m["layers"][0]["size"] = json!(10);
    fx.write_image(&case, &m, oci::OCI_MANIFEST);
    fx.expect_refused(
        &case,
        &[&format!(
            "says 10 bytes for {}, the blob has {real}",
            fx.layer
        )],
    );
}

#[test]
fn a_manifest_claiming_to_be_an_index_is_refused() {
    let fx = forge();
    // Its own mediaType says index; its descriptors say image manifest.
    let case = fx.case("claims-index");
    let mut m = fx.image_manifest();
    m["mediaType"] = json!(oci::OCI_INDEX);
    fx.write_image(&case, &m, oci::OCI_MANIFEST);
    fx.expect_refused(
        &case,
        &[&format!(
            "content claims media type {} but was referenced as {}",
            oci::OCI_INDEX,
            oci::OCI_MANIFEST
        )],
    );

    // Every descriptor says index; the content is an image manifest.
    let case = fx.case("referenced-as-index");
    let mut m = fx.image_manifest();
    m.as_object_mut().unwrap().remove("mediaType");
    fx.write_image(&case, &m, oci::OCI_INDEX);
    fx.expect_refused(&case, &["an index with config or layers"]);
}

#[test]
fn indexes_nested_without_end_are_refused() {
    let fx = forge();
    let case = fx.case("deep");
    let mut chain = vec![json_blob(&fx.image_manifest(), oci::OCI_MANIFEST)];
    for level in 0..12 {
        let child_type = if level == 0 {
            oci::OCI_MANIFEST
        } else {
            oci::OCI_INDEX
        };
        let index = json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX,
                           "manifests": [descriptor(chain.last().unwrap(), child_type)]});
        chain.push(json_blob(&index, oci::OCI_INDEX));
    }
    let (entries, template) = fx.with_top(chain, oci::OCI_INDEX);
    fx.write_with(&case, &template, &entries);
    fx.expect_refused(&case, &["manifests nested too deep"]);
}

#[test]
fn a_child_written_after_its_parent_is_refused() {
    // Push and extract rely on children coming first (a registry refuses a
    // manifest whose blobs it does not have yet).
    let fx = forge();
    let case = fx.case("child-after-parent");
    let manifest = json_blob(&fx.image_manifest(), oci::OCI_MANIFEST);
    let (mut entries, template) = fx.with_top(vec![manifest.clone()], oci::OCI_MANIFEST);
    let at = |entries: &[RawEntry], d: Digest| entries.iter().position(|e| e.digest == d).unwrap();
    let layer = entries.remove(at(&entries, fx.layer));
    let parent = at(&entries, manifest.digest);
    entries.insert(parent + 1, layer);
    fx.write_with(&case, &template, &entries);
    fx.expect_refused(
        &case,
        &[&format!(
            "{} comes after {}, which references it",
            fx.layer, manifest.digest
        )],
    );
}

#[test]
fn entries_out_of_the_declared_order_are_refused() {
    // Two blobs of the same size whose frames compress to the same length:
    // swapped in the volume, bundle.json still declaring them in the
    // original order (with the swapped volume's size and sha256, so only
    // the tar headers can tell).
    let fx = forge();
    let case = fx.case("swapped");
    let blob = |byte: u8| {
        let body = vec![byte; 3000];
        RawEntry::blob(
            header(
                &Digest::of(&body).layout_path(),
                b'0',
                "",
                body.len() as u64,
            ),
            &body,
        )
    };
    let (a, b) = (blob(b'a'), blob(b'b'));
    let mut declared = fx.with_before_layer(a.clone());
    declared.insert(fx.layer_index() + 1, b.clone());
    let mut stream = declared.clone();
    let (ia, ib) = (fx.layer_index(), fx.layer_index() + 1);
    stream.swap(ia, ib);
    let (mut m, declared_volume) = fx.build(&fx.manifest, &declared);
    let (_, swapped_volume) = fx.build(&fx.manifest, &stream);
    assert_eq!(
        declared_volume.len(),
        swapped_volume.len(),
        "same frame sizes"
    );
    assert_ne!(declared_volume, swapped_volume);
    m.volumes[0].sha256 = Digest::of(&swapped_volume);
    m.check().unwrap();
    fx.publish(&case, &m, &swapped_volume);
    fx.expect_refused(&case, &[BAD_HEADER, &a.path()]);
}

#[test]
fn duplicate_names_are_refused() {
    let fx = forge();
    // A tar entry named like the layer but holding other bytes, recorded
    // truthfully (under its own digest): its header is not the one
    // bundle.json's record calls for.
    let case = fx.case("duplicate-name");
    let body = b"not the layer, but named like it\n";
    let twin = RawEntry::blob(
        header(&fx.layer.layout_path(), b'0', "", body.len() as u64),
        body,
    );
    let twin_path = twin.path();
    fx.write(&case, &fx.with_before_layer(twin));
    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &twin_path]);
    // The genuine layer still verified; the twin is nowhere.
    assert!(blobs.contains(&fx.layer.hex()), "{blobs:?}");
    assert!(!blobs.contains(&Digest::of(body).hex()), "{blobs:?}");

    // The layer itself twice, bundle.json listing it twice: refused by
    // bundle.json's own checks, before any volume is read.
    let case = fx.case("duplicate-entry");
    let layer = fx.entries[fx.layer_index()].clone();
    let (m, volume) = fx.build(&fx.manifest, &fx.with_before_layer(layer));
    assert!(m.check().is_err());
    fx.publish(&case, &m, &volume);
    fx.expect_refused(&case, &[&format!("blob {} is listed twice", fx.layer)]);
}

#[test]
fn push_of_a_lying_graph_creates_no_tag() {
    let fx = forge();
    let case = fx.case("push-missing-blob");
    let mut m = fx.image_manifest();
    m["layers"][0]["digest"] = json!(Digest::of(b"absent").to_string());
    fx.write_image(&case, &m, oci::OCI_MANIFEST);

    let target = TestRegistry::start();
    let out = fx.push(&case, &case.bundle, &target);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("which is missing or did not verify"), "{t}");
    assert!(t.contains("no tag was created or moved"), "{t}");
    for repo in target.repositories() {
        let tags = curl(
            &target.curl_args(),
            &format!("{}/v2/{repo}/tags/list", target.url()),
        );
        let listed = tags.json()["tags"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(listed, 0, "{repo} has tags: {:?}", tags.json());
    }
    assert!(fs::read_dir(&case.cwd).unwrap().next().is_none());
}
