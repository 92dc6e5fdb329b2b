//! The resume journal of `bundle create`: a hidden file in the output
//! directory that says which entries are whole in the volumes, so a run
//! killed at any point continues where it stopped.
//!
//! One JSON line per record, appended as the writer goes: first a header (the
//! arguments that decide the bytes), then for each entry written its place and
//! the writer's [`Checkpoint`] after it (the open volume's length and the
//! sha256 of its bytes so far), and for each volume finished its size and
//! sha256. Entries are recorded only once their bytes are handed to the
//! kernel; index.json and the end-of-archive blocks are never recorded (a
//! resumed run writes them again, for the images it then bundles).
//!
//! [`recover`] trusts none of it blindly: it reads the volumes again and keeps
//! the records up to the last one whose checkpoint still matches the bytes on
//! disk (a journal line whose volume bytes were lost, a volume changed since,
//! a torn last line). The volume files are then cut back to that point by
//! [`VolumeWriter::resume`]. The journal is removed once bundle.json is written.
//!
//! Downloads that finish ahead of the writer are recorded too (format 2), as
//! they land under their final name in the spool directory (`stash`): a
//! resumed run re-uses those that still hash to their digest. A format 1
//! journal (three-digit volume names) is refused: remove it to start over.
//!

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::stash::SpoolLog;
use crate::archive::writer::{Checkpoint, VolumeWriter};
use crate::digest::{Digest, Hasher};
use crate::files::{remove_if_present, write_atomic};
use crate::manifest::{Entry, EntryKind, Volume, volume_name};

/// The journal's file name in the output directory.
pub const FILE_NAME: &str = ".bundle-create.journal";
/// The journal format this version writes.
const VERSION: u32 = 2;
/// The oldest journal format this version continues. Format 1 is refused:
/// its volumes have three-digit names, which this version neither writes nor
/// reads (a continued run would leave them beside the new ones).
const OLDEST: u32 = 2;
/// A journal larger than this is not a journal this tool wrote.
const MAX_JOURNAL: u64 = 1 << 30;

/// What decides the bytes of the volumes: a resumed run must agree on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The journal format.
    pub journal: u32,
    /// The source as bundle.json names it.
    pub source: String,
    /// `--volume-size`.
    pub volume_size: u64,
    /// `--compression-level`.
    pub level: i32,
}

impl Header {
    /// The header of a run with these arguments.
    pub fn new(source: String, volume_size: u64, level: i32) -> Self {
        Header {
            journal: VERSION,
            source,
            volume_size,
            level,
        }
    }

    /// Refuses to continue an interrupted run made with other arguments.
    pub fn check_same(&self, found: &Header, out: &Path) -> anyhow::Result<()> {
        let differs = |what: &str, then: String, now: String| {
            anyhow::anyhow!(
                "{} holds an interrupted create made with {what} {then} (this run: {now}); \
                 run it again with the same arguments to continue, or remove {} to start over",
                out.display(),
                out.display()
            )
        };
        if !(OLDEST..=VERSION).contains(&found.journal) {
            bail!(
                "{} holds an interrupted create of another bundle version (journal format {}); \
                 remove it to start over",
                out.display(),
                found.journal
            );
        }
        if found.source != self.source {
            return Err(differs(
                "the source",
                found.source.clone(),
                self.source.clone(),
            ));
        }
        if found.volume_size != self.volume_size {
            return Err(differs(
                "--volume-size",
                found.volume_size.to_string(),
                self.volume_size.to_string(),
            ));
        }
        if found.level != self.level {
            return Err(differs(
                "--compression-level",
                found.level.to_string(),
                self.level.to_string(),
            ));
        }
        Ok(())
    }
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    /// An entry is whole in the volumes.
    Entry {
        /// Its place, as bundle.json will list it.
        entry: Entry,
        /// The platform of an image config, read as it was written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// Where the writer stood after it.
        end: Checkpoint,
    },
    /// A volume is finished.
    Closed(Volume),
    /// A download ahead of the writer is whole in the spool directory.
    Spooled {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Its file name in the spool directory (the digest's hex part).
        file: String,
    },
}

/// Reads the header of the journal in `out`, if there is one.
pub fn read_header(out: &Path) -> anyhow::Result<Option<Header>> {
    let path = out.join(FILE_NAME);
    let text = match read_journal(&path)? {
        Some(text) => text,
        None => return Ok(None),
    };
    let first = text.lines().next().unwrap_or_default();
    let header = serde_json::from_str(first)
        .with_context(|| format!("{} does not start with a journal header", path.display()))?;
    Ok(Some(header))
}

fn read_journal(path: &Path) -> anyhow::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_JOURNAL + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_JOURNAL {
        bail!(
            "{} is larger than any journal bundle writes",
            path.display()
        );
    }
    // A torn last line (the process killed mid-write) is not UTF-8-checked
    // here: lossy is fine, as it fails to parse and is dropped.
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Where the writer starts: from nothing ([`start`]), or after what an
/// interrupted run left ([`recover`]).
pub struct Start {
    /// The entries already whole in the volumes, in the order written.
    pub entries: Vec<Entry>,
    /// Platforms of the image configs among them.
    pub platforms: HashMap<Digest, String>,
    /// A writer carrying on right after them.
    pub writer: VolumeWriter,
    /// Damage found (a volume that changed since it was written).
    pub warnings: Vec<String>,
    /// The journal, holding only what was kept, open for more records.
    pub journal: Journal,
    /// Blobs the interrupted run spooled that still check, by digest: their files.
    pub spooled: HashMap<Digest, PathBuf>,
}

/// Starts a fresh run in `out`: an empty journal and a writer.
pub fn start(out: &Path, header: &Header) -> anyhow::Result<Start> {
    super::stash::start(out)?;
    Ok(Start {
        journal: Journal::rewrite(out, header, &[], 0)?,
        writer: VolumeWriter::new(out, header.volume_size, header.level)?,
        entries: Vec::new(),
        platforms: HashMap::new(),
        warnings: Vec::new(),
        spooled: HashMap::new(),
    })
}

/// Checks what the interrupted run in `out` left against its journal and
/// prepares to carry on after the last entry that is whole on disk.
pub fn recover(out: &Path, header: &Header) -> anyhow::Result<Start> {
    let path = out.join(FILE_NAME);
    let text = read_journal(&path)?.context("the journal went away")?;
    let mut records = Vec::new();
    let mut spooled = Vec::new();
    for line in text.lines().skip(1) {
        match serde_json::from_str::<Record>(line) {
            // Checked apart from the volumes; a name that is not the
            // digest's is not one this tool wrote.
            Ok(Record::Spooled { digest, size, file }) => {
                if file == digest.hex() {
                    spooled.push((digest, size));
                }
            }
            Ok(r) => records.push(r),
            // The last line may be torn; anything after a bad line is not trusted.
            Err(_) => break,
        }
    }
    let mut warnings = Vec::new();
    let mut scan = Scan::new(out);
    // (records kept, closed volumes then, the open volume's hash and tar offset, tar position)
    let mut good: Option<(usize, usize, Hasher, u64, u64)> = None;
    let mut closed: Vec<Volume> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let checked = match record {
            Record::Entry { end, .. } => scan.check(end.volume, end.size, &end.sha256, false),
            Record::Closed(v) if v.name == volume_name(closed.len()) => {
                scan.check(closed.len() as u32, v.size, &v.sha256, true)
            }
            Record::Closed(v) => Err(format!("{} is out of order in the journal", v.name)),
            // Kept apart when read: they say nothing of the volumes.
            Record::Spooled { .. } => continue,
        };
        match (checked, record) {
            (Ok(hasher), Record::Entry { end, .. }) => {
                let hasher = hasher.expect("an entry checkpoint keeps the hash");
                good = Some((
                    i + 1,
                    closed.len(),
                    hasher,
                    end.volume_tar_offset,
                    end.tar_pos,
                ))
            }
            (Ok(_), Record::Closed(v)) => closed.push(v.clone()),
            (Ok(_), Record::Spooled { .. }) => {}
            (Err(why), _) => {
                warnings.push(why);
                break;
            }
        }
    }
    let (kept, closed_then, hasher, volume_tar_offset, tar_pos) = match good {
        Some(g) => g,
        None => (0, 0, Hasher::new(), 0, 0),
    };
    closed.truncate(closed_then);
    let records: Vec<Record> = records.into_iter().take(kept).collect();
    let open = (kept > 0).then_some((hasher, volume_tar_offset));
    let writer = VolumeWriter::resume(
        out,
        header.volume_size,
        header.level,
        closed.clone(),
        open,
        tar_pos,
    )?;
    let mut entries = Vec::new();
    let mut platforms = HashMap::new();
    for r in &records {
        if let Record::Entry {
            entry, platform, ..
        } = r
        {
            if let Some(p) = platform {
                platforms.insert(entry.digest, p.clone());
            }
            entries.push(entry.clone());
        }
    }
    let written: HashSet<Digest> = entries.iter().map(|e| e.digest).collect();
    let (kept_spooled, spool_warnings) = super::stash::recover(out, &spooled, &written)?;
    warnings.extend(spool_warnings);
    let mut records = records;
    let mut kept_spooled: Vec<(Digest, (PathBuf, u64))> = kept_spooled.into_iter().collect();
    kept_spooled.sort_by_key(|(d, _)| *d);
    records.extend(
        kept_spooled
            .iter()
            .map(|(digest, (_, size))| Record::Spooled {
                digest: *digest,
                size: *size,
                file: digest.hex(),
            }),
    );
    let journal = Journal::rewrite(out, header, &records, closed.len())?;
    Ok(Start {
        entries,
        platforms,
        writer,
        warnings,
        journal,
        spooled: kept_spooled
            .into_iter()
            .map(|(d, (path, _))| (d, path))
            .collect(),
    })
}

/// Reads the volume files in order, hashing, to check checkpoints.
struct Scan<'a> {
    out: &'a Path,
    /// The volume being read, its file and running hash.
    volume: u32,
    file: Option<File>,
    hasher: Hasher,
    buf: Vec<u8>,
}

impl<'a> Scan<'a> {
    fn new(out: &'a Path) -> Self {
        Scan {
            out,
            volume: 0,
            file: None,
            hasher: Hasher::new(),
            buf: vec![0; 1 << 20],
        }
    }

    /// Whether volume `volume` holds `size` bytes hashing to `sha256` (and,
    /// when `whole`, nothing more; the next check is then in the next volume).
    /// `Ok` gives the running hash at that point for an entry checkpoint;
    /// `Err` says what does not match (entries are recorded only after their
    /// bytes reach the kernel, so a killed run leaves none of this: it is
    /// damage, or bytes lost with the power).
    fn check(
        &mut self,
        volume: u32,
        size: u64,
        sha256: &Digest,
        whole: bool,
    ) -> Result<Option<Hasher>, String> {
        let name = volume_name(volume as usize);
        if volume != self.volume || size < self.hasher.len() {
            return Err(format!(
                "the journal is out of order at {name}: written again from there"
            ));
        }
        if self.file.is_none() {
            self.file = Some(File::open(self.out.join(&name)).map_err(|e| {
                format!("{name} cannot be read ({e}): it and what follows are written again")
            })?);
        }
        let file = self.file.as_mut().expect("opened above");
        while self.hasher.len() < size {
            let want = (size - self.hasher.len()).min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(format!(
                        "{name} ends at {} bytes, before the {size} the journal says were \
                         written: it is written again from its last whole entry",
                        self.hasher.len()
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading {name}: {e}")),
            };
            self.hasher.update(&self.buf[..n]);
        }
        if self.hasher.clone().finish() != *sha256 {
            return Err(format!(
                "{name} changed since it was written (its first {size} bytes do not hash \
                 as they did): it is cut back to its last whole entry before the change \
                 and written again from there"
            ));
        }
        if !whole {
            return Ok(Some(self.hasher.clone()));
        }
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => {}
            _ => {
                return Err(format!(
                    "{name} is longer than the {size} bytes it was finished with: \
                     it is written again from its last whole entry"
                ));
            }
        }
        self.volume += 1;
        self.file = None;
        self.hasher = Hasher::new();
        Ok(None)
    }
}

/// Appends records as the writer goes.
pub struct Journal {
    file: Arc<Mutex<File>>,
    path: PathBuf,
    /// Volumes recorded as finished.
    closed: usize,
}

impl Journal {
    /// Writes the header and `records` atomically, then opens it for appending.
    fn rewrite(
        out: &Path,
        header: &Header,
        records: &[Record],
        closed: usize,
    ) -> anyhow::Result<Self> {
        let mut text = serde_json::to_string(header)?;
        text.push('\n');
        for r in records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(out, FILE_NAME, text.as_bytes())?;
        let path = out.join(FILE_NAME);
        let file = File::options()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Journal {
            file: Arc::new(Mutex::new(file)),
            path,
            closed,
        })
    }

    /// A handle the downloads record their spooled blobs through.
    pub fn spool_log(&self) -> SpoolLog {
        SpoolLog::new(self.file.clone(), self.path.clone())
    }

    /// Records `entry` as whole, with the volumes finished since the last
    /// record and where the writer now stands.
    pub fn record(
        &mut self,
        writer: &mut VolumeWriter,
        entry: &Entry,
        platform: Option<&str>,
    ) -> anyhow::Result<()> {
        if matches!(entry.kind, EntryKind::Index) {
            return Ok(());
        }
        let end = writer
            .checkpoint()
            .map_err(anyhow::Error::new)?
            .context("no volume open after an entry")?;
        let mut lines = String::new();
        for v in &writer.closed()[self.closed..] {
            lines.push_str(&serde_json::to_string(&Record::Closed(v.clone()))?);
            lines.push('\n');
        }
        let record = Record::Entry {
            entry: entry.clone(),
            platform: platform.map(str::to_owned),
            end,
        };
        lines.push_str(&serde_json::to_string(&record)?);
        lines.push('\n');
        append(&self.file, lines.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.closed = writer.closed().len();
        Ok(())
    }
}

/// The journal line of a blob whole under its final name in the spool
/// directory ([`SpoolLog`]).
pub(super) fn spooled_line(digest: &Digest, size: u64) -> io::Result<String> {
    let record = Record::Spooled {
        digest: *digest,
        size,
        file: digest.hex(),
    };
    let mut line = serde_json::to_string(&record).map_err(io::Error::other)?;
    line.push('\n');
    Ok(line)
}

/// Appends whole lines in one write, one writer at a time.
pub(super) fn append(file: &Mutex<File>, lines: &[u8]) -> io::Result<()> {
    // A panic elsewhere while holding the lock leaves the file as it was.
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    file.write_all(lines)
}

/// Removes the journal once the bundle is complete.
pub fn remove(out: &Path) -> anyhow::Result<()> {
    remove_if_present(&out.join(FILE_NAME))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;

    use proptest::prelude::*;

    use super::*;

    const LEVEL: i32 = 1;

    fn header(volume_size: u64) -> Header {
        Header::new("oci:test".into(), volume_size, LEVEL)
    }

    fn entry_for(
        w: &mut VolumeWriter,
        kind: EntryKind,
        bytes: &[u8],
    ) -> Result<Entry, crate::archive::writer::WriteError> {
        let digest = Digest::of(bytes);
        let p = w.add_entry(&kind.path(&digest), bytes.len() as u64, &mut &bytes[..])?;
        Ok(Entry {
            kind,
            digest,
            size: bytes.len() as u64,
            media_type: None,
            volume: p.volume,
            frame_offset: p.frame_offset,
            tar_offset: p.tar_offset,
        })
    }

    /// The entries to write: oci-layout, then the blobs.
    fn items(blobs: &[Vec<u8>]) -> Vec<(EntryKind, Vec<u8>)> {
        std::iter::once((EntryKind::OciLayout, crate::oci::OCI_LAYOUT_FILE.to_vec()))
            .chain(blobs.iter().map(|b| (EntryKind::Blob, b.clone())))
            .collect()
    }

    /// Writes `items` from `start` on with a journal, then the end of the
    /// archive; gives every entry and the volumes' bytes.
    fn finish_run(
        dir: &Path,
        mut w: VolumeWriter,
        mut journal: Journal,
        mut entries: Vec<Entry>,
        items: &[(EntryKind, Vec<u8>)],
    ) -> (Vec<Entry>, BTreeMap<String, Vec<u8>>) {
        let done: std::collections::HashSet<String> = entries.iter().map(Entry::path).collect();
        for (kind, bytes) in items {
            if done.contains(&kind.path(&Digest::of(bytes))) {
                continue;
            }
            let e = entry_for(&mut w, *kind, bytes).unwrap();
            journal.record(&mut w, &e, None).unwrap();
            entries.push(e);
        }
        w.finish().unwrap();
        (entries, volume_bytes(dir))
    }

    /// The entries and volumes of a run that is never interrupted.
    fn uninterrupted(
        volume_size: u64,
        items: &[(EntryKind, Vec<u8>)],
    ) -> (Vec<Entry>, BTreeMap<String, Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        finish_run(
            dir.path(),
            VolumeWriter::new(dir.path(), volume_size, LEVEL).unwrap(),
            Journal::rewrite(dir.path(), &header(volume_size), &[], 0).unwrap(),
            Vec::new(),
            items,
        )
    }

    fn volume_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("images.tar.zst.")
            })
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// A run killed while writing entry `killed_at`, `partial` bytes into it.
    fn killed_run(
        dir: &Path,
        volume_size: u64,
        items: &[(EntryKind, Vec<u8>)],
        killed_at: usize,
        partial: usize,
    ) {
        let mut w = VolumeWriter::new(dir, volume_size, LEVEL).unwrap();
        let mut journal = Journal::rewrite(dir, &header(volume_size), &[], 0).unwrap();
        for (i, (kind, bytes)) in items.iter().enumerate() {
            if i == killed_at {
                // The source breaks off: the writer has written part of it, and
                // the process dies before anything cleans up.
                let cut = partial.min(bytes.len().saturating_sub(1));
                let mut src = (&bytes[..cut]).chain(FailingReader);
                let digest = Digest::of(bytes);
                let _ = w.add_entry(&kind.path(&digest), bytes.len() as u64, &mut src);
                std::mem::forget(w);
                return;
            }
            let e = entry_for(&mut w, *kind, bytes).unwrap();
            journal.record(&mut w, &e, None).unwrap();
        }
        std::mem::forget(w);
    }

    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("killed"))
        }
    }

    fn blobs_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        // Incompressible blobs (like gzip layers) of up to 3 volumes of 64 KiB.
        prop::collection::vec((0usize..200_000, any::<u64>()), 1..8).prop_map(|specs| {
            specs
                .into_iter()
                .map(|(len, seed)| {
                    use rand::{Rng, SeedableRng};
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    (0..len).map(|_| rng.r#gen::<u8>()).collect()
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Killed in any entry at any byte, then resumed: the volumes are
        /// byte-identical to an uninterrupted run's, and so are the entries.
        #[test]
        fn a_killed_run_resumed_ends_byte_identical(
            blobs in blobs_strategy(),
            killed_at in 0usize..9,
            partial in 0usize..300_000,
        ) {
            let volume_size = 64 * 1024;
            let items = items(&blobs);
            let killed_at = killed_at % (items.len() + 1);
            let (want_entries, want) = uninterrupted(volume_size, &items);
            let dir = tempfile::tempdir().unwrap();
            killed_run(dir.path(), volume_size, &items, killed_at, partial);
            let r = recover(dir.path(), &header(volume_size)).unwrap();
            prop_assert!(r.warnings.is_empty(), "{:?}", r.warnings);
            prop_assert_eq!(r.entries.len(), killed_at.min(items.len()));
            let (entries, got) = finish_run(dir.path(), r.writer, r.journal, r.entries, &items);
            prop_assert_eq!(entries, want_entries);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_changed_finished_volume_is_cut_back_before_the_change() {
        let volume_size = 64 * 1024;
        let blobs: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                (0..40_000u32)
                    .map(|j| (j.wrapping_mul(2654435761) >> (i + 3)) as u8)
                    .collect()
            })
            .collect();
        let items = items(&blobs);
        let (_, want) = uninterrupted(volume_size, &items);
        let dir = tempfile::tempdir().unwrap();
        killed_run(dir.path(), volume_size, &items, items.len() - 1, 1000);
        let first = dir.path().join(volume_name(0));
        let mut bytes = std::fs::read(&first).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&first, bytes).unwrap();
        let r = recover(dir.path(), &header(volume_size)).unwrap();
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(
            r.warnings[0].contains("images.tar.zst.00000 changed"),
            "{:?}",
            r.warnings
        );
        // Everything from the damaged entry on is written again.
        assert!(r.entries.iter().all(|e| e.volume == 0));
        let (_, got) = finish_run(dir.path(), r.writer, r.journal, r.entries, &items);
        assert_eq!(got, want);
    }

    #[test]
    fn a_torn_last_line_and_lines_after_it_are_dropped() {
        let volume_size = 64 * 1024;
        let items = items(&[vec![7u8; 1000], vec![8u8; 2000]]);
        let dir = tempfile::tempdir().unwrap();
        killed_run(dir.path(), volume_size, &items, items.len(), 0);
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let torn = &text[..text.len() - 10];
        std::fs::write(&path, torn).unwrap();
        let r = recover(dir.path(), &header(volume_size)).unwrap();
        assert_eq!(r.entries.len(), items.len() - 1);
    }

    #[test]
    fn a_format_1_journal_is_refused_and_spooled_blobs_survive_recovery() {
        let volume_size = 64 * 1024;
        let items = items(&[vec![7u8; 1000], vec![8u8; 2000]]);
        let dir = tempfile::tempdir().unwrap();
        killed_run(dir.path(), volume_size, &items, items.len(), 0);
        // The header the previous version wrote (format 1, three-digit volume names).
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        let mut old: Header = serde_json::from_str(first).unwrap();
        old.journal = 1;
        let out = dir.path();
        let refused = header(volume_size).check_same(&old, out).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("another bundle version (journal format 1)"),
            "{refused}"
        );
        let r = recover(out, &header(volume_size)).unwrap();
        assert_eq!(r.entries.len(), items.len());
        assert!(r.spooled.is_empty());
        assert_eq!(read_header(out).unwrap().unwrap().journal, VERSION);

        // A blob spooled ahead of the writer, and a record naming another file.
        let blob = b"spooled ahead".to_vec();
        let digest = Digest::of(&blob);
        let spool = out.join(super::super::stash::DIR_NAME);
        std::fs::write(spool.join(digest.hex()), &blob).unwrap();
        r.journal
            .spool_log()
            .spooled(&digest, blob.len() as u64)
            .unwrap();
        let other = Digest::of(b"other");
        std::fs::write(spool.join(other.hex()), b"other").unwrap();
        let forged = format!(
            "{{\"spooled\":{{\"digest\":\"{other}\",\"size\":5,\"file\":\"../{}\"}}}}\n",
            other.hex()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(forged.as_bytes())
            .unwrap();
        drop(r);
        for _ in 0..2 {
            let r = recover(out, &header(volume_size)).unwrap();
            assert_eq!(r.spooled.keys().collect::<Vec<_>>(), [&digest]);
            assert_eq!(r.entries.len(), items.len());
        }
        assert!(!spool.join(other.hex()).exists());

        let mut newer = header(volume_size);
        newer.journal = VERSION + 1;
        let e = header(volume_size).check_same(&newer, out).unwrap_err();
        assert!(e.to_string().contains("journal format 3"), "{e}");
    }

    #[test]
    fn other_arguments_are_refused_naming_them() {
        let found = header(64 * 1024);
        let out = Path::new("/media/usb/bundle");
        let e = Header::new("oci:test".into(), 128 * 1024, LEVEL)
            .check_same(&found, out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--volume-size 65536 (this run: 131072)"), "{e}");
        assert!(e.contains("/media/usb/bundle"), "{e}");
        let e = Header::new("docker://other".into(), 64 * 1024, LEVEL)
            .check_same(&found, out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the source oci:test"), "{e}");
        let e = Header::new("oci:test".into(), 64 * 1024, 3)
            .check_same(&found, out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--compression-level 1"), "{e}");
        assert!(found.check_same(&found, out).is_ok());
    }
}
