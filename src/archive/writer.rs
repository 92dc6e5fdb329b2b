//! Writes tar entries as zstd frames into size-capped volume files.
//!
//! Each entry (header, data, padding) is compressed as one frame. Before a
//! frame is started, zstd's compress bound decides where it goes: in the room
//! left in the current volume, else at the start of a new one; only an entry
//! larger than a whole volume is cut, one frame per piece. So no volume ever
//! exceeds the limit and each starts a frame at an entry boundary (or inside an
//! entry too big for any volume). Volumes are hashed as they are written.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use zstd::stream::raw::{Encoder, Operation};

use super::tar_header;
use crate::digest::Hasher;
use crate::geometry::{BLOCK, TRAILER_LEN, entry_len, frame_bound, max_input_for};
use crate::manifest::{Entry, EntryKind, Volume, volume_name};

/// The smallest volume size accepted: room for any small entry in one frame.
pub const MIN_VOLUME_SIZE: u64 = 64 * 1024;
/// A piece of a spanning entry is not started in less room than this.
const MIN_PIECE: u64 = 4096;
/// Write buffer: zstd hands out ~128 KiB at a time, which then goes straight
/// to the kernel instead of through another copy; small frames are gathered.
const BUF_SIZE: usize = 128 * 1024;
/// Input buffer for the compressor.
const IN_BUF: usize = 256 * 1024;

/// Where an entry's first frame landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Index of the volume holding the first frame.
    pub volume: u32,
    /// Offset of that frame in the volume file.
    pub frame_offset: u64,
    /// Offset of the entry's header in the uncompressed stream.
    pub tar_offset: u64,
}

/// Why writing volumes failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The volume size cannot hold even a small entry.
    #[error("volume size {0} is below the minimum of {MIN_VOLUME_SIZE} bytes")]
    VolumeTooSmall(u64),
    /// The content needs more volumes than a bundle can number.
    #[error(
        "the content needs more than {max} volumes of {volume_size} bytes, the most a bundle \
         holds; choose a larger volume size (--volume-size)"
    )]
    TooManyVolumes {
        /// The most volumes a bundle holds.
        max: usize,
        /// The volume size in use.
        volume_size: u64,
    },
    /// Reading the entry's content failed (a network or source error).
    #[error("reading the content of {path}")]
    Source {
        /// The entry being written.
        path: String,
        /// What the source said.
        #[source]
        source: io::Error,
    },
    /// The content ended before the declared size.
    #[error("the content of {path} ended after {got} of {expected} bytes")]
    Short {
        /// The entry being written.
        path: String,
        /// Bytes received.
        got: u64,
        /// Bytes declared.
        expected: u64,
    },
    /// The content went on past the declared size.
    #[error("the content of {path} is longer than the declared {expected} bytes")]
    Long {
        /// The entry being written.
        path: String,
        /// Bytes declared.
        expected: u64,
    },
    /// The file system has not enough room for the next volume; nothing of it
    /// was written, so the same command resumes once there is room.
    #[error(
        "not enough space for {}: it needs up to {needed} bytes and the file system has {free} free; \
         make room (or move the bundle to a larger disk) and run the same command again to resume",
        path.display()
    )]
    NoSpace {
        /// The volume that was about to be created.
        path: PathBuf,
        /// Bytes it may need.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// Writing or compressing a volume failed.
    #[error("writing {path}")]
    Io {
        /// The volume file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Where the writer stands after an entry, for the resume journal: the open
/// volume's length and the sha256 of its bytes so far, so a later run can
/// check the file still holds exactly those bytes and carry on from there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Index of the open volume.
    pub volume: u32,
    /// Its length in bytes.
    pub size: u64,
    /// The sha256 of those bytes.
    pub sha256: crate::digest::Digest,
    /// Where the volume starts in the tar stream.
    pub volume_tar_offset: u64,
    /// Position in the tar stream.
    pub tar_pos: u64,
}

/// Where the writer stood before an entry (see [`VolumeWriter::mark`]).
pub struct Mark {
    /// Volumes closed then.
    closed: usize,
    /// The volume open then: its running hash (which knows its length) and tar offset.
    open: Option<(Hasher, u64)>,
    /// Position in the tar stream.
    tar_pos: u64,
}

struct OpenVolume {
    index: usize,
    path: PathBuf,
    file: BufWriter<File>,
    hasher: Hasher,
    tar_offset: u64,
    /// Bytes written since the last background flush started.
    unflushed: u64,
    /// The background `fdatasync` in flight, if any.
    flushing: Option<std::thread::JoinHandle<io::Result<()>>>,
}

/// Start writing dirty pages back every this many bytes, so the disk works
/// while the next bytes are compressed instead of all at the final fsync.
const FLUSH_EVERY: u64 = 64 << 20;

impl OpenVolume {
    fn io_err(&self, source: io::Error) -> WriteError {
        WriteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Waits for the background flush in flight (backpressure when the disk is slower).
    fn wait_flush(&mut self) -> Result<(), WriteError> {
        if let Some(handle) = self.flushing.take() {
            let result = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the flush thread panicked")));
            result.map_err(|e| self.io_err(e))?;
        }
        Ok(())
    }

    /// Hands what was written so far to a thread that fdatasyncs it.
    fn start_flush(&mut self) -> Result<(), WriteError> {
        self.wait_flush()?;
        self.file.flush().map_err(|e| self.io_err(e))?;
        let file = self
            .file
            .get_ref()
            .try_clone()
            .map_err(|e| self.io_err(e))?;
        self.flushing = Some(std::thread::spawn(move || {
            file.sync_data()?;
            drop_cached(&file)
        }));
        self.unflushed = 0;
        Ok(())
    }
}

/// Writes entries into `images.tar.zst.NNNNN` files in a directory.
pub struct VolumeWriter {
    dir: PathBuf,
    volume_size: u64,
    encoder: Encoder<'static>,
    in_buf: Vec<u8>,
    out_buf: Vec<u8>,
    current: Option<OpenVolume>,
    closed: Vec<Volume>,
    tar_pos: u64,
    /// The tar stream's expected total size, if known: before each volume
    /// is opened, the file system must have room for what is left of it (at
    /// most a whole volume).
    expected_tar_size: Option<u64>,
    /// Volumes that may be opened: [`crate::manifest::MAX_VOLUMES`] (lower in tests).
    max_volumes: usize,
}

impl VolumeWriter {
    /// Prepares to write volumes of at most `volume_size` bytes into `dir`.
    pub fn new(dir: &Path, volume_size: u64, level: i32) -> Result<Self, WriteError> {
        if volume_size < MIN_VOLUME_SIZE {
            return Err(WriteError::VolumeTooSmall(volume_size));
        }
        let encoder = Encoder::new(level).map_err(|source| WriteError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(VolumeWriter {
            dir: dir.to_owned(),
            volume_size,
            encoder,
            in_buf: vec![0; IN_BUF],
            out_buf: vec![0; zstd::zstd_safe::CCtx::out_size()],
            current: None,
            closed: Vec::new(),
            tar_pos: 0,
            expected_tar_size: None,
            max_volumes: crate::manifest::MAX_VOLUMES,
        })
    }

    /// The same writer, opening at most `n` volumes (so a test can reach the limit).
    #[cfg(test)]
    pub fn with_max_volumes(mut self, n: usize) -> Self {
        self.max_volumes = n;
        self
    }

    /// Checks free space before each new volume against what is left of a
    /// tar stream of `tar_size` bytes in all (capped at one volume), so a
    /// full disk stops the run cleanly between entries, resumable, rather
    /// than failing in the middle of a volume.
    pub fn expect_tar_size(&mut self, tar_size: u64) {
        self.expected_tar_size = Some(tar_size);
    }

    /// The free space a new volume needs: what is left of the stream, with
    /// room for zstd's worst case, at most a whole volume.
    fn space_for_next_volume(&self) -> Option<u64> {
        let left = self.expected_tar_size?.saturating_sub(self.tar_pos);
        let bound = left.saturating_add(left / 64).saturating_add(64 << 10);
        Some(bound.min(self.volume_size))
    }

    /// Carries on writing volumes left by an interrupted run: `closed` are the
    /// finished volumes (checked by the caller), and `open` the running hash
    /// and tar offset of the volume to continue, whose file is cut back to
    /// the hash's length. Volume files after it are removed.
    pub fn resume(
        dir: &Path,
        volume_size: u64,
        level: i32,
        closed: Vec<Volume>,
        open: Option<(Hasher, u64)>,
        tar_pos: u64,
    ) -> Result<Self, WriteError> {
        let mut writer = VolumeWriter::new(dir, volume_size, level)?;
        let keep = closed.len() + usize::from(open.is_some());
        let io_err = |source| WriteError::Io {
            path: dir.to_owned(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let index = name.to_str().and_then(crate::manifest::volume_index);
            if index.is_some_and(|i| i >= keep) {
                std::fs::remove_file(entry.path()).map_err(io_err)?;
            }
        }
        writer.closed = closed;
        let mark = Mark {
            closed: writer.closed.len(),
            open,
            tar_pos,
        };
        writer.rewind(mark)?;
        Ok(writer)
    }

    /// The volumes finished so far.
    pub fn closed(&self) -> &[Volume] {
        &self.closed
    }

    /// Hands what was written to the kernel (so it survives the process being
    /// killed) and says where the writer stands. `None` before any entry.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, WriteError> {
        let Some(vol) = self.current.as_mut() else {
            return Ok(None);
        };
        vol.file.flush().map_err(|e| vol.io_err(e))?;
        Ok(Some(Checkpoint {
            volume: vol.index as u32,
            size: vol.hasher.len(),
            sha256: vol.hasher.clone().finish(),
            volume_tar_offset: vol.tar_offset,
            tar_pos: self.tar_pos,
        }))
    }

    /// Bytes of the uncompressed tar stream written so far.
    pub fn tar_position(&self) -> u64 {
        self.tar_pos
    }

    /// The writer's state before the next entry, to [`VolumeWriter::rewind`] to
    /// if that entry fails (a source that broke off, content that did not hash
    /// to its digest) and is to be written again.
    pub fn mark(&self) -> Mark {
        Mark {
            closed: self.closed.len(),
            open: self
                .current
                .as_ref()
                .map(|v| (v.hasher.clone(), v.tar_offset)),
            tar_pos: self.tar_pos,
        }
    }

    /// Takes the volumes back to `mark`: files begun since are removed, the
    /// volume open then is cut back to its length then (and reopened if it was
    /// closed since), and its running hash restored. What is written next
    /// lands exactly where it would have without the failed entry.
    pub fn rewind(&mut self, mark: Mark) -> Result<(), WriteError> {
        if let Some(mut vol) = self.current.take() {
            // Dropped, not synced: its tail is about to be cut or removed.
            vol.wait_flush()?;
        }
        let keep = mark.closed + usize::from(mark.open.is_some());
        for index in keep..self.closed.len().max(keep) + 1 {
            let path = self.dir.join(volume_name(index));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(WriteError::Io { path, source }),
            }
        }
        self.closed.truncate(mark.closed);
        self.tar_pos = mark.tar_pos;
        if let Some((hasher, tar_offset)) = mark.open {
            let index = mark.closed;
            let path = self.dir.join(volume_name(index));
            let io_err = |source| WriteError::Io {
                path: path.clone(),
                source,
            };
            let file = File::options().write(true).open(&path).map_err(io_err)?;
            file.set_len(hasher.len()).map_err(io_err)?;
            let mut file = BufWriter::with_capacity(BUF_SIZE, file);
            file.seek(io::SeekFrom::End(0)).map_err(io_err)?;
            self.current = Some(OpenVolume {
                index,
                path: path.clone(),
                file,
                hasher,
                tar_offset,
                unflushed: 0,
                flushing: None,
            });
        }
        Ok(())
    }

    /// Writes one regular-file entry whose content `data` must be exactly
    /// `size` bytes (checked: a short or long source is an error). Reading
    /// `data` to its end lets a self-checking source report a digest mismatch.
    pub fn add_entry(
        &mut self,
        path: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<Placement, WriteError> {
        let total = entry_len(size);
        let header = tar_header(path, size);
        let mut src = EntrySource {
            path,
            header: &header,
            header_pos: 0,
            data,
            data_left: size,
            size,
            pad_left: total - BLOCK - size,
        };
        let placement = self.write_stream(&mut src, total)?;
        let mut probe = [0u8; 1];
        match src.data.read(&mut probe) {
            Ok(0) => Ok(placement),
            Ok(_) => Err(WriteError::Long {
                path: path.to_owned(),
                expected: size,
            }),
            Err(source) => Err(WriteError::Source {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes `bytes` as an entry of `kind` (named by their digest) and
    /// returns it as bundle.json records it.
    pub fn add_bytes(
        &mut self,
        kind: EntryKind,
        bytes: &[u8],
        media_type: Option<&str>,
    ) -> Result<Entry, WriteError> {
        let digest = crate::digest::Digest::of(bytes);
        let size = bytes.len() as u64;
        let p = self.add_entry(&kind.path(&digest), size, &mut &bytes[..])?;
        Ok(Entry {
            kind,
            digest,
            size,
            media_type: media_type.map(str::to_owned),
            volume: p.volume,
            frame_offset: p.frame_offset,
            tar_offset: p.tar_offset,
        })
    }

    /// Writes the end-of-archive blocks and closes the last volume.
    pub fn finish(mut self) -> Result<(Vec<Volume>, u64), WriteError> {
        let zeros = [0u8; TRAILER_LEN as usize];
        self.write_stream(&mut &zeros[..], TRAILER_LEN)?;
        self.close_current()?;
        Ok((self.closed, self.tar_pos))
    }

    /// Compresses `total` bytes from `src` as one frame, or as one frame per
    /// volume when they cannot fit in any single volume.
    fn write_stream(&mut self, src: &mut dyn Read, total: u64) -> Result<Placement, WriteError> {
        let whole = frame_bound(total);
        if whole > self.room() && (whole <= self.volume_size || self.room() < MIN_PIECE) {
            self.close_current()?;
        }
        self.open_if_needed()?;
        let placement = Placement {
            volume: self.current_index() as u32,
            frame_offset: self.volume_size - self.room(),
            tar_offset: self.tar_pos,
        };
        let mut left = total;
        while left > 0 {
            self.open_if_needed()?;
            let piece = left.min(max_input_for(self.room()));
            if piece < left.min(MIN_PIECE) {
                self.close_current()?;
                continue;
            }
            self.write_frame(src, piece)?;
            left -= piece;
        }
        Ok(placement)
    }

    fn write_frame(&mut self, src: &mut dyn Read, len: u64) -> Result<(), WriteError> {
        let vol = self.current.as_mut().expect("opened by the caller");
        let path = vol.path.clone();
        let io_err = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        let before = vol.hasher.len();
        self.encoder.reinit().map_err(io_err)?;
        self.encoder
            .set_pledged_src_size(Some(len))
            .map_err(io_err)?;
        let mut left = len;
        while left > 0 {
            let want = (self.in_buf.len() as u64).min(left) as usize;
            let n = read_some(src, &mut self.in_buf[..want])?;
            let mut input = &self.in_buf[..n];
            while !input.is_empty() {
                let status = self
                    .encoder
                    .run_on_buffers(input, &mut self.out_buf)
                    .map_err(io_err)?;
                input = &input[status.bytes_read..];
                emit(vol, &self.out_buf[..status.bytes_written])?;
            }
            left -= n as u64;
        }
        loop {
            let mut out = zstd::stream::raw::OutBuffer::around(&mut self.out_buf[..]);
            let remaining = self.encoder.finish(&mut out, true).map_err(io_err)?;
            let written = out.pos();
            emit(vol, &self.out_buf[..written])?;
            if remaining == 0 {
                break;
            }
        }
        self.tar_pos += len;
        let frame = vol.hasher.len() - before;
        if vol.hasher.len() > self.volume_size || frame > frame_bound(len) {
            return Err(io_err(io::Error::other(format!(
                "a frame of {len} bytes compressed to {frame}, beyond zstd's bound"
            ))));
        }
        Ok(())
    }

    fn room(&self) -> u64 {
        match &self.current {
            Some(v) => self.volume_size - v.hasher.len(),
            None => self.volume_size,
        }
    }

    fn current_index(&self) -> usize {
        self.current.as_ref().map_or(self.closed.len(), |v| v.index)
    }

    fn open_if_needed(&mut self) -> Result<(), WriteError> {
        if self.current.is_some() {
            return Ok(());
        }
        let index = self.closed.len();
        if index >= self.max_volumes {
            return Err(WriteError::TooManyVolumes {
                max: self.max_volumes,
                volume_size: self.volume_size,
            });
        }
        let path = self.dir.join(volume_name(index));
        if let Some(needed) = self.space_for_next_volume() {
            let free = crate::files::free_space(&self.dir).map_err(|e| WriteError::Io {
                path: self.dir.clone(),
                source: io::Error::other(format!("{e:#}")),
            })?;
            if free < needed {
                return Err(WriteError::NoSpace { path, needed, free });
            }
        }
        let file = File::create(&path).map_err(|source| WriteError::Io {
            path: path.clone(),
            source,
        })?;
        self.current = Some(OpenVolume {
            index,
            path,
            file: BufWriter::with_capacity(BUF_SIZE, file),
            hasher: Hasher::new(),
            tar_offset: self.tar_pos,
            unflushed: 0,
            flushing: None,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), WriteError> {
        let Some(vol) = self.current.take() else {
            return Ok(());
        };
        let mut vol = vol;
        vol.wait_flush()?;
        let io_err = |source| WriteError::Io {
            path: vol.path.clone(),
            source,
        };
        let file = vol.file.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        drop_cached(&file).map_err(io_err)?;
        self.closed.push(Volume {
            name: volume_name(vol.index),
            size: vol.hasher.len(),
            sha256: vol.hasher.finish(),
            tar_offset: vol.tar_offset,
            tar_size: self.tar_pos - vol.tar_offset,
        });
        Ok(())
    }
}

/// Tells the kernel the file's pages written so far will not be read again
/// here (volumes go to other media), so writing gigabytes does not push
/// useful data out of the page cache. Only clean pages are dropped.
fn drop_cached(file: &File) -> io::Result<()> {
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).map_err(io::Error::from)
}

fn emit(vol: &mut OpenVolume, bytes: &[u8]) -> Result<(), WriteError> {
    vol.hasher.update(bytes);
    vol.file.write_all(bytes).map_err(|e| vol.io_err(e))?;
    vol.unflushed += bytes.len() as u64;
    if vol.unflushed >= FLUSH_EVERY {
        vol.start_flush()?;
    }
    Ok(())
}

/// Reads at least one byte, mapping errors and early ends of entry sources.
fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> Result<usize, WriteError> {
    loop {
        match src.read(buf) {
            Ok(0) => {
                return Err(WriteError::Source {
                    path: String::new(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unwrap_entry_error(e)),
        }
    }
}

/// The error an [`EntrySource`] smuggles through `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("entry source failed")]
struct EntryErr(#[source] WriteError);

fn unwrap_entry_error(e: io::Error) -> WriteError {
    if e.get_ref().is_some_and(|inner| inner.is::<EntryErr>()) {
        let inner = e.into_inner().expect("checked above");
        return inner.downcast::<EntryErr>().expect("checked above").0;
    }
    WriteError::Source {
        path: String::new(),
        source: e,
    }
}

/// The bytes of one tar entry: header, content (checked for length), padding.
struct EntrySource<'a> {
    path: &'a str,
    header: &'a [u8],
    header_pos: usize,
    data: &'a mut dyn Read,
    data_left: u64,
    size: u64,
    pad_left: u64,
}

impl Read for EntrySource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.header_pos < self.header.len() {
            let n = buf.len().min(self.header.len() - self.header_pos);
            buf[..n].copy_from_slice(&self.header[self.header_pos..self.header_pos + n]);
            self.header_pos += n;
            return Ok(n);
        }
        if self.data_left > 0 {
            let want = (buf.len() as u64).min(self.data_left) as usize;
            let n = self.data.read(&mut buf[..want]).map_err(|source| {
                io::Error::other(EntryErr(WriteError::Source {
                    path: self.path.to_owned(),
                    source,
                }))
            })?;
            if n == 0 {
                return Err(io::Error::other(EntryErr(WriteError::Short {
                    path: self.path.to_owned(),
                    got: self.size - self.data_left,
                    expected: self.size,
                })));
            }
            self.data_left -= n as u64;
            return Ok(n);
        }
        let n = (buf.len() as u64).min(self.pad_left) as usize;
        buf[..n].fill(0);
        self.pad_left -= n as u64;
        Ok(n)
    }
}
