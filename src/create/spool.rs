//! [`Spool`]: one blob's body between its download and the volume writer.
//!
//! The writer takes entries one at a time, in archive order, while up to
//! `--jobs` downloads run at once. A download ahead of the writer writes its
//! body to a file of the spool directory ([`SpoolDir`]), under a partial name
//! until the body came whole and matched its digest and size, then under its
//! digest (journaled): a killed run loses only the downloads in flight. Its
//! first [`MEMORY_PER_BLOB`] bytes are also kept in memory, as long as all of
//! them together stay within one shared [`Budget`], so the writer reads them
//! without going back to the disk: memory stays bounded whatever the blob
//! sizes and the number of jobs, and a slow link's connections all keep
//! moving. The blob the writer is reading, when it had not started ahead, is
//! not written to a file while it fits in its own [`MEMORY_PER_BLOB`]: its
//! download waits for the writer instead (when the source is faster than the
//! disk).
//!
//! The bytes come out in the order they went in, then the download's end or
//! its error (a body that broke off, a digest that did not match), so the
//! writer sees exactly what a direct stream would have given it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::sync::Notify;

use super::stash::SpoolDir;
use crate::digest::Digest;

/// Bytes of a blob kept in memory (besides its file, ahead of the writer).
pub const MEMORY_PER_BLOB: usize = 4 << 20;
/// Bytes all the downloads ahead of the writer keep in memory together.
pub const MEMORY_AHEAD: usize = 16 << 20;

/// Memory shared by the downloads ahead of the writer.
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit).then_some(used + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The shared state of one spooled body.
struct State {
    /// Bytes not read yet, kept in memory, in order: when not empty, exactly
    /// the bytes from `read` to `pushed`. Each chunk with whether it counts
    /// against the shared budget.
    memory: VecDeque<(Bytes, bool)>,
    memory_len: usize,
    /// The spool file, once the download started ahead of the writer: it
    /// holds every byte of the body from the first (`file_len` so far).
    file: Option<Arc<File>>,
    file_len: u64,
    /// Its partial name, until it is complete (then it is renamed) or fails
    /// (then it is removed).
    partial: Option<PathBuf>,
    /// Bytes pushed by the download, and handed to the reader.
    pushed: u64,
    read: u64,
    /// The download ended: `Ok` at the end of the body, else why it failed.
    end: Option<io::Result<()>>,
    /// The writer is reading this body (it is the head of the line).
    reading: bool,
    /// The writer dropped its reader: the download stops.
    abandoned: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the reader: more bytes, or the end.
    more: Condvar,
    /// Wakes the download: room in memory, or the reader went away.
    room: Notify,
    /// Where the file goes.
    dir: Arc<SpoolDir>,
    /// The blob's digest and size.
    digest: Digest,
    size: u64,
    /// Memory of the downloads ahead of the writer.
    budget: Arc<Budget>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the partial file (ahead of the writer), checking the space first.
    fn create_file(&self, s: &mut State) -> io::Result<Arc<File>> {
        let dir = self.dir.path();
        crate::files::ensure_space(dir, self.size, &format!("spooling blob {}", self.digest))
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        let path = self.dir.partial_path(&self.digest);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| spill_error(&path, e))?;
        let file = Arc::new(file);
        s.file = Some(file.clone());
        s.partial = Some(path);
        Ok(file)
    }
}

/// Creates a spool for blob `digest` of `size` bytes, spooling into `dir`,
/// its memory ahead of the writer counted in `budget`: the download's end
/// and the writer's end.
pub fn spool(
    dir: &Arc<SpoolDir>,
    digest: Digest,
    size: u64,
    budget: &Arc<Budget>,
) -> (SpoolWriter, SpoolReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            memory: VecDeque::new(),
            memory_len: 0,
            file: None,
            file_len: 0,
            partial: None,
            pushed: 0,
            read: 0,
            end: None,
            reading: false,
            abandoned: false,
        }),
        more: Condvar::new(),
        room: Notify::new(),
        dir: dir.clone(),
        digest,
        size,
        budget: budget.clone(),
    });
    (
        SpoolWriter {
            shared: shared.clone(),
            ended: false,
        },
        SpoolReader {
            shared,
            current: Bytes::new(),
        },
    )
}

/// The download's end of a spool.
pub struct SpoolWriter {
    shared: Arc<Shared>,
    ended: bool,
}

impl SpoolWriter {
    /// Adds a chunk; waits while it is the writer's current blob (not
    /// started ahead) and its memory is full. Returns `false` once the reader
    /// is gone (stop downloading) or the file cannot be written.
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        let shared = self.shared.clone();
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Where the chunk goes in the file; `None`: wait for room.
            let write_at: Option<(Arc<File>, u64)> = {
                let mut s = self.shared.lock();
                if s.abandoned {
                    return false;
                }
                let len = chunk.len();
                let fits = s.memory_len == 0 || s.memory_len + len <= MEMORY_PER_BLOB;
                if s.file.is_none() && s.reading {
                    // The head of the line, not started ahead: memory only.
                    if fits {
                        s.memory_len += len;
                        s.pushed += len as u64;
                        s.memory.push_back((chunk, false));
                        drop(s);
                        self.shared.more.notify_one();
                        return true;
                    }
                    None
                } else {
                    let file = match s.file.clone() {
                        Some(file) => file,
                        None => match self.shared.create_file(&mut s) {
                            Ok(file) => file,
                            Err(e) => {
                                drop(s);
                                self.fail(e);
                                return false;
                            }
                        },
                    };
                    // A copy in memory only while it follows on what the
                    // reader has (no gap); the budget is asked last.
                    let follows = s.read + s.memory_len as u64 == s.pushed;
                    if follows && fits && shared.budget.take(len) {
                        s.memory_len += len;
                        s.memory.push_back((chunk.clone(), true));
                    }
                    let at = s.pushed;
                    s.pushed += len as u64;
                    Some((file, at))
                }
            };
            let Some((file, offset)) = write_at else {
                room.await;
                continue;
            };
            // Only this task writes the file, past what the reader may read.
            if let Err(e) = file.write_all_at(&chunk, offset) {
                let path = self.shared.lock().partial.clone().unwrap_or_default();
                self.fail(spill_error(&path, e));
                return false;
            }
            self.shared.lock().file_len += chunk.len() as u64;
            self.shared.more.notify_one();
            return true;
        }
    }

    /// Ends the body: `Ok` when it is complete (and matched its digest), or
    /// why the download failed. A complete body ahead of the writer is then
    /// under its final name in the spool directory, and journaled.
    pub fn end(mut self, result: io::Result<()>) {
        self.finish(result);
    }

    fn fail(&mut self, e: io::Error) {
        self.finish(Err(e));
    }

    fn finish(&mut self, result: io::Result<()>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let result = result.and_then(|()| self.publish());
        let partial = {
            let mut s = self.shared.lock();
            s.end = Some(result);
            s.partial.take()
        };
        // Not published: a partial download is never left behind.
        if let Some(path) = partial {
            let _ = std::fs::remove_file(path);
        }
        self.shared.more.notify_one();
    }

    /// Renames the file of a complete body to its final name and journals it
    /// (a body ahead of the writer that left no file, an empty one, gets one).
    fn publish(&mut self) -> io::Result<()> {
        let (partial, len) = {
            let mut s = self.shared.lock();
            if s.abandoned || (s.file.is_none() && s.reading) {
                return Ok(());
            }
            if s.file.is_none() {
                self.shared.create_file(&mut s)?;
            }
            (s.partial.clone(), s.file_len)
        };
        let Some(partial) = partial else {
            return Ok(());
        };
        if len != self.shared.size {
            return Err(io::Error::other(format!(
                "{} holds {len} bytes of blob {}, not {}",
                partial.display(),
                self.shared.digest,
                self.shared.size
            )));
        }
        self.shared
            .dir
            .publish(&partial, &self.shared.digest, self.shared.size)?;
        self.shared.lock().partial = None;
        Ok(())
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // A download task that went away without a word did not finish.
        self.finish(Err(io::Error::other("the download stopped")));
    }
}

fn spill_error(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("spooling a download in {}: {e}", path.display()),
    )
}

/// The writer's end of a spool.
pub struct SpoolReader {
    shared: Arc<Shared>,
    current: Bytes,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut s = self.shared.lock();
        s.reading = true;
        loop {
            if !self.current.is_empty() {
                drop(s);
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Ok(n);
            }
            if let Some((chunk, counted)) = s.memory.pop_front() {
                s.memory_len -= chunk.len();
                s.read += chunk.len() as u64;
                if counted {
                    self.shared.budget.give_back(chunk.len());
                }
                self.current = chunk;
                self.shared.room.notify_one();
                continue;
            }
            if s.read < s.file_len {
                let file = s.file.clone().expect("bytes in the file");
                let (at, available) = (s.read, s.file_len - s.read);
                drop(s);
                let want = (buf.len() as u64).min(available) as usize;
                let n = file.read_at(&mut buf[..want], at)?;
                if n == 0 {
                    return Err(io::Error::other("the spool file ended early"));
                }
                self.shared.lock().read += n as u64;
                return Ok(n);
            }
            match s.end.take() {
                Some(Ok(())) => {
                    s.end = Some(Ok(()));
                    return Ok(0);
                }
                Some(Err(e)) => {
                    s.end = Some(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
                None => {
                    // Wake the download in case it waits for room we just made.
                    self.shared.room.notify_one();
                    s = self.shared.more.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.abandoned = true;
        for (chunk, counted) in s.memory.drain(..) {
            if counted {
                self.shared.budget.give_back(chunk.len());
            }
        }
        s.file = None;
        drop(s);
        self.shared.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::create::stash::{self, SpoolLog};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// `len` bytes of a repeating pattern.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A spool directory in `out` (and a journal beside it).
    fn spool_dir(out: &Path) -> Arc<SpoolDir> {
        stash::start(out).unwrap();
        SpoolDir::new(out, SpoolLog::for_tests(out), Default::default())
    }

    fn files(dir: &SpoolDir) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn journal(out: &Path) -> String {
        std::fs::read_to_string(out.join(crate::create::journal::FILE_NAME)).unwrap()
    }

    #[test]
    fn a_body_ahead_of_the_writer_lands_under_its_digest_and_comes_back_in_order() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let data = pattern(MEMORY_PER_BLOB * 3 + 12345);
        let digest = Digest::of(&data);
        let (mut w, mut r) = spool(&dir, digest, data.len() as u64, &Budget::new(MEMORY_AHEAD));
        let sent = data.clone();
        // The whole body arrives before the writer reads anything: no waiting.
        rt.block_on(async move {
            for chunk in sent.chunks(100_000) {
                assert!(w.push(Bytes::copy_from_slice(chunk)).await);
            }
            w.end(Ok(()));
        });
        // Whole on disk under its digest, and journaled, before the writer reads it.
        assert_eq!(files(&dir), [digest.hex()]);
        assert_eq!(std::fs::read(dir.final_path(&digest)).unwrap(), data);
        assert!(journal(out.path()).contains(&format!("\"file\":\"{}\"", digest.hex())));
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn small_and_empty_bodies_ahead_land_on_disk_too() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        for data in [b"tiny".to_vec(), Vec::new()] {
            let digest = Digest::of(&data);
            let (mut w, mut r) = spool(&dir, digest, data.len() as u64, &Budget::new(MEMORY_AHEAD));
            let sent = data.clone();
            rt.block_on(async move {
                if !sent.is_empty() {
                    assert!(w.push(Bytes::from(sent)).await);
                }
                w.end(Ok(()));
            });
            assert_eq!(std::fs::read(dir.final_path(&digest)).unwrap(), data);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got, data);
        }
    }

    #[test]
    fn the_blob_being_read_waits_for_the_writer_instead_of_spilling() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let data = pattern(MEMORY_PER_BLOB * 4);
        let digest = Digest::of(&data);
        let (mut w, mut r) = spool(&dir, digest, data.len() as u64, &Budget::new(MEMORY_AHEAD));
        // The writer is on this blob (the head of the line) before its first
        // byte arrives, as when it waits in `read`.
        r.shared.lock().reading = true;
        let sent = data.clone();
        let download = rt.spawn(async move {
            for chunk in sent.chunks(64 * 1024) {
                assert!(w.push(Bytes::copy_from_slice(chunk)).await);
            }
            w.end(Ok(()));
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        rt.block_on(download).unwrap();
        assert_eq!(got, data);
        assert!(
            r.shared.lock().file.is_none(),
            "the head of the line spilled"
        );
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    }

    #[test]
    fn downloads_ahead_share_one_memory_budget() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let budget = Budget::new(MEMORY_PER_BLOB);
        let chunk = Bytes::from(vec![1u8; MEMORY_PER_BLOB / 2]);
        let body = [chunk.clone(), chunk.clone()].concat();
        let (d1, d2) = (Digest::of(&body), Digest::of(&[&body[..], b"2"].concat()));
        let (mut w1, mut r1) = spool(&dir, d1, body.len() as u64, &budget);
        let (mut w2, mut r2) = spool(&dir, d2, body.len() as u64 + 1, &budget);
        rt.block_on(async {
            for _ in 0..2 {
                assert!(w1.push(chunk.clone()).await);
                assert!(w2.push(chunk.clone()).await);
            }
            assert!(w2.push(Bytes::from_static(b"2")).await);
            w1.end(Ok(()));
            w2.end(Ok(()));
        });
        // The budget held one blob's worth: the first chunk of each stayed in
        // memory too; everything is in the files.
        assert_eq!(budget.used.load(Ordering::Acquire), MEMORY_PER_BLOB);
        assert_eq!(r1.shared.lock().memory.len(), 1);
        assert_eq!(files(&dir).len(), 2);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r1.read_to_end(&mut a).unwrap();
        drop(r1);
        r2.read_to_end(&mut b).unwrap();
        assert_eq!(a, body);
        assert_eq!(b, [&body[..], b"2"].concat());
        drop(r2);
        assert_eq!(budget.used.load(Ordering::Acquire), 0, "memory given back");
    }

    #[test]
    fn an_error_comes_after_the_bytes_before_it_and_leaves_no_file() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let (mut w, mut r) = spool(&dir, Digest::of(b"hello!"), 6, &Budget::new(MEMORY_AHEAD));
        rt.block_on(async move {
            assert!(w.push(Bytes::from_static(b"hello")).await);
            w.end(Err(io::Error::other("digest mismatch")));
        });
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        // Asked again, it still fails rather than looking like a clean end.
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn a_short_body_is_not_published() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let (mut w, mut r) = spool(&dir, Digest::of(b"hello!"), 6, &Budget::new(MEMORY_AHEAD));
        rt.block_on(async move {
            assert!(w.push(Bytes::from_static(b"hello")).await);
            w.end(Ok(()));
        });
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
        let e = io::read_to_string(&mut r).unwrap_err();
        assert!(e.to_string().contains("holds 5 bytes"), "{e}");
    }

    #[test]
    fn a_download_dropped_without_an_end_is_a_failure() {
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let (w, mut r) = spool(&dir, Digest::of(b""), 0, &Budget::new(MEMORY_AHEAD));
        drop(w);
        let mut buf = [0u8; 4];
        assert!(r.read(&mut buf).is_err());
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    }

    #[test]
    fn the_download_stops_once_the_reader_is_gone() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        let (mut w, r) = spool(&dir, Digest::of(b"xy"), 2, &Budget::new(MEMORY_AHEAD));
        rt.block_on(async {
            assert!(w.push(Bytes::from_static(b"x")).await);
            drop(r);
            assert!(!w.push(Bytes::from_static(b"y")).await);
        });
        drop(w);
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    }

    #[test]
    fn a_spool_directory_that_cannot_be_written_fails_the_body_naming_it() {
        let rt = runtime();
        let out = tempfile::tempdir().unwrap();
        let dir = spool_dir(out.path());
        std::fs::remove_dir(dir.path()).unwrap();
        let (mut w, mut r) = spool(&dir, Digest::of(b"x"), 1, &Budget::new(MEMORY_AHEAD));
        assert!(!rt.block_on(w.push(Bytes::from_static(b"x"))));
        let e = r.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains(stash::DIR_NAME), "{e}");
    }
}
