//! Fixtures for tests against the real parts: Debian's `docker-registry`,
//! `skopeo` as an independent client, OCI layouts generated on disk,
//! proxies for what the real registry does not do (paging, faults), and a token server.
//!
//! - [`registry`]: [`TestRegistry`], a real registry on loopback (htpasswd, TLS).
//! - [`images`]: [`LayoutBuilder`], deterministic OCI image layouts.
//! - [`seed`]: pushing with `skopeo`, reading manifests back with `curl`, and
//!   [`standard_fixture`] / [`seed_many_repositories`].
//! - [`proxy`]: [`PagingProxy`], paginates `tags/list` and counts requests.
//! - [`faults`]: [`FaultProxy`], injects resets, 5xx, 429, truncation, a
//!   trickle, a flipped byte or a hold (an answer stopped part-way, for
//!   killing the client there) into chosen requests, logs them all as they
//!   arrive, and counts how many of a kind are answered at once.
//! - [`podman`]: [`Podman`], the real podman pulling through a generated
//!   registries.conf with private storage.
//! - [`http`]: the HTTP/1.1 framing and forwarding the proxies and the token
//!   server share.
//! - [`token`]: [`TokenServer`], a Docker token server issuing signed JWTs to
//!   users with per-repository rights, for registries with `auth: token`;
//!   [`jwt`] signs the tokens.
//!
//! Every helper panics with a readable message on failure: a fixture that
//! cannot be set up is a failed test, never a skipped one.

// Each test module uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod faults;
pub mod http;
pub mod images;
pub mod jwt;
pub mod podman;
pub mod proxy;
pub mod registry;
pub mod seed;
pub mod token;

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub use faults::{Fault, FaultProxy, Kind, Logged, Rule};
pub use images::{ImageSpec, LayerSpec, Layout, LayoutBuilder, Platform};
pub use podman::Podman;
pub use proxy::PagingProxy;
pub use registry::{LOOPBACK_SAN, ServerCert, TestRegistry};
pub use seed::{
    Format, Pushed, RemoteManifest, StandardFixture, copy_dir_all, fetch_manifest, helm_registry,
    seed_many_repositories, seed_standard, skopeo_inspect_raw, skopeo_push, standard_fixture,
    standard_fixture_on, standard_layout,
};
pub use token::{Expiry, TokenServer, User};

/// The `bundle` binary built by cargo for this test run. Every run through it
/// is checked by [`assert_no_panic`], so no test passes over a panic.
pub fn bundle_cmd() -> BundleCmd {
    BundleCmd(assert_cmd::Command::new(env!("CARGO_BIN_EXE_bundle")))
}

/// An `assert_cmd` command for `bundle` whose runs fail the test when the
/// process panicked (see [`bundle_cmd`]).
pub struct BundleCmd(assert_cmd::Command);

impl BundleCmd {
    /// Wraps a `std` command that runs the `bundle` binary.
    pub fn from_std(cmd: Command) -> Self {
        BundleCmd(assert_cmd::Command::from_std(cmd))
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.0.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.0.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(
        &mut self,
        key: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> &mut Self {
        self.0.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.0.env_remove(key);
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.0.current_dir(dir);
        self
    }

    /// Kills the process after `timeout`.
    pub fn timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.0.timeout(timeout);
        self
    }

    /// Writes `input` to the process's stdin.
    pub fn write_stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.0.write_stdin(input);
        self
    }

    /// Runs the command to its end; panics if it panicked.
    pub fn output(&mut self) -> std::io::Result<Output> {
        let output = self.0.output()?;
        assert_no_panic(&output);
        Ok(output)
    }

    /// Runs the command to its end for `assert_cmd`'s assertions; panics if it panicked.
    pub fn assert(&mut self) -> assert_cmd::assert::Assert {
        let output = self.output().expect("running bundle");
        assert_cmd::assert::Assert::new(output)
    }
}

/// Panics when a `bundle` run panicked: exit code 101, or "panicked" on
/// stderr. No input may crash the binary, so every test checks this.
pub fn assert_no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(101) && !stderr.contains("panicked"),
        "bundle panicked ({})\n--- stdout\n{}\n--- stderr\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
    );
}

/// A fresh temporary directory, removed when the value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bundle-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Lowercase hex SHA-256 of `bytes` (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// OCI digest string `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Lowercase hex SHA-256 of a file's contents, read in a streaming way.
pub fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("opening {} to hash it: {e}", path.display()));
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .unwrap_or_else(|e| panic!("reading {} to hash it: {e}", path.display()));
    hex::encode(hasher.finalize())
}

/// Runs `cmd` to completion and returns its output; panics with the command
/// line, exit status, stdout and stderr if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Like [`run`], returning stdout as UTF-8 text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("command output is UTF-8")
}

/// Panics unless `tool` is an executable on `PATH` (or an existing absolute
/// path), naming the Debian package that provides it. Tests never skip.
pub fn require_tool(tool: &str, debian_package: &str) {
    let found = if tool.starts_with('/') {
        Path::new(tool).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "`{tool}` is not installed; these tests need the real tools: \
         apt-get install {debian_package} (or run scripts/test.sh, which installs \
         docker-registry skopeo minisign zstd umoci apache2-utils openssl curl jq podman)"
    );
}

/// An HTTP answer as `curl` got it.
#[derive(Debug, Clone)]
pub struct CurlResponse {
    /// The status code (0 if curl got no answer).
    pub status: u16,
    /// Header lines of the final answer, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl CurlResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `curl` with `args` (e.g. [`TestRegistry::curl_args`] plus headers) for `url`;
/// any HTTP status is returned, only a failure to get an answer panics.
pub fn curl(args: &[String], url: &str) -> CurlResponse {
    require_tool("curl", "curl");
    let dir = temp_dir();
    let (header_path, body_path) = (dir.path().join("headers"), dir.path().join("body"));
    let output = run(Command::new("curl")
        .args(args)
        .arg("--dump-header")
        .arg(&header_path)
        .arg("--output")
        .arg(&body_path)
        .args(["--write-out", "%{http_code}"])
        .arg(url));
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let dump = std::fs::read_to_string(&header_path).unwrap_or_default();
    // With redirects or `100 Continue` there are several blocks: keep the last.
    let last_block = dump
        .split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty())
        .last()
        .unwrap_or_default();
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let body = std::fs::read(&body_path).unwrap_or_default();
    CurlResponse {
        status,
        headers,
        body,
    }
}
