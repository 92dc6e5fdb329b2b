//! `bundle verify`: signature → volumes → every blob → every image → index.json.
//!
//! Trusts nothing but the public key: bundle.json is parsed only after its
//! signature checks, and every later check is against bundle.json. The report
//! lists every problem found (checking goes on after the first), each naming
//! the file, the blob and the images it affects.

mod affected;
mod graph;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::archive::reader::{self, CheckOnly, Problem, ProblemKind, Sink};
use crate::digest::Digest;
use crate::files::{Links, read_capped};
use crate::manifest::{self, BundleManifest, Entry, EntryKind};
use crate::oci;
use crate::sign::{self, PublicKey, Signature};
use affected::Affected;
use graph::{Graph, check_images};

pub use graph::{GRAPH_BUDGET, MAX_IMAGE_FINDINGS, WALK_BUDGET};

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
    pub images: Vec<Arc<str>>,
    /// What is wrong.
    pub message: String,
}

/// What verify found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// The bundle directory.
    #[serde(serialize_with = "crate::text::lossy_path")]
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
    /// Blobs listed: the entries under `blobs/` (create's count), without
    /// `oci-layout` and `index.json`.
    pub blobs: usize,
    /// Blobs whose digest matched (deep only).
    pub blobs_ok: usize,
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
    report.blobs = m
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Blob)
        .count();
    report.images = m.images.len();
    check_sums_file(dir, &m, &mut report);
    Ok((report, Some(m)))
}

/// Checks that every volume is there with its recorded size, before anything
/// heavy starts (extract and push stop here when one is missing). Adds a
/// finding per missing or wrongly sized volume; true when all are present.
pub fn volumes_present(m: &BundleManifest, dirs: &[PathBuf], report: &mut VerifyReport) -> bool {
    let before = report.findings.len();
    let mut affected = None;
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
        let affected = affected.get_or_insert_with(|| Affected::new(m));
        report.findings.push(problem_finding(affected, &problem));
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
    if !read.problems.is_empty() {
        let affected = Affected::new(m);
        for p in &read.problems {
            report.findings.push(problem_finding(&affected, p));
        }
    }
    if !quick {
        report.blobs_ok = sink.blobs_ok;
        let graph = sink.finish();
        check_images(m, &graph, report);
        check_index(&graph, report);
    }
    report.findings.sort_by_key(|f| f.stage);
    Ok(())
}

fn problem_finding(affected: &Affected<'_>, p: &Problem) -> Finding {
    let stage = match p.kind {
        ProblemKind::VolumeMissing
        | ProblemKind::VolumeSize { .. }
        | ProblemKind::VolumeHash { .. }
        | ProblemKind::ExtraVolume
        | ProblemKind::ExtraVolumes { .. }
        | ProblemKind::VolumeUnreadable { .. } => Stage::Volumes,
        _ => Stage::Blobs,
    };
    let images = match (&p.digest, &p.volume, &p.kind) {
        (Some(d), _, _) => affected.of_blob(d),
        (
            None,
            Some(v),
            ProblemKind::VolumeMissing
            | ProblemKind::VolumeSize { .. }
            | ProblemKind::VolumeHash { .. },
        ) => affected.of_volume(v),
        _ => vec![],
    };
    let message = match &p.entry {
        Some(e) => format!("{e}: {}", p.kind),
        None => p.kind.to_string(),
    };
    Finding {
        stage,
        file: p.volume.clone(),
        blob: p.digest,
        images,
        message,
    }
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

struct VerifySink<'a, 'm> {
    m: &'m BundleManifest,
    also: Option<&'a mut dyn Sink>,
    graph: Graph,
    buffer: Vec<u8>,
    keep: bool,
    overflow: bool,
    /// Most bytes kept of the current entry.
    cap: usize,
    /// Blob entries whose digest matched.
    blobs_ok: usize,
    progress: &'a mut dyn FnMut(u64, u64),
    total: u64,
}

impl<'a, 'm> VerifySink<'a, 'm> {
    fn new(
        m: &'m BundleManifest,
        progress: &'a mut dyn FnMut(u64, u64),
        total: u64,
        also: Option<&'a mut dyn Sink>,
    ) -> Self {
        VerifySink {
            m,
            also,
            graph: Graph::new(m),
            buffer: Vec::new(),
            keep: false,
            overflow: false,
            cap: 0,
            blobs_ok: 0,
            progress,
            total,
        }
    }

    fn finish(self) -> Graph {
        self.graph
    }
}

impl Sink for VerifySink<'_, '_> {
    fn start(&mut self, e: &Entry) -> anyhow::Result<()> {
        if let Some(also) = self.also.as_mut() {
            also.start(e)?;
        }
        self.buffer.clear();
        self.overflow = false;
        // index.json is not kept: its bytes are fixed by bundle.json's
        // images (checked at parse), so its digest says all there is.
        self.keep =
            e.kind == EntryKind::Blob && e.media_type.as_deref().is_some_and(oci::is_manifest_like);
        self.cap = oci::MAX_MANIFEST_SIZE as usize;
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
        match e.kind {
            EntryKind::Index => self.graph.index_verified = true,
            EntryKind::OciLayout => {}
            EntryKind::Blob => {
                let Some(pos) = self.graph.blob_index(&e.digest) else {
                    anyhow::bail!("blob {} is not one of bundle.json's entries", e.digest);
                };
                self.graph.verified(pos);
                self.blobs_ok += 1;
                if self.keep {
                    let media_type = e.media_type.as_deref().unwrap_or_default();
                    let content = if self.overflow {
                        Err(format!("manifest larger than {} bytes", self.cap))
                    } else {
                        Ok(&self.buffer[..])
                    };
                    self.graph.add_manifest(self.m, pos, media_type, content);
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

/// index.json verified. Its bytes are the ones bundle.json's images give
/// (`BundleManifest::check` compares their digest before any volume is read),
/// so it lists exactly those images with their digests once its own digest
/// matched; nothing in it needs parsing.
fn check_index(graph: &Graph, report: &mut VerifyReport) {
    if !graph.index_verified {
        report.finding(
            Stage::Index,
            Some("index.json"),
            "index.json is missing or did not verify".into(),
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
