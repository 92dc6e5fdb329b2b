//! Hostile bundles whose signature is valid (the signing key stolen, or a bug
//! upstream): tar entries that would land outside the layout, links, and
//! paths smuggled into bundle.json. `verify` must refuse them with exit code 1
//! and name the problem; `extract` must refuse them with exit code 1 without
//! writing anything outside LAYOUT, following a link, publishing index.json
//! or leaving a temporary file. Links planted in LAYOUT beforehand must never
//! be written through.
//!
//! Hostile bundles are forged from a genuine one: its single volume is
//! decompressed into its tar entries, entries are inserted or replaced,
//! every entry is compressed again as its own frame, and bundle.json is
//! rewritten with truthful sizes, offsets and digests for the new stream
//! (so it passes bundle.json's own checks) and signed again with the same
//! secret key. The first test checks the forging itself: an unchanged or
//! benignly changed forgery verifies and extracts, so what the others
//! refuse is the hostile entry and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use bundle::archive::tar_header;
use bundle::digest::Digest;
use bundle::geometry::{BLOCK, TRAILER_LEN, entry_len};
use bundle::manifest::{self, BundleManifest, Entry, EntryKind};
use bundle::sign::{SecretKey, Signature};

use crate::common::*;
use crate::support::*;

mod corpus;
mod fields;
mod graph;
mod medium;
mod scale;
mod terminal;

/// The image the genuine bundle holds.
const IMAGE: &str = "app/one:1";
/// What the file outside every layout holds; it must never change.
const PRECIOUS: &[u8] = b"precious: written before the test, must stay as it is\n";
/// The verify message for an entry whose tar header is not bundle's own.
const BAD_HEADER: &str = "tar header differs";

/// One tar entry of a volume and how bundle.json records it.
#[derive(Clone)]
struct RawEntry {
    kind: EntryKind,
    digest: Digest,
    size: u64,
    media_type: Option<String>,
    /// Header block(s), data and padding, exactly as they go in the tar stream.
    tar: Vec<u8>,
    /// Raw bytes put in the volume right after this entry's frame (none for
    /// a genuine entry): a skippable frame, say.
    after: Vec<u8>,
}

impl RawEntry {
    /// A blob entry recorded truthfully for a reader that takes the first
    /// 512-byte block as the header: everything after it is the content
    /// (`body`), hashed and sized as such.
    fn blob(header: [u8; BLOCK as usize], body: &[u8]) -> Self {
        let mut tar = header.to_vec();
        tar.extend_from_slice(body);
        tar.resize(entry_len(body.len() as u64) as usize, 0);
        RawEntry {
            kind: EntryKind::Blob,
            digest: Digest::of(body),
            size: body.len() as u64,
            media_type: None,
            tar,
            after: Vec::new(),
        }
    }

    /// The path bundle.json gives this entry.
    fn path(&self) -> String {
        self.kind.path(&self.digest)
    }
}

/// A ustar header block: bundle's own regular-file header for `size` bytes
/// with the name, type flag and link name replaced and the checksum
/// recomputed the way the tar crate writes it. Names are written raw, so
/// `..` and absolute paths go in as they are.
fn header(name: &str, typeflag: u8, link: &str, size: u64) -> [u8; BLOCK as usize] {
    assert!(
        name.len() <= 100 && link.len() <= 100,
        "ustar fields hold 100 bytes"
    );
    let mut h = tar_header("placeholder", size);
    h[..100].fill(0);
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[156] = typeflag;
    h[157..257].fill(0);
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:07o}\0").as_bytes());
    h
}

/// One PAX extended-header record, `"<len> key=value\n"`, its length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len() + 1;
    while format!("{len}{rest}").len() != len {
        len += 1;
    }
    format!("{len}{rest}")
}

/// Path, type flag and link name of every entry of a tar stream as a tar
/// implementation reads them (PAX records applied): proof that a forged
/// stream holds what a test says it holds.
fn tar_listing(tar_bytes: &[u8]) -> Vec<(String, u8, String)> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .expect("reading the forged tar stream")
        .map(|e| {
            let e = e.expect("a tar entry");
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type().as_byte(),
                link,
            )
        })
        .collect()
}

/// A genuine one-volume bundle, its key and its tar entries, to forge from.
struct Forge {
    tmp: tempfile::TempDir,
    keys: Keys,
    secret: SecretKey,
    trusted_comment: String,
    good: PathBuf,
    manifest: BundleManifest,
    entries: Vec<RawEntry>,
    /// The layer blob of [`IMAGE`].
    layer: Digest,
}

/// Where one test case runs: everything it may touch is under `dir`.
struct Case {
    dir: PathBuf,
    /// The forged bundle.
    bundle: PathBuf,
    /// The `--to` directory.
    layout: PathBuf,
    /// The working directory of the commands (must stay empty).
    cwd: PathBuf,
    /// A directory outside the layout, holding `precious`.
    outside: PathBuf,
    /// A file outside the layout that links point at.
    precious: PathBuf,
}

fn forge() -> Forge {
    let tmp = temp_dir();
    let source = LayoutBuilder::new(tmp.path().join("source"))
        .image(IMAGE, ImageSpec::new(vec![LayerSpec::unique(4_000)]))
        .build();
    let layer: Digest = source.image(IMAGE).manifests[0].layers[0]
        .digest
        .parse()
        .unwrap();
    let keys = keygen();
    let good = tmp.path().join("good");
    create_ok(
        &good,
        &keys.secret,
        &["--from", &format!("oci:{}", source.dir.display())],
    );
    let manifest =
        BundleManifest::parse(&fs::read(good.join(manifest::FILE_NAME)).unwrap()).unwrap();
    assert_eq!(manifest.volumes.len(), 1, "the forge rewrites one volume");
    let volume = fs::read(good.join(manifest::volume_name(0))).unwrap();
    let tar = zstd::stream::decode_all(&volume[..]).unwrap();
    assert_eq!(tar.len() as u64, manifest.tar_size);
    let entries: Vec<RawEntry> = manifest
        .entries
        .iter()
        .map(|e| RawEntry {
            kind: e.kind,
            digest: e.digest,
            size: e.size,
            media_type: e.media_type.clone(),
            tar: tar[e.tar_offset as usize..e.tar_end() as usize].to_vec(),
            after: Vec::new(),
        })
        .collect();
    let trailer = &tar[tar.len() - TRAILER_LEN as usize..];
    assert!(trailer.iter().all(|&b| b == 0));
    assert!(entries.iter().any(|e| e.digest == layer));
    let secret = SecretKey::from_file(&keys.secret).unwrap();
    let trusted_comment = Signature::from_file(&good.join(manifest::SIGNATURE_FILE_NAME))
        .unwrap()
        .trusted_comment()
        .to_owned();
    Forge {
        tmp,
        keys,
        secret,
        trusted_comment,
        good,
        manifest,
        entries,
        layer,
    }
}

impl Forge {
    /// A fresh case directory with an empty working directory and a precious file outside.
    fn case(&self, name: &str) -> Case {
        let dir = self.tmp.path().join(name);
        let case = Case {
            bundle: dir.join("bundle"),
            layout: dir.join("layout"),
            cwd: dir.join("cwd"),
            outside: dir.join("outside"),
            precious: dir.join("outside/precious"),
            dir,
        };
        fs::create_dir_all(&case.cwd).unwrap();
        fs::create_dir_all(&case.outside).unwrap();
        fs::write(&case.precious, PRECIOUS).unwrap();
        case
    }

    /// The position of the layer blob among the entries.
    fn layer_index(&self) -> usize {
        self.entries
            .iter()
            .position(|e| e.digest == self.layer)
            .unwrap()
    }

    /// The genuine entries with `hostile` inserted before the layer blob.
    fn with_before_layer(&self, hostile: RawEntry) -> Vec<RawEntry> {
        let mut entries = self.entries.clone();
        entries.insert(self.layer_index(), hostile);
        entries
    }

    /// Writes `entries` as the single volume of a bundle in `case.bundle`,
    /// each entry its own zstd frame, with bundle.json recording them
    /// truthfully and signed by the genuine key. Returns the stream as a tar
    /// implementation lists it, read back from the volume file.
    fn write(&self, case: &Case, entries: &[RawEntry]) -> Vec<(String, u8, String)> {
        self.write_raw(case, entries);
        let written = fs::read(case.bundle.join(manifest::volume_name(0))).unwrap();
        tar_listing(&zstd::stream::decode_all(&written[..]).unwrap())
    }

    /// [`Forge::write`] without reading the stream back (for a stream a tar
    /// implementation cannot list).
    fn write_raw(&self, case: &Case, entries: &[RawEntry]) {
        self.write_with(case, &self.manifest, entries);
    }

    /// [`Forge::write_raw`] with bundle.json made from `template` (whose
    /// images a case may have changed).
    fn write_with(&self, case: &Case, template: &BundleManifest, entries: &[RawEntry]) {
        let (m, volume) = self.build(template, entries);
        m.check()
            .expect("the forged bundle.json passes bundle.json's own checks");
        self.publish(case, &m, &volume);
    }

    /// The volume holding `entries`, each its own frame (index.json made
    /// again for the template's images), and bundle.json (`template` with
    /// entries, sizes and the volume's hash replaced) recording them
    /// truthfully. Not checked: a case may need a
    /// bundle.json that its own checks refuse.
    fn build(&self, template: &BundleManifest, entries: &[RawEntry]) -> (BundleManifest, Vec<u8>) {
        let level = self.manifest.compression.level;
        let mut m = template.clone();
        // index.json is a function of bundle.json's images (checked at
        // parse): always the one the template's images give.
        let mut entries = entries.to_vec();
        if let Some(last) = entries.last_mut().filter(|e| e.kind == EntryKind::Index) {
            let index = template.index_json();
            let path = EntryKind::Index.path(&Digest::of(&index));
            *last = RawEntry::blob(header(&path, b'0', "", index.len() as u64), &index);
            last.kind = EntryKind::Index;
        }
        let entries = &entries[..];
        let mut volume = Vec::new();
        let mut tar_pos = 0u64;
        m.entries.clear();
        for raw in entries {
            assert_eq!(raw.tar.len() as u64, entry_len(raw.size), "{}", raw.path());
            m.entries.push(Entry {
                kind: raw.kind,
                digest: raw.digest,
                size: raw.size,
                media_type: raw.media_type.clone(),
                volume: 0,
                frame_offset: volume.len() as u64,
                tar_offset: tar_pos,
            });
            volume.extend(zstd::bulk::compress(&raw.tar, level).unwrap());
            volume.extend_from_slice(&raw.after);
            tar_pos += raw.tar.len() as u64;
        }
        volume.extend(zstd::bulk::compress(&[0u8; TRAILER_LEN as usize], level).unwrap());
        tar_pos += TRAILER_LEN;
        m.tar_size = tar_pos;
        let v = &mut m.volumes[0];
        v.size = volume.len() as u64;
        v.sha256 = Digest::of(&volume);
        v.tar_offset = 0;
        v.tar_size = tar_pos;
        (m, volume)
    }

    /// Writes `volume`, SHA256SUMS and the signed bundle.json `m` into `case.bundle`.
    fn publish(&self, case: &Case, m: &BundleManifest, volume: &[u8]) {
        fs::create_dir_all(&case.bundle).unwrap();
        fs::write(case.bundle.join(manifest::volume_name(0)), volume).unwrap();
        fs::write(
            case.bundle.join(manifest::SUMS_FILE_NAME),
            manifest::sha256sums(&m.volumes),
        )
        .unwrap();
        self.sign_into(&case.bundle, &m.to_canonical_bytes());
    }

    /// Copies the genuine bundle into `case.bundle` with its bundle.json
    /// edited as JSON by `edit` (bypassing the manifest types) and signed again.
    fn write_json(&self, case: &Case, edit: impl FnOnce(&mut serde_json::Value)) {
        copy_dir_all(&self.good, &case.bundle);
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(self.good.join(manifest::FILE_NAME)).unwrap())
                .unwrap();
        edit(&mut value);
        let mut bytes = serde_json::to_vec_pretty(&value).unwrap();
        bytes.push(b'\n');
        self.sign_into(&case.bundle, &bytes);
    }

    /// Writes bundle.json and its signature as `bundle create` does.
    fn sign_into(&self, dir: &Path, bundle_json: &[u8]) {
        let signature = self
            .secret
            .sign(bundle_json, &self.trusted_comment)
            .unwrap();
        fs::write(
            dir.join(manifest::SIGNATURE_FILE_NAME),
            signature.to_file_text(),
        )
        .unwrap();
        fs::write(dir.join(manifest::FILE_NAME), bundle_json).unwrap();
    }

    /// `bundle verify BUNDLE` run from the case's working directory.
    fn verify(&self, case: &Case, bundle: &Path) -> Output {
        self.run(case, &["verify".as_ref(), bundle.as_os_str()])
    }

    /// `bundle push BUNDLE --to REGISTRY/mirror --tls-verify=false` run from
    /// the case's working directory.
    fn push(&self, case: &Case, bundle: &Path, target: &TestRegistry) -> Output {
        let to = format!("{}/mirror", target.host());
        let args = [
            "push".as_ref(),
            bundle.as_os_str(),
            "--to".as_ref(),
            to.as_ref(),
            "--tls-verify=false".as_ref(),
        ];
        self.run(case, &args)
    }

    /// `bundle ARGS… --pubkey KEY` run from the case's working directory,
    /// killed (and failing the test) past a minute: these bundles are tiny,
    /// so a command that takes longer hangs.
    fn run(&self, case: &Case, args: &[&std::ffi::OsStr]) -> Output {
        bundle_cmd()
            .current_dir(&case.cwd)
            .args(args)
            .arg("--pubkey")
            .arg(&self.keys.public)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap()
    }

    /// `bundle extract BUNDLE --to LAYOUT` run from the case's working directory.
    fn extract(&self, case: &Case, bundle: &Path) -> Output {
        self.extract_to(case, bundle, &case.layout)
    }

    /// `bundle extract BUNDLE --to LAYOUT` run from the case's working directory.
    fn extract_to(&self, case: &Case, bundle: &Path, layout: &Path) -> Output {
        let args = [
            "extract".as_ref(),
            bundle.as_os_str(),
            "--to".as_ref(),
            layout.as_os_str(),
        ];
        self.run(case, &args)
    }

    /// Verifies and extracts the case's bundle and checks the refusal:
    /// verify exits 1 naming every needle; extract exits 1 and publishes
    /// nothing; nothing in the case directory outside LAYOUT changed (the
    /// bundle, the working directory, the precious file, every escape
    /// target); LAYOUT holds only blobs that verified. Returns those blobs.
    fn expect_refused(&self, case: &Case, needles: &[&str]) -> BTreeSet<String> {
        let before = snapshot(&case.dir, &case.layout);
        let out = self.verify(case, &case.bundle);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "verify:\n{t}");
        assert!(t.contains("BAD BUNDLE"), "{t}");
        for n in needles {
            assert!(t.contains(n), "expected {n:?} in verify's output:\n{t}");
        }
        let out = self.extract(case, &case.bundle);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "extract:\n{t}");
        assert!(t.contains("nothing published"), "{t}");
        assert_eq!(
            snapshot(&case.dir, &case.layout),
            before,
            "extract changed something outside LAYOUT"
        );
        assert_eq!(fs::read(&case.precious).unwrap(), PRECIOUS);
        self.expect_refused_size_kept(case);
        verified_blobs_only(&case.layout)
    }

    /// The case's hostile volume under the genuine signed bundle.json, cut
    /// or padded to the genuine volume's size (the attack without the
    /// signing key): refused by the volume's sha256, which a size check
    /// alone would miss; extract publishes nothing. Nothing to do for a
    /// case whose attack is in bundle.json alone.
    fn expect_refused_size_kept(&self, case: &Case) {
        let name = manifest::volume_name(0);
        let mut volume = fs::read(case.bundle.join(&name)).unwrap();
        if volume == fs::read(self.good.join(&name)).unwrap() {
            return;
        }
        let kept = case.dir.with_file_name(format!(
            "{}-size-kept",
            case.dir.file_name().unwrap().to_string_lossy()
        ));
        let bundle = kept.join("bundle");
        copy_dir_all(&self.good, &bundle);
        volume.resize(self.manifest.volumes[0].size as usize, 0);
        fs::write(bundle.join(&name), volume).unwrap();
        let out = self.verify(case, &bundle);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "size kept, verify:\n{t}");
        assert!(t.contains(&name) && t.contains("volume sha256 is"), "{t}");
        let layout = kept.join("layout");
        let out = self.extract_to(case, &bundle, &layout);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "size kept, extract:\n{t}");
        assert!(t.contains("nothing published"), "{t}");
        verified_blobs_only(&layout);
    }
}

/// Every path under `root` except the subtree `skip`, with what it is
/// (links not followed): its target, or its content hash and link count.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path == skip {
                continue;
            }
            let m = fs::symlink_metadata(&path).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link to {}", fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                stack.push(path.clone());
                "directory".to_owned()
            } else {
                format!("file {} ({} links)", sha256_file(&path), m.nlink())
            };
            out.insert(path, what);
        }
    }
    out
}

/// Checks what a refused extract left in LAYOUT: nothing at all, or the
/// real directories `blobs/sha256` and, in them, only blobs that verified:
/// plain files (no link, one name), no temporary file, each holding exactly
/// the content its name is the digest of. No index.json, nothing else.
/// Returns the blobs.
fn verified_blobs_only(layout: &Path) -> BTreeSet<String> {
    assert!(
        !layout.join("index.json").exists(),
        "a refused bundle must not publish index.json"
    );
    // The names in `dir`, which must be a real directory if it exists.
    let names = |dir: &Path| -> BTreeSet<String> {
        let Ok(m) = fs::symlink_metadata(dir) else {
            return BTreeSet::new();
        };
        assert!(m.is_dir(), "{} must be a real directory", dir.display());
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let only = |dir: &Path, allowed: &str| {
        let found = names(dir);
        assert!(
            found.iter().all(|n| n == allowed),
            "{} holds {found:?}",
            dir.display()
        );
    };
    only(layout, "blobs");
    only(&layout.join("blobs"), "sha256");
    let blobs = names(&layout.join("blobs/sha256"));
    for name in &blobs {
        let path = layout.join("blobs/sha256").join(name);
        let m = fs::symlink_metadata(&path).unwrap();
        assert!(m.is_file(), "{} is not a plain file", path.display());
        assert_eq!(m.nlink(), 1, "{} has other names", path.display());
        assert_eq!(
            &sha256_file(&path),
            name,
            "{} is not its digest",
            path.display()
        );
    }
    blobs
}

/// Names starting with `.` (temporary files) anywhere under `dir`.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir, Path::new(""))
        .into_keys()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn forged_bundles_verify_and_extract_when_nothing_hostile_is_in_them() {
    let fx = forge();
    // The header builder reproduces bundle's own header byte for byte, so the
    // hostile headers below differ from it only where a test changes them.
    let layer = &fx.entries[fx.layer_index()];
    assert_eq!(
        header(&layer.path(), b'0', "", layer.size),
        tar_header(&layer.path(), layer.size)
    );
    assert_eq!(
        &layer.tar[..BLOCK as usize],
        &header(&layer.path(), b'0', "", layer.size)[..]
    );

    // Re-framed and re-signed, unchanged.
    let case = fx.case("unchanged");
    let listing = fx.write(&case, &fx.entries);
    assert_eq!(listing.len(), fx.entries.len());
    let out = fx.verify(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("VERIFIED"), "{}", text(&out));
    let out = fx.extract(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(layout_refs(&case.layout)[0].0, IMAGE);

    // An extra entry inserted before the layer with bundle's own header:
    // the offsets, digests and frames a hostile test records are accepted.
    let case = fx.case("benign-insert");
    let body = b"an extra blob no image references\n";
    let extra = RawEntry::blob(
        header(&Digest::of(body).layout_path(), b'0', "", body.len() as u64),
        body,
    );
    let extra_path = case.layout.join(extra.path());
    fx.write(&case, &fx.with_before_layer(extra));
    let out = fx.verify(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = fx.extract(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fs::read(extra_path).unwrap(), body);
    assert!(case.layout.join("index.json").is_file());
}

#[test]
fn an_entry_named_dot_dot_evil_is_refused_and_written_nowhere() {
    let fx = forge();
    let case = fx.case("dotdot");
    let body = b"evil: written by a tar entry named ../evil\n";
    let hostile = RawEntry::blob(header("../evil", b'0', "", body.len() as u64), body);
    let named = hostile.path();
    let listing = fx.write(&case, &fx.with_before_layer(hostile));
    assert!(
        listing.contains(&("../evil".into(), b'0', String::new())),
        "{listing:?}"
    );

    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named]);
    // `../evil` from LAYOUT and from the working directory: both the case directory.
    assert!(!case.dir.join("evil").exists());
    assert!(!case.layout.join("evil").exists());
    // The genuine blobs still verified and were kept; the hostile one was not.
    assert!(blobs.contains(&fx.layer.hex()), "{blobs:?}");
    assert!(!blobs.contains(&Digest::of(body).hex()), "{blobs:?}");
}

#[test]
fn an_absolute_entry_name_is_refused_and_written_nowhere() {
    let fx = forge();
    let case = fx.case("absolute");
    // The layer's own entry, its header naming an absolute path instead:
    // bundle.json is unchanged but for the volume's size and hash.
    let target = case.dir.join("abs");
    let target_name = target.to_str().unwrap().to_owned();
    let mut entries = fx.entries.clone();
    let layer = &mut entries[fx.layer_index()];
    layer.tar[..BLOCK as usize].copy_from_slice(&header(&target_name, b'0', "", layer.size));
    let named = layer.path();
    let listing = fx.write(&case, &entries);
    assert!(
        listing.contains(&(target_name.clone(), b'0', String::new())),
        "{listing:?}"
    );

    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named, IMAGE]);
    assert!(!target.exists(), "{} was written", target.display());
    assert!(!blobs.contains(&fx.layer.hex()), "{blobs:?}");
}

#[test]
fn symlink_entries_are_refused_and_not_followed() {
    let fx = forge();

    // A link at the layer's path to a file outside, just before the layer:
    // a naive extractor writes the layer through it.
    let case = fx.case("symlink-blob");
    let link_target = case.precious.to_str().unwrap().to_owned();
    let hostile = RawEntry::blob(header(&fx.layer.layout_path(), b'2', &link_target, 0), b"");
    let named = hostile.path();
    let listing = fx.write(&case, &fx.with_before_layer(hostile));
    assert!(
        listing.contains(&(fx.layer.layout_path(), b'2', link_target.clone())),
        "{listing:?}"
    );
    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named]);
    // The genuine layer entry after it verified and is a plain file (checked
    // by expect_refused), not a link to the precious file.
    assert!(blobs.contains(&fx.layer.hex()), "{blobs:?}");

    // The blob directory itself as a link to a directory outside, right
    // after oci-layout: every later blob would land outside.
    let case = fx.case("symlink-dir");
    let link_target = case.outside.to_str().unwrap().to_owned();
    let hostile = RawEntry::blob(header("blobs/sha256", b'2', &link_target, 0), b"");
    let named = hostile.path();
    let mut entries = fx.entries.clone();
    entries.insert(1, hostile);
    let listing = fx.write(&case, &entries);
    assert!(
        listing.contains(&("blobs/sha256".into(), b'2', link_target.clone())),
        "{listing:?}"
    );
    fx.expect_refused(&case, &[BAD_HEADER, &named]);
    assert_eq!(
        fs::read_dir(&case.outside).unwrap().count(),
        1,
        "only the precious file is outside"
    );
}

#[test]
fn hard_link_entries_are_refused_and_not_followed() {
    let fx = forge();
    let case = fx.case("hardlink");
    // A hard link at the layer's path to the precious file (the link name is
    // relative to the extraction root, LAYOUT), just before the layer.
    let link_target = "../outside/precious";
    let hostile = RawEntry::blob(header(&fx.layer.layout_path(), b'1', link_target, 0), b"");
    let named = hostile.path();
    let listing = fx.write(&case, &fx.with_before_layer(hostile));
    assert!(
        listing.contains(&(fx.layer.layout_path(), b'1', link_target.into())),
        "{listing:?}"
    );
    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named]);
    assert_eq!(fs::metadata(&case.precious).unwrap().nlink(), 1);
    assert!(blobs.contains(&fx.layer.hex()), "{blobs:?}");
}

#[test]
fn an_entry_escaping_through_its_own_blob_path_is_refused() {
    let fx = forge();
    let case = fx.case("escape");
    // The name starts with exactly the path bundle.json records for the
    // entry's content, then climbs: four `..` leave LAYOUT, three land in it.
    let out_body = b"escape: four levels up, outside LAYOUT\n";
    let in_body = b"escape: three levels up, inside LAYOUT but not a blob\n";
    let out_name = format!("{}/../../../../escape", Digest::of(out_body).layout_path());
    let in_name = format!("{}/../../../escape-in", Digest::of(in_body).layout_path());
    let out_entry = RawEntry::blob(header(&out_name, b'0', "", out_body.len() as u64), out_body);
    let in_entry = RawEntry::blob(header(&in_name, b'0', "", in_body.len() as u64), in_body);
    let named = [out_entry.path(), in_entry.path()];
    assert!(out_name.starts_with(&named[0]) && in_name.starts_with(&named[1]));
    let mut entries = fx.with_before_layer(out_entry);
    entries.insert(1, in_entry);
    let listing = fx.write(&case, &entries);
    for name in [&out_name, &in_name] {
        assert!(listing.iter().any(|(p, _, _)| p == name), "{listing:?}");
    }

    let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named[0], &named[1]]);
    assert!(!case.dir.join("escape").exists());
    assert!(!case.layout.join("escape-in").exists());
    for body in [&out_body[..], &in_body[..]] {
        assert!(!blobs.contains(&Digest::of(body).hex()), "{blobs:?}");
    }
}

#[test]
fn a_pax_header_renaming_an_entry_is_refused() {
    let fx = forge();
    let case = fx.case("pax");
    // A PAX extended header whose `path` record renames the entry after it
    // (what `tar -x` honours), recorded as one blob whose content is
    // everything after the first header block.
    let records = pax_record("path", "../pax-evil");
    let content = b"evil: named by a PAX path record\n";
    let mut body = records.as_bytes().to_vec();
    body.resize(entry_len(records.len() as u64) as usize - BLOCK as usize, 0);
    body.extend_from_slice(&header("innocent", b'0', "", content.len() as u64));
    body.extend_from_slice(content);
    let hostile = RawEntry::blob(
        header("PaxHeaders/innocent", b'x', "", records.len() as u64),
        &body,
    );
    let named = hostile.path();
    let listing = fx.write(&case, &fx.with_before_layer(hostile));
    assert!(
        listing.contains(&("../pax-evil".into(), b'0', String::new())),
        "{listing:?}"
    );

    fx.expect_refused(&case, &[BAD_HEADER, &named]);
    assert!(!case.dir.join("pax-evil").exists());
}

#[test]
fn a_bundle_json_naming_paths_instead_of_digests_is_refused() {
    let fx = forge();
    // A blob "digest" that is a path: the blob path derived from it would escape.
    let case = fx.case("json-digest");
    fx.write_json(&case, |m| {
        m["entries"][1]["digest"] = "sha256:../../../../escape".into();
    });
    let blobs = fx.expect_refused(&case, &["FAILED Signature", "malformed sha256 digest"]);
    assert!(blobs.is_empty(), "{blobs:?}");
    assert!(!case.dir.join("escape").exists());

    // A volume named by a path outside the bundle directory.
    let case = fx.case("json-volume");
    let outside_volume = case.dir.join("outside-volume");
    fs::copy(fx.good.join(manifest::volume_name(0)), &outside_volume).unwrap();
    fx.write_json(&case, |m| {
        m["volumes"][0]["name"] = "../outside-volume".into();
    });
    let blobs = fx.expect_refused(&case, &["FAILED Signature", "volume 0 is named"]);
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[test]
fn links_planted_at_a_blob_path_are_never_written_through() {
    let fx = forge();
    let hex = fx.layer.hex();
    let layer_bytes = &fx.entries[fx.layer_index()].tar[BLOCK as usize..]
        [..fx.entries[fx.layer_index()].size as usize];

    // A symlink to a file outside (different content), one to a file outside
    // holding the layer's exact bytes (must not count as "already there"),
    // and a hard link to the file outside: each is refused as it is, exit 2
    // like any existing file that is not the blob.
    for (name, plant) in [
        ("planted-symlink", 's'),
        ("planted-symlink-same-bytes", 'S'),
        ("planted-hardlink", 'h'),
    ] {
        let case = fx.case(name);
        let blob_path = case.layout.join("blobs/sha256").join(&hex);
        fs::create_dir_all(blob_path.parent().unwrap()).unwrap();
        let target = match plant {
            'S' => {
                let copy = case.outside.join("copy");
                fs::write(&copy, layer_bytes).unwrap();
                copy
            }
            _ => case.precious.clone(),
        };
        match plant {
            'h' => fs::hard_link(&target, &blob_path).unwrap(),
            _ => symlink(&target, &blob_path).unwrap(),
        }
        let target_before = fs::read(&target).unwrap();
        let before = snapshot(&case.dir, &case.layout);

        let out = fx.extract(&case, &fx.good);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {t}");
        assert!(t.contains("not replaced"), "{name}: {t}");
        assert_eq!(snapshot(&case.dir, &case.layout), before, "{name}");
        assert_eq!(fs::read(&target).unwrap(), target_before, "{name}");
        let m = fs::symlink_metadata(&blob_path).unwrap();
        match plant {
            'h' => assert_eq!((m.is_file(), m.nlink()), (true, 2), "{name}"),
            _ => assert_eq!(fs::read_link(&blob_path).unwrap(), target, "{name}"),
        }
        assert!(!case.layout.join("index.json").exists(), "{name}");
        assert_eq!(hidden_files(&case.layout), Vec::<PathBuf>::new(), "{name}");
    }
}

#[test]
fn a_link_planted_at_a_blob_temporary_name_is_replaced_not_followed() {
    let fx = forge();
    let case = fx.case("planted-tmp");
    let sha = case.layout.join("blobs/sha256");
    fs::create_dir_all(&sha).unwrap();
    let tmp_link = sha.join(format!(".tmp-{}", fx.layer.hex()));
    symlink(&case.precious, &tmp_link).unwrap();
    let before = snapshot(&case.dir, &case.layout);

    let out = fx.extract(&case, &fx.good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(&case.dir, &case.layout), before);
    assert_eq!(fs::read(&case.precious).unwrap(), PRECIOUS);
    assert!(
        fs::symlink_metadata(&tmp_link).is_err(),
        "the planted link is gone"
    );
    let blob = fs::symlink_metadata(sha.join(fx.layer.hex())).unwrap();
    assert!(blob.is_file() && blob.nlink() == 1);
    assert_eq!(hidden_files(&case.layout), Vec::<PathBuf>::new());
}

#[test]
fn layout_parts_that_are_links_are_refused() {
    // LAYOUT itself as a link is tested in extract.rs; here its parts.
    let fx = forge();
    for (name, part, dir_link) in [
        ("link-blobs", "blobs", true),
        ("link-sha256", "blobs/sha256", true),
        ("link-index", "index.json", false),
        ("link-oci-layout", "oci-layout", false),
    ] {
        let case = fx.case(name);
        let path = case.layout.join(part);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(
            if dir_link {
                &case.outside
            } else {
                &case.precious
            },
            &path,
        )
        .unwrap();
        let before = snapshot(&case.dir, &case.layout);
        let out = fx.extract(&case, &fx.good);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {t}");
        let expected = if dir_link {
            "is a symbolic link"
        } else {
            "is not a regular file"
        };
        assert!(t.contains(expected), "{name}: {t}");
        assert_eq!(snapshot(&case.dir, &case.layout), before, "{name}");
        assert_eq!(fs::read(&case.precious).unwrap(), PRECIOUS, "{name}");
        assert_eq!(fs::read_dir(&case.outside).unwrap().count(), 1, "{name}");
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

#[test]
fn a_layout_whose_parent_is_a_link_is_refused() {
    // A link planted above LAYOUT would carry the whole layout elsewhere:
    // the parent, or any directory above it in the path given.
    let fx = forge();
    for (name, below) in [("parent-link", ""), ("grandparent-link", "sub")] {
        let case = fx.case(name);
        fs::create_dir_all(case.outside.join(below)).unwrap();
        let link = case.dir.join("via");
        symlink(&case.outside, &link).unwrap();
        let layout = link.join(below).join("layout");
        let before = snapshot(&case.dir, &case.layout);
        let out = fx.extract_to(&case, &fx.good, &layout);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {t}");
        assert!(
            t.contains(&format!("{} is a symbolic link", link.display())),
            "{name}: {t}"
        );
        assert!(t.contains("give the real path"), "{name}: {t}");
        assert_eq!(snapshot(&case.dir, &case.layout), before, "{name}");
        assert!(!case.outside.join(below).join("layout").exists(), "{name}");
    }
}

/// `extract` publishes oci-layout and index.json through temporary names
/// (`LAYOUT/.NAME.tmp`) renamed into place; a link planted at such a name is
/// removed, never written through (this once overwrote the link's target).
#[test]
fn links_planted_at_the_temporary_names_of_index_json_and_oci_layout_are_not_followed() {
    let fx = forge();
    let case = fx.case("planted-publish-tmp");
    fs::create_dir_all(&case.layout).unwrap();
    let other = case.outside.join("other");
    fs::write(&other, PRECIOUS).unwrap();
    symlink(&case.precious, case.layout.join(".index.json.tmp")).unwrap();
    symlink(&other, case.layout.join(".oci-layout.tmp")).unwrap();

    let out = fx.extract(&case, &fx.good);
    let t = text(&out);
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned();
    let expected = String::from_utf8_lossy(PRECIOUS).into_owned();
    assert_eq!(
        (read(&case.precious), read(&other)),
        (expected.clone(), expected),
        "files outside LAYOUT written through links planted at .index.json.tmp and .oci-layout.tmp (extract exited {:?}):\n{t}",
        out.status.code()
    );
}

/// Character and block devices and FIFOs are refused, and nothing is created
/// for them (a FIFO would hang a reader, a device write into the machine).
#[test]
fn device_and_fifo_entries_are_refused() {
    let fx = forge();
    for (name, flag) in [
        ("char-device", b'3'),
        ("block-device", b'4'),
        ("fifo", b'6'),
    ] {
        let case = fx.case(name);
        let hostile = RawEntry::blob(header(&fx.layer.layout_path(), flag, "", 0), b"");
        let named = hostile.path();
        let listing = fx.write(&case, &fx.with_before_layer(hostile));
        assert!(
            listing
                .iter()
                .any(|(p, t, _)| *p == fx.layer.layout_path() && *t == flag),
            "{listing:?}"
        );
        let blobs = fx.expect_refused(&case, &[BAD_HEADER, &named]);
        assert!(blobs.contains(&fx.layer.hex()), "{name}: {blobs:?}");
    }
}

/// A header that promises 100 GB (a decompression bomb's promise) where
/// bundle.json says a few bytes is refused at that header: the run ends
/// (it would not within the test's time if it read on).
#[test]
fn a_header_claiming_100_gb_is_refused_at_the_header() {
    let fx = forge();
    let case = fx.case("bomb-header");
    let body = b"a small blob whose header lies about its size";
    let path = EntryKind::Blob.path(&Digest::of(body));
    let hostile = RawEntry::blob(header(&path, b'0', "", 100_000_000_000), body);
    // (tar itself cannot list this stream: it would skip 100 GB.)
    fx.write_raw(&case, &fx.with_before_layer(hostile));
    fx.expect_refused(&case, &[BAD_HEADER, &path]);
}

/// A zstd skippable frame between two entries hides bytes that `zstd -d`
/// silently passes over: bundle.json's frame offsets account for it and the
/// volume hash covers it, but the volume is not what bundle writes, so it is
/// refused, naming the volume.
#[test]
fn a_skippable_frame_hiding_data_is_refused() {
    let fx = forge();
    let case = fx.case("skippable");
    let hidden = b"#!/bin/sh\necho hidden payload\n";
    let mut frame = vec![0x50, 0x2A, 0x4D, 0x18];
    frame.extend_from_slice(&(hidden.len() as u32).to_le_bytes());
    frame.extend_from_slice(hidden);
    let mut entries = fx.entries.clone();
    entries[0].after = frame;
    fx.write(&case, &entries);
    let volume = fs::read(case.bundle.join(manifest::volume_name(0))).unwrap();
    assert!(
        volume.windows(hidden.len()).any(|w| w == hidden),
        "the hidden bytes are in the volume"
    );
    fx.expect_refused(&case, &[&manifest::volume_name(0), "skippable"]);
}

/// A zstd frame of 100 GB of zeros (RLE blocks of 128 KiB: 3 MB on disk, no
/// content size in its header) between two entries, accounted for by the
/// signed bundle.json: the reader stops at the first byte past the entry
/// boundary bundle.json declares, so the run ends at once instead of
/// decompressing 100 GB.
#[test]
fn a_frame_decompressing_to_100_gb_is_cut_off_at_the_declared_end() {
    let fx = forge();
    let case = fx.case("bomb-frame");
    const BLOCK_SIZE: u64 = 128 << 10;
    let blocks = 100_000_000_000 / BLOCK_SIZE;
    // Magic, a descriptor with no content size and no checksum, a 128 KiB window.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 7 << 3];
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block header (little-endian, 3 bytes): last flag, type 1 (RLE), size.
        let block_header = last | 1 << 1 | (BLOCK_SIZE as u32) << 3;
        frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
        frame.push(0);
    }
    let mut entries = fx.entries.clone();
    entries[0].after = frame;
    fx.write_raw(&case, &entries);
    fx.expect_refused(
        &case,
        &[&manifest::volume_name(0), "volume decompresses past"],
    );
}

/// Signed bundle.json files that are not what `bundle create` writes, each
/// refused with a message naming what is wrong, before any volume is read:
/// another format version, another digest algorithm, a volume named with a
/// `/`, absurd or negative sizes, a duplicate key, deep nesting, a size
/// beyond any bundle.json (a sparse file: refused by size, not read).
#[test]
fn signed_bundle_json_oddities_are_refused_naming_them() {
    let fx = forge();
    /// A case name, an edit of bundle.json, and what the refusal must say.
    type Edit = (
        &'static str,
        Box<dyn Fn(&mut serde_json::Value)>,
        &'static str,
    );
    let edits: Vec<Edit> = vec![
        (
            "version",
            Box::new(|m| m["format_version"] = 2.into()),
            "format version",
        ),
        (
            "algorithm",
            Box::new(|m| {
                let hex = m["entries"][1]["digest"].as_str().unwrap()[7..].to_owned();
                m["entries"][1]["digest"] = format!("sha512:{hex}{hex}").into();
            }),
            "sha512",
        ),
        (
            "volume-slash",
            Box::new(|m| m["volumes"][0]["name"] = "sub/images.tar.zst.00000".into()),
            "volume 0 is named",
        ),
        (
            "volume-dotdot",
            Box::new(|m| m["volumes"][0]["name"] = "../images.tar.zst.00000".into()),
            "volume 0 is named",
        ),
        (
            "negative-size",
            Box::new(|m| m["entries"][1]["size"] = (-1).into()),
            "invalid value",
        ),
        (
            "absurd-size",
            Box::new(|m| m["volumes"][0]["size"] = u64::MAX.into()),
            "images.tar.zst.00000",
        ),
    ];
    for (name, edit, needle) in edits {
        let case = fx.case(name);
        fx.write_json(&case, edit);
        let blobs = fx.expect_refused(&case, &["FAILED Signature", needle]);
        assert!(blobs.is_empty(), "{name}: {blobs:?}");
    }

    // Raw texts no JSON value can produce, signed as they are.
    let good = fs::read_to_string(fx.good.join(manifest::FILE_NAME)).unwrap();
    let duplicate = good.replacen('{', "{\"bundle_id\":\"forged\",", 1);
    // Well-formed, 100,000 deep: refused by the types, never a stack overflow.
    let nested = format!(
        "{{\"format_version\":1,\"images\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (name, text, needle) in [
        ("duplicate-key", duplicate.as_str(), "duplicate field"),
        ("nested", nested.as_str(), "bundle.json is malformed"),
    ] {
        let case = fx.case(name);
        copy_dir_all(&fx.good, &case.bundle);
        fx.sign_into(&case.bundle, text.as_bytes());
        let blobs = fx.expect_refused(&case, &["FAILED Signature", needle]);
        assert!(blobs.is_empty(), "{name}: {blobs:?}");
    }

    // 300 MiB of bundle.json (sparse), beyond the 256 MiB any bundle.json may
    // take: refused by its size before a byte is read.
    let case = fx.case("huge");
    copy_dir_all(&fx.good, &case.bundle);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(case.bundle.join(manifest::FILE_NAME))
        .unwrap();
    f.set_len(300 << 20).unwrap();
    drop(f);
    fx.expect_refused(&case, &["FAILED Signature", "is larger than"]);
}

/// Variants of bundle.json.minisig: an untrusted comment changed still
/// verifies (it is not signed, as minisign treats it); a changed trusted
/// comment, the legacy non-prehashed algorithm, and extra lines are refused
/// before any volume is read.
#[test]
fn signature_file_variants_are_judged_as_minisign_does_or_stricter() {
    use base64::Engine;
    let fx = forge();
    let sig_name = manifest::SIGNATURE_FILE_NAME;
    let genuine = fs::read_to_string(fx.good.join(sig_name)).unwrap();
    let lines: Vec<&str> = genuine.lines().collect();
    assert_eq!(lines.len(), 4, "{genuine}");

    let case = fx.case("sig-untrusted-comment");
    copy_dir_all(&fx.good, &case.bundle);
    let edited = genuine.replacen(
        lines[0],
        "untrusted comment: rewritten by whoever held the stick",
        1,
    );
    fs::write(case.bundle.join(sig_name), edited).unwrap();
    let out = fx.verify(&case, &case.bundle);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let b64 = base64::engine::general_purpose::STANDARD;
    let mut legacy = b64.decode(lines[1]).unwrap();
    assert_eq!(&legacy[..2], b"ED");
    legacy[1] = b'd';
    let legacy_line = b64.encode(&legacy);
    let trusted = format!("{} (edited)", lines[2]);
    for (name, text, needle) in [
        (
            "sig-trusted-comment",
            genuine.replacen(lines[2], &trusted, 1),
            "trusted comment",
        ),
        (
            "sig-legacy",
            genuine.replacen(lines[1], &legacy_line, 1),
            "legacy",
        ),
        (
            "sig-extra-line",
            format!("{genuine}one more line\n"),
            "malformed",
        ),
    ] {
        let case = fx.case(name);
        copy_dir_all(&fx.good, &case.bundle);
        fs::write(case.bundle.join(sig_name), text).unwrap();
        let blobs = fx.expect_refused(&case, &["FAILED Signature", needle]);
        assert!(blobs.is_empty(), "{name}: {blobs:?}");
    }
}
