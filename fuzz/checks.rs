//! The body of every fuzz target, one function per target.
//!
//! Included with `#[path]` by each target in `fuzz_targets/` and by the main
//! crate's `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/<target>/*`
//! through the same functions on every `cargo test`. Each function takes the
//! raw fuzz input, calls a pure library function on it and panics only when
//! an invariant below is broken (a panic inside `bundle` is a finding too).

use std::str::FromStr;
use std::sync::OnceLock;

use bundle::archive::reader::{ReadReport, Sink, read_bundle};
use bundle::archive::writer::{MIN_VOLUME_SIZE, VolumeWriter};
use bundle::digest::Digest;
use bundle::manifest::{BundleManifest, Compression, Entry, EntryKind, volume_name};
use bundle::oci;
use bundle::registry::ImageReference;
use bundle::sign::{PublicKey, Signature};

/// Every target: its name (the directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("bundle_json", bundle_json),
    ("volume_reader", volume_reader),
    ("oci_manifest", oci_manifest),
    ("image_reference", image_reference),
    ("minisign_signature", minisign_signature),
];

/// `BundleManifest::parse` never panics, and what it accepts survives its
/// canonical bytes: parsing them gives an equal value, and those bytes are a
/// fixed point (canonical means one spelling per content).
pub fn bundle_json(data: &[u8]) {
    let Ok(manifest) = BundleManifest::parse(data) else {
        return;
    };
    let canonical = manifest.to_canonical_bytes();
    let again = BundleManifest::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical bytes of an accepted bundle.json fail: {e:#?}"));
    assert_eq!(again, manifest, "canonical bytes parse to another value");
    assert_eq!(
        again.to_canonical_bytes(),
        canonical,
        "canonical bytes are not a fixed point"
    );
}

/// The four media types `bundle::oci::parse` reads.
const MEDIA_TYPES: [&str; 4] = [
    oci::OCI_MANIFEST,
    oci::OCI_INDEX,
    oci::DOCKER_MANIFEST,
    oci::DOCKER_MANIFEST_LIST,
];

/// `bundle::oci::parse` never panics; the first byte picks the media type,
/// the rest is the body. An image manifest it accepts lists no manifests.
pub fn oci_manifest(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let media_type = MEDIA_TYPES[usize::from(selector) % MEDIA_TYPES.len()];
    if let Ok(parsed) = oci::parse(media_type, body) {
        assert!(
            oci::is_index(media_type) || parsed.manifests.is_empty(),
            "an image manifest parsed with a manifests list"
        );
    }
}

/// `ImageReference::from_str` never panics, and what it accepts prints to a
/// string that parses back to an equal reference.
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = ImageReference::from_str(text) else {
        return;
    };
    let printed = reference.to_string();
    let again = ImageReference::from_str(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parses but its display {printed:?} does not: {e}"));
    assert_eq!(again, reference, "{text:?} printed as {printed:?}");
}

/// `Signature::parse` and `PublicKey::parse` never panic on the same text.
pub fn minisign_signature(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Signature::parse(text);
    let _ = PublicKey::parse(text);
}

/// The bundle the `volume_reader` target damages, written once per process.
struct Original {
    manifest: BundleManifest,
    volume: Vec<u8>,
}

/// Writes `oci-layout`, two small blobs and `index.json` with the real volume
/// writer, as `src/archive/roundtrip_tests.rs::write_set` does, and keeps the
/// manifest and the bytes of its only volume.
fn original() -> &'static Original {
    static ORIGINAL: OnceLock<Original> = OnceLock::new();
    ORIGINAL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let volume_size = MIN_VOLUME_SIZE;
        let mut w = VolumeWriter::new(dir.path(), volume_size, 3).expect("opening the writer");
        // One compressible blob (a config-like JSON) and one that is not.
        let text =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .repeat(8);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..700)
            .map(|_| {
                // xorshift64: fixed, dependency-free pseudo-random bytes.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let mut entries = vec![];
        let mut add = |w: &mut VolumeWriter, kind, bytes: &[u8]| {
            let digest = Digest::of(bytes);
            let path = match kind {
                EntryKind::OciLayout => "oci-layout".to_owned(),
                EntryKind::Index => "index.json".to_owned(),
                EntryKind::Blob => digest.layout_path(),
            };
            let p = w
                .add_entry(&path, bytes.len() as u64, &mut &bytes[..])
                .expect("writing an entry");
            entries.push(Entry {
                kind,
                digest,
                size: bytes.len() as u64,
                media_type: None,
                volume: p.volume,
                frame_offset: p.frame_offset,
                tar_offset: p.tar_offset,
            });
        };
        add(&mut w, EntryKind::OciLayout, oci::OCI_LAYOUT_FILE);
        add(&mut w, EntryKind::Blob, &text);
        add(&mut w, EntryKind::Blob, &noise);
        add(
            &mut w,
            EntryKind::Index,
            br#"{"schemaVersion":2,"manifests":[]}"#,
        );
        let (volumes, tar_size) = w.finish().expect("finishing the volumes");
        assert_eq!(volumes.len(), 1, "the fixture fits one volume");
        let manifest = BundleManifest {
            format_version: 1,
            bundle_id: "fuzz".into(),
            created: "2026-01-01T00:00:00Z".into(),
            tool: "fuzz".into(),
            source: "fuzz".into(),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            volume_size,
            tar_size,
            volumes,
            entries,
            images: vec![],
            base_bundle: None,
        };
        manifest
            .check()
            .expect("the fixture manifest is consistent");
        let volume = std::fs::read(dir.path().join(volume_name(0))).expect("reading volume 0");
        Original { manifest, volume }
    })
}

/// The original volume bytes, for writing seed inputs.
pub fn original_volume() -> &'static [u8] {
    &original().volume
}

/// Reads a damaged copy of a small real bundle with the strict reader.
///
/// Input: a mode byte, then a payload. Mode bits 0–1 pick the damage:
/// 0 replaces the volume with the payload; 1 XORs the volume at
/// `(u16 offset, byte)` triples; 2 cuts the volume at a `u16` offset and
/// appends the rest; 3 inserts the rest at a `u16` offset. Mode bit 2 also
/// rewrites bundle.json's size and sha256 of the volume to match the damaged
/// bytes (when the result is still a consistent manifest), so only the deep
/// checks (zstd, frame offsets, tar headers, padding, blob digests) stand
/// between the damage and a clean report.
///
/// Invariants: no panic, no hang; bytes equal to the original read clean;
/// with bundle.json untouched, a clean report means the bytes are the
/// original; a clean report always means every entry reached the sink once,
/// verified, with content of its recorded size and digest; and the sink
/// protocol (start, data…, end) holds whatever the damage.
pub fn volume_reader(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let orig = original();
    let damaged = damage(&orig.volume, mode & 3, payload);
    let mut manifest = orig.manifest.clone();
    let mut rehashed = false;
    if mode & 4 != 0 {
        manifest.volumes[0].size = damaged.len() as u64;
        manifest.volumes[0].sha256 = Digest::of(&damaged);
        if manifest.check().is_ok() {
            rehashed = true;
        } else {
            manifest = orig.manifest.clone();
        }
    }

    let dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(dir.path().join(volume_name(0)), &damaged).expect("writing volume 0");
    let mut audit = Audit::default();
    let report = read_bundle(&manifest, &[dir.path().to_path_buf()], true, &mut audit)
        .expect("the sink never fails, so neither does read_bundle");
    check_report(&manifest, &report, &audit);

    let same = damaged == orig.volume;
    if same {
        assert!(
            report.problems.is_empty(),
            "the original volume reads with problems: {:#?}",
            report.problems
        );
    }
    if report.problems.is_empty() && !rehashed {
        assert!(
            same,
            "a changed volume ({} bytes) reads clean",
            damaged.len()
        );
    }
}

/// Applies damage `kind` (0–3, see [`volume_reader`]) to a copy of `volume`.
fn damage(volume: &[u8], kind: u8, payload: &[u8]) -> Vec<u8> {
    let offset = |bytes: &[u8], modulo: usize| -> usize {
        let raw = match bytes {
            [a, b, ..] => u16::from_le_bytes([*a, *b]),
            [a] => u16::from(*a),
            [] => 0,
        };
        usize::from(raw) % modulo
    };
    match kind {
        0 => payload.to_vec(),
        1 => {
            let mut out = volume.to_vec();
            for triple in payload.chunks_exact(3) {
                let at = offset(triple, out.len());
                out[at] ^= triple[2];
            }
            out
        }
        2 => {
            let at = offset(payload, volume.len() + 1);
            let mut out = volume[..at].to_vec();
            out.extend_from_slice(payload.get(2..).unwrap_or_default());
            out
        }
        _ => {
            let at = offset(payload, volume.len() + 1);
            let mut out = volume[..at].to_vec();
            out.extend_from_slice(payload.get(2..).unwrap_or_default());
            out.extend_from_slice(&volume[at..]);
            out
        }
    }
}

/// Consistency between a report, the manifest and what the sink saw.
fn check_report(manifest: &BundleManifest, report: &ReadReport, audit: &Audit) {
    assert!(
        audit.open.is_none(),
        "the read ended with an entry started but never ended"
    );
    assert_eq!(
        report.entries_ok,
        audit.verified.len(),
        "entries_ok differs from the entries the sink got as verified"
    );
    if report.problems.is_empty() {
        assert_eq!(report.volumes_ok, manifest.volumes.len());
        assert_eq!(
            audit.verified.len(),
            manifest.entries.len(),
            "a clean report, yet not every entry reached the sink verified"
        );
    }
}

/// A sink that checks the reader's side of the [`Sink`] contract: entries
/// start once, data only flows inside an entry and never past its size, every
/// start has one matching end, and a verified end has the recorded digest.
#[derive(Default)]
struct Audit {
    /// The open entry: its tar offset, size and the content so far.
    open: Option<(u64, u64, Vec<u8>)>,
    /// Tar offsets of the entries started so far.
    started: Vec<u64>,
    /// Tar offsets of the entries that ended verified.
    verified: Vec<u64>,
}

impl Sink for Audit {
    fn start(&mut self, entry: &Entry) -> anyhow::Result<()> {
        assert!(
            self.open.is_none(),
            "{} starts inside another",
            entry.path()
        );
        assert!(
            !self.started.contains(&entry.tar_offset),
            "{} starts twice",
            entry.path()
        );
        self.started.push(entry.tar_offset);
        self.open = Some((entry.tar_offset, entry.size, Vec::new()));
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let (_, size, content) = self.open.as_mut().expect("data outside an entry");
        content.extend_from_slice(bytes);
        assert!(
            content.len() as u64 <= *size,
            "more data than the entry's size"
        );
        Ok(())
    }

    fn end(&mut self, entry: &Entry, verified: bool) -> anyhow::Result<()> {
        let (offset, _, content) = self.open.take().expect("end without start");
        assert_eq!(offset, entry.tar_offset, "end names another entry");
        if verified {
            assert_eq!(
                content.len() as u64,
                entry.size,
                "verified with another size"
            );
            assert_eq!(
                Digest::of(&content),
                entry.digest,
                "verified, but the sink got other bytes"
            );
            self.verified.push(offset);
        }
        Ok(())
    }
}
