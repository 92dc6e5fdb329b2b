//! `bundle extract`: a verified OCI image layout on disk.
//!
//! Entries are checked by the same reader and the same checks as `verify`, in
//! one read of each volume. Each blob is written to a temporary name and
//! renamed to `blobs/sha256/<hex>` only when its size and digest match; paths
//! come from digests, never from the archive, and nothing is opened through a
//! symbolic link. `index.json` is written last, and only when the whole bundle
//! verified: until then no tool sees a layout. Extracting into an existing
//! layout adds to it; an existing file that differs is never replaced.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::archive::reader::Sink;
use crate::digest::{Digest, Hasher};
use crate::files::write_atomic;
use crate::manifest::{BundleManifest, Entry, EntryKind};
use crate::oci;
use crate::verify::{self, VerifyReport};

/// What an extract did.
#[derive(Debug, Serialize)]
pub struct ExtractReport {
    /// The checks, as `verify` reports them.
    pub verify: VerifyReport,
    /// The layout directory.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub layout: PathBuf,
    /// Blobs written.
    pub blobs_written: usize,
    /// Blobs the layout already had, byte for byte.
    pub blobs_present: usize,
    /// Images added to the layout's index.json.
    pub images_added: usize,
    /// Whether index.json was written (only when everything verified).
    pub published: bool,
}

/// Verifies the bundle in `dirs[0]` and writes its images into the OCI layout `layout`.
pub fn extract(
    dirs: &[PathBuf],
    trust: &verify::Trust,
    layout: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<ExtractReport> {
    let (mut report, m) = verify::open(dirs, trust, false)?;
    let mut sink = LayoutSink {
        blobs_dir: PathBuf::new(),
        current: None,
        index_verified: false,
        written: 0,
        present: 0,
    };
    // Nothing is created in the layout unless the signature verified and every volume is there.
    let m = m.filter(|m| verify::volumes_present(m, dirs, &mut report));
    if let Some(m) = &m {
        sink.blobs_dir = prepare_layout(layout)?;
        check_conflicts(layout, m)?;
        check_space(&sink.blobs_dir, m)?;
        let read = verify::read_into(m, dirs, progress, Some(&mut sink), &mut report);
        sink.discard_current();
        read?;
    }
    let mut out = ExtractReport {
        layout: layout.to_owned(),
        blobs_written: sink.written,
        blobs_present: sink.present,
        images_added: 0,
        published: false,
        verify: report,
    };
    let Some(m) = m.filter(|_| out.verify.ok()) else {
        return Ok(out);
    };
    anyhow::ensure!(sink.index_verified, "index.json verified but was not seen");
    out.images_added = publish_index(layout, &m)?;
    out.published = true;
    Ok(out)
}

/// The largest index.json read from a layout: one `extract` would make
/// larger is refused before any volume is read (it could not be added to
/// again).
const MAX_LAYOUT_INDEX: u64 = 64 << 20;

/// The layout's index.json (an empty index when there is none yet).
fn read_layout_index(layout: &Path) -> anyhow::Result<serde_json::Value> {
    let index_path = layout.join("index.json");
    if !index_path.exists() {
        return Ok(
            serde_json::json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": []}),
        );
    }
    let bytes =
        crate::files::read_capped(&index_path, MAX_LAYOUT_INDEX, crate::files::Links::Refuse)?;
    let index: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("reading {}", index_path.display()))?;
    // Checked here, before any volume is read, not only when publishing.
    if !index["manifests"].is_array() {
        bail!("{} has no manifests list", index_path.display());
    }
    Ok(index)
}

/// Ref name → digest of every entry of a layout index.
fn ref_names(index: &serde_json::Value) -> BTreeMap<String, String> {
    let entries = index["manifests"].as_array().map(Vec::as_slice);
    entries
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let name = d["annotations"][oci::REF_NAME].as_str().unwrap_or_default();
            let digest = d["digest"].as_str().unwrap_or_default();
            (name.to_owned(), digest.to_owned())
        })
        .collect()
}

fn conflict(index_path: &Path, name: &str, have: &str, ours: &str) -> String {
    format!(
        "{} already names {name} as {have}; the bundle has {ours}: not replaced (extract into another directory)",
        index_path.display()
    )
}

/// Refuses, before any volume is read, a layout whose index.json already
/// gives one of the bundle's names to another digest.
fn check_conflicts(layout: &Path, m: &BundleManifest) -> anyhow::Result<()> {
    let index = read_layout_index(layout)?;
    let existing = ref_names(&index);
    for img in &m.images {
        if let Some(have) = existing.get(&img.reference)
            && *have != img.digest.to_string()
        {
            bail!(
                "{}",
                conflict(
                    &layout.join("index.json"),
                    &img.reference,
                    have,
                    &img.digest.to_string()
                )
            );
        }
    }
    // What is there and the entries this bundle adds (their JSON measured
    // one at a time): never more than a layout's index.json may be.
    let have = fs::metadata(layout.join("index.json")).map_or(0, |md| md.len());
    let adds: u64 = m
        .index_entries()
        .filter(|e| !existing.contains_key(e.reference))
        .map(|e| serde_json::to_vec(&oci::index_descriptor(&e)).map_or(0, |v| v.len() as u64 + 1))
        .sum();
    let most = have.saturating_add(adds).saturating_add(64);
    if most > MAX_LAYOUT_INDEX {
        bail!(
            "{} would grow to up to {most} bytes with this bundle's {} images, more than the \
             {MAX_LAYOUT_INDEX} bytes bundle reads back as a layout's index.json; extract into \
             another (new) directory",
            layout.join("index.json").display(),
            m.images.len()
        );
    }
    Ok(())
}

/// Refuses, before any volume is read, a layout whose file system cannot
/// hold the blobs it lacks (and index.json): a full disk is found out now,
/// not after hours of reading.
fn check_space(blobs_dir: &Path, m: &BundleManifest) -> anyhow::Result<()> {
    let needed: u64 = m
        .entries
        .iter()
        .filter(|e| e.kind != EntryKind::Blob || !blobs_dir.join(e.digest.hex()).exists())
        // Each file takes whole blocks of the file system (4 KiB on most).
        .map(|e| e.size.div_ceil(4096).saturating_mul(4096))
        .fold(0, u64::saturating_add);
    crate::files::ensure_space(blobs_dir, needed, "extract")
}

/// Checks (or makes) the layout's directories: real directories, never links.
/// The directories above the layout named in its path must not be links
/// either: one planted there would carry the layout somewhere else, so the
/// real path must be given instead.
fn prepare_layout(layout: &Path) -> anyhow::Result<PathBuf> {
    crate::files::refuse_links_above(layout)?;
    for dir in [
        layout.to_owned(),
        layout.join("blobs"),
        layout.join("blobs/sha256"),
    ] {
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "{} is a symbolic link; extract writes only into real directories",
                    dir.display()
                )
            }
            Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", dir.display()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::files::create_dir(&dir)
                .with_context(|| format!("creating {}", dir.display()))?,
            Err(e) => return Err(e).with_context(|| format!("examining {}", dir.display())),
        }
    }
    for file in ["oci-layout", "index.json"] {
        let path = layout.join(file);
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            bail!("{} exists and is not a regular file", path.display());
        }
    }
    Ok(layout.join("blobs/sha256"))
}

/// Adds the bundle's images to the layout's index.json (written last,
/// atomically). An existing index.json is kept as it is, unknown fields
/// included; entries are only added.
fn publish_index(layout: &Path, m: &BundleManifest) -> anyhow::Result<usize> {
    let index_path = layout.join("index.json");
    let mut merged = read_layout_index(layout)?;
    let existing = ref_names(&merged);
    // The bundle's index.json is the one its images give (checked when
    // bundle.json was read): its entries are made one at a time from them.
    let mut added = Vec::new();
    for entry in m.index_entries() {
        match existing.get(entry.reference) {
            Some(digest) if *digest == entry.digest.to_string() => {}
            Some(digest) => bail!(
                "{}",
                conflict(
                    &index_path,
                    entry.reference,
                    digest,
                    &entry.digest.to_string()
                )
            ),
            None => added.push(entry),
        }
    }
    let layout_file = layout.join("oci-layout");
    if layout_file.exists() {
        let bytes = crate::files::read_capped(&layout_file, 4096, crate::files::Links::Refuse)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", layout_file.display()))?;
        if v["imageLayoutVersion"] != "1.0.0" {
            bail!("{} is not an OCI image layout 1.0.0", layout_file.display());
        }
    } else {
        write_atomic(layout, "oci-layout", oci::OCI_LAYOUT_FILE)?;
    }
    // Written as it is made: the layout's other fields and entries as they
    // were, then the new entries, never all held as JSON values at once.
    let Some(serde_json::Value::Array(before)) = merged.get_mut("manifests").map(std::mem::take)
    else {
        bail!("{} has no manifests list", index_path.display());
    };
    let serde_json::Value::Object(fields) = merged else {
        bail!("{} is not a JSON object", index_path.display());
    };
    let count = added.len();
    crate::files::write_atomic_with(layout, "index.json", |w| {
        w.write_all(b"{")?;
        for (key, value) in fields.iter().filter(|(k, _)| *k != "manifests") {
            serde_json::to_writer(&mut *w, key)?;
            w.write_all(b":")?;
            serde_json::to_writer(&mut *w, value)?;
            w.write_all(b",")?;
        }
        w.write_all(b"\"manifests\":[")?;
        let new = added
            .iter()
            .map(|e| serde_json::to_value(oci::index_descriptor(e)));
        for (n, value) in before.into_iter().map(Ok).chain(new).enumerate() {
            if n > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, &value?)?;
        }
        w.write_all(b"]}")
    })?;
    Ok(count)
}

/// Writes blobs as they stream; renames each only once it verified.
struct LayoutSink {
    blobs_dir: PathBuf,
    current: Option<(BufWriter<File>, PathBuf)>,
    /// Whether index.json verified (its bytes are made again from bundle.json).
    index_verified: bool,
    written: usize,
    present: usize,
}

impl LayoutSink {
    fn discard_current(&mut self) {
        if let Some((_, tmp)) = self.current.take() {
            let _ = fs::remove_file(tmp);
        }
    }

    /// Moves a verified blob into place, unless the layout has it already.
    fn finish_blob(&mut self, file: BufWriter<File>, tmp: &Path, e: &Entry) -> anyhow::Result<()> {
        let file = file.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        let target = self.blobs_dir.join(e.digest.hex());
        match fs::symlink_metadata(&target) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                fs::rename(tmp, &target).with_context(|| {
                    format!("renaming {} to {}", tmp.display(), target.display())
                })?;
                self.written += 1;
                Ok(())
            }
            Ok(m) if m.is_file() && m.len() == e.size && file_digest(&target)? == e.digest => {
                fs::remove_file(tmp)?;
                self.present += 1;
                Ok(())
            }
            _ => {
                fs::remove_file(tmp)?;
                bail!(
                    "{} exists and is not blob {}: not replaced",
                    target.display(),
                    e.digest
                )
            }
        }
    }
}

impl Sink for LayoutSink {
    fn start(&mut self, e: &Entry) -> anyhow::Result<()> {
        self.discard_current();
        if e.kind == EntryKind::Blob {
            let tmp = self.blobs_dir.join(format!(".tmp-{}", e.digest.hex()));
            // A leftover of an interrupted run; remove_file removes a link, never its target.
            let _ = fs::remove_file(&tmp);
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            crate::files::set_file_mode(&file)
                .with_context(|| format!("setting the mode of {}", tmp.display()))?;
            self.current = Some((BufWriter::with_capacity(256 * 1024, file), tmp));
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        // oci-layout and index.json are not kept: their bytes are the
        // constant and the index bundle.json's images give, written again.
        match self.current.as_mut() {
            Some((file, tmp)) => file
                .write_all(bytes)
                .with_context(|| format!("writing {}", tmp.display())),
            None => Ok(()),
        }
    }

    fn end(&mut self, e: &Entry, verified: bool) -> anyhow::Result<()> {
        match (e.kind, self.current.take()) {
            (EntryKind::Blob, Some((file, tmp))) if verified => self.finish_blob(file, &tmp, e),
            (EntryKind::Blob, Some((_, tmp))) => {
                fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))
            }
            (EntryKind::Index, _) if verified => {
                self.index_verified = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn file_digest(path: &Path) -> anyhow::Result<Digest> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}
