//! Signed bundles built to cost: many large manifests (memory must stay
//! within a budget no bundle.json raises), and many images sharing blobs
//! (the images a finding affects must stay exact when they come from maps
//! built once and walks shared between images).

use std::path::Path;
use std::process::Command;

use bundle::digest::Digest;
use bundle::manifest::Image;
use bundle::oci;
use serde_json::{Value, json};

use super::graph::{descriptor, json_blob};
use super::{Forge, IMAGE, RawEntry, forge, header};
use crate::common::*;
use crate::support::*;

/// Manifests in the memory test: each one parsed and kept whole takes
/// about 25 MiB (a one-entry annotation map per descriptor), so all of
/// them together 400 MiB.
const LARGE_MANIFESTS: usize = 16;
/// Peak RSS allowed to verify and extract of that bundle, in KiB: the graph
/// budget, one manifest parsed and the read buffers, with room to spare.
const PEAK_RSS_KIB: u64 = 128 << 10;

/// A blob entry holding `body`.
fn blob(body: &[u8]) -> RawEntry {
    let path = Digest::of(body).layout_path();
    RawEntry::blob(header(&path, b'0', "", body.len() as u64), body)
}

/// Runs `bundle ARGS` under `/usr/bin/time`; returns its output and peak RSS in KiB.
fn with_peak_rss(cwd: &Path, args: &[&std::ffi::OsStr]) -> (std::process::Output, u64) {
    let rss_file = cwd.join("../peak-rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_bundle"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running bundle under /usr/bin/time (package time)");
    let rss = std::fs::read_to_string(&rss_file).unwrap();
    let kib = rss.lines().last().unwrap().trim().parse().unwrap();
    (out, kib)
}

#[test]
fn many_large_manifests_stay_within_the_memory_budget() {
    let fx = forge();
    let case = fx.case("many-large-manifests");
    let layer = &fx.entries[fx.layer_index()];
    // Near the largest manifest accepted, made of one descriptor repeated
    // (a few KB compressed), with a map per descriptor that parsing inflates.
    let one = json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": layer.digest.to_string(), "size": layer.size,
                     "annotations": {"a": "b"}});
    let one = serde_json::to_string(&one).unwrap();
    let count = (oci::MAX_MANIFEST_SIZE as usize - 1024) / (one.len() + 1);
    let layers = vec![one; count].join(",");
    let mut entries = fx.entries.clone();
    for n in 0..LARGE_MANIFESTS {
        // Distinct (each its own digest) and referenced by no image: kept
        // by the checks only because bundle.json records them as manifests.
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","annotations":{{"n":"{n}"}},"layers":[{layers}]}}"#,
            oci::OCI_MANIFEST
        );
        let mut raw = blob(body.as_bytes());
        raw.media_type = Some(oci::OCI_MANIFEST.to_owned());
        entries.insert(fx.layer_index() + 1, raw);
    }
    fx.write_raw(&case, &entries);

    let pubkey = fx.keys.public.as_os_str();
    let (out, kib) = with_peak_rss(
        &case.cwd,
        &[
            "verify".as_ref(),
            case.bundle.as_os_str(),
            "--pubkey".as_ref(),
            pubkey,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        kib < PEAK_RSS_KIB,
        "verify peaked at {kib} KiB, more than {PEAK_RSS_KIB} KiB"
    );
    let (out, kib) = with_peak_rss(
        &case.cwd,
        &[
            "extract".as_ref(),
            case.bundle.as_os_str(),
            "--to".as_ref(),
            case.layout.as_os_str(),
            "--pubkey".as_ref(),
            pubkey,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        kib < PEAK_RSS_KIB,
        "extract peaked at {kib} KiB, more than {PEAK_RSS_KIB} KiB"
    );
}

/// Images in the affects test, and the distinct manifests they share.
const IMAGES: usize = 240;
const MANIFESTS: usize = 12;

impl Forge {
    /// The genuine entries with `MANIFESTS` image manifests, each with the
    /// genuine config and layer plus a layer of its own, and `IMAGES` images
    /// (image `i` is manifest `i % MANIFESTS`, called `app/img-<i>:1`).
    /// Returns the entries, the bundle.json template and the own layers.
    fn many_images(
        &self,
    ) -> (
        Vec<RawEntry>,
        bundle::manifest::BundleManifest,
        Vec<RawEntry>,
    ) {
        let genuine: Value = self.image_manifest();
        let layer_type = genuine["layers"][0]["mediaType"].as_str().unwrap();
        let old = self.manifest_index();
        let mut entries = self.entries.clone();
        let top_entry = entries.remove(old);
        let mut own = Vec::new();
        let mut manifests = Vec::new();
        for j in 0..MANIFESTS {
            let layer = blob(format!("layer of manifest {j}\n").repeat(50).as_bytes());
            let mut m = genuine.clone();
            m["layers"]
                .as_array_mut()
                .unwrap()
                .push(descriptor(&layer, layer_type));
            manifests.push(json_blob(&m, oci::OCI_MANIFEST));
            own.push(layer);
        }
        let at = entries.len() - 1;
        entries.splice(at..at, own.iter().cloned().chain(manifests.iter().cloned()));

        let mut template = self.manifest.clone();
        let genuine_img = template.images[0].clone();
        let shared: Vec<Digest> = genuine_img
            .blobs
            .iter()
            .copied()
            .filter(|d| *d != top_entry.digest)
            .collect();
        template.images = (0..IMAGES)
            .map(|i| {
                let (m, layer) = (&manifests[i % MANIFESTS], &own[i % MANIFESTS]);
                let reference = format!("app/img-{i}:1");
                let mut blobs = shared.clone();
                blobs.extend([layer.digest, m.digest]);
                Image {
                    source: genuine_img.source.replace(IMAGE, &reference),
                    reference,
                    digest: m.digest,
                    size: m.size,
                    blobs,
                    ..genuine_img.clone()
                }
            })
            .collect();
        // index.json is made for the images by `Forge::build`.
        (entries, template, own)
    }

    /// `bundle verify --json` of the case's bundle: exit code and findings.
    fn verify_json(&self, case: &super::Case) -> (Option<i32>, Vec<Value>) {
        let out = bundle_cmd()
            .current_dir(&case.cwd)
            .arg("verify")
            .arg(&case.bundle)
            .arg("--json")
            .arg("--pubkey")
            .arg(&self.keys.public)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).expect("verify --json");
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        (out.status.code(), findings)
    }
}

/// The images of each finding, sorted, together.
fn all_images<'a>(findings: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut all: Vec<String> = findings.flat_map(images_of).collect();
    all.sort();
    all
}

fn images_of(finding: &Value) -> Vec<String> {
    let mut images: Vec<String> = finding["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    images.sort();
    images
}

fn references(select: impl Fn(usize) -> bool) -> Vec<String> {
    let mut names: Vec<String> = (0..IMAGES)
        .filter(|&i| select(i))
        .map(|i| format!("app/img-{i}:1"))
        .collect();
    names.sort();
    names
}

#[test]
fn findings_name_exactly_the_images_they_affect_among_many() {
    let fx = forge();
    let (entries, template, own) = fx.many_images();
    let case = fx.case("many-images");
    fx.write_with(&case, &template, &entries);
    let (code, findings) = fx.verify_json(&case);
    assert_eq!(code, Some(0), "{findings:#?}");

    // A damaged own layer: the images of its manifest, and no other.
    let case = fx.case("many-images-bad-own-layer");
    let bad = &own[3];
    let mut damaged = entries.clone();
    let at = damaged.iter().position(|e| e.digest == bad.digest).unwrap();
    damaged[at].tar[512] ^= 1;
    fx.write_with(&case, &template, &damaged);
    let (code, findings) = fx.verify_json(&case);
    assert_eq!(code, Some(1), "{findings:#?}");
    let blob_findings: Vec<&Value> = findings.iter().filter(|f| f["stage"] == "blobs").collect();
    assert_eq!(blob_findings.len(), 1, "{findings:#?}");
    assert_eq!(blob_findings[0]["blob"], bad.digest.to_string());
    assert_eq!(
        images_of(blob_findings[0]),
        references(|i| i % MANIFESTS == 3)
    );
    // Each of those images is also incomplete, once; the others are not.
    assert_eq!(
        all_images(findings.iter().filter(|f| f["stage"] == "images")),
        references(|i| i % MANIFESTS == 3),
        "{findings:#?}"
    );

    // The shared layer damaged: every image.
    let case = fx.case("many-images-bad-shared-layer");
    let mut damaged = entries.clone();
    let at = damaged.iter().position(|e| e.digest == fx.layer).unwrap();
    damaged[at].tar[512] ^= 1;
    fx.write_with(&case, &template, &damaged);
    let (code, findings) = fx.verify_json(&case);
    assert_eq!(code, Some(1));
    let blob_finding = findings.iter().find(|f| f["stage"] == "blobs").unwrap();
    assert_eq!(images_of(blob_finding), references(|_| true));
    let incomplete = findings.iter().filter(|f| f["stage"] == "images").count();
    assert_eq!(incomplete, IMAGES, "{findings:#?}");

    // Images sharing a manifest walk it once, but each is held to its own
    // list: one image listing a blob too many, one a blob too few.
    let case = fx.case("many-images-lists-differ");
    let mut lying = template.clone();
    lying.images[5].blobs.push(own[0].digest);
    lying.images[5 + MANIFESTS]
        .blobs
        .retain(|d| *d != own[5].digest);
    fx.write_with(&case, &lying, &entries);
    let (code, findings) = fx.verify_json(&case);
    assert_eq!(code, Some(1));
    let differ = findings.iter().filter(|f| f["stage"] == "images");
    for f in differ.clone() {
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains("differ from those bundle.json lists"),
            "{message}"
        );
    }
    assert_eq!(
        all_images(differ),
        references(|i| i == 5 || i == 5 + MANIFESTS),
        "{findings:#?}"
    );
}
