//! mapping.txt: the `SRC=DST` lines `oc image mirror -f` reads.
//!
//! The rules are those of openshift/oc's parser,
//! `pkg/cli/image/mirror/mappings.go` (`parseFile`, `parseArgs`) and
//! `pkg/cli/image/imagesource/reference.go` (`ParseSourceReference`,
//! `ParseDestinationReference`):
//!
//! - a `#` starts a comment, a line is split on single spaces, each `SRC=DST`
//!   at its first `=`;
//! - SRC must have a tag or a digest;
//! - DST must not have a digest ("you must specify a tag for DST or leave it
//!   blank to only push by digest");
//! - across the whole file each destination may appear once ("each
//!   destination tag may only be specified once"), a destination without a
//!   tag counting as the repository itself.
//!
//! One refused line fails the whole file. So every line here is
//! `SOURCE_REPOSITORY@DIGEST=TARGET_REPOSITORY[:TAG]`: the source pinned by
//! the digest the bundle holds; a tagged image keeps its tag; an image kept
//! by digest goes to the bare repository (oc then pushes it by digest only).
//! When several images kept by digest go to one repository, a bare
//! repository would repeat; those get a tag made from the source reference
//! the way `oc adm catalog mirror` makes one (`mount` in
//! `pkg/cli/admin/catalog/mirrorer.go`: FNV-32a of the reference, in hex).

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;

/// One image as mapping.txt needs it; every part already passed the
/// reference grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MappingEntry {
    /// `host/repository` the image came from.
    pub source_repository: String,
    /// The digest the bundle holds.
    pub digest: Digest,
    /// `host/repository` it went to.
    pub target_repository: String,
    /// Its tag there (`None`: kept by digest).
    pub tag: Option<String>,
}

/// FNV-32a of `bytes` (the hash `oc adm catalog mirror` tags digest-only images with).
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The text of mapping.txt for `entries`: a comment line, then one line per
/// destination (a destination given twice, which only the same digest can
/// be, is written once). A generated tag never takes a destination another
/// image has: it is numbered on (`-2`, `-3`, …) until free, so no image is
/// left out of the file.
pub(super) fn mapping_text(comment: &str, entries: &[MappingEntry]) -> String {
    // Target repositories that receive more than one digest-only image.
    let mut by_digest: BTreeMap<&str, BTreeSet<Digest>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.tag.is_none()) {
        by_digest
            .entry(&e.target_repository)
            .or_default()
            .insert(e.digest);
    }
    let source_of = |e: &MappingEntry| format!("{}@{}", e.source_repository, e.digest);
    let hashed =
        |e: &MappingEntry| e.tag.is_none() && by_digest[e.target_repository.as_str()].len() > 1;
    // Destination → source: first what the images name themselves (their
    // tags, or their bare repository), then the generated tags around them.
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    let mut destination_of = Vec::with_capacity(entries.len());
    for e in entries {
        let destination = match &e.tag {
            Some(tag) => Some(format!("{}:{tag}", e.target_repository)),
            None if hashed(e) => None,
            None => Some(e.target_repository.clone()),
        };
        if let Some(d) = &destination {
            taken.entry(d.clone()).or_insert_with(|| source_of(e));
        }
        destination_of.push(destination);
    }
    for (e, destination) in entries.iter().zip(&mut destination_of) {
        if destination.is_some() {
            continue;
        }
        let source = source_of(e);
        let base = format!("{}:{:x}", e.target_repository, fnv32a(source.as_bytes()));
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.get(&candidate).is_some_and(|s| *s != source) {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(candidate.clone(), source);
        *destination = Some(candidate);
    }
    let mut out = format!("# {}\n", super::quoted::comment_text(comment));
    let mut written = BTreeSet::new();
    for (e, destination) in entries.iter().zip(destination_of) {
        let destination = destination.expect("every entry has a destination");
        if written.insert(destination.clone()) {
            out.push_str(&format!("{}={destination}\n", source_of(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::registry::ImageReference;

    /// What `oc image mirror -f` does with `text`, following its code
    /// (pkg/cli/image/mirror/mappings.go `parseFile`/`parseArgs`,
    /// pkg/cli/image/imagesource/reference.go): the (source, destination)
    /// pairs, or the error oc gives for the first line it refuses.
    fn oc_parse_file(text: &str) -> Result<Vec<(ImageReference, ImageReference)>, String> {
        let mut overlap = BTreeMap::new();
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            for arg in line.split(' ') {
                let Some((src, dst)) = arg.split_once('=') else {
                    return Err(at(format!("{arg:?} is not SRC=DST")));
                };
                if src.is_empty() || dst.is_empty() {
                    return Err(at("all arguments must be valid SRC=DST mappings".into()));
                }
                let src: ImageReference = src.parse().map_err(|e| at(format!("{e}")))?;
                let mut dst: ImageReference = dst.parse().map_err(|e| at(format!("{e}")))?;
                if src.host.is_none() || dst.host.is_none() {
                    return Err(at("a reference without a registry".into()));
                }
                if src.tag.is_none() && src.digest.is_none() {
                    return Err(at("you must specify a tag or digest for SRC".into()));
                }
                if dst.digest.is_some() {
                    return Err(at("you must specify a tag for DST or leave it blank to \
                         only push by digest"
                        .into()));
                }
                if dst.tag.is_none() {
                    dst.tag.clone_from(&src.tag);
                }
                let key = dst.to_string();
                if overlap.insert(key.clone(), src.to_string()).is_some() {
                    return Err(at(format!(
                        "each destination tag may only be specified once: {key}"
                    )));
                }
                out.push((src, dst));
            }
        }
        Ok(out)
    }

    fn entry(source: &str, digest: Digest, target: &str, tag: Option<&str>) -> MappingEntry {
        MappingEntry {
            source_repository: source.to_owned(),
            digest,
            target_repository: target.to_owned(),
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn the_checker_refuses_what_oc_refuses() {
        let d = Digest::of(b"x");
        for bad in [
            format!("quay.io/a@{d}=reg:5000/a@{d}"),
            format!("quay.io/a@{d}=reg:5000/a\nquay.io/b@{d}=reg:5000/a"),
            "quay.io/a=reg:5000/a".to_owned(),
            format!("quay.io/a@{d}="),
            "quay.io/a:1=reg:5000/a:2 quay.io/b:1=reg:5000/a:2".to_owned(),
        ] {
            assert!(oc_parse_file(&bad).is_err(), "{bad}");
        }
        let ok = format!("# c\nquay.io/a@{d}=reg:5000/a # c\nquay.io/a:1=reg:5000/a:1\n");
        assert_eq!(oc_parse_file(&ok).expect("accepted").len(), 2);
    }

    /// Tagged images keep their tag; one digest-only image per repository
    /// goes to the bare repository; several get distinct hash tags; the same
    /// destination twice is written once. oc accepts every line, and each
    /// source is pinned by the bundle's digest.
    #[test]
    fn every_line_is_accepted_by_oc() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let entries = vec![
            entry("quay.io/o/php", a, "reg:5000/m/o/php", Some("5.5")),
            entry("quay.io/o/php", b, "reg:5000/m/o/php", Some("5.6")),
            entry("quay.io/t/x", c, "reg:5000/m/t/x", None),
            entry("quay.io/t/y", a, "reg:5000/m/t/y", None),
            entry("quay.io/t/y", b, "reg:5000/m/t/y", None),
            entry("quay.io/t/y", b, "reg:5000/m/t/y", None),
            entry("mirror.example/o/php", a, "reg:5000/m/o/php", Some("5.5")),
        ];
        let text = mapping_text("Generated.\nevil=line", &entries);
        let parsed = oc_parse_file(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# Generated.?evil=line");
        let tag_y = |d: Digest| format!("{:x}", fnv32a(format!("quay.io/t/y@{d}").as_bytes()));
        assert_eq!(
            lines[1..],
            [
                format!("quay.io/o/php@{a}=reg:5000/m/o/php:5.5"),
                format!("quay.io/o/php@{b}=reg:5000/m/o/php:5.6"),
                format!("quay.io/t/x@{c}=reg:5000/m/t/x"),
                format!("quay.io/t/y@{a}=reg:5000/m/t/y:{}", tag_y(a)),
                format!("quay.io/t/y@{b}=reg:5000/m/t/y:{}", tag_y(b)),
            ]
        );
        assert_ne!(tag_y(a), tag_y(b));
        for (src, dst) in parsed {
            assert!(src.digest.is_some() && src.tag.is_none(), "{src}");
            assert!(dst.digest.is_none(), "{dst}");
        }
    }

    /// A generated tag that another image already has as its own tag is
    /// numbered on: every image keeps its line, and oc accepts the file.
    #[test]
    fn a_generated_tag_taken_by_another_image_is_numbered_on() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let tag_y = |d: Digest| format!("{:x}", fnv32a(format!("quay.io/t/y@{d}").as_bytes()));
        let entries = vec![
            entry("quay.io/t/y", a, "reg:5000/m/t/y", None),
            entry("quay.io/t/y", b, "reg:5000/m/t/y", None),
            // Listed after, it still keeps its own tag.
            entry("quay.io/t/z", c, "reg:5000/m/t/y", Some(&tag_y(a))),
        ];
        let text = mapping_text("c", &entries);
        oc_parse_file(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                format!("quay.io/t/y@{a}=reg:5000/m/t/y:{}-2", tag_y(a)),
                format!("quay.io/t/y@{b}=reg:5000/m/t/y:{}", tag_y(b)),
                format!("quay.io/t/z@{c}=reg:5000/m/t/y:{}", tag_y(a)),
            ]
        );
    }

    /// FNV-32a's published test vectors.
    #[test]
    fn fnv32a_known_answers() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }
}
