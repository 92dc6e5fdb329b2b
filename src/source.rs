//! Turns a source (a registry, a list of images, an OCI layout) and filters
//! into a [`Plan`]: the images to bundle and every blob and manifest they
//! need, deduplicated, in archive order (children before the manifests that
//! reference them).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use globset::{Glob, GlobMatcher};

use crate::digest::{Digest, Hasher};
use crate::files::{Links, read_capped};
use crate::oci::{self, Descriptor, Platform};
use crate::registry::{ImageReference, Registry, RegistryError};

/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;

/// Where images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A registry, `host[:port]` (optionally with `http://` / `https://`).
    Registry(String),
    /// An OCI image layout directory (`oci:DIR`).
    Layout(PathBuf),
}

impl SourceSpec {
    /// Parses `--from`: `oci:DIR`, `docker://HOST`, or a bare `HOST`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if let Some(dir) = s.strip_prefix("oci:") {
            if dir.is_empty() {
                bail!("--from oci: needs a directory, as in oci:./layout");
            }
            return Ok(SourceSpec::Layout(PathBuf::from(dir)));
        }
        let host = s
            .strip_prefix("docker://")
            .unwrap_or(s)
            .trim_end_matches('/');
        if host.is_empty() || host.contains('/') && !host.contains("://") {
            bail!("--from {s:?} is not a registry host (host[:port]) or oci:DIR");
        }
        Ok(SourceSpec::Registry(host.to_owned()))
    }

    /// How bundle.json names the source.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Registry(h) => format!("docker://{}", bare_host(h)),
            SourceSpec::Layout(d) => format!("oci:{}", d.display()),
        }
    }
}

/// `host[:port]` without an `http://` or `https://` prefix.
pub fn bare_host(host: &str) -> &str {
    host.split_once("://").map_or(host, |(_, rest)| rest)
}

/// `--include` / `--exclude` patterns and `--platform` filters.
#[derive(Debug, Default)]
pub struct Filters {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    /// Platforms to keep from indexes; empty keeps all.
    pub platforms: Vec<Platform>,
}

#[derive(Debug)]
struct Pattern {
    matcher: GlobMatcher,
    /// Whether it matches `repo:tag` (it has a colon) rather than `repo`.
    with_tag: bool,
}

impl Pattern {
    fn parse(s: &str) -> anyhow::Result<Self> {
        let glob = Glob::new(s).with_context(|| format!("parsing pattern {s:?}"))?;
        Ok(Pattern {
            matcher: glob.compile_matcher(),
            with_tag: s.contains(':'),
        })
    }

    fn matches(&self, repo: &str, tag: &str) -> bool {
        if self.with_tag {
            self.matcher.is_match(format!("{repo}:{tag}"))
        } else {
            self.matcher.is_match(repo)
        }
    }
}

impl Filters {
    /// Builds filters: glob patterns on `repo` (no colon) or `repo:tag`, and `os/arch[/variant]` platforms.
    pub fn new(
        include: &[String],
        exclude: &[String],
        platforms: &[String],
    ) -> anyhow::Result<Self> {
        let platforms = platforms
            .iter()
            .map(|p| {
                Platform::parse(p)
                    .with_context(|| format!("--platform {p:?} is not os/arch[/variant]"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Filters {
            include: include
                .iter()
                .map(|s| Pattern::parse(s))
                .collect::<anyhow::Result<_>>()?,
            exclude: exclude
                .iter()
                .map(|s| Pattern::parse(s))
                .collect::<anyhow::Result<_>>()?,
            platforms,
        })
    }

    /// Whether an image `repo:tag` is selected.
    pub fn selects(&self, repo: &str, tag: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(repo, tag)))
            && !self.exclude.iter().any(|p| p.matches(repo, tag))
    }

    /// Whether any tag of `repo` can be selected (to skip listing its tags).
    pub fn may_select_repo(&self, repo: &str) -> bool {
        let excluded = self
            .exclude
            .iter()
            .any(|p| !p.with_tag && p.matcher.is_match(repo));
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| p.with_tag || p.matcher.is_match(repo));
        included && !excluded
    }

    fn keeps(&self, platform: Option<&Platform>) -> bool {
        match platform {
            _ if self.platforms.is_empty() => true,
            None => true,
            Some(p) => self.platforms.iter().any(|f| f.selects(p)),
        }
    }
}

/// Reads an images file: one reference per line, `#` comments, blank lines ignored.
pub fn parse_images_file(text: &str) -> anyhow::Result<Vec<ImageReference>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let r: ImageReference = line
            .parse()
            .with_context(|| format!("line {}: {line:?} is not an image reference", n + 1))?;
        if r.tag.is_none() && r.digest.is_none() {
            bail!("line {}: {line:?} names no tag or digest", n + 1);
        }
        out.push(r);
    }
    Ok(out)
}

/// Where manifests and blobs are read from.
#[derive(Clone)]
pub enum Fetcher {
    /// A registry.
    Registry(Registry),
    /// An OCI layout directory.
    Layout(PathBuf),
}

/// A tagged image as found in the source, before its manifests are fetched.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Repository inside the source.
    pub repo: String,
    /// Tag or digest (`sha256:…`).
    pub reference: String,
    /// For layouts: the index.json descriptor.
    pub descriptor: Option<Descriptor>,
}

impl Wanted {
    /// The name the image gets in the bundle's layout (`repo:tag` or `repo@sha256:…`).
    pub fn ref_name(&self) -> String {
        if self.reference.starts_with("sha256:") {
            format!("{}@{}", self.repo, self.reference)
        } else if self.repo.is_empty() {
            self.reference.clone()
        } else {
            format!("{}:{}", self.repo, self.reference)
        }
    }
}

/// One image of the plan.
#[derive(Debug, Clone)]
pub struct PlannedImage {
    /// `repo:tag` inside the bundle.
    pub reference: String,
    /// Full source reference.
    pub source: String,
    /// The top manifest or index.
    pub top: Descriptor,
    /// Platforms kept (from the index), `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// Whether the platform filter dropped index entries.
    pub platform_filtered: bool,
    /// Every digest the image needs, the top one included.
    pub blobs: Vec<Digest>,
    /// The config of a single-manifest image (its platform is read as it is written).
    pub config: Option<Digest>,
}

/// Something to write into the archive.
#[derive(Debug, Clone)]
pub enum Item {
    /// A manifest or index, already fetched and checked (bytes as served).
    Manifest {
        /// Its digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// Its exact bytes.
        bytes: Bytes,
    },
    /// A blob to stream from the source.
    Blob {
        /// Repository to read it from.
        repo: String,
        /// Its descriptor.
        descriptor: Descriptor,
    },
}

impl Item {
    /// The digest of the item.
    pub fn digest(&self) -> Digest {
        match self {
            Item::Manifest { digest, .. } => *digest,
            Item::Blob { descriptor, .. } => descriptor.digest,
        }
    }

    /// The content size.
    pub fn size(&self) -> u64 {
        match self {
            Item::Manifest { bytes, .. } => bytes.len() as u64,
            Item::Blob { descriptor, .. } => descriptor.size,
        }
    }
}

/// What to write, in order.
#[derive(Debug, Default)]
pub struct Plan {
    /// The images, sorted by reference.
    pub images: Vec<PlannedImage>,
    /// Every item once, children before parents.
    pub items: Vec<Item>,
    /// Notes for the user (images skipped and why).
    pub warnings: Vec<String>,
    /// Images whose manifests could not be fetched (with `--keep-going`).
    pub failed: Vec<FailedImage>,
}

/// An image left out of the bundle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedImage {
    /// `repo:tag`.
    pub reference: String,
    /// Why.
    pub reason: String,
}

impl Plan {
    /// Total content bytes of all items.
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(Item::size).sum()
    }
}

/// Lists the images a source holds that the filters select (`jobs` tag
/// lists at once).
pub async fn enumerate(
    fetcher: &Fetcher,
    filters: &Filters,
    images: Option<Vec<ImageReference>>,
    jobs: usize,
) -> anyhow::Result<Vec<Wanted>> {
    let mut wanted = match (fetcher, images) {
        (_, Some(list)) => list
            .into_iter()
            .map(|r| Wanted {
                reference: r
                    .digest
                    .map(|d| d.to_string())
                    .or(r.tag.clone())
                    .unwrap_or_default(),
                repo: r.repository,
                descriptor: None,
            })
            .collect(),
        (Fetcher::Registry(reg), None) => {
            let repos = reg.catalog().await.map_err(|e| {
                let hint = match e {
                    RegistryError::NotGranted { .. } | RegistryError::Unauthorized { .. } => {
                        " (without the catalog, name the images in a file: --images FILE)"
                    }
                    _ => "",
                };
                anyhow::Error::new(e).context(format!("listing the catalog (/v2/_catalog){hint}"))
            })?;
            let repos: Vec<String> = repos
                .into_iter()
                .filter(|r| filters.may_select_repo(r))
                .collect();
            let tag_lists: Vec<(String, Vec<String>)> = stream::iter(repos)
                .map(|repo| async move {
                    let tags = reg
                        .tags(&repo)
                        .await
                        .with_context(|| format!("listing the tags of {repo}"))?;
                    anyhow::Ok((repo, tags))
                })
                .buffered(jobs.max(1))
                .try_collect()
                .await?;
            tag_lists
                .into_iter()
                .flat_map(|(repo, tags)| {
                    tags.into_iter().map(move |tag| Wanted {
                        repo: repo.clone(),
                        reference: tag,
                        descriptor: None,
                    })
                })
                .collect()
        }
        (Fetcher::Layout(dir), None) => layout_images(dir)?,
    };
    wanted.retain(|w| filters.selects(&w.repo, &w.reference));
    for w in &wanted {
        check_name(w)?;
    }
    wanted.sort_by_key(Wanted::ref_name);
    wanted.dedup_by_key(|w| w.ref_name());
    Ok(wanted)
}

/// Refuses a repository or tag name outside the distribution grammar (a
/// registry or layout index listing one): bundle.json carries only names a
/// registry can hold, and the receiving side refuses any other.
fn check_name(w: &Wanted) -> anyhow::Result<()> {
    let repo_ok = w.repo.is_empty() || crate::registry::is_valid_repository(&w.repo);
    let reference_ok = crate::registry::is_valid_tag(&w.reference)
        || w.reference.parse::<crate::digest::Digest>().is_ok()
        || (w.repo.is_empty() && crate::registry::is_valid_repository(&w.reference));
    if !repo_ok || !reference_ok {
        bail!(
            "the source names an image {:?} (repository {:?}, tag {:?}) outside the distribution \
             grammar (lowercase repository components, tags [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}); \
             leave it out with --exclude",
            w.ref_name(),
            w.repo,
            w.reference
        );
    }
    Ok(())
}

fn layout_images(dir: &Path) -> anyhow::Result<Vec<Wanted>> {
    let path = dir.join("index.json");
    let bytes = read_capped(&path, oci::MAX_MANIFEST_SIZE * 16, Links::Follow)?;
    let index: oci::LayoutIndex =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for d in index.manifests {
        let Some(name) = d.annotations.get(oci::REF_NAME).cloned() else {
            continue;
        };
        let (repo, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_owned(), t.to_owned()),
            _ => (String::new(), name.clone()),
        };
        out.push(Wanted {
            repo,
            reference: tag,
            descriptor: Some(d),
        });
    }
    Ok(out)
}

/// Fetches every manifest of the wanted images (`jobs` at once) and orders
/// all content.
pub async fn plan(
    fetcher: &Fetcher,
    source: &SourceSpec,
    filters: &Filters,
    wanted: Vec<Wanted>,
    keep_going: bool,
    jobs: usize,
) -> anyhow::Result<Plan> {
    let fetched = stream::iter(wanted)
        .map(|w| async move {
            let tree = fetch_tree(fetcher, filters, &w)
                .await
                .with_context(|| format!("fetching {}", w.ref_name()));
            (w, tree)
        })
        .buffered(jobs.max(1));
    let mut plan = Plan::default();
    let trees: Vec<(Wanted, Tree)> = if keep_going {
        let mut trees = Vec::new();
        for (w, tree) in fetched.collect::<Vec<_>>().await {
            match tree {
                Ok(tree) => trees.push((w, tree)),
                Err(e) => plan.failed.push(FailedImage {
                    reference: w.ref_name(),
                    reason: format!("{e:#}"),
                }),
            }
        }
        trees
    } else {
        // The first failure ends the run at once.
        fetched
            .map(|(w, tree)| tree.map(|t| (w, t)))
            .try_collect()
            .await?
    };
    let mut seen = HashSet::new();
    for (w, tree) in trees {
        // An index the filter emptied is skipped; one that was empty at the source
        // travels like any other image.
        if tree.is_index && tree.kept_children == 0 && tree.platform_filtered {
            plan.warnings.push(format!(
                "{}: no entry of its index matches --platform; skipped",
                w.ref_name()
            ));
            continue;
        }
        let mut blobs = Vec::new();
        for item in tree.items {
            blobs.push(item.digest());
            if seen.insert(item.digest()) {
                plan.items.push(item);
            }
        }
        plan.images.push(PlannedImage {
            reference: w.ref_name(),
            source: match source {
                SourceSpec::Registry(h) => format!("{}/{}", bare_host(h), w.ref_name()),
                SourceSpec::Layout(d) => format!("oci:{}:{}", d.display(), w.ref_name()),
            },
            top: tree.top,
            platforms: tree.platforms,
            platform_filtered: tree.platform_filtered,
            blobs,
            config: tree.config,
        });
    }
    Ok(plan)
}

struct Tree {
    top: Descriptor,
    items: Vec<Item>,
    platforms: Vec<String>,
    platform_filtered: bool,
    is_index: bool,
    kept_children: usize,
    config: Option<Digest>,
}

async fn fetch_tree(fetcher: &Fetcher, filters: &Filters, w: &Wanted) -> anyhow::Result<Tree> {
    let (bytes, media_type, digest) = fetcher
        .manifest(&w.repo, &w.reference, w.descriptor.as_ref())
        .await?;
    let top = Descriptor {
        media_type: media_type.clone(),
        digest,
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let mut tree = Tree {
        top: top.clone(),
        items: Vec::new(),
        platforms: Vec::new(),
        platform_filtered: false,
        is_index: oci::is_index(&media_type),
        kept_children: 0,
        config: None,
    };
    walk(fetcher, filters, &w.repo, top, bytes, 0, &mut tree).await?;
    Ok(tree)
}

/// Depth-first, children before parents.
fn walk<'a>(
    fetcher: &'a Fetcher,
    filters: &'a Filters,
    repo: &'a str,
    desc: Descriptor,
    bytes: Bytes,
    depth: usize,
    tree: &'a mut Tree,
) -> futures_util::future::BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            bail!("indexes nested deeper than {MAX_DEPTH}");
        }
        let parsed = oci::parse(&desc.media_type, &bytes)
            .with_context(|| format!("reading manifest {}", desc.digest))?;
        for child in parsed.manifests {
            if !filters.keeps(child.platform.as_ref()) {
                tree.platform_filtered = true;
                continue;
            }
            if depth == 0 {
                tree.kept_children += 1;
                if let Some(p) = &child.platform {
                    tree.platforms.push(p.to_string());
                }
            }
            if !oci::is_manifest_like(&child.media_type) {
                tree.items.push(Item::Blob {
                    repo: repo.to_owned(),
                    descriptor: child,
                });
                continue;
            }
            let (child_bytes, _, _) = fetcher
                .manifest(repo, &child.digest.to_string(), Some(&child))
                .await?;
            walk(fetcher, filters, repo, child, child_bytes, depth + 1, tree).await?;
        }
        if depth == 0 {
            tree.config = parsed.config.map(|c| c.digest);
        }
        for blob in parsed.blobs {
            tree.items.push(Item::Blob {
                repo: repo.to_owned(),
                descriptor: blob,
            });
        }
        tree.items.push(Item::Manifest {
            digest: desc.digest,
            media_type: desc.media_type,
            bytes,
        });
        Ok(())
    })
}

impl Fetcher {
    /// Fetches a manifest by tag or digest, checked against `expected` when given.
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        expected: Option<&Descriptor>,
    ) -> anyhow::Result<(Bytes, String, Digest)> {
        let (bytes, media_type, digest) = match self {
            Fetcher::Registry(reg) => {
                let m = reg.manifest(repo, reference).await?;
                (m.bytes, m.media_type, m.digest)
            }
            Fetcher::Layout(dir) => {
                let d = expected.context("layout manifests are read by descriptor")?;
                let path = dir.join(d.digest.layout_path());
                let bytes = read_capped(&path, oci::MAX_MANIFEST_SIZE, Links::Follow)?;
                let digest = Digest::of(&bytes);
                (Bytes::from(bytes), d.media_type.clone(), digest)
            }
        };
        if let Some(d) = expected {
            if d.digest != digest || d.size != bytes.len() as u64 {
                bail!(
                    "manifest {} of {repo} has digest {digest} and {} bytes, its descriptor says {} bytes",
                    d.digest,
                    bytes.len(),
                    d.size
                );
            }
            if d.media_type != media_type {
                bail!(
                    "manifest {} of {repo} is served as {media_type}, its descriptor says {}",
                    d.digest,
                    d.media_type
                );
            }
        }
        Ok((bytes, media_type, digest))
    }

    /// Opens a blob for reading; the reader fails at its end unless size and digest match.
    pub async fn open_blob(&self, repo: &str, d: &Descriptor) -> anyhow::Result<BlobSource> {
        match self {
            Fetcher::Registry(reg) => {
                let stream = reg.blob(repo, &d.digest, d.size).await?;
                Ok(BlobSource::Stream(stream))
            }
            Fetcher::Layout(dir) => {
                let path = dir.join(d.digest.layout_path());
                let file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                Ok(BlobSource::File(CheckedReader {
                    inner: file,
                    hasher: Hasher::new(),
                    expected: d.digest,
                    size: d.size,
                    path,
                }))
            }
        }
    }
}

/// An opened blob.
pub enum BlobSource {
    /// A registry body (checks itself).
    Stream(crate::registry::BlobStream),
    /// A file from a layout.
    File(CheckedReader),
}

/// Reads a file and fails at its end unless the size and sha256 match.
pub struct CheckedReader {
    inner: File,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    path: PathBuf,
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 || self.hasher.len() > self.size {
            let found = self.hasher.clone().finish();
            if self.hasher.len() != self.size || found != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has {} bytes and digest {found}, expected {} bytes and {}",
                        self.path.display(),
                        self.hasher.len(),
                        self.size,
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_repo_or_repo_and_tag() {
        let f = Filters::new(
            &["openshift/*".into(), "library/busybox:1.*".into()],
            &["openshift/*:latest".into()],
            &[],
        )
        .unwrap();
        assert!(f.selects("openshift/php", "5.5"));
        assert!(!f.selects("openshift/php", "latest"));
        assert!(f.selects("library/busybox", "1.36"));
        assert!(!f.selects("library/busybox", "latest"));
        assert!(!f.selects("library/alpine", "3"));
        assert!(
            f.may_select_repo("library/alpine"),
            "a repo:tag include may match any repo"
        );
        let f = Filters::new(&[], &["tools/*".into()], &[]).unwrap();
        assert!(!f.may_select_repo("tools/helm"));
        assert!(f.may_select_repo("openshift/php"));
    }

    #[test]
    fn images_file_takes_comments_and_refuses_bare_repositories() {
        let refs = parse_images_file(
            "# mirror list\nopenshift/php:5.5  # pinned\n\nlibrary/busybox@sha256:"
                .to_owned()
                .as_str(),
        )
        .err();
        assert!(refs.is_some());
        let refs =
            parse_images_file("# x\nopenshift/php:5.5 # y\n\n  library/busybox:1.36\n").unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].repository, "openshift/php");
        assert!(parse_images_file("openshift/php\n").is_err());
    }

    #[test]
    fn source_spec_parses_the_three_forms() {
        assert_eq!(
            SourceSpec::parse("oci:./x").unwrap(),
            SourceSpec::Layout("./x".into())
        );
        assert_eq!(
            SourceSpec::parse("docker://127.0.0.1:5000").unwrap(),
            SourceSpec::Registry("127.0.0.1:5000".into())
        );
        assert_eq!(
            SourceSpec::parse("quay.io").unwrap(),
            SourceSpec::Registry("quay.io".into())
        );
        assert!(SourceSpec::parse("oci:").is_err());
    }
}
