//! Where each image goes on the target: `REGISTRY[/PREFIX]` and the repository mapping.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;

use super::PushOptions;
use crate::digest::Digest;
use crate::manifest::BundleManifest;
use crate::registry::{is_valid_repository, is_valid_tag};

/// Where images go: `REGISTRY[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `[scheme://]host[:port]` as [`crate::registry::Registry::connect`] takes it.
    pub registry: String,
    /// Repository path prefix (may be empty), without slashes at the ends.
    pub prefix: String,
}

impl Destination {
    /// Parses `host[:port][/prefix/…]`, optionally with `https://` or `http://`.
    pub fn parse(s: &str) -> anyhow::Result<Destination> {
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), s),
        };
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if !crate::registry::is_valid_host(host) {
            bail!("--to {s:?}: expected REGISTRY[/PREFIX], like registry.local:5000/mirror");
        }
        // Host names are case-insensitive; references (and so the mirror
        // configuration) spell them in lowercase.
        let host = host.to_ascii_lowercase();
        if !prefix.is_empty() && !is_valid_repository(prefix) {
            bail!(
                "--to {s:?}: the prefix {prefix:?} is not a repository path (lowercase components separated by '/')"
            );
        }
        Ok(Destination {
            registry: format!("{scheme}{host}"),
            prefix: prefix.to_owned(),
        })
    }

    /// `host[:port]` without the scheme, as image references name it.
    pub fn host(&self) -> &str {
        crate::source::bare_host(&self.registry)
    }
}

/// How source repository paths become target repository paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoLayout {
    /// `PREFIX/openshift/php`: the source path under the prefix.
    Nested,
    /// At most this many path components in all (prefix included); the last
    /// ones are joined with `-` (`--max-nested-paths 2`: `mirror/openshift-php`),
    /// for registries such as Quay that allow only `namespace/repository`.
    MaxNested(usize),
}

impl RepoLayout {
    /// The target repository for `source_repo` under `prefix`.
    pub fn map(self, prefix: &str, source_repo: &str) -> String {
        let parts: Vec<&str> = prefix
            .split('/')
            .chain(source_repo.split('/'))
            .filter(|p| !p.is_empty())
            .collect();
        match self {
            RepoLayout::MaxNested(n) if parts.len() > n.max(1) => {
                let keep = n.max(1) - 1;
                let mut out: Vec<String> = parts[..keep].iter().map(|p| p.to_string()).collect();
                out.push(parts[keep..].join("-"));
                out.join("/")
            }
            _ => parts.join("/"),
        }
    }
}

/// One image of the bundle and where it goes.
#[derive(Debug, Clone, Serialize)]
pub struct Mapped {
    /// `repo:tag` in the bundle.
    pub reference: String,
    /// Where it came from (as recorded at create).
    pub source: String,
    /// The target repository.
    pub repository: String,
    /// The tag to set (none for images kept by digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The top manifest or index.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Every digest it needs, the top one included.
    #[serde(skip)]
    pub needs: Vec<Digest>,
}

/// Splits `repo:tag` or `repo@sha256:…` (the bundle's reference form).
pub(super) fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if let Some((repo, _digest)) = reference.split_once('@') {
        return (repo, None);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// The target repository and tag of every image; refuses names the registry
/// cannot hold and two different images landing on one tag.
pub fn map_images(m: &BundleManifest, opts: &PushOptions) -> anyhow::Result<Vec<Mapped>> {
    let mut out = Vec::new();
    let mut tags: BTreeMap<(String, String), (&str, Digest)> = BTreeMap::new();
    for img in &m.images {
        let (repo, tag) = match split_reference(&img.reference) {
            // A layout ref name without a repository is a bare tag.
            (tag, None) if !img.reference.contains(['@', '/']) => ("", Some(tag)),
            split => split,
        };
        if repo.is_empty() && opts.destination.prefix.is_empty() {
            bail!(
                "image {} has no repository name; give one in --to REGISTRY/REPOSITORY",
                img.reference
            );
        }
        let repository = opts.layout.map(&opts.destination.prefix, repo);
        if !is_valid_repository(&repository) {
            bail!(
                "image {} would go to {repository:?}, which is not a valid repository name",
                img.reference
            );
        }
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                bail!("image {}: {tag:?} is not a valid tag", img.reference);
            }
            let key = (repository.clone(), tag.to_owned());
            if let Some((other, digest)) = tags.get(&key)
                && *digest != img.digest
            {
                bail!(
                    "images {other} and {} would both be tagged {}:{tag}; choose another --to or repository mapping",
                    img.reference,
                    repository
                );
            }
            tags.insert(key, (&img.reference, img.digest));
        }
        let mut needs = img.blobs.clone();
        if !needs.contains(&img.digest) {
            needs.push(img.digest);
        }
        out.push(Mapped {
            reference: img.reference.clone(),
            source: img.source.clone(),
            repository,
            tag: tag.map(str::to_owned),
            digest: img.digest,
            media_type: img.media_type.clone(),
            needs,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("reg.local:5000/mirror/team/").expect("ok");
        assert_eq!(d.registry, "reg.local:5000");
        assert_eq!(d.prefix, "mirror/team");
        let d = Destination::parse("http://127.0.0.1:5000").expect("ok");
        assert_eq!(
            (d.registry.as_str(), d.host()),
            ("http://127.0.0.1:5000", "127.0.0.1:5000")
        );
        assert_eq!(d.prefix, "");
        assert!(Destination::parse("/x").is_err());
        assert!(Destination::parse("reg\n[x]/m").is_err());
        let d = Destination::parse("REG.Example:5000/m").expect("ok");
        assert_eq!(d.host(), "reg.example:5000");
        assert!(Destination::parse("reg/Upper").is_err());
    }

    #[test]
    fn repository_mapping() {
        let nested = RepoLayout::Nested;
        assert_eq!(
            nested.map("mirror", "openshift/php"),
            "mirror/openshift/php"
        );
        assert_eq!(nested.map("", "openshift/php"), "openshift/php");
        assert_eq!(nested.map("m", ""), "m");
        let two = RepoLayout::MaxNested(2);
        assert_eq!(two.map("mirror", "openshift/php"), "mirror/openshift-php");
        assert_eq!(two.map("mirror", "php"), "mirror/php");
        assert_eq!(two.map("", "a/b/c"), "a/b-c");
        assert_eq!(RepoLayout::MaxNested(1).map("m", "a/b"), "m-a-b");
        assert_eq!(RepoLayout::MaxNested(0).map("m", "a/b"), "m-a-b");
    }

    #[test]
    fn references() {
        assert_eq!(
            split_reference("openshift/php:5.5"),
            ("openshift/php", Some("5.5"))
        );
        assert_eq!(
            split_reference("host:5000/a/b:v1"),
            ("host:5000/a/b", Some("v1"))
        );
        assert_eq!(split_reference("host:5000/a/b"), ("host:5000/a/b", None));
        assert_eq!(split_reference("a/b@sha256:0123"), ("a/b", None));
        assert_eq!(split_reference("latest"), ("latest", None));
    }
}
