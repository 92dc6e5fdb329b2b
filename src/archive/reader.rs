//! Reads a bundle's volumes once, checking everything bundle.json declares.
//!
//! One thread reads each volume file and hashes it; the caller's thread
//! decompresses frame by frame and walks the tar stream with a cursor that
//! knows, from bundle.json, exactly which entry, header and frame must come
//! next. Anything else (a different header, a frame in the wrong place, more
//! bytes than declared, a digest that does not match) is a [`Problem`], and the
//! reader resynchronises at the next frame bundle.json records, so one damaged
//! volume or blob does not hide the state of the others. Verify, extract and
//! push all consume entries through a [`Sink`], so all three check the same way.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

use super::tar_header;
use crate::digest::{Digest, Hasher};
use crate::geometry::BLOCK;
use crate::manifest::{BundleManifest, Entry, VOLUME_PREFIX, Volume};

const CHUNK: usize = 1 << 20;
/// Pages of a volume already read are released every this many bytes.
const DROP_EVERY: usize = 64 << 20;

/// Consumes verified entries as the reader streams them.
pub trait Sink {
    /// An entry starts; `data` calls follow, then one `end`.
    fn start(&mut self, entry: &Entry) -> anyhow::Result<()>;
    /// The next bytes of the current entry's content (not yet verified).
    fn data(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
    /// The entry ended: `verified` is true only when its size and digest match bundle.json.
    fn end(&mut self, entry: &Entry, verified: bool) -> anyhow::Result<()>;
    /// Compressed bytes read so far, for progress displays.
    fn progress(&mut self, _compressed_bytes: u64) {}
}

/// A sink that only lets the reader check (verify without keeping anything).
pub struct CheckOnly;

impl Sink for CheckOnly {
    fn start(&mut self, _: &Entry) -> anyhow::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &Entry, _: bool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Something in the volumes that is not as bundle.json declares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The volume file it was found in.
    pub volume: Option<String>,
    /// The entry it concerns (`blobs/sha256/…`, `index.json`).
    pub entry: Option<String>,
    /// The blob digest it concerns.
    pub digest: Option<Digest>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A volume file is not there.
    #[error("volume is missing")]
    VolumeMissing,
    /// A volume file has another size.
    #[error("volume is {found} bytes, bundle.json says {expected}")]
    VolumeSize {
        /// Recorded size.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A volume file has another hash.
    #[error("volume sha256 is {found}, bundle.json says {expected}")]
    VolumeHash {
        /// Recorded hash.
        expected: Digest,
        /// Hash of the file.
        found: Digest,
    },
    /// A volume file that bundle.json does not list.
    #[error("extra volume not listed in bundle.json")]
    ExtraVolume,
    /// More volume-like files than are named one by one.
    #[error("{more} more files named like volumes that bundle.json does not list")]
    ExtraVolumes {
        /// How many were not named.
        more: usize,
    },
    /// A volume could not be read.
    #[error("cannot read volume: {reason}")]
    VolumeUnreadable {
        /// The I/O error.
        reason: String,
    },
    /// zstd refused the data.
    #[error("corrupt zstd data at compressed offset {offset}: {reason}")]
    Decompress {
        /// Offset in the volume.
        offset: u64,
        /// What zstd said.
        reason: String,
    },
    /// A frame that gives no content: a zstd skippable frame (bytes that
    /// `zstd -d` passes over in silence) or an empty frame; bundle writes
    /// neither, so whatever it hides is refused.
    #[error(
        "a frame with no content at compressed offset {offset} (a skippable or empty zstd frame, which bundle never writes)"
    )]
    EmptyFrame {
        /// Where the frame starts in the volume.
        offset: u64,
    },
    /// An entry's header is not at the start of the frame bundle.json records
    /// for it: another volume, another compressed offset, or another archive
    /// offset (the frame starts elsewhere in the tar stream).
    #[error(
        "entry header found in the frame at compressed offset {found} of {found_volume} \
         (archive offset {found_tar}), where bundle.json records compressed offset {expected} \
         of {expected_volume} (archive offset {expected_tar})"
    )]
    FrameOffset {
        /// Recorded offset.
        expected: u64,
        /// Recorded volume.
        expected_volume: String,
        /// Recorded archive offset of the entry's header.
        expected_tar: u64,
        /// Where the frame holding the header starts.
        found: u64,
        /// The volume it is in.
        found_volume: String,
        /// The archive offset at which that frame starts.
        found_tar: u64,
    },
    /// The tar header is not the one bundle writes for this entry.
    #[error(
        "tar header differs from the expected regular-file header (name, size, type, mode, owner)"
    )]
    Header,
    /// Padding or the end-of-archive blocks hold data.
    #[error("non-zero bytes in tar padding at archive offset {offset}")]
    Padding {
        /// Offset in the tar stream.
        offset: u64,
    },
    /// More data than bundle.json declares.
    #[error("volume decompresses past archive offset {limit} that bundle.json declares as its end")]
    Overlong {
        /// Declared end of the volume's part of the archive.
        limit: u64,
    },
    /// Less data than bundle.json declares.
    #[error("volume ends early: archive offset {found}, bundle.json says {expected}")]
    Truncated {
        /// Declared end.
        expected: u64,
        /// Where it ended.
        found: u64,
    },
    /// A blob's content has another digest.
    #[error("content digest is {found}, expected {expected}")]
    Digest {
        /// Recorded digest.
        expected: Digest,
        /// Digest of the bytes read.
        found: Digest,
    },
    /// An entry could not be read (its volume is missing or damaged).
    #[error("not read: its data lies in a missing or damaged part of volume {volume}")]
    Unread {
        /// The volume of its first frame.
        volume: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut wrote = false;
        if let Some(v) = &self.volume {
            write!(f, "{v}")?;
            wrote = true;
        }
        if let Some(e) = &self.entry {
            write!(f, "{}{e}", if wrote { ": " } else { "" })?;
            wrote = true;
        }
        write!(f, "{}{}", if wrote { ": " } else { "" }, self.kind)
    }
}

/// What a read found.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Everything that differs from bundle.json; empty when the bundle is good.
    pub problems: Vec<Problem>,
    /// Volumes whose size and sha256 matched.
    pub volumes_ok: usize,
    /// Entries whose size and digest matched (deep reads only).
    pub entries_ok: usize,
    /// Compressed bytes read.
    pub bytes_read: u64,
}

/// Where to find volume files: the bundle directory first, then others (one
/// per medium). The first directory holding anything under that name wins;
/// whether it is a regular file is for [`examine_volume`] to say.
pub fn locate_volume(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// Finds volume `v` and checks, without reading it, that it is a regular
/// file (not a link, FIFO, device, …) of its recorded size. `Ok(path)` when
/// it may be read; else what is wrong.
pub fn examine_volume(dirs: &[PathBuf], v: &Volume) -> Result<PathBuf, ProblemKind> {
    let path = locate_volume(dirs, &v.name).ok_or(ProblemKind::VolumeMissing)?;
    let meta = std::fs::symlink_metadata(&path).map_err(|e| ProblemKind::VolumeUnreadable {
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(ProblemKind::VolumeUnreadable {
            reason: format!(
                "{} is {}, not a regular file",
                path.display(),
                crate::files::kind_name(meta.file_type())
            ),
        });
    }
    if meta.len() != v.size {
        return Err(ProblemKind::VolumeSize {
            expected: v.size,
            found: meta.len(),
        });
    }
    Ok(path)
}

/// Reads every volume once. With `deep`, decompresses and checks every entry,
/// feeding `sink`; without, only checks volume sizes and hashes. Errors are
/// operational (the sink failed); everything wrong with the bundle is in the
/// report.
pub fn read_bundle(
    manifest: &BundleManifest,
    dirs: &[PathBuf],
    deep: bool,
    sink: &mut dyn Sink,
) -> anyhow::Result<ReadReport> {
    let mut report = ReadReport::default();
    // A volume that is not a regular file of its recorded size is not read
    // at all, except one that is short: what it holds is read (never past
    // its declared size) so the entries it still has are named.
    let mut present = Vec::new();
    for v in &manifest.volumes {
        let readable = match examine_volume(dirs, v) {
            Ok(path) => Some(path),
            Err(kind) => {
                let short =
                    matches!(kind, ProblemKind::VolumeSize { expected, found } if found < expected);
                let path = locate_volume(dirs, &v.name).filter(|_| short);
                report.problems.push(vproblem(v, kind));
                path
            }
        };
        present.push(readable.map(|path| (path, v.size)));
    }
    report.problems.extend(extra_volumes(manifest, dirs));

    let (tx, rx) = mpsc::sync_channel::<Msg>(4);
    std::thread::scope(|scope| {
        let paths = &present;
        scope.spawn(move || read_volumes(paths, tx));
        let mut cursor = Cursor::new(manifest);
        let mut volume: Option<VolumeDecode> = None;
        for msg in rx {
            match msg {
                Msg::Start(i) => {
                    if deep {
                        cursor.enter_volume(i, &mut report.problems, sink)?;
                        volume = Some(VolumeDecode::new(i)?);
                    }
                }
                Msg::Chunk(bytes) => {
                    report.bytes_read += bytes.len() as u64;
                    sink.progress(report.bytes_read);
                    if let Some(vd) = volume.as_mut() {
                        vd.feed(&bytes, &mut cursor, &mut report.problems, sink)?;
                    }
                }
                Msg::End(i, result) => {
                    let v = &manifest.volumes[i];
                    if let Some(vd) = volume.take() {
                        vd.finish(&mut cursor, &mut report.problems, sink)?;
                    }
                    match result {
                        Ok(found) if found == v.sha256 => report.volumes_ok += 1,
                        Ok(found) => report.problems.push(vproblem(
                            v,
                            ProblemKind::VolumeHash {
                                expected: v.sha256,
                                found,
                            },
                        )),
                        Err(e) => report.problems.push(vproblem(
                            v,
                            ProblemKind::VolumeUnreadable {
                                reason: e.to_string(),
                            },
                        )),
                    }
                }
            }
        }
        if deep {
            cursor.finish(&mut report.problems, sink)?;
            report.entries_ok = cursor.entries_ok;
        }
        anyhow::Ok(())
    })?;
    Ok(report)
}

fn vproblem(v: &Volume, kind: ProblemKind) -> Problem {
    Problem {
        volume: Some(v.name.clone()),
        entry: None,
        digest: None,
        kind,
    }
}

/// At most this many extra volume-like files are named; the rest are counted.
const MAX_EXTRA_NAMED: usize = 100;

/// Volume-like files in the bundle directories that bundle.json does not
/// list: the first [`MAX_EXTRA_NAMED`] by name, then how many more (a medium
/// can hold millions of such names, and a report must not grow with them).
fn extra_volumes(manifest: &BundleManifest, dirs: &[PathBuf]) -> Vec<Problem> {
    let listed: BTreeSet<&str> = manifest.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut extra: BTreeSet<std::ffi::OsString> = BTreeSet::new();
    let mut more = 0usize;
    // A directory given twice (or under two names) is listed once.
    let mut seen_dirs = BTreeSet::new();
    for dir in dirs {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if !seen_dirs.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in read.flatten() {
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            let listed_name = name.to_str().is_some_and(|n| listed.contains(n));
            if !bytes.starts_with(VOLUME_PREFIX.as_bytes()) || listed_name || extra.contains(&name)
            {
                continue;
            }
            extra.insert(name);
            if extra.len() > MAX_EXTRA_NAMED {
                extra.pop_last();
                more += 1;
            }
        }
    }
    let mut problems: Vec<Problem> = extra
        .into_iter()
        .map(|name| Problem {
            // A name that is not UTF-8 is shown with its odd bytes escaped.
            volume: Some(match name.to_str() {
                Some(n) => n.to_owned(),
                None => format!("{name:?}"),
            }),
            entry: None,
            digest: None,
            kind: ProblemKind::ExtraVolume,
        })
        .collect();
    if more > 0 {
        problems.push(Problem {
            volume: None,
            entry: None,
            digest: None,
            kind: ProblemKind::ExtraVolumes { more },
        });
    }
    problems
}

enum Msg {
    Start(usize),
    Chunk(Vec<u8>),
    End(usize, io::Result<Digest>),
}

/// The reading thread: each present volume once, hashed as it is read, never
/// past its declared size.
fn read_volumes(paths: &[Option<(PathBuf, u64)>], tx: mpsc::SyncSender<Msg>) {
    for (i, path) in paths.iter().enumerate() {
        let Some((path, size)) = path else { continue };
        if tx.send(Msg::Start(i)).is_err() {
            return;
        }
        let result = read_one(path, *size, &tx);
        if tx.send(Msg::End(i, result)).is_err() {
            return;
        }
    }
}

fn read_one(path: &Path, size: u64, tx: &mpsc::SyncSender<Msg>) -> io::Result<Digest> {
    let file = crate::files::open_regular(path, crate::files::Links::Refuse)
        .map_err(|e| io::Error::other(format!("{e:#}")))?;
    // Read once, front to back: ask for more read-ahead, and let go of pages
    // already hashed so a large bundle does not churn the page cache. Advice
    // only: a filesystem that ignores it changes nothing.
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    let mut file = file.take(size);
    let mut hasher = Hasher::new();
    let mut since_drop = 0;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        since_drop += filled;
        if filled == 0 || since_drop >= DROP_EVERY {
            let _ = rustix::fs::fadvise(file.get_ref(), 0, None, rustix::fs::Advice::DontNeed);
            since_drop = 0;
        }
        if filled == 0 {
            return Ok(hasher.finish());
        }
        buf.truncate(filled);
        hasher.update(&buf);
        if tx.send(Msg::Chunk(buf)).is_err() {
            return Err(io::Error::other("reader stopped"));
        }
    }
}

/// Decompression state of one volume.
struct VolumeDecode {
    index: usize,
    decoder: Decoder<'static>,
    out: Vec<u8>,
    /// Compressed bytes of this volume consumed so far.
    consumed: u64,
    /// Skip input until this offset (resynchronising after a problem); `u64::MAX` skips the rest.
    skip_to: u64,
    /// Whether the decoder is between frames.
    at_frame_start: bool,
    /// Where the current frame started, and the bytes it gave so far.
    frame_offset: u64,
    frame_out: u64,
}

impl VolumeDecode {
    fn new(index: usize) -> anyhow::Result<Self> {
        Ok(VolumeDecode {
            index,
            decoder: Decoder::new()?,
            out: vec![0; zstd::zstd_safe::DCtx::out_size()],
            consumed: 0,
            skip_to: 0,
            at_frame_start: true,
            frame_offset: 0,
            frame_out: 0,
        })
    }

    fn feed(
        &mut self,
        mut bytes: &[u8],
        cursor: &mut Cursor<'_>,
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        while !bytes.is_empty() {
            if self.consumed < self.skip_to {
                let n = (self.skip_to - self.consumed).min(bytes.len() as u64) as usize;
                self.consumed += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            if self.at_frame_start {
                cursor.frame_starts(self.index, self.consumed);
                self.frame_offset = self.consumed;
                self.frame_out = 0;
            }
            let mut input = InBuffer::around(bytes);
            let mut output = OutBuffer::around(&mut self.out[..]);
            let status = self.decoder.run(&mut input, &mut output);
            let read = input.pos();
            let written = output.pos();
            self.consumed += read as u64;
            bytes = &bytes[read..];
            let fault = match status {
                Err(e) => Some(ProblemKind::Decompress {
                    offset: self.consumed,
                    reason: e.to_string(),
                }),
                Ok(hint) => {
                    self.at_frame_start = hint == 0;
                    self.frame_out += written as u64;
                    match cursor.feed(&self.out[..written], problems, sink)? {
                        None if hint == 0 && self.frame_out == 0 => Some(ProblemKind::EmptyFrame {
                            offset: self.frame_offset,
                        }),
                        fault => fault,
                    }
                }
            };
            if let Some(kind) = fault {
                cursor.fail_current(kind, problems, sink)?;
                self.resync(cursor)?;
            }
        }
        Ok(())
    }

    /// Continues at the next entry whose first frame lies after the failed
    /// frame's start and after what was consumed (never the same frame again).
    fn resync(&mut self, cursor: &mut Cursor<'_>) -> anyhow::Result<()> {
        self.decoder.reinit()?;
        self.at_frame_start = true;
        let after = self.consumed.max(cursor.frame_start.1 + 1);
        match cursor.next_frame_in_volume(self.index, after) {
            Some(offset) => self.skip_to = offset,
            None => {
                self.skip_to = u64::MAX;
                cursor.lost_sync = true;
            }
        }
        Ok(())
    }

    fn finish(
        self,
        cursor: &mut Cursor<'_>,
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if cursor.lost_sync {
            return Ok(());
        }
        let v = &cursor.manifest.volumes[self.index];
        let end = v.tar_offset + v.tar_size;
        if !self.at_frame_start || cursor.pos != end {
            cursor.fail_current(
                ProblemKind::Truncated {
                    expected: end,
                    found: cursor.pos,
                },
                problems,
                sink,
            )?;
            cursor.lost_sync = true;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Ok,
    Failed,
}

/// Where the reader is in the tar stream, and what bundle.json says must be there.
struct Cursor<'m> {
    manifest: &'m BundleManifest,
    pos: u64,
    /// Current entry; `entries.len()` for the end-of-archive blocks.
    idx: usize,
    status: Vec<Status>,
    hasher: Option<Hasher>,
    header: Vec<u8>,
    volume: usize,
    frame_start: (usize, u64, u64),
    lost_sync: bool,
    entries_ok: usize,
}

impl<'m> Cursor<'m> {
    fn new(manifest: &'m BundleManifest) -> Self {
        Cursor {
            manifest,
            pos: 0,
            idx: 0,
            status: vec![Status::Pending; manifest.entries.len()],
            hasher: None,
            header: Vec::with_capacity(BLOCK as usize),
            volume: 0,
            frame_start: (0, 0, 0),
            lost_sync: false,
            entries_ok: 0,
        }
    }

    fn entries(&self) -> &'m [Entry] {
        &self.manifest.entries
    }

    fn problem(&self, kind: ProblemKind) -> Problem {
        let entry = self.entries().get(self.idx);
        Problem {
            volume: Some(self.manifest.volumes[self.volume].name.clone()),
            entry: entry.map(Entry::path),
            digest: entry.map(|e| e.digest),
            kind,
        }
    }

    /// A volume starts: continue where the last one ended, or jump to where
    /// bundle.json says this one starts if the last one went wrong.
    fn enter_volume(
        &mut self,
        index: usize,
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let start = self.manifest.volumes[index].tar_offset;
        if self.pos != start || self.lost_sync {
            if self.hasher.is_some() {
                let kind = ProblemKind::Unread {
                    volume: self.manifest.volumes[self.volume].name.clone(),
                };
                self.fail_current(kind, problems, sink)?;
            }
            self.jump(start);
        }
        self.volume = index;
        self.lost_sync = false;
        Ok(())
    }

    fn jump(&mut self, pos: u64) {
        self.pos = pos;
        self.idx = self.entries().partition_point(|e| e.tar_end() <= pos);
        self.hasher = None;
        self.header.clear();
    }

    fn frame_starts(&mut self, volume: usize, offset: u64) {
        self.frame_start = (volume, offset, self.pos);
    }

    /// The offset of the first frame of the next entry starting in `volume`
    /// after `consumed`. Entries are in volume order (they tile the stream,
    /// checked by `BundleManifest::check`): the search stops at the first
    /// entry of a later volume, and every search starts where the last one
    /// stopped, so a volume's entries are looked at once in all.
    fn next_frame_in_volume(&mut self, volume: usize, consumed: u64) -> Option<u64> {
        let next = self.entries()[self.idx.min(self.entries().len())..]
            .iter()
            .take_while(|e| e.volume as usize <= volume)
            .enumerate()
            .find(|(_, e)| e.volume as usize == volume && e.frame_offset >= consumed)
            .map(|(k, e)| (self.idx + k, e.frame_offset, e.tar_offset));
        let (idx, offset, tar) = next?;
        self.idx = idx;
        self.pos = tar;
        self.hasher = None;
        self.header.clear();
        Some(offset)
    }

    /// Marks the current entry failed (once) and records why.
    fn fail_current(
        &mut self,
        kind: ProblemKind,
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        problems.push(self.problem(kind));
        if let Some(e) = self.entries().get(self.idx)
            && self.status[self.idx] == Status::Pending
        {
            self.status[self.idx] = Status::Failed;
            if self.hasher.take().is_some() {
                sink.end(e, false)?;
            }
        }
        self.hasher = None;
        Ok(())
    }

    /// Feeds decompressed bytes; returns a problem that stops this frame.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Option<ProblemKind>> {
        let v = &self.manifest.volumes[self.volume];
        let limit = v.tar_offset + v.tar_size;
        if self.pos + bytes.len() as u64 > limit {
            return Ok(Some(ProblemKind::Overlong { limit }));
        }
        while !bytes.is_empty() {
            let Some(e) = self.entries().get(self.idx) else {
                // The end-of-archive blocks.
                if bytes.iter().any(|&b| b != 0) {
                    return Ok(Some(ProblemKind::Padding { offset: self.pos }));
                }
                self.pos += bytes.len() as u64;
                return Ok(None);
            };
            let data_start = e.tar_offset + BLOCK;
            let data_end = data_start + e.size;
            let n;
            if self.pos < data_start {
                if self.pos == e.tar_offset {
                    if let Some(kind) = self.check_frame(e) {
                        return Ok(Some(kind));
                    }
                    self.header.clear();
                }
                n = ((data_start - self.pos) as usize).min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                if self.header.len() == BLOCK as usize {
                    if self.header[..] != tar_header(&e.path(), e.size)[..] {
                        return Ok(Some(ProblemKind::Header));
                    }
                    if self.status[self.idx] == Status::Pending {
                        self.hasher = Some(Hasher::new());
                        sink.start(e)?;
                    }
                }
            } else if self.pos < data_end {
                n = ((data_end - self.pos) as usize).min(bytes.len());
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&bytes[..n]);
                    sink.data(&bytes[..n])?;
                }
            } else {
                n = ((e.tar_end() - self.pos) as usize).min(bytes.len());
                if bytes[..n].iter().any(|&b| b != 0) {
                    return Ok(Some(ProblemKind::Padding { offset: self.pos }));
                }
            }
            self.pos += n as u64;
            bytes = &bytes[n..];
            if self.pos == data_end
                && self.pos >= data_start
                && let Some(h) = self.hasher.take()
            {
                self.complete(e, h, problems, sink)?;
            }
            if self.pos == e.tar_end() {
                self.idx += 1;
            }
        }
        Ok(None)
    }

    /// An entry's header must be the start of the frame bundle.json records for it.
    fn check_frame(&self, e: &Entry) -> Option<ProblemKind> {
        let (volume, offset, tar) = self.frame_start;
        if volume != e.volume as usize || offset != e.frame_offset || tar != e.tar_offset {
            return Some(ProblemKind::FrameOffset {
                expected: e.frame_offset,
                expected_volume: crate::manifest::volume_name(e.volume as usize),
                expected_tar: e.tar_offset,
                found: offset,
                found_volume: crate::manifest::volume_name(volume),
                found_tar: tar,
            });
        }
        None
    }

    fn complete(
        &mut self,
        e: &Entry,
        hasher: Hasher,
        problems: &mut Vec<Problem>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let found = hasher.finish();
        let ok = found == e.digest;
        if ok {
            self.status[self.idx] = Status::Ok;
            self.entries_ok += 1;
        } else {
            self.status[self.idx] = Status::Failed;
            // Named by the volume the blob starts in (a spanning blob ends in another).
            problems.push(Problem {
                volume: Some(crate::manifest::volume_name(e.volume as usize)),
                ..self.problem(ProblemKind::Digest {
                    expected: e.digest,
                    found,
                })
            });
        }
        sink.end(e, ok)
    }

    /// After the last volume: every entry not read is a problem.
    fn finish(&mut self, problems: &mut Vec<Problem>, sink: &mut dyn Sink) -> anyhow::Result<()> {
        if self.hasher.is_some() {
            let kind = ProblemKind::Unread {
                volume: self.manifest.volumes[self.volume].name.clone(),
            };
            self.fail_current(kind, problems, sink)?;
        }
        for (i, e) in self.entries().iter().enumerate() {
            if self.status[i] == Status::Pending {
                problems.push(Problem {
                    volume: Some(crate::manifest::volume_name(e.volume as usize)),
                    entry: Some(e.path()),
                    digest: Some(e.digest),
                    kind: ProblemKind::Unread {
                        volume: crate::manifest::volume_name(e.volume as usize),
                    },
                });
            }
        }
        Ok(())
    }
}
