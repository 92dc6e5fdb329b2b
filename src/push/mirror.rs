//! The mirror configuration a cluster needs once the images are pushed.
//!
//! Every value in it comes from the signed bundle.json or `--to`, so nothing
//! is pasted into a template: mapping.txt holds only references that passed
//! the distribution grammar ([`ImageReference`]), and the YAML and TOML files
//! are written by [`super::quoted`], which quotes every value.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use super::ImageResult;
use super::install_config::install_config_snippet;
use super::oc_mapping::{MappingEntry, mapping_text};
use super::quoted::{Toml, Yaml, toml_document};
use crate::registry::{ImageReference, RegistryError};

/// Why the mirror configuration cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorConfigError {
    /// An image's recorded source is not `oci:…` and not an image reference.
    #[error("image {image:?}: its source is not a valid image reference")]
    InvalidSource {
        /// The image (its reference in the bundle).
        image: String,
        /// What is wrong with the source.
        #[source]
        error: Box<RegistryError>,
    },
    /// An image's target (`--to` and the mapped repository) is not an image reference.
    #[error("image {image:?}: its target is not a valid image reference")]
    InvalidTarget {
        /// The image (its reference in the bundle).
        image: String,
        /// What is wrong with the target.
        #[source]
        error: Box<RegistryError>,
    },
    /// A registry named by an IPv6 address, which the mirror configuration cannot hold.
    #[error(
        "the mirror configuration cannot name the registry {host} (of image {image:?}): \
         podman, CRI-O and OpenShift refuse an IPv6 address in an image reference, so \
         registries.conf would break every pull; give the registry a host name (in \
         /etc/hosts, for example) and use that"
    )]
    Ipv6Host {
        /// The image (its reference in the bundle).
        image: String,
        /// The registry as written.
        host: String,
    },
    /// The bundle id cannot name the default directory.
    #[error(
        "the bundle id {id:?} is not plain lowercase letters and digits, so it cannot name \
         the mirror configuration directory; give one with --mirror-config DIR"
    )]
    UnsafeBundleId {
        /// The bundle id as recorded.
        id: String,
    },
}

/// Checks, before anything is pushed, that the mirror configuration can name
/// every registry involved: `destination` (`host[:port]`) and the source of
/// every image of `m` that came from a registry. containers/image's reference
/// grammar (podman, CRI-O, OpenShift's mirror sets) has no IPv6 address.
pub fn check_registry_names(
    m: &crate::manifest::BundleManifest,
    destination: &str,
) -> Result<(), MirrorConfigError> {
    let sources = m
        .images
        .iter()
        .filter(|i| !i.source.starts_with("oci:"))
        .map(|i| (i.reference.as_str(), i.source.as_str()));
    for (image, reference) in std::iter::once(("(all: the target)", destination)).chain(sources) {
        let host = reference.split('/').next().unwrap_or(reference);
        nameable(host, image)?;
    }
    Ok(())
}

/// `host` (`host[:port]`) of `image`, unless it is an IPv6 address, which
/// containers/image's reference grammar has no room for.
fn nameable(host: &str, image: &str) -> Result<(), MirrorConfigError> {
    if host.starts_with('[') {
        return Err(MirrorConfigError::Ipv6Host {
            image: image.to_owned(),
            host: host.to_owned(),
        });
    }
    Ok(())
}

/// `bundle_id` when it is 1 to 64 characters of `[a-z0-9]` (a valid id is 32
/// hex digits), so that it can go into a file name or a comment as it is.
fn plain_id(bundle_id: &str) -> Option<&str> {
    let plain = !bundle_id.is_empty()
        && bundle_id.len() <= 64
        && bundle_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    plain.then_some(bundle_id)
}

/// The `metadata.name` of the ImageDigestMirrorSet: `bundle-` and the first
/// 12 characters of the id, keeping only `[a-z0-9]` of them (`bundle` when
/// none is), so that it is a valid Kubernetes (DNS-1123) name whatever the
/// id holds.
fn object_name(bundle_id: &str) -> String {
    let short: String = bundle_id
        .chars()
        .take(12)
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect();
    if short.is_empty() {
        "bundle".to_owned()
    } else {
        format!("bundle-{short}")
    }
}

/// The repository a reference names, host included, without tag or digest.
fn repository_of(reference: &ImageReference) -> String {
    ImageReference {
        tag: None,
        digest: None,
        ..reference.clone()
    }
    .to_string()
}

/// What the mirror configuration says beyond the images: decided by the
/// push (how the target was reached) and by the user's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorOptions {
    /// The push spoke plain http to the target or did not verify its TLS
    /// certificate: registries.conf marks the mirrors `insecure = true`.
    pub insecure: bool,
    /// `--tag-mirrors`: also an ImageTagMirrorSet, and registries.conf
    /// mirrors used for pulls by tag as well as by digest.
    pub tag_mirrors: bool,
    /// `--never-contact-source`: `mirrorSourcePolicy: NeverContactSource`
    /// on every mirror set entry, and the source blocked in registries.conf.
    pub never_contact_source: bool,
    /// The target's CA certificates as canonical PEM
    /// ([`super::canonical_pem_certificates`]), for install-config's
    /// `additionalTrustBundle`.
    pub trust_bundle: Option<String>,
}

/// The mirror configuration files a cluster needs: `mapping.txt` (for `oc
/// image mirror -f`), an OpenShift `ImageDigestMirrorSet` (and with
/// `tag_mirrors` an `ImageTagMirrorSet`), a `registries.conf` snippet and an
/// `install-config.yaml` snippet, for the images that came from a registry
/// (an OCI layout source has no pull location to redirect). Empty when none
/// did.
///
/// An image whose source or target is not a valid image reference is an
/// error naming it: no file is built from it.
pub fn mirror_config(
    images: &[ImageResult],
    bundle_id: &str,
    opts: &MirrorOptions,
) -> Result<Vec<(&'static str, String)>, MirrorConfigError> {
    let mut entries = Vec::new();
    // Each source repository and every target repository its images went to
    // (two images of one source may be mapped to two targets: each is a mirror).
    let mut repos: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in images
        .iter()
        .filter(|r| !r.image.source.starts_with("oci:"))
    {
        let image = || r.image.reference.clone();
        let source: ImageReference =
            r.image
                .source
                .parse()
                .map_err(|error| MirrorConfigError::InvalidSource {
                    image: image(),
                    error: Box::new(error),
                })?;
        let target: ImageReference =
            r.target
                .parse()
                .map_err(|error| MirrorConfigError::InvalidTarget {
                    image: image(),
                    error: Box::new(error),
                })?;
        for reference in [&source, &target] {
            nameable(reference.host.as_deref().unwrap_or_default(), &image())?;
        }
        // Both sides passed the reference grammar, which has no '=', '#',
        // space or line end: mapping.txt splits them unambiguously.
        let (source_repo, target_repo) = (repository_of(&source), repository_of(&target));
        entries.push(MappingEntry {
            source_repository: source_repo.clone(),
            digest: r.image.digest,
            target_repository: target_repo.clone(),
            tag: target.tag.clone(),
        });
        repos.entry(source_repo).or_default().insert(target_repo);
    }
    if repos.is_empty() {
        return Ok(Vec::new());
    }
    let generated = match plain_id(bundle_id) {
        Some(id) => format!("Generated by bundle from bundle {id}."),
        None => "Generated by bundle.".to_owned(),
    };
    let repos: Vec<(String, Vec<String>)> = repos
        .into_iter()
        .map(|(source, targets)| (source, targets.into_iter().collect()))
        .collect();

    let mut files = vec![
        (
            "mapping.txt",
            mapping_text(&format!("{generated} For oc image mirror -f."), &entries),
        ),
        (
            "imagedigestmirrorset.yaml",
            mirror_set(&generated, bundle_id, &repos, opts, false),
        ),
    ];
    if opts.tag_mirrors {
        files.push((
            "imagetagmirrorset.yaml",
            mirror_set(&generated, bundle_id, &repos, opts, true),
        ));
    }
    files.push(("registries.conf", registries_conf(&generated, &repos, opts)));
    let mut comments = vec![
        generated.as_str(),
        "Merge into install-config.yaml for a disconnected install.",
    ];
    if opts.insecure {
        comments.push(
            "The mirror was pushed to without TLS verification: the installer needs it on https with a trusted certificate.",
        );
    }
    files.push((
        "install-config-mirrors.yaml",
        install_config_snippet(&comments, &repos, opts.trust_bundle.as_deref()),
    ));
    Ok(files)
}

/// An ImageDigestMirrorSet, or with `tags` an ImageTagMirrorSet, of `repos`.
fn mirror_set(
    generated: &str,
    bundle_id: &str,
    repos: &[(String, Vec<String>)],
    opts: &MirrorOptions,
    tags: bool,
) -> String {
    let mirrors = repos
        .iter()
        .map(|(source, targets)| {
            let mut entry = vec![
                ("source", Yaml::str(source)),
                (
                    "mirrors",
                    Yaml::Seq(targets.iter().map(Yaml::str).collect()),
                ),
            ];
            if opts.never_contact_source {
                entry.push(("mirrorSourcePolicy", Yaml::str("NeverContactSource")));
            }
            Yaml::Map(entry)
        })
        .collect();
    let (kind, list) = if tags {
        ("ImageTagMirrorSet", "imageTagMirrors")
    } else {
        ("ImageDigestMirrorSet", "imageDigestMirrors")
    };
    Yaml::document(
        &[generated],
        &[
            ("apiVersion", Yaml::str("config.openshift.io/v1")),
            ("kind", Yaml::str(kind)),
            (
                "metadata",
                Yaml::Map(vec![("name", Yaml::str(object_name(bundle_id)))]),
            ),
            ("spec", Yaml::Map(vec![(list, Yaml::Seq(mirrors))])),
        ],
    )
}

/// The registries.conf snippet (containers-registries.conf(5), v2 format):
/// one `[[registry]]` per source repository with its mirrors.
///
/// - `insecure = true` on each mirror when the push used plain http or no TLS
///   verification: without it podman refuses the mirror.
/// - Digest pulls only (`mirror-by-digest-only`) unless `tag_mirrors`; then
///   `pull-from-mirror = "all"` on each mirror (the man page allows that
///   per-mirror key only without `mirror-by-digest-only`).
/// - `blocked = true` on the source with `never_contact_source`: podman 4.3
///   still pulls from the mirrors of a blocked prefix, and never from it
///   (the test `tests/cli/mirror.rs` checks that with podman).
fn registries_conf(
    generated: &str,
    repos: &[(String, Vec<String>)],
    opts: &MirrorOptions,
) -> String {
    let registries = repos
        .iter()
        .map(|(source, targets)| {
            let mirror = targets
                .iter()
                .map(|t| {
                    let mut m = vec![("location", Toml::Str(t.clone()))];
                    if opts.insecure {
                        m.push(("insecure", Toml::Bool(true)));
                    }
                    if opts.tag_mirrors {
                        m.push(("pull-from-mirror", Toml::Str("all".to_owned())));
                    }
                    m
                })
                .collect();
            let mut r = vec![
                ("prefix", Toml::Str(source.clone())),
                ("location", Toml::Str(source.clone())),
            ];
            if !opts.tag_mirrors {
                r.push(("mirror-by-digest-only", Toml::Bool(true)));
            }
            if opts.never_contact_source {
                r.push(("blocked", Toml::Bool(true)));
            }
            r.push(("mirror", Toml::Tables(mirror)));
            r
        })
        .collect();
    let mut comments = vec![
        generated,
        "Add to /etc/containers/registries.conf (or a file in registries.conf.d/).",
    ];
    if opts.insecure {
        comments.push("insecure = true: the mirror was pushed to over plain http or without TLS verification.");
    }
    toml_document(&comments, &[("registry", Toml::Tables(registries))])
}

/// The default mirror configuration directory, `bundle-mirror-<bundle id>`
/// in the current directory. Refused unless the id is plain `[a-z0-9]`, so
/// that the name is one plain path component that stays where it is put.
pub fn default_mirror_dir(bundle_id: &str) -> Result<PathBuf, MirrorConfigError> {
    let unsafe_id = || MirrorConfigError::UnsafeBundleId {
        id: bundle_id.to_owned(),
    };
    let name = format!(
        "bundle-mirror-{}",
        plain_id(bundle_id).ok_or_else(unsafe_id)?
    );
    let path = PathBuf::from(&name);
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(one)), None) if one == OsStr::new(&name) => Ok(path),
        _ => Err(unsafe_id()),
    }
}

/// Writes [`mirror_config`] into `dir` (created if needed); returns the paths
/// written. Nothing is created when the configuration cannot be built.
pub fn write_mirror_config(
    dir: &Path,
    images: &[ImageResult],
    bundle_id: &str,
    opts: &MirrorOptions,
) -> anyhow::Result<Vec<PathBuf>> {
    let files = mirror_config(images, bundle_id, opts)?;
    // Never through a link planted at the directory or above it.
    crate::files::real_dir(dir)?;
    let mut written = Vec::new();
    for (name, text) in files {
        crate::files::write_atomic(dir, name, text.as_bytes())?;
        written.push(dir.join(name));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::digest::Digest;
    use crate::oci;
    use crate::push::quoted::read_back;
    use crate::push::{Delivery, Mapped, TagOutcome, target_name};

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn image(reference: &str, source: &str, repository: &str, tag: Option<&str>) -> ImageResult {
        let digest = Digest::of(source.as_bytes());
        let mapped = Mapped {
            reference: reference.to_owned(),
            source: source.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
            media_type: oci::OCI_MANIFEST.to_owned(),
            needs: vec![digest],
        };
        ImageResult {
            target: target_name("reg.internal:5000", &mapped),
            image: mapped,
            tag: TagOutcome::Created,
            delivery: Delivery::Pushed,
        }
    }

    /// Two tags of one registry repository, one by digest of another, and an
    /// image from an OCI layout.
    fn images() -> Vec<ImageResult> {
        vec![
            image(
                "openshift/php:5.5",
                "quay.io/openshift/php:5.5",
                "mirror/openshift/php",
                Some("5.5"),
            ),
            image(
                "openshift/php:5.6",
                "quay.io/openshift/php:5.6",
                "mirror/openshift/php",
                Some("5.6"),
            ),
            image(
                &format!("tools/x@{}", Digest::of(b"x")),
                &format!("registry.example.com:5000/tools/x@{}", Digest::of(b"x")),
                "mirror/tools/x",
                None,
            ),
            image(
                "tools/helm:3",
                "oci:/media/x:tools/helm:3",
                "mirror/tools/helm",
                Some("3"),
            ),
        ]
    }

    /// The three files of `images()` under `id`, read back by independent
    /// parsers: mapping.txt lines, the YAML documents, the TOML table.
    fn read_back(id: &str) -> (Vec<String>, Vec<Value>, Value) {
        let files =
            mirror_config(&images(), id, &MirrorOptions::default()).expect("valid references");
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "mapping.txt",
                "imagedigestmirrorset.yaml",
                "registries.conf",
                "install-config-mirrors.yaml"
            ]
        );
        for (name, text) in &files {
            assert!(
                text.bytes()
                    .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
                "{name} holds more than printable ASCII lines:\n{text}"
            );
        }
        let lines = files[0].1.lines().skip(1).map(str::to_owned).collect();
        (
            lines,
            read_back::yaml(&files[1].1),
            read_back::toml(&files[2].1),
        )
    }

    /// What the files of `images()` must read back as, with the object named `name`.
    fn expected(name: &str) -> (Vec<String>, Vec<Value>, Value) {
        let i = images();
        let (php, x) = ("quay.io/openshift/php", "registry.example.com:5000/tools/x");
        let (php_to, x_to) = (
            "reg.internal:5000/mirror/openshift/php",
            "reg.internal:5000/mirror/tools/x",
        );
        let lines = vec![
            format!("{php}@{}={php_to}:5.5", i[0].image.digest),
            format!("{php}@{}={php_to}:5.6", i[1].image.digest),
            // oc refuses a digest on the destination: the bare repository.
            format!("{x}@{}={x_to}", i[2].image.digest),
        ];
        let idms = json!({
            "apiVersion": "config.openshift.io/v1",
            "kind": "ImageDigestMirrorSet",
            "metadata": {"name": name},
            "spec": {"imageDigestMirrors": [
                {"source": php, "mirrors": [php_to]},
                {"source": x, "mirrors": [x_to]},
            ]},
        });
        let conf = json!({"registry": [
            {"prefix": php, "location": php, "mirror-by-digest-only": true,
             "mirror": [{"location": php_to}]},
            {"prefix": x, "location": x, "mirror-by-digest-only": true,
             "mirror": [{"location": x_to}]},
        ]});
        (lines, vec![idms], conf)
    }

    /// Whether `name` is a Kubernetes object name (DNS-1123 subdomain).
    fn is_dns_1123(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.iter()
                        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            })
    }

    #[test]
    fn mirror_configuration() {
        assert_eq!(read_back(ID), expected("bundle-0123456789ab"));
        let files =
            mirror_config(&images(), ID, &MirrorOptions::default()).expect("valid references");
        assert!(files[1].1.starts_with(&format!(
            "# Generated by bundle from bundle {ID}.\napiVersion: \"config.openshift.io/v1\"\n"
        )));
        assert!(files[1].1.contains(
            "spec:\n  imageDigestMirrors:\n  - source: \"quay.io/openshift/php\"\n    mirrors:\n    - \"reg.internal:5000/mirror/openshift/php\"\n"
        ));
        assert!(files[2].1.contains(&format!("from bundle {ID}.\n")));
        assert!(
            mirror_config(&images()[3..], ID, &MirrorOptions::default())
                .expect("a layout source")
                .is_empty()
        );
    }

    /// The install-config snippet lists the same sources and mirrors as the
    /// ImageDigestMirrorSet.
    #[test]
    fn install_config_has_the_digest_sources() {
        let files = mirror_config(&images(), ID, &MirrorOptions::default()).expect("valid");
        let (_, idms, _) = expected("x");
        let snippet = read_back::yaml(&files[3].1);
        assert_eq!(
            snippet,
            [json!({"imageDigestSources": idms[0]["spec"]["imageDigestMirrors"]})]
        );
    }

    /// Each option changes what it says and nothing else: `insecure` on
    /// every mirror; tag mirrors as an ImageTagMirrorSet and `pull-from-mirror
    /// = "all"` without `mirror-by-digest-only`; NeverContactSource on every
    /// entry of both sets and `blocked` on the source; the trust bundle in
    /// install-config.
    #[test]
    fn options_change_the_files_as_documented() {
        let pem = "-----BEGIN CERTIFICATE-----\nMAswAwIBATAAAwIA/w==\n-----END CERTIFICATE-----\n";
        let opts = MirrorOptions {
            insecure: true,
            tag_mirrors: true,
            never_contact_source: true,
            trust_bundle: Some(pem.to_owned()),
        };
        let files = mirror_config(&images(), ID, &opts).expect("valid references");
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "mapping.txt",
                "imagedigestmirrorset.yaml",
                "imagetagmirrorset.yaml",
                "registries.conf",
                "install-config-mirrors.yaml"
            ]
        );
        let (lines, idms, _) = expected("bundle-0123456789ab");
        assert_eq!(files[0].1.lines().skip(1).collect::<Vec<_>>(), lines);
        let mut entries = idms[0]["spec"]["imageDigestMirrors"].clone();
        for e in entries.as_array_mut().expect("a list") {
            e["mirrorSourcePolicy"] = json!("NeverContactSource");
        }
        let mut want = idms[0].clone();
        want["spec"]["imageDigestMirrors"] = entries.clone();
        assert_eq!(read_back::yaml(&files[1].1), [want.clone()]);
        want["kind"] = json!("ImageTagMirrorSet");
        want["spec"] = json!({"imageTagMirrors": entries});
        assert_eq!(read_back::yaml(&files[2].1), [want]);
        let mirror =
            |t: &str| json!([{"location": t, "insecure": true, "pull-from-mirror": "all"}]);
        let (php, x) = ("quay.io/openshift/php", "registry.example.com:5000/tools/x");
        assert_eq!(
            read_back::toml(&files[3].1),
            json!({"registry": [
                {"prefix": php, "location": php, "blocked": true,
                 "mirror": mirror("reg.internal:5000/mirror/openshift/php")},
                {"prefix": x, "location": x, "blocked": true,
                 "mirror": mirror("reg.internal:5000/mirror/tools/x")},
            ]})
        );
        let snippet = &read_back::yaml(&files[4].1)[0];
        assert_eq!(snippet["additionalTrustBundle"], json!(pem));
        assert!(
            files[4]
                .1
                .contains("additionalTrustBundle: |\n  -----BEGIN CERTIFICATE-----\n")
        );

        // Insecure alone: the digest-only configuration plus `insecure`.
        let insecure = MirrorOptions {
            insecure: true,
            ..MirrorOptions::default()
        };
        let files = mirror_config(&images(), ID, &insecure).expect("valid references");
        let conf = read_back::toml(&files[2].1);
        assert_eq!(conf["registry"][0]["mirror-by-digest-only"], json!(true));
        assert_eq!(
            conf["registry"][1]["mirror"],
            json!([{"location": "reg.internal:5000/mirror/tools/x", "insecure": true}])
        );
    }

    /// A source recorded with both a tag and a digest is pinned by the
    /// bundle's digest alone (oc would mirror by the digest anyway and copy
    /// the source tag to a bare destination); the target keeps the bundle's
    /// tag, or is the bare repository for an image kept by digest.
    #[test]
    fn a_source_with_tag_and_digest_maps_by_digest() {
        let pinned = format!("quay.io/a/b:1@{}", Digest::of(b"b"));
        let both = vec![
            image("a/b:1", &pinned, "m/a/b", Some("1")),
            image(&format!("c@{}", Digest::of(b"c")), &pinned, "m/c", None),
        ];
        let files = mirror_config(&both, ID, &MirrorOptions::default()).expect("valid");
        let lines: Vec<&str> = files[0].1.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                format!(
                    "quay.io/a/b@{}=reg.internal:5000/m/a/b:1",
                    both[0].image.digest
                ),
                format!("quay.io/a/b@{}=reg.internal:5000/m/c", both[1].image.digest),
            ]
        );
    }

    /// Two images of one source repository mapped to two target
    /// repositories (their layout names differ): both targets are mirrors
    /// of the source, none dropped.
    #[test]
    fn a_source_repository_mirrored_to_two_targets_keeps_both() {
        let both = vec![
            image("r0:t", "quay.io/a/b:1", "p/r0", Some("t")),
            image("r1:t", "quay.io/a/b:2", "p/r1", Some("t")),
        ];
        let files = mirror_config(&both, ID, &MirrorOptions::default()).expect("valid references");
        let targets = ["reg.internal:5000/p/r0", "reg.internal:5000/p/r1"];
        let idms = read_back::yaml(&files[1].1);
        assert_eq!(
            idms[0]["spec"]["imageDigestMirrors"],
            json!([{"source": "quay.io/a/b", "mirrors": targets}])
        );
        let conf = read_back::toml(&files[2].1);
        assert_eq!(
            conf["registry"][0]["mirror"],
            json!([{"location": targets[0]}, {"location": targets[1]}])
        );
        assert_eq!(files[0].1.lines().count(), 3);
    }

    /// The id reaches the files only as the object name, filtered, and in
    /// comments when it is plain: whatever it holds, the structure and the
    /// other values stay as they are, and nothing panics.
    #[test]
    fn hostile_bundle_ids_change_only_the_name() {
        for (id, name) in [
            ("0123\n---\nkind: Secret\n", "bundle-0123kin"),
            ("ab\n[[registry]]\nprefix = \"evil.io\"", "bundle-abregistr"),
            ("../../../etc/cron.d", "bundle-etc"),
            ("\"\\#]", "bundle"),
            ("éééééééééééééééééé", "bundle"),
            ("0é1é2é3é4é5é6é7é", "bundle-012345"),
            ("\u{202e}abc\u{202c}def", "bundle-abcdef"),
            ("\x1b[2J\x1b]0;x\x07", "bundle-20x"),
            ("ABCDEF0123456789", "bundle-012345"),
            ("", "bundle"),
            ("-", "bundle"),
        ] {
            assert!(is_dns_1123(name), "{name}");
            assert_eq!(read_back(id), expected(name), "id {id:?}");
        }
    }

    /// An IPv6 registry, on either side, is refused naming the image: podman
    /// would refuse the whole registries.conf.
    #[test]
    fn ipv6_registries_are_refused_on_either_side() {
        let mut from_v6 = images();
        from_v6.insert(
            1,
            image(
                "v6/src:1",
                "[::1]:5000/v6/src:1",
                "mirror/v6/src",
                Some("1"),
            ),
        );
        let mut to_v6 = images();
        to_v6[0].target = format!("[::1]:5000/{}", to_v6[0].image.repository);
        let first = to_v6[0].image.reference.clone();
        for (all, image_name) in [(from_v6, "v6/src:1".to_owned()), (to_v6, first)] {
            match mirror_config(&all, ID, &MirrorOptions::default()) {
                Err(MirrorConfigError::Ipv6Host { image, host }) => {
                    assert_eq!((image, host), (image_name, "[::1]:5000".to_owned()))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A source or target that is not a valid reference is an error naming
    /// the image; no file is built from it and no directory is created.
    #[test]
    fn hostile_sources_and_targets_are_refused() {
        for source in [
            "quay.io/a:1\n---\nkind: Secret",
            "quay.io/a\"b:1",
            "quay.io/a\\b:1",
            "quay.io/a#b:1",
            "quay.io/a]\n\n[[registry]]\nprefix = \"evil.io\"",
            "quay.io/a b=evil.io/c:1",
            "quay.io/ünïcode:1",
            "quay.io/a\u{202e}b:1",
            "quay.io/a\x1b[2Jb:1",
            "quay.io/UPPER:1",
            "quay.io/a:1@sha256:beef",
            "evil.io/a\nquay.io/b",
            "",
        ] {
            let mut all = images();
            all.insert(
                1,
                image("bad/image:1", source, "mirror/bad/image", Some("1")),
            );
            match mirror_config(&all, ID, &MirrorOptions::default()) {
                Err(MirrorConfigError::InvalidSource { image, .. }) => {
                    assert_eq!(image, "bad/image:1", "{source:?}")
                }
                other => panic!("{source:?}: {other:?}"),
            }
            let dir = tempfile::tempdir().expect("a temp dir");
            let out = dir.path().join("out");
            let e = write_mirror_config(&out, &all, ID, &MirrorOptions::default())
                .expect_err("a bad source");
            assert!(format!("{e:#}").contains("bad/image:1"), "{e:#}");
            assert!(!out.exists(), "{source:?}: a directory was created");
        }
        let mut all = images();
        all[0].target = "reg.internal:5000/mirror\n---\nkind: Secret".to_owned();
        assert!(matches!(
            mirror_config(&all, ID, &MirrorOptions::default()),
            Err(MirrorConfigError::InvalidTarget { .. })
        ));
    }

    #[test]
    fn default_directory_is_one_plain_component() {
        assert_eq!(
            default_mirror_dir(ID).expect("a hex id"),
            PathBuf::from(format!("bundle-mirror-{ID}"))
        );
        for id in [
            "",
            "../x",
            "..",
            "/etc",
            "a/b",
            "a\\b",
            "ABC",
            "a\n",
            "a.b",
            "é",
            &"a".repeat(65),
        ] {
            let e = default_mirror_dir(id).expect_err(id);
            assert!(
                matches!(e, MirrorConfigError::UnsafeBundleId { .. }),
                "{id:?}"
            );
            assert!(e.to_string().contains("--mirror-config"), "{e}");
        }
    }
}
