//! `bundle extract`.

use std::path::PathBuf;

use super::{EXIT_BAD_BUNDLE, EXIT_OK, print_json};
use crate::extract;
use crate::sign::PublicKey;

/// Arguments of `bundle extract`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle directory (holding bundle.json and its signature).
    dir: PathBuf,
    /// The OCI layout directory to write (created, or added to).
    #[arg(long, value_name = "LAYOUT")]
    to: PathBuf,
    /// The trusted public key (minisign format), received out of band.
    #[arg(long, value_name = "FILE")]
    pubkey: PathBuf,
    /// Also look for volumes in DIR (several media mounted apart); repeatable.
    #[arg(long, value_name = "DIR")]
    volumes_from: Vec<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let key = PublicKey::from_file(&args.pubkey)?;
    super::verify::warn_demo_key(&key);
    let dirs: Vec<PathBuf> = std::iter::once(args.dir.clone())
        .chain(args.volumes_from.clone())
        .collect();
    let bar = super::reading_bar(args.json);
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = extract::extract(&dirs, &key, &args.to, &mut progress);
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        super::verify::print_human(&report.verify);
        if report.published {
            println!(
                "extracted into {}: {} images added, {} blobs written, {} already there",
                report.layout.display(),
                report.images_added,
                report.blobs_written,
                report.blobs_present
            );
        } else {
            println!(
                "nothing published: {} has no new index.json entries",
                report.layout.display()
            );
        }
    }
    Ok(if report.verify.ok() {
        EXIT_OK
    } else {
        EXIT_BAD_BUNDLE
    })
}
