//! Signed strings outside their grammar. A leaked key (or a bug on the
//! bastion) can sign any bundle.json, so every string field is held to a
//! strict grammar when bundle.json is parsed, before anything uses it to
//! name a file, write a configuration file or reach a terminal: each case
//! here is refused at the signature stage, naming the field, and `push`
//! writes nothing (no mirror configuration, no tag).

use std::fs;

use super::{RawEntry, forge, header};
use crate::common::*;
use crate::support::*;
use bundle::digest::Digest;
use bundle::geometry::BLOCK;
use bundle::manifest::EntryKind;

/// A case name, the field (a JSON pointer into bundle.json) and its hostile value.
const CASES: &[(&str, &str, &str)] = &[
    ("id-dotdot", "/bundle_id", "../../outside/mirror"),
    (
        "id-newline",
        "/bundle_id",
        "0123456789abcdef\n---\nkind: Secret",
    ),
    ("id-non-ascii", "/bundle_id", "ééééééééééééééééééééééééé"),
    (
        "id-uppercase",
        "/bundle_id",
        "0123456789ABCDEF0123456789ABCDEF",
    ),
    ("created", "/created", "yesterday"),
    ("tool-escape", "/tool", "bundle \u{1b}[2J\u{1b}[HVERIFIED"),
    (
        "source-toml",
        "/source",
        "docker://reg.example\n[[registry]]",
    ),
    (
        "image-source-yaml",
        "/images/0/source",
        "quay.io/app/one:1\n---\nkind: Secret",
    ),
    (
        "image-source-quote",
        "/images/0/source",
        "quay.io/app/one\"\nlocation = \"evil.example/x",
    ),
    (
        "image-source-bidi",
        "/images/0/source",
        "quay.io/app/one:1\u{202e}",
    ),
    ("image-source-no-host", "/images/0/source", "app/one:1"),
    ("image-reference", "/images/0/reference", "../../etc:1"),
    (
        "image-media-type",
        "/images/0/media_type",
        "application/x\r\nX-Injected: 1",
    ),
    (
        "entry-media-type",
        "/entries/1/media_type",
        "application/vnd.oci.image.layer.v1.tar; evil",
    ),
];

#[test]
fn signed_strings_outside_their_grammar_are_refused_naming_the_field() {
    let fx = forge();
    for (name, pointer, value) in CASES {
        let case = fx.case(name);
        fx.write_json(&case, |m| {
            *m.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer} is in bundle.json")) = (*value).into();
        });
        let field = pointer
            .trim_start_matches('/')
            .replace("/0/", "[0].")
            .replace("/1/", "[1].");
        let blobs = fx.expect_refused(&case, &["FAILED Signature", &field]);
        assert!(blobs.is_empty(), "{name}: {blobs:?}");
    }
    // A platform string with a newline, added to the image.
    let case = fx.case("platform");
    fx.write_json(&case, |m| {
        m["images"][0]["platforms"] = serde_json::json!(["linux/amd64\n[[registry]]"]);
    });
    fx.expect_refused(
        &case,
        &[
            "FAILED Signature",
            r#"platform "linux/amd64\n[[registry]]""#,
        ],
    );
}

/// `push` of a bundle whose signed id would name a directory outside the
/// working directory, or add a YAML document, writes no mirror
/// configuration anywhere and sets no tag.
#[test]
fn push_writes_nothing_for_a_hostile_bundle_id() {
    let fx = forge();
    let target = TestRegistry::start();
    for (name, id) in [
        ("push-id-dotdot", "../outside/x"),
        ("push-id-yaml", "a\n---\nkind: Secret"),
    ] {
        let case = fx.case(name);
        fx.write_json(&case, |m| m["bundle_id"] = id.into());
        let before = super::snapshot(&case.dir, &case.layout);
        let out = fx.push(&case, &case.bundle, &target);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {t}");
        assert!(t.contains("bundle_id"), "{name}: {t}");
        assert!(t.contains("no tag was created or moved"), "{name}: {t}");
        assert_eq!(
            super::snapshot(&case.dir, &case.layout),
            before,
            "{name}: push wrote something"
        );
        assert!(fs::read_dir(&case.cwd).unwrap().next().is_none(), "{name}");
    }
    let pushed = target.repositories();
    assert!(pushed.is_empty(), "something was pushed: {pushed:?}");
}

/// `oci-layout` must be exactly the file bundle writes: a large one (16 MiB
/// of spaces, a few KB compressed) would otherwise be buffered whole.
#[test]
fn an_oci_layout_other_than_the_constant_is_refused() {
    let fx = forge();
    let mut body = bundle::oci::OCI_LAYOUT_FILE.to_vec();
    body.resize(16 << 20, b' ');
    let mut layout = RawEntry::blob(header("oci-layout", b'0', "", body.len() as u64), &body);
    layout.kind = EntryKind::OciLayout;
    assert_eq!(layout.tar.len() as u64 - BLOCK, (16 << 20) as u64);
    let mut entries = fx.entries.clone();
    entries[0] = layout;
    let case = fx.case("big-oci-layout");
    let (m, volume) = fx.build(&fx.manifest, &entries);
    fx.publish(&case, &m, &volume);
    let blobs = fx.expect_refused(&case, &["FAILED Signature", "oci-layout is 16777216 bytes"]);
    assert!(blobs.is_empty(), "{blobs:?}");
    assert_ne!(
        m.entries[0].digest,
        Digest::of(bundle::oci::OCI_LAYOUT_FILE)
    );
}
