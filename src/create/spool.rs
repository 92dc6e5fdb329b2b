//! [`Spool`]: one blob's body between its download and the volume writer.
//!
//! The writer takes entries one at a time, in archive order, while up to
//! `--jobs` downloads run at once. A download ahead of the writer keeps its
//! first [`MEMORY_PER_BLOB`] bytes in memory, as long as all of them together
//! stay within one shared [`Budget`], and spills the rest to an unlinked file
//! in the output directory: memory stays bounded whatever the blob sizes and
//! the number of jobs, and a slow link's connections all keep moving. The blob
//! the writer is reading does not spill while it fits in its own
//! [`MEMORY_PER_BLOB`]: its download waits for the writer instead (when the
//! source is faster than the disk).
//!
//! The bytes come out in the order they went in, then the download's end or
//! its error (a body that broke off, a digest that did not match), so the
//! writer sees exactly what a direct stream would have given it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::sync::Notify;

/// Bytes of a blob kept in memory before the rest spills to disk.
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
    /// The first bytes, in order (everything, unless spilled), each chunk
    /// with whether it counts against the shared budget.
    memory: VecDeque<(Bytes, bool)>,
    memory_len: usize,
    /// The unlinked spill file, once the memory was full.
    file: Option<Arc<File>>,
    /// Bytes written to the spill file, and read back from it.
    file_len: u64,
    file_read: u64,
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
    /// Where the spill file goes.
    dir: PathBuf,
    /// Memory of the downloads ahead of the writer.
    budget: Arc<Budget>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a spool spilling into `dir`, its memory ahead of the writer
/// counted in `budget`: the download's end and the writer's end.
pub fn spool(dir: &Path, budget: &Arc<Budget>) -> (SpoolWriter, SpoolReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            memory: VecDeque::new(),
            memory_len: 0,
            file: None,
            file_len: 0,
            file_read: 0,
            end: None,
            reading: false,
            abandoned: false,
        }),
        more: Condvar::new(),
        room: Notify::new(),
        dir: dir.to_owned(),
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
    /// Adds a chunk; waits while it is the writer's current blob and memory
    /// is full. Returns `false` once the reader is gone (stop downloading).
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        let shared = self.shared.clone();
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Where the chunk goes in the spill file; `None`: wait for room.
            let spill_at: Option<(Arc<File>, u64)> = {
                let mut s = self.shared.lock();
                if s.abandoned {
                    return false;
                }
                // Once spilled, the rest follows into the file (order); the
                // budget is asked last, so only a chunk kept in memory takes from it.
                let fits = s.file.is_none()
                    && (s.memory_len == 0 || s.memory_len + chunk.len() <= MEMORY_PER_BLOB)
                    && (s.reading || shared.budget.take(chunk.len()));
                match (&s.file, fits, s.reading) {
                    (None, true, reading) => {
                        s.memory_len += chunk.len();
                        s.memory.push_back((chunk, !reading));
                        drop(s);
                        self.shared.more.notify_one();
                        return true;
                    }
                    // The writer is on it and keeping up: wait for it.
                    (None, false, true) => None,
                    (Some(file), _, _) => Some((file.clone(), s.file_len)),
                    (None, false, false) => match tempfile::tempfile_in(&self.shared.dir) {
                        Ok(file) => {
                            let file = Arc::new(file);
                            s.file = Some(file.clone());
                            Some((file, 0))
                        }
                        Err(e) => {
                            drop(s);
                            self.fail(spill_error(&self.shared.dir, e));
                            return false;
                        }
                    },
                }
            };
            let Some((file, offset)) = spill_at else {
                room.await;
                continue;
            };
            // Only this task writes the file, past what the reader may read.
            if let Err(e) = file.write_all_at(&chunk, offset) {
                self.fail(spill_error(&self.shared.dir, e));
                return false;
            }
            self.shared.lock().file_len += chunk.len() as u64;
            self.shared.more.notify_one();
            return true;
        }
    }

    /// Ends the body: `Ok` when it is complete, or why the download failed.
    pub fn end(mut self, result: io::Result<()>) {
        self.finish(result);
    }

    fn fail(&mut self, e: io::Error) {
        self.finish(Err(e));
    }

    fn finish(&mut self, result: io::Result<()>) {
        if !self.ended {
            self.ended = true;
            self.shared.lock().end = Some(result);
            self.shared.more.notify_one();
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // A download task that went away without a word did not finish.
        self.finish(Err(io::Error::other("the download stopped")));
    }
}

fn spill_error(dir: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("spooling a download in {}: {e}", dir.display()),
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
                if counted {
                    self.shared.budget.give_back(chunk.len());
                }
                self.current = chunk;
                self.shared.room.notify_one();
                continue;
            }
            if s.file_read < s.file_len {
                let file = s.file.clone().expect("bytes in the file");
                let (at, available) = (s.file_read, s.file_len - s.file_read);
                drop(s);
                let want = (buf.len() as u64).min(available) as usize;
                let n = file.read_at(&mut buf[..want], at)?;
                if n == 0 {
                    return Err(io::Error::other("the spool file ended early"));
                }
                self.shared.lock().file_read += n as u64;
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
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// `len` bytes of a repeating pattern, in chunks of `chunk`.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_body_ahead_of_the_writer_spills_and_comes_back_in_order() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(MEMORY_PER_BLOB * 3 + 12345);
        let (mut w, mut r) = spool(dir.path(), &Budget::new(MEMORY_AHEAD));
        let sent = data.clone();
        // The whole body arrives before the writer reads anything: no waiting.
        rt.block_on(async move {
            for chunk in sent.chunks(100_000) {
                assert!(w.push(Bytes::copy_from_slice(chunk)).await);
            }
            w.end(Ok(()));
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
        // The spill file is unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_blob_being_read_waits_for_the_writer_instead_of_spilling() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(MEMORY_PER_BLOB * 4);
        let (mut w, mut r) = spool(dir.path(), &Budget::new(MEMORY_AHEAD));
        // The writer reads the first byte before the rest arrives: it is on
        // this blob (the head of the line) from then on.
        let mut first = [0u8; 1];
        assert!(rt.block_on(w.push(Bytes::copy_from_slice(&data[..1]))));
        r.read_exact(&mut first).unwrap();
        let sent = data.clone();
        let download = rt.spawn(async move {
            for chunk in sent[1..].chunks(64 * 1024) {
                assert!(w.push(Bytes::copy_from_slice(chunk)).await);
            }
            w.end(Ok(()));
        });
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        rt.block_on(download).unwrap();
        assert_eq!([&first[..], &rest[..]].concat(), data);
        let s = r.shared.lock();
        assert!(s.file.is_none(), "the head of the line spilled");
    }

    #[test]
    fn downloads_ahead_share_one_memory_budget_then_spill() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(MEMORY_PER_BLOB);
        let (mut w1, mut r1) = spool(dir.path(), &budget);
        let (mut w2, mut r2) = spool(dir.path(), &budget);
        let chunk = Bytes::from(vec![1u8; MEMORY_PER_BLOB / 2]);
        rt.block_on(async {
            for _ in 0..2 {
                assert!(w1.push(chunk.clone()).await);
                assert!(w2.push(chunk.clone()).await);
            }
            w1.end(Ok(()));
            w2.end(Ok(()));
        });
        // The budget held one blob's worth: the first chunk of each stayed in
        // memory, the second of each spilled.
        assert!(r1.shared.lock().file.is_some());
        assert!(r2.shared.lock().file.is_some());
        assert_eq!(budget.used.load(Ordering::Acquire), MEMORY_PER_BLOB);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r1.read_to_end(&mut a).unwrap();
        drop(r1);
        r2.read_to_end(&mut b).unwrap();
        assert_eq!(a.len(), MEMORY_PER_BLOB);
        assert_eq!(b.len(), MEMORY_PER_BLOB);
        drop(r2);
        assert_eq!(budget.used.load(Ordering::Acquire), 0, "memory given back");
    }

    #[test]
    fn an_error_comes_after_the_bytes_before_it() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut r) = spool(dir.path(), &Budget::new(MEMORY_AHEAD));
        rt.block_on(async move {
            assert!(w.push(Bytes::from_static(b"hello")).await);
            w.end(Err(io::Error::other("digest mismatch")));
        });
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        // Asked again, it still fails rather than looking like a clean end.
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn a_download_dropped_without_an_end_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mut r) = spool(dir.path(), &Budget::new(MEMORY_AHEAD));
        drop(w);
        let mut buf = [0u8; 4];
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn the_download_stops_once_the_reader_is_gone() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let (mut w, r) = spool(dir.path(), &Budget::new(MEMORY_AHEAD));
        drop(r);
        assert!(!rt.block_on(w.push(Bytes::from_static(b"x"))));
    }

    #[test]
    fn a_spill_directory_that_cannot_be_written_fails_the_body_naming_it() {
        let rt = runtime();
        let missing = Path::new("/nonexistent/bundle-spool");
        let (mut w, r) = spool(missing, &Budget::new(MEMORY_AHEAD));
        let full = Bytes::from(vec![0u8; MEMORY_PER_BLOB]);
        assert!(rt.block_on(w.push(full)));
        assert!(!rt.block_on(w.push(Bytes::from_static(b"x"))));
        let mut r = {
            let mut r = r;
            let mut first = vec![0u8; MEMORY_PER_BLOB];
            r.read_exact(&mut first).unwrap();
            r
        };
        let e = r.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/bundle-spool"), "{e}");
    }
}
