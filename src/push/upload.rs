//! The uploader: entries the target lacks, from the reader to the registry.
//!
//! The reader's thread hands pieces of each needed entry to [`PushSink`];
//! [`run_uploader`] turns every blob and manifest into a task (a few at once).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{StreamExt, stream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::{PushStats, Work};
use crate::archive::reader::Sink;
use crate::digest::Digest;
use crate::manifest::{BundleManifest, Entry};
use crate::oci;
use crate::registry::{ErrorCode, MountOutcome, Registry, Upload};
use crate::verify::{self, VerifyReport};

/// Size of the pieces handed from the reader to the uploader.
const PIECE: usize = 1 << 20;
/// Pieces queued between the reader and the uploader.
const QUEUE: usize = 4;
/// Pieces queued for one blob's task.
const BLOB_QUEUE: usize = 2;
/// Blobs up to this size are held and sent whole with the closing `PUT` (one
/// request less); larger ones stream. With `--jobs` tasks (6 by default) each
/// holding at most this and a few pieces, memory stays far under 100 MiB.
pub(super) const CHUNK: usize = 4 << 20;
/// Most bytes per streamed `PATCH` of a large blob (nothing is buffered; the
/// limit keeps each request within what proxies in front of registries allow).
const STREAM_CHUNK: u64 = 64 << 20;
/// Most bytes of pushed manifests kept for the tags; past it a tag's
/// manifest is read back from the target (so no bundle makes push hold
/// every manifest it pushed).
const MAX_KEPT_MANIFESTS: usize = 64 << 20;

/// One read of the volumes with the uploader attached.
pub(super) struct Reading<'a> {
    pub manifest: &'a BundleManifest,
    pub dirs: &'a [PathBuf],
    pub registry: &'a Registry,
    /// What the target lacks.
    pub work: &'a HashMap<Digest, Work>,
    pub rt: &'a Handle,
    /// Blob and manifest tasks running at once while the reader goes on.
    pub jobs: usize,
}

impl Reading<'_> {
    /// Reads the volumes through the verify checks (findings go to `report`)
    /// while uploading what the target lacks (counted in `stats`). An upload
    /// failure is the error; what the bundle's checks found is in `report`.
    pub fn run(
        self,
        progress: &mut dyn FnMut(u64, u64),
        report: &mut VerifyReport,
        stats: &mut PushStats,
    ) -> anyhow::Result<Outcome> {
        let ctx = Ctx {
            registry: self.registry.clone(),
            stats: Arc::new(Mutex::new(stats.clone())),
            refused: Arc::new(Mutex::new(Vec::new())),
            pushed: Arc::new(Mutex::new(Kept::default())),
            jobs: self.jobs.max(1),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let uploader = self
            .rt
            .spawn(run_uploader(ctx.clone(), self.work.clone(), rx));
        let mut sink = PushSink {
            work: self.work,
            tx: Some(tx),
            active: false,
            piece: BytesMut::new(),
        };
        let read = verify::read_into(self.manifest, self.dirs, progress, Some(&mut sink), report);
        drop(sink);
        // The uploader's own error explains a broken channel better than the reader's.
        let uploaded = self
            .rt
            .block_on(uploader)
            .context("the upload task panicked")?;
        *stats = lock(&ctx.stats).clone();
        uploaded?;
        read?;
        let refused = std::mem::take(&mut *lock(&ctx.refused));
        let pushed = std::mem::take(&mut lock(&ctx.pushed).manifests);
        Ok(Outcome { refused, pushed })
    }
}

/// What a read with the uploader left behind.
pub(super) struct Outcome {
    /// Manifests the target refused for want of a child, with why.
    pub refused: Vec<(Digest, String)>,
    /// The bytes of manifests pushed, up to [`MAX_KEPT_MANIFESTS`] (tags reuse them).
    pub pushed: HashMap<Digest, Bytes>,
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
    /// Manifests pushed, by digest.
    pushed: Arc<Mutex<Kept>>,
    /// Tasks at once.
    jobs: usize,
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
                while tasks.len() >= ctx.jobs {
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
    let mut kept = lock(&ctx.pushed);
    if kept.bytes + bytes.len() <= MAX_KEPT_MANIFESTS {
        kept.bytes += bytes.len();
        kept.manifests.insert(digest, bytes);
    }
    drop(kept);
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
        // The registry's OCI-Chunk-Min-Length, when larger, wins (only the last chunk may be shorter).
        let n = (size - sent).min(STREAM_CHUNK.max(u.chunk_size() as u64));
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

fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The manifests pushed that the tags may reuse, and their bytes in all.
#[derive(Default)]
struct Kept {
    manifests: HashMap<Digest, Bytes>,
    bytes: usize,
}
