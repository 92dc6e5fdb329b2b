//! Which images a bad blob or a bad volume affects: one map from digest to
//! images, built once from bundle.json's image lists and shared by every
//! finding, so that reporting stays linear in bundle.json.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::digest::Digest;
use crate::manifest::{BundleManifest, Volume, volume_index};

/// The images that need each digest.
pub(super) struct Affected<'m> {
    m: &'m BundleManifest,
    /// Slot of each digest an image lists.
    slot: HashMap<Digest, u32>,
    /// Images of slot `s`: `images[starts[s]..starts[s + 1]]`.
    starts: Vec<u32>,
    images: Vec<u32>,
    /// Each image's reference, shared by every finding that names it (a
    /// copy per finding would cost more than bundle.json spends on it).
    names: Vec<Arc<str>>,
}

impl<'m> Affected<'m> {
    /// The map for the images of `m`.
    pub fn new(m: &'m BundleManifest) -> Self {
        let mut slot: HashMap<Digest, u32> = HashMap::new();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (i, img) in m.images.iter().enumerate() {
            for d in img.blobs.iter().chain([&img.digest]) {
                let next = slot.len() as u32;
                let s = *slot.entry(*d).or_insert(next);
                pairs.push((s, i as u32));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut starts = vec![0u32; slot.len() + 1];
        for &(s, _) in &pairs {
            starts[s as usize + 1] += 1;
        }
        for s in 1..starts.len() {
            starts[s] += starts[s - 1];
        }
        let images = pairs.into_iter().map(|(_, i)| i).collect();
        Affected {
            m,
            slot,
            starts,
            images,
            names: m
                .images
                .iter()
                .map(|i| Arc::from(i.reference.as_str()))
                .collect(),
        }
    }

    /// Indices of the images that need `digest`.
    fn needing(&self, digest: &Digest) -> &[u32] {
        match self.slot.get(digest) {
            Some(&s) => &self.images[self.starts[s as usize] as usize..][..self.count(s)],
            None => &[],
        }
    }

    fn count(&self, s: u32) -> usize {
        (self.starts[s as usize + 1] - self.starts[s as usize]) as usize
    }

    /// References of the images that need `digest`, sorted.
    pub fn of_blob(&self, digest: &Digest) -> Vec<Arc<str>> {
        self.references(self.needing(digest).iter().copied())
    }

    /// References of the images that need an entry with any byte in volume
    /// `name`, sorted (entries tile the stream in order: found by binary search).
    pub fn of_volume(&self, name: &str) -> Vec<Arc<str>> {
        let Some(v) = volume_named(self.m, name) else {
            return vec![];
        };
        let (start, end) = (v.tar_offset, v.tar_offset + v.tar_size);
        let entries = &self.m.entries;
        let first = entries.partition_point(|e| e.tar_end() <= start);
        let last = entries.partition_point(|e| e.tar_offset < end);
        let mut images: Vec<u32> = entries[first..last.max(first)]
            .iter()
            .flat_map(|e| self.needing(&e.digest).iter().copied())
            .collect();
        images.sort_unstable();
        images.dedup();
        self.references(images.into_iter())
    }

    fn references(&self, images: impl Iterator<Item = u32>) -> Vec<Arc<str>> {
        let names: BTreeSet<&Arc<str>> = images.map(|i| &self.names[i as usize]).collect();
        names.into_iter().cloned().collect()
    }
}

/// The volume called `name` (volume `i` is called `volume_name(i)`, checked by
/// [`BundleManifest::check`]).
fn volume_named<'m>(m: &'m BundleManifest, name: &str) -> Option<&'m Volume> {
    let index = volume_index(name)?;
    m.volumes.get(index).filter(|v| v.name == name)
}
