//! Resuming a killed `bundle create`: run 1 goes through a [`FaultProxy`]
//! that holds one request (or the debug build kills itself at a phase
//! through `BUNDLE_CRASH_AT`), the test kills it with SIGKILL, and run 2
//! with the same command line finishes the bundle. Whatever the kill point,
//! the result is the bundle of an uninterrupted run (same `SHA256SUMS`, same
//! bundle.json but for its id and time, nothing else in the directory), and
//! what was already written is not downloaded again. Also `--jobs`: how many
//! blob downloads are in flight at once.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::support::seed::{skopeo_dest_flags, skopeo_src_flags};
use crate::support::*;

/// Longer than any retry budget of the client: a run still going is hung.
const HANG: Duration = Duration::from_secs(120);
/// The longest a test waits for run 1 to reach its hold.
const REACH: Duration = Duration::from_secs(30);
/// How long the output directory must stay unchanged to count as settled.
const SETTLED: Duration = Duration::from_millis(500);
/// The volume size of every run but the refused one.
const VOLUME_SIZE: &str = "256K";

/// Images of ~100–280 KB layers (gzip of random bytes: they do not
/// compress), ~1.2 MB in all: five or more volumes of 256K, most starting
/// with a layer, one layer larger than a volume (cut across two), and an
/// index over two platforms.
fn resume_layout(dir: &Path) -> Layout {
    let base = || LayerSpec::shared("base", 200_000);
    LayoutBuilder::new(dir)
        .seed(7)
        .image(
            "resume/app:1",
            ImageSpec::new(vec![base(), LayerSpec::unique(150_000)]),
        )
        .image(
            "resume/web:2",
            ImageSpec::new(vec![
                base(),
                LayerSpec::unique(120_000),
                LayerSpec::unique(100_000),
            ]),
        )
        .image(
            "resume/multi:3",
            ImageSpec::new(vec![base(), LayerSpec::unique(110_000)])
                .platforms(&[Platform::LINUX_AMD64, Platform::LINUX_ARM64]),
        )
        .image(
            "resume/tool:4",
            ImageSpec::new(vec![LayerSpec::unique(280_000)]),
        )
        .build()
}

/// A fresh plain-HTTP registry holding [`resume_layout`] (OCI manifests and
/// one OCI index), with the layout's directory.
fn resume_registry() -> (TestRegistry, tempfile::TempDir) {
    let registry = TestRegistry::start();
    let dir = temp_dir();
    let layout = resume_layout(&dir.path().join("layout"));
    for image in &layout.images {
        skopeo_push(&registry, &layout, &image.name, &image.name, Format::Oci);
    }
    (registry, dir)
}

/// One tar entry of the reference bundle.json.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `oci-layout`, `blob` or `index`.
    kind: String,
    digest: String,
    size: u64,
    volume: u64,
    frame_offset: u64,
    tar_offset: u64,
    /// Fetched with a blob GET (a layer or config, not a manifest).
    fetched: bool,
}

/// The uninterrupted run every case must end identical to.
struct Reference {
    sums: Vec<u8>,
    manifest: Value,
    entries: Vec<Entry>,
    /// Every file name in its directory, hidden ones included, sorted.
    files: Vec<String>,
}

impl Reference {
    /// The fetched blobs, in stream order.
    fn fetched(&self) -> Vec<&Entry> {
        self.entries.iter().filter(|e| e.fetched).collect()
    }

    /// A fetched blob of at least 50 KB, smaller than a volume, that does
    /// not start its volume (run 1 has whole entries before it in the same
    /// volume to keep), the nearest to the middle of the stream.
    fn mid_blob(&self) -> Entry {
        let middle = self.manifest["tar_size"].as_u64().expect("tar_size") / 2;
        self.fetched()
            .into_iter()
            .filter(|e| e.size >= 50_000 && e.size < self.volume_size() && e.frame_offset > 0)
            .min_by_key(|e| (e.tar_offset + e.size / 2).abs_diff(middle))
            .unwrap_or_else(|| {
                panic!(
                    "the fixture has no large blob inside a volume: {:#?}",
                    self.entries
                )
            })
            .clone()
    }

    /// The fetched blob larger than a volume (cut across two).
    fn cut_blob(&self) -> Entry {
        self.fetched()
            .into_iter()
            .find(|e| e.size > self.volume_size())
            .unwrap_or_else(|| panic!("no blob larger than a volume: {:#?}", self.entries))
            .clone()
    }

    /// The first fetched blob that starts a volume `k ≥ 2` (frame offset 0).
    fn volume_starter(&self) -> Entry {
        self.fetched()
            .into_iter()
            .find(|e| e.volume >= 2 && e.frame_offset == 0)
            .unwrap_or_else(|| {
                panic!(
                    "no fetched blob starts volume 2 or later: {:#?}",
                    self.entries
                )
            })
            .clone()
    }

    /// The volume size in bytes.
    fn volume_size(&self) -> u64 {
        self.manifest["volume_size"].as_u64().expect("volume_size")
    }

    /// The number of volumes.
    fn volume_count(&self) -> usize {
        self.manifest["volumes"].as_array().expect("volumes").len()
    }
}

/// A registry with [`resume_layout`], a proxy in front of it, keys, and the
/// reference bundle made through the proxy with the arguments every run uses.
struct Case {
    _registry: TestRegistry,
    _layout: tempfile::TempDir,
    proxy: FaultProxy,
    keys: Keys,
    tmp: tempfile::TempDir,
    /// Where the interrupted runs write: `tmp/bundle`.
    out: PathBuf,
    reference: Reference,
}

impl Case {
    /// Seeds the registry and makes the reference bundle in `tmp/reference`.
    fn new() -> Case {
        let (registry, layout) = resume_registry();
        let proxy = FaultProxy::in_front_of(&registry);
        let keys = keygen();
        let tmp = temp_dir();
        let out = tmp.path().join("bundle");
        let dir = tmp.path().join("reference");
        let mut case = Case {
            _registry: registry,
            _layout: layout,
            proxy,
            keys,
            tmp,
            out,
            reference: Reference {
                sums: Vec::new(),
                manifest: Value::Null,
                entries: Vec::new(),
                files: Vec::new(),
            },
        };
        let o = case.run_into(&dir, VOLUME_SIZE, &[]);
        case.assert_exit(&o, 0, "the reference run");
        let fetched: BTreeSet<String> = case
            .proxy
            .log()
            .iter()
            .filter(|r| r.is(Kind::BlobGet))
            .filter_map(|r| r.path.rsplit('/').next().map(str::to_owned))
            .collect();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
        let entries = manifest["entries"]
            .as_array()
            .expect("bundle.json has entries")
            .iter()
            .map(|e| {
                let n = |key: &str| e[key].as_u64().unwrap_or_else(|| panic!("{key} in {e}"));
                let digest = e["digest"].as_str().expect("a digest").to_owned();
                Entry {
                    kind: e["kind"].as_str().expect("a kind").to_owned(),
                    fetched: fetched.contains(&digest),
                    digest,
                    size: n("size"),
                    volume: n("volume"),
                    frame_offset: n("frame_offset"),
                    tar_offset: n("tar_offset"),
                }
            })
            .collect();
        case.reference = Reference {
            sums: std::fs::read(dir.join("SHA256SUMS")).unwrap(),
            manifest,
            entries,
            files: files_in(&dir),
        };
        assert!(
            case.reference.volume_count() >= 4,
            "the fixture makes only {} volumes of {VOLUME_SIZE}",
            case.reference.volume_count()
        );
        case
    }

    /// `bundle create --out OUT --key KEY --from PROXY --tls-verify=false
    /// --volume-size SIZE EXTRA…`, without `BUNDLE_CRASH_AT`.
    fn command(&self, out: &Path, volume_size: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bundle"));
        cmd.arg("create")
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(&self.keys.secret)
            .args(["--from", &self.proxy.host(), "--tls-verify=false"])
            .args(["--volume-size", volume_size])
            .args(extra)
            .env_remove("BUNDLE_CRASH_AT");
        cmd
    }

    /// A run to its end (killed after [`HANG`]: then its exit code is `None`).
    fn run_into(&self, out: &Path, volume_size: &str, extra: &[&str]) -> Output {
        BundleCmd::from_std(self.command(out, volume_size, extra))
            .timeout(HANG)
            .output()
            .unwrap()
    }

    /// The same command line as the reference, into [`Case::out`], to its end.
    fn run(&self) -> Output {
        self.run_into(&self.out, VOLUME_SIZE, &[])
    }

    /// The same command line as the reference, into [`Case::out`], in the background.
    fn spawn(&self, env: &[(&str, &str)]) -> Running {
        self.spawn_with(env, &[])
    }

    /// [`Case::spawn`] with `extra` arguments that do not change the bundle (`--jobs`).
    fn spawn_with(&self, env: &[(&str, &str)], extra: &[&str]) -> Running {
        let mut cmd = self.command(&self.out, VOLUME_SIZE, extra);
        cmd.envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running {
            mark: self.mark(),
            child: Some(cmd.spawn().expect("starting bundle create")),
        }
    }

    /// Holds the first GET of `entry`'s blob after `after` body bytes.
    fn hold(&self, entry: &Entry, after: u64) {
        self.proxy.add(
            Rule::new(Kind::BlobGet, Fault::Hold { after })
                .paths(&[&entry.digest])
                .first(1),
        );
    }

    /// Waits until `run` (named `what`) is held by the proxy, panicking if it ends first.
    fn wait_held(&self, run: &mut Running, what: &str) -> Logged {
        let deadline = Instant::now() + REACH;
        loop {
            if let Some(held) = self.proxy.wait_until_held(Duration::from_millis(100)) {
                return held;
            }
            if let Some(output) = run.ended() {
                panic!(
                    "{what} ended ({}) before reaching its hold\n{}\n--- proxy log\n{}",
                    output.status,
                    text(&output),
                    self.proxy.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not reach its hold in {REACH:?}\n--- proxy log\n{}",
                self.proxy.log_text()
            );
        }
    }

    /// Once `run` is held at `held`: waits until every blob from tar offset
    /// `from` up to `held` has come whole through the proxy to this run (the
    /// blobs before `from` were written by an earlier run) and the output
    /// directory has stopped changing (what came is written), then kills
    /// `run` (SIGKILL).
    fn kill_after_writing_up_to(&self, run: Running, from: u64, held: &Entry) -> Output {
        let before: Vec<&Entry> = self
            .reference
            .fetched()
            .into_iter()
            .filter(|e| from <= e.tar_offset && e.tar_offset < held.tar_offset)
            .collect();
        let came = self.proxy.wait_for(REACH, |log| {
            before
                .iter()
                .all(|e| {
                    log[run.mark..].iter().any(|r| {
                        r.is(Kind::BlobGet)
                            && r.path.ends_with(&e.digest)
                            && r.finished
                            && r.status == 200
                            && r.sent == e.size
                    })
                })
                .then_some(())
        });
        assert!(
            came.is_some(),
            "the blobs before {} did not all come while it was held\n--- proxy log\n{}",
            held.digest,
            self.proxy.log_text()
        );
        settle(&self.out);
        self.kill(run)
    }

    /// Kills run 1 (SIGKILL) and waits until the proxy let its holds go.
    fn kill(&self, run: Running) -> Output {
        let output = run.kill();
        assert_eq!(
            output.status.signal(),
            Some(9),
            "run 1 was killed\n{}",
            text(&output)
        );
        assert!(
            self.proxy.wait_until_released(REACH),
            "the proxy still holds a request of the killed run:\n{}",
            self.proxy.log_text()
        );
        output
    }

    /// The number of requests logged so far: the next run's start.
    fn mark(&self) -> usize {
        self.proxy.log().len()
    }

    /// The digests of the blobs GET'd since `mark`.
    fn blob_gets_since(&self, mark: usize) -> Vec<String> {
        self.proxy.log()[mark..]
            .iter()
            .filter(|r| r.is(Kind::BlobGet))
            .filter_map(|r| r.path.rsplit('/').next().map(str::to_owned))
            .collect()
    }

    /// Panics with the run's output and the proxy's log unless it exited with `code`.
    fn assert_exit(&self, o: &Output, code: i32, what: &str) {
        assert_eq!(
            o.status.code(),
            Some(code),
            "{what} exited {} (no code: killed after {HANG:?}, hung)\n{}\n--- proxy log\n{}",
            o.status,
            text(o),
            self.proxy.log_text()
        );
    }

    /// Run 2 (or 3) exited 0 and [`Case::out`] holds the reference bundle:
    /// the same `SHA256SUMS` (so the same volume bytes), the same bundle.json
    /// but for `bundle_id` and `created`, the same files and nothing else
    /// (no journal left), and it verifies.
    fn assert_identical(&self, o: &Output, what: &str) {
        self.assert_exit(o, 0, what);
        let sums = std::fs::read(self.out.join("SHA256SUMS")).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&sums),
            String::from_utf8_lossy(&self.reference.sums),
            "{what}: SHA256SUMS differs from the uninterrupted run\n{}\n--- proxy log\n{}",
            text(o),
            self.proxy.log_text()
        );
        assert_eq!(
            files_in(&self.out),
            self.reference.files,
            "{what}: the files of the output directory"
        );
        let got: Value =
            serde_json::from_slice(&std::fs::read(self.out.join("bundle.json")).unwrap()).unwrap();
        let (mut got, mut want) = (got, self.reference.manifest.clone());
        for m in [&mut got, &mut want] {
            let m = m.as_object_mut().expect("bundle.json is an object");
            m.remove("bundle_id");
            m.remove("created");
        }
        for key in ["images", "entries", "volumes"] {
            assert_eq!(got[key], want[key], "{what}: bundle.json {key}");
        }
        assert_eq!(got, want, "{what}: bundle.json");
        let v = verify(&self.out, &self.keys.public, &[]);
        assert_eq!(v.status.code(), Some(0), "{what}: verify\n{}", text(&v));
    }

    /// No blob GET since `mark` of a blob whose tar offset is below `below`
    /// (those were written by an earlier run).
    fn assert_not_fetched_again(&self, mark: usize, below: u64, what: &str) {
        let again: Vec<String> = self
            .blob_gets_since(mark)
            .into_iter()
            .filter(|d| {
                self.reference
                    .entries
                    .iter()
                    .any(|e| &e.digest == d && e.tar_offset < below)
            })
            .collect();
        assert!(
            again.is_empty(),
            "{what} downloaded again blobs written before (tar offset < {below}): {again:?}\n--- proxy log\n{}",
            self.proxy.log_text()
        );
    }

    /// At least one blob GET of `entry` since `mark`.
    fn assert_fetched(&self, mark: usize, entry: &Entry, what: &str) {
        assert!(
            self.blob_gets_since(mark).contains(&entry.digest),
            "{what} never fetched {}\n--- proxy log\n{}",
            entry.digest,
            self.proxy.log_text()
        );
    }
}

/// `bundle create` in the background; killed (SIGKILL) when dropped.
struct Running {
    /// The proxy's log length when it started: its requests come after.
    mark: usize,
    child: Option<Child>,
}

impl Running {
    /// Its output if it has ended.
    fn ended(&mut self) -> Option<Output> {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("polling bundle create")?;
        Some(
            self.child
                .take()
                .expect("running")
                .wait_with_output()
                .expect("reading its output"),
        )
    }

    /// Its output once it has ended by itself (killed after [`HANG`]).
    fn wait(mut self) -> Output {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(output) = self.ended() {
                return output;
            }
            if Instant::now() >= deadline {
                return self.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and returns what it wrote until then.
    fn kill(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        // An error here means it had already ended, which the status shows.
        let _ = child.kill();
        child.wait_with_output().expect("reading its output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every file name in `dir`, hidden ones included, sorted (none if it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Every file in `dir` and the directories in it (as `sub/name`) with its
/// bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_in(dir)
        .into_iter()
        .flat_map(|name| {
            let path = dir.join(&name);
            if path.is_dir() {
                return snapshot(&path)
                    .into_iter()
                    .map(|(n, bytes)| (format!("{name}/{n}"), bytes))
                    .collect();
            }
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading {name} in {}: {e}", dir.display()));
            vec![(name, bytes)]
        })
        .collect()
}

/// Waits until the names and sizes of `dir`'s files stay the same for
/// [`SETTLED`] (at most [`REACH`]): what the killed run had in hand is written.
fn settle(dir: &Path) {
    let sizes = || -> Vec<(String, u64)> {
        files_in(dir)
            .into_iter()
            .map(|name| {
                let len = std::fs::metadata(dir.join(&name))
                    .map(|m| m.len())
                    .unwrap_or(0);
                (name, len)
            })
            .collect()
    };
    let deadline = Instant::now() + REACH;
    let (mut last, mut since) = (sizes(), Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = sizes();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= SETTLED {
            return;
        }
    }
}

/// stderr of a run, for the messages it must hold.
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Killed while the tags of the first repository are on their way (before
/// any blob): run 2 starts over cleanly and ends identical to an
/// uninterrupted run, leaving nothing of run 1 behind.
#[test]
fn killed_while_enumerating_finishes_like_an_uninterrupted_run() {
    let case = Case::new();
    case.proxy
        .add(Rule::new(Kind::TagList, Fault::Hold { after: 0 }).first(1));
    let mut run1 = case.spawn(&[]);
    let held = case.wait_held(&mut run1, "run 1");
    assert!(held.is(Kind::TagList), "{}", held.line());
    case.kill(run1);

    let o = case.run();
    case.assert_identical(&o, "run 2");
}

/// Killed half-way through a blob in the middle of the bundle: run 2 says it
/// is resuming, downloads none of the blobs written before that one, does
/// download that one, and ends identical to an uninterrupted run.
#[test]
fn killed_mid_blob_keeps_what_was_written_and_ends_identical() {
    let case = Case::new();
    let blob = case.reference.mid_blob();
    case.hold(&blob, blob.size / 2);
    let mut run1 = case.spawn(&[]);
    let held = case.wait_held(&mut run1, "run 1");
    assert!(held.path.ends_with(&blob.digest), "{}", held.line());
    assert_eq!(held.sent, blob.size / 2, "{}", held.line());
    case.kill_after_writing_up_to(run1, 0, &blob);

    let mark = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 2");
    assert!(
        stderr(&o).to_lowercase().contains("resuming"),
        "run 2 does not say it is resuming:\n{}",
        text(&o)
    );
    case.assert_not_fetched_again(mark, blob.tar_offset, "run 2");
    case.assert_fetched(mark, &blob, "run 2");
}

/// Killed when the blob that starts volume k ≥ 2 is asked for (nothing of
/// it sent): run 2 downloads no blob of volumes 0..k and ends identical.
#[test]
fn killed_at_a_volume_boundary_fetches_no_blob_of_the_volumes_before() {
    let case = Case::new();
    let blob = case.reference.volume_starter();
    case.hold(&blob, 0);
    let mut run1 = case.spawn(&[]);
    let held = case.wait_held(&mut run1, "run 1");
    assert!(held.path.ends_with(&blob.digest), "{}", held.line());
    case.kill_after_writing_up_to(run1, 0, &blob);

    let mark = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 2");
    let earlier: Vec<&Entry> = case
        .reference
        .entries
        .iter()
        .filter(|e| e.volume < blob.volume)
        .collect();
    let again: Vec<String> = case
        .blob_gets_since(mark)
        .into_iter()
        .filter(|d| earlier.iter().any(|e| &e.digest == d))
        .collect();
    assert!(
        again.is_empty(),
        "run 2 downloaded again blobs of volumes before {}: {again:?}\n--- proxy log\n{}",
        blob.volume,
        case.proxy.log_text()
    );
    case.assert_fetched(mark, &blob, "run 2");
}

/// The spool directory of a create in progress (downloads ahead of the writer).
const SPOOL_DIR: &str = ".bundle-create.spool";

/// The blobs whole in `out`'s spool directory (named by their digest's hex
/// part; a partial download has another name), as digests.
fn spooled_whole(out: &Path) -> BTreeSet<String> {
    files_in(&out.join(SPOOL_DIR))
        .into_iter()
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|n| format!("sha256:{n}"))
        .collect()
}

/// Killed while the writer waits on the first blob (held half-way) and every
/// blob after it has come whole ahead of the writer (the spool is full):
/// run 2 downloads only the blobs that were not whole in the spool directory
/// at the kill (the held one) and one spooled blob whose file was damaged
/// meanwhile (named in a warning), no other byte, and ends identical.
#[test]
fn killed_with_a_full_spool_fetches_again_only_the_blobs_in_flight() {
    let case = Case::new();
    let fetched: Vec<Entry> = case.reference.fetched().into_iter().cloned().collect();
    let (held_blob, ahead) = fetched.split_first().expect("the fixture fetches blobs");
    assert!(
        ahead.len() >= 4,
        "too few blobs after the first: {ahead:#?}"
    );
    case.hold(held_blob, held_blob.size / 2);
    let mut run1 = case.spawn(&[]);
    let held = case.wait_held(&mut run1, "run 1");
    assert!(held.path.ends_with(&held_blob.digest), "{}", held.line());
    // The writer waits on the held blob; the others come whole ahead of it.
    let came = case.proxy.wait_for(REACH, |log| {
        ahead
            .iter()
            .all(|e| {
                log[run1.mark..].iter().any(|r| {
                    r.is(Kind::BlobGet)
                        && r.path.ends_with(&e.digest)
                        && r.finished
                        && r.sent == e.size
                })
            })
            .then_some(())
    });
    assert!(
        came.is_some(),
        "the blobs after {} did not all come while it was held\n--- proxy log\n{}",
        held_blob.digest,
        case.proxy.log_text()
    );
    let want: BTreeSet<String> = ahead.iter().map(|e| e.digest.clone()).collect();
    let deadline = Instant::now() + REACH;
    while !spooled_whole(&case.out).is_superset(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let spooled = spooled_whole(&case.out);
    assert!(
        spooled.is_superset(&want),
        "run 1 received {} blobs ahead of the writer, but its spool directory holds only \
         {spooled:?} whole ({:?} in all)",
        want.len(),
        files_in(&case.out.join(SPOOL_DIR))
    );
    case.kill(run1);
    let spooled = spooled_whole(&case.out);

    // One spooled blob changes while nothing runs: it must not be used.
    let damaged = &ahead[ahead.len() / 2];
    let path = case
        .out
        .join(SPOOL_DIR)
        .join(damaged.digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let mark = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 2");
    assert!(
        stderr(&o).contains(&damaged.digest) && stderr(&o).contains("fetched again"),
        "run 2 does not name the damaged spooled blob {}:\n{}",
        damaged.digest,
        text(&o)
    );
    // What run 2 may fetch: what was not whole on disk at the kill, and the damaged one.
    let allowed: Vec<&Entry> = fetched
        .iter()
        .filter(|e| !spooled.contains(&e.digest) || e.digest == damaged.digest)
        .collect();
    let gets = case.blob_gets_since(mark);
    let again: Vec<&String> = gets
        .iter()
        .filter(|d| !allowed.iter().any(|e| &&e.digest == d))
        .collect();
    assert!(
        again.is_empty(),
        "run 2 downloaded again blobs whole in the spool at the kill: {again:?}\n--- proxy log\n{}",
        case.proxy.log_text()
    );
    let served: u64 = case.proxy.log()[mark..]
        .iter()
        .filter(|r| r.is(Kind::BlobGet))
        .map(|r| r.sent)
        .sum();
    let bound: u64 = allowed.iter().map(|e| e.size).sum();
    assert!(
        served <= bound,
        "run 2 was served {served} blob bytes, more than the {bound} of the blobs in flight \
         at the kill and the damaged one\n--- proxy log\n{}",
        case.proxy.log_text()
    );
    case.assert_fetched(mark, held_blob, "run 2");
    case.assert_fetched(mark, damaged, "run 2");
}

/// Run 1 kills itself at `crash_at` (debug builds); `check` looks at what it
/// left; run 2 finishes without a single blob GET and ends identical.
fn crash_then_resume(crash_at: &str, check: impl Fn(&Case)) {
    let case = Case::new();
    let run1 = case.spawn(&[("BUNDLE_CRASH_AT", crash_at)]).wait();
    assert_eq!(
        run1.status.signal(),
        Some(9),
        "run 1 with BUNDLE_CRASH_AT={crash_at} was not killed by SIGKILL ({})\n{}",
        run1.status,
        text(&run1)
    );
    assert!(
        !case.out.join("bundle.json").exists(),
        "bundle.json written before the crash at {crash_at}"
    );
    check(&case);
    let mark = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 2");
    let gets = case.blob_gets_since(mark);
    assert!(
        gets.is_empty(),
        "run 2 after the crash at {crash_at} downloaded blobs again: {gets:?}\n--- proxy log\n{}",
        case.proxy.log_text()
    );
}

/// Killed after every volume is written, before anything is signed.
#[test]
fn killed_before_signing_finishes_without_fetching_a_blob() {
    crash_then_resume("before-sign", |case| {
        assert_eq!(
            volumes(&case.out).len(),
            case.reference.volume_count(),
            "every volume is written before signing: {:?}",
            files_in(&case.out)
        );
        assert!(
            !case.out.join("bundle.json.minisig").exists(),
            "a signature was written before signing"
        );
    });
}

/// Killed after SHA256SUMS and the signature are written, before bundle.json.
#[test]
fn killed_before_bundle_json_finishes_without_fetching_a_blob() {
    crash_then_resume("before-manifest", |case| {
        for name in ["SHA256SUMS", "bundle.json.minisig"] {
            assert!(
                case.out.join(name).exists(),
                "{name} is written before bundle.json: {:?}",
                files_in(&case.out)
            );
        }
    });
}

/// Killed mid-blob, then run 2 killed further on, three quarters into the
/// blob larger than a volume (so inside the next volume), then run 3
/// finishes: identical, and neither run 2 nor run 3 downloads what the runs
/// before them wrote.
#[test]
fn killed_twice_then_finished_is_identical() {
    let case = Case::new();
    let (first, second) = (case.reference.mid_blob(), case.reference.cut_blob());
    assert!(
        second.tar_offset > first.tar_offset,
        "the cut blob comes after {first:?}: {second:?}"
    );
    case.hold(&first, first.size / 2);
    // One download at a time: run 1 fetches nothing ahead of the held blob,
    // so run 2 has `second` to fetch (and be held on).
    let mut run1 = case.spawn_with(&[], &["--jobs", "1"]);
    case.wait_held(&mut run1, "run 1");
    case.kill_after_writing_up_to(run1, 0, &first);

    // Added only now, so that run 1 cannot use it up.
    case.hold(&second, second.size * 3 / 4);
    let mut run2 = case.spawn(&[]);
    let mark2 = run2.mark;
    let held = case.wait_held(&mut run2, "run 2");
    assert!(held.path.ends_with(&second.digest), "{}", held.line());
    let run2 = case.kill_after_writing_up_to(run2, first.tar_offset, &second);
    case.assert_not_fetched_again(mark2, first.tar_offset, "run 2");
    case.assert_fetched(mark2, &first, "run 2");
    assert!(
        stderr(&run2).to_lowercase().contains("resuming"),
        "run 2 does not say it is resuming:\n{}",
        text(&run2)
    );

    let mark3 = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 3");
    case.assert_not_fetched_again(mark3, second.tar_offset, "run 3");
    case.assert_fetched(mark3, &second, "run 3");
}

/// Killed at the start of volume k ≥ 2, then a byte in the middle of the
/// finished volume 000 is flipped: run 2 notices, names the volume, fetches
/// again what it cut, and still ends identical to an uninterrupted run.
#[test]
fn a_byte_flipped_in_a_finished_volume_is_named_fetched_again_and_mended() {
    let case = Case::new();
    let blob = case.reference.volume_starter();
    case.hold(&blob, 0);
    let mut run1 = case.spawn(&[]);
    case.wait_held(&mut run1, "run 1");
    case.kill_after_writing_up_to(run1, 0, &blob);

    let first = case.out.join("images.tar.zst.00000");
    let mut bytes = std::fs::read(&first).expect("run 1 wrote volume 000");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    // The entry whose frame holds the flipped byte.
    let damaged = case
        .reference
        .entries
        .iter()
        .rfind(|e| e.volume == 0 && e.frame_offset <= middle as u64)
        .expect("an entry at the start of volume 000")
        .clone();

    let mark = case.mark();
    let o = case.run();
    case.assert_identical(&o, "run 2");
    assert!(
        stderr(&o).contains("images.tar.zst.00000"),
        "run 2 does not name the damaged volume:\n{}",
        text(&o)
    );
    if damaged.fetched {
        case.assert_fetched(mark, &damaged, "run 2");
    }
}

/// Killed mid-blob, then run 2 asks for another volume size (or compression
/// level): refused with exit 2 naming the directory, every file left as it
/// was; the first command line still finishes it identically afterwards.
#[test]
fn other_arguments_are_refused_and_touch_nothing() {
    let case = Case::new();
    let blob = case.reference.mid_blob();
    case.hold(&blob, blob.size / 2);
    let mut run1 = case.spawn(&[]);
    case.wait_held(&mut run1, "run 1");
    case.kill_after_writing_up_to(run1, 0, &blob);
    let before = snapshot(&case.out);
    assert!(!before.is_empty(), "run 1 left nothing to resume");

    for (volume_size, extra) in [
        ("512K", &[][..]),
        (VOLUME_SIZE, &["--compression-level", "3"]),
    ] {
        let o = case.run_into(&case.out, volume_size, extra);
        let what = format!("run 2 with --volume-size {volume_size} {extra:?}");
        case.assert_exit(&o, 2, &what);
        assert!(
            stderr(&o).contains(&case.out.display().to_string()),
            "{what} does not name {}:\n{}",
            case.out.display(),
            text(&o)
        );
        let after = snapshot(&case.out);
        assert_eq!(
            after.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
            before.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>(),
            "{what} changed the files"
        );
        assert!(after == before, "{what} changed the bytes of a file");
    }

    let o = case.run();
    case.assert_identical(&o, "run 3 with the first arguments");
}

/// `--jobs N` keeps up to N blob downloads in flight (every blob trickles in,
/// so they overlap), and the bundle does not depend on N.
#[test]
fn jobs_bounds_the_blob_downloads_in_flight() {
    let case = Case::new();
    case.proxy.add(
        Rule::new(
            Kind::BlobGet,
            Fault::Trickle {
                bytes_per_sec: 250_000,
            },
        )
        .always(),
    );
    for jobs in [4, 1] {
        case.proxy.reset_max_in_flight();
        let out = case.tmp.path().join(format!("jobs-{jobs}"));
        let o = case.run_into(&out, VOLUME_SIZE, &["--jobs", &jobs.to_string()]);
        case.assert_exit(&o, 0, &format!("--jobs {jobs}"));
        assert_eq!(
            case.proxy.max_in_flight(Kind::BlobGet),
            jobs,
            "blob GETs in flight at once with --jobs {jobs}\n--- proxy log\n{}",
            case.proxy.log_text()
        );
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(out.join("SHA256SUMS")).unwrap()),
            String::from_utf8_lossy(&case.reference.sums),
            "--jobs {jobs} made other volumes"
        );
        let v = verify(&out, &case.keys.public, &[]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    }
}

/// The source changed between the runs (resume/tool:4 now names the app
/// image): run 2 bundles what the source holds now, keeps the blobs run 1
/// wrote that no image needs any more (they are whole and verified, and
/// cutting them out would mean rewriting the volumes), and says so.
#[test]
fn a_source_changed_between_runs_is_bundled_as_it_is_now_with_a_warning() {
    let case = Case::new();
    let run1 = case.spawn(&[("BUNDLE_CRASH_AT", "before-sign")]).wait();
    assert_eq!(run1.status.signal(), Some(9), "{}", text(&run1));
    let host = case._registry.host();
    let copy = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .args(skopeo_src_flags(&case._registry))
        .args(skopeo_dest_flags(&case._registry))
        .arg(format!("docker://{host}/resume/app:1"))
        .arg(format!("docker://{host}/resume/tool:4"))
        .output()
        .expect("skopeo runs");
    assert!(copy.status.success(), "retagging: {}", text(&copy));

    let o = case.run();
    case.assert_exit(&o, 0, "run 2");
    assert!(
        text(&o).contains("that no image needs any more"),
        "{}",
        text(&o)
    );
    let v = verify(&case.out, &case.keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.out.join("bundle.json")).unwrap()).unwrap();
    let digest_of = |reference: &str| {
        m["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reference"] == reference)
            .map(|i| i["digest"].clone())
            .unwrap_or_else(|| panic!("{reference} in bundle.json"))
    };
    assert_eq!(digest_of("resume/tool:4"), digest_of("resume/app:1"));
}

/// A second create into a directory another create is writing refuses at
/// once (it holds the directory's lock) and changes nothing there; once the
/// first is gone, the same command continues its work.
#[test]
fn a_second_create_into_the_same_directory_is_refused_while_the_first_runs() {
    let case = Case::new();
    let blob = case.reference.mid_blob();
    case.hold(&blob, blob.size / 2);
    let mut run1 = case.spawn(&[]);
    case.wait_held(&mut run1, "run 1");
    settle(&case.out);
    let before = snapshot(&case.out);
    let o = case.run();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("another bundle create is writing into"),
        "{}",
        text(&o)
    );
    assert_eq!(
        snapshot(&case.out),
        before,
        "the refused run changed the directory"
    );
    case.kill(run1);
    let o = case.run();
    case.assert_identical(&o, "run 3");
}
