//! Helpers shared by the command tests: keys, create/verify runs, the
//! standard-tools extraction path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{StandardFixture, bundle_cmd, require_tool, run, standard_fixture, temp_dir};

/// A fresh key pair made by `bundle keygen` (secret `…/k.key`, public `…/k.pub`).
pub struct Keys {
    _dir: tempfile::TempDir,
    /// The secret key.
    pub secret: PathBuf,
    /// The public key.
    pub public: PathBuf,
}

/// Runs `bundle keygen` into a temp dir.
pub fn keygen() -> Keys {
    let dir = temp_dir();
    let prefix = dir.path().join("k");
    bundle_cmd()
        .arg("keygen")
        .arg("--out")
        .arg(&prefix)
        .assert()
        .success();
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "keygen must write the secret key with mode 0600"
    );
    Keys {
        _dir: dir,
        secret,
        public,
    }
}

/// Runs `bundle create --out OUT --key KEY ARGS…` and returns its output (any exit code).
pub fn create(out: &Path, key: &Path, args: &[&str]) -> Output {
    let mut cmd = bundle_cmd();
    cmd.arg("create")
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .args(args);
    cmd.output().unwrap()
}

/// Like [`create`], panicking with the output unless it succeeds.
pub fn create_ok(out: &Path, key: &Path, args: &[&str]) -> Output {
    let output = create(out, key, args);
    assert!(
        output.status.success(),
        "bundle create failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `bundle verify DIR --pubkey KEY ARGS…`.
pub fn verify(dir: &Path, pubkey: &Path, args: &[&str]) -> Output {
    bundle_cmd()
        .arg("verify")
        .arg(dir)
        .arg("--pubkey")
        .arg(pubkey)
        .args(args)
        .output()
        .unwrap()
}

/// stdout and stderr of an output, as one string for assertions.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The volumes of a bundle directory, in order.
pub fn volumes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("images.tar.zst.")
        })
        .collect();
    v.sort();
    v
}

/// The standard-tools path of the README, run by a shell exactly as written there:
/// `minisign -Vm`, `sha256sum -c`, `cat … | zstd -d | tar -x`. Returns the layout.
pub fn standard_tools_extract(bundle: &Path, pubkey: &Path, layout: &Path) {
    for (tool, package) in [
        ("minisign", "minisign"),
        ("sha256sum", "coreutils"),
        ("zstd", "zstd"),
        ("tar", "tar"),
    ] {
        require_tool(tool, package);
    }
    std::fs::create_dir_all(layout).unwrap();
    let script = format!(
        "set -euo pipefail\n\
         cd '{}'\n\
         minisign -Vm bundle.json -p '{}'\n\
         sha256sum -c SHA256SUMS\n\
         cat images.tar.zst.* | zstd -d | tar -x -C '{}'\n",
        bundle.display(),
        pubkey.display(),
        layout.display()
    );
    run(Command::new("bash").arg("-c").arg(script));
}

/// The layout's index.json entries as (ref name, digest, media type).
pub fn layout_refs(layout: &Path) -> Vec<(String, String, String)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                d["digest"].as_str().unwrap().to_owned(),
                d["mediaType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `bundle list DIR --json` parsed.
pub fn list_json(dir: &Path, pubkey: &Path) -> serde_json::Value {
    let out = bundle_cmd()
        .arg("list")
        .arg(dir)
        .arg("--pubkey")
        .arg(pubkey)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The image references a bundle lists, sorted.
pub fn listed_references(dir: &Path, pubkey: &Path) -> Vec<String> {
    let mut refs: Vec<String> = list_json(dir, pubkey)["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_owned())
        .collect();
    refs.sort();
    refs
}

/// A bundle of the standard fixture in small volumes, with its keys.
pub struct Bundled {
    /// The source registry and what it holds.
    pub fx: StandardFixture,
    /// The signing keys.
    pub keys: Keys,
    /// Holds the bundle; free for other outputs.
    pub tmp: tempfile::TempDir,
    /// `tmp/bundle`.
    pub dir: PathBuf,
}

/// The standard fixture bundled with `bundle create … ARGS`.
pub fn bundled_with(args: &[&str]) -> Bundled {
    let fx = standard_fixture();
    let keys = keygen();
    let tmp = temp_dir();
    let dir = tmp.path().join("bundle");
    let host = fx.registry.host();
    let mut all = vec!["--from", &host, "--tls-verify=false"];
    all.extend_from_slice(args);
    create_ok(&dir, &keys.secret, &all);
    Bundled { fx, keys, tmp, dir }
}

/// The standard fixture bundled in volumes of `volume_size`.
pub fn bundled(volume_size: &str) -> Bundled {
    bundled_with(&["--volume-size", volume_size])
}
