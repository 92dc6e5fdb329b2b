//! OCI and Docker media types, and generic descriptor walking.
//!
//! Content is walked generically (index → manifests → config, layers, blobs):
//! no image config or layer media type is assumed, so artifacts (signatures,
//! SBOMs, Helm charts) pass through unchanged. Manifests are never
//! re-serialized; these types only read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Annotation skopeo's `oci:` transport matches a reference against.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full source reference an image came from.
pub const SOURCE_REF: &str = "io.github.bundle.source";
/// Largest manifest accepted (the distribution spec's common limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Whether `media_type` names an index or manifest list (a manifest of manifests).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` names something whose children must be walked.
pub fn is_manifest_like(media_type: &str) -> bool {
    is_index(media_type) || media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// An OCI content descriptor, with the fields bundle reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Platform, on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Operating system (`linux`, …).
    pub os: String,
    /// CPU variant (`v7`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        // `"variant": ""` (some tools write it) is no variant, not `os/arch/`.
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses `os/arch[/variant]` as `--platform` takes it.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() || variant.as_deref() == Some("") {
            return None;
        }
        Some(Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            variant,
        })
    }

    /// Whether `self` (a filter) selects `other` (an index entry's platform):
    /// a filter without a variant selects every variant.
    pub fn selects(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

/// What bundle reads of a manifest, index or manifest list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

/// The parsed references of a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Entries of an index or manifest list (each a manifest of its own).
    pub manifests: Vec<Descriptor>,
    /// Config, layers and artifact blobs of an image manifest.
    pub blobs: Vec<Descriptor>,
    /// The `subject` this content refers to (signatures, attestations); not required to be present.
    pub subject: Option<Descriptor>,
    /// The config descriptor of an image manifest (also in `blobs`).
    pub config: Option<Descriptor>,
}

/// Why manifest bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The bytes are not a manifest bundle can read.
    #[error("malformed {media_type} ({reason})")]
    Malformed {
        /// The media type it was read as.
        media_type: String,
        /// What the parser said.
        reason: String,
    },
    /// The body says it is something else than its descriptor says.
    #[error("content claims media type {found} but was referenced as {expected}")]
    MediaTypeMismatch {
        /// The media type of the descriptor.
        expected: String,
        /// The `mediaType` field of the body.
        found: String,
    },
}

/// Reads the references of manifest bytes fetched or stored as `media_type`.
pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Parsed, OciError> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        media_type: media_type.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(found) = &raw.media_type
        && found != media_type
    {
        return Err(OciError::MediaTypeMismatch {
            expected: media_type.to_owned(),
            found: found.clone(),
        });
    }
    let index = is_index(media_type);
    if index && (raw.config.is_some() || !raw.layers.is_empty()) {
        return Err(OciError::Malformed {
            media_type: media_type.to_owned(),
            reason: "an index with config or layers".into(),
        });
    }
    if !index && !raw.manifests.is_empty() {
        return Err(OciError::Malformed {
            media_type: media_type.to_owned(),
            reason: "an image manifest with a manifests list".into(),
        });
    }
    Ok(Parsed {
        manifests: raw.manifests,
        config: raw.config.clone(),
        blobs: raw
            .config
            .into_iter()
            .chain(raw.layers)
            .chain(raw.blobs)
            .collect(),
        subject: raw.subject,
    })
}

/// The platform an image config declares (`os`, `architecture`, `variant`).
pub fn config_platform(bytes: &[u8]) -> Option<Platform> {
    serde_json::from_slice(bytes).ok()
}

/// Whether `media_type` names an image config (whose platform is worth reading).
pub fn is_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// The `index.json` of an OCI image layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutIndex {
    /// Always 2.
    pub schema_version: u32,
    /// Always the OCI index media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One entry per tagged image.
    pub manifests: Vec<Descriptor>,
}

/// One image as a layout's index.json lists it.
pub struct IndexEntry<'a> {
    /// Its ref name (`org.opencontainers.image.ref.name`).
    pub reference: &'a str,
    /// Its full source reference ([`SOURCE_REF`]).
    pub source: &'a str,
    /// The top manifest's media type, digest and size.
    pub media_type: &'a str,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// Writes the exact bytes of the index.json bundle writes for `images` (a
/// [`LayoutIndex`] as serde_json writes it, compact) into `out`, one
/// descriptor at a time: a pure function of what bundle.json records, so a
/// reader can check index.json against bundle.json by its digest alone,
/// without parsing it, and without holding the whole text.
pub fn write_layout_index<'a>(
    images: impl Iterator<Item = IndexEntry<'a>>,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    out.write_all(b"{\"schemaVersion\":2,\"mediaType\":")?;
    serde_json::to_writer(&mut out, OCI_INDEX)?;
    out.write_all(b",\"manifests\":[")?;
    for (n, i) in images.enumerate() {
        if n > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut out, &index_descriptor(&i))?;
    }
    out.write_all(b"]}")
}

/// The index.json entry of one image: its top manifest, named by the ref
/// name and source annotations.
pub fn index_descriptor(i: &IndexEntry<'_>) -> Descriptor {
    Descriptor {
        media_type: i.media_type.to_owned(),
        digest: i.digest,
        size: i.size,
        platform: None,
        annotations: [
            (REF_NAME.to_owned(), i.reference.to_owned()),
            (SOURCE_REF.to_owned(), i.source.to_owned()),
        ]
        .into(),
    }
}

/// The bytes [`write_layout_index`] writes.
pub fn layout_index<'a>(images: impl Iterator<Item = IndexEntry<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_layout_index(images, &mut out).expect("writing to memory");
    out
}

/// The digest and size of what [`write_layout_index`] writes, without
/// holding it.
pub fn layout_index_digest<'a>(images: impl Iterator<Item = IndexEntry<'a>>) -> (Digest, u64) {
    struct Hashing(crate::digest::Hasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(crate::digest::Hasher::new());
    write_layout_index(images, &mut h).expect("hashing");
    let len = h.0.len();
    (h.0.finish(), len)
}

/// The `oci-layout` file's exact bytes.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_variant_is_no_variant() {
        let config = br#"{"architecture":"amd64","os":"linux","variant":"","rootfs":{}}"#;
        let platform = config_platform(config).expect("a platform");
        assert_eq!(platform.to_string(), "linux/amd64");
        crate::manifest::Platforms::from_strings(&[platform.to_string()]).expect("in the grammar");
    }

    #[test]
    fn the_layout_index_is_what_serde_writes_for_a_layout_index() {
        for n in [0usize, 1, 3] {
            let names: Vec<String> = (0..n).map(|i| format!("app/x:{i}\u{e9}\"")).collect();
            let entries = || {
                names.iter().map(|r| IndexEntry {
                    reference: r,
                    source: "reg.example/app/x:1",
                    media_type: OCI_MANIFEST,
                    digest: Digest::of(r.as_bytes()),
                    size: 7,
                })
            };
            let whole = LayoutIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: entries().map(|i| index_descriptor(&i)).collect(),
            };
            let bytes = layout_index(entries());
            assert_eq!(bytes, serde_json::to_vec(&whole).unwrap());
            assert_eq!(
                layout_index_digest(entries()),
                (Digest::of(&bytes), bytes.len() as u64)
            );
        }
    }

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    #[test]
    fn walks_manifest_and_index_generically() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"x/y",
            "config":{{"mediaType":"a/b","digest":"{}","size":2}},
            "layers":[{{"mediaType":"c/d","digest":"{}","size":3}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":4}}}}"#,
            d(1),
            d(2),
            d(3)
        );
        let p = parse(OCI_MANIFEST, m.as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.subject.unwrap().size, 4);
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5,
            "platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            d(4)
        );
        let p = parse(OCI_INDEX, i.as_bytes()).unwrap();
        assert_eq!(
            p.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm/v7"
        );
    }

    #[test]
    fn refuses_content_that_lies_about_its_type() {
        let i = format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse(OCI_MANIFEST, i.as_bytes()),
            Err(OciError::MediaTypeMismatch { .. })
        ));
        let m = format!(
            r#"{{"config":{{"mediaType":"a/b","digest":"{}","size":2}}}}"#,
            d(1)
        );
        assert!(parse(OCI_INDEX, m.as_bytes()).is_err());
        assert!(parse(OCI_MANIFEST, b"[1,2]").is_err());
    }

    #[test]
    fn platform_filters() {
        let f = Platform::parse("linux/arm").unwrap();
        assert!(f.selects(&Platform::parse("linux/arm/v7").unwrap()));
        assert!(
            !Platform::parse("linux/arm/v6")
                .unwrap()
                .selects(&Platform::parse("linux/arm/v7").unwrap())
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/amd64/").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
    }
}
