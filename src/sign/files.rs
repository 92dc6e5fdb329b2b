//! Key files on disk: writing a new pair with safe modes, refusing readable secret keys.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::SignError;
use super::keys::{SecretKey, generate};

/// Mode of a new secret key file: owner read and write only.
const SECRET_MODE: u32 = 0o600;
/// Mode of a new public key file.
const PUBLIC_MODE: u32 = 0o644;

/// Makes a new key pair and writes it as `PREFIX.key` (mode 0600) and `PREFIX.pub` (0644).
///
/// Returns the paths of the secret and the public key file, in that order.
/// See [`write_key_files`] for how the files are written.
pub fn write_key_pair(out_prefix: &Path, force: bool) -> Result<(PathBuf, PathBuf), SignError> {
    let (secret, _public) = generate("");
    write_key_files(&secret, out_prefix, force)
}

/// Writes `secret` as `PREFIX.key` and its public key as `PREFIX.pub`.
///
/// The parent directory is created if needed. The secret key file is created
/// with mode 0600 from the start (never loosened, then tightened). Existing
/// files are refused unless `force`, in which case they are removed first, so
/// an old file's looser mode is never inherited. If the public key cannot be
/// written, the new secret key file is removed again. Returns the paths of the
/// secret and the public key file, in that order.
pub fn write_key_files(
    secret: &SecretKey,
    out_prefix: &Path,
    force: bool,
) -> Result<(PathBuf, PathBuf), SignError> {
    let secret_path = with_suffix(out_prefix, ".key");
    let public_path = with_suffix(out_prefix, ".pub");
    if !force {
        // Check both before writing either, so a refusal leaves nothing behind.
        for path in [&secret_path, &public_path] {
            match fs::symlink_metadata(path) {
                Ok(_) => return Err(SignError::AlreadyExists { path: path.clone() }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SignError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
    }
    if let Some(parent) = out_prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| SignError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let secret_text = secret.to_file_text();
    write_new(&secret_path, secret_text.as_bytes(), SECRET_MODE, force)?;
    let public_text = secret.public_key().to_file_text();
    if let Err(error) = write_new(&public_path, public_text.as_bytes(), PUBLIC_MODE, force) {
        // The write error is the one to report; a failed cleanup changes nothing about it.
        let _ = fs::remove_file(&secret_path);
        return Err(error);
    }
    Ok((secret_path, public_path))
}

/// `PREFIX` + `suffix`, without touching a dot already in the file name.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(prefix.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` (removing an old one first when `replace`) with `mode`, and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), SignError> {
    let write_error = |source| SignError::Write {
        path: path.to_path_buf(),
        source,
    };
    if replace {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(e)),
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    set_mode(&mut options, mode);
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            SignError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(source)
        }
    })?;
    if let Err(source) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(write_error(source));
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(options: &mut OpenOptions, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(mode);
}

#[cfg(not(unix))]
fn set_mode(_options: &mut OpenOptions, _mode: u32) {}
