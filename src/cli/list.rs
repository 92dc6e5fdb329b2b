//! `bundle list`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::output::{errln, outln};
use super::{EXIT_BAD_BUNDLE, EXIT_OK, human_bytes, print_json};
use crate::manifest::{self, BundleManifest, Volume};
use crate::verify::{self, VerifyReport};

/// Arguments of `bundle list`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle directory.
    dir: PathBuf,
    /// Check bundle.json's signature first (recommended): a trusted public
    /// key, or a directory of them; repeatable, as for `verify`.
    #[arg(long, value_name = "FILE|DIR")]
    pubkey: Vec<PathBuf>,
    /// Print as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Listing<'a> {
    bundle_id: &'a str,
    created: &'a str,
    source: &'a str,
    signature_checked: bool,
    images: Vec<ImageRow<'a>>,
    volumes: &'a [Volume],
}

#[derive(Serialize)]
struct ImageRow<'a> {
    reference: &'a str,
    digest: String,
    media_type: &'a str,
    platforms: Vec<&'a str>,
    size: u64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let m = if args.pubkey.is_empty() {
        let path = args.dir.join(manifest::FILE_NAME);
        let bytes = crate::files::read_capped(
            &path,
            manifest::MAX_MANIFEST_BYTES,
            crate::files::Links::Refuse,
        )?;
        if !args.json {
            errln!("warning: signature not checked (pass --pubkey to check it)");
        }
        BundleManifest::parse(&bytes).with_context(|| format!("reading {}", path.display()))?
    } else {
        let trust = verify::Trust {
            keys: super::options::trusted_keys(&args.pubkey)?,
            not_before: None,
        };
        let mut report = VerifyReport::default();
        match verify::read_signed_manifest(&args.dir, &trust, &mut report)? {
            Some((m, _)) => m,
            None => {
                for f in &report.findings {
                    errln!("error: {}: {}", f.file.as_deref().unwrap_or(""), f.message);
                }
                return Ok(EXIT_BAD_BUNDLE);
            }
        }
    };
    let sizes: HashMap<_, _> = m.entries.iter().map(|e| (e.digest, e.size)).collect();
    let images: Vec<ImageRow> = m
        .images
        .iter()
        .map(|i| ImageRow {
            reference: &i.reference,
            digest: i.digest.to_string(),
            media_type: &i.media_type,
            platforms: i.platforms.iter().collect(),
            size: i
                .blobs
                .iter()
                .chain([&i.digest])
                .collect::<std::collections::BTreeSet<_>>()
                .iter()
                .filter_map(|d| sizes.get(*d))
                .sum(),
        })
        .collect();
    let listing = Listing {
        bundle_id: &m.bundle_id,
        created: &m.created,
        source: &m.source,
        signature_checked: !args.pubkey.is_empty(),
        images,
        volumes: &m.volumes,
    };
    if args.json {
        print_json(&listing)?;
        return Ok(EXIT_OK);
    }
    outln!(
        "bundle {} created {} from {}",
        m.bundle_id,
        m.created,
        m.source
    );
    outln!();
    outln!(
        "{:<50} {:<20} {:<36} {:>10}",
        "IMAGE",
        "DIGEST",
        "PLATFORMS",
        "SIZE"
    );
    for i in &listing.images {
        let platforms = if i.platforms.is_empty() {
            "-".to_owned()
        } else {
            i.platforms.join(",")
        };
        outln!(
            "{:<50} {:<20} {:<36} {:>10}",
            i.reference,
            short_digest(&i.digest),
            platforms,
            human_bytes(i.size)
        );
    }
    outln!();
    outln!("{:<24} {:>12}  SHA256", "VOLUME", "SIZE");
    for v in &m.volumes {
        outln!(
            "{:<24} {:>12}  {}",
            v.name,
            human_bytes(v.size),
            v.sha256.hex()
        );
    }
    Ok(EXIT_OK)
}

/// The first 12 hex digits of a digest, with its algorithm (`sha256:0123456789ab`).
fn short_digest(digest: &str) -> &str {
    let end = digest
        .char_indices()
        .nth("sha256:".len() + 12)
        .map_or(digest.len(), |(i, _)| i);
    &digest[..end]
}
