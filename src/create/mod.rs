//! `bundle create`: fetch a plan's content once and write it straight into
//! signed volumes.
//!
//! Network and archive run side by side: up to `--jobs` async tasks download
//! blobs, each into a `spool` (a file of the spool directory, `stash`), while one
//! thread compresses and writes the single ordered stream. Every body is
//! checked against its digest as it arrives; bundle.json and its signature are
//! written last, each atomically, so an interrupted run never leaves a bundle
//! that verifies. The [`journal`] lets a killed run continue where it stopped,
//! re-using the downloads it had finished ahead of the writer.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use self::spool::SpoolReader;
use self::stash::{KeptReader, SpoolDir};

use crate::archive::writer::WriteError;
use crate::digest::Digest;
use crate::files::{self, write_atomic};
use crate::manifest::{
    self, BundleManifest, Compression, Entry, EntryKind, Image, Platforms, Volume,
};
use crate::oci::{self, Descriptor};
use crate::sign::SecretKey;
use crate::source::{BlobSource, FailedImage, Fetcher, Item, Plan, PlannedImage, SourceSpec};

pub mod journal;
mod spool;
mod stash;

/// Registry blobs started ahead of the writer, in MiB: downloads keep going
/// (spooled) behind a large blob the writer waits for, up to this much. Each
/// blob counts at least [`MIN_AHEAD_MIB`], so at most 256 are ahead (each may
/// hold a spill file open).
const AHEAD_MIB: u32 = 1024;
const MIN_AHEAD_MIB: u32 = 4;
/// Entries queued for the writer: registry blobs are bounded by [`AHEAD_MIB`]
/// rather than by count; files of a layout source need no look-ahead (and
/// each queued one holds a file open), so a few per job.
const QUEUED: usize = 4096;
const QUEUED_FILES_PER_JOB: usize = 2;
/// The default of `--jobs`: downloads at once (skopeo's default is 6 too).
pub const DEFAULT_JOBS: usize = 6;

/// What `create` needs besides the plan.
pub struct CreateOptions {
    /// Output directory (created if missing; an interrupted create in it is continued).
    pub out: PathBuf,
    /// Largest volume file in bytes.
    pub volume_size: u64,
    /// zstd level.
    pub level: i32,
    /// How bundle.json names the source.
    pub source: SourceSpec,
    /// Leave out the images a blob cannot be fetched for, instead of failing.
    pub keep_going: bool,
    /// Blob downloads at once.
    pub jobs: usize,
}

/// Progress of a create run.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// The plan is known.
    Planned {
        /// Images to write.
        images: usize,
        /// Content bytes to write.
        bytes: u64,
    },
    /// An interrupted run is continued: these entries are kept (their bytes
    /// count as written).
    Resumed {
        /// Entries kept.
        entries: usize,
        /// Their content bytes.
        bytes: u64,
    },
    /// More content bytes were written.
    Bytes(u64),
    /// An image is complete in the archive.
    ImageDone,
}

/// Receives [`Event`]s (from the writer thread too).
pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

/// What a finished create wrote.
#[derive(Debug, serde::Serialize)]
pub struct CreateReport {
    /// The output directory.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub out: PathBuf,
    /// The bundle id.
    pub bundle_id: String,
    /// Images bundled.
    pub images: usize,
    /// Distinct blobs (manifests included).
    pub blobs: usize,
    /// Content bytes.
    pub content_bytes: u64,
    /// The volumes written.
    pub volumes: Vec<Volume>,
    /// Notes (images skipped and why, damage found when resuming).
    pub warnings: Vec<String>,
    /// What an interrupted run had written and this one kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// Digest of bundle.json.
    pub manifest_digest: Digest,
    /// Images left out with `--keep-going`, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedImage>,
}

/// What a resumed create kept of the interrupted run.
#[derive(Debug, serde::Serialize)]
pub struct Resumed {
    /// Entries kept.
    pub entries: usize,
    /// Their content bytes.
    pub content_bytes: u64,
}

/// Checks the output directory before any network work: `false` for a new
/// bundle (the directory is created when writing starts), `true` when it
/// holds an interrupted create of the same arguments to continue. A finished
/// bundle, bundle files without a journal, or a journal of other arguments
/// are refused.
pub fn check_out_dir(out: &Path, header: &journal::Header) -> anyhow::Result<bool> {
    if !out.exists() {
        return Ok(false);
    }
    if out.join(manifest::FILE_NAME).exists() {
        bail!(
            "{} already holds a finished bundle ({}); choose an empty directory or remove it",
            out.display(),
            manifest::FILE_NAME
        );
    }
    if let Some(found) = journal::read_header(out)? {
        header.check_same(&found, out)?;
        return Ok(true);
    }
    for entry in fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == manifest::SIGNATURE_FILE_NAME
            || name == manifest::SUMS_FILE_NAME
            || name.starts_with(manifest::VOLUME_PREFIX)
        {
            bail!(
                "{} already holds bundle files ({name}) but no journal of an interrupted \
                 create to continue; choose an empty directory or remove them",
                out.display()
            );
        }
    }
    Ok(false)
}

/// The resume journal's header for these options.
pub fn journal_header(opts: &CreateOptions) -> journal::Header {
    journal::Header::new(opts.source.describe(), opts.volume_size, opts.level)
}

/// Writes the plan into volumes, then bundle.json, its signature and SHA256SUMS.
pub async fn write_bundle(
    fetcher: &Fetcher,
    plan: Plan,
    opts: &CreateOptions,
    key: &SecretKey,
    progress: Progress,
) -> anyhow::Result<CreateReport> {
    if let (true, Some(first)) = (plan.images.is_empty(), plan.failed.first()) {
        bail!(
            "no image could be bundled: {} failed; {}: {}",
            plan.failed.len(),
            first.reference,
            first.reason
        );
    }
    if plan.images.is_empty() {
        bail!("no images matched: nothing to bundle");
    }
    let index_json = layout_index(plan.images.iter());
    progress(Event::Planned {
        images: plan.images.len(),
        bytes: plan.total_bytes() + (oci::OCI_LAYOUT_FILE.len() + index_json.len()) as u64,
    });
    let header = journal_header(opts);
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    // Held until the bundle is signed and the journal gone; checked again
    // under it (another run may have finished or begun since the first check).
    let _lock = files::lock_dir(&opts.out, "bundle create")?;
    let mut start = if check_out_dir(&opts.out, &header)? {
        let recovered = journal::recover(&opts.out, &header)?;
        // Left by a run killed while signing: written again below.
        for name in [manifest::SUMS_FILE_NAME, manifest::SIGNATURE_FILE_NAME] {
            files::remove_if_present(&opts.out.join(name))?;
        }
        recovered
    } else {
        journal::start(&opts.out, &header)?
    };
    start.writer.expect_tar_size(
        plan.items
            .iter()
            .map(|i| crate::geometry::entry_len(i.size()))
            .chain([
                crate::geometry::entry_len(oci::OCI_LAYOUT_FILE.len() as u64),
                crate::geometry::entry_len(index_json.len() as u64),
                crate::geometry::TRAILER_LEN,
            ])
            .fold(0, u64::saturating_add),
    );
    let already: HashSet<String> = start.entries.iter().map(Entry::path).collect();
    let resumed = (!start.entries.is_empty()).then(|| Resumed {
        entries: start.entries.len(),
        content_bytes: start.entries.iter().map(|e| e.size).sum(),
    });
    if let Some(r) = &resumed {
        progress(Event::Resumed {
            entries: r.entries,
            bytes: r.content_bytes,
        });
    }
    let mut warnings = plan.warnings.clone();
    warnings.extend(start.warnings.iter().cloned());
    let ahead = Ahead {
        jobs: opts.jobs,
        spool: SpoolDir::new(
            &opts.out,
            start.journal.spool_log(),
            std::mem::take(&mut start.spooled),
        ),
    };
    let queued = match fetcher {
        Fetcher::Registry(_) => QUEUED,
        Fetcher::Layout(_) => opts.jobs.max(1) * QUEUED_FILES_PER_JOB,
    };
    let (job_tx, job_rx) = mpsc::channel::<Job>(queued);
    let writer = {
        let progress = progress.clone();
        // With --keep-going, index.json is made again without the images left out.
        let rebuild: Option<RebuildIndex> = opts.keep_going.then(|| {
            let images = plan.images.clone();
            Box::new(move |failed: &HashMap<Digest, String>| {
                layout_index(images.iter().filter(|i| !needs_any(i, failed)))
            }) as RebuildIndex
        });
        let spool = ahead.spool.clone();
        std::thread::spawn(move || write_entries(start, job_rx, rebuild, &spool, progress))
    };
    let sent = send_jobs(
        fetcher, &plan, index_json, &ahead, &already, &progress, &job_tx,
    )
    .await;
    drop(job_tx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the volume writer thread panicked"))?;
    // A writer error explains a failed send better than the send itself.
    let (entries, volumes, tar_size, config_platforms, failed_blobs) = written.map_err(|e| {
        let needed_by = e
            .downcast_ref::<EntryFailed>()
            .filter(|failed| !matches!(failed.source, WriteError::NoSpace { .. }))
            .map(|failed| {
                plan.images
                    .iter()
                    .filter(|i| i.blobs.contains(&failed.digest))
                    .map(|i| i.reference.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        match needed_by {
            Some(images) if !images.is_empty() => {
                e.context(format!("the bundle cannot hold {images}"))
            }
            _ => e,
        }
    })?;
    sent?;
    stash::remove(&opts.out)?;
    crash_point("before-sign");
    let mut failed: Vec<FailedImage> = plan.failed.clone();
    let kept: Vec<&PlannedImage> = plan
        .images
        .iter()
        .filter(|i| {
            let why = i.blobs.iter().find_map(|d| failed_blobs.get(d));
            if let Some(why) = why {
                failed.push(FailedImage {
                    reference: i.reference.clone(),
                    reason: why.clone(),
                });
            }
            why.is_none()
        })
        .collect();
    if kept.is_empty() {
        bail!("no image could be bundled: {} failed", failed.len());
    }
    // Kept from an interrupted run of a source that changed since.
    let needed: HashSet<&Digest> = kept.iter().flat_map(|i| i.blobs.iter()).collect();
    let unused: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Blob && !needed.contains(&e.digest))
        .collect();
    if !unused.is_empty() {
        warnings.push(format!(
            "blobs written by the interrupted run that no image needs any more (the \
             source changed since) stay in the volumes: {}, {} bytes",
            unused.len(),
            unused.iter().map(|e| e.size).sum::<u64>()
        ));
    }

    let mut id = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut id);
    let m = BundleManifest {
        format_version: manifest::FORMAT_VERSION,
        bundle_id: hex::encode(id),
        created: now_rfc3339(),
        tool: concat!("bundle ", env!("CARGO_PKG_VERSION")).into(),
        source: opts.source.describe(),
        compression: Compression {
            algorithm: "zstd".into(),
            level: opts.level,
        },
        volume_size: opts.volume_size,
        tar_size,
        volumes,
        entries,
        images: kept
            .iter()
            .map(|i| {
                let platforms = match (&i.config, i.platforms.is_empty()) {
                    (Some(config), true) => Platforms::from_strings(config_platforms.get(config)),
                    _ => Platforms::from_strings(&i.platforms),
                };
                anyhow::Ok(Image {
                    reference: i.reference.clone(),
                    source: i.source.clone(),
                    digest: i.top.digest,
                    media_type: i.top.media_type.clone(),
                    size: i.top.size,
                    platforms: platforms.map_err(|e| {
                        anyhow::anyhow!("image {}: the source gives {e}", i.reference)
                    })?,
                    platform_filtered: i.platform_filtered,
                    blobs: i.blobs.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        base_bundle: None,
    };
    m.check()
        .context("checking the bundle.json about to be written")?;
    let bytes = m.to_canonical_bytes();
    let comment = format!(
        "timestamp:{}\tfile:{}\tbundle:{}",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        manifest::FILE_NAME,
        m.bundle_id
    );
    let signature = key.sign(&bytes, &comment)?;
    write_atomic(
        &opts.out,
        manifest::SUMS_FILE_NAME,
        manifest::sha256sums(&m.volumes).as_bytes(),
    )?;
    write_atomic(
        &opts.out,
        manifest::SIGNATURE_FILE_NAME,
        signature.to_file_text().as_bytes(),
    )?;
    crash_point("before-manifest");
    write_atomic(&opts.out, manifest::FILE_NAME, &bytes)?;
    journal::remove(&opts.out)?;
    Ok(CreateReport {
        out: opts.out.clone(),
        bundle_id: m.bundle_id.clone(),
        images: m.images.len(),
        blobs: m.entries.len() - 2,
        content_bytes: m.content_size(),
        volumes: m.volumes,
        warnings,
        resumed,
        manifest_digest: Digest::of(&bytes),
        failed,
    })
}

/// The layout's index.json: one entry per image, sorted, with skopeo's ref name.
fn layout_index<'a>(images: impl Iterator<Item = &'a PlannedImage>) -> Bytes {
    Bytes::from(oci::layout_index(images.map(|i| oci::IndexEntry {
        reference: &i.reference,
        source: &i.source,
        media_type: &i.top.media_type,
        digest: i.top.digest,
        size: i.top.size,
    })))
}

/// Whether `image` needs any of the `failed` blobs.
fn needs_any(image: &PlannedImage, failed: &HashMap<Digest, String>) -> bool {
    image.blobs.iter().any(|d| failed.contains_key(d))
}

/// Makes index.json again without the images that need a failed blob.
type RebuildIndex = Box<dyn FnOnce(&HashMap<Digest, String>) -> Bytes + Send>;

struct Job {
    kind: EntryKind,
    digest: Digest,
    size: u64,
    media_type: Option<String>,
    data: JobData,
    images_done: usize,
    /// Opens the content again (registry blobs): a blob whose body broke off
    /// for good or did not hash to its digest is fetched once more.
    refetch: Option<Refetch>,
    /// Its share of the look-ahead ([`AHEAD_MIB`]), given back once written.
    _ahead: Option<OwnedSemaphorePermit>,
}

/// Opens a blob's content again, from the writer's thread.
type Refetch = Box<dyn FnOnce() -> anyhow::Result<JobData> + Send>;

enum JobData {
    Bytes(Bytes),
    Spool(SpoolReader),
    /// Spooled whole by the interrupted run.
    Kept(KeptReader),
    File(crate::source::CheckedReader),
    /// A source that failed before giving any byte.
    Failed(Option<io::Error>),
}

impl Read for JobData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            JobData::Bytes(b) => {
                let n = buf.len().min(b.len());
                b.copy_to_slice(&mut buf[..n]);
                Ok(n)
            }
            JobData::Spool(r) => r.read(buf),
            JobData::Kept(r) => r.read(buf),
            JobData::File(f) => f.read(buf),
            JobData::Failed(e) => Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("the source failed"))),
        }
    }
}

/// How registry blobs are fetched: downloads at once, and where those ahead
/// of the writer go.
struct Ahead {
    jobs: usize,
    spool: Arc<SpoolDir>,
}

async fn send_jobs(
    fetcher: &Fetcher,
    plan: &Plan,
    index_json: Bytes,
    opts: &Ahead,
    already: &HashSet<String>,
    progress: &Progress,
    tx: &mpsc::Sender<Job>,
) -> anyhow::Result<()> {
    let closed = || anyhow::anyhow!("the volume writer stopped");
    let small = |kind, bytes: Bytes, media_type: Option<String>| Job {
        kind,
        digest: Digest::of(&bytes),
        size: bytes.len() as u64,
        media_type,
        data: JobData::Bytes(bytes),
        images_done: 0,
        refetch: None,
        _ahead: None,
    };
    let layout = Bytes::from_static(oci::OCI_LAYOUT_FILE);
    if !already.contains(&EntryKind::OciLayout.path(&Digest::of(&layout))) {
        tx.send(small(EntryKind::OciLayout, layout, None))
            .await
            .map_err(|_| closed())?;
    }
    let mut tops: HashMap<Digest, usize> = HashMap::new();
    for image in &plan.images {
        *tops.entry(image.top.digest).or_default() += 1;
    }
    let downloads = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let memory = spool::Budget::new(spool::MEMORY_AHEAD);
    let ahead = Arc::new(Semaphore::new(AHEAD_MIB as usize));
    for item in &plan.items {
        let images_done = tops.get(&item.digest()).copied().unwrap_or(0);
        if already.contains(&EntryKind::Blob.path(&item.digest())) {
            // Whole in the volumes of the interrupted run: not fetched again.
            for _ in 0..images_done {
                progress(Event::ImageDone);
            }
            continue;
        }
        let job = match item {
            Item::Manifest {
                media_type, bytes, ..
            } => Job {
                images_done,
                ..small(EntryKind::Blob, bytes.clone(), Some(media_type.clone()))
            },
            Item::Blob { repo, descriptor } => {
                let (data, refetch, ahead) = match fetcher {
                    Fetcher::Registry(reg) => {
                        let download = Download {
                            registry: reg.clone(),
                            repo: repo.clone(),
                            descriptor: descriptor.clone(),
                            spool: opts.spool.clone(),
                            memory: memory.clone(),
                            handle: tokio::runtime::Handle::current(),
                        };
                        // Up to AHEAD_MIB ahead of the writer (spooled blobs of
                        // an interrupted run count too), at most --jobs downloads
                        // at once; the writer takes them in order.
                        let mib = descriptor
                            .size
                            .div_ceil(1 << 20)
                            .clamp(u64::from(MIN_AHEAD_MIB), u64::from(AHEAD_MIB))
                            as u32;
                        let share = ahead.clone().acquire_many_owned(mib).await?;
                        let data = match opts.spool.open_kept(&descriptor.digest, descriptor.size) {
                            // Spooled whole by the interrupted run: not fetched again.
                            Some(kept) => JobData::Kept(kept),
                            None => {
                                let permit = downloads.clone().acquire_owned().await?;
                                JobData::Spool(download.start(permit))
                            }
                        };
                        let downloads = downloads.clone();
                        let refetch: Refetch = Box::new(move || {
                            let permit = download
                                .handle
                                .block_on(downloads.acquire_owned())
                                .map_err(anyhow::Error::new)?;
                            Ok(JobData::Spool(download.start(permit)))
                        });
                        (data, Some(refetch), Some(share))
                    }
                    // A blob that cannot even be opened is handed to the writer
                    // as a failing source, so it is named (or, with
                    // --keep-going, left out) like one that breaks off.
                    Fetcher::Layout(_) => match fetcher.open_blob(repo, descriptor).await {
                        Ok(BlobSource::File(reader)) => (JobData::File(reader), None, None),
                        Ok(BlobSource::Stream(_)) => unreachable!("a layout gives files"),
                        Err(e) => (failing(e), None, None),
                    },
                };
                Job {
                    kind: EntryKind::Blob,
                    digest: descriptor.digest,
                    size: descriptor.size,
                    media_type: Some(descriptor.media_type.clone()),
                    data,
                    images_done,
                    refetch,
                    _ahead: ahead,
                }
            }
        };
        tx.send(job).await.map_err(|_| closed())?;
    }
    tx.send(small(
        EntryKind::Index,
        index_json,
        Some(oci::OCI_INDEX.into()),
    ))
    .await
    .map_err(|_| closed())?;
    Ok(())
}

/// One registry blob to download into a spool (again, for a second fetch).
struct Download {
    registry: crate::registry::Registry,
    repo: String,
    descriptor: Descriptor,
    spool: Arc<SpoolDir>,
    memory: Arc<spool::Budget>,
    handle: tokio::runtime::Handle,
}

impl Download {
    /// Starts the download on the runtime; `permit` is held until it ends.
    fn start(&self, permit: OwnedSemaphorePermit) -> SpoolReader {
        let (mut to_writer, reader) = spool::spool(
            &self.spool,
            self.descriptor.digest,
            self.descriptor.size,
            &self.memory,
        );
        let (reg, repo, d) = (
            self.registry.clone(),
            self.repo.clone(),
            self.descriptor.clone(),
        );
        self.handle.spawn(async move {
            let _permit = permit;
            let mut stream = match reg.blob(&repo, &d.digest, d.size).await {
                Ok(stream) => stream,
                Err(e) => {
                    let e = anyhow::Error::new(e)
                        .context(format!("fetching blob {} of {repo}", d.digest));
                    return to_writer.end(Err(io::Error::other(format!("{e:#}"))));
                }
            };
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => {
                        if !to_writer.push(chunk).await {
                            return;
                        }
                    }
                    Err(e) => return to_writer.end(Err(io::Error::other(e))),
                }
            }
            to_writer.end(Ok(()));
        });
        reader
    }
}

/// Content whose first read fails with `e` (a blob that could not be opened).
fn failing(e: anyhow::Error) -> JobData {
    JobData::Failed(Some(io::Error::other(format!("{e:#}"))))
}

/// Entries, volumes, tar size, the platform of each image config seen, and
/// the blobs left out (with `--keep-going`) with why.
type Written = (
    Vec<Entry>,
    Vec<Volume>,
    u64,
    HashMap<Digest, String>,
    HashMap<Digest, String>,
);

/// Image configs larger than this are not read for their platform.
const MAX_CONFIG_READ: u64 = 1 << 20;

/// The writer thread: entries in the order they arrive.
fn write_entries(
    start: journal::Start,
    mut jobs: mpsc::Receiver<Job>,
    mut rebuild: Option<RebuildIndex>,
    spool: &SpoolDir,
    progress: Progress,
) -> anyhow::Result<Written> {
    let journal::Start {
        mut writer,
        mut journal,
        mut entries,
        mut platforms,
        ..
    } = start;
    let mut failed: HashMap<Digest, String> = HashMap::new();
    while let Some(mut job) = jobs.blocking_recv() {
        if job.kind == EntryKind::Index && !failed.is_empty() {
            let rebuild = rebuild.take().context("index.json made twice")?;
            let index = rebuild(&failed);
            job.digest = Digest::of(&index);
            job.size = index.len() as u64;
            job.data = JobData::Bytes(index);
        }
        let path = job.kind.path(&job.digest);
        let is_config =
            job.media_type.as_deref().is_some_and(oci::is_config) && job.size <= MAX_CONFIG_READ;
        let mut data = std::mem::replace(&mut job.data, JobData::Bytes(Bytes::new()));
        let (placement, copy) = loop {
            let mark = writer.mark();
            let mut counted = Counted {
                inner: &mut data,
                progress: &progress,
                copy: is_config.then(Vec::new),
            };
            match writer.add_entry(&path, job.size, &mut counted) {
                Ok(placement) => break (Some(placement), counted.copy),
                Err(e @ (WriteError::Source { .. } | WriteError::Short { .. }))
                    if job.refetch.is_some() =>
                {
                    // Once: a body that broke off for good, or did not hash to its digest.
                    tracing::warn!(digest = %job.digest, error = %e, "fetching the blob again");
                    writer.rewind(mark)?;
                    let refetch = job.refetch.take().context("refetch taken")?;
                    data = match refetch() {
                        Ok(data) => data,
                        // Handed on as a failing source: left out or named below.
                        Err(e) => failing(e),
                    };
                }
                Err(source @ (WriteError::Source { .. } | WriteError::Short { .. }))
                    if rebuild.is_some() =>
                {
                    // --keep-going: leave it (and the images needing it) out.
                    writer.rewind(mark)?;
                    let why = format!("{:#}", anyhow::Error::new(source));
                    tracing::warn!(digest = %job.digest, "left out: {why}");
                    failed.insert(job.digest, format!("blob {}: {why}", job.digest));
                    break (None, None);
                }
                Err(source) => {
                    return Err(EntryFailed {
                        digest: job.digest,
                        source,
                    }
                    .into());
                }
            }
        };
        let Some(placement) = placement else {
            continue;
        };
        let platform = copy.as_deref().and_then(oci::config_platform);
        if let Some(p) = &platform {
            platforms.insert(job.digest, p.to_string());
        }
        let entry = Entry {
            kind: job.kind,
            digest: job.digest,
            size: job.size,
            media_type: job.media_type,
            volume: placement.volume,
            frame_offset: placement.frame_offset,
            tar_offset: placement.tar_offset,
        };
        journal.record(
            &mut writer,
            &entry,
            platform.map(|p| p.to_string()).as_deref(),
        )?;
        if entry.kind == EntryKind::Blob {
            // In a volume and journaled: its spooled copy is not needed again.
            spool.consumed(&entry.digest)?;
        }
        entries.push(entry);
        for _ in 0..job.images_done {
            progress(Event::ImageDone);
        }
    }
    let (volumes, tar_size) = writer.finish()?;
    Ok((entries, volumes, tar_size, platforms, failed))
}

/// Writing one entry failed.
#[derive(Debug, thiserror::Error)]
#[error("writing {digest}")]
struct EntryFailed {
    digest: Digest,
    #[source]
    source: crate::archive::writer::WriteError,
}

/// Reports the bytes read as progress, and keeps a copy when asked (small configs).
struct Counted<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    progress: &'a Progress,
    copy: Option<Vec<u8>>,
}

impl<R: Read + ?Sized> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Event::Bytes(n as u64));
        if let Some(copy) = self.copy.as_mut() {
            copy.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// In debug builds (the ones the tests run), `BUNDLE_CRASH_AT=NAME` kills the
/// process with SIGKILL here: the tests' way to stop a run at a point they
/// cannot reach from outside. Release builds have no such switch.
fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BUNDLE_CRASH_AT").is_some_and(|v| v == name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}
