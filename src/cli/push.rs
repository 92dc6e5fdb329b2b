//! `bundle push`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use super::options::{BundleArgs, RegistryArgs, parse_jobs};
use super::output::outln;
use super::{EXIT_BAD_BUNDLE, EXIT_OK, human_bytes, print_json};
use crate::manifest::BundleManifest;
use crate::push::{
    self, Destination, ExistingTags, MirrorOptions, PushOptions, PushReport, RepoLayout, TagOutcome,
};
use crate::registry::{ClientOptions, Registry, is_valid_repository};

/// Arguments of `bundle push`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: BundleArgs,
    /// The target: REGISTRY[/PREFIX]; `openshift/php:5.5` goes to REGISTRY/PREFIX/openshift/php:5.5.
    #[arg(long, value_name = "REGISTRY[/PREFIX]")]
    to: String,
    /// One repository level under PREFIX: `openshift/php` becomes PREFIX/openshift-php.
    #[arg(long, conflicts_with = "max_nested_paths")]
    flatten: bool,
    /// At most N path components per repository, PREFIX included (Quay: 2); the
    /// last ones are joined with '-'.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_nested_paths: Option<u16>,
    /// Leave tags the target already has for another digest (default: move them
    /// to the bundle's images, as skopeo copy does). Either way the summary lists them.
    #[arg(long)]
    skip_existing_tags: bool,
    /// A repository on the target that may already hold the bundle's blobs
    /// (from an earlier push under another prefix): they are mounted from it, not uploaded. Repeatable.
    #[arg(long, value_name = "REPOSITORY")]
    mount_from: Vec<String>,
    /// Uploads at once (each holds up to a few MiB), and requests at once
    /// while surveying the target and tagging.
    #[arg(long, value_name = "N", default_value_t = crate::push::DEFAULT_JOBS, value_parser = parse_jobs)]
    jobs: usize,
    /// Where to write the mirror configuration (mapping.txt,
    /// imagedigestmirrorset.yaml, registries.conf, install-config-mirrors.yaml)
    /// [default: ./bundle-mirror-<bundle id>].
    #[arg(long, value_name = "DIR")]
    mirror_config: Option<PathBuf>,
    /// Also write an ImageTagMirrorSet and let registries.conf use the
    /// mirrors for pulls by tag (by default they serve pulls by digest only).
    #[arg(long)]
    tag_mirrors: bool,
    /// Never pull from the source once mirrored: `mirrorSourcePolicy:
    /// NeverContactSource` in the mirror sets, `blocked = true` on the source
    /// in registries.conf.
    #[arg(long)]
    never_contact_source: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a PushReport,
    #[serde(serialize_with = "crate::text::lossy_paths")]
    mirror_config: Vec<PathBuf>,
}

/// The CA certificates a cluster needs to trust the target, as canonical
/// PEM for install-config's `additionalTrustBundle`: those push itself
/// trusts besides the system's (`--ca-cert`, then the `*.crt` of `--cert-dir`
/// or of the target's certs.d directory), each file checked to hold only
/// certificates. `None` when there are none.
fn trust_bundle_pem(client: &ClientOptions, host: &str) -> anyhow::Result<Option<String>> {
    let mut pem = String::new();
    for path in crate::registry::ca_cert_files(client, host)? {
        let bytes = crate::registry::read_pem_file(&path)
            .with_context(|| format!("reading the CA certificate {}", path.display()))?;
        let certs = push::canonical_pem_certificates(&bytes)
            .with_context(|| format!("checking the CA certificate {}", path.display()))?;
        pem.push_str(&certs);
    }
    Ok((!pem.is_empty()).then_some(pem))
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let trust = args.bundle.trust()?;
    let destination = Destination::parse(&args.to)?;
    for repo in &args.mount_from {
        anyhow::ensure!(
            is_valid_repository(repo),
            "--mount-from {repo:?} is not a repository name"
        );
    }
    let layout = if args.flatten {
        let depth = destination
            .prefix
            .split('/')
            .filter(|p| !p.is_empty())
            .count();
        RepoLayout::MaxNested(depth + 1)
    } else {
        args.max_nested_paths
            .map_or(RepoLayout::Nested, |n| RepoLayout::MaxNested(n.into()))
    };
    let opts = PushOptions {
        destination: destination.clone(),
        layout,
        existing_tags: if args.skip_existing_tags {
            ExistingTags::Skip
        } else {
            ExistingTags::Overwrite
        },
        mount_from: args.mount_from.clone(),
        jobs: args.jobs,
    };
    let dirs = args.bundle.dirs();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let host = destination.registry.as_str();
    let client = args.registry.client_options(destination.host())?;
    // Before anything is sent: a CA that cannot go into the trust bundle.
    let trust_bundle = trust_bundle_pem(&client, destination.host())?;
    let mirror_dir = |id: &str| match &args.mirror_config {
        Some(dir) => Ok(dir.clone()),
        None => push::default_mirror_dir(id),
    };
    // How the target was reached, for registries.conf's `insecure`.
    let plain_http = std::cell::Cell::new(false);
    let connect = |m: &BundleManifest| {
        // Before anything is sent: the directory the mirror configuration
        // goes to must be usable (not a link, not a file), not found out
        // only after the tags are set.
        let dir = mirror_dir(&m.bundle_id)?;
        crate::files::check_real_dir(&dir)
            .context("checking the mirror configuration directory")?;
        push::check_registry_names(m, destination.host())?;
        let registry = runtime
            .block_on(Registry::connect(host, &client))
            .with_context(|| format!("connecting to {host}"))?;
        plain_http.set(registry.is_plain_http());
        Ok(registry)
    };

    let bar = super::reading_bar(args.json);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(
        super::output::escape(&format!("checking the bundle, then what {host} holds")).into_owned(),
    );
    let mut progress = |done: u64, total: u64| {
        if bar.length() != Some(total) {
            bar.set_message("reading, verifying and uploading");
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = push::push(
        &dirs,
        &trust,
        &connect,
        &opts,
        runtime.handle(),
        &mut progress,
    );
    bar.finish_and_clear();
    let report = report?;

    let mut written = Vec::new();
    if report.tagged {
        let id = report.verify.bundle_id.clone().unwrap_or_default();
        let dir = mirror_dir(&id)?;
        let pushed: Vec<_> = report
            .images
            .iter()
            .filter(|i| i.tag != TagOutcome::Refused)
            .cloned()
            .collect();
        let mirror = MirrorOptions {
            insecure: plain_http.get() || !args.registry.tls_verify,
            tag_mirrors: args.tag_mirrors,
            never_contact_source: args.never_contact_source,
            trust_bundle,
        };
        written = push::write_mirror_config(&dir, &pushed, &id, &mirror)?;
    }
    if args.json {
        print_json(&Output {
            report: &report,
            mirror_config: written,
        })?;
    } else {
        print_human(&report, &written);
    }
    if !report.verify.ok() {
        return Ok(EXIT_BAD_BUNDLE);
    }
    if !report.refused.is_empty() {
        let images: Vec<&str> = report
            .images
            .iter()
            .filter(|i| i.tag == TagOutcome::Refused)
            .map(|i| i.image.reference.as_str())
            .collect();
        bail!(
            "{} refused {} manifest(s) of images {} although the bundle verified (the other images are tagged). \
             An index made sparse by create --platform is refused by registries that require every platform's \
             manifest (distribution 2.x); push to a registry that accepts sparse indexes, or create the bundle \
             without --platform. First refusal: {}",
            report.destination,
            report.refused.len(),
            images.join(", "),
            report.refused[0]
        );
    }
    Ok(EXIT_OK)
}

fn print_human(report: &PushReport, written: &[PathBuf]) {
    let s = &report.stats;
    if !report.volumes_read && report.verify.ok() {
        // Nothing was read, so there is no blob check to report.
        super::verify::print_header(&report.verify);
        outln!("  signature    ok");
        outln!(
            "  volumes      {} present, not read: {} already holds every blob and manifest under the signed digests",
            report.verify.volumes,
            report.destination
        );
    } else {
        super::verify::print_human(&report.verify);
    }
    outln!(
        "blobs: {} uploaded ({}), {} mounted, {} already there; manifests: {} pushed, {} already there",
        s.blobs_uploaded,
        human_bytes(s.bytes_uploaded),
        s.blobs_mounted,
        s.blobs_present,
        s.manifests_pushed,
        s.manifests_present
    );
    // Every image in exactly one bucket, the same counts as --json's `delivered`.
    let d = &report.delivered;
    let mut buckets = format!("{} pushed, {} already there", d.pushed, d.already_there);
    if d.refused > 0 {
        buckets.push_str(&format!(", {} refused", d.refused));
    }
    if d.not_pushed > 0 {
        buckets.push_str(&format!(", {} not pushed", d.not_pushed));
    }
    outln!(
        "images: {buckets} (of {} for {})",
        report.images.len(),
        report.destination
    );
    if !report.tagged {
        outln!("no tag was created or moved on {}", report.destination);
        return;
    }
    let count = |t: TagOutcome| report.images.iter().filter(|i| i.tag == t).count();
    outln!(
        "tags: {} created, {} moved, {} unchanged, {} left as they were (--skip-existing-tags), {} by digest only",
        count(TagOutcome::Created),
        count(TagOutcome::Updated),
        count(TagOutcome::Unchanged),
        count(TagOutcome::SkippedExisting),
        count(TagOutcome::ByDigest),
    );
    for i in &report.images {
        if i.tag == TagOutcome::Refused {
            outln!(
                "  not pushed {} (the target refused its manifest)",
                i.target
            );
        }
        if i.tag == TagOutcome::SkippedExisting {
            outln!(
                "  left {} (points at another image; bundle has {})",
                i.target,
                i.image.digest
            );
        }
    }
    if written.is_empty() {
        outln!("no mirror configuration: the images did not come from a registry");
    } else {
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        outln!("mirror configuration: {}", names.join(", "));
    }
}
