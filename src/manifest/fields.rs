//! The grammar of every string field of bundle.json, checked when it is parsed.
//!
//! bundle.json is signed, but a signature says only who wrote it: a leaked key
//! or a bug on the bastion can sign any string. Every string is therefore
//! held to a strict grammar before anything uses it (to name a file, write a
//! configuration file or reach a terminal): identifiers and references to
//! the distribution grammar, free text to a length bound and no control or
//! bidirectional-formatting characters.

use crate::registry::{ImageReference, is_valid_host, is_valid_repository, is_valid_tag};

use super::{BundleManifest, Image, ManifestError};

/// Longest free-text field (`tool`).
const MAX_TEXT: usize = 256;
/// Longest path recorded for an OCI layout source.
const MAX_PATH: usize = 4096;
/// Longest image reference (255 for the name, a tag or a digest, separators).
const MAX_REFERENCE: usize = 512;
/// Longest part of a media type (RFC 6838: 127 characters each side).
const MAX_MEDIA_TYPE_PART: usize = 127;
/// Longest part of a platform (`os`, `arch`, `variant`).
const MAX_PLATFORM_PART: usize = 64;

/// Checks every string field of `m` against its grammar.
pub(super) fn check(m: &BundleManifest) -> Result<(), ManifestError> {
    let top = |field: &str, value: &str, reason: &str| {
        Err(ManifestError::Field {
            field: field.to_owned(),
            image: None,
            value: shown(value),
            reason: reason.to_owned(),
        })
    };
    if !is_bundle_id(&m.bundle_id) {
        return top(
            "bundle_id",
            &m.bundle_id,
            "expected 32 lowercase hex digits",
        );
    }
    if time::OffsetDateTime::parse(&m.created, &time::format_description::well_known::Rfc3339)
        .is_err()
    {
        return top("created", &m.created, "expected an RFC 3339 time");
    }
    if let Err(reason) = plain_text(&m.tool, MAX_TEXT) {
        return top("tool", &m.tool, reason);
    }
    if let Err(reason) = bundle_source(&m.source) {
        return top("source", &m.source, reason);
    }
    for (i, e) in m.entries.iter().enumerate() {
        if let Some(media_type) = &e.media_type
            && let Err(reason) = self::media_type(media_type)
        {
            return top(&format!("entries[{i}].media_type"), media_type, reason);
        }
    }
    // One name, one image: a layout's index.json cannot hold a name twice.
    let mut names = std::collections::HashSet::new();
    for (i, img) in m.images.iter().enumerate() {
        if !names.insert(img.reference.as_str()) {
            return Err(ManifestError::Field {
                field: format!("images[{i}].reference"),
                image: Some(shown(&img.reference)),
                value: shown(&img.reference),
                reason: "another image has this name already".to_owned(),
            });
        }
        check_image(img).map_err(|(field, value, reason)| ManifestError::Field {
            field: format!("images[{i}].{field}"),
            image: Some(shown(&img.reference)),
            value: shown(value),
            reason: reason.to_owned(),
        })?;
    }
    Ok(())
}

type FieldError<'a> = (&'static str, &'a str, &'static str);

fn check_image(img: &Image) -> Result<(), FieldError<'_>> {
    image_reference(&img.reference).map_err(|r| ("reference", img.reference.as_str(), r))?;
    image_source(&img.source, &img.reference).map_err(|r| ("source", img.source.as_str(), r))?;
    media_type(&img.media_type).map_err(|r| ("media_type", img.media_type.as_str(), r))?;
    for p in img.platforms.iter() {
        platform(p).map_err(|r| ("platforms", p, r))?;
    }
    Ok(())
}

/// The bundle id: 32 lowercase hex digits (128 random bits).
pub fn is_bundle_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The layout name of an image: `repo:tag`, `repo@sha256:<hex>`, a bare
/// repository or a bare tag (as a layout's ref names come), to the
/// distribution grammar.
fn image_reference(s: &str) -> Result<(), &'static str> {
    const WHY: &str = "expected repo:tag, repo@sha256:<hex>, a repository or a tag \
                       (distribution grammar: lowercase path components)";
    if s.len() > MAX_REFERENCE {
        return Err("longer than 512 bytes");
    }
    if let Some((repo, digest)) = s.split_once('@') {
        return if is_valid_repository(repo) && digest.parse::<crate::digest::Digest>().is_ok() {
            Ok(())
        } else {
            Err(WHY)
        };
    }
    let ok = match s.rsplit_once(':') {
        Some((repo, tag)) => is_valid_repository(repo) && is_valid_tag(tag),
        None => is_valid_repository(s) || is_valid_tag(s),
    };
    if ok { Ok(()) } else { Err(WHY) }
}

/// Where an image came from: a full reference with a registry host, or
/// `oci:PATH:REFERENCE` for a layout source (REFERENCE being the image's own).
fn image_source(s: &str, reference: &str) -> Result<(), &'static str> {
    if let Some(rest) = s.strip_prefix("oci:") {
        let path = rest
            .strip_suffix(reference)
            .and_then(|p| p.strip_suffix(':'))
            .ok_or("an oci: source must end with :<the image's reference>")?;
        return layout_path(path);
    }
    if s.len() > MAX_REFERENCE {
        return Err("longer than 512 bytes");
    }
    match s.parse::<ImageReference>() {
        Ok(r) if r.host.is_some() => Ok(()),
        _ => Err("expected HOST[:PORT]/REPOSITORY[:TAG][@sha256:<hex>] (distribution grammar)"),
    }
}

/// The bundle's source: `docker://HOST[:PORT]` or `oci:PATH`.
fn bundle_source(s: &str) -> Result<(), &'static str> {
    if let Some(host) = s.strip_prefix("docker://") {
        return if is_valid_host(host) {
            Ok(())
        } else {
            Err("expected docker://HOST[:PORT]")
        };
    }
    match s.strip_prefix("oci:") {
        Some(path) => layout_path(path),
        None => Err("expected docker://HOST[:PORT] or oci:PATH"),
    }
}

fn layout_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the layout path is empty");
    }
    plain_text(path, MAX_PATH)
}

/// A media type as RFC 6838 restricts names: `type/subtype`, each of
/// `[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*` up to 127 characters; no parameters.
fn media_type(s: &str) -> Result<(), &'static str> {
    let name = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_MEDIA_TYPE_PART
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
    };
    match s.split_once('/') {
        Some((t, sub)) if name(t) && name(sub) => Ok(()),
        _ => Err("expected a media type type/subtype (RFC 6838 names, no parameters)"),
    }
}

/// `os/arch[/variant]`, each of `[A-Za-z0-9._-]` up to 64 characters.
pub(super) fn platform(s: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = s.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.len() <= MAX_PLATFORM_PART
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
    };
    if (2..=3).contains(&parts.len()) && parts.iter().all(part_ok) {
        Ok(())
    } else {
        Err("expected os/arch[/variant] of letters, digits, '.', '_' and '-'")
    }
}

/// Free text: at most `max` bytes, no control characters (C0, DEL, C1) and
/// no bidirectional or invisible formatting characters.
fn plain_text(s: &str, max: usize) -> Result<(), &'static str> {
    if s.len() > max {
        return Err("too long");
    }
    if s.chars().any(crate::text::is_unsafe) {
        return Err("holds a control or formatting character");
    }
    Ok(())
}

/// A value as an error message shows it: debug-quoted (control characters
/// escaped) and cut to 80 characters (never inside a character).
pub(super) fn shown(value: &str) -> String {
    let mut cut: String = value.chars().take(80).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_distribution_grammar() {
        for ok in [
            "openshift/php:5.5",
            "a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "latest",
            "V1.0_rc-1",
            "tools/helm",
        ] {
            assert_eq!(image_reference(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Upper/case:1",
            "a:b\n",
            "a:b c",
            "a/../b:1",
            "a:-x",
            "a@sha256:00",
            "a:b:c",
            "\u{1b}[2J",
        ] {
            assert!(image_reference(bad).is_err(), "{bad:?}");
        }
        assert!(image_reference(&"a".repeat(600)).is_err());
    }

    #[test]
    fn sources_name_a_registry_or_a_layout() {
        assert_eq!(image_source("quay.io/a/b:1", "a/b:1"), Ok(()));
        assert_eq!(
            image_source(
                "127.0.0.1:5000/a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "a@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            Ok(())
        );
        assert_eq!(
            image_source("oci:/media/my layout:tools/helm:3", "tools/helm:3"),
            Ok(())
        );
        for (bad, reference) in [
            ("a/b:1", "a/b:1"),
            ("quay.io/a/b:1\n[[registry]]", "a/b:1"),
            ("quay.io/A:1", "a:1"),
            ("oci:/x:other:1", "a:1"),
            ("oci::a:1", "a:1"),
            ("oci:/x\u{202e}:a:1", "a:1"),
            ("oci:/x\n:a:1", "a:1"),
        ] {
            assert!(image_source(bad, reference).is_err(), "{bad:?}");
        }
        assert_eq!(bundle_source("docker://reg.example:5000"), Ok(()));
        assert_eq!(bundle_source("oci:/srv/layout"), Ok(()));
        assert!(bundle_source("docker://reg/../x").is_err());
        assert!(bundle_source("https://reg").is_err());
        assert!(bundle_source("oci:").is_err());
    }

    #[test]
    fn ids_media_types_and_platforms() {
        assert!(is_bundle_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_bundle_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_bundle_id("../../etc/x"));
        assert!(!is_bundle_id("é123456789abcdef0123456789abcde"));
        assert_eq!(media_type(crate::oci::OCI_MANIFEST), Ok(()));
        assert_eq!(
            media_type("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
            Ok(())
        );
        for bad in ["", "application", "a/b; x=y", "a/b\n", "/b", "a/", "a/b/c"] {
            assert!(media_type(bad).is_err(), "{bad:?}");
        }
        for ok in ["linux/amd64", "linux/arm/v7", "unknown/unknown"] {
            assert_eq!(platform(ok), Ok(()), "{ok}");
        }
        for bad in [
            "linux",
            "linux/",
            "a/b/c/d",
            "linux/amd64\u{1b}",
            "linux/a md64",
        ] {
            assert!(platform(bad).is_err(), "{bad:?}");
        }
        assert!(plain_text("bundle 0.1.0", MAX_TEXT).is_ok());
        for bad in ["a\u{7}", "a\u{9b}", "a\u{202e}b", "a\u{2066}", "x\r"] {
            assert!(plain_text(bad, MAX_TEXT).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shown_values_are_escaped_and_cut_on_character_boundaries() {
        assert_eq!(shown("a\u{1b}[2J"), "\"a\\u{1b}[2J\"");
        let long = "é".repeat(100);
        let s = shown(&long);
        assert!(s.ends_with("…\""), "{s}");
        assert_eq!(s.chars().filter(|&c| c == 'é').count(), 80);
    }
}
