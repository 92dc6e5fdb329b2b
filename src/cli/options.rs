//! Options shared by commands that talk to registries, and size parsing.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::output::errln;
use crate::registry::{self, ClientOptions, Credentials};

/// Credentials and TLS, as skopeo and podman take them.
#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// Credentials as USER:PASSWORD (basic auth, or sent to the token service).
    /// On a shared machine the process list shows them: give `--creds USER
    /// --password-stdin` (or an auth file) instead.
    #[arg(long, value_name = "USER[:PASSWORD]", conflicts_with_all = ["token", "token_file"])]
    pub creds: Option<String>,
    /// Read the password of `--creds USER` from standard input (its first
    /// line), so that it never appears in the process list.
    #[arg(long, requires = "creds")]
    pub password_stdin: bool,
    /// A bearer token used as-is (the OpenShift registry's `oc whoami -t`).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the bearer token from FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// podman/docker auth.json to take credentials from [default: $REGISTRY_AUTH_FILE,
    /// then $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json].
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Trust the CA certificates in FILE (PEM) as well as the system's; a
    /// self-signed server certificate given here is accepted as the server's
    /// own (its host name and dates still checked). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Use the certificates in DIR as skopeo's --cert-dir: `*.crt` are CA
    /// certificates, a `NAME.cert` + `NAME.key` pair a client certificate for
    /// mutual TLS [default: the registry's HOST[:PORT]/ directory in
    /// ~/.config/containers/certs.d, /etc/containers/certs.d or
    /// /etc/docker/certs.d, the first that exists].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Verify TLS certificates; `--tls-verify=false` also allows plain http
    /// (http:// given explicitly, or a loopback registry without TLS).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: bool,
}

impl RegistryArgs {
    /// Client options for `host` (credentials looked up in the auth file when none are given).
    pub fn client_options(&self, host: &str) -> anyhow::Result<ClientOptions> {
        let credentials = if let Some(creds) = &self.creds {
            let (username, password) = match (creds.split_once(':'), self.password_stdin) {
                (Some((user, password)), false) => (user.to_owned(), password.to_owned()),
                (None, true) => (creds.clone(), read_password_line()?),
                (Some(_), true) => bail!("with --password-stdin, --creds takes only USER"),
                (None, false) => {
                    bail!("--creds must be USER:PASSWORD, or USER with --password-stdin")
                }
            };
            Credentials::Basic { username, password }
        } else if let Some(token) = &self.token {
            Credentials::Bearer(token.trim().to_owned())
        } else if let Some(path) = &self.token_file {
            let token = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?,
            );
            Credentials::Bearer(token.trim().to_owned())
        } else {
            let authfile = self.authfile.clone().or_else(registry::default_authfile);
            match authfile {
                Some(path) => registry::credentials_from_authfile(&path, host)
                    .with_context(|| format!("reading credentials from {}", path.display()))?
                    .unwrap_or(Credentials::Anonymous),
                None => Credentials::Anonymous,
            }
        };
        Ok(ClientOptions {
            tls_verify: self.tls_verify,
            ca_certs: self.ca_cert.clone(),
            cert_dir: self.cert_dir.clone(),
            credentials,
            ..ClientOptions::default()
        })
    }
}

/// The first line of standard input, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("--password-stdin: standard input gave no password");
    }
    Ok(password)
}

/// The bundle to read and the key to trust it with (verify, extract, push).
#[derive(clap::Args, Debug)]
pub struct BundleArgs {
    /// The bundle directory (holding bundle.json and its signature).
    pub dir: PathBuf,
    /// A trusted public key (minisign format) received out of band, or a
    /// directory of them (every `*.pub` in it); repeatable. The bundle's
    /// signature names the key that signed; it must be one of these.
    #[arg(long, value_name = "FILE|DIR", required = true)]
    pub pubkey: Vec<PathBuf>,
    /// Refuse a bundle created before DATE (`2026-11-01` or RFC 3339), so an
    /// older signed bundle cannot be replayed to roll images back.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub not_before: Option<time::OffsetDateTime>,
    /// Also look for volumes in DIR (several media mounted apart); repeatable.
    #[arg(long, value_name = "DIR")]
    pub volumes_from: Vec<PathBuf>,
}

impl BundleArgs {
    /// The trusted keys (with a loud warning for the repository's demo key)
    /// and the age limit.
    pub fn trust(&self) -> anyhow::Result<crate::verify::Trust> {
        Ok(crate::verify::Trust {
            keys: trusted_keys(&self.pubkey)?,
            not_before: self.not_before,
        })
    }

    /// Where volumes are looked for: the bundle directory, then the other media.
    pub fn dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.dir.clone())
            .chain(self.volumes_from.iter().cloned())
            .collect()
    }
}

/// The public keys in `paths`: each a `.pub` file, or a directory whose
/// `*.pub` files are all read; a loud warning for the repository's demo key.
pub fn trusted_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<crate::sign::PublicKey>> {
    let mut keys = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading the key directory {}", path.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading the key directory {}", path.display()))?;
            files.retain(|f| f.extension().is_some_and(|x| x == "pub"));
            files.sort();
            if files.is_empty() {
                anyhow::bail!("the key directory {} holds no .pub file", path.display());
            }
            for f in files {
                keys.push(crate::sign::PublicKey::from_file(&f)?);
            }
        } else {
            keys.push(crate::sign::PublicKey::from_file(path)?);
        }
    }
    for key in &keys {
        warn_demo_key(key);
    }
    Ok(keys)
}

/// Warns loudly when the trusted key is the repository's demo key.
fn warn_demo_key(key: &crate::sign::PublicKey) {
    if key.is_demo() {
        errln!(
            "WARNING: the trusted key {} is the DEMO key from this repository.",
            key.key_id()
        );
        errln!(
            "WARNING: its secret key is public: anyone can sign a bundle that passes this check."
        );
        errln!("WARNING: make your own with `bundle keygen` and trust only that one.");
    }
}

/// Parses sizes like `700M`, `4G`, `4GiB`, `65536` (K, M, G, T are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let num: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 700M or 4G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    num.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `--not-before`: a date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_date(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let day = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
        .expect("a valid format");
    time::Date::parse(s, &day)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{s:?} is not a date like 2026-11-01 or 2026-11-01T12:00:00Z"))
}

/// `--jobs`: 1 to 64.
pub fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("{s:?} is not a number of jobs from 1 to 64")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("700M"), Ok(700 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
