//! A real Debian `docker-registry` (CNCF distribution 2.8) on loopback.
//!
//! Started under `env -i` (any `REGISTRY_*` variable would override our
//! config) with a config we write, storage in a temp dir, optional htpasswd
//! (bcrypt) or token auth (a [`TokenServer`]), and TLS with a throw-away CA.
//! Killed and reaped on drop.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::token::{ADMIN, Access, ISSUER, Issuer, SERVICE, TokenServer};
use super::{require_tool, run, run_stdout, temp_dir};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for a [`TestRegistry`]; start it with [`RegistryBuilder::start`].
#[derive(Debug, Default, Clone)]
pub struct RegistryBuilder {
    htpasswd: Option<(String, String)>,
    token: Option<Issuer>,
    tls: bool,
    read_only: bool,
}

impl RegistryBuilder {
    /// Requires HTTP basic auth with this one user (bcrypt entry via `htpasswd -Bbn`).
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Requires bearer tokens from `server` (`auth: token`): the registry checks
    /// their signature against the server's certificate. [`TestRegistry::credentials`]
    /// is then the token server's admin user, which may do everything.
    pub fn token_auth(mut self, server: &TokenServer) -> Self {
        self.token = Some(server.issuer());
        self
    }

    /// Serves HTTPS with a server certificate for `127.0.0.1` and `localhost`
    /// signed by a fresh test CA (see [`TestRegistry::ca_cert_path`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Sets `storage.maintenance.readonly.enabled`: reads work, pushes fail with 405.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Writes the config and starts the registry; panics if it does not answer
    /// `/v2/` within 10 s, showing its log.
    pub fn start(self) -> TestRegistry {
        require_tool(REGISTRY_BIN, "docker-registry");
        assert!(
            self.htpasswd.is_none() || self.token.is_none(),
            "a registry has htpasswd or token auth, not both"
        );
        let dir = temp_dir();
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).expect("creating the registry storage dir");
        let cert_dir = self.tls.then(|| make_tls_files(&dir.path().join("certs")));
        let htpasswd_file = self.htpasswd.as_ref().map(|(user, password)| {
            require_tool("htpasswd", "apache2-utils");
            let entry = run_stdout(Command::new("htpasswd").args(["-Bbn", user, password]));
            let path = dir.path().join("htpasswd");
            fs::write(&path, entry.trim_end().to_owned() + "\n").expect("writing htpasswd");
            path
        });
        let marker = dir
            .path()
            .file_name()
            .expect("a temp dir name")
            .to_string_lossy()
            .into_owned();
        let mut registry = TestRegistry {
            child: None,
            log_path: dir.path().join("registry.log"),
            config_path: dir.path().join("config.yml"),
            storage,
            cert_dir,
            htpasswd_file,
            credentials: self.htpasswd.or_else(|| {
                let (user, password) = self.token.as_ref()?.admin();
                Some((user.to_owned(), password.to_owned()))
            }),
            token: self.token,
            read_only: self.read_only,
            marker,
            port: 0,
            _dir: dir,
        };
        // Another process may take the free port before the registry binds it:
        // then try another one.
        for attempt in 1.. {
            registry.port = free_port();
            registry.write_config();
            match registry.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 5 && registry.log().contains("address already in use") => {
                    eprintln!("retrying docker-registry on another port: {e}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        registry
    }
}

/// A running `docker-registry`; killed and waited for on drop.
#[derive(Debug)]
pub struct TestRegistry {
    child: Option<Child>,
    log_path: PathBuf,
    config_path: PathBuf,
    storage: PathBuf,
    cert_dir: Option<PathBuf>,
    htpasswd_file: Option<PathBuf>,
    credentials: Option<(String, String)>,
    token: Option<Issuer>,
    read_only: bool,
    /// Sent back in an `X-Bundle-Test` header: tells our registry from
    /// whatever else may answer on the port.
    marker: String,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a plain HTTP registry without auth.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options: htpasswd or token auth, TLS, read-only.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://…` when started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.cert_dir.is_some()
    }

    /// The filesystem driver's root directory (holds `docker/registry/v2/…`).
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// `storage_dir()/docker/registry/v2/repositories`: one directory per repository.
    pub fn repositories_dir(&self) -> PathBuf {
        self.storage.join("docker/registry/v2/repositories")
    }

    /// The test CA certificate (PEM) that signed the server certificate.
    ///
    /// Panics if the registry was not started with [`RegistryBuilder::tls`].
    pub fn ca_cert_path(&self) -> PathBuf {
        self.cert_dir().join("ca.crt")
    }

    /// A directory holding only `ca.crt`, for skopeo's `--cert-dir` options.
    ///
    /// Panics if the registry was not started with [`RegistryBuilder::tls`].
    pub fn cert_dir(&self) -> &Path {
        self.cert_dir
            .as_deref()
            .expect("this TestRegistry was started without .tls()")
    }

    /// `(user, password)` when started with [`RegistryBuilder::htpasswd`], or
    /// the token server's admin user with [`RegistryBuilder::token_auth`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Everything the registry wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the registry process (the storage stays); see [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: wait() reaps it either way.
            let _ = child.kill();
            child.wait().expect("waiting for docker-registry to exit");
        }
    }

    /// Stops it if running and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Whether it wants bearer tokens ([`RegistryBuilder::token_auth`]).
    pub fn is_token_auth(&self) -> bool {
        self.token.is_some()
    }

    /// `curl` arguments for talking to this registry: CA and credentials (with
    /// token auth, a token for `/v2/` and the catalog only: see [`Self::curl_args_for`]).
    pub fn curl_args(&self) -> Vec<String> {
        self.curl_args_with(&[Access::catalog()])
    }

    /// The repositories the registry's catalog lists (empty when nothing was pushed).
    pub fn repositories(&self) -> Vec<String> {
        let catalog = super::curl(&self.curl_args(), &format!("{}/v2/_catalog", self.url()));
        assert_eq!(catalog.status, 200, "GET /v2/_catalog");
        catalog.json()["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().expect("a repository name").to_owned())
            .collect()
    }

    /// [`Self::curl_args`] that may also read, write and delete in `repo`
    /// (with token auth the token names the repository; otherwise the same).
    pub fn curl_args_for(&self, repo: &str) -> Vec<String> {
        self.curl_args_with(&[
            Access::catalog(),
            Access::repository(repo, &["pull", "push", "delete"]),
        ])
    }

    fn curl_args_with(&self, access: &[Access]) -> Vec<String> {
        let mut args = vec!["--silent".to_owned(), "--show-error".to_owned()];
        if self.is_tls() {
            args.push("--cacert".to_owned());
            args.push(self.ca_cert_path().display().to_string());
        }
        if let Some(issuer) = &self.token {
            // Minted in process: what curl reads is not counted as token requests.
            let token = issuer.mint(ADMIN, access, Duration::from_secs(600), false);
            args.push("--header".to_owned());
            args.push(format!("Authorization: Bearer {token}"));
        } else if let Some((user, password)) = self.credentials() {
            args.push("--user".to_owned());
            args.push(format!("{user}:{password}"));
        }
        args
    }

    fn write_config(&self) {
        let config = config_yaml(
            self.port,
            &self.storage,
            self.htpasswd_file.as_deref(),
            self.token.as_ref(),
            self.cert_dir.as_deref(),
            self.read_only,
            &self.marker,
        );
        fs::write(&self.config_path, config).expect("writing the registry config");
    }

    /// Starts the process and waits until it answers; on failure it is
    /// stopped and the error holds its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the registry log");
        let child = Command::new("env")
            .arg("-i")
            .arg(REGISTRY_BIN)
            .arg("serve")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file handle"))
            .stderr(log)
            .spawn()
            .expect("starting env -i /usr/bin/docker-registry");
        self.child = Some(child);
        let result = self.wait_ready();
        if result.is_err() {
            self.stop();
        }
        result
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut().expect("the registry was just spawned");
            if let Some(status) = child.try_wait().expect("polling docker-registry") {
                return Err(format!(
                    "docker-registry exited ({status}) at startup on port {}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if self.answers_v2() {
                return Ok(());
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                return Err(format!(
                    "docker-registry did not answer {}/v2/ within {STARTUP_TIMEOUT:?}:\n{}",
                    self.url(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether this registry (its marker header) answers `GET /v2/` (200, or
    /// 401 with auth on).
    fn answers_v2(&self) -> bool {
        if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return false;
        }
        let output = Command::new("curl")
            .args(self.curl_args())
            .args(["--output", "/dev/null", "--dump-header", "-"])
            .arg(format!("{}/v2/", self.url()))
            .output()
            .expect("running curl (apt-get install curl)");
        let headers = String::from_utf8_lossy(&output.stdout);
        let status_ok = headers
            .lines()
            .next()
            .is_some_and(|line| line.contains(" 200") || line.contains(" 401"));
        let ours = headers.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("X-Bundle-Test") && value.trim() == self.marker
            })
        });
        status_ok && ours
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago: bind `127.0.0.1:0`, read it, close.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0 to find a free port")
        .port()
}

fn config_yaml(
    port: u16,
    storage: &Path,
    htpasswd: Option<&Path>,
    token: Option<&Issuer>,
    cert_dir: Option<&Path>,
    read_only: bool,
    marker: &str,
) -> String {
    let mut yaml = String::new();
    let _ = writeln!(yaml, "version: 0.1");
    let _ = writeln!(
        yaml,
        "log:\n  level: error\n  accesslog:\n    disabled: true"
    );
    let _ = writeln!(yaml, "storage:");
    let _ = writeln!(
        yaml,
        "  filesystem:\n    rootdirectory: {}",
        storage.display()
    );
    let _ = writeln!(yaml, "  delete:\n    enabled: true");
    if read_only {
        let _ = writeln!(yaml, "  maintenance:\n    readonly:\n      enabled: true");
    }
    if let Some(path) = htpasswd {
        let _ = writeln!(yaml, "auth:\n  htpasswd:\n    realm: bundle-test");
        let _ = writeln!(yaml, "    path: {}", path.display());
    }
    if let Some(issuer) = token {
        let _ = writeln!(yaml, "auth:\n  token:\n    realm: {}", issuer.realm());
        let _ = writeln!(yaml, "    service: {SERVICE}\n    issuer: {ISSUER}");
        let _ = writeln!(yaml, "    rootcertbundle: {}", issuer.cert_pem().display());
    }
    let _ = writeln!(yaml, "http:\n  addr: 127.0.0.1:{port}");
    let _ = writeln!(yaml, "  headers:\n    X-Bundle-Test: [\"{marker}\"]");
    if let Some(dir) = cert_dir {
        let _ = writeln!(yaml, "  tls:");
        let keys = dir.with_file_name("keys");
        let _ = writeln!(
            yaml,
            "    certificate: {}",
            keys.join("server.crt").display()
        );
        let _ = writeln!(yaml, "    key: {}", keys.join("server.key").display());
    }
    yaml
}

/// Makes `DIR/ca.crt` (a P-256 test CA) and, in the sibling directory `keys/`,
/// `server.{crt,key}` for `IP:127.0.0.1, DNS:localhost`, with `openssl`.
/// `DIR` holds only the CA so it can be handed to skopeo as a cert dir (which
/// reads `*.crt` as CAs and `*.key` as a client key). Returns `DIR`.
fn make_tls_files(dir: &Path) -> PathBuf {
    require_tool("openssl", "openssl");
    let keys = dir.with_file_name("keys");
    fs::create_dir_all(dir).expect("creating the cert dir");
    fs::create_dir_all(&keys).expect("creating the key dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(keys.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt"))
        .args(["-days", "7", "-subj", "/CN=bundle test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .arg("-keyout")
        .arg(keys.join("server.key"))
        .arg("-out")
        .arg(keys.join("server.csr"))
        .args(["-subj", "/CN=localhost"]));
    let ext = keys.join("server.ext");
    fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("writing the server certificate extensions");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "7", "-set_serial", "2"])
        .arg("-in")
        .arg(keys.join("server.csr"))
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(keys.join("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(keys.join("server.crt")));
    dir.to_path_buf()
}
