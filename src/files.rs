//! Small file helpers at the edges: bounded reads of untrusted files and
//! atomic writes of the files that make a bundle valid.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};

/// Reads a whole file, refusing one larger than `max` bytes without reading past the limit.
pub fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // A regular file says its size: one too large is refused before a byte
    // is read (a FIFO or device says nothing and is bounded by the read).
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

/// Removes a file; one that is not there is fine.
pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Writes `name` in `dir` through a temporary file, fsync and rename, then
/// syncs the directory: the file is either absent or complete.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    // Whatever is at the temporary name (a leftover, or a planted link) is
    // removed, never opened: the file is created new, so no link is followed.
    remove_if_present(&tmp)?;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
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
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert!(
            read_capped(&p, 4)
                .unwrap_err()
                .to_string()
                .contains("larger than 4")
        );
        write_atomic(dir.path(), "g", b"x").unwrap();
        assert_eq!(fs::read(dir.path().join("g")).unwrap(), b"x");
        assert!(!dir.path().join(".g.tmp").exists());
    }
}
