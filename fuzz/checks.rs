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
use bundle::archive::{BLOCK, TRAILER_LEN};
use bundle::digest::Digest;
use bundle::manifest::{BundleManifest, Compression, Entry, EntryKind, volume_name};
use bundle::oci;
use bundle::registry::ImageReference;
use bundle::sign::{PublicKey, Signature};

/// The body of a fuzz target: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("bundle_json", bundle_json),
    ("volume_reader", volume_reader),
    ("oci_manifest", oci_manifest),
    ("image_reference", image_reference),
    ("minisign_signature", minisign_signature),
];

/// `BundleManifest::parse` never panics; what it accepts has entries that
/// tile the tar stream exactly (recomputed here in `u128`, so a wrapped
/// offset cannot pass), and survives its canonical bytes: parsing them gives
/// an equal value, and those bytes are a fixed point (one spelling per
/// content).
pub fn bundle_json(data: &[u8]) {
    let Ok(manifest) = BundleManifest::parse(data) else {
        return;
    };
    let block = u128::from(BLOCK);
    let mut pos = 0u128;
    for e in &manifest.entries {
        assert_eq!(u128::from(e.tar_offset), pos, "{} is misplaced", e.path());
        pos += block + u128::from(e.size).div_ceil(block) * block;
    }
    assert_eq!(
        pos + u128::from(TRAILER_LEN),
        u128::from(manifest.tar_size),
        "the entries do not add up to tar_size"
    );
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

/// A bundle the `volume_reader` target damages, written once per process.
struct Fixture {
    manifest: BundleManifest,
    volumes: Vec<Vec<u8>>,
}

/// `n` fixed pseudo-random (incompressible) bytes, without a dependency.
fn noise(n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Writes `oci-layout`, `blobs` and `index.json` with the real volume writer
/// into volumes of [`MIN_VOLUME_SIZE`], as
/// `src/archive/roundtrip_tests.rs::write_set` does, and keeps the manifest
/// and the bytes of every volume.
fn write_fixture(blobs: &[Vec<u8>]) -> Fixture {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let volume_size = MIN_VOLUME_SIZE;
    let mut w = VolumeWriter::new(dir.path(), volume_size, 3).expect("opening the writer");
    let mut entries = vec![];
    let mut add = |w: &mut VolumeWriter, kind: EntryKind, bytes: &[u8]| {
        let digest = Digest::of(bytes);
        let path = kind.path(&digest);
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
    for blob in blobs {
        add(&mut w, EntryKind::Blob, blob);
    }
    add(
        &mut w,
        EntryKind::Index,
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    let (volumes, tar_size) = w.finish().expect("finishing the volumes");
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
    let volumes = (0..manifest.volumes.len())
        .map(|i| std::fs::read(dir.path().join(volume_name(i))).expect("reading a volume"))
        .collect();
    Fixture { manifest, volumes }
}

/// Fixture 0: one volume of about 1.3 KB holding a compressible blob (a
/// config-like JSON) and an incompressible one of 700 bytes.
fn single() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .repeat(8);
        let f = write_fixture(&[text, noise(700)]);
        assert_eq!(f.volumes.len(), 1, "fixture 0 fits one volume");
        f
    })
}

/// Fixture 1: two volumes; a 70,000-byte incompressible blob is cut across
/// them (the frames on either side of the cut, and a blob whose data is in
/// two files, are what the reader's cross-volume logic handles).
fn spanning() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let f = write_fixture(&[b"small".to_vec(), noise(70_000)]);
        assert_eq!(f.volumes.len(), 2, "fixture 1 spans two volumes");
        f
    })
}

/// Named `volume_reader` inputs made from the fixtures: clean volumes, a cut
/// and a flipped zstd magic at every frame bundle.json records, and more
/// (`-rehashed`: bundle.json's volume size and sha256 match the damage).
///
/// The corpus files of the same names were written from this list; the
/// replay test runs the list too, so it stays in step with the writer.
pub fn volume_reader_seeds() -> Vec<(String, Vec<u8>)> {
    let at = |offset: u64| u16::try_from(offset).expect("fixture volumes are under 64 KiB");
    let input = |mode: u8, offset: u16, rest: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(rest);
        v
    };
    let one = single();
    let len = one.volumes[0].len() as u64;
    let mut seeds = vec![
        ("clean".to_owned(), [&[0u8][..], &one.volumes[0]].concat()),
        (
            "clean-rehashed".to_owned(),
            [&[4u8][..], &one.volumes[0]].concat(),
        ),
        ("empty".to_owned(), vec![0]),
        ("flip-middle".to_owned(), input(1, at(len / 2), &[1])),
        (
            "flip-middle-rehashed".to_owned(),
            input(5, at(len / 2), &[1]),
        ),
        ("append-rehashed".to_owned(), input(6, at(len), b"garbage")),
        ("insert-rehashed".to_owned(), input(7, at(len / 2), &[0; 4])),
        // Cutting at a recorded frame leaves bundle.json inconsistent, so
        // only a cut inside the last (end-of-archive) frame keeps the rehash.
        (
            "cut-last-byte-rehashed".to_owned(),
            input(6, at(len - 1), &[]),
        ),
    ];
    // A cut at frame 0 would be the same as "empty".
    for (i, e) in one.manifest.entries.iter().enumerate() {
        let frame = at(e.frame_offset);
        if i > 0 {
            seeds.push((format!("cut-frame-{i}"), input(2, frame, &[])));
        }
        seeds.push((format!("flip-magic-{i}-rehashed"), input(5, frame, &[0x80])));
    }
    // Fixture 1: mode bit 3; bit 4 picks the volume.
    seeds.push(("spanning-clean".to_owned(), vec![8 | 1]));
    for (i, e) in spanning().manifest.entries.iter().enumerate() {
        let volume = (e.volume as u8) << 4;
        let frame = at(e.frame_offset);
        if i > 0 {
            seeds.push((
                format!("spanning-cut-frame-{i}"),
                input(8 | volume | 2, frame, &[]),
            ));
        }
        seeds.push((
            format!("spanning-flip-magic-{i}-rehashed"),
            input(8 | volume | 5, frame, &[0x80]),
        ));
    }
    // The second piece of the spanning blob starts volume 1.
    seeds.push((
        "spanning-flip-piece-rehashed".to_owned(),
        input(8 | 16 | 5, 0, &[0x80]),
    ));
    seeds
}

/// Reads a damaged copy of a small real bundle with the strict reader.
///
/// Input: a mode byte, then a payload. Mode bits 0–1 pick the damage:
/// 0 replaces the volume with the payload; 1 XORs the volume at
/// `(u16 offset, byte)` triples; 2 cuts the volume at a `u16` offset and
/// appends the rest; 3 inserts the rest at a `u16` offset. Bit 2 also
/// rewrites bundle.json's size and sha256 of the volume to match the damaged
/// bytes (when the result is still a consistent manifest), so only the deep
/// checks (zstd, frame offsets, tar headers, padding, blob digests) stand
/// between the damage and a clean report. Bit 3 picks the fixture (one
/// volume, or two with a blob cut across them) and bit 4 the volume damaged.
///
/// Invariants: no panic, no hang; volumes equal to the originals read clean;
/// with bundle.json untouched, a clean report means the bytes are the
/// originals; a clean report always means every entry reached the sink once,
/// verified, with content of its recorded size and digest; and the sink
/// protocol (start, data…, end) holds whatever the damage.
pub fn volume_reader(data: &[u8]) {
    volume_reader_outcome(data);
}

/// What one `volume_reader` input did, for tests that expect a given outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The damaged volume differs from the original.
    pub changed: bool,
    /// bundle.json was rewritten to match the damaged volume.
    pub rehashed: bool,
    /// How many problems the reader reported.
    pub problems: usize,
}

/// [`volume_reader`], returning what happened (`None` for an empty input).
pub fn volume_reader_outcome(data: &[u8]) -> Option<Outcome> {
    let (&mode, payload) = data.split_first()?;
    let fixture = if mode & 8 == 0 { single() } else { spanning() };
    let target = usize::from(mode >> 4 & 1) % fixture.volumes.len();
    let mut volumes = fixture.volumes.clone();
    volumes[target] = damage(&fixture.volumes[target], mode & 3, payload);
    let damaged = &volumes[target];
    let mut manifest = fixture.manifest.clone();
    let mut rehashed = false;
    if mode & 4 != 0 {
        manifest.volumes[target].size = damaged.len() as u64;
        manifest.volumes[target].sha256 = Digest::of(damaged);
        if manifest.check().is_ok() {
            rehashed = true;
        } else {
            manifest = fixture.manifest.clone();
        }
    }

    let dir = tempfile::tempdir().expect("creating a temp dir");
    for (i, bytes) in volumes.iter().enumerate() {
        std::fs::write(dir.path().join(volume_name(i)), bytes).expect("writing a volume");
    }
    let mut audit = Audit::default();
    let report = read_bundle(&manifest, &[dir.path().to_path_buf()], true, &mut audit)
        .expect("the sink never fails, so neither does read_bundle");
    check_report(&manifest, &report, &audit);

    let same = *damaged == fixture.volumes[target];
    if same {
        assert!(
            report.problems.is_empty(),
            "the original volumes read with problems: {:#?}",
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
    Some(Outcome {
        changed: !same,
        rehashed,
        problems: report.problems.len(),
    })
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
