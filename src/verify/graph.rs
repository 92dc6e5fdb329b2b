//! What the deep checks keep of the image graph, and the image walks over it.
//!
//! Memory has a budget no bundle.json can raise. Each manifest is parsed into
//! a transient value as soon as it has streamed and dropped right after; the
//! graph keeps of it only its distinct children as entry indices (with the
//! manifest-like media type its descriptor declares), the platforms of the
//! descriptors that have one, the children that are not in the bundle, the
//! descriptors whose size differs from their entry's, and a problem text if
//! it was unreadable. All of that together is charged against
//! [`GRAPH_BUDGET`]; past it nothing more is kept and the bundle is refused
//! with one finding.
//!
//! CPU is linear too: images that would walk the same graph (same top
//! digest, media type and platform filter) share one walk, a walk descends
//! only into manifests one of its images lists (reaching one it does not
//! list already refuses the image), and all walks together visit at most
//! [`WALK_BUDGET`] descriptors.

use std::collections::{HashMap, HashSet};

use super::{Finding, Stage, VerifyReport};
use crate::digest::Digest;
use crate::manifest::{BundleManifest, EntryKind, Image};
use crate::oci::{self, Platform};

/// Most bytes the graph keeps of all manifests together, whatever the bundle.
pub const GRAPH_BUDGET: usize = 64 << 20;
/// Most descriptors all image walks together visit.
pub const WALK_BUDGET: u64 = 1 << 28;
/// Most image findings reported; the others are counted in one more.
pub const MAX_IMAGE_FINDINGS: usize = 10_000;
/// Longest problem text kept for an unreadable manifest.
const MAX_PROBLEM_TEXT: usize = 512;
/// Deepest nesting of manifests accepted.
const MAX_DEPTH: u8 = 8;

/// The manifest-like media types, by the code an edge carries (0: any other).
const KINDS: [&str; 5] = [
    "",
    oci::OCI_MANIFEST,
    oci::OCI_INDEX,
    oci::DOCKER_MANIFEST,
    oci::DOCKER_MANIFEST_LIST,
];
/// An edge is `entry index | kind code << KIND_SHIFT`.
const KIND_SHIFT: u32 = 29;
const INDEX_MASK: u32 = (1 << KIND_SHIFT) - 1;
/// No node, no platform.
const NONE: u32 = u32::MAX;

fn kind_code(media_type: &str) -> u8 {
    KINDS
        .iter()
        .position(|k| *k == media_type)
        .map_or(0, |i| i as u8)
}

/// One verified manifest-like entry: where its ranges in the graph's lists
/// end (each starts where the previous node's ends).
struct Node {
    edges_end: u32,
    platforms_end: u32,
    absent_end: u32,
    lies_end: u32,
    /// Why it could not be read (then it has no children).
    problem: Option<Box<str>>,
}

/// A child that is not a blob of the bundle.
struct Absent {
    digest: Digest,
    /// Its descriptor's platform id, or [`NONE`].
    platform: u32,
}

/// A descriptor whose size differs from its entry's.
struct SizeLie {
    child: u32,
    declared: u64,
}

/// What the deep checks learned from the stream.
pub(super) struct Graph {
    /// Entry index of each blob of bundle.json.
    index_of: HashMap<Digest, u32>,
    /// Per entry: whether it is a blob that verified.
    verified: Vec<bool>,
    /// Per entry: its node, or [`NONE`].
    node_of: Vec<u32>,
    nodes: Vec<Node>,
    /// Children in the bundle, each `entry index | kind code << KIND_SHIFT`.
    edges: Vec<u32>,
    /// (edge position, platform id) of the edges whose descriptor has a platform.
    edge_platforms: Vec<(u32, u32)>,
    absent: Vec<Absent>,
    lies: Vec<SizeLie>,
    platforms: Vec<Platform>,
    platform_ids: HashMap<Platform, u32>,
    /// Bytes charged against `budget`.
    used: usize,
    /// Most bytes kept ([`GRAPH_BUDGET`]).
    budget: usize,
    /// Most descriptors the walks visit ([`WALK_BUDGET`]).
    walk_budget: u64,
    /// Set once the budget was exceeded: nothing is kept any more.
    over_budget: bool,
    /// Whether index.json verified.
    pub index_verified: bool,
}

impl Graph {
    /// An empty graph for the entries of `m`.
    pub fn new(m: &BundleManifest) -> Self {
        let index_of = m
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == EntryKind::Blob)
            .map(|(i, e)| (e.digest, i as u32))
            .collect();
        Graph {
            index_of,
            verified: vec![false; m.entries.len()],
            node_of: vec![NONE; m.entries.len()],
            nodes: Vec::new(),
            edges: Vec::new(),
            edge_platforms: Vec::new(),
            absent: Vec::new(),
            lies: Vec::new(),
            platforms: Vec::new(),
            platform_ids: HashMap::new(),
            used: 0,
            budget: GRAPH_BUDGET,
            walk_budget: WALK_BUDGET,
            // Entry indices must leave room for the kind code.
            over_budget: m.entries.len() > INDEX_MASK as usize,
            index_verified: false,
        }
    }

    /// The entry index of blob `digest`.
    pub fn blob_index(&self, digest: &Digest) -> Option<u32> {
        self.index_of.get(digest).copied()
    }

    /// Records that blob `entry` verified.
    pub fn verified(&mut self, entry: u32) {
        self.verified[entry as usize] = true;
    }

    /// Records the verified manifest-like blob `entry`, whose content
    /// (or why it was not kept) is `content`, parsed as `media_type`.
    pub fn add_manifest(
        &mut self,
        m: &BundleManifest,
        entry: u32,
        media_type: &str,
        content: Result<&[u8], String>,
    ) {
        if self.over_budget {
            return;
        }
        let before = self.kept();
        let parsed =
            content.and_then(|bytes| oci::parse(media_type, bytes).map_err(|e| e.to_string()));
        let problem = match parsed {
            Ok(parsed) => {
                self.add_children(m, &parsed);
                None
            }
            Err(mut text) => {
                if text.len() > MAX_PROBLEM_TEXT {
                    let mut cut = MAX_PROBLEM_TEXT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push('…');
                }
                Some(text.into_boxed_str())
            }
        };
        let text = problem.as_ref().map_or(0, |p| p.len());
        self.node_of[entry as usize] = self.nodes.len() as u32;
        self.nodes.push(Node {
            edges_end: self.edges.len() as u32,
            platforms_end: self.edge_platforms.len() as u32,
            absent_end: self.absent.len() as u32,
            lies_end: self.lies.len() as u32,
            problem,
        });
        self.used += self.kept() - before + text;
        if self.used > self.budget {
            self.drop_all();
        }
    }

    /// Bytes the lists hold (platform names are charged as they are interned).
    fn kept(&self) -> usize {
        use std::mem::size_of;
        self.nodes.len() * size_of::<Node>()
            + self.edges.len() * size_of::<u32>()
            + self.edge_platforms.len() * size_of::<(u32, u32)>()
            + self.absent.len() * size_of::<Absent>()
            + self.lies.len() * size_of::<SizeLie>()
    }

    /// Frees everything: past the budget the images are not checked.
    fn drop_all(&mut self) {
        self.over_budget = true;
        self.nodes = Vec::new();
        self.edges = Vec::new();
        self.edge_platforms = Vec::new();
        self.absent = Vec::new();
        self.lies = Vec::new();
        self.platforms = Vec::new();
        self.platform_ids = HashMap::new();
    }

    /// Appends the distinct children of `parsed` to the lists.
    fn add_children(&mut self, m: &BundleManifest, parsed: &oci::Parsed) {
        let mut edges = HashSet::new();
        let mut absent = HashSet::new();
        let mut lies = HashSet::new();
        for d in parsed.manifests.iter().chain(&parsed.blobs) {
            let platform = match &d.platform {
                Some(p) => self.platform_id(p),
                None => NONE,
            };
            match self.blob_index(&d.digest) {
                Some(child) => {
                    if m.entries[child as usize].size != d.size && lies.insert((child, d.size)) {
                        self.lies.push(SizeLie {
                            child,
                            declared: d.size,
                        });
                    }
                    let edge = child | u32::from(kind_code(&d.media_type)) << KIND_SHIFT;
                    if !edges.insert((edge, platform)) {
                        continue;
                    }
                    if platform != NONE {
                        let at = self.edges.len() as u32;
                        self.edge_platforms.push((at, platform));
                    }
                    self.edges.push(edge);
                }
                None => {
                    if absent.insert((d.digest, platform)) {
                        self.absent.push(Absent {
                            digest: d.digest,
                            platform,
                        });
                    }
                }
            }
        }
    }

    /// The id of platform `p`, interned (its strings charged to the budget).
    fn platform_id(&mut self, p: &Platform) -> u32 {
        if let Some(&id) = self.platform_ids.get(p) {
            return id;
        }
        let id = self.platforms.len() as u32;
        let text = p.os.len() + p.architecture.len() + p.variant.as_ref().map_or(0, String::len);
        self.used += 2 * (text + std::mem::size_of::<Platform>());
        self.platforms.push(p.clone());
        self.platform_ids.insert(p.clone(), id);
        id
    }

    fn node(&self, entry: u32) -> Option<(&Node, Option<&Node>)> {
        let n = *self.node_of.get(entry as usize)?;
        if n == NONE {
            return None;
        }
        let previous = n.checked_sub(1).map(|p| &self.nodes[p as usize]);
        Some((&self.nodes[n as usize], previous))
    }
}

/// The ranges of one node in the graph's lists.
struct Ranges {
    edges: std::ops::Range<usize>,
    platforms: std::ops::Range<usize>,
    absent: std::ops::Range<usize>,
    lies: std::ops::Range<usize>,
}

fn ranges(node: &Node, previous: Option<&Node>) -> Ranges {
    let start = |f: fn(&Node) -> u32| previous.map_or(0, |p| f(p) as usize);
    Ranges {
        edges: start(|n| n.edges_end)..node.edges_end as usize,
        platforms: start(|n| n.platforms_end)..node.platforms_end as usize,
        absent: start(|n| n.absent_end)..node.absent_end as usize,
        lies: start(|n| n.lies_end)..node.lies_end as usize,
    }
}

/// What one walk found: its problems (blob, message) and how many entries it reached.
struct Walk {
    problems: Vec<(Option<Digest>, String)>,
    reached: usize,
}

/// The walks over one graph: per-entry marks reused by every walk.
struct Walker<'g> {
    m: &'g BundleManifest,
    graph: &'g Graph,
    /// Per entry: the number of the last walk that reached it.
    seen: Vec<u32>,
    /// Per entry: the number of the last walk one of whose images lists it.
    listed: Vec<u32>,
    /// Per entry: the number of the last image whose list counted it.
    counted: Vec<u32>,
    walks: u32,
    images: u32,
    visits: u64,
}

/// Every image: all descriptors reachable from its top manifest are present,
/// verified, written before their parent, and match what bundle.json lists.
pub(super) fn check_images(m: &BundleManifest, graph: &Graph, report: &mut VerifyReport) {
    let refuse = |report: &mut VerifyReport, message: String| {
        report.findings.push(Finding {
            stage: Stage::Images,
            file: None,
            blob: None,
            images: vec![],
            message,
        });
    };
    if graph.over_budget {
        refuse(
            report,
            format!(
                "the manifests reference more than the image checks may keep in memory \
                 ({} MiB of descriptors): the images are not checked, the bundle is refused",
                graph.budget >> 20
            ),
        );
        return;
    }
    let mut walker = Walker {
        m,
        graph,
        seen: vec![0; m.entries.len()],
        listed: vec![0; m.entries.len()],
        counted: vec![0; m.entries.len()],
        walks: 0,
        images: 0,
        visits: 0,
    };
    let mut found: Vec<(usize, Finding)> = Vec::new();
    let mut omitted = 0usize;
    for group in walk_groups(m) {
        let Some(walk) = walker.walk(&group) else {
            refuse(
                report,
                format!(
                    "checking the images would visit more than {} descriptors: \
                     the images are not checked, the bundle is refused",
                    graph.walk_budget
                ),
            );
            return;
        };
        for &i in &group {
            let img = &m.images[i];
            let differs;
            let problems =
                if walk.problems.is_empty() && walker.lists_other_than_reached(img, &walk) {
                    differs = [(
                        None,
                        "the blobs reachable from its manifest differ from those bundle.json lists"
                            .to_owned(),
                    )];
                    &differs[..]
                } else {
                    &walk.problems[..]
                };
            for (blob, message) in problems {
                if found.len() == MAX_IMAGE_FINDINGS {
                    omitted += 1;
                    continue;
                }
                found.push((
                    i,
                    Finding {
                        stage: Stage::Images,
                        file: None,
                        blob: *blob,
                        images: vec![img.reference.as_str().into()],
                        message: format!("{}: {message}", img.reference),
                    },
                ));
            }
        }
    }
    found.sort_by_key(|(i, _)| *i);
    report.findings.extend(found.into_iter().map(|(_, f)| f));
    if omitted > 0 {
        refuse(
            report,
            format!("{omitted} more problems with images (not listed)"),
        );
    }
}

/// The images, grouped by what their walk depends on (top digest, media
/// type, platform filter), in the order of their first image.
fn walk_groups(m: &BundleManifest) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<(Digest, &str, Option<&str>), usize> = HashMap::new();
    for (i, img) in m.images.iter().enumerate() {
        let filter = img.platform_filtered.then_some(img.platforms.joined());
        let key = (img.digest, img.media_type.as_str(), filter);
        let g = *by_key.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

impl Walker<'_> {
    /// Walks the graph from the top of the images of `group` (which share
    /// it), descending only into manifests one of them lists; None when the
    /// walk budget is spent.
    fn walk(&mut self, group: &[usize]) -> Option<Walk> {
        let (m, graph) = (self.m, self.graph);
        self.walks += 1;
        let stamp = self.walks;
        for &i in group {
            for d in m.images[i].blobs.iter().chain([&m.images[i].digest]) {
                if let Some(e) = graph.blob_index(d) {
                    self.listed[e as usize] = stamp;
                }
            }
        }
        let img = &m.images[group[0]];
        // The filter as a set, so that each check is one or two lookups
        // whatever its length: a filter selects a platform with its os,
        // architecture and variant, or (without a variant) any variant.
        let filter: HashSet<(&str, &str, Option<&str>)> = if img.platform_filtered {
            img.platforms
                .iter()
                .filter_map(|p| {
                    let mut parts = p.split('/');
                    Some((parts.next()?, parts.next()?, parts.next()))
                })
                .collect()
        } else {
            HashSet::new()
        };
        let selected = |p: &Platform| {
            filter.contains(&(p.os.as_str(), p.architecture.as_str(), None))
                || p.variant.as_deref().is_some_and(|v| {
                    filter.contains(&(p.os.as_str(), p.architecture.as_str(), Some(v)))
                })
        };
        let skipped = |platform: u32| {
            img.platform_filtered
                && platform != NONE
                && !selected(&graph.platforms[platform as usize])
        };
        let missing = |d: Digest| {
            (
                Some(d),
                format!("needs {d}, which is missing or did not verify"),
            )
        };
        let mut walk = Walk {
            problems: Vec::new(),
            reached: 0,
        };
        let Some(top) = graph.blob_index(&img.digest) else {
            walk.problems.push(missing(img.digest));
            return Some(walk);
        };
        let mut absent_seen = HashSet::new();
        self.seen[top as usize] = stamp;
        walk.reached = 1;
        let mut stack = vec![(top, kind_code(&img.media_type), 0u8)];
        while let Some((entry, kind, depth)) = stack.pop() {
            let digest = m.entries[entry as usize].digest;
            if !graph.verified[entry as usize] {
                walk.problems.push(missing(digest));
                continue;
            }
            if kind == 0 {
                continue;
            }
            if depth > MAX_DEPTH {
                walk.problems
                    .push((Some(digest), "manifests nested too deep".into()));
                continue;
            }
            let Some((node, previous)) = graph.node(entry) else {
                let media_type = KINDS[kind as usize];
                walk.problems.push((
                    Some(digest),
                    format!("{digest} is referenced as {media_type} but bundle.json does not record it as one"),
                ));
                continue;
            };
            if let Some(problem) = &node.problem {
                walk.problems.push((
                    Some(digest),
                    format!("manifest {digest} is unreadable: {problem}"),
                ));
                continue;
            }
            if self.listed[entry as usize] != stamp {
                // None of the images lists it: each is refused as differing.
                continue;
            }
            let r = ranges(node, previous);
            self.visits += (r.edges.len() + r.absent.len() + r.lies.len()) as u64;
            if self.visits > graph.walk_budget {
                return None;
            }
            let mut platforms = graph.edge_platforms[r.platforms].iter().peekable();
            for at in r.edges {
                let edge = graph.edges[at];
                let platform = match platforms.peek() {
                    Some(&&(p_at, id)) if p_at as usize == at => {
                        platforms.next();
                        id
                    }
                    _ => NONE,
                };
                let child = edge & INDEX_MASK;
                let verified = graph.verified[child as usize];
                if !verified && skipped(platform) {
                    continue;
                }
                if verified && child > entry {
                    let child_digest = m.entries[child as usize].digest;
                    walk.problems.push((
                        Some(child_digest),
                        format!("{child_digest} comes after {digest}, which references it"),
                    ));
                }
                if self.seen[child as usize] != stamp {
                    self.seen[child as usize] = stamp;
                    walk.reached += 1;
                    stack.push((child, (edge >> KIND_SHIFT) as u8, depth + 1));
                }
            }
            for lie in &graph.lies[r.lies] {
                if graph.verified[lie.child as usize] {
                    let child = &m.entries[lie.child as usize];
                    walk.problems.push((
                        Some(child.digest),
                        format!(
                            "descriptor in {digest} says {} bytes for {}, the blob has {}",
                            lie.declared, child.digest, child.size
                        ),
                    ));
                }
            }
            for a in &graph.absent[r.absent] {
                if !skipped(a.platform) && absent_seen.insert(a.digest) {
                    walk.problems.push(missing(a.digest));
                }
            }
        }
        Some(walk)
    }

    /// Whether `img` lists other blobs than `walk` (its group's last) reached.
    fn lists_other_than_reached(&mut self, img: &Image, walk: &Walk) -> bool {
        self.images += 1;
        let (stamp, walked) = (self.images, self.walks);
        let mut count = 0;
        for d in img.blobs.iter().chain([&img.digest]) {
            let Some(e) = self.graph.blob_index(d) else {
                return true;
            };
            let e = e as usize;
            if self.seen[e] != walked {
                return true;
            }
            if self.counted[e] != stamp {
                self.counted[e] = stamp;
                count += 1;
            }
        }
        count != walk.reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    /// An image manifest naming `n` distinct layers the bundle lacks, each twice.
    fn manifest_lacking(n: u32) -> Vec<u8> {
        let layers: Vec<String> = (0..n)
            .chain(0..n)
            .map(|i| {
                let d = Digest::of(&i.to_be_bytes());
                format!(r#"{{"mediaType":"a/b","digest":"{d}","size":1}}"#)
            })
            .collect();
        format!(r#"{{"schemaVersion":2,"layers":[{}]}}"#, layers.join(",")).into_bytes()
    }

    /// The sample's image manifest (entry 1) verified with `content`, and the image checks' findings.
    fn check(graph: &mut Graph, content: Result<&[u8], String>) -> Vec<String> {
        let m = sample();
        graph.verified(1);
        graph.add_manifest(&m, 1, oci::OCI_MANIFEST, content);
        let mut report = VerifyReport::default();
        check_images(&m, graph, &mut report);
        report.findings.into_iter().map(|f| f.message).collect()
    }

    #[test]
    fn children_the_bundle_lacks_are_named_once_each() {
        let mut graph = Graph::new(&sample());
        let found = check(&mut graph, Ok(&manifest_lacking(3)));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("which is missing or did not verify"));
        assert_eq!(graph.absent.len(), 3, "kept once each");
    }

    #[test]
    fn past_the_memory_budget_the_bundle_is_refused_not_allocated() {
        let mut graph = Graph::new(&sample());
        graph.budget = 10_000;
        let found = check(&mut graph, Ok(&manifest_lacking(1000)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("the images are not checked"), "{found:?}");
        assert!(graph.over_budget && graph.absent.capacity() == 0);
    }

    #[test]
    fn past_the_walk_budget_the_bundle_is_refused() {
        let mut graph = Graph::new(&sample());
        graph.walk_budget = 2;
        let found = check(&mut graph, Ok(&manifest_lacking(3)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("would visit more than 2 descriptors"),
            "{found:?}"
        );
    }

    #[test]
    fn an_unreadable_manifest_keeps_a_short_reason() {
        let long = format!(r#"{{"mediaType":"{}"}}"#, "é".repeat(100_000));
        let mut graph = Graph::new(&sample());
        let found = check(&mut graph, Ok(long.as_bytes()));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("is unreadable: content claims media type"));
        assert!(found[0].len() < 1024, "{}", found[0].len());
    }
}
