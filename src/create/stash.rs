//! [`SpoolDir`]: the directory where downloads ahead of the writer land, so a
//! killed run's finished downloads are not fetched again.
//!
//! It is [`DIR_NAME`] in the output directory (hidden, never taken for a
//! volume). A download ahead of the writer is written to `<hex>.<n>.part`
//! and renamed to `<hex>` (the digest's hex part, from a parsed [`Digest`],
//! never a registry string) only once its body came whole and matched its
//! digest and size; the rename is then journaled ([`SpoolLog`]). The writer
//! removes a spooled blob once its entry is in a volume and journaled.
//!
//! A resumed run ([`recover`]) keeps the journaled blobs that are not yet in
//! the volumes and still hash to their digest, and removes everything else
//! (partial downloads, blobs already written, damaged ones, with a warning for
//! those). The directory is removed once the volumes are finished.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::digest::{Digest, Hasher};

/// The spool directory's name in the output directory.
pub const DIR_NAME: &str = ".bundle-create.spool";

/// Where downloads ahead of the writer go, and the journal that records them.
pub struct SpoolDir {
    dir: PathBuf,
    log: SpoolLog,
    /// Makes partial names unique (a blob fetched again while the first
    /// attempt's file is still open).
    next: AtomicU64,
    /// Blobs an interrupted run spooled that checked, by digest: their files.
    kept: HashMap<Digest, PathBuf>,
}

impl SpoolDir {
    /// The spool directory of `out` (created by [`start`] or [`recover`]),
    /// recording into `log`, re-using the `kept` blobs of an interrupted run.
    pub fn new(out: &Path, log: SpoolLog, kept: HashMap<Digest, PathBuf>) -> Arc<Self> {
        Arc::new(SpoolDir {
            dir: out.join(DIR_NAME),
            log,
            next: AtomicU64::new(0),
            kept,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new partial name for a download of `digest`.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{}.{n}.part", digest.hex()))
    }

    /// The name of `digest`'s blob once complete.
    pub fn final_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Publishes a complete download: renames `partial` to its final name,
    /// then journals it. Called only once its body matched `digest` and `size`.
    pub fn publish(&self, partial: &Path, digest: &Digest, size: u64) -> io::Result<()> {
        let done = self.final_path(digest);
        fs::rename(partial, &done).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("renaming {} to {}: {e}", partial.display(), done.display()),
            )
        })?;
        self.log.spooled(digest, size)
    }

    /// The file of `digest` an interrupted run spooled and that checked, opened
    /// to be read again with its digest checked once more.
    pub fn open_kept(&self, digest: &Digest, size: u64) -> Option<KeptReader> {
        let path = self.kept.get(digest)?;
        let file = File::open(path).ok()?;
        Some(KeptReader {
            file,
            hasher: Hasher::new(),
            digest: *digest,
            size,
            path: path.clone(),
        })
    }

    /// Removes `digest`'s spooled blob, if any: its entry is in a volume.
    pub fn consumed(&self, digest: &Digest) -> anyhow::Result<()> {
        crate::files::remove_if_present(&self.final_path(digest))
    }
}

/// A blob spooled by an interrupted run, read back with its digest and size
/// checked (the writer fetches it again if they no longer match).
pub struct KeptReader {
    file: File,
    hasher: Hasher,
    digest: Digest,
    size: u64,
    path: PathBuf,
}

impl Read for KeptReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 || self.hasher.len() > self.size {
            let found = self.hasher.clone().finish();
            if self.hasher.len() != self.size || found != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the spooled {} has {} bytes and digest {found}, expected {} and {}",
                        self.path.display(),
                        self.hasher.len(),
                        self.size,
                        self.digest
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// Records downloads that finished ahead of the writer in the journal (from
/// any thread, between the writer's own records).
#[derive(Clone)]
pub struct SpoolLog {
    file: Arc<Mutex<File>>,
    path: PathBuf,
}

impl SpoolLog {
    /// A log appending to the journal open as `file` at `path`.
    pub(super) fn new(file: Arc<Mutex<File>>, path: PathBuf) -> Self {
        SpoolLog { file, path }
    }

    /// Records that `digest` (`size` bytes) is whole under its final name
    /// in the spool directory.
    pub fn spooled(&self, digest: &Digest, size: u64) -> io::Result<()> {
        let line = super::journal::spooled_line(digest, size)?;
        super::journal::append(&self.file, line.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display())))
    }

    /// A log appending to a scratch journal in `dir` (unit tests).
    #[cfg(test)]
    pub fn for_tests(dir: &Path) -> Self {
        let path = dir.join(super::journal::FILE_NAME);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        SpoolLog::new(Arc::new(Mutex::new(file)), path)
    }
}

/// Starts a fresh run: whatever a spool directory holds (left without a
/// journal) goes, and an empty one is made.
pub fn start(out: &Path) -> anyhow::Result<()> {
    remove(out)?;
    let dir = out.join(DIR_NAME);
    crate::files::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))
}

/// Blobs an interrupted run spooled that still check: their file and size, by digest.
pub type Kept = HashMap<Digest, (PathBuf, u64)>;

/// Checks the blobs an interrupted run journaled as `spooled` (digest and
/// size): keeps those not `written` yet whose file is whole and hashes to its
/// digest, removes every other file of the spool directory. Gives the kept
/// blobs and warnings for damaged ones.
pub fn recover(
    out: &Path,
    spooled: &[(Digest, u64)],
    written: &HashSet<Digest>,
) -> anyhow::Result<(Kept, Vec<String>)> {
    let dir = out.join(DIR_NAME);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        // A journal of the old format has no spool directory; anything else
        // at its name is not ours to read.
        _ => {
            remove(out)?;
            crate::files::create_dir(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            return Ok((HashMap::new(), Vec::new()));
        }
    }
    let wanted: HashMap<String, (Digest, u64)> = spooled
        .iter()
        .filter(|(d, _)| !written.contains(d))
        .map(|(d, size)| (d.hex(), (*d, *size)))
        .collect();
    let mut kept = Kept::new();
    let mut warnings = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let found = name.to_str().and_then(|n| wanted.get(n));
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if let (Some((digest, size)), true) = (found, is_file) {
            match check_file(&path, digest, *size) {
                Ok(()) => {
                    kept.insert(*digest, (path, *size));
                    continue;
                }
                Err(why) => warnings.push(format!(
                    "the spooled blob {digest} {why}: it is fetched again"
                )),
            }
        }
        remove_entry(&path, is_file)?;
    }
    Ok((kept, warnings))
}

/// Whether the file at `path` holds `size` bytes hashing to `digest`;
/// otherwise what is wrong.
fn check_file(path: &Path, digest: &Digest, size: u64) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot be read ({e})")),
        };
        hasher.update(&buf[..n]);
        if hasher.len() > size {
            break;
        }
    }
    if hasher.len() != size {
        return Err(format!(
            "has {} bytes, not the {size} it was spooled with",
            hasher.len()
        ));
    }
    if hasher.finish() != *digest {
        return Err("changed since it was spooled (it no longer hashes to its digest)".into());
    }
    Ok(())
}

fn remove_entry(path: &Path, is_file: bool) -> anyhow::Result<()> {
    let removed = if is_file {
        fs::remove_file(path)
    } else {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            _ => fs::remove_file(path),
        }
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes the spool directory of `out` and all it holds (a link at its name
/// is removed, not followed).
pub fn remove(out: &Path) -> anyhow::Result<()> {
    let dir = out.join(DIR_NAME);
    match fs::symlink_metadata(&dir) {
        Ok(m) => remove_entry(&dir, !m.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recover_keeps_whole_journaled_blobs_and_removes_the_rest() {
        let out = tempfile::tempdir().unwrap();
        start(out.path()).unwrap();
        let dir = out.path().join(DIR_NAME);
        let good = b"good blob".to_vec();
        let damaged = b"damaged blob".to_vec();
        let short = b"short blob".to_vec();
        let written = b"written blob".to_vec();
        let unjournaled = b"unjournaled".to_vec();
        for b in [&good, &damaged, &written, &unjournaled] {
            fs::write(dir.join(Digest::of(b).hex()), b).unwrap();
        }
        fs::write(dir.join(Digest::of(&short).hex()), &short[..4]).unwrap();
        let mut bad = damaged.clone();
        bad[0] ^= 1;
        fs::write(dir.join(Digest::of(&damaged).hex()), &bad).unwrap();
        fs::write(dir.join(format!("{}.0.part", Digest::of(b"x").hex())), b"x").unwrap();
        let spooled: Vec<(Digest, u64)> = [&good, &damaged, &short, &written]
            .iter()
            .map(|b| (Digest::of(b), b.len() as u64))
            .collect();
        let done: HashSet<Digest> = [Digest::of(&written)].into();
        let (kept, warnings) = recover(out.path(), &spooled, &done).unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), [&Digest::of(&good)]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains("changed since")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("has 4 bytes")),
            "{warnings:?}"
        );
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [Digest::of(&good).hex()]);
        remove(out.path()).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_kept_blob_that_changed_after_the_check_fails_when_read() {
        let out = tempfile::tempdir().unwrap();
        start(out.path()).unwrap();
        let blob = b"spooled".to_vec();
        let digest = Digest::of(&blob);
        let path = out.path().join(DIR_NAME).join(digest.hex());
        fs::write(&path, b"changed").unwrap();
        let log = SpoolLog::for_tests(out.path());
        let spool = SpoolDir::new(out.path(), log, [(digest, path)].into());
        let mut r = spool.open_kept(&digest, blob.len() as u64).unwrap();
        let e = io::read_to_string(&mut r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}
