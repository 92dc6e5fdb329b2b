//! Writer/reader pairs on generated blobs: boundaries, spanning, corruption.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use super::reader::{ProblemKind, ReadReport, Sink, read_bundle};
use super::writer::VolumeWriter;
use crate::digest::Digest;
use crate::manifest::{BundleManifest, Compression, Entry, EntryKind};

/// Writes `oci-layout`, the blobs and an `index.json` and returns the manifest.
pub(crate) fn write_set(dir: &Path, volume_size: u64, blobs: &[Vec<u8>]) -> BundleManifest {
    let mut w = VolumeWriter::new(dir, volume_size, 3).unwrap();
    let mut entries = vec![];
    let mut add = |w: &mut VolumeWriter, kind: EntryKind, bytes: &[u8]| {
        entries.push(w.add_bytes(kind, bytes, None).unwrap());
    };
    add(&mut w, EntryKind::OciLayout, crate::oci::OCI_LAYOUT_FILE);
    for b in blobs {
        add(&mut w, EntryKind::Blob, b);
    }
    add(
        &mut w,
        EntryKind::Index,
        &crate::oci::layout_index(std::iter::empty()),
    );
    let (volumes, tar_size) = w.finish().unwrap();
    let m = BundleManifest {
        format_version: 1,
        bundle_id: "0123456789abcdef0123456789abcdef".into(),
        created: "2026-01-01T00:00:00Z".into(),
        tool: "test".into(),
        source: "oci:/test".into(),
        compression: Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        volume_size,
        tar_size,
        volumes,
        entries,
        images: vec![],
        base_bundle: None,
    };
    m.check().unwrap();
    m
}

pub(crate) fn random_blobs(seed: u64, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    sizes
        .iter()
        .map(|&n| {
            let mut b = vec![0u8; n];
            // Incompressible, like gzip layers.
            rng.fill(&mut b[..]);
            b
        })
        .collect()
}

#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    good: BTreeMap<Digest, Vec<u8>>,
    bad: Vec<Digest>,
}

impl Sink for Collect {
    fn start(&mut self, _: &Entry) -> anyhow::Result<()> {
        self.current.clear();
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.current.extend_from_slice(bytes);
        Ok(())
    }
    fn end(&mut self, e: &Entry, verified: bool) -> anyhow::Result<()> {
        if verified {
            self.good
                .insert(e.digest, std::mem::take(&mut self.current));
        } else {
            self.bad.push(e.digest);
        }
        Ok(())
    }
}

fn read(m: &BundleManifest, dir: &Path) -> (ReadReport, Collect) {
    let mut sink = Collect::default();
    let report = read_bundle(m, &[dir.to_path_buf()], true, &mut sink).unwrap();
    (report, sink)
}

fn volume_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(crate::manifest::volume_name(i))
}

#[test]
fn round_trips_across_volume_edges_and_spanning_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * 1024;
    // Blobs near the limit, larger than a volume (spanning three), and tiny ones.
    let blobs = random_blobs(
        1,
        &[
            0,
            1,
            511,
            512,
            60_000,
            65_000,
            200_000,
            30_000,
            64 * 1024,
            10,
        ],
    );
    let m = write_set(dir.path(), size, &blobs);
    assert!(m.volumes.len() >= 5, "{} volumes", m.volumes.len());
    for v in &m.volumes {
        let len = std::fs::metadata(volume_path(
            dir.path(),
            m.volumes.iter().position(|x| x == v).unwrap(),
        ))
        .unwrap()
        .len();
        assert_eq!(len, v.size);
        assert!(len <= size, "{} is {len} bytes", v.name);
    }
    let (report, sink) = read(&m, dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries_ok, m.entries.len());
    for b in &blobs {
        assert_eq!(sink.good[&Digest::of(b)], *b);
    }
}

#[test]
fn same_input_gives_identical_volumes() {
    let blobs = random_blobs(2, &[100_000, 3, 70_000]);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ma = write_set(a.path(), 64 * 1024, &blobs);
    let mb = write_set(b.path(), 64 * 1024, &blobs);
    assert_eq!(ma, mb);
    for i in 0..ma.volumes.len() {
        assert_eq!(
            std::fs::read(volume_path(a.path(), i)).unwrap(),
            std::fs::read(volume_path(b.path(), i)).unwrap()
        );
    }
}

#[test]
fn concatenated_volumes_are_one_plain_tar_zst_stream() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(3, &[150_000, 20]);
    let m = write_set(dir.path(), 64 * 1024, &blobs);
    let mut all = vec![];
    for i in 0..m.volumes.len() {
        all.extend(std::fs::read(volume_path(dir.path(), i)).unwrap());
    }
    let tar_bytes = zstd::stream::decode_all(&all[..]).unwrap();
    assert_eq!(tar_bytes.len() as u64, m.tar_size);
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.first().unwrap(), "oci-layout");
    assert_eq!(names.last().unwrap(), "index.json");
    assert_eq!(names.len(), 4);
}

#[test]
fn a_flipped_byte_names_the_blob_and_the_volume_and_the_rest_still_checks() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(4, &[40_000, 40_000, 40_000, 40_000]);
    let m = write_set(dir.path(), 64 * 1024, &blobs);
    // Flip a byte in the middle of the second blob's frame.
    let e = &m.entries[2];
    let path = volume_path(dir.path(), e.volume as usize);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(e.frame_offset + 5_000) as usize] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let (report, sink) = read(&m, dir.path());
    let kinds: Vec<_> = report
        .problems
        .iter()
        .map(|p| (&p.kind, p.digest))
        .collect();
    assert!(
        kinds
            .iter()
            .any(|(k, _)| matches!(k, ProblemKind::VolumeHash { .. })),
        "{kinds:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.digest == Some(e.digest)
            && p.volume.as_deref() == Some(m.volumes[e.volume as usize].name.as_str())),
        "{:?}",
        report.problems
    );
    assert_eq!(sink.bad, vec![e.digest]);
    // Every other blob still verified.
    assert_eq!(sink.good.len(), m.entries.len() - 1);
}

#[test]
fn truncated_and_missing_volumes_are_reported_and_others_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(5, &[40_000, 40_000, 40_000, 40_000]);
    let m = write_set(dir.path(), 64 * 1024, &blobs);
    assert!(m.volumes.len() >= 3);
    let v1 = volume_path(dir.path(), 1);
    let bytes = std::fs::read(&v1).unwrap();
    std::fs::write(&v1, &bytes[..bytes.len() / 2]).unwrap();
    let (report, sink) = read(&m, dir.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::VolumeSize { .. }))
    );
    assert!(
        report.problems.iter().any(|p| matches!(
            p.kind,
            ProblemKind::Truncated { .. } | ProblemKind::Decompress { .. }
        )),
        "{:?}",
        report.problems
    );
    assert!(!sink.good.is_empty());
    std::fs::remove_file(&v1).unwrap();
    let (report, _) = read(&m, dir.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::VolumeMissing)
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::Unread { .. }))
    );
}

#[test]
fn swapped_and_extra_volumes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(6, &[50_000, 50_000, 50_000]);
    let m = write_set(dir.path(), 64 * 1024, &blobs);
    let (a, b) = (volume_path(dir.path(), 0), volume_path(dir.path(), 1));
    let tmp = dir.path().join("tmp");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let (report, sink) = read(&m, dir.path());
    assert!(
        report
            .problems
            .iter()
            .filter(|p| matches!(
                p.kind,
                ProblemKind::VolumeHash { .. } | ProblemKind::VolumeSize { .. }
            ))
            .count()
            >= 2
    );
    assert!(sink.good.len() < m.entries.len());
    std::fs::write(volume_path(dir.path(), 99), b"junk").unwrap();
    let (report, _) = read(&m, dir.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::ExtraVolume
                && p.volume.as_deref() == Some("images.tar.zst.00099"))
    );
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(7, &[1000]);
    let m = write_set(dir.path(), 64 * 1024, &blobs);
    // Replace the volume with a frame of 100 MB of zeros; the reader must stop early.
    let bomb = zstd::stream::encode_all(std::io::repeat(0).take_bytes(100 << 20), 19).unwrap();
    std::fs::write(volume_path(dir.path(), 0), bomb).unwrap();
    let (report, sink) = read(&m, dir.path());
    assert!(sink.good.is_empty());
    assert!(!report.problems.is_empty());
}

trait TakeBytes {
    fn take_bytes(self, n: u64) -> std::io::Take<std::io::Repeat>;
}
impl TakeBytes for std::io::Repeat {
    fn take_bytes(self, n: u64) -> std::io::Take<std::io::Repeat> {
        std::io::Read::take(self, n)
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any set of blobs at any volume size round-trips, and no volume exceeds the limit.
    #[test]
    fn any_blobs_any_volume_size_round_trip(
        sizes in proptest::collection::vec(0usize..200_000, 0..6),
        volume_size in 65_536u64..400_000,
        seed in 0u64..1000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = random_blobs(seed, &sizes);
        blobs.sort();
        blobs.dedup();
        let m = write_set(dir.path(), volume_size, &blobs);
        for (i, v) in m.volumes.iter().enumerate() {
            let len = std::fs::metadata(volume_path(dir.path(), i)).unwrap().len();
            proptest::prop_assert_eq!(len, v.size);
            proptest::prop_assert!(len <= volume_size);
        }
        let (report, sink) = read(&m, dir.path());
        proptest::prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
        for b in &blobs {
            proptest::prop_assert_eq!(&sink.good[&Digest::of(b)], b);
        }
    }
}

/// Content that breaks off after `good` bytes, like a connection that drops.
struct Breaks<'a> {
    bytes: &'a [u8],
    good: usize,
}

impl std::io::Read for Breaks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.good == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.good).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        self.good -= n;
        Ok(n)
    }
}

/// Writes `blobs` (as blob entries) with `w`, then finishes it.
fn add_all(w: &mut VolumeWriter, blobs: &[Vec<u8>]) {
    for b in blobs {
        let path = EntryKind::Blob.path(&Digest::of(b));
        w.add_entry(&path, b.len() as u64, &mut &b[..]).unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// An entry that fails part-way (even across volumes) and is rewound leaves
    /// exactly the volumes that writing without it gives, byte for byte.
    #[test]
    fn a_rewound_entry_leaves_no_trace(
        before in proptest::collection::vec(0usize..150_000, 0..4),
        failing in 1usize..400_000,
        fail_at in 0.0f64..1.0,
        after in proptest::collection::vec(0usize..150_000, 0..4),
        volume_size in 65_536u64..300_000,
        seed in 0u64..1000,
    ) {
        let before = random_blobs(seed, &before);
        let after = random_blobs(seed + 1, &after);
        let bad = random_blobs(seed + 2, &[failing]).remove(0);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

        let mut w = VolumeWriter::new(a.path(), volume_size, 3).unwrap();
        add_all(&mut w, &before);
        let mark = w.mark();
        let path = EntryKind::Blob.path(&Digest::of(&bad));
        let good = (failing as f64 * fail_at) as usize;
        let failed = w.add_entry(&path, failing as u64, &mut Breaks { bytes: &bad, good });
        proptest::prop_assert!(failed.is_err());
        w.rewind(mark).unwrap();
        add_all(&mut w, &after);
        let rewound = w.finish().unwrap();

        let mut w = VolumeWriter::new(b.path(), volume_size, 3).unwrap();
        add_all(&mut w, &before);
        add_all(&mut w, &after);
        let straight = w.finish().unwrap();

        proptest::prop_assert_eq!(&rewound, &straight);
        let files = |d: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names
        };
        proptest::prop_assert_eq!(files(a.path()), files(b.path()));
        for v in &straight.0 {
            let x = std::fs::read(a.path().join(&v.name)).unwrap();
            let y = std::fs::read(b.path().join(&v.name)).unwrap();
            proptest::prop_assert!(x == y, "{} differs", v.name);
        }
    }
}

#[test]
fn the_volume_past_the_limit_is_refused_naming_the_limit_and_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = random_blobs(11, &[200_000]);
    let mut w = VolumeWriter::new(dir.path(), 65_536, 3)
        .unwrap()
        .with_max_volumes(2);
    w.add_bytes(EntryKind::OciLayout, crate::oci::OCI_LAYOUT_FILE, None)
        .unwrap();
    // 200 kB of incompressible bytes need four 64 KiB volumes.
    let err = w.add_bytes(EntryKind::Blob, &blobs[0], None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("more than 2 volumes of 65536 bytes") && text.contains("--volume-size"),
        "{text}"
    );
    assert!(!volume_path(dir.path(), 2).exists());
}

#[test]
fn volume_names_sort_in_volume_order_and_parse_back_exactly() {
    use crate::manifest::{MAX_VOLUMES, volume_index, volume_name};
    let names: Vec<String> = [
        0,
        1,
        9,
        10,
        99,
        100,
        999,
        1000,
        1001,
        9999,
        10_000,
        MAX_VOLUMES - 1,
    ]
    .iter()
    .map(|&i| volume_name(i))
    .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names);
    assert!(names.iter().all(|n| n.len() == names[0].len()));
    for (i, n) in names.iter().enumerate() {
        assert_eq!(volume_index(n).map(volume_name).as_ref(), Some(n), "{i}");
    }
    for bad in [
        "images.tar.zst.000",
        "images.tar.zst.+0001",
        "images.tar.zst.000000",
        "images.tar.zst.0000a",
        "images.tar.zst. 0001",
        "x/images.tar.zst.00001",
    ] {
        assert_eq!(volume_index(bad), None, "{bad}");
    }
}

#[test]
fn a_manifest_listing_more_volumes_than_a_bundle_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = write_set(dir.path(), 65_536, &random_blobs(12, &[10]));
    let one = m.volumes[0].clone();
    m.volumes = vec![one; crate::manifest::MAX_VOLUMES + 1];
    let err = m.check().unwrap_err().to_string();
    assert!(err.contains("100001 volumes listed"), "{err}");
}
