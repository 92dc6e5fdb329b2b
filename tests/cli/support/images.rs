//! Deterministic OCI image layouts written to disk for tests.
//!
//! Layers are real gzip'd tar archives of random-content files (seeded RNG),
//! configs carry `rootfs.diff_ids` (sha256 of the uncompressed tar), images
//! with several platforms become an OCI index, and `index.json` names every
//! image with `org.opencontainers.image.ref.name` so that
//! `skopeo copy oci:DIR:NAME docker://…` works. A shared layer's bytes depend
//! only on the builder seed, its name and its size, so images built with the
//! same seed share base layers blob for blob.
//!
//! ```ignore
//! let layout = LayoutBuilder::new(dir.path())
//!     .image("php:5.6", ImageSpec::new(vec![LayerSpec::shared("base", 200_000), LayerSpec::unique(50_000)]))
//!     .image("busybox:1.36", ImageSpec::new(vec![LayerSpec::shared("base", 200_000)])
//!         .platforms(&[Platform::LINUX_AMD64, Platform::LINUX_ARM64]))
//!     .build();
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::digest_of;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip'd layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation skopeo's `oci:` transport matches image names against.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Fixed mtime for every tar entry and the image `created` time: 2024-01-01.
const MTIME: u64 = 1_704_067_200;
const CREATED: &str = "2024-01-01T00:00:00Z";

/// An OS/architecture(/variant) pair as in an OCI index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: &'static str,
    /// `architecture`, e.g. `amd64`.
    pub architecture: &'static str,
    /// `variant`, e.g. `v7` for `arm`.
    pub variant: Option<&'static str>,
}

impl Platform {
    /// `linux/amd64`.
    pub const LINUX_AMD64: Platform = Platform::new("linux", "amd64", None);
    /// `linux/arm64`.
    pub const LINUX_ARM64: Platform = Platform::new("linux", "arm64", None);
    /// `linux/arm/v7`.
    pub const LINUX_ARM_V7: Platform = Platform::new("linux", "arm", Some("v7"));

    /// A platform from its parts.
    pub const fn new(
        os: &'static str,
        architecture: &'static str,
        variant: Option<&'static str>,
    ) -> Self {
        Platform {
            os,
            architecture,
            variant,
        }
    }

    fn to_json(self) -> Value {
        let mut value = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(variant) = self.variant {
            value["variant"] = json!(variant);
        }
        value
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// One layer of an image: `size` bytes of random file content, tarred and gzip'd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// `Some(name)`: the same bytes wherever this name and size are used.
    pub shared: Option<String>,
    /// Bytes of file content inside the tar (the blob is a bit larger: gzip of random data).
    pub size: usize,
}

impl LayerSpec {
    /// A layer whose bytes are the same in every image that uses `name` (and `size`).
    pub fn shared(name: &str, size: usize) -> Self {
        LayerSpec {
            shared: Some(name.to_owned()),
            size,
        }
    }

    /// A layer only this image (and platform) has.
    pub fn unique(size: usize) -> Self {
        LayerSpec { shared: None, size }
    }
}

/// What one image looks like: its layers, and its platforms if it is an index.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// Layers, base first.
    pub layers: Vec<LayerSpec>,
    /// `None`: a single OCI manifest (linux/amd64). `Some`: an OCI index with
    /// one manifest per platform.
    pub platforms: Option<Vec<Platform>>,
}

impl ImageSpec {
    /// A single-manifest image with these layers.
    pub fn new(layers: Vec<LayerSpec>) -> Self {
        ImageSpec {
            layers,
            platforms: None,
        }
    }

    /// Makes it an OCI index over `platforms`.
    pub fn platforms(mut self, platforms: &[Platform]) -> Self {
        self.platforms = Some(platforms.to_vec());
        self
    }
}

/// A blob written into the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The media type its descriptor gives it.
    pub media_type: String,
}

/// One platform's manifest inside a built image.
#[derive(Debug, Clone)]
pub struct BuiltManifest {
    /// The manifest blob.
    pub manifest: Blob,
    /// Its platform.
    pub platform: Platform,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, base first.
    pub layers: Vec<Blob>,
}

/// An image written into the layout and named in `index.json`.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The `org.opencontainers.image.ref.name` in `index.json`.
    pub name: String,
    /// The top-level blob: an OCI manifest or an OCI index.
    pub top: Blob,
    /// Its manifests: one, or one per platform of the index.
    pub manifests: Vec<BuiltManifest>,
}

impl BuiltImage {
    /// Every blob digest this image references, the top one included, deduplicated.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut all = vec![self.top.digest.clone()];
        for m in &self.manifests {
            all.push(m.manifest.digest.clone());
            all.push(m.config.digest.clone());
            all.extend(m.layers.iter().map(|l| l.digest.clone()));
        }
        all.sort();
        all.dedup();
        all
    }
}

/// A finished OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout directory (holds `oci-layout`, `index.json`, `blobs/`).
    pub dir: PathBuf,
    /// The images, in `index.json` order.
    pub images: Vec<BuiltImage>,
}

impl Layout {
    /// The image named `name` in `index.json`; panics if there is none.
    pub fn image(&self, name: &str) -> &BuiltImage {
        self.images
            .iter()
            .find(|image| image.name == name)
            .unwrap_or_else(|| panic!("no image {name:?} in the layout at {}", self.dir.display()))
    }

    /// `oci:DIR:NAME`, the skopeo reference of one image.
    pub fn skopeo_ref(&self, name: &str) -> String {
        format!("oci:{}:{name}", self.dir.display())
    }

    /// The path of a blob in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256: digest");
        self.dir.join("blobs/sha256").join(hex)
    }
}

/// Writes images into an OCI layout directory; see the module docs.
#[derive(Debug)]
pub struct LayoutBuilder {
    dir: PathBuf,
    seed: u64,
    images: Vec<BuiltImage>,
    shared_layers: BTreeMap<(String, usize), (Blob, String)>,
}

impl LayoutBuilder {
    /// A builder writing into `dir` (created if missing), with seed 0.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        fs::create_dir_all(dir.join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("creating {}/blobs/sha256: {e}", dir.display()));
        LayoutBuilder {
            dir,
            seed: 0,
            images: Vec::new(),
            shared_layers: BTreeMap::new(),
        }
    }

    /// Uses another seed: all random content changes, deterministically.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds an image named `name` (the `ref.name`, e.g. `openshift/php:5.6`).
    pub fn image(mut self, name: &str, spec: ImageSpec) -> Self {
        let single = [Platform::LINUX_AMD64];
        let platforms = spec.platforms.as_deref().unwrap_or(&single);
        let manifests: Vec<BuiltManifest> = platforms
            .iter()
            .map(|platform| self.write_manifest(name, *platform, &spec.layers))
            .collect();
        let top = match spec.platforms {
            None => manifests[0].manifest.clone(),
            Some(_) => {
                let entries: Vec<Value> = manifests
                    .iter()
                    .map(|m| {
                        let mut desc = descriptor(&m.manifest);
                        desc["platform"] = m.platform.to_json();
                        desc
                    })
                    .collect();
                let index =
                    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries });
                self.write_json(&index, OCI_INDEX)
            }
        };
        self.images.push(BuiltImage {
            name: name.to_owned(),
            top,
            manifests,
        });
        self
    }

    /// Writes `oci-layout` and `index.json` and returns what was built.
    pub fn build(self) -> Layout {
        let manifests: Vec<Value> = self
            .images
            .iter()
            .map(|image| {
                let mut desc = descriptor(&image.top);
                desc["annotations"] = json!({ REF_NAME: image.name });
                desc
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        write_file(
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        );
        write_file(&self.dir.join("index.json"), &to_bytes(&index));
        Layout {
            dir: self.dir,
            images: self.images,
        }
    }

    fn write_manifest(
        &mut self,
        name: &str,
        platform: Platform,
        specs: &[LayerSpec],
    ) -> BuiltManifest {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let (blob, diff_id) = match &spec.shared {
                Some(shared) => self.shared_layer(shared, spec.size),
                None => {
                    let label = format!("unique/{name}/{platform}/{i}");
                    self.write_layer(&label, spec.size)
                }
            };
            layers.push(blob);
            diff_ids.push(diff_id);
        }
        let mut config = platform.to_json();
        config["created"] = json!(CREATED);
        config["config"] = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": { "org.opencontainers.image.title": name },
        });
        config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
        config["history"] = json!(
            specs
                .iter()
                .map(|_| json!({ "created": CREATED, "created_by": "bundle tests" }))
                .collect::<Vec<_>>()
        );
        let config = self.write_json(&config, OCI_CONFIG);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.write_json(&manifest, OCI_MANIFEST);
        BuiltManifest {
            manifest,
            platform,
            config,
            layers,
        }
    }

    fn shared_layer(&mut self, name: &str, size: usize) -> (Blob, String) {
        let key = (name.to_owned(), size);
        if let Some(found) = self.shared_layers.get(&key) {
            return found.clone();
        }
        let written = self.write_layer(&format!("shared/{name}/{size}"), size);
        self.shared_layers.insert(key, written.clone());
        written
    }

    /// Writes a gzip'd tar layer whose content is determined by the seed and
    /// `label`; returns the blob and its diff_id.
    fn write_layer(&mut self, label: &str, size: usize) -> (Blob, String) {
        let mut rng = rng_for(self.seed, label);
        let tar = layer_tar(label, size, &mut rng);
        let diff_id = digest_of(&tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gzip into memory");
        let gz = gz.finish().expect("finishing gzip");
        (self.write_blob(&gz, OCI_LAYER_GZIP), diff_id)
    }

    fn write_json(&mut self, value: &Value, media_type: &str) -> Blob {
        self.write_blob(&to_bytes(value), media_type)
    }

    fn write_blob(&mut self, bytes: &[u8], media_type: &str) -> Blob {
        let digest = digest_of(bytes);
        let path = self
            .dir
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]);
        if !path.exists() {
            write_file(&path, bytes);
        }
        Blob {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.to_owned(),
        }
    }
}

/// A tar archive with a directory, a small text file naming `label` and
/// random files holding `size` bytes in total (at most 64 KiB each).
pub fn layer_tar(label: &str, size: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let dir = format!("data/{}", sanitize(label));
    append(
        &mut builder,
        &format!("{dir}/"),
        tar::EntryType::Directory,
        0o755,
        &[],
    );
    append(
        &mut builder,
        &format!("{dir}/label.txt"),
        tar::EntryType::Regular,
        0o644,
        label.as_bytes(),
    );
    let mut left = size;
    let mut n = 0;
    while left > 0 {
        let chunk = left.min(64 * 1024);
        let mut content = vec![0u8; chunk];
        rng.fill_bytes(&mut content);
        append(
            &mut builder,
            &format!("{dir}/file-{n:04}.bin"),
            tar::EntryType::Regular,
            0o644,
            &content,
        );
        left -= chunk;
        n += 1;
    }
    builder.into_inner().expect("finishing the layer tar")
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
) {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_path(path).expect("a short relative tar path");
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_cksum();
    builder
        .append(&header, data)
        .expect("appending to an in-memory tar");
}

/// An RNG seeded from the builder seed and a label.
fn rng_for(seed: u64, label: &str) -> StdRng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(label.as_bytes());
    StdRng::from_seed(hasher.finalize().into())
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An OCI descriptor `{mediaType, digest, size}` for a blob.
pub fn descriptor(blob: &Blob) -> Value {
    json!({ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size })
}

/// Compact JSON with sorted keys (serde_json's default map is ordered).
fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serializing JSON")
}

fn write_file(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
