//! The body of every fuzz target, one function per target.
//!
//! Included with `#[path]` by each target in `fuzz_targets/` and by the main
//! crate's `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/<target>/*`
//! through the same functions on every `cargo test`. Each function takes the
//! raw fuzz input, calls a pure library function on it and panics only when
//! an invariant below is broken (a panic inside `bundle` is a finding too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use bundle::archive::reader::{ReadReport, Sink, read_bundle};
use bundle::archive::writer::{MIN_VOLUME_SIZE, VolumeWriter};
use bundle::digest::Digest;
use bundle::geometry::{BLOCK, TRAILER_LEN};
use bundle::manifest::{self, BundleManifest, Compression, Entry, EntryKind, Image, volume_name};
use bundle::oci;
use bundle::push::{
    self, Delivery, Destination, ExistingTags, ImageResult, MirrorOptions, PushOptions, RepoLayout,
    TagOutcome,
};
use bundle::registry::fuzzing::{
    AuthfileError, Challenge, Lookup, lookup_authfile, next_page, parse_challenge,
    parse_link_header, parse_token_response,
};
use bundle::registry::{Credentials, ImageReference};
use bundle::sign::{PublicKey, SecretKey, Signature};
use bundle::verify::{self, Trust};

/// The body of a fuzz target: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("bundle_json", bundle_json),
    ("volume_reader", volume_reader),
    ("oci_manifest", oci_manifest),
    ("image_reference", image_reference),
    ("minisign_signature", minisign_signature),
    ("www_authenticate", www_authenticate),
    ("link_header", link_header),
    ("auth_json", auth_json),
    ("signed_bundle", signed_bundle),
    ("mirror_config", mirror_config),
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

/// A blob of a fixture and the media type bundle.json records for it.
type Blob = (Vec<u8>, Option<&'static str>);

/// Writes `oci-layout`, `blobs` and `index.json` with the real volume writer
/// into volumes of [`MIN_VOLUME_SIZE`], as
/// `src/archive/roundtrip_tests.rs::write_set` does, and keeps the manifest
/// and the bytes of every volume. index.json is the one bundle writes for
/// `images` (`oci::layout_index`).
fn write_fixture(blobs: &[Blob], images: Vec<Image>) -> Fixture {
    let index = &oci::layout_index(images.iter().map(|i| oci::IndexEntry {
        reference: &i.reference,
        source: &i.source,
        media_type: &i.media_type,
        digest: i.digest,
        size: i.size,
    }))[..];
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let volume_size = MIN_VOLUME_SIZE;
    let mut w = VolumeWriter::new(dir.path(), volume_size, 3).expect("opening the writer");
    let mut entries = vec![];
    let mut add =
        |w: &mut VolumeWriter, kind: EntryKind, bytes: &[u8], media_type: Option<&str>| {
            entries.push(
                w.add_bytes(kind, bytes, media_type)
                    .expect("writing an entry"),
            );
        };
    add(&mut w, EntryKind::OciLayout, oci::OCI_LAYOUT_FILE, None);
    for (blob, media_type) in blobs {
        add(&mut w, EntryKind::Blob, blob, *media_type);
    }
    add(&mut w, EntryKind::Index, index, None);
    let (volumes, tar_size) = w.finish().expect("finishing the volumes");
    let manifest = BundleManifest {
        format_version: 1,
        bundle_id: "0123456789abcdef0123456789abcdef".into(),
        created: "2026-01-01T00:00:00Z".into(),
        tool: "fuzz".into(),
        source: "oci:/fuzz".into(),
        compression: Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        volume_size,
        tar_size,
        volumes,
        entries,
        images,
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
        let f = write_fixture(&[(text, None), (noise(700), None)], vec![]);
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
        let f = write_fixture(&[(b"small".to_vec(), None), (noise(70_000), None)], vec![]);
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

/// `parse_challenge` never panics on `WWW-Authenticate` values (one per
/// line of the input); a Bearer challenge it picks has a realm, and no
/// parameter it keeps is empty. `parse_token_response` never panics on the
/// same bytes as a token service's body; a token it accepts is not empty
/// and lives at least 60 s.
pub fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(Challenge::Bearer(b)) = parse_challenge(text.lines()) {
        assert!(!b.realm.is_empty(), "a Bearer challenge without a realm");
        for p in [&b.service, &b.scope, &b.error].into_iter().flatten() {
            assert!(!p.is_empty(), "an empty parameter kept: {b:?}");
        }
    }
    if let Ok(token) = parse_token_response(data) {
        assert!(!token.token.is_empty(), "an empty token accepted");
        assert!(token.expires_in >= Duration::from_secs(60), "{token:?}");
    }
}

/// `parse_link_header` never panics (UTF-8 input); links it accepts have a
/// target without `>` and relation types that are lowercase, not empty and
/// without spaces; an error points inside the value. `next_page`, given
/// the lines as header values, resolves against a catalog URL without
/// panicking.
pub fn link_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_link_header(text) {
        Ok(links) => {
            for link in links {
                assert!(!link.target.contains('>'), "{link:?}");
                for rel in &link.rels {
                    assert!(
                        !rel.is_empty()
                            && !rel.bytes().any(|b| b.is_ascii_whitespace())
                            && *rel == rel.to_ascii_lowercase(),
                        "{link:?}"
                    );
                }
            }
        }
        Err(e) => assert!(e.at <= text.len(), "{e:?} is past the end"),
    }
    let base =
        reqwest::Url::parse("https://registry.example/v2/_catalog?n=100").expect("a valid URL");
    let _ = next_page(&base, text.lines());
}

/// The secrets an auth.json holds (`auth`, `password`, `identitytoken`,
/// `registrytoken` of every `auths` entry) of at least 16 characters: long
/// enough that no fixed word of a message or a `Debug` output holds one.
fn authfile_secrets(file: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(file) else {
        return vec![];
    };
    let Some(auths) = value.get("auths").and_then(|a| a.as_object()) else {
        return vec![];
    };
    auths
        .values()
        .flat_map(|entry| {
            ["auth", "password", "identitytoken", "registrytoken"].map(|k| entry.get(k))
        })
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|s| s.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// `lookup_authfile` never panics. Input: the host to look up (first line),
/// then the file. A credential helper it names is a plain name (never a
/// path of the file's choosing); the `Debug` output of credentials it finds
/// never shows their secret; an error never quotes a secret of the file.
pub fn auth_json(data: &[u8]) {
    let (host, file) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return;
    };
    match lookup_authfile(file, host) {
        Ok(Lookup::Helper { helper, .. }) => assert!(
            !helper.is_empty() && !helper.contains('/') && !helper.starts_with('.'),
            "helper {helper:?} would be run as a path"
        ),
        Ok(Lookup::Found(creds)) => {
            let (user, secret) = match &creds {
                Credentials::Basic { username, password } => (username.as_str(), password.as_str()),
                Credentials::IdentityToken { username, token } => {
                    (username.as_str(), token.as_str())
                }
                Credentials::Bearer(token) => ("", token.as_str()),
                Credentials::Anonymous => ("", ""),
            };
            let shown = format!("{creds:?}").replace(user, "");
            assert!(
                secret.len() < 16 || user.contains(secret) || !shown.contains(secret),
                "Debug shows the secret: {shown}"
            );
        }
        Ok(Lookup::Nothing) => {}
        Err(AuthfileError::Invalid(reason)) => {
            for secret in authfile_secrets(file) {
                assert!(
                    !reason.contains(&secret),
                    "the error quotes a secret: {reason}"
                );
            }
        }
    }
}

/// Fixture 2: one image (config, layer, manifest) listed in index.json and
/// bundle.json, so that verify's image and index checks have work to do.
fn image() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let layer = noise(600);
        let (cd, ld) = (Digest::of(&config), Digest::of(&layer));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
            oci::OCI_MANIFEST,
            oci::OCI_CONFIG,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let md = Digest::of(&manifest);
        let reference = "fuzz/app:1";
        let images = vec![Image {
            reference: reference.into(),
            source: format!("registry.fuzz/{reference}"),
            digest: md,
            media_type: oci::OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            platforms: Default::default(),
            platform_filtered: false,
            blobs: vec![cd, ld, md],
        }];
        let size = manifest.len();
        let f = write_fixture(
            &[
                (config, Some(oci::OCI_CONFIG)),
                (layer, None),
                (manifest, Some(oci::OCI_MANIFEST)),
            ],
            images,
        );
        assert!(size > 0 && f.volumes.len() == 1, "fixture 2 fits one volume");
        f
    })
}

/// The demo key pair (`keys/demo.key` is published, not secret), parsed once.
fn demo_keys() -> &'static (SecretKey, PublicKey) {
    static KEYS: OnceLock<(SecretKey, PublicKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret =
            SecretKey::parse(include_str!("../keys/demo.key")).expect("the demo key parses");
        let public = secret.public_key();
        (secret, public)
    })
}

/// At most this many volumes are read from a `signed_bundle` input.
const MAX_SIGNED_VOLUMES: usize = 4;

/// A `signed_bundle` input: `u16` LE length and bundle.json, then each
/// volume as a `u16` LE length and its bytes (the last takes what is left
/// when its length runs past the end).
pub fn signed_bundle_input(bundle_json: &[u8], volumes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![];
    for part in std::iter::once(bundle_json).chain(volumes.iter().map(Vec::as_slice)) {
        let len = u16::try_from(part.len()).expect("seed parts are under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Splits a [`signed_bundle_input`] into bundle.json and the volumes (also
/// used by the CLI tests, which run the commands over the corpus).
pub fn split_signed_input(mut data: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    let mut parts = vec![];
    while data.len() >= 2 && parts.len() <= MAX_SIGNED_VOLUMES {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (part, after) = rest.split_at(len.min(rest.len()));
        parts.push(part);
        data = after;
    }
    let (&json, volumes) = parts.split_first()?;
    Some((json, volumes.to_vec()))
}

/// A change made to a fixture's bundle.json.
type Edit = fn(&mut BundleManifest);

/// The `signed_bundle` seeds: the one-volume fixtures as the writer makes
/// them (they verify; the spanning one, 72 KB, is left to `volume_reader`),
/// and the image fixture with bundle.json edited and signed again (they do
/// not).
pub fn signed_bundle_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = vec![];
    for (name, f) in [("single", single()), ("image", image())] {
        let json = f.manifest.to_canonical_bytes();
        seeds.push((
            format!("{name}-clean"),
            signed_bundle_input(&json, &f.volumes),
        ));
    }
    let f = image();
    let edits: [(&str, Edit); 4] = [
        ("image-size-lie", |m| m.images[0].size += 1),
        ("image-layer-unlisted", |m| {
            m.images[0].blobs.remove(1);
        }),
        ("media-type-index", |m| {
            m.entries[3].media_type = Some(oci::OCI_INDEX.into())
        }),
        ("media-type-dropped", |m| m.entries[3].media_type = None),
    ];
    for (name, edit) in edits {
        let mut m = f.manifest.clone();
        edit(&mut m);
        let json = m.to_canonical_bytes();
        seeds.push((name.to_owned(), signed_bundle_input(&json, &f.volumes)));
    }
    seeds
}

/// Every path under `root` but the subtree `skip`, with its content (none for a directory).
fn listing(root: &Path, skip: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("listing a temp dir") {
            let path = e.expect("listing a temp dir").path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                stack.push(path.clone());
                out.push((path, None));
            } else {
                let bytes = std::fs::read(&path).expect("reading a temp file");
                out.push((path, Some(bytes)));
            }
        }
    }
    out.sort();
    out
}

/// Verifies and extracts a bundle whose bundle.json is signed by a trusted
/// key, whatever its bytes: the attack that reaches the deep checks.
///
/// Input: see [`signed_bundle_input`]; bundle.json is signed with the demo
/// key, the volumes are written as `bundle.0000`…, and the demo public key
/// is the one trusted.
///
/// Invariants: no panic, no hang; verify returns a report (never an
/// error); when it says OK, bundle.json parses and every volume it lists is
/// there with its recorded sha256; extract publishes index.json exactly
/// when verify says OK, and changes nothing outside its layout directory.
pub fn signed_bundle(data: &[u8]) {
    signed_bundle_outcome(data);
}

/// [`signed_bundle`], returning whether verify said OK (`None` when the
/// input holds no bundle.json).
pub fn signed_bundle_outcome(data: &[u8]) -> Option<bool> {
    let (json, volumes) = split_signed_input(data)?;
    let (secret, public) = demo_keys();
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).expect("creating the bundle directory");
    std::fs::write(bundle.join(manifest::FILE_NAME), json).expect("writing bundle.json");
    let signature = secret.sign(json, "fuzz").expect("signing");
    std::fs::write(
        bundle.join(manifest::SIGNATURE_FILE_NAME),
        signature.to_file_text(),
    )
    .expect("writing the signature");
    for (i, v) in volumes.iter().enumerate() {
        std::fs::write(bundle.join(volume_name(i)), v).expect("writing a volume");
    }
    let layout = dir.path().join("layout");
    let before = listing(dir.path(), &layout);

    let trust = Trust::key(public.clone());
    let dirs = [bundle];
    let report = verify::verify(&dirs, &trust, false, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("verify failed instead of reporting: {e:#}"));
    let ok = report.ok();
    if ok {
        let m = BundleManifest::parse(json).expect("verify accepted an unparseable bundle.json");
        for (i, v) in m.volumes.iter().enumerate() {
            assert_eq!(
                Some(v.sha256),
                volumes.get(i).map(|bytes| Digest::of(bytes)),
                "verify accepted {} with other bytes",
                v.name
            );
        }
    }
    match bundle::extract::extract(&dirs, &trust, &layout, &mut |_, _| {}) {
        Ok(r) => {
            assert_eq!(r.verify.ok(), ok, "extract and verify disagree");
            assert_eq!(
                r.published, ok,
                "published {} for a bundle verify judged {ok}",
                r.published
            );
        }
        Err(e) => assert!(!ok, "extract failed on a bundle verify accepted: {e:#}"),
    }
    assert_eq!(
        layout.join("index.json").exists(),
        ok,
        "index.json published wrongly"
    );
    assert_eq!(
        listing(dir.path(), &layout),
        before,
        "something outside the layout changed"
    );
    let names: BTreeSet<_> = std::fs::read_dir(dir.path())
        .expect("listing the temp dir")
        .map(|e| e.expect("listing the temp dir").file_name())
        .collect();
    assert!(
        names.len() <= 2,
        "extract wrote beside the layout: {names:?}"
    );
    Some(ok)
}

/// Where `mirror_config` maps the images: a fixed destination.
const MIRROR_TO: &str = "reg.internal:5000/mirror";

/// The mirror configuration of any bundle.json that `BundleManifest::parse`
/// accepts and `push::map_images` maps to [`MIRROR_TO`].
///
/// Invariants: `push::mirror_config` refuses exactly when the source or the
/// target of an image from a registry is not a valid image reference; when
/// it accepts, every byte of the files is printable ASCII or a line end,
/// mapping.txt has a comment line and then one `repository@digest=DST` line
/// per destination, as `oc image mirror -f` requires (DST without a digest,
/// each DST once: the target for a tagged image, its repository with or
/// without a tag for one kept by digest), and imagedigestmirrorset.yaml,
/// registries.conf and install-config-mirrors.yaml, read back by
/// independent parsers (yaml-rust2, toml), hold one document with exactly
/// the expected keys and one mirror entry per source repository, with the
/// values given (the object name a DNS-1123 name). With every option on,
/// mapping.txt is the same and imagetagmirrorset.yaml lists the same entries.
pub fn mirror_config(data: &[u8]) {
    mirror_config_outcome(data);
}

/// [`mirror_config`], returning whether the files were built (`None` when
/// bundle.json is refused or its images cannot be mapped).
pub fn mirror_config_outcome(data: &[u8]) -> Option<bool> {
    let manifest = BundleManifest::parse(data).ok()?;
    let opts = PushOptions {
        destination: Destination::parse(MIRROR_TO).expect("a valid destination"),
        layout: RepoLayout::Nested,
        existing_tags: ExistingTags::Overwrite,
        mount_from: Vec::new(),
        jobs: 1,
    };
    let mapped = push::map_images(&manifest, &opts).ok()?;
    let images: Vec<ImageResult> = mapped
        .into_iter()
        .map(|image| ImageResult {
            target: push::target_name(opts.destination.host(), &image),
            image,
            tag: TagOutcome::Created,
            delivery: Delivery::Pushed,
        })
        .collect();

    // What the files must say, from the reference grammar alone.
    let repository = |r: &ImageReference| match &r.host {
        Some(host) => format!("{host}/{}", r.repository),
        None => r.repository.clone(),
    };
    // (source@digest, target, whether the target is tagged)
    let mut lines = Vec::new();
    // Each source repository and every target repository its images go to.
    let mut repos: std::collections::BTreeMap<String, BTreeSet<String>> =
        std::collections::BTreeMap::new();
    let mut valid = true;
    for r in images
        .iter()
        .filter(|r| !r.image.source.starts_with("oci:"))
    {
        match (
            ImageReference::from_str(&r.image.source),
            ImageReference::from_str(&r.target),
        ) {
            // An IPv6 registry has no place in containers/image's references: refused.
            (Ok(source), Ok(target))
                if ![&source, &target]
                    .iter()
                    .any(|r| r.host.as_deref().is_some_and(|h| h.starts_with('['))) =>
            {
                let source = repository(&source);
                let tagged = r.image.tag.is_some();
                let target_text = if tagged {
                    r.target.clone()
                } else {
                    repository(&target)
                };
                lines.push((format!("{source}@{}", r.image.digest), target_text, tagged));
                repos.entry(source).or_default().insert(repository(&target));
            }
            _ => valid = false,
        }
    }
    let files = match push::mirror_config(&images, &manifest.bundle_id, &MirrorOptions::default()) {
        Ok(files) => files,
        Err(e) => {
            assert!(!valid, "refused valid references: {e}");
            return Some(false);
        }
    };
    assert!(valid, "built a configuration from an invalid reference");
    if repos.is_empty() {
        assert!(files.is_empty(), "a configuration without a registry image");
        return Some(true);
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "mapping.txt",
            "imagedigestmirrorset.yaml",
            "registries.conf",
            "install-config-mirrors.yaml"
        ]
    );
    for (name, text) in &files {
        assert!(
            text.bytes()
                .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
            "{name} holds more than printable ASCII lines:\n{text}"
        );
    }
    check_oc_mapping(&files[0].1, &lines);

    let docs = yaml_rust2::YamlLoader::load_from_str(&files[1].1)
        .unwrap_or_else(|e| panic!("the YAML does not parse: {e}\n{}", files[1].1));
    let docs: Vec<serde_json::Value> = docs.iter().map(yaml_to_json).collect();
    let [idms] = docs.as_slice() else {
        panic!("{} YAML documents:\n{}", docs.len(), files[1].1);
    };
    let name = idms["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        is_dns_1123(name) && name.starts_with("bundle"),
        "name {name:?}"
    );
    if manifest.bundle_id.len() == 32
        && manifest
            .bundle_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        assert_eq!(name, format!("bundle-{}", &manifest.bundle_id[..12]));
    }
    let mirrors: Vec<_> = repos
        .iter()
        .map(|(source, targets)| serde_json::json!({"source": source, "mirrors": targets}))
        .collect();
    assert_eq!(
        *idms,
        serde_json::json!({
            "apiVersion": "config.openshift.io/v1",
            "kind": "ImageDigestMirrorSet",
            "metadata": {"name": name},
            "spec": {"imageDigestMirrors": mirrors},
        }),
        "imagedigestmirrorset.yaml:\n{}",
        files[1].1
    );

    let conf: toml::Table = files[2]
        .1
        .parse()
        .unwrap_or_else(|e| panic!("the TOML does not parse: {e}\n{}", files[2].1));
    let registries: Vec<_> = repos
        .iter()
        .map(|(source, targets)| {
            let mirror: Vec<_> = targets
                .iter()
                .map(|t| serde_json::json!({"location": t}))
                .collect();
            serde_json::json!({
                "prefix": source,
                "location": source,
                "mirror-by-digest-only": true,
                "mirror": mirror,
            })
        })
        .collect();
    assert_eq!(
        serde_json::to_value(conf).expect("TOML as JSON"),
        serde_json::json!({"registry": registries}),
        "registries.conf:\n{}",
        files[2].1
    );

    let snippet = yaml_rust2::YamlLoader::load_from_str(&files[3].1)
        .unwrap_or_else(|e| panic!("the YAML does not parse: {e}\n{}", files[3].1));
    assert_eq!(
        snippet.iter().map(yaml_to_json).collect::<Vec<_>>(),
        [serde_json::json!({"imageDigestSources": mirrors})],
        "install-config-mirrors.yaml:\n{}",
        files[3].1
    );

    let all = MirrorOptions {
        insecure: true,
        tag_mirrors: true,
        never_contact_source: true,
        trust_bundle: None,
    };
    let with_all = push::mirror_config(&images, &manifest.bundle_id, &all)
        .expect("the same references, accepted again");
    assert_eq!(
        with_all[0], files[0],
        "mapping.txt changed with the options"
    );
    assert_eq!(with_all[2].0, "imagetagmirrorset.yaml");
    let itms = yaml_rust2::YamlLoader::load_from_str(&with_all[2].1)
        .unwrap_or_else(|e| panic!("the YAML does not parse: {e}\n{}", with_all[2].1));
    let entries: Vec<_> = repos
        .iter()
        .map(|(source, targets)| {
            serde_json::json!({"source": source, "mirrors": targets,
                               "mirrorSourcePolicy": "NeverContactSource"})
        })
        .collect();
    assert_eq!(
        yaml_to_json(&itms[0])["spec"],
        serde_json::json!({"imageTagMirrors": entries}),
        "imagetagmirrorset.yaml:\n{}",
        with_all[2].1
    );
    Some(true)
}

/// mapping.txt against `expected` (source@digest, target, tagged), under the
/// rules of `oc image mirror -f` (openshift/oc pkg/cli/image/mirror/mappings.go):
/// a comment line, then one `SRC=DST` line per destination, DST without a
/// digest and never repeated; a tagged target exactly, a digest-only one as
/// its repository, bare or with a tag.
fn check_oc_mapping(text: &str, expected: &[(String, String, bool)]) {
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with("# ")),
        "mapping.txt does not start with a comment:\n{text}"
    );
    let mut destinations = BTreeSet::new();
    let mut written = BTreeSet::new();
    for line in lines {
        let (src, dst) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not SRC=DST: {line:?}"));
        assert!(
            !line.contains([' ', '#']) && !dst.contains('@'),
            "oc refuses {line:?}"
        );
        assert!(destinations.insert(dst.to_owned()), "{dst} twice:\n{text}");
        written.insert((src.to_owned(), dst.to_owned()));
    }
    for (src, target, tagged) in expected {
        let found = written.iter().any(|(s, d)| {
            s == src
                && (d == target
                    || (!tagged
                        && d.strip_prefix(target.as_str())
                            .is_some_and(|t| t.strip_prefix(':').is_some_and(|t| !t.is_empty()))))
        });
        // The same destination for the same digest is written once.
        let same_destination = *tagged && written.iter().any(|(_, d)| d == target);
        assert!(found || same_destination, "{src}={target} missing:\n{text}");
    }
    assert!(written.len() <= expected.len(), "extra lines:\n{text}");
}

/// A node read by yaml-rust2 as JSON; numbers, nulls and aliases (which
/// the writer never makes) as a string that matches no expected value.
fn yaml_to_json(node: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match node {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| match k {
                    Yaml::String(key) => (key.clone(), yaml_to_json(v)),
                    other => panic!("a YAML key that is not a string: {other:?}"),
                })
                .collect(),
        ),
        other => Value::String(format!("<not a string: {other:?}>")),
    }
}

/// Whether `name` is a Kubernetes object name (a DNS-1123 subdomain).
fn is_dns_1123(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}
