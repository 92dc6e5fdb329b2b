//! Writes a synthetic signed bundle for bench/scale.sh: many small blobs,
//! manifests sharing them, multi-platform indexes, and many tags, so that
//! bundle.json is large while the volumes stay small.
//!
//! `cargo run --release --example synthetic_bundle -- OUT SCALE` writes the
//! bundle to `OUT/bundle` and its public key to `OUT/key.pub`. At scale S:
//! 4,000×S layers, 1,000×S image manifests (a config and 8 shared layers
//! each), 100×S indexes (4 platforms each) and 3,000×S tags (a third of them
//! an index); bundle.json is about 8 MB × S (the 256 MiB cap is reached just
//! above S = 32). With `hostile` as a third argument, every tag names one
//! index over all the manifests and lists nothing else, and 4×S manifests of
//! about 4 MiB that nothing needs are added (see below).

use std::path::Path;

use anyhow::Context;
use bundle::archive::writer::{MIN_VOLUME_SIZE, VolumeWriter};
use bundle::digest::Digest;
use bundle::manifest::{self, BundleManifest, Compression, EntryKind, Image, Platforms};
use bundle::oci;
use serde_json::{Value, json};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const PLATFORMS: [&str; 4] = ["linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le"];

/// A blob to write: its bytes and the media type bundle.json records.
struct Blob {
    bytes: Vec<u8>,
    media_type: &'static str,
    digest: Digest,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Self {
        Blob {
            digest: Digest::of(&bytes),
            bytes,
            media_type,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(),
               "size": self.bytes.len()})
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (out, scale, hostile) = match args.as_slice() {
        [_, out, scale] => (out, scale, false),
        [_, out, scale, h] if h == "hostile" => (out, scale, true),
        _ => anyhow::bail!("usage: synthetic_bundle OUT SCALE [hostile]"),
    };
    let scale: usize = scale.parse().context("SCALE is a whole number")?;
    let out = Path::new(out);
    let (layers, manifests, indexes, tags) =
        (4000 * scale, 1000 * scale, 100 * scale, 3000 * scale);

    let layer: Vec<Blob> = (0..layers)
        .map(|i| Blob::new(format!("layer {i}\n").repeat(8).into_bytes(), LAYER))
        .collect();
    let mut configs = Vec::new();
    let mut image_manifests = Vec::new();
    for m in 0..manifests {
        let platform = PLATFORMS[m % PLATFORMS.len()];
        let (os, arch) = platform.split_once('/').unwrap();
        let config = json!({"os": os, "architecture": arch, "n": m});
        let config = Blob::new(serde_json::to_vec(&config)?, oci::OCI_CONFIG);
        let uses: Vec<usize> = (0..8).map(|k| (m * 7 + k * 131) % layers).collect();
        let body = json!({"schemaVersion": 2, "mediaType": oci::OCI_MANIFEST,
                          "config": config.descriptor(),
                          "layers": uses.iter().map(|&l| layer[l].descriptor()).collect::<Vec<_>>()});
        image_manifests.push((
            Blob::new(serde_json::to_vec(&body)?, oci::OCI_MANIFEST),
            uses,
            configs.len(),
        ));
        configs.push(config);
    }
    let mut index_blobs = Vec::new();
    for x in 0..indexes {
        let children: Vec<usize> = (0..PLATFORMS.len())
            .map(|p| (x * PLATFORMS.len() + p) % manifests)
            .collect();
        let descriptors: Vec<Value> = children
            .iter()
            .map(|&c| {
                let mut d = image_manifests[c].0.descriptor();
                let (os, arch) = PLATFORMS[c % PLATFORMS.len()].split_once('/').unwrap();
                d["platform"] = json!({"os": os, "architecture": arch});
                d
            })
            .collect();
        let body =
            json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": descriptors});
        index_blobs.push((
            Blob::new(serde_json::to_vec(&body)?, oci::OCI_INDEX),
            children,
        ));
    }

    // Hostile: one index over the image manifests, which every tag names
    // while listing nothing else (each image is refused, after a walk), and
    // 4×S manifests of about 4 MiB that no image needs (each parsed whole
    // would take about 25 MiB: a one-entry map per descriptor).
    let mut large = Vec::new();
    if hostile {
        // (At most 25,000 of them, to stay under the 4 MiB manifest limit.)
        let all: Vec<Value> = image_manifests
            .iter()
            .take(25_000)
            .map(|(m, _, _)| m.descriptor())
            .collect();
        let body = json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": all});
        index_blobs.push((
            Blob::new(serde_json::to_vec(&body)?, oci::OCI_INDEX),
            vec![],
        ));
        let mut one = layer[0].descriptor();
        one["annotations"] = json!({"a": "b"});
        let one = serde_json::to_string(&one)?;
        let layers = vec![one.as_str(); (oci::MAX_MANIFEST_SIZE as usize - 1024) / (one.len() + 1)]
            .join(",");
        for n in 0..4 * scale {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","annotations":{{"n":"{n}"}},"layers":[{layers}]}}"#,
                oci::OCI_MANIFEST
            );
            large.push(Blob::new(body.into_bytes(), oci::OCI_MANIFEST));
        }
    }

    // Every tag: an index (a third) or an image manifest, with all it needs.
    let mut images = Vec::new();
    for t in 0..tags {
        let reference = format!("bench/repo-{}:tag-{t}", t % 500);
        let needs_manifest = |m: usize, blobs: &mut Vec<Digest>| {
            let (manifest, uses, config) = &image_manifests[m];
            blobs.push(configs[*config].digest);
            blobs.extend(uses.iter().map(|&l| layer[l].digest));
            blobs.push(manifest.digest);
        };
        let mut blobs = Vec::new();
        let (top, platforms) = if hostile {
            (&index_blobs.last().unwrap().0, vec![])
        } else if t % 3 == 0 {
            let (index, children) = &index_blobs[(t / 3) % indexes];
            for &c in children {
                needs_manifest(c, &mut blobs);
            }
            let platforms = children
                .iter()
                .map(|&c| PLATFORMS[c % PLATFORMS.len()].to_owned())
                .collect();
            (index, platforms)
        } else {
            let m = t % manifests;
            needs_manifest(m, &mut blobs);
            (
                &image_manifests[m].0,
                vec![PLATFORMS[m % PLATFORMS.len()].to_owned()],
            )
        };
        blobs.push(top.digest);
        blobs.sort();
        blobs.dedup();
        images.push(Image {
            source: format!("registry.example:5000/{reference}"),
            reference,
            digest: top.digest,
            media_type: top.media_type.to_owned(),
            size: top.bytes.len() as u64,
            platforms: Platforms::from_strings(&platforms).map_err(anyhow::Error::msg)?,
            platform_filtered: false,
            blobs,
        });
    }
    // index.json is what bundle writes for these images (bundle.json's check requires it).
    let index_json = oci::layout_index(images.iter().map(|i: &Image| oci::IndexEntry {
        reference: &i.reference,
        source: &i.source,
        media_type: &i.media_type,
        digest: i.digest,
        size: i.size,
    }));

    let dir = out.join("bundle");
    std::fs::create_dir_all(&dir)?;
    let mut w = VolumeWriter::new(&dir, MIN_VOLUME_SIZE, 3)?;
    let mut entries = Vec::new();
    let mut add =
        |w: &mut VolumeWriter, kind: EntryKind, bytes: &[u8], media_type: Option<&str>| {
            entries.push(w.add_bytes(kind, bytes, media_type)?);
            anyhow::Ok(())
        };
    add(&mut w, EntryKind::OciLayout, oci::OCI_LAYOUT_FILE, None)?;
    let all = layer
        .iter()
        .chain(&configs)
        .chain(image_manifests.iter().map(|(b, _, _)| b))
        .chain(index_blobs.iter().map(|(b, _)| b))
        .chain(&large);
    for b in all {
        add(&mut w, EntryKind::Blob, &b.bytes, Some(b.media_type))?;
    }
    add(&mut w, EntryKind::Index, &index_json, None)?;
    let (volumes, tar_size) = w.finish()?;
    let m = BundleManifest {
        format_version: manifest::FORMAT_VERSION,
        bundle_id: "0123456789abcdef0123456789abcdef".into(),
        created: "2026-01-01T00:00:00Z".into(),
        tool: "bench/synthetic_bundle".into(),
        source: "docker://registry.example:5000".into(),
        compression: Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        volume_size: MIN_VOLUME_SIZE,
        tar_size,
        volumes,
        entries,
        images,
        base_bundle: None,
    };
    m.check()?;
    let json = m.to_canonical_bytes();
    let (secret, public) = bundle::sign::generate("bench synthetic bundle");
    let signature = secret.sign(&json, "bench synthetic bundle")?;
    std::fs::write(dir.join(manifest::FILE_NAME), &json)?;
    std::fs::write(
        dir.join(manifest::SIGNATURE_FILE_NAME),
        signature.to_file_text(),
    )?;
    std::fs::write(
        dir.join(manifest::SUMS_FILE_NAME),
        manifest::sha256sums(&m.volumes),
    )?;
    std::fs::write(out.join("key.pub"), public.to_file_text())?;
    println!(
        "{} entries, {} images, {} volumes, bundle.json {} bytes",
        m.entries.len(),
        m.images.len(),
        m.volumes.len(),
        json.len()
    );
    Ok(())
}
