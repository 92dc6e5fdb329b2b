//! `bundle create`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use indicatif::ProgressBar;

use super::options::{RegistryArgs, parse_jobs, parse_size};
use super::output::{errln, outln};
use super::{EXIT_OK, EXIT_PARTIAL, human_bytes, print_json};
use crate::create::{self, CreateOptions, Event};
use crate::registry::Registry;
use crate::sign::SecretKey;
use crate::source::{self, Fetcher, Filters, SourceSpec};
use crate::text::count;
use zeroize::Zeroizing;

/// The default volume size: below FAT32's 4 GiB file limit.
const DEFAULT_VOLUME_SIZE: &str = "4000M";

/// Arguments of `bundle create`.
#[derive(clap::Args)]
pub struct Args {
    /// Source: a registry (`HOST[:PORT]`, `docker://HOST`, `http://HOST` with
    /// --tls-verify=false) or an OCI layout (`oci:DIR`).
    #[arg(long, value_name = "SOURCE")]
    from: Option<String>,
    /// Output directory (created). One holding an interrupted create is
    /// continued when the arguments are the same; a finished bundle is refused.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Secret key to sign bundle.json with (minisign format, mode 0600). A
    /// password-protected key (`minisign -G`) asks for its password on the
    /// terminal, unless --key-password-file or BUNDLE_KEY_PASSWORD gives it.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Read the password of a protected --key from FILE (its first line).
    #[arg(long, value_name = "FILE")]
    key_password_file: Option<PathBuf>,
    /// Bundle only images matching PATTERN (glob on `repo`, or on `repo:tag`
    /// when it has a colon); repeatable.
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Leave out images matching PATTERN (as --include); repeatable.
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Bundle the images listed in FILE (one reference per line, `#` comments)
    /// instead of the whole catalog.
    #[arg(long, value_name = "FILE")]
    images: Option<PathBuf>,
    /// Keep only these platforms of multi-arch images (`os/arch[/variant]`);
    /// repeatable. Default: keep indexes whole.
    #[arg(long, value_name = "PLATFORM")]
    platform: Vec<String>,
    /// Largest volume file (`700M`, `4G`, …; powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_VOLUME_SIZE, value_parser = parse_size)]
    volume_size: u64,
    /// zstd compression level (gzip layers do not compress at any level; 1 is twice as fast as 3).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(-7..=19))]
    compression_level: i32,
    /// Leave out an image whose manifest or blob cannot be fetched (after the
    /// retries and one more fetch) and bundle the others; they are listed and
    /// the exit code is 3.
    #[arg(long)]
    keep_going: bool,
    /// Transfers at once: blob downloads (those ahead of the writer are
    /// spooled to the output directory), and manifest and tag-list requests.
    #[arg(long, value_name = "N", default_value_t = create::DEFAULT_JOBS, value_parser = parse_jobs)]
    jobs: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let key = load_key(&args.key, args.key_password_file.as_deref())?;
    let filters = Filters::new(&args.include, &args.exclude, &args.platform)?;
    let images = match &args.images {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the images file {}", path.display()))?;
            Some(
                source::parse_images_file(&text)
                    .with_context(|| format!("in {}", path.display()))?,
            )
        }
        None => None,
    };
    let spec = match (&args.from, &images) {
        (Some(from), _) => SourceSpec::parse(from)?,
        (None, Some(list)) => {
            let hosts: std::collections::BTreeSet<_> =
                list.iter().map(|r| r.host.clone()).collect();
            match hosts.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(host)] => SourceSpec::Registry(host.clone()),
                _ => {
                    bail!("--images without --from needs every line to name the same registry host")
                }
            }
        }
        (None, None) => {
            bail!("say where images come from: --from REGISTRY, --from oci:DIR, or --images FILE")
        }
    };
    if let (SourceSpec::Registry(host), Some(list)) = (&spec, &images) {
        let bare = source::bare_host(host);
        if let Some(other) = list
            .iter()
            .find(|r| r.host.as_deref().is_some_and(|h| h != bare))
        {
            bail!("{other} is not on {host}; one bundle is made from one registry");
        }
    }
    if let (SourceSpec::Layout(_), Some(_)) = (&spec, &images) {
        bail!("--images selects from a registry; use --include with an oci: source");
    }
    let opts = CreateOptions {
        out: args.out.clone(),
        volume_size: args.volume_size,
        level: args.compression_level,
        source: spec.clone(),
        keep_going: args.keep_going,
        jobs: args.jobs,
    };
    // Before any network work: a finished bundle, or an interrupted run of
    // other arguments, is refused now rather than after the enumeration.
    create::check_out_dir(&args.out, &create::journal_header(&opts))?;

    let show = !args.json && std::io::stderr().is_terminal();
    let bar = if show {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(
        super::output::escape(&format!("enumerating {}", spec.describe())).into_owned(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let fetcher = match &spec {
            SourceSpec::Registry(host) => {
                let opts = args.registry.client_options(host)?;
                Fetcher::Registry(
                    Registry::connect(host, &opts)
                        .await
                        .with_context(|| format!("connecting to {host}"))?,
                )
            }
            SourceSpec::Layout(dir) => Fetcher::Layout(dir.clone()),
        };
        let wanted = source::enumerate(&fetcher, &filters, images, args.jobs).await?;
        bar.set_message(format!("fetching the manifests of {} images", wanted.len()));
        let plan = source::plan(
            &fetcher,
            &spec,
            &filters,
            wanted,
            args.keep_going,
            args.jobs,
        )
        .await?;
        let done = Arc::new(AtomicUsize::new(0));
        let total_images = plan.images.len();
        let progress: create::Progress = {
            let bar = bar.clone();
            let done = done.clone();
            let out = args.out.clone();
            Arc::new(move |event| match event {
                Event::Planned { bytes, .. } => {
                    bar.set_style(super::bytes_style());
                    bar.set_length(bytes);
                    bar.set_message(format!("images 0/{total_images}"));
                }
                Event::Resumed { entries, bytes } => {
                    let line = format!(
                        "resuming the interrupted create in {}: {entries} entries ({}) \
                         already written are kept",
                        out.display(),
                        human_bytes(bytes)
                    );
                    if bar.is_hidden() {
                        errln!("{line}");
                    } else {
                        bar.println(super::output::escape(&line));
                    }
                    bar.inc(bytes);
                }
                Event::Bytes(n) => bar.inc(n),
                Event::ImageDone => {
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(format!("images {n}/{total_images}"));
                }
            })
        };
        create::write_bundle(&fetcher, plan, &opts, &key, progress).await
    });
    bar.finish_and_clear();
    let report = report?;
    let code = if report.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    };
    if args.json {
        print_json(&report)?;
        return Ok(code);
    }
    for w in &report.warnings {
        errln!("warning: {w}");
    }
    let on_disk: u64 = report.volumes.iter().map(|v| v.size).sum();
    outln!(
        "bundle {} written to {}: {}, {}, {} in {} ({} on disk)",
        report.bundle_id,
        report.out.display(),
        count(report.images, "image"),
        count(report.blobs, "blob"),
        human_bytes(report.content_bytes),
        count(report.volumes.len(), "volume"),
        human_bytes(on_disk),
    );
    outln!(
        "bundle.json {} signed by key {}",
        report.manifest_digest,
        key.key_id()
    );
    if !report.failed.is_empty() {
        errln!(
            "PARTIAL: {} left out (--keep-going); the bundle holds only the others:",
            count(report.failed.len(), "image")
        );
        for f in &report.failed {
            errln!("  {}: {}", f.reference, f.reason);
        }
    }
    Ok(code)
}

/// The signing key; a password-protected one gets its password from FILE,
/// then `BUNDLE_KEY_PASSWORD`, then a prompt on the terminal.
fn load_key(
    path: &std::path::Path,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<SecretKey> {
    let from_file = password_file
        .map(|file| {
            let text =
                Zeroizing::new(std::fs::read_to_string(file).with_context(|| {
                    format!("reading the key password from {}", file.display())
                })?);
            anyhow::Ok(Zeroizing::new(
                text.lines().next().unwrap_or_default().to_owned(),
            ))
        })
        .transpose()?;
    let mut password = || -> Option<Zeroizing<String>> {
        if from_file.is_some() {
            return from_file.clone();
        }
        if let Some(p) = std::env::var_os("BUNDLE_KEY_PASSWORD") {
            return Some(Zeroizing::new(p.to_string_lossy().into_owned()));
        }
        if std::io::stdin().is_terminal() {
            let prompt =
                super::output::escape(&format!("Password for {}: ", path.display())).into_owned();
            return rpassword::prompt_password(prompt).ok().map(Zeroizing::new);
        }
        None
    };
    Ok(SecretKey::from_file_with(path, &mut password)?)
}
