//! `bundle.json`: the signed manifest of digests, its types and canonical bytes.
//!
//! Pure: parsing takes bytes, serializing returns bytes. Keys come out sorted
//! (serde_json's map is ordered) and the layout is fixed, so the same content
//! always gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

mod fields;

pub use fields::is_bundle_id;

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// bundle.json files larger than this are refused before parsing.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The file name of the manifest inside a bundle directory.
pub const FILE_NAME: &str = "bundle.json";
/// The file name of its signature.
pub const SIGNATURE_FILE_NAME: &str = "bundle.json.minisig";
/// The checksum file for `sha256sum -c`.
pub const SUMS_FILE_NAME: &str = "SHA256SUMS";
/// Volume names (`images.tar.zst.00000`, …), from the format's [`crate::geometry`].
pub use crate::geometry::{MAX_VOLUMES, VOLUME_PREFIX, volume_index, volume_name};
/// The signed description of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Format version; always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// A random identifier of this bundle, shown by verify.
    pub bundle_id: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// The tool and version that wrote it.
    pub tool: String,
    /// Where the images came from (`docker://host`, `oci:DIR`).
    pub source: String,
    /// How the volumes are compressed.
    pub compression: Compression,
    /// The maximum size of one volume in bytes.
    pub volume_size: u64,
    /// Total size of the uncompressed tar stream.
    pub tar_size: u64,
    /// The volumes, in order.
    pub volumes: Vec<Volume>,
    /// Every tar entry of the stream, in order: `oci-layout`, blobs, `index.json`.
    pub entries: Vec<Entry>,
    /// The tagged images.
    pub images: Vec<Image>,
    /// Digest of the base bundle.json this one builds on (incremental bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_bundle: Option<Digest>,
}

/// Compression settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    /// Always `zstd`.
    pub algorithm: String,
    /// The zstd level used.
    pub level: i32,
}

/// One volume file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// File name, `images.tar.zst.NNNNN`.
    pub name: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: Digest,
    /// Offset in the uncompressed tar stream where this volume starts.
    pub tar_offset: u64,
    /// Uncompressed tar bytes this volume holds.
    pub tar_size: u64,
}

/// What a tar entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// The `oci-layout` marker file.
    OciLayout,
    /// A blob, under `blobs/sha256/<hex>`.
    Blob,
    /// The layout's `index.json`.
    Index,
}

impl EntryKind {
    /// The tar path of an entry of this kind with content `digest`.
    pub fn path(self, digest: &Digest) -> String {
        match self {
            EntryKind::OciLayout => "oci-layout".into(),
            EntryKind::Index => "index.json".into(),
            EntryKind::Blob => digest.layout_path(),
        }
    }
}

/// One tar entry and where its frame is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// What the entry is.
    pub kind: EntryKind,
    /// Digest of the entry's content.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
    /// Media type of a blob as its first referrer declared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The volume holding the entry's first frame.
    pub volume: u32,
    /// Offset of that frame in the volume file.
    pub frame_offset: u64,
    /// Offset of the entry's tar header in the uncompressed stream.
    pub tar_offset: u64,
}

impl Entry {
    /// The entry's path inside the tar archive.
    pub fn path(&self) -> String {
        self.kind.path(&self.digest)
    }

    /// Offset just past the entry's data and padding in the uncompressed stream.
    pub fn tar_end(&self) -> u64 {
        self.tar_offset
            .saturating_add(crate::geometry::entry_len(self.size))
    }
}

/// One tagged image (or index, or artifact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The name in the layout, `<repo>:<tag>` (`org.opencontainers.image.ref.name`).
    pub reference: String,
    /// The full source reference.
    pub source: String,
    /// Digest of the top manifest or index.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Platforms the bundle holds for it (`os/arch[/variant]`); empty when unknown.
    pub platforms: Platforms,
    /// True when `--platform` left out some entries of its index.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_filtered: bool,
    /// Every digest the image needs, the top manifest included.
    pub blobs: Vec<Digest>,
}

/// The platforms of an image (`os/arch[/variant]` each), a JSON array in
/// bundle.json. Kept as one string, each platform checked as it is read:
/// an array of many tiny strings would otherwise cost far more memory than
/// the bytes of bundle.json that hold it (3 bytes of `"",` per 24-byte
/// `String` and its allocation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platforms(String);

impl Platforms {
    /// Each platform, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|p| !p.is_empty())
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The platforms joined with `,` (as `list` shows them).
    pub fn joined(&self) -> &str {
        &self.0
    }

    fn push(&mut self, platform: &str) -> Result<(), &'static str> {
        fields::platform(platform)?;
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(platform);
        Ok(())
    }
}

impl Platforms {
    /// Platforms from strings, each checked against the grammar; the error
    /// names the first that fails.
    pub fn from_strings<S: AsRef<str>>(iter: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let mut out = Platforms::default();
        for p in iter {
            let p = p.as_ref();
            out.push(p)
                .map_err(|reason| format!("platform {}: {reason}", fields::shown(p)))?;
        }
        Ok(out)
    }
}

impl Serialize for Platforms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Platforms {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Platforms;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of os/arch[/variant] platforms")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Platforms, A::Error> {
                let mut out = Platforms::default();
                while let Some(p) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    out.push(&p).map_err(|reason| {
                        serde::de::Error::custom(format!(
                            "platform {}: {reason}",
                            fields::shown(&p)
                        ))
                    })?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// Why a bundle.json was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("bundle.json is {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not valid JSON of the expected shape.
    #[error("bundle.json is malformed")]
    Json(#[source] serde_json::Error),
    /// A format version this build does not know.
    #[error("bundle.json has format version {0}; this build reads version {FORMAT_VERSION}")]
    Version(u32),
    /// Internally inconsistent.
    #[error("bundle.json is inconsistent: {0}")]
    Inconsistent(String),
    /// A string field outside its grammar.
    #[error("bundle.json field {field}{} is {value}: {reason}", image.as_ref().map(|i| format!(" (image {i})")).unwrap_or_default())]
    Field {
        /// The field (`bundle_id`, `images[3].source`, …).
        field: String,
        /// The image it belongs to, as shown (quoted, escaped).
        image: Option<String>,
        /// The value as shown (quoted, escaped, cut).
        value: String,
        /// The grammar it fails.
        reason: String,
    },
}

impl BundleManifest {
    /// Canonical bytes: sorted keys, two-space indent, trailing newline.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("bundle manifest serializes");
        let mut out = serde_json::to_vec_pretty(&value).expect("json value serializes");
        out.push(b'\n');
        out
    }

    /// Parses and checks bundle.json bytes (untrusted until the signature is checked).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                size: bytes.len() as u64,
                max: MAX_MANIFEST_BYTES,
            });
        }
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if version.format_version != FORMAT_VERSION {
            return Err(ManifestError::Version(version.format_version));
        }
        let manifest: BundleManifest =
            serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks that volumes and entries tile the tar stream exactly, in order,
    /// so a reader can trust every offset it derives from them.
    pub fn check(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Inconsistent(m));
        fields::check(self)?;
        if self.compression.algorithm != "zstd" {
            return bad(format!(
                "unknown compression {:?}",
                self.compression.algorithm
            ));
        }
        if self.volumes.is_empty() || self.entries.len() < 2 {
            return bad("no volumes or entries".into());
        }
        if self.volumes.len() > MAX_VOLUMES {
            return bad(format!(
                "{} volumes listed, more than the {MAX_VOLUMES} a bundle can hold",
                self.volumes.len()
            ));
        }
        let mut tar = 0u64;
        let mut compressed = 0u64;
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name != volume_name(i) {
                return bad(format!(
                    "volume {i} is named {:?}, expected {:?}",
                    v.name,
                    volume_name(i)
                ));
            }
            if v.tar_offset != tar || v.size > self.volume_size || v.size == 0 || v.tar_size == 0 {
                return bad(format!("volume {} has impossible offsets or sizes", v.name));
            }
            tar = checked_add(tar, v.tar_size)?;
            // Readers add the volumes' sizes up (progress, totals): they must fit.
            compressed = checked_add(compressed, v.size)?;
        }
        if tar != self.tar_size {
            return bad("volumes do not add up to tar_size".into());
        }
        let mut pos = 0u64;
        let mut digests = BTreeSet::new();
        let last = self.entries.len() - 1;
        for (i, e) in self.entries.iter().enumerate() {
            let expected_kind = match i {
                0 => EntryKind::OciLayout,
                i if i == last => EntryKind::Index,
                _ => EntryKind::Blob,
            };
            if e.kind != expected_kind {
                return bad(format!(
                    "entry {i} is {:?}, expected {expected_kind:?}",
                    e.kind
                ));
            }
            if e.tar_offset != pos {
                return bad(format!(
                    "entry {} is not where the previous one ends",
                    e.path()
                ));
            }
            if e.kind == EntryKind::Blob && !digests.insert(e.digest) {
                return bad(format!("blob {} is listed twice", e.digest));
            }
            let v = self.volumes.get(e.volume as usize).ok_or_else(|| {
                ManifestError::Inconsistent(format!("entry {} names volume {}", e.path(), e.volume))
            })?;
            if e.tar_offset < v.tar_offset
                || e.tar_offset >= v.tar_offset + v.tar_size
                || e.frame_offset >= v.size
            {
                return bad(format!("entry {} lies outside volume {}", e.path(), v.name));
            }
            pos = checked_add(e.tar_offset, crate::geometry::entry_len(e.size))?;
        }
        let layout = &self.entries[0];
        if layout.size != crate::oci::OCI_LAYOUT_FILE.len() as u64
            || layout.digest != Digest::of(crate::oci::OCI_LAYOUT_FILE)
        {
            return bad(format!(
                "oci-layout is {} bytes with digest {}; bundle writes exactly {:?}",
                layout.size,
                layout.digest,
                String::from_utf8_lossy(crate::oci::OCI_LAYOUT_FILE)
            ));
        }
        let (digest, size) = crate::oci::layout_index_digest(self.index_entries());
        let declared = &self.entries[last];
        if declared.size != size || declared.digest != digest {
            return bad(format!(
                "index.json is recorded as {} bytes with digest {}, not the index.json of the \
                 images bundle.json lists ({size} bytes, {digest})",
                declared.size, declared.digest,
            ));
        }
        if checked_add(pos, crate::geometry::TRAILER_LEN)? != self.tar_size {
            return bad("entries do not add up to tar_size".into());
        }
        let have: BTreeMap<Digest, &Entry> = self.entries.iter().map(|e| (e.digest, e)).collect();
        for img in &self.images {
            for d in img.blobs.iter().chain([&img.digest]) {
                if !have.contains_key(d) {
                    return bad(format!(
                        "image {} needs {d}, which is not in the bundle",
                        img.reference
                    ));
                }
            }
        }
        Ok(())
    }

    /// The exact index.json bundle writes for these images (see
    /// [`crate::oci::layout_index`]); the index entry must hold these bytes.
    pub fn index_json(&self) -> Vec<u8> {
        crate::oci::layout_index(self.index_entries())
    }

    /// The images as index.json lists them.
    pub fn index_entries(&self) -> impl Iterator<Item = crate::oci::IndexEntry<'_>> {
        self.images.iter().map(|i| crate::oci::IndexEntry {
            reference: &i.reference,
            source: &i.source,
            media_type: &i.media_type,
            digest: i.digest,
            size: i.size,
        })
    }

    /// The index.json entry.
    pub fn index_entry(&self) -> &Entry {
        self.entries.last().expect("checked: at least two entries")
    }

    /// Total size of all entries' content.
    pub fn content_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

fn checked_add(a: u64, b: u64) -> Result<u64, ManifestError> {
    a.checked_add(b)
        .ok_or_else(|| ManifestError::Inconsistent("offsets overflow".into()))
}

/// The text of `SHA256SUMS` for these volumes (`sha256sum -c` format).
pub fn sha256sums(volumes: &[Volume]) -> String {
    volumes
        .iter()
        .map(|v| format!("{}  {}\n", v.sha256.hex(), v.name))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geometry::{TRAILER_LEN, entry_len};

    /// A small consistent manifest: oci-layout, one blob, index.json in one volume.
    pub fn sample() -> BundleManifest {
        let blob = Digest::of(b"blob");
        let images = vec![Image {
            reference: "a:b".into(),
            source: "reg.example/a:b".into(),
            digest: blob,
            media_type: crate::oci::OCI_MANIFEST.into(),
            size: 600,
            platforms: Platforms::default(),
            platform_filtered: false,
            blobs: vec![],
        }];
        let index = crate::oci::layout_index(images.iter().map(|i| crate::oci::IndexEntry {
            reference: &i.reference,
            source: &i.source,
            media_type: &i.media_type,
            digest: i.digest,
            size: i.size,
        }));
        let mut entries = vec![];
        let mut pos = 0;
        for (kind, digest, size) in [
            (
                EntryKind::OciLayout,
                Digest::of(crate::oci::OCI_LAYOUT_FILE),
                crate::oci::OCI_LAYOUT_FILE.len() as u64,
            ),
            (EntryKind::Blob, blob, 600),
            (EntryKind::Index, Digest::of(&index), index.len() as u64),
        ] {
            entries.push(Entry {
                kind,
                digest,
                size,
                media_type: None,
                volume: 0,
                frame_offset: pos / 2,
                tar_offset: pos,
            });
            pos += entry_len(size);
        }
        let tar_size = pos + TRAILER_LEN;
        BundleManifest {
            format_version: 1,
            bundle_id: "0123456789abcdef0123456789abcdef".into(),
            created: "2026-01-01T00:00:00Z".into(),
            tool: "bundle test".into(),
            source: "oci:x".into(),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            volume_size: 1 << 20,
            tar_size,
            volumes: vec![Volume {
                name: volume_name(0),
                size: 5000,
                sha256: Digest::of(b"v"),
                tar_offset: 0,
                tar_size,
            }],
            entries,
            images,
            base_bundle: None,
        }
    }

    #[test]
    fn canonical_bytes_round_trip_and_are_stable() {
        let m = sample();
        let bytes = m.to_canonical_bytes();
        let back = BundleManifest::parse(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_canonical_bytes(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find("\"compression\"").unwrap() < text.find("\"volumes\"").unwrap());
    }

    #[test]
    fn refuses_inconsistent_manifests() {
        let mut m = sample();
        m.volumes[0].name = "../etc/passwd".into();
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Inconsistent(_))
        ));
        let mut m = sample();
        m.entries[1].size += 1024;
        assert!(BundleManifest::parse(&m.to_canonical_bytes()).is_err());
        let mut m = sample();
        m.images[0].blobs.push(Digest::of(b"missing"));
        assert!(BundleManifest::parse(&m.to_canonical_bytes()).is_err());
        let mut m = sample();
        m.format_version = 2;
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Version(2))
        ));
        let mut m = sample();
        m.volumes[0].size = m.volume_size + 1;
        assert!(BundleManifest::parse(&m.to_canonical_bytes()).is_err());
        // One reference, one image.
        let mut m = sample();
        m.images.push(m.images[0].clone());
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Field { field, .. }) if field == "images[1].reference"
        ));
        // index.json is a function of the images: another one is refused,
        // and so is an oci-layout other than the constant.
        let mut m = sample();
        m.entries[2].digest = Digest::of(b"another index.json");
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Inconsistent(e)) if e.contains("not the index.json of the images")
        ));
        let mut m = sample();
        m.entries[0].digest = Digest::of(b"{}");
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Inconsistent(e)) if e.contains("oci-layout")
        ));
        // Two volumes whose sizes add up past u64: refused, never summed.
        let mut m = sample();
        m.volume_size = u64::MAX;
        let mut second = m.volumes[0].clone();
        second.name = volume_name(1);
        second.size = u64::MAX;
        second.tar_offset = m.tar_size;
        second.tar_size = 1;
        m.volumes[0].size = u64::MAX;
        m.volumes.push(second);
        m.tar_size += 1;
        assert!(matches!(
            BundleManifest::parse(&m.to_canonical_bytes()),
            Err(ManifestError::Inconsistent(e)) if e.contains("overflow")
        ));
        assert!(BundleManifest::parse(b"{\"format_version\":1,\"x\":").is_err());
    }
}
