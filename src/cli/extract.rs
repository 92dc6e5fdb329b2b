//! `bundle extract`.

use std::path::PathBuf;

use super::options::BundleArgs;
use super::output::outln;
use super::{EXIT_BAD_BUNDLE, EXIT_OK, print_json};
use crate::extract;

/// Arguments of `bundle extract`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: BundleArgs,
    /// The OCI layout directory to write (created, or added to).
    #[arg(long, value_name = "LAYOUT")]
    to: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let trust = args.bundle.trust()?;
    let dirs = args.bundle.dirs();
    let bar = super::reading_bar(args.json);
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = extract::extract(&dirs, &trust, &args.to, &mut progress);
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        super::verify::print_human(&report.verify);
        if report.published {
            outln!(
                "extracted into {}: {} images added, {} blobs written, {} already there",
                report.layout.display(),
                report.images_added,
                report.blobs_written,
                report.blobs_present
            );
        } else {
            outln!(
                "nothing published: the bundle did not verify, so {} has no new index.json entries",
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
