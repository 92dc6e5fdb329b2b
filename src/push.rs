//! `bundle push`: verified images into a registry, tagged only once everything verified.
//!
//! The order of work:
//!
//! 1. bundle.json and its signature ([`verify::open`]); nothing is sent before it verifies.
//! 2. Every image gets its target repository ([`map_images`]); names that collide
//!    or that the registry cannot hold stop the push here.
//! 3. Every volume must be present with its recorded size ([`verify::volumes_present`]).
//! 4. A survey of the target: `HEAD` for each blob and manifest in each target
//!    repository that needs it, and in the `--mount-from` repositories.
//! 5. If anything is missing, the volumes are read once through the same reader
//!    and checks as `verify`; each entry the target lacks is handed to an
//!    uploader as it streams. A blob the target holds in another repository is
//!    mounted; any other is uploaded in chunks and committed (`PUT ?digest=`) only
//!    once the reader has verified it, and a blob that fails is never committed.
//!    Manifests and indexes are pushed by digest after their children.
//!    When the target already holds everything, the volumes are not read: what
//!    it holds is addressed by the same signed digests.
//! 6. Only if the whole bundle verified, tags are set (or left, with
//!    `--skip-existing-tags`). A bad volume leaves no tag moved.
//!
//! A re-run after an interruption finds what the target already has and
//! uploads only the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::archive::reader::Sink;
use crate::digest::Digest;
use crate::manifest::{BundleManifest, Entry};
use crate::oci;
use crate::registry::{
    ErrorCode, MountOutcome, Registry, Upload, is_valid_repository, is_valid_tag,
};
use crate::sign::PublicKey;
use crate::verify::{self, VerifyReport};

/// Requests in flight during the survey and tagging.
const CONCURRENCY: usize = 8;
/// Blob and manifest tasks running at once while the reader goes on.
const IN_FLIGHT: usize = 6;
/// Size of the pieces handed from the reader to the uploader.
const PIECE: usize = 1 << 20;
/// Pieces queued between the reader and the uploader.
const QUEUE: usize = 4;
/// Pieces queued for one blob's task.
const BLOB_QUEUE: usize = 2;
/// Blobs up to this size are held and sent whole with the closing `PUT` (one
/// request less); larger ones stream. With [`IN_FLIGHT`] tasks each holding
/// at most this and a few pieces, memory stays far under 100 MiB.
const CHUNK: usize = 4 << 20;
/// Most bytes per streamed `PATCH` of a large blob (nothing is buffered; the
/// limit keeps each request within what proxies in front of registries allow).
const STREAM_CHUNK: u64 = 64 << 20;

/// Where images go: `REGISTRY[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `[scheme://]host[:port]` as [`Registry::connect`] takes it.
    pub registry: String,
    /// Repository path prefix (may be empty), without slashes at the ends.
    pub prefix: String,
}

impl Destination {
    /// Parses `host[:port][/prefix/…]`, optionally with `https://` or `http://`.
    pub fn parse(s: &str) -> anyhow::Result<Destination> {
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), s),
        };
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if host.is_empty() {
            bail!("--to {s:?}: expected REGISTRY[/PREFIX], like registry.local:5000/mirror");
        }
        if !prefix.is_empty() && !is_valid_repository(prefix) {
            bail!(
                "--to {s:?}: the prefix {prefix:?} is not a repository path (lowercase components separated by '/')"
            );
        }
        Ok(Destination {
            registry: format!("{scheme}{host}"),
            prefix: prefix.to_owned(),
        })
    }

    /// `host[:port]` without the scheme, as image references name it.
    pub fn host(&self) -> &str {
        crate::source::bare_host(&self.registry)
    }
}

/// How source repository paths become target repository paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoLayout {
    /// `PREFIX/openshift/php`: the source path under the prefix.
    Nested,
    /// At most this many path components in all (prefix included); the last
    /// ones are joined with `-` (`--max-nested-paths 2`: `mirror/openshift-php`),
    /// for registries such as Quay that allow only `namespace/repository`.
    MaxNested(usize),
}

impl RepoLayout {
    /// The target repository for `source_repo` under `prefix`.
    pub fn map(self, prefix: &str, source_repo: &str) -> String {
        let parts: Vec<&str> = prefix
            .split('/')
            .chain(source_repo.split('/'))
            .filter(|p| !p.is_empty())
            .collect();
        match self {
            RepoLayout::MaxNested(n) if parts.len() > n.max(1) => {
                let keep = n.max(1) - 1;
                let mut out: Vec<String> = parts[..keep].iter().map(|p| p.to_string()).collect();
                out.push(parts[keep..].join("-"));
                out.join("/")
            }
            _ => parts.join("/"),
        }
    }
}

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
}

/// One image of the bundle and where it goes.
#[derive(Debug, Clone, Serialize)]
pub struct Mapped {
    /// `repo:tag` in the bundle.
    pub reference: String,
    /// Where it came from (as recorded at create).
    pub source: String,
    /// The target repository.
    pub repository: String,
    /// The tag to set (none for images kept by digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The top manifest or index.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Every digest it needs, the top one included.
    #[serde(skip)]
    pub needs: Vec<Digest>,
}

/// Splits `repo:tag` or `repo@sha256:…` (the bundle's reference form).
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if let Some((repo, _digest)) = reference.split_once('@') {
        return (repo, None);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// The target repository and tag of every image; refuses names the registry
/// cannot hold and two different images landing on one tag.
pub fn map_images(m: &BundleManifest, opts: &PushOptions) -> anyhow::Result<Vec<Mapped>> {
    let mut out = Vec::new();
    let mut tags: BTreeMap<(String, String), (&str, Digest)> = BTreeMap::new();
    for img in &m.images {
        let (repo, tag) = match split_reference(&img.reference) {
            // A layout ref name without a repository is a bare tag.
            (tag, None) if !img.reference.contains(['@', '/']) => ("", Some(tag)),
            split => split,
        };
        if repo.is_empty() && opts.destination.prefix.is_empty() {
            bail!(
                "image {} has no repository name; give one in --to REGISTRY/REPOSITORY",
                img.reference
            );
        }
        let repository = opts.layout.map(&opts.destination.prefix, repo);
        if !is_valid_repository(&repository) {
            bail!(
                "image {} would go to {repository:?}, which is not a valid repository name",
                img.reference
            );
        }
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                bail!("image {}: {tag:?} is not a valid tag", img.reference);
            }
            let key = (repository.clone(), tag.to_owned());
            if let Some((other, digest)) = tags.get(&key)
                && *digest != img.digest
            {
                bail!(
                    "images {other} and {} would both be tagged {}:{tag}; choose another --to or repository mapping",
                    img.reference,
                    repository
                );
            }
            tags.insert(key, (&img.reference, img.digest));
        }
        let mut needs = img.blobs.clone();
        if !needs.contains(&img.digest) {
            needs.push(img.digest);
        }
        out.push(Mapped {
            reference: img.reference.clone(),
            source: img.source.clone(),
            repository,
            tag: tag.map(str::to_owned),
            digest: img.digest,
            media_type: img.media_type.clone(),
            needs,
        });
    }
    Ok(out)
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
    /// Whether tags were set (only when everything verified).
    pub tagged: bool,
    /// Manifests the target refused although the bundle verified, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// Verifies the bundle in `dirs[0]` while pushing it to the registry that
/// `connect` reaches; tags only if it all verified. `connect` is called only
/// once the signature verified and every volume is there: a wrong key or a
/// missing volume sends nothing.
///
/// Async work runs on `rt`; the caller's thread reads the volumes (it must not
/// be a runtime thread).
pub fn push(
    dirs: &[PathBuf],
    key: &PublicKey,
    connect: &dyn Fn() -> anyhow::Result<Registry>,
    opts: &PushOptions,
    rt: &Handle,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<PushReport> {
    let (mut report, m) = verify::open(dirs, key, false)?;
    let mut out = PushReport {
        verify: VerifyReport::default(),
        destination: format!("{}/{}", opts.destination.host(), opts.destination.prefix)
            .trim_end_matches('/')
            .to_owned(),
        volumes_read: false,
        stats: PushStats::default(),
        images: Vec::new(),
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
        })
        .collect();
    if !verify::volumes_present(&m, dirs, &mut report) {
        out.verify = report;
        return Ok(out);
    }

    let registry = connect()?.with_upload_chunk_size(CHUNK);
    let survey = rt.block_on(survey(&registry, &m, &mapped, &opts.mount_from))?;
    let ctx = Ctx {
        registry: registry.clone(),
        stats: Arc::new(Mutex::new(PushStats {
            blobs_present: survey.blobs_present,
            manifests_present: survey.manifests_present,
            ..PushStats::default()
        })),
        refused: Arc::new(Mutex::new(Vec::new())),
    };
    if !survey.work.is_empty() {
        out.volumes_read = true;
        let (tx, rx) = mpsc::channel(QUEUE);
        let uploader = rt.spawn(run_uploader(ctx.clone(), survey.work.clone(), rx));
        let mut sink = PushSink {
            work: &survey.work,
            tx: Some(tx),
            active: false,
            piece: BytesMut::new(),
        };
        let read = verify::read_into(&m, dirs, progress, Some(&mut sink), &mut report);
        drop(sink);
        // The uploader's own error explains a broken channel better than the reader's.
        let uploaded = rt.block_on(uploader).context("the upload task panicked")?;
        uploaded?;
        read?;
    } else {
        report.findings.sort_by_key(|f| f.stage);
    }
    out.stats = lock(&ctx.stats).clone();
    out.verify = report;
    if !out.verify.ok() {
        return Ok(out);
    }
    // A manifest refused for want of a child although everything verified: the
    // registry will not hold that image (a sparse index made with --platform,
    // on a registry that checks every child). The others are still tagged.
    let refused = std::mem::take(&mut *ctx.refused.lock().unwrap_or_else(|p| p.into_inner()));
    let blocked: Vec<bool> = mapped
        .iter()
        .map(|img| refused.iter().any(|(d, _)| img.needs.contains(d)))
        .collect();
    out.refused = refused.into_iter().map(|(_, why)| why).collect();
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
        .block_on(set_tags(&registry, &taggable, &before, opts.existing_tags))?
        .into_iter();
    for (result, blocked) in out.images.iter_mut().zip(blocked) {
        result.tag = if blocked {
            TagOutcome::Refused
        } else {
            outcomes.next().unwrap_or(TagOutcome::NotTagged)
        };
    }
    out.tagged = true;
    Ok(out)
}

fn lock(stats: &Mutex<PushStats>) -> MutexGuard<'_, PushStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

fn target_name(host: &str, img: &Mapped) -> String {
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
) -> anyhow::Result<Survey> {
    let kinds: HashMap<Digest, String> = m
        .entries
        .iter()
        .filter_map(|e| Some((e.digest, e.media_type.clone()?)))
        .collect();
    let sizes: HashMap<Digest, u64> = m.entries.iter().map(|e| (e.digest, e.size)).collect();
    let is_manifest = |d: &Digest| kinds.get(d).is_some_and(|t| oci::is_manifest_like(t));
    // First the tags: a registry holds a manifest only with everything it
    // references, so an image whose tag already names its digest is complete
    // (a re-push asks nothing more).
    let tags: Vec<Option<Digest>> = stream::iter(mapped.iter().map(|img| async move {
        let Some(tag) = &img.tag else {
            return Ok(None);
        };
        registry
            .manifest_digest(&img.repository, tag)
            .await
            .with_context(|| format!("looking up {}:{tag}", img.repository))
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    let complete: BTreeSet<(String, Digest)> = mapped
        .iter()
        .zip(&tags)
        .filter(|(img, now)| **now == Some(img.digest))
        .flat_map(|(img, _)| img.needs.iter().map(|d| (img.repository.clone(), *d)))
        .collect();
    let pairs: BTreeSet<(String, Digest)> = mapped
        .iter()
        .flat_map(|img| img.needs.iter().map(|d| (img.repository.clone(), *d)))
        .collect();
    let unknown = pairs.iter().filter(|p| !complete.contains(p)).cloned();
    let mut asked = check_present(registry, unknown, &is_manifest)
        .await?
        .into_iter();
    let present: Vec<bool> = pairs
        .iter()
        .map(|p| complete.contains(p) || asked.next().unwrap_or(false))
        .collect();

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
    let found = check_present(registry, orphans.iter().cloned(), &|_| false).await?;
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
    .buffered(CONCURRENCY)
    .try_collect()
    .await
}

/// What the reader hands the uploader.
enum Msg {
    Start(Digest),
    Data(Bytes),
    End(bool),
}

/// Passes the entries the target lacks to the uploader, in pieces.
struct PushSink<'a> {
    work: &'a HashMap<Digest, Work>,
    tx: Option<mpsc::Sender<Msg>>,
    active: bool,
    piece: BytesMut,
}

impl PushSink<'_> {
    fn send(&mut self, msg: Msg) -> anyhow::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.blocking_send(msg));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => {
                self.tx = None;
                bail!("the upload stopped")
            }
        }
    }
}

impl Sink for PushSink<'_> {
    fn start(&mut self, e: &Entry) -> anyhow::Result<()> {
        self.active = self.work.contains_key(&e.digest);
        self.piece.clear();
        if self.active {
            self.send(Msg::Start(e.digest))?;
        }
        Ok(())
    }

    fn data(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
        while self.active && !bytes.is_empty() {
            let take = bytes.len().min(PIECE - self.piece.len());
            self.piece.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.piece.len() == PIECE {
                let piece = self.piece.split().freeze();
                self.send(Msg::Data(piece))?;
            }
        }
        Ok(())
    }

    fn end(&mut self, _: &Entry, verified: bool) -> anyhow::Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        if !self.piece.is_empty() {
            let piece = self.piece.split().freeze();
            self.send(Msg::Data(piece))?;
        }
        self.send(Msg::End(verified))
    }
}

/// What goes to one blob's upload task.
enum Piece {
    Data(Bytes),
    End(bool),
}

enum Current {
    None,
    Blob(mpsc::Sender<Piece>),
    Manifest(Digest, Vec<u8>),
}

/// A task's outcome as others wait for it: true when the content is on the
/// target in every repository that needed it.
type Done = Shared<BoxFuture<'static, bool>>;

fn done_pair() -> (oneshot::Sender<bool>, Done) {
    let (tx, rx) = oneshot::channel();
    (tx, rx.map(|r| r.unwrap_or(false)).boxed().shared())
}

/// What the upload tasks share.
#[derive(Clone)]
struct Ctx {
    registry: Registry,
    stats: Arc<Mutex<PushStats>>,
    /// Manifests the registry refused for want of a child: explained by a bad
    /// bundle, an error if the bundle verified.
    refused: Arc<Mutex<Vec<(Digest, String)>>>,
}

/// Receives entries from the reader. Each blob and manifest the target lacks
/// becomes a task (several run at once while the reader goes on); a manifest
/// is pushed once the tasks of its children succeeded, and skipped if one
/// failed to verify.
async fn run_uploader(
    ctx: Ctx,
    work: HashMap<Digest, Work>,
    mut rx: mpsc::Receiver<Msg>,
) -> anyhow::Result<()> {
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut done: HashMap<Digest, Done> = HashMap::new();
    let mut current = Current::None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Start(digest) => {
                let w = work.get(&digest).context("an entry nobody asked for")?;
                while tasks.len() >= IN_FLIGHT {
                    join_one(&mut tasks).await?;
                }
                if w.manifest {
                    current = Current::Manifest(digest, Vec::new());
                    continue;
                }
                let (tx, blob_rx) = mpsc::channel(BLOB_QUEUE);
                let (finished, waiter) = done_pair();
                done.insert(digest, waiter);
                tasks.spawn(upload_blob(
                    ctx.clone(),
                    digest,
                    w.clone(),
                    blob_rx,
                    finished,
                ));
                current = Current::Blob(tx);
            }
            Msg::Data(bytes) => match &mut current {
                Current::Blob(tx) => {
                    if tx.send(Piece::Data(bytes)).await.is_err() {
                        // The task failed; its error comes out of the join below.
                        break;
                    }
                }
                Current::Manifest(digest, buf) => {
                    if (buf.len() + bytes.len()) as u64 > oci::MAX_MANIFEST_SIZE {
                        bail!(
                            "manifest {digest} is larger than {} bytes",
                            oci::MAX_MANIFEST_SIZE
                        );
                    }
                    buf.extend_from_slice(&bytes);
                }
                Current::None => bail!("data outside an entry"),
            },
            Msg::End(verified) => match std::mem::replace(&mut current, Current::None) {
                Current::Blob(tx) => {
                    if tx.send(Piece::End(verified)).await.is_err() {
                        break;
                    }
                }
                Current::Manifest(digest, buf) => {
                    let w = &work[&digest];
                    let children: Vec<Done> = if verified {
                        oci::parse(&w.media_type, &buf)
                            .map(|p| {
                                p.manifests
                                    .iter()
                                    .chain(&p.blobs)
                                    .filter_map(|d| done.get(&d.digest).cloned())
                                    .collect()
                            })
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let (finished, waiter) = done_pair();
                    done.insert(digest, waiter);
                    let task = push_manifest(
                        ctx.clone(),
                        digest,
                        w.clone(),
                        Bytes::from(buf),
                        verified,
                        children,
                        finished,
                    );
                    tasks.spawn(task);
                }
                Current::None => {}
            },
        }
    }
    while !tasks.is_empty() {
        join_one(&mut tasks).await?;
    }
    Ok(())
}

async fn join_one(tasks: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    match tasks.join_next().await {
        Some(joined) => joined.context("an upload task panicked")?,
        None => Ok(()),
    }
}

/// Pushes a verified manifest by digest into every repository that lacks it,
/// once its children are there.
async fn push_manifest(
    ctx: Ctx,
    digest: Digest,
    w: Work,
    bytes: Bytes,
    verified: bool,
    children: Vec<Done>,
    finished: oneshot::Sender<bool>,
) -> anyhow::Result<()> {
    let children_ok = futures_util::future::join_all(children)
        .await
        .into_iter()
        .all(|ok| ok);
    if !verified || !children_ok {
        let _ = finished.send(false);
        return Ok(());
    }
    for repo in &w.missing {
        let pushed = ctx
            .registry
            .put_manifest(repo, &digest.to_string(), &w.media_type, bytes.clone())
            .await;
        match pushed {
            Ok(d) if d == digest => lock(&ctx.stats).manifests_pushed += 1,
            Ok(d) => bail!("{repo} stored manifest {digest} as {d}"),
            Err(e)
                if e.code().is_some_and(|c| {
                    matches!(
                        c,
                        ErrorCode::ManifestBlobUnknown
                            | ErrorCode::BlobUnknown
                            | ErrorCode::ManifestUnknown
                    )
                }) =>
            {
                // A child never arrived: a bad bundle explains it, else it is an error (after the read).
                ctx.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((digest, format!("{repo}@{digest}: {e}")));
                let _ = finished.send(false);
                return Ok(());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("pushing manifest {digest} to {repo}"));
            }
        }
    }
    let _ = finished.send(true);
    Ok(())
}

/// One blob into every repository that lacks it: mounted where the target
/// has it already, else uploaded once as it streams and mounted into the rest.
/// Committed only when the reader says it verified.
async fn upload_blob(
    ctx: Ctx,
    digest: Digest,
    w: Work,
    rx: mpsc::Receiver<Piece>,
    finished: oneshot::Sender<bool>,
) -> anyhow::Result<()> {
    let ok = place_blob(&ctx, digest, &w, rx).await?;
    let _ = finished.send(ok);
    Ok(())
}

async fn place_blob(
    ctx: &Ctx,
    digest: Digest,
    w: &Work,
    mut rx: mpsc::Receiver<Piece>,
) -> anyhow::Result<bool> {
    let registry = &ctx.registry;
    let stats = &ctx.stats;
    let mut rest: Vec<String> = Vec::new();
    let mut upload: Option<(String, Upload)> = None;
    for repo in &w.missing {
        let outcome = match (&w.holder, &upload) {
            (Some(from), _) => Some(mount(registry, repo, &digest, from).await?),
            (None, None) => None,
            (None, Some(_)) => {
                rest.push(repo.clone());
                continue;
            }
        };
        match outcome {
            Some(MountOutcome::Mounted) => lock(stats).blobs_mounted += 1,
            Some(MountOutcome::Upload(u)) if upload.is_none() => upload = Some((repo.clone(), u)),
            Some(MountOutcome::Upload(u)) => {
                u.cancel().await;
                rest.push(repo.clone());
            }
            None => {
                let u = registry
                    .start_upload(repo)
                    .await
                    .with_context(|| format!("starting the upload of {digest} to {repo}"))?;
                upload = Some((repo.clone(), u));
            }
        }
    }
    let verified = match upload.as_mut() {
        // A large blob streams through: no chunk is held in memory.
        Some((repo, u)) if w.size > CHUNK as u64 => stream_into(u, w.size, &mut rx)
            .await
            .with_context(|| format!("uploading {digest} to {repo}"))?,
        _ => loop {
            match rx.recv().await {
                Some(Piece::Data(bytes)) => {
                    if let Some((repo, u)) = upload.as_mut() {
                        u.write(&bytes)
                            .await
                            .with_context(|| format!("uploading {digest} to {repo}"))?;
                    }
                }
                Some(Piece::End(verified)) => break verified,
                None => bail!("the reader stopped in the middle of {digest}"),
            }
        },
    };
    let Some((repo, u)) = upload else {
        return Ok(true);
    };
    if !verified {
        // Never commit what did not verify; the report says what was wrong.
        u.cancel().await;
        return Ok(false);
    }
    let size = u.len();
    u.finish(&digest)
        .await
        .with_context(|| format!("committing {digest} to {repo}"))?;
    {
        let mut s = lock(stats);
        s.blobs_uploaded += 1;
        s.bytes_uploaded += size;
    }
    for other in rest {
        match mount(registry, &other, &digest, &repo).await? {
            MountOutcome::Mounted => lock(stats).blobs_mounted += 1,
            MountOutcome::Upload(u) => {
                // This registry does not mount: copy it over from where it just arrived.
                copy_within(registry, &repo, &other, &digest, size, u).await?;
                let mut s = lock(stats);
                s.blobs_uploaded += 1;
                s.bytes_uploaded += size;
            }
        }
    }
    Ok(true)
}

/// Streams a blob of `size` bytes from `rx` into `u` as `PATCH`es of at most
/// [`STREAM_CHUNK`] bytes; then waits for the reader's verdict. An entry that
/// ends early (it did not verify) aborts the request under way: `Ok(false)`.
async fn stream_into(
    u: &mut Upload,
    size: u64,
    rx: &mut mpsc::Receiver<Piece>,
) -> anyhow::Result<bool> {
    let mut carry: Option<Bytes> = None;
    let mut sent = 0;
    while sent < size {
        let n = (size - sent).min(STREAM_CHUNK);
        let (tx, body_rx) = mpsc::channel(BLOB_QUEUE);
        let body = stream::unfold(
            body_rx,
            |mut r| async move { r.recv().await.map(|x| (x, r)) },
        );
        let (patched, fed) = tokio::join!(u.write_stream(n, body), feed(tx, n, rx, &mut carry));
        if fed?.is_some() {
            // Ended before its size: it did not verify; the request was aborted.
            return Ok(false);
        }
        patched?;
        sent += n;
    }
    let mut verified = carry.is_none();
    loop {
        match rx.recv().await {
            Some(Piece::Data(_)) => verified = false,
            Some(Piece::End(v)) => return Ok(verified && v),
            None => bail!("the reader stopped before the end of the entry"),
        }
    }
}

/// Feeds the next `n` bytes of `rx` (after `carry`, whose excess it keeps) to
/// a request body. `Some(verdict)` when the entry ended first.
async fn feed(
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    n: u64,
    rx: &mut mpsc::Receiver<Piece>,
    carry: &mut Option<Bytes>,
) -> anyhow::Result<Option<bool>> {
    let mut left = n;
    while left > 0 {
        let mut piece = match carry.take() {
            Some(piece) => piece,
            None => match rx.recv().await {
                Some(Piece::Data(piece)) => piece,
                Some(Piece::End(verified)) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("entry ended early")))
                        .await;
                    return Ok(Some(verified));
                }
                None => bail!("the reader stopped in the middle of the entry"),
            },
        };
        if piece.len() as u64 > left {
            *carry = Some(piece.split_off(left as usize));
        }
        left -= piece.len() as u64;
        if tx.send(Ok(piece)).await.is_err() {
            // The request ended; what went wrong comes from its answer.
            return Ok(None);
        }
    }
    Ok(None)
}

async fn mount(
    registry: &Registry,
    repo: &str,
    digest: &Digest,
    from: &str,
) -> anyhow::Result<MountOutcome> {
    registry
        .mount_blob(repo, digest, from)
        .await
        .with_context(|| format!("mounting {digest} into {repo} from {from}"))
}

/// Uploads blob `digest` of `from` into the session `u` of `to`, reading it back from the target.
async fn copy_within(
    registry: &Registry,
    from: &str,
    to: &str,
    digest: &Digest,
    size: u64,
    mut u: Upload,
) -> anyhow::Result<()> {
    let mut body = registry.blob(from, digest, size).await?;
    while let Some(chunk) = body.next().await {
        u.write(&chunk?).await?;
    }
    u.finish(digest)
        .await
        .with_context(|| format!("copying {digest} from {from} to {to}"))
}

/// Sets every image's tag, or leaves it as `existing` says. `before` is what
/// the survey found; a tag it did not find at the image is looked up again.
async fn set_tags(
    registry: &Registry,
    mapped: &[Mapped],
    before: &[Option<Digest>],
    existing: ExistingTags,
) -> anyhow::Result<Vec<TagOutcome>> {
    stream::iter(mapped.iter().zip(before).map(|(img, before)| async move {
        let Some(tag) = &img.tag else {
            return Ok(TagOutcome::ByDigest);
        };
        if *before == Some(img.digest) {
            return Ok(TagOutcome::Unchanged);
        }
        let what = format!("{}:{tag}", img.repository);
        let now = registry
            .manifest_digest(&img.repository, tag)
            .await
            .with_context(|| format!("looking up {what}"))?;
        let outcome = match now {
            Some(d) if d == img.digest => return Ok(TagOutcome::Unchanged),
            Some(_) if existing == ExistingTags::Skip => return Ok(TagOutcome::SkippedExisting),
            Some(_) => TagOutcome::Updated,
            None => TagOutcome::Created,
        };
        // The bytes come back from the target by the signed digest, checked as they arrive.
        let top = registry
            .manifest(&img.repository, &img.digest.to_string())
            .await
            .with_context(|| format!("reading {}@{}", img.repository, img.digest))?;
        registry
            .put_manifest(&img.repository, tag, &top.media_type, top.bytes)
            .await
            .with_context(|| format!("tagging {what}"))?;
        anyhow::Ok(outcome)
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await
}

/// The mirror configuration files a cluster needs: `mapping.txt` (for `oc
/// image mirror`), an OpenShift `ImageDigestMirrorSet` and a
/// `registries.conf` snippet, for the images that came from a registry (an
/// OCI layout source has no pull location to redirect). Empty when none did.
pub fn mirror_config(images: &[ImageResult], bundle_id: &str) -> Vec<(&'static str, String)> {
    let mut mapping = String::new();
    let mut repos: BTreeMap<String, String> = BTreeMap::new();
    for r in images
        .iter()
        .filter(|r| !r.image.source.starts_with("oci:"))
    {
        let (source_repo, _) = split_reference(&r.image.source);
        mapping.push_str(&format!("{source_repo}@{}={}\n", r.image.digest, r.target));
        let host = r.target.split_once('/').map_or("", |(h, _)| h);
        repos.insert(
            source_repo.to_owned(),
            format!("{host}/{}", r.image.repository),
        );
    }
    if repos.is_empty() {
        return Vec::new();
    }
    let mut files = vec![("mapping.txt", mapping)];
    let short = &bundle_id[..bundle_id.len().min(12)];
    let mut idms = format!(
        "# Generated by bundle from bundle {bundle_id}.\n\
         apiVersion: config.openshift.io/v1\n\
         kind: ImageDigestMirrorSet\n\
         metadata:\n  name: bundle-{short}\n\
         spec:\n  imageDigestMirrors:\n"
    );
    let mut conf = format!(
        "# Generated by bundle from bundle {bundle_id}.\n\
         # Add to /etc/containers/registries.conf (or a file in registries.conf.d/).\n"
    );
    for (source, target) in &repos {
        idms.push_str(&format!(
            "  - source: {source}\n    mirrors:\n    - {target}\n"
        ));
        conf.push_str(&format!(
            "\n[[registry]]\nprefix = \"{source}\"\nlocation = \"{source}\"\nmirror-by-digest-only = true\n\n\
             [[registry.mirror]]\nlocation = \"{target}\"\n"
        ));
    }
    files.push(("imagedigestmirrorset.yaml", idms));
    files.push(("registries.conf", conf));
    files
}

/// Writes [`mirror_config`] into `dir` (created if needed); returns the paths written.
pub fn write_mirror_config(
    dir: &Path,
    images: &[ImageResult],
    bundle_id: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in mirror_config(images, bundle_id) {
        crate::files::write_atomic(dir, name, text.as_bytes())?;
        written.push(dir.join(name));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("reg.local:5000/mirror/team/").expect("ok");
        assert_eq!(d.registry, "reg.local:5000");
        assert_eq!(d.prefix, "mirror/team");
        let d = Destination::parse("http://127.0.0.1:5000").expect("ok");
        assert_eq!(
            (d.registry.as_str(), d.host()),
            ("http://127.0.0.1:5000", "127.0.0.1:5000")
        );
        assert_eq!(d.prefix, "");
        assert!(Destination::parse("/x").is_err());
        assert!(Destination::parse("reg/Upper").is_err());
    }

    #[test]
    fn repository_mapping() {
        let nested = RepoLayout::Nested;
        assert_eq!(
            nested.map("mirror", "openshift/php"),
            "mirror/openshift/php"
        );
        assert_eq!(nested.map("", "openshift/php"), "openshift/php");
        assert_eq!(nested.map("m", ""), "m");
        let two = RepoLayout::MaxNested(2);
        assert_eq!(two.map("mirror", "openshift/php"), "mirror/openshift-php");
        assert_eq!(two.map("mirror", "php"), "mirror/php");
        assert_eq!(two.map("", "a/b/c"), "a/b-c");
        assert_eq!(RepoLayout::MaxNested(1).map("m", "a/b"), "m-a-b");
        assert_eq!(RepoLayout::MaxNested(0).map("m", "a/b"), "m-a-b");
    }

    #[test]
    fn mirror_configuration() {
        let image = |source: &str, repository: &str, tag: Option<&str>| {
            let digest = Digest::of(source.as_bytes());
            let mapped = Mapped {
                reference: String::new(),
                source: source.to_owned(),
                repository: repository.to_owned(),
                tag: tag.map(str::to_owned),
                digest,
                media_type: oci::OCI_MANIFEST.to_owned(),
                needs: vec![digest],
            };
            ImageResult {
                target: target_name("reg.internal:5000", &mapped),
                image: mapped,
                tag: TagOutcome::Created,
            }
        };
        let images = [
            image(
                "quay.io/openshift/php:5.5",
                "mirror/openshift/php",
                Some("5.5"),
            ),
            image(
                "quay.io/openshift/php:5.6",
                "mirror/openshift/php",
                Some("5.6"),
            ),
            image("oci:/media/x:tools/helm:3", "mirror/tools/helm", Some("3")),
        ];
        let files = mirror_config(&images, "0123456789abcdef0123");
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "mapping.txt",
                "imagedigestmirrorset.yaml",
                "registries.conf"
            ]
        );
        let d = images[0].image.digest;
        assert!(files[0].1.starts_with(&format!(
            "quay.io/openshift/php@{d}=reg.internal:5000/mirror/openshift/php:5.5\n"
        )));
        assert_eq!(
            files[0].1.lines().count(),
            2,
            "layout sources have no pull location"
        );
        assert!(files[1].1.contains(
            "  name: bundle-0123456789ab\n\
             spec:\n  imageDigestMirrors:\n  - source: quay.io/openshift/php\n    mirrors:\n    - reg.internal:5000/mirror/openshift/php\n"
        ));
        assert_eq!(files[1].1.matches("- source:").count(), 1);
        assert!(files[2].1.contains(
            "prefix = \"quay.io/openshift/php\"\nlocation = \"quay.io/openshift/php\"\nmirror-by-digest-only = true\n\n\
             [[registry.mirror]]\nlocation = \"reg.internal:5000/mirror/openshift/php\"\n"
        ));
        assert!(mirror_config(&images[2..], "x").is_empty());
    }

    #[test]
    fn references() {
        assert_eq!(
            split_reference("openshift/php:5.5"),
            ("openshift/php", Some("5.5"))
        );
        assert_eq!(
            split_reference("host:5000/a/b:v1"),
            ("host:5000/a/b", Some("v1"))
        );
        assert_eq!(split_reference("host:5000/a/b"), ("host:5000/a/b", None));
        assert_eq!(split_reference("a/b@sha256:0123"), ("a/b", None));
        assert_eq!(split_reference("latest"), ("latest", None));
    }
}
