//! `bundle keygen`.

use std::path::PathBuf;

use anyhow::Context;

use super::EXIT_OK;
use super::output::outln;
use crate::sign;

/// Arguments of `bundle keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Path prefix of the key pair: writes PREFIX.key (mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let (secret, public) = sign::write_key_pair(&args.out, args.force)
        .with_context(|| format!("writing the key pair {}", args.out.display()))?;
    let key = sign::PublicKey::from_file(&public)?;
    outln!(
        "secret key: {} (keep it on this host, mode 0600)",
        secret.display()
    );
    outln!(
        "public key: {} (hand it to the disconnected side)",
        public.display()
    );
    outln!("key id:     {}", key.key_id());
    Ok(EXIT_OK)
}
