//! Command-line interface: argument parsing, progress display, human and
//! `--json` output, and exit codes. Everything else is in the library modules;
//! this is the only place that prints.

mod create;
mod extract;
mod keygen;
mod list;
mod options;
mod output;
mod push;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::text::human_bytes;
use output::errln;

/// Exit code: the bundle verified / the command succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: the bundle is bad (signature, volume, blob, image or index check failed).
pub const EXIT_BAD_BUNDLE: u8 = 1;
/// Exit code: usage or operational error (bad arguments, network, disk, missing files).
pub const EXIT_ERROR: u8 = 2;
/// Exit code: `create --keep-going` wrote a bundle without some images (listed).
pub const EXIT_PARTIAL: u8 = 3;

/// Move container images into air-gapped networks on removable media, with
/// proof that nothing changed on the way.
#[derive(Parser)]
#[command(name = "bundle", version, about, long_about = None)]
struct Cli {
    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a minisign-compatible ed25519 key pair (PREFIX.key, PREFIX.pub).
    Keygen(keygen::Args),
    /// Fetch images from a registry or OCI layout into signed, compressed volumes.
    Create(Box<create::Args>),
    /// Check a bundle: signature, volumes, every blob digest, every image, index.json.
    Verify(verify::Args),
    /// Show the images and volumes a bundle holds, from its signed manifest.
    List(list::Args),
    /// Verify a bundle and write its images into an OCI layout (for skopeo, oc, podman).
    Extract(extract::Args),
    /// Verify a bundle while pushing its images to a registry; tag only if all of it verified.
    Push(Box<push::Args>),
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Create(args) => create::run(*args),
        Command::Verify(args) => verify::run(args),
        Command::List(args) => list::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Push(args) => push::run(*args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            EXIT_ERROR
        }
    };
    // A closed stdout (`| head`) is not a failure: the outcome's code stands.
    if let Some(e) = output::stdout_failure() {
        errln!("error: writing to stdout: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(code)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "bundle=info",
        _ => "bundle=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::EscapingStderr)
        .with_ansi(false)
        .try_init();
}

/// A progress bar for reading volumes: bytes, rate; hidden unless stderr is a
/// terminal and the output is for humans.
fn reading_bar(json: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(bytes_style());
    bar
}

/// The style of a bar counting bytes: elapsed time, bar, bytes of total, rate, message.
fn bytes_style() -> indicatif::ProgressStyle {
    const TEMPLATE: &str =
        "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {msg}";
    indicatif::ProgressStyle::with_template(TEMPLATE)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// Prints `value` as pretty JSON on stdout, control and formatting
/// characters in its strings escaped as `\uXXXX`.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    output::out_json_value(value);
    Ok(())
}
