//! `bundle list`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::output::{errln, outln};
use super::{EXIT_BAD_BUNDLE, EXIT_OK, human_bytes, print_json};
use crate::manifest::{self, BundleManifest, Platforms, Volume};
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
    platforms: &'a Platforms,
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
            platforms: &i.platforms,
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
    print_tables(&listing.images, &m.volumes);
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

/// The images and volumes tables, each column as wide as its widest cell
/// (references are up to 255 characters): the cells are grammar-checked
/// ASCII (references, platforms, volume names), so bytes are columns.
fn print_tables(images: &[ImageRow<'_>], volumes: &[crate::manifest::Volume]) {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            [
                i.reference.to_owned(),
                short_digest(&i.digest).to_owned(),
                platforms_column(i.platforms),
                human_bytes(i.size),
            ]
        })
        .collect();
    let header = ["IMAGE", "DIGEST", "PLATFORMS", "SIZE"].map(String::from);
    let width = |col: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    for [reference, digest, platforms, size] in std::iter::once(&header).chain(&rows) {
        outln!("{reference:<w0$}  {digest:<w1$}  {platforms:<w2$}  {size:>w3$}");
    }
    outln!();
    let name_width = volumes
        .iter()
        .map(|v| v.name.len())
        .chain(["VOLUME".len()])
        .max()
        .unwrap_or(0);
    let sizes: Vec<String> = volumes.iter().map(|v| human_bytes(v.size)).collect();
    let size_width = sizes.iter().map(String::len).chain([4]).max().unwrap_or(0);
    outln!("{:<name_width$}  {:>size_width$}  SHA256", "VOLUME", "SIZE");
    for (v, size) in volumes.iter().zip(&sizes) {
        outln!(
            "{:<name_width$}  {size:>size_width$}  {}",
            v.name,
            v.sha256.hex()
        );
    }
}

/// The platforms as the table shows them: joined with `,`, the list cut
/// after about 60 characters with how many more there are (`--json` has
/// them all), `-` for none.
fn platforms_column(platforms: &Platforms) -> String {
    const WIDTH: usize = 60;
    let mut shown = String::new();
    let mut more = 0usize;
    for p in platforms.iter() {
        if more > 0 || shown.len() + p.len() > WIDTH {
            more += 1;
            continue;
        }
        if !shown.is_empty() {
            shown.push(',');
        }
        shown.push_str(p);
    }
    match (shown.is_empty(), more) {
        (true, 0) => "-".to_owned(),
        (_, 0) => shown,
        (_, n) => format!("{shown},… (+{n})"),
    }
}
