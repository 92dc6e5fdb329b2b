//! Small file helpers at the edges: opening untrusted files without
//! blocking, bounded reads, and atomic writes of the files that make a bundle
//! valid.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use rustix::fs::{Mode, OFlags};

/// Whether a symbolic link may stand for the file being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Refused: files on the medium (bundle.json, its signature, SHA256SUMS,
    /// volumes) must be the regular files themselves.
    Refuse,
    /// Followed to a regular file: the operator's own files (trusted keys, a
    /// source layout).
    Follow,
}

/// Why [`open_regular`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or examined.
    #[error("opening {}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A symbolic link where only a regular file is accepted.
    #[error("{} is a symbolic link; bundle reads only regular files there, not links", path.display())]
    Link {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A FIFO, socket, device or directory.
    #[error("{} is {kind}, not a regular file: refused", path.display())]
    NotRegular {
        /// The file.
        path: std::path::PathBuf,
        /// What it is (`a FIFO`, …).
        kind: &'static str,
    },
}

/// Opens `path` for reading only if it is a regular file, without ever
/// blocking: a FIFO, socket, device or directory (or, with [`Links::Refuse`],
/// a symbolic link) is refused at once, naming what it is. The open itself
/// does not block (`O_NONBLOCK`: a FIFO with no writer would otherwise wait
/// forever), and the kind is checked on the opened file, so the file checked
/// is the file read.
pub fn open_regular(path: &Path, links: Links) -> Result<File, OpenError> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let io_error = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) if links == Links::Refuse => {
            return Err(OpenError::Link {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_error(e.into())),
    };
    let file = File::from(fd);
    let kind = file.metadata().map_err(io_error)?.file_type();
    if !kind.is_file() {
        return Err(OpenError::NotRegular {
            path: path.to_owned(),
            kind: kind_name(kind),
        });
    }
    Ok(file)
}

/// What a file that is not a regular file is, for messages.
pub fn kind_name(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Reads a whole regular file (see [`open_regular`]), refusing one larger
/// than `max` bytes before a byte is read.
pub fn read_capped(path: &Path, max: u64, links: Links) -> anyhow::Result<Vec<u8>> {
    let file = open_regular(path, links)?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > max {
        bail!("{} is larger than {max} bytes ({len})", path.display());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_space(path: &Path) -> anyhow::Result<u64> {
    let st = rustix::fs::statvfs(path)
        .map_err(io::Error::from)
        .with_context(|| format!("reading the free space of {}", path.display()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses to start writing `needed` bytes under `dir` when its file system
/// has less free, saying how much is needed and what is free (`what` names
/// the writing, for the message).
pub fn ensure_space(dir: &Path, needed: u64, what: &str) -> anyhow::Result<()> {
    let free = free_space(dir)?;
    if free < needed {
        bail!(
            "{what} needs {needed} bytes ({}) on the file system of {}, which has {free} ({}) free",
            crate::text::human_bytes(needed),
            dir.display(),
            crate::text::human_bytes(free)
        );
    }
    Ok(())
}

/// Refuses a path whose directories above `path` (as given) include a
/// symbolic link: one planted there would carry what is written elsewhere,
/// so the real path must be given instead.
pub fn refuse_links_above(path: &Path) -> anyhow::Result<()> {
    for above in path
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
    {
        if fs::symlink_metadata(above).is_ok_and(|m| m.file_type().is_symlink()) {
            let real = fs::canonicalize(above)
                .map(|r| r.join(path.strip_prefix(above).unwrap_or(path)))
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| "a dangling link".into());
            bail!(
                "{} is a symbolic link, so {} would lie elsewhere ({real}); \
                 bundle writes only through real directories: give the real path",
                above.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Checks, without creating anything, that `dir` can be written as a real
/// directory: neither it nor a directory above it in the path given is a
/// symbolic link, and it is a directory if it exists. Returns whether it exists.
pub fn check_real_dir(dir: &Path) -> anyhow::Result<bool> {
    refuse_links_above(dir)?;
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{} is a symbolic link; bundle writes only into real directories",
            dir.display()
        ),
        Ok(m) if !m.is_dir() => bail!(
            "{} exists and is {}, not a directory",
            dir.display(),
            kind_name(m.file_type())
        ),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("examining {}", dir.display())),
    }
}

/// Makes sure `dir` is a real directory ([`check_real_dir`]), creating it
/// (and what is missing above it) if needed, mode [`DIR_MODE`].
pub fn real_dir(dir: &Path) -> anyhow::Result<()> {
    if check_real_dir(dir)? {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    create_dir(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Takes an exclusive lock on the directory `dir` (`flock`), held until the
/// returned handle is dropped, so two processes never write into it at once;
/// a second one is refused at once, not made to wait.
pub fn lock_dir(dir: &Path, what: &str) -> anyhow::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{FlockOperation, flock};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {} to lock it", dir.display()))?;
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
            "another {what} is writing into {} (it holds the directory's lock); wait for it to \
             finish, or stop it, before running this one",
            dir.display()
        ),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("locking {}", dir.display())),
    }
}

/// Removes a file; one that is not there is fine.
pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The mode of every file bundle writes for others to read (layouts, bundle
/// files, mirror configuration), whatever the umask.
pub const FILE_MODE: u32 = 0o644;
/// The mode of every directory bundle creates, whatever the umask.
pub const DIR_MODE: u32 = 0o755;

/// Gives an open file [`FILE_MODE`] (the umask applies at creation; this does not).
pub fn set_file_mode(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// Creates directory `path` with [`DIR_MODE`] whatever the umask.
pub fn create_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
}

/// Writes `name` in `dir` through a temporary file, fsync and rename, then
/// syncs the directory: the file is either absent or complete.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(dir, name, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the content written by `write` as it is made
/// (buffered), so that a large file is never held whole.
pub fn write_atomic_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    // Whatever is at the temporary name (a leftover, or a planted link) is
    // removed, never opened: the file is created new, so no link is followed.
    remove_if_present(&tmp)?;
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = io::BufWriter::with_capacity(256 << 10, f);
    let written = write(&mut w)
        .and_then(|()| w.into_inner().map_err(io::IntoInnerError::into_error))
        .and_then(|f| set_file_mode(&f).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capped_refuses_larger_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5, Links::Refuse).unwrap(), b"12345");
        assert!(
            read_capped(&p, 4, Links::Refuse)
                .unwrap_err()
                .to_string()
                .contains("larger than 4")
        );
        write_atomic(dir.path(), "g", b"x").unwrap();
        assert_eq!(fs::read(dir.path().join("g")).unwrap(), b"x");
        assert!(!dir.path().join(".g.tmp").exists());
    }

    #[test]
    fn only_regular_files_are_opened_and_nothing_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A FIFO without a writer: a blocking open would never return.
        for links in [Links::Refuse, Links::Follow] {
            let e = read_capped(&fifo, 10, links).unwrap_err().to_string();
            assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        }
        let e = open_regular(dir.path(), Links::Follow)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = open_regular(Path::new("/dev/zero"), Links::Follow)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a character device"), "{e}");
        let real = dir.path().join("real");
        fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_regular(&link, Links::Refuse).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert_eq!(read_capped(&link, 1, Links::Follow).unwrap(), b"x");
        let fifo_link = dir.path().join("fifo-link");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        let e = open_regular(&fifo_link, Links::Follow)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a FIFO"), "{e}");
    }
}
