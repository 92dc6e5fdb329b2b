//! The medium's file kinds and sizes, the trusted keys, and the target's
//! file system. Nothing on the medium is opened blocking or read unless it
//! is a regular file (a FIFO named `bundle.json` would otherwise block
//! `open()` forever, with no key needed); a volume of the wrong size is not
//! read past its declared size (a huge sparse one not at all); every trusted
//! key with the signature's key id is tried; extracted files get fixed modes
//! whatever the umask; extract and create check free space before writing.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use bundle::manifest;

use super::{Case, Forge, forge};
use crate::common::*;
use crate::support::*;

/// No command may take longer than this on these tiny bundles: a blocking
/// open or a read of a huge file would (the run is then killed and fails).
const NO_HANG: Duration = Duration::from_secs(60);

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// `bundle ARGS…` from `cwd` with no trusted key added (the cases that give
/// their own), killed (and failing the test) past [`NO_HANG`].
fn run(cwd: &Path, args: &[&std::ffi::OsStr]) -> Output {
    bundle_cmd()
        .current_dir(cwd)
        .args(args)
        .timeout(NO_HANG)
        .output()
        .unwrap()
}

/// verify, extract, `list --pubkey` (unless `volumes`: list reads no
/// volume) and push (to a port where nothing listens: nothing may be sent)
/// of `bundle`: each exits `code` naming every needle.
fn every_command(
    fx: &Forge,
    case: &Case,
    bundle: &Path,
    volumes: bool,
    code: i32,
    needles: &[&str],
) {
    let layout = case.cwd.join("layout");
    let target = format!("127.0.0.1:{}/mirror", crate::support::registry::free_port());
    let commands: [Vec<&std::ffi::OsStr>; 4] = [
        vec!["verify".as_ref(), bundle.as_ref()],
        vec![
            "extract".as_ref(),
            bundle.as_ref(),
            "--to".as_ref(),
            layout.as_ref(),
        ],
        vec!["list".as_ref(), bundle.as_ref()],
        vec![
            "push".as_ref(),
            bundle.as_ref(),
            "--to".as_ref(),
            target.as_ref(),
            "--tls-verify=false".as_ref(),
        ],
    ];
    for args in commands {
        if volumes && args[0] == "list" {
            continue;
        }
        let out = fx.run(case, &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{:?}:\n{t}", args[0]);
        for n in needles {
            assert!(t.contains(n), "{:?}: expected {n:?} in:\n{t}", args[0]);
        }
        assert!(!layout.join("index.json").exists(), "{t}");
        // Nothing unread is reported as checked.
        assert!(
            !t.contains(" complete") && !t.contains("agrees with bundle.json"),
            "{:?} claims checks it did not make:\n{t}",
            args[0]
        );
    }
}

#[test]
fn files_on_the_medium_that_are_not_regular_files_are_refused_at_once() {
    let fx = forge();
    for name in [manifest::FILE_NAME, manifest::SIGNATURE_FILE_NAME] {
        let case = fx.case(&format!("fifo-{name}"));
        copy_dir_all(&fx.good, &case.bundle);
        mkfifo(&case.bundle.join(name));
        every_command(&fx, &case, &case.bundle, false, 1, &[name, "is a FIFO"]);
        // Without a key, list opens bundle.json all the same.
        if name == manifest::FILE_NAME {
            let out = run(&case.cwd, &["list".as_ref(), case.bundle.as_os_str()]);
            assert_eq!(out.status.code(), Some(2), "{}", text(&out));
            assert!(text(&out).contains("is a FIFO"), "{}", text(&out));
        }
    }

    // bundle.json as a link to a genuine copy: the medium's files must be the files.
    let case = fx.case("link-bundle-json");
    copy_dir_all(&fx.good, &case.bundle);
    let elsewhere = case.dir.join("elsewhere.json");
    fs::rename(case.bundle.join(manifest::FILE_NAME), &elsewhere).unwrap();
    symlink(&elsewhere, case.bundle.join(manifest::FILE_NAME)).unwrap();
    every_command(&fx, &case, &case.bundle, false, 1, &["is a symbolic link"]);

    // A FIFO, or a link, as a volume: refused by name before it is opened.
    let volume = manifest::volume_name(0);
    let case = fx.case("fifo-volume");
    copy_dir_all(&fx.good, &case.bundle);
    mkfifo(&case.bundle.join(&volume));
    every_command(&fx, &case, &case.bundle, true, 1, &[&volume, "a FIFO"]);
    let case = fx.case("link-volume");
    copy_dir_all(&fx.good, &case.bundle);
    let moved = case.dir.join("volume");
    fs::rename(case.bundle.join(&volume), &moved).unwrap();
    symlink(&moved, case.bundle.join(&volume)).unwrap();
    every_command(
        &fx,
        &case,
        &case.bundle,
        true,
        1,
        &[&volume, "a symbolic link"],
    );

    // SHA256SUMS is not trusted: a FIFO there is a warning, and the genuine
    // bundle verifies.
    let case = fx.case("fifo-sums");
    copy_dir_all(&fx.good, &case.bundle);
    mkfifo(&case.bundle.join(manifest::SUMS_FILE_NAME));
    let out = fx.verify(&case, &case.bundle);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("SHA256SUMS") && t.contains("is a FIFO"), "{t}");
}

#[test]
fn a_fifo_among_the_trusted_keys_is_refused_at_once() {
    let fx = forge();
    let case = fx.case("fifo-key");
    let keys = case.dir.join("keys");
    fs::create_dir_all(&keys).unwrap();
    fs::copy(&fx.keys.public, keys.join("bastion.pub")).unwrap();
    mkfifo(&keys.join("rotated.pub"));
    for pubkey in [keys.clone(), keys.join("rotated.pub")] {
        let out = run(
            &case.cwd,
            &[
                "verify".as_ref(),
                fx.good.as_os_str(),
                "--pubkey".as_ref(),
                pubkey.as_os_str(),
            ],
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains("rotated.pub") && t.contains("is a FIFO"), "{t}");
    }
}

/// A volume larger than bundle.json says is refused without being read: a
/// sparse 1 TiB file would take hours to hash.
#[test]
fn a_volume_of_the_wrong_size_is_not_read_past_its_declared_size() {
    let fx = forge();
    let case = fx.case("sparse-volume");
    copy_dir_all(&fx.good, &case.bundle);
    let volume = case.bundle.join(manifest::volume_name(0));
    let f = fs::OpenOptions::new().write(true).open(&volume).unwrap();
    f.set_len(1 << 40).unwrap();
    drop(f);
    let expected = fx.manifest.volumes[0].size;
    every_command(
        &fx,
        &case,
        &case.bundle,
        true,
        1,
        &[&format!(
            "volume is 1099511627776 bytes, bundle.json says {expected}"
        )],
    );
}

/// Key ids are 64 bits: two trusted keys may share one (by chance, or a key
/// given twice in a rotation). Each is tried; the bundle verifies with the
/// one that signed it, whichever comes first.
#[test]
fn every_trusted_key_with_the_signature_key_id_is_tried() {
    let fx = forge();
    let case = fx.case("same-key-id");
    let b64 = base64::engine::general_purpose::STANDARD;
    let genuine = fs::read_to_string(&fx.keys.public).unwrap();
    let other = keygen();
    let other_text = fs::read_to_string(&other.public).unwrap();
    let line = |t: &str| t.lines().nth(1).unwrap().to_owned();
    let mut impostor = b64.decode(line(&genuine)).unwrap();
    let other_bytes = b64.decode(line(&other_text)).unwrap();
    // Algorithm and key id of the genuine key, the public key of the other.
    impostor[10..].copy_from_slice(&other_bytes[10..]);
    let keys = case.dir.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let impostor_path = keys.join("a-impostor.pub");
    fs::write(
        &impostor_path,
        genuine.replacen(&line(&genuine), &b64.encode(&impostor), 1),
    )
    .unwrap();
    fs::copy(&fx.keys.public, keys.join("b-genuine.pub")).unwrap();
    for pubkeys in [
        vec![impostor_path.clone(), fx.keys.public.clone()],
        vec![keys.clone()],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec!["verify".as_ref(), fx.good.as_os_str()];
        for k in &pubkeys {
            args.extend(["--pubkey".as_ref(), k.as_os_str()]);
        }
        let out = run(&case.cwd, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    // The impostor alone is tried and refused.
    let out = run(
        &case.cwd,
        &[
            "verify".as_ref(),
            fx.good.as_os_str(),
            "--pubkey".as_ref(),
            impostor_path.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// Every file and directory extract makes has mode 0644 or 0755, whatever
/// the umask (a world-writable layout under umask 000 could be changed
/// between extract and skopeo; a 0600 one under 077 would not be readable by
/// the registry's user).
#[test]
fn extracted_files_get_fixed_modes_whatever_the_umask() {
    let fx = forge();
    for umask in ["000", "077"] {
        let case = fx.case(&format!("umask-{umask}"));
        let out = Command::new("sh")
            .args(["-c", &format!("umask {umask}; exec \"$@\""), "sh"])
            .arg(env!("CARGO_BIN_EXE_bundle"))
            .arg("extract")
            .arg(&fx.good)
            .arg("--pubkey")
            .arg(&fx.keys.public)
            .arg("--to")
            .arg(&case.layout)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let mut seen = 0;
        for path in walk(&case.layout) {
            let meta = fs::symlink_metadata(&path).unwrap();
            let want = if meta.is_dir() { 0o755 } else { 0o644 };
            let mode = meta.permissions().mode() & 0o7777;
            assert_eq!(mode, want, "umask {umask}: {} is {mode:o}", path.display());
            seen += 1;
        }
        assert!(seen >= 6, "umask {umask}: only {seen} paths");
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// `script` run by sh in a private mount namespace with a tmpfs of `size`
/// mounted on `dir` (needs root, as CI runs); `$BUNDLE` is the binary.
fn on_small_tmpfs(dir: &Path, size: &str, script: &str) -> Output {
    fs::create_dir_all(dir).unwrap();
    let wrapped =
        format!("mount -t tmpfs -o size={size} bundle-test \"$DIR\" || exit 99\n{script}");
    Command::new("unshare")
        .args(["-m", "sh", "-c", &wrapped])
        .env("DIR", dir)
        .env("BUNDLE", env!("CARGO_BIN_EXE_bundle"))
        .output()
        .expect("unshare (util-linux) runs")
}

/// extract refuses a target file system too small for the bundle before
/// reading a volume (saying what it needs), and create stops cleanly before
/// a volume that would not fit, then resumes once there is room: the bundle
/// verifies.
#[test]
fn extract_and_create_check_free_space_before_writing() {
    let tmp = temp_dir();
    let source = LayoutBuilder::new(tmp.path().join("source"))
        .image(
            "app/big:1",
            ImageSpec::new(vec![
                LayerSpec::unique(1 << 20),
                LayerSpec::unique(1 << 20),
                LayerSpec::unique(1 << 20),
            ]),
        )
        .build();
    let keys = keygen();
    let from = format!("oci:{}", source.dir.display());

    let small = tmp.path().join("small");
    let out = on_small_tmpfs(
        &small,
        "2600k",
        r#"
"$BUNDLE" create --from "$FROM" --volume-size 1M --key "$KEY" --out "$DIR/bundle"; echo "rc1=$?"
mount -o remount,size=64m "$DIR" || exit 98
"$BUNDLE" create --from "$FROM" --volume-size 1M --key "$KEY" --out "$DIR/bundle"; echo "rc2=$?"
"$BUNDLE" verify "$DIR/bundle" --pubkey "$PUB"; echo "rc3=$?"
"#
        .replace("$FROM", &from)
        .replace("$KEY", &keys.secret.display().to_string())
        .replace("$PUB", &keys.public.display().to_string())
        .as_str(),
    );
    let t = text(&out);
    assert!(t.contains("rc1=2"), "{t}");
    assert!(
        t.contains("not enough space for") && t.contains("run the same command again"),
        "{t}"
    );
    assert!(t.contains("rc2=0") && t.contains("resum"), "{t}");
    assert!(t.contains("rc3=0") && t.contains("VERIFIED"), "{t}");

    let bundle = tmp.path().join("bundle");
    create_ok(&bundle, &keys.secret, &["--from", &from]);
    let target = tmp.path().join("target");
    let out = on_small_tmpfs(
        &target,
        "1m",
        &format!(
            "\"$BUNDLE\" extract '{}' --pubkey '{}' --to \"$DIR/layout\"; echo \"rc=$?\"; ls -A \"$DIR/layout/blobs/sha256\" | wc -l",
            bundle.display(),
            keys.public.display()
        ),
    );
    let t = text(&out);
    assert!(t.contains("rc=2"), "{t}");
    assert!(
        t.contains("extract needs") && t.contains("on the file system of") && t.contains("free"),
        "{t}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with("\n0"),
        "a blob was written: {t}"
    );
}

/// The mirror configuration is never written through a link planted at its
/// directory (the default `bundle-mirror-<id>` is named from the medium) or
/// above it, and a directory that is a file or a link (default or
/// `--mirror-config`) is refused before anything is pushed.
#[test]
fn mirror_configuration_is_never_written_through_a_link() {
    let b = bundled("1M");
    let target = TestRegistry::start();
    let id = BundleManifestJson::read(&b.dir).bundle_id;
    let work = b.tmp.path().join("work");
    let elsewhere = b.tmp.path().join("elsewhere");
    fs::create_dir_all(&work).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("registries.conf"), "ORIGINAL").unwrap();
    symlink(&elsewhere, work.join(format!("bundle-mirror-{id}"))).unwrap();
    let push = |extra: &[&str]| {
        bundle_cmd()
            .current_dir(&work)
            .arg("push")
            .arg(&b.dir)
            .arg("--pubkey")
            .arg(&b.keys.public)
            .args([
                "--to",
                &format!("{}/mirror", target.host()),
                "--tls-verify=false",
            ])
            .args(extra)
            .timeout(NO_HANG)
            .output()
            .unwrap()
    };
    let out = push(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("is a symbolic link"), "{t}");
    assert_eq!(
        fs::read_to_string(elsewhere.join("registries.conf")).unwrap(),
        "ORIGINAL"
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1, "{t}");
    // Found before anything was sent, not after the tags were set.
    let pushed = target.repositories();
    assert!(pushed.is_empty(), "pushed before refusing: {pushed:?}");

    // Explicit directories: a file, a link, a link above it: refused before
    // a byte is pushed (the second target stays empty).
    let second = TestRegistry::start();
    let file = work.join("a-file");
    fs::write(&file, "x").unwrap();
    let linked = work.join("linked");
    symlink(&elsewhere, &linked).unwrap();
    for dir in [file.clone(), linked.clone(), linked.join("below")] {
        let out = bundle_cmd()
            .current_dir(&work)
            .arg("push")
            .arg(&b.dir)
            .arg("--pubkey")
            .arg(&b.keys.public)
            .args([
                "--to",
                &format!("{}/mirror", second.host()),
                "--tls-verify=false",
                "--mirror-config",
            ])
            .arg(&dir)
            .timeout(NO_HANG)
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {t}", dir.display());
        assert!(
            t.contains("not a directory") || t.contains("is a symbolic link"),
            "{t}"
        );
    }
    let pushed = second.repositories();
    assert!(pushed.is_empty(), "pushed before refusing: {pushed:?}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
}

/// bundle.json's id, read without the library (as a test sees the file).
struct BundleManifestJson {
    bundle_id: String,
}

impl BundleManifestJson {
    fn read(dir: &Path) -> Self {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(manifest::FILE_NAME)).unwrap()).unwrap();
        BundleManifestJson {
            bundle_id: v["bundle_id"].as_str().unwrap().to_owned(),
        }
    }
}

/// Files named like volumes that bundle.json does not list are reported by
/// name up to 100, then counted: a medium holding millions of them makes a
/// report of bounded size (and memory), with the right count.
#[test]
fn extra_volume_files_are_named_up_to_a_limit_then_counted() {
    let fx = forge();
    let case = fx.case("many-extra-volumes");
    copy_dir_all(&fx.good, &case.bundle);
    for i in 0..1_000 {
        fs::write(case.bundle.join(format!("images.tar.zst.x{i:04}")), b"").unwrap();
    }
    // The bundle directory given again as another medium counts once.
    let out = fx.run(
        &case,
        &[
            "verify".as_ref(),
            case.bundle.as_os_str(),
            "--json".as_ref(),
            "--volumes-from".as_ref(),
            case.bundle.as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let named: Vec<&str> = findings
        .iter()
        .filter(|f| f["message"] == "extra volume not listed in bundle.json")
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 100, "{findings:?}");
    assert_eq!(named[0], "images.tar.zst.x0000");
    assert_eq!(named[99], "images.tar.zst.x0099");
    assert!(
        findings
            .iter()
            .any(|f| f["message"]
                == "900 more files named like volumes that bundle.json does not list"),
        "{findings:?}"
    );
}

/// A layout whose index.json this bundle would grow past what bundle reads
/// back as one is refused before a volume is read (it could never be added
/// to again); and paths that are not UTF-8 (a medium's label can be
/// anything) still give a whole `--json` report.
#[test]
fn extract_refuses_a_layout_index_it_could_not_read_back_and_reports_any_path() {
    use std::os::unix::ffi::OsStrExt;
    let fx = forge();
    let case = fx.case("index-near-cap");
    fs::create_dir_all(case.layout.join("blobs/sha256")).unwrap();
    let filler = "x".repeat((64 << 20) - 100);
    fs::write(
        case.layout.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[],"annotations":{{"x":"{filler}"}}}}"#),
    )
    .unwrap();
    let out = fx.extract(&case, &fx.good);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("would grow to up to"), "{t}");
    assert_eq!(
        fs::read_dir(case.layout.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    let odd = case.dir.join(std::ffi::OsStr::from_bytes(b"medium-\xff"));
    copy_dir_all(&fx.good, &odd);
    let layout = case.dir.join(std::ffi::OsStr::from_bytes(b"layout-\xfe"));
    let out = fx.run(
        &case,
        &[
            "extract".as_ref(),
            odd.as_os_str(),
            "--to".as_ref(),
            layout.as_os_str(),
            "--json".as_ref(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["published"], true);
    assert!(
        report["layout"]
            .as_str()
            .unwrap()
            .ends_with("layout-\u{fffd}")
    );
    assert!(
        report["verify"]["bundle"]
            .as_str()
            .unwrap()
            .ends_with("medium-\u{fffd}")
    );
}
