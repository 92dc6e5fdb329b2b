//! `bundle push`: verified images into a registry, tagged only once everything verified.
//!
//! The order of work:
//!
//! 1. bundle.json and its signature ([`verify::open`]); nothing is sent before it verifies.
//! 2. Every image gets its target repository ([`map_images`]); names that collide
//!    or that the registry cannot hold stop the push here.
//! 3. Every volume must be present with its recorded size ([`verify::volumes_present`]).
//! 4. A survey of the target: `HEAD` of each image's tag, then of each blob
//!    and manifest the images need in their repositories (all of them, so a
//!    blob the target lost since an earlier push is found and sent again),
//!    and of missing blobs in the `--mount-from` repositories.
//! 5. If anything is missing, the volumes are read once through the same reader
//!    and checks as `verify`; each entry the target lacks is handed to an
//!    uploader as it streams. A blob the target holds in another repository is
//!    mounted; any other is uploaded as it streams and committed (`PUT ?digest=`) only
//!    once the reader has verified it, and a blob that fails is never committed.
//!    Manifests and indexes are pushed by digest after their children.
//!    When the target already holds everything, the volumes are not read: what
//!    it holds is addressed by the same signed digests.
//! 6. Only if the whole bundle verified, tags are set (or left, with
//!    `--skip-existing-tags`). A bad volume leaves no tag moved.
//!
//! A re-run after an interruption finds what the target already has and
//! uploads only the rest.
//!
//! - `mapping`: `--to`, repository mapping, collisions.
//! - `upload`: the sink on the reader and the upload tasks.
//! - `mirror`: the mirror configuration: ImageDigestMirrorSet (and
//!   ImageTagMirrorSet), registries.conf, and the files below.
//! - `oc_mapping`: mapping.txt, as `oc image mirror -f` parses it.
//! - `install_config`: the install-config.yaml snippet and its CA check.
//! - `quoted`: the YAML and TOML writer of those, which quotes every value.

mod install_config;
mod mapping;
mod mirror;
mod oc_mapping;
mod quoted;
mod upload;

pub use install_config::{TrustBundleError, canonical_pem_certificates};
pub use mapping::{Destination, Mapped, RepoLayout, map_images};
pub use mirror::{
    MirrorConfigError, MirrorOptions, check_registry_names, default_mirror_dir, mirror_config,
    write_mirror_config,
};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::digest::Digest;
use crate::manifest::BundleManifest;
use crate::oci;
use crate::registry::Registry;
use crate::verify::{self, VerifyReport};

/// The default of `--jobs`: uploads, and requests of the survey and the
/// tagging, at once.
pub const DEFAULT_JOBS: usize = 6;

/// What to do with a tag the target already has for another digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingTags {
    /// Move it to the bundle's image (the default, as `skopeo copy` does).
    Overwrite,
    /// Leave it and say so.
    Skip,
}

/// Options of a push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Where to.
    pub destination: Destination,
    /// How repository paths are mapped.
    pub layout: RepoLayout,
    /// What to do with tags that point elsewhere.
    pub existing_tags: ExistingTags,
    /// Target repositories that may already hold blobs (mounted from, not uploaded).
    pub mount_from: Vec<String>,
    /// Blob and manifest uploads at once (each holds up to a few MiB), and
    /// requests at once in the survey and the tagging.
    pub jobs: usize,
}

/// What happened to an image's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagOutcome {
    /// The tag did not exist and now points at the image.
    Created,
    /// The tag pointed elsewhere and was moved.
    Updated,
    /// The tag already pointed at the image.
    Unchanged,
    /// The tag pointed elsewhere and was left (`--skip-existing-tags`).
    SkippedExisting,
    /// The image has no tag; it is on the target by digest.
    ByDigest,
    /// Not tagged because the bundle did not verify.
    NotTagged,
    /// The target refused its manifest or index although the bundle verified
    /// (a sparse index made with `--platform`); see the report's `refused`.
    Refused,
}

/// What the push did with an image's content: each image is in exactly one
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// The target lacked some of it (a blob or manifest in its repository)
    /// and the push sent that.
    Pushed,
    /// The target held all of it before the push: nothing was sent for it.
    AlreadyThere,
    /// The target refused its manifest or index (see [`TagOutcome::Refused`]).
    Refused,
    /// The target lacks some of it and the bundle did not verify, so it is
    /// not complete there (and not tagged).
    NotPushed,
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// Where it went.
    #[serde(flatten)]
    pub image: Mapped,
    /// `host/repository:tag` (or `@digest`).
    pub target: String,
    /// What happened to the tag.
    pub tag: TagOutcome,
    /// What happened to its content.
    pub delivery: Delivery,
}

/// How many images are in each [`Delivery`] bucket; they add up to the
/// number of images.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// [`Delivery::Pushed`].
    pub pushed: usize,
    /// [`Delivery::AlreadyThere`].
    pub already_there: usize,
    /// [`Delivery::Refused`].
    pub refused: usize,
    /// [`Delivery::NotPushed`].
    pub not_pushed: usize,
}

impl DeliveryCounts {
    /// The counts of `images`.
    pub fn of(images: &[ImageResult]) -> DeliveryCounts {
        let mut c = DeliveryCounts::default();
        for i in images {
            *match i.delivery {
                Delivery::Pushed => &mut c.pushed,
                Delivery::AlreadyThere => &mut c.already_there,
                Delivery::Refused => &mut c.refused,
                Delivery::NotPushed => &mut c.not_pushed,
            } += 1;
        }
        c
    }
}

/// Counts of what the push did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PushStats {
    /// Blob uploads (one per blob and repository it was uploaded to).
    pub blobs_uploaded: usize,
    /// Blobs mounted from another repository of the target.
    pub blobs_mounted: usize,
    /// (blob, repository) pairs the target already had.
    pub blobs_present: usize,
    /// Bytes sent in blob uploads.
    pub bytes_uploaded: u64,
    /// Manifests and indexes pushed by digest.
    pub manifests_pushed: usize,
    /// (manifest, repository) pairs the target already had.
    pub manifests_present: usize,
}

/// What a push did.
#[derive(Debug, Serialize)]
pub struct PushReport {
    /// The checks, as `verify` reports them.
    pub verify: VerifyReport,
    /// `host[/prefix]`.
    pub destination: String,
    /// Whether the volumes were read (not needed when the target had everything).
    pub volumes_read: bool,
    /// Counts.
    pub stats: PushStats,
    /// Per image, in bundle order.
    pub images: Vec<ImageResult>,
    /// How many images were pushed, already there, refused, not pushed.
    pub delivered: DeliveryCounts,
    /// Whether tags were set (only when everything verified).
    pub tagged: bool,
    /// Manifests the target refused although the bundle verified, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// Verifies the bundle in `dirs[0]` while pushing it to the registry that
/// `connect` reaches; tags only if it all verified. `connect` is called only
/// once the signature verified and every volume is there (a wrong key or a
/// missing volume sends nothing), with the verified bundle.json, so that the
/// caller can check what it needs before anything is sent.
///
/// Async work runs on `rt`; the caller's thread reads the volumes (it must not
/// be a runtime thread).
pub fn push(
    dirs: &[PathBuf],
    trust: &verify::Trust,
    connect: &dyn Fn(&BundleManifest) -> anyhow::Result<Registry>,
    opts: &PushOptions,
    rt: &Handle,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<PushReport> {
    let (mut report, m) = verify::open(dirs, trust, false)?;
    let mut out = PushReport {
        verify: VerifyReport::default(),
        destination: format!("{}/{}", opts.destination.host(), opts.destination.prefix)
            .trim_end_matches('/')
            .to_owned(),
        volumes_read: false,
        stats: PushStats::default(),
        images: Vec::new(),
        delivered: DeliveryCounts::default(),
        tagged: false,
        refused: Vec::new(),
    };
    let Some(m) = m else {
        out.verify = report;
        return Ok(out);
    };
    let mapped = map_images(&m, opts)?;
    let host = opts.destination.host().to_owned();
    out.images = mapped
        .iter()
        .map(|img| ImageResult {
            target: target_name(&host, img),
            image: img.clone(),
            tag: TagOutcome::NotTagged,
            delivery: Delivery::NotPushed,
        })
        .collect();
    if !verify::volumes_present(&m, dirs, &mut report) {
        out.verify = report;
        out.delivered = DeliveryCounts::of(&out.images);
        return Ok(out);
    }

    let registry = connect(&m)?.with_upload_chunk_size(upload::CHUNK);
    let survey = rt.block_on(survey(&registry, &m, &mapped, &opts.mount_from, opts.jobs))?;
    // An image the target lacks nothing of is already there whatever follows.
    let missing: HashSet<(&str, Digest)> = survey
        .work
        .iter()
        .flat_map(|(d, w)| w.missing.iter().map(move |repo| (repo.as_str(), *d)))
        .collect();
    let lacking: Vec<bool> = mapped
        .iter()
        .map(|img| {
            img.needs
                .iter()
                .any(|d| missing.contains(&(img.repository.as_str(), *d)))
        })
        .collect();
    for (result, lacks) in out.images.iter_mut().zip(&lacking) {
        if !lacks {
            result.delivery = Delivery::AlreadyThere;
        }
    }
    out.stats = PushStats {
        blobs_present: survey.blobs_present,
        manifests_present: survey.manifests_present,
        ..PushStats::default()
    };
    let mut read = upload::Outcome {
        refused: Vec::new(),
        pushed: HashMap::new(),
    };
    if survey.work.is_empty() {
        report.findings.sort_by_key(|f| f.stage);
    } else {
        out.volumes_read = true;
        let reading = upload::Reading {
            manifest: &m,
            dirs,
            registry: &registry,
            work: &survey.work,
            rt,
            jobs: opts.jobs,
        };
        read = reading.run(progress, &mut report, &mut out.stats)?;
    }
    out.verify = report;
    if !out.verify.ok() {
        out.delivered = DeliveryCounts::of(&out.images);
        return Ok(out);
    }
    // A manifest refused for want of a child although everything verified: the
    // registry will not hold that image (a sparse index made with --platform,
    // on a registry that checks every child). The others are still tagged.
    let refused: BTreeSet<Digest> = read.refused.iter().map(|(d, _)| *d).collect();
    let blocked: Vec<bool> = mapped
        .iter()
        .map(|img| img.needs.iter().any(|d| refused.contains(d)))
        .collect();
    out.refused = read.refused.into_iter().map(|(_, why)| why).collect();
    let taggable: Vec<Mapped> = mapped
        .iter()
        .zip(&blocked)
        .filter(|(_, b)| !**b)
        .map(|(img, _)| img.clone())
        .collect();
    let before: Vec<Option<Digest>> = survey
        .tags
        .iter()
        .zip(&blocked)
        .filter(|(_, b)| !**b)
        .map(|(t, _)| *t)
        .collect();
    let mut outcomes = rt
        .block_on(set_tags(
            &registry,
            &taggable,
            &before,
            &read.pushed,
            opts.existing_tags,
            opts.jobs,
        ))?
        .into_iter();
    for ((result, blocked), lacks) in out.images.iter_mut().zip(blocked).zip(lacking) {
        result.tag = if blocked {
            TagOutcome::Refused
        } else {
            outcomes.next().unwrap_or(TagOutcome::NotTagged)
        };
        result.delivery = match (blocked, lacks) {
            (true, _) => Delivery::Refused,
            (false, true) => Delivery::Pushed,
            (false, false) => Delivery::AlreadyThere,
        };
    }
    out.delivered = DeliveryCounts::of(&out.images);
    out.tagged = true;
    Ok(out)
}

/// Where `img` goes on the registry `host`: `host/repository:tag`, or
/// `host/repository@digest` for an image kept by digest.
pub fn target_name(host: &str, img: &Mapped) -> String {
    match &img.tag {
        Some(tag) => format!("{host}/{}:{tag}", img.repository),
        None => format!("{host}/{}@{}", img.repository, img.digest),
    }
}

/// What the target lacks, per digest.
#[derive(Debug, Clone)]
struct Work {
    /// Whether it is a manifest or index (pushed by digest) rather than a blob.
    manifest: bool,
    /// Its media type (manifests are sent with it).
    media_type: String,
    /// Target repositories that need it and lack it, in a stable order.
    missing: Vec<String>,
    /// A target repository that already has it (a blob can be mounted from there).
    holder: Option<String>,
    /// Its size.
    size: u64,
}

struct Survey {
    work: HashMap<Digest, Work>,
    /// What each image's tag names on the target now (in `mapped` order).
    tags: Vec<Option<Digest>>,
    blobs_present: usize,
    manifests_present: usize,
}

/// Asks the target which of the (repository, digest) pairs the images need it already has.
async fn survey(
    registry: &Registry,
    m: &BundleManifest,
    mapped: &[Mapped],
    mount_from: &[String],
    jobs: usize,
) -> anyhow::Result<Survey> {
    let kinds: HashMap<Digest, String> = m
        .entries
        .iter()
        .filter_map(|e| Some((e.digest, e.media_type.clone()?)))
        .collect();
    let sizes: HashMap<Digest, u64> = m.entries.iter().map(|e| (e.digest, e.size)).collect();
    let is_manifest = |d: &Digest| kinds.get(d).is_some_and(|t| oci::is_manifest_like(t));
    // The tags, for what each image's tag names now (the tagging needs it).
    // Every blob is asked for, those of images already tagged too, as
    // skopeo does: a registry accepts a manifest only with everything it
    // references, but a blob can go later (deleted, garbage-collected), and
    // a re-push must find and repair that rather than count it as there.
    let tags: Vec<Option<Digest>> = stream::iter(mapped.iter().map(|img| async move {
        let Some(tag) = &img.tag else {
            return Ok(None);
        };
        registry
            .manifest_digest(&img.repository, tag)
            .await
            .with_context(|| format!("looking up {}:{tag}", img.repository))
    }))
    .buffered(jobs.max(1))
    .try_collect()
    .await?;
    let pairs: BTreeSet<(String, Digest)> = mapped
        .iter()
        .flat_map(|img| img.needs.iter().map(|d| (img.repository.clone(), *d)))
        .collect();
    let present = check_present(registry, pairs.iter().cloned(), &is_manifest, jobs).await?;

    let mut work: BTreeMap<Digest, Work> = BTreeMap::new();
    let (mut blobs_present, mut manifests_present) = (0, 0);
    for ((repo, digest), has) in pairs.iter().zip(&present) {
        let manifest = is_manifest(digest);
        let w = work.entry(*digest).or_insert_with(|| Work {
            manifest,
            media_type: kinds.get(digest).cloned().unwrap_or_default(),
            missing: Vec::new(),
            holder: None,
            size: sizes.get(digest).copied().unwrap_or_default(),
        });
        match (has, manifest) {
            (true, true) => manifests_present += 1,
            (true, false) => blobs_present += 1,
            (false, _) => w.missing.push(repo.clone()),
        }
        if *has && w.holder.is_none() {
            w.holder = Some(repo.clone());
        }
    }
    work.retain(|_, w| !w.missing.is_empty());

    // Blobs no target repository of the bundle has: perhaps a --mount-from repository does.
    let orphans: Vec<(String, Digest)> = work
        .iter()
        .filter(|(_, w)| !w.manifest && w.holder.is_none())
        .flat_map(|(d, _)| mount_from.iter().map(move |r| (r.clone(), *d)))
        .collect();
    let found = check_present(registry, orphans.iter().cloned(), &|_| false, jobs).await?;
    for ((repo, digest), has) in orphans.iter().zip(found) {
        if let Some(w) = work.get_mut(digest).filter(|w| has && w.holder.is_none()) {
            w.holder = Some(repo.clone());
        }
    }
    Ok(Survey {
        work: work.into_iter().collect(),
        blobs_present,
        manifests_present,
        tags,
    })
}

/// `HEAD` for each pair, in order, some at once.
async fn check_present(
    registry: &Registry,
    pairs: impl Iterator<Item = (String, Digest)>,
    is_manifest: &dyn Fn(&Digest) -> bool,
    jobs: usize,
) -> anyhow::Result<Vec<bool>> {
    stream::iter(pairs.map(|(repo, digest)| {
        let manifest = is_manifest(&digest);
        async move {
            let has = if manifest {
                registry
                    .manifest_digest(&repo, &digest.to_string())
                    .await
                    .map(|d| d.is_some())
            } else {
                registry.has_blob(&repo, &digest).await
            };
            has.with_context(|| format!("asking {} whether {repo} has {digest}", registry.host()))
        }
    }))
    .buffered(jobs.max(1))
    .try_collect()
    .await
}

/// Sets every image's tag, or leaves it as `existing` says. `before` is what
/// the survey found: a tag it found at another image is looked up again (to
/// move or leave it), one it did not find is created. The manifest bytes come
/// from `pushed`, or back from the target by the signed digest, checked as
/// they arrive.
async fn set_tags(
    registry: &Registry,
    mapped: &[Mapped],
    before: &[Option<Digest>],
    pushed: &HashMap<Digest, Bytes>,
    existing: ExistingTags,
    jobs: usize,
) -> anyhow::Result<Vec<TagOutcome>> {
    stream::iter(mapped.iter().zip(before).map(|(img, before)| async move {
        let Some(tag) = &img.tag else {
            return Ok(TagOutcome::ByDigest);
        };
        let what = format!("{}:{tag}", img.repository);
        let outcome = match before {
            Some(d) if *d == img.digest => return Ok(TagOutcome::Unchanged),
            None => TagOutcome::Created,
            Some(_) => {
                let now = registry
                    .manifest_digest(&img.repository, tag)
                    .await
                    .with_context(|| format!("looking up {what}"))?;
                match now {
                    Some(d) if d == img.digest => return Ok(TagOutcome::Unchanged),
                    Some(_) if existing == ExistingTags::Skip => {
                        return Ok(TagOutcome::SkippedExisting);
                    }
                    Some(_) => TagOutcome::Updated,
                    None => TagOutcome::Created,
                }
            }
        };
        let bytes = match pushed.get(&img.digest) {
            Some(bytes) => bytes.clone(),
            None => {
                registry
                    .manifest(&img.repository, &img.digest.to_string())
                    .await
                    .with_context(|| format!("reading {}@{}", img.repository, img.digest))?
                    .bytes
            }
        };
        registry
            .put_manifest(&img.repository, tag, &img.media_type, bytes)
            .await
            .with_context(|| format!("tagging {what}"))?;
        anyhow::Ok(outcome)
    }))
    .buffered(jobs.max(1))
    .try_collect()
    .await
}
