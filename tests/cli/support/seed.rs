//! Filling a [`TestRegistry`] with images through real `skopeo` (an
//! independent client) and reading manifests back with `curl`.
//!
//! skopeo 1.9.3 flags, as measured against docker-registry 2.8.2:
//!
//! | source in the layout | flags                  | served media type                      |
//! |----------------------|------------------------|----------------------------------------|
//! | OCI manifest         | (none)                 | `…oci.image.manifest.v1+json`          |
//! | OCI manifest         | `--format v2s2`        | `…docker.distribution.manifest.v2+json`|
//! | OCI index            | `--all`                | `…oci.image.index.v1+json`             |
//! | OCI index            | `--all --format v2s2`  | `…docker.distribution.manifest.list.v2+json` (children v2s2) |
//!
//! Pushing an OCI manifest unchanged keeps its digest; converting to Docker
//! media types changes it, so [`Pushed`] always holds what the registry serves.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::images::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ImageSpec, LayerSpec, Layout, LayoutBuilder, OCI_INDEX,
    OCI_MANIFEST, Platform,
};
use super::registry::TestRegistry;
use super::{curl, digest_of, require_tool, run, temp_dir};

/// Every manifest media type, for `Accept` (the registry hides an OCI index otherwise).
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The manifest format skopeo writes into the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Keep the layout's OCI manifest / index byte for byte.
    Oci,
    /// `--format v2s2`: Docker schema 2 manifest, or a Docker manifest list for an index.
    Docker,
}

/// One image pushed into a registry, as the registry now serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Repository, e.g. `openshift/php`.
    pub repo: String,
    /// Tag, e.g. `5.6`.
    pub tag: String,
    /// `sha256:<hex>` of the manifest bytes the registry serves.
    pub digest: String,
    /// Its `Content-Type`.
    pub media_type: String,
    /// The image's ref name in the source layout.
    pub source: String,
}

impl Pushed {
    /// `repo:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
}

/// A manifest as a registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// `sha256:<hex>` of `bytes` (checked against `Docker-Content-Digest`).
    pub digest: String,
    /// The `Content-Type` header.
    pub media_type: String,
    /// The raw body.
    pub bytes: Vec<u8>,
}

impl RemoteManifest {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("the manifest is JSON")
    }
}

/// `skopeo copy --all` of `layout`'s image `name` to `registry/dest` (`repo:tag`),
/// then reads back what the registry serves.
pub fn skopeo_push(
    registry: &TestRegistry,
    layout: &Layout,
    name: &str,
    dest: &str,
    format: Format,
) -> Pushed {
    require_tool("skopeo", "skopeo");
    let (repo, tag) = dest.rsplit_once(':').expect("dest is repo:tag");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--retry-times", "2"]);
    if format == Format::Docker {
        cmd.args(["--format", "v2s2"]);
    }
    cmd.args(skopeo_dest_flags(registry));
    cmd.arg(layout.skopeo_ref(name));
    cmd.arg(format!("docker://{}/{dest}", registry.host()));
    run(&mut cmd);
    let remote = fetch_manifest(registry, repo, tag);
    Pushed {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        digest: remote.digest,
        media_type: remote.media_type,
        source: name.to_owned(),
    }
}

/// skopeo's `--dest-*` flags for TLS (or plain HTTP) and credentials.
pub fn skopeo_dest_flags(registry: &TestRegistry) -> Vec<String> {
    skopeo_flags(registry, "--dest-")
}

/// skopeo's `--src-*` flags for TLS (or plain HTTP) and credentials.
pub fn skopeo_src_flags(registry: &TestRegistry) -> Vec<String> {
    skopeo_flags(registry, "--src-")
}

fn skopeo_flags(registry: &TestRegistry, prefix: &str) -> Vec<String> {
    let mut flags = Vec::new();
    if registry.is_tls() {
        flags.push(format!(
            "{prefix}cert-dir={}",
            registry.cert_dir().display()
        ));
    } else {
        flags.push(format!("{prefix}tls-verify=false"));
    }
    match registry.credentials() {
        Some((user, password)) => flags.push(format!("{prefix}creds={user}:{password}")),
        None => flags.push(format!("{prefix}no-creds")),
    }
    flags
}

/// `skopeo inspect --raw docker://HOST/repo:reference`: the manifest bytes as served.
pub fn skopeo_inspect_raw(registry: &TestRegistry, repo: &str, reference: &str) -> Vec<u8> {
    let separator = if reference.starts_with("sha256:") {
        '@'
    } else {
        ':'
    };
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    for flag in skopeo_src_flags(registry) {
        // `skopeo inspect` spells them without the `src-` part.
        cmd.arg(flag.replacen("--src-", "--", 1));
    }
    cmd.arg(format!(
        "docker://{}/{repo}{separator}{reference}",
        registry.host()
    ));
    run(&mut cmd).stdout
}

/// `GET /v2/<repo>/manifests/<reference>` with `curl`, accepting every manifest
/// media type; panics unless 200 and `Docker-Content-Digest` matches the body.
pub fn fetch_manifest(registry: &TestRegistry, repo: &str, reference: &str) -> RemoteManifest {
    let url = format!("{}/v2/{repo}/manifests/{reference}", registry.url());
    let mut args = registry.curl_args_for(repo);
    args.extend(["--header".to_owned(), format!("Accept: {ACCEPT_ALL}")]);
    let response = curl(&args, &url);
    assert_eq!(
        response.status,
        200,
        "GET {url}: {}",
        String::from_utf8_lossy(&response.body)
    );
    let digest = digest_of(&response.body);
    assert_eq!(
        response.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "digest header of {url}"
    );
    let media_type = response
        .header("Content-Type")
        .unwrap_or_else(|| panic!("no Content-Type from {url}"))
        .to_owned();
    RemoteManifest {
        digest,
        media_type,
        bytes: response.body,
    }
}

/// What [`standard_fixture`] pushed, with the registry (kept running) and the
/// layout it was pushed from.
#[derive(Debug)]
pub struct StandardFixture {
    /// The registry holding the images.
    pub registry: TestRegistry,
    /// The OCI layout the images came from.
    pub layout: Layout,
    /// Every tag pushed, in push order.
    pub images: Vec<Pushed>,
    _layout_dir: tempfile::TempDir,
}

impl StandardFixture {
    /// The image pushed as `repo:tag`; panics if there is none.
    pub fn get(&self, reference: &str) -> &Pushed {
        find(&self.images, reference)
    }

    /// The distinct repositories, sorted.
    pub fn repositories(&self) -> BTreeSet<String> {
        self.images.iter().map(|p| p.repo.clone()).collect()
    }
}

/// The image pushed as `repo:tag` in `images`; panics if there is none.
pub fn find<'a>(images: &'a [Pushed], reference: &str) -> &'a Pushed {
    images
        .iter()
        .find(|p| p.reference() == reference)
        .unwrap_or_else(|| panic!("{reference} was not pushed; pushed: {images:#?}"))
}

/// A registry holding one image, `app/helm:1` (the standard fixture's
/// `tools/helm:3.14`, pushed by skopeo), with its layer's digest and size:
/// the blob the proxy self-tests fault.
pub fn helm_registry() -> (TestRegistry, String, u64) {
    let registry = TestRegistry::start();
    let layout_dir = temp_dir();
    let layout = standard_layout(layout_dir.path());
    skopeo_push(
        &registry,
        &layout,
        "tools/helm:3.14",
        "app/helm:1",
        Format::Oci,
    );
    let layer = fetch_manifest(&registry, "app/helm", "1").json()["layers"][0].clone();
    let digest = layer["digest"].as_str().expect("a layer digest").to_owned();
    let size = layer["size"].as_u64().expect("a layer size");
    (registry, digest, size)
}

/// The layout behind [`seed_standard`]: every image shares the `base` layer.
///
/// | ref name                | kind                                        |
/// |-------------------------|---------------------------------------------|
/// | `openshift/php:5.5`     | OCI manifest                                |
/// | `openshift/php:5.6`     | OCI manifest                                |
/// | `library/busybox:1.36`  | OCI index: linux/amd64, linux/arm64, linux/arm/v7 |
/// | `library/alpine:3.19`   | OCI index (amd64, arm64), pushed as a Docker manifest list |
/// | `library/nginx:1.25`    | OCI manifest, pushed as Docker schema 2     |
/// | `tools/helm:3.14`       | OCI manifest without the base layer         |
pub fn standard_layout(dir: &Path) -> Layout {
    let base = || LayerSpec::shared("base", 200_000);
    let two = [Platform::LINUX_AMD64, Platform::LINUX_ARM64];
    let three = [
        Platform::LINUX_AMD64,
        Platform::LINUX_ARM64,
        Platform::LINUX_ARM_V7,
    ];
    LayoutBuilder::new(dir)
        .image(
            "openshift/php:5.5",
            ImageSpec::new(vec![base(), LayerSpec::unique(40_000)]),
        )
        .image(
            "openshift/php:5.6",
            ImageSpec::new(vec![
                base(),
                LayerSpec::shared("php-common", 30_000),
                LayerSpec::unique(40_000),
            ]),
        )
        .image(
            "library/busybox:1.36",
            ImageSpec::new(vec![base(), LayerSpec::unique(20_000)]).platforms(&three),
        )
        .image(
            "library/alpine:3.19",
            ImageSpec::new(vec![base(), LayerSpec::unique(20_000)]).platforms(&two),
        )
        .image(
            "library/nginx:1.25",
            ImageSpec::new(vec![
                base(),
                LayerSpec::shared("php-common", 30_000),
                LayerSpec::unique(60_000),
            ]),
        )
        .image(
            "tools/helm:3.14",
            ImageSpec::new(vec![LayerSpec::unique(30_000)]),
        )
        .build()
}

/// Pushes [`standard_layout`] into `registry` (any auth or TLS):
///
/// | tag                        | served as                          |
/// |----------------------------|------------------------------------|
/// | `openshift/php:5.5`        | OCI manifest                       |
/// | `openshift/php:5.6`        | OCI manifest                       |
/// | `openshift/php:latest`     | the same manifest as `5.6`         |
/// | `library/busybox:1.36`     | OCI index (3 platforms)            |
/// | `library/alpine:3.19`      | Docker manifest list (2 platforms) |
/// | `library/nginx:1.25`       | Docker schema 2 manifest           |
/// | `tools/helm:3.14`          | OCI manifest                       |
pub fn seed_standard(registry: &TestRegistry, layout: &Layout) -> Vec<Pushed> {
    let pushes = [
        ("openshift/php:5.5", "openshift/php:5.5", Format::Oci),
        ("openshift/php:5.6", "openshift/php:5.6", Format::Oci),
        ("openshift/php:5.6", "openshift/php:latest", Format::Oci),
        ("library/busybox:1.36", "library/busybox:1.36", Format::Oci),
        ("library/alpine:3.19", "library/alpine:3.19", Format::Docker),
        ("library/nginx:1.25", "library/nginx:1.25", Format::Docker),
        ("tools/helm:3.14", "tools/helm:3.14", Format::Oci),
    ];
    let pushed: Vec<Pushed> = pushes
        .iter()
        .map(|(name, dest, format)| skopeo_push(registry, layout, name, dest, *format))
        .collect();
    let expect = [
        ("openshift/php:5.6", OCI_MANIFEST),
        ("library/busybox:1.36", OCI_INDEX),
        ("library/alpine:3.19", DOCKER_MANIFEST_LIST),
        ("library/nginx:1.25", DOCKER_MANIFEST),
    ];
    for (reference, media_type) in expect {
        assert_eq!(
            find(&pushed, reference).media_type,
            media_type,
            "media type of {reference}"
        );
    }
    pushed
}

/// A fresh plain-HTTP registry seeded by [`seed_standard`] (a few hundred KB).
pub fn standard_fixture() -> StandardFixture {
    standard_fixture_on(TestRegistry::start())
}

/// `registry` (any auth or TLS, started and empty) seeded by [`seed_standard`].
pub fn standard_fixture_on(registry: TestRegistry) -> StandardFixture {
    let layout_dir = temp_dir();
    let layout = standard_layout(&layout_dir.path().join("layout"));
    let images = seed_standard(&registry, &layout);
    StandardFixture {
        registry,
        layout,
        images,
        _layout_dir: layout_dir,
    }
}

/// Makes `n` repositories `many/r000`, `many/r001`, … holding the same small
/// image under tag `1`: one skopeo push, then copies of its directory in the
/// registry's filesystem storage (the running registry serves them at once).
/// Returns the repository names, sorted.
pub fn seed_many_repositories(registry: &TestRegistry, n: usize) -> Vec<String> {
    assert!(n > 0, "seed_many_repositories needs n > 0");
    let dir = temp_dir();
    let layout = LayoutBuilder::new(dir.path().join("layout"))
        .image("many:1", ImageSpec::new(vec![LayerSpec::unique(4_000)]))
        .build();
    let names: Vec<String> = (0..n).map(|i| format!("many/r{i:03}")).collect();
    skopeo_push(
        registry,
        &layout,
        "many:1",
        &format!("{}:1", names[0]),
        Format::Oci,
    );
    let first = registry.repositories_dir().join(&names[0]);
    for name in &names[1..] {
        copy_dir_all(&first, &registry.repositories_dir().join(name));
    }
    names
}

/// Recursive copy of a directory of regular files and directories.
pub fn copy_dir_all(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("listing {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("reading a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("reading a file type").is_dir() {
            copy_dir_all(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap_or_else(|e| {
                panic!(
                    "copying {} to {}: {e}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}
