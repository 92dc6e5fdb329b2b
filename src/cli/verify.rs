//! `bundle verify`.

use super::options::BundleArgs;
use super::output::{errln, outln};
use super::{EXIT_BAD_BUNDLE, EXIT_OK, human_bytes, print_json};
use crate::text::count;
use crate::verify::{self, Stage, VerifyReport};

/// Arguments of `bundle verify`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: BundleArgs,
    /// Stop after the signature and the volume sizes and hashes (no decompression).
    #[arg(long)]
    quick: bool,
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
    let report = verify::verify(&dirs, &trust, args.quick, &mut progress);
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.ok() {
        EXIT_OK
    } else {
        EXIT_BAD_BUNDLE
    })
}

/// The first line of a report: which bundle, from where, signed by which key.
pub(super) fn print_header(r: &VerifyReport) {
    if let (Some(id), Some(created), Some(source)) = (&r.bundle_id, &r.created, &r.source) {
        outln!(
            "bundle {id}, created {created} from {source}, signed by key {}",
            r.key_id
        );
    }
}

/// The human form of a verify report.
pub(super) fn print_human(r: &VerifyReport) {
    print_header(r);
    let failed = |stage| r.findings.iter().filter(|f| f.stage == stage).count();
    let line = |name: &str, stage, ok: String| {
        let n = failed(stage);
        if n == 0 {
            outln!("  {name:<12} {ok}");
        } else {
            outln!("  {name:<12} FAILED ({})", count(n, "problem"));
        }
    };
    line("signature", Stage::Signature, "ok".into());
    if failed(Stage::Signature) == 0 {
        line(
            "volumes",
            Stage::Volumes,
            format!(
                "{}/{} ok ({} read)",
                r.volumes_ok,
                r.volumes,
                human_bytes(r.bytes_read)
            ),
        );
        if !r.read {
            outln!("  (blobs, images and index.json not checked: the volumes were not read)");
        } else if r.quick {
            outln!("  (--quick: blobs, images and index.json not checked)");
        } else {
            line(
                "blobs",
                Stage::Blobs,
                format!("{}/{} ok", r.blobs_ok, r.blobs),
            );
            line("images", Stage::Images, format!("{} complete", r.images));
            line("index.json", Stage::Index, "agrees with bundle.json".into());
        }
    }
    for w in &r.warnings {
        errln!("warning: {w}");
    }
    for f in &r.findings {
        let file = f
            .file
            .as_deref()
            .map(|s| format!("{s}: "))
            .unwrap_or_default();
        outln!("FAILED {:?}: {file}{}", f.stage, f.message);
        if !f.images.is_empty() {
            outln!("       affects: {}", f.images.join(", "));
        }
    }
    if r.ok() {
        outln!("VERIFIED: {}", count(r.images, "image"));
    } else {
        outln!(
            "BAD BUNDLE: {}; do not use it",
            count(r.findings.len(), "problem")
        );
    }
}
