//! `bundle verify`: signature → volumes → every blob → every image → index.json.
//!
//! Trusts nothing but the public key: bundle.json is parsed only after its
//! signature checks, and every later check is against bundle.json. The report
//! lists every problem found (checking goes on after the first), each naming
//! the file, the blob and the images it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::reader::{self, CheckOnly, Problem, ProblemKind, Sink};
use crate::digest::Digest;
use crate::files::{Links, read_capped};
use crate::manifest::{self, BundleManifest, Entry, EntryKind};
use crate::oci::{self, Platform};
use crate::sign::{self, PublicKey, Signature};

/// The stage a problem was found at, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Key id and signature of bundle.json.
    Signature,
    /// Volume presence, size, sha256.
    Volumes,
    /// Blob digests and sizes, tar structure.
    Blobs,
    /// Completeness of every image.
    Images,
    /// index.json against bundle.json.
    Index,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Where it was found.
    pub stage: Stage,
    /// The file concerned (a volume, bundle.json, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The blob concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    /// Images that need the blob or volume.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// What is wrong.
    pub message: String,
}

/// What verify found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Key id of the trusted key that signed (empty if none did).
    pub key_id: String,
    /// True when the key that signed is the repository's demo key.
    pub demo_key: bool,
    /// bundle id from the signed manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    /// Creation time from the signed manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Source recorded in the signed manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether only volume hashes were checked.
    pub quick: bool,
    /// Whether the volumes were read and the blobs, images and index.json
    /// checked (false when extract or push stopped at a missing volume).
    pub read: bool,
    /// Volumes listed / matching.
    pub volumes: usize,
    /// Volumes whose size and sha256 matched.
    pub volumes_ok: usize,
    /// Entries listed.
    pub entries: usize,
    /// Entries whose digest matched (deep only).
    pub entries_ok: usize,
    /// Images listed.
    pub images: usize,
    /// Compressed bytes read.
    pub bytes_read: u64,
    /// Everything wrong; empty means the bundle verified.
    pub findings: Vec<Finding>,
    /// Notes that do not make the bundle bad (SHA256SUMS disagreeing, …).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// Whether the bundle verified.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    fn finding(&mut self, stage: Stage, file: Option<&str>, message: String) {
        self.findings.push(Finding {
            stage,
            file: file.map(str::to_owned),
            blob: None,
            images: vec![],
            message,
        });
    }
}

/// What the receiving side trusts: the public keys it received out of band
/// (the signature names which one signed), and optionally how old a bundle
/// it still accepts (against a valid older bundle replayed: a rollback).
pub struct Trust {
    /// The trusted keys; a bundle signed by any of them is accepted.
    pub keys: Vec<PublicKey>,
    /// Bundles created before this are refused (`--not-before`).
    pub not_before: Option<time::OffsetDateTime>,
}

impl Trust {
    /// Trusts `key` alone, with no age limit.
    pub fn key(key: PublicKey) -> Self {
        Trust {
            keys: vec![key],
            not_before: None,
        }
    }

    /// The trusted keys with this id (two keys may share one: the id is
    /// only 64 bits, and a file may be given twice).
    fn with_id(&self, id: sign::KeyId) -> Vec<&PublicKey> {
        self.keys.iter().filter(|k| k.key_id() == id).collect()
    }
}

/// Reads and checks bundle.json's signature (by a trusted key, and not
/// older than the trust allows); returns the manifest only if it verifies.
pub fn read_signed_manifest(
    dir: &Path,
    trust: &Trust,
    report: &mut VerifyReport,
) -> anyhow::Result<Option<(BundleManifest, Vec<u8>)>> {
    let path = dir.join(manifest::FILE_NAME);
    let sig_path = dir.join(manifest::SIGNATURE_FILE_NAME);
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let bytes = match read_capped(&path, manifest::MAX_MANIFEST_BYTES, Links::Refuse) {
        Ok(b) => b,
        Err(e) => {
            report.finding(
                Stage::Signature,
                Some(manifest::FILE_NAME),
                format!("{e:#}"),
            );
            return Ok(None);
        }
    };
    let signature = match Signature::from_file(&sig_path) {
        Ok(s) => s,
        Err(e) => {
            report.finding(
                Stage::Signature,
                Some(manifest::SIGNATURE_FILE_NAME),
                error_chain(&e),
            );
            return Ok(None);
        }
    };
    let candidates = trust.with_id(signature.key_id());
    if candidates.is_empty() {
        let trusted: Vec<String> = trust.keys.iter().map(|k| k.key_id().to_string()).collect();
        report.finding(
            Stage::Signature,
            Some(manifest::SIGNATURE_FILE_NAME),
            format!(
                "signed by key {}, which is not a trusted key (trusted: {})",
                signature.key_id(),
                trusted.join(", ")
            ),
        );
        return Ok(None);
    }
    // Every trusted key with the signature's id is tried; the first one's
    // error is reported if none verifies.
    let mut first_error = None;
    let mut signer = None;
    for key in candidates {
        match sign::verify(key, &bytes, &signature) {
            Ok(_) => {
                signer = Some(key);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some(key) = signer else {
        report.key_id = signature.key_id().to_string();
        if let Some(e) = first_error {
            report.finding(Stage::Signature, Some(manifest::FILE_NAME), error_chain(&e));
        }
        return Ok(None);
    };
    report.key_id = key.key_id().to_string();
    report.demo_key = key.is_demo();
    let m = match BundleManifest::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            report.finding(Stage::Signature, Some(manifest::FILE_NAME), error_chain(&e));
            return Ok(None);
        }
    };
    if let Some(limit) = trust.not_before {
        let created =
            time::OffsetDateTime::parse(&m.created, &time::format_description::well_known::Rfc3339);
        match created {
            Ok(created) if created >= limit => {}
            _ => {
                report.finding(
                    Stage::Signature,
                    Some(manifest::FILE_NAME),
                    format!(
                        "bundle {} was created {}, before --not-before {}: an older \
                         bundle is refused (a replayed one could roll images back)",
                        m.bundle_id,
                        m.created,
                        limit
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ),
                );
                return Ok(None);
            }
        }
    }
    Ok(Some((m, bytes)))
}

/// Verifies the bundle in `dirs[0]` (volumes may also be in the other directories).
pub fn verify(
    dirs: &[PathBuf],
    trust: &Trust,
    quick: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<VerifyReport> {
    verify_into(dirs, trust, quick, progress, None)
}

/// Like [`verify`], also handing every entry to `also` as it streams (extract
/// writes them out): the same checks, in one read of each volume. `also` is
/// told which entries verified; whether the whole bundle did is in the report.
pub fn verify_into<'a>(
    dirs: &[PathBuf],
    trust: &Trust,
    quick: bool,
    progress: &'a mut dyn FnMut(u64, u64),
    also: Option<&'a mut dyn Sink>,
) -> anyhow::Result<VerifyReport> {
    let (mut report, m) = open(dirs, trust, quick)?;
    if let Some(m) = m {
        read_into(&m, dirs, progress, also, &mut report)?;
    }
    Ok(report)
}

/// The first step of every check: bundle.json in `dirs[0]` and its signature.
/// Returns the manifest only if the signature verified (else the report says why).
pub fn open(
    dirs: &[PathBuf],
    trust: &Trust,
    quick: bool,
) -> anyhow::Result<(VerifyReport, Option<BundleManifest>)> {
    let dir = &dirs[0];
    let mut report = VerifyReport {
        bundle: dir.clone(),
        quick,
        ..Default::default()
    };
    let Some((m, _)) = read_signed_manifest(dir, trust, &mut report)? else {
        return Ok((report, None));
    };
    report.bundle_id = Some(m.bundle_id.clone());
    report.created = Some(m.created.clone());
    report.source = Some(m.source.clone());
    report.volumes = m.volumes.len();
    report.entries = m.entries.len();
    report.images = m.images.len();
    check_sums_file(dir, &m, &mut report);
    Ok((report, Some(m)))
}

/// Checks that every volume is there with its recorded size, before anything
/// heavy starts (extract and push stop here when one is missing). Adds a
/// finding per missing or wrongly sized volume; true when all are present.
pub fn volumes_present(m: &BundleManifest, dirs: &[PathBuf], report: &mut VerifyReport) -> bool {
    let before = report.findings.len();
    for v in &m.volumes {
        let Err(kind) = reader::examine_volume(dirs, v) else {
            continue;
        };
        let problem = Problem {
            volume: Some(v.name.clone()),
            entry: None,
            digest: None,
            kind,
        };
        report.findings.push(problem_finding(m, &problem));
    }
    report.findings.len() == before
}

/// Reads the volumes of the opened bundle `m` (deeply unless the report says
/// quick), handing every entry to `also`, and adds what it finds to `report`.
pub fn read_into<'a>(
    m: &BundleManifest,
    dirs: &[PathBuf],
    progress: &'a mut dyn FnMut(u64, u64),
    also: Option<&'a mut dyn Sink>,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let quick = report.quick;
    let total: u64 = m.volumes.iter().map(|v| v.size).sum();
    let mut sink = VerifySink::new(m, progress, total, also);
    let read = if quick {
        reader::read_bundle(m, dirs, false, &mut CheckOnly)?
    } else {
        reader::read_bundle(m, dirs, true, &mut sink)?
    };
    report.read = true;
    report.volumes_ok = read.volumes_ok;
    report.entries_ok = read.entries_ok;
    report.bytes_read = read.bytes_read;
    for p in &read.problems {
        report.findings.push(problem_finding(m, p));
    }
    if !quick {
        let graph = sink.finish();
        check_images(m, &graph, report);
        check_index(m, &graph, report);
    }
    report.findings.sort_by_key(|f| f.stage);
    Ok(())
}

fn problem_finding(m: &BundleManifest, p: &Problem) -> Finding {
    let stage = match p.kind {
        ProblemKind::VolumeMissing
        | ProblemKind::VolumeSize { .. }
        | ProblemKind::VolumeHash { .. }
        | ProblemKind::ExtraVolume
        | ProblemKind::VolumeUnreadable { .. } => Stage::Volumes,
        _ => Stage::Blobs,
    };
    let mut images: BTreeSet<String> = BTreeSet::new();
    if let Some(d) = &p.digest {
        images.extend(m.images_needing(d).into_iter().map(str::to_owned));
    } else if let (
        Some(v),
        ProblemKind::VolumeMissing
        | ProblemKind::VolumeSize { .. }
        | ProblemKind::VolumeHash { .. },
    ) = (&p.volume, &p.kind)
    {
        for d in digests_in_volume(m, v) {
            images.extend(m.images_needing(&d).into_iter().map(str::to_owned));
        }
    }
    let message = match &p.entry {
        Some(e) => format!("{e}: {}", p.kind),
        None => p.kind.to_string(),
    };
    Finding {
        stage,
        file: p.volume.clone(),
        blob: p.digest,
        images: images.into_iter().collect(),
        message,
    }
}

/// Digests of entries with any byte in volume `name`.
fn digests_in_volume(m: &BundleManifest, name: &str) -> Vec<Digest> {
    let Some(v) = m.volumes.iter().find(|v| v.name == name) else {
        return vec![];
    };
    let (start, end) = (v.tar_offset, v.tar_offset + v.tar_size);
    m.entries
        .iter()
        .filter(|e| e.tar_offset < end && e.tar_end() > start)
        .map(|e| e.digest)
        .collect()
}

fn check_sums_file(dir: &Path, m: &BundleManifest, report: &mut VerifyReport) {
    let expected = manifest::sha256sums(&m.volumes);
    let path = dir.join(manifest::SUMS_FILE_NAME);
    if std::fs::symlink_metadata(&path).is_err() {
        report.warnings.push(format!(
            "{} is missing (only needed by sha256sum -c)",
            manifest::SUMS_FILE_NAME
        ));
        return;
    }
    // Never larger than the signed list it repeats (plus slack): a huge one
    // is not read, only reported.
    match read_capped(&path, expected.len() as u64 + 4096, Links::Refuse) {
        Ok(found) if found == expected.as_bytes() => {}
        Ok(_) => report.warnings.push(format!(
            "{} disagrees with the signed bundle.json (bundle.json is what is trusted)",
            manifest::SUMS_FILE_NAME
        )),
        Err(e) => report.warnings.push(format!(
            "{} cannot be compared with the signed bundle.json ({e:#}); bundle.json is what is trusted",
            manifest::SUMS_FILE_NAME
        )),
    }
}

/// What verify learned from the stream: positions and parsed manifests.
#[derive(Default)]
struct Graph {
    /// Entry index of each verified digest.
    position: HashMap<Digest, usize>,
    /// Children of each verified manifest (parse errors kept as text).
    children: HashMap<Digest, Result<oci::Parsed, String>>,
    /// The verified index.json bytes.
    index: Option<Vec<u8>>,
}

/// The largest index.json read (thousands of images take a few MB).
const MAX_INDEX_JSON: usize = 64 << 20;

struct VerifySink<'a> {
    also: Option<&'a mut dyn Sink>,
    graph: Graph,
    buffer: Vec<u8>,
    keep: bool,
    overflow: bool,
    /// Most bytes kept of the current entry.
    cap: usize,
    position: HashMap<Digest, usize>,
    progress: &'a mut dyn FnMut(u64, u64),
    total: u64,
}

impl<'a> VerifySink<'a> {
    fn new(
        m: &BundleManifest,
        progress: &'a mut dyn FnMut(u64, u64),
        total: u64,
        also: Option<&'a mut dyn Sink>,
    ) -> Self {
        let position = m
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.digest, i))
            .collect();
        VerifySink {
            also,
            graph: Graph::default(),
            buffer: Vec::new(),
            keep: false,
            overflow: false,
            cap: 0,
            position,
            progress,
            total,
        }
    }

    fn finish(self) -> Graph {
        self.graph
    }
}

impl Sink for VerifySink<'_> {
    fn start(&mut self, e: &Entry) -> anyhow::Result<()> {
        if let Some(also) = self.also.as_mut() {
            also.start(e)?;
        }
        self.buffer.clear();
        self.overflow = false;
        self.keep = e.kind == EntryKind::Index
            || e.media_type.as_deref().is_some_and(oci::is_manifest_like);
        self.cap = if e.kind == EntryKind::Index {
            MAX_INDEX_JSON
        } else {
            oci::MAX_MANIFEST_SIZE as usize
        };
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(also) = self.also.as_mut() {
            also.data(bytes)?;
        }
        if self.keep {
            if self.overflow || self.buffer.len() + bytes.len() > self.cap {
                self.overflow = true;
                self.buffer.clear();
            } else {
                self.buffer.extend_from_slice(bytes);
            }
        }
        Ok(())
    }

    fn end(&mut self, e: &Entry, verified: bool) -> anyhow::Result<()> {
        if let Some(also) = self.also.as_mut() {
            also.end(e, verified)?;
        }
        if !verified {
            return Ok(());
        }
        let pos = self.position[&e.digest];
        match e.kind {
            EntryKind::Index => self.graph.index = Some(std::mem::take(&mut self.buffer)),
            EntryKind::OciLayout => {}
            EntryKind::Blob => {
                self.graph.position.insert(e.digest, pos);
                if self.keep {
                    let media_type = e.media_type.as_deref().unwrap_or_default();
                    let parsed = if self.overflow {
                        Err(format!("manifest larger than {} bytes", self.cap))
                    } else {
                        oci::parse(media_type, &self.buffer).map_err(|err| err.to_string())
                    };
                    self.graph.children.insert(e.digest, parsed);
                }
            }
        }
        self.buffer.clear();
        Ok(())
    }

    fn progress(&mut self, compressed_bytes: u64) {
        (self.progress)(compressed_bytes, self.total);
    }
}

/// Every image: all descriptors reachable from its top manifest are present,
/// verified, written before their parent, and match what bundle.json lists.
fn check_images(m: &BundleManifest, graph: &Graph, report: &mut VerifyReport) {
    for img in &m.images {
        let mut reached = BTreeSet::new();
        let mut problems = Vec::new();
        let filter: Vec<Platform> = img.platforms.iter().filter_map(Platform::parse).collect();
        let mut stack = vec![(img.digest, img.media_type.clone(), 0usize)];
        while let Some((digest, media_type, depth)) = stack.pop() {
            if !reached.insert(digest) {
                continue;
            }
            let Some(&pos) = graph.position.get(&digest) else {
                problems.push((
                    Some(digest),
                    format!("needs {digest}, which is missing or did not verify"),
                ));
                continue;
            };
            if !oci::is_manifest_like(&media_type) {
                continue;
            }
            if depth > 8 {
                problems.push((Some(digest), "manifests nested too deep".into()));
                continue;
            }
            let parsed = match graph.children.get(&digest) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    problems.push((
                        Some(digest),
                        format!("manifest {digest} is unreadable: {e}"),
                    ));
                    continue;
                }
                None => {
                    problems.push((Some(digest), format!("{digest} is referenced as {media_type} but bundle.json does not record it as one")));
                    continue;
                }
            };
            for child in parsed.manifests.iter().chain(&parsed.blobs) {
                let skipped_platform = img.platform_filtered
                    && !graph.position.contains_key(&child.digest)
                    && child
                        .platform
                        .as_ref()
                        .is_some_and(|p| !filter.iter().any(|f| f.selects(p)));
                if skipped_platform {
                    continue;
                }
                if let Some(&child_pos) = graph.position.get(&child.digest) {
                    if child_pos > pos {
                        problems.push((
                            Some(child.digest),
                            format!("{} comes after {digest}, which references it", child.digest),
                        ));
                    }
                    let size = m.entries[child_pos].size;
                    if size != child.size {
                        problems.push((
                            Some(child.digest),
                            format!(
                                "descriptor in {digest} says {} bytes for {}, the blob has {size}",
                                child.size, child.digest
                            ),
                        ));
                    }
                }
                stack.push((child.digest, child.media_type.clone(), depth + 1));
            }
        }
        let listed: BTreeSet<Digest> = img.blobs.iter().copied().chain([img.digest]).collect();
        if problems.is_empty() && listed != reached {
            problems.push((
                None,
                "the blobs reachable from its manifest differ from those bundle.json lists".into(),
            ));
        }
        for (blob, message) in problems {
            report.findings.push(Finding {
                stage: Stage::Images,
                file: None,
                blob,
                images: vec![img.reference.clone()],
                message: format!("{}: {message}", img.reference),
            });
        }
    }
}

/// index.json lists exactly the images of bundle.json, with the same digests.
fn check_index(m: &BundleManifest, graph: &Graph, report: &mut VerifyReport) {
    let file = Some("index.json");
    let Some(bytes) = &graph.index else {
        report.finding(
            Stage::Index,
            file,
            "index.json is missing or did not verify".into(),
        );
        return;
    };
    let index: oci::LayoutIndex = match serde_json::from_slice(bytes) {
        Ok(i) => i,
        Err(e) => {
            report.finding(Stage::Index, file, format!("index.json is malformed: {e}"));
            return;
        }
    };
    let mut listed: BTreeMap<&str, &oci::Descriptor> = BTreeMap::new();
    for d in &index.manifests {
        let name = d
            .annotations
            .get(oci::REF_NAME)
            .map(String::as_str)
            .unwrap_or("");
        if listed.insert(name, d).is_some() {
            report.finding(
                Stage::Index,
                file,
                format!("index.json lists {name:?} twice"),
            );
        }
    }
    for img in &m.images {
        match listed.remove(img.reference.as_str()) {
            None => report.finding(
                Stage::Index,
                file,
                format!("index.json does not list {}", img.reference),
            ),
            Some(d)
                if d.digest != img.digest
                    || d.media_type != img.media_type
                    || d.size != img.size =>
            {
                report.finding(
                    Stage::Index,
                    file,
                    format!(
                        "index.json says {} is {} ({}), bundle.json says {} ({})",
                        img.reference, d.digest, d.media_type, img.digest, img.media_type
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for name in listed.keys() {
        report.finding(
            Stage::Index,
            file,
            format!("index.json lists {name:?}, which bundle.json does not"),
        );
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
