//! A real Debian `docker-registry` (CNCF distribution 2.8) on loopback.
//!
//! Started under `env -i` (any `REGISTRY_*` variable would override our
//! config) with a config we write, storage in a temp dir, optional htpasswd
//! (bcrypt) or token auth (a [`TokenServer`]), and TLS: a server certificate
//! from a throw-away CA, or self-signed as the distribution docs make it, and
//! client certificates required on demand. Killed and reaped on drop.

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
    tls: Option<ServerCert>,
    client_cas: bool,
    read_only: bool,
}

/// The certificate a TLS [`TestRegistry`] serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCert {
    /// For `IP:127.0.0.1, DNS:localhost`, signed by a test CA.
    TestCa,
    /// Self-signed by the distribution docs' recipe (`openssl req -newkey
    /// rsa:4096 -nodes -sha256 … -x509 -days 365`, hence `CA:TRUE`), for
    /// this `subjectAltName`.
    SelfSigned(String),
    /// Self-signed for `IP:127.0.0.1, DNS:localhost`, `CA:TRUE`, valid in
    /// January 2025 only.
    ExpiredSelfSigned,
}

/// The docs' `subjectAltName`, valid for the registry's address.
pub const LOOPBACK_SAN: &str = "IP:127.0.0.1,DNS:localhost";

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
        self.tls = Some(ServerCert::TestCa);
        self
    }

    /// Serves HTTPS with `cert` (see [`ServerCert`]; [`TestRegistry::ca_cert_path`]
    /// is then the file to trust: the CA, or the self-signed certificate itself).
    pub fn server_cert(mut self, cert: ServerCert) -> Self {
        self.tls = Some(cert);
        self
    }

    /// Requires client certificates signed by a fresh client CA
    /// (`http.tls.clientcas`); implies [`Self::tls`] unless a server
    /// certificate is chosen. The client pair is written into
    /// [`TestRegistry::cert_dir`] as skopeo reads it (`client.cert`, `client.key`).
    pub fn client_cas(mut self) -> Self {
        self.client_cas = true;
        self.tls.get_or_insert(ServerCert::TestCa);
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
        let tls = self
            .tls
            .as_ref()
            .map(|cert| make_tls_files(dir.path(), cert, self.client_cas));
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
            tls,
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
    tls: Option<TlsFiles>,
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
        self.tls.is_some()
    }

    /// The filesystem driver's root directory (holds `docker/registry/v2/…`).
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// `storage_dir()/docker/registry/v2/repositories`: one directory per repository.
    pub fn repositories_dir(&self) -> PathBuf {
        self.storage.join("docker/registry/v2/repositories")
    }

    /// The certificate (PEM) to trust: the test CA that signed the server
    /// certificate (`ca.crt`), or a self-signed server certificate itself
    /// (`domain.crt`).
    ///
    /// Panics if the registry was started without TLS.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.tls_files().trusted.clone()
    }

    /// A directory for skopeo's (and bundle's) `--cert-dir`: the certificate to
    /// trust (`*.crt`) and, with [`RegistryBuilder::client_cas`], the client
    /// certificate and key (`client.cert`, `client.key`, PKCS#1 RSA).
    ///
    /// Panics if the registry was started without TLS.
    pub fn cert_dir(&self) -> &Path {
        &self.tls_files().cert_dir
    }

    fn tls_files(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("this TestRegistry was started without TLS")
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
        if let Some(tls) = &self.tls {
            args.push("--cacert".to_owned());
            args.push(tls.trusted.display().to_string());
            if tls.client_ca.is_some() {
                args.push("--cert".to_owned());
                args.push(tls.cert_dir.join("client.cert").display().to_string());
                args.push("--key".to_owned());
                args.push(tls.cert_dir.join("client.key").display().to_string());
            }
            if !tls.valid_for_loopback_now {
                // Only this harness's own checks; what bundle does is the test.
                args.push("--insecure".to_owned());
            }
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
            self.tls.as_ref(),
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
    tls: Option<&TlsFiles>,
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
    if let Some(tls) = tls {
        let _ = writeln!(yaml, "  tls:");
        let _ = writeln!(yaml, "    certificate: {}", tls.server_cert.display());
        let _ = writeln!(yaml, "    key: {}", tls.server_key.display());
        if let Some(ca) = &tls.client_ca {
            let _ = writeln!(yaml, "    clientcas:\n      - {}", ca.display());
        }
    }
    yaml
}

/// The TLS files of a [`TestRegistry`].
#[derive(Debug)]
struct TlsFiles {
    /// skopeo's `--cert-dir`: the certificate to trust and the client pair.
    cert_dir: PathBuf,
    /// The certificate to trust: `ca.crt` or the self-signed `domain.crt`.
    trusted: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// The CA that client certificates must chain to (`http.tls.clientcas`).
    client_ca: Option<PathBuf>,
    /// Whether curl can verify the server certificate for 127.0.0.1 today.
    valid_for_loopback_now: bool,
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Makes the certificates under `root` with `openssl`: `certs/` (the cert
/// dir: `ca.crt` or `domain.crt`, and `client.cert` + `client.key` with
/// `client_cas`) and `keys/` (everything else).
fn make_tls_files(root: &Path, cert: &ServerCert, client_cas: bool) -> TlsFiles {
    require_tool("openssl", "openssl");
    let dir = root.join("certs");
    let keys = root.join("keys");
    fs::create_dir_all(&dir).expect("creating the cert dir");
    fs::create_dir_all(&keys).expect("creating the key dir");
    let mut files = match cert {
        ServerCert::TestCa => {
            let ca = make_ca(&dir.join("ca.crt"), &keys.join("ca.key"), "bundle test CA");
            let (server_cert, server_key) = (keys.join("server.crt"), keys.join("server.key"));
            sign_leaf(
                &ca,
                &server_key,
                &server_cert,
                "localhost",
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
            );
            TlsFiles {
                cert_dir: dir.clone(),
                trusted: ca.0,
                server_cert,
                server_key,
                client_ca: None,
                valid_for_loopback_now: true,
            }
        }
        ServerCert::SelfSigned(san) => {
            let (server_cert, server_key) = (dir.join("domain.crt"), keys.join("domain.key"));
            // The distribution docs' command, with a subject instead of the prompt.
            run(Command::new("openssl")
                .args(["req", "-newkey", "rsa:4096", "-nodes", "-sha256", "-keyout"])
                .arg(&server_key)
                .args(["-addext", &format!("subjectAltName = {san}")])
                .args(["-x509", "-days", "365", "-out"])
                .arg(&server_cert)
                .args(["-subj", "/CN=bundle self-signed test"]));
            TlsFiles {
                cert_dir: dir.clone(),
                trusted: server_cert.clone(),
                server_cert,
                server_key,
                client_ca: None,
                valid_for_loopback_now: san == LOOPBACK_SAN,
            }
        }
        ServerCert::ExpiredSelfSigned => {
            let (server_cert, server_key) = (dir.join("domain.crt"), keys.join("domain.key"));
            make_expired_self_signed(&keys, &server_key, &server_cert);
            TlsFiles {
                cert_dir: dir.clone(),
                trusted: server_cert.clone(),
                server_cert,
                server_key,
                client_ca: None,
                valid_for_loopback_now: false,
            }
        }
    };
    if client_cas {
        let ca = make_ca(
            &keys.join("client-ca.crt"),
            &keys.join("client-ca.key"),
            "bundle test client CA",
        );
        let key = dir.join("client.key");
        // PKCS#1 RSA ("BEGIN RSA PRIVATE KEY"), as `openssl genrsa -traditional` writes it.
        run(Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&key)
            .arg("2048"));
        sign_leaf(
            &ca,
            &key,
            &dir.join("client.cert"),
            "bundle test client",
            "extendedKeyUsage=clientAuth\n",
        );
        files.client_ca = Some(ca.0);
    }
    files
}

/// A P-256 CA certificate at `cert` with its key at `key`; returns both paths.
fn make_ca(cert: &Path, key: &Path, name: &str) -> (PathBuf, PathBuf) {
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(EC_KEY)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .args(["-days", "7", "-subj", &format!("/CN={name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    (cert.to_owned(), key.to_owned())
}

/// A certificate at `cert` for `key` (made as P-256 unless it exists),
/// signed by `ca`, with extensions `ext` (lines of `openssl x509 -extfile`).
fn sign_leaf(ca: &(PathBuf, PathBuf), key: &Path, cert: &Path, name: &str, ext: &str) {
    let csr = cert.with_extension("csr");
    let mut req = Command::new("openssl");
    req.arg("req");
    if key.exists() {
        req.arg("-new").arg("-key").arg(key);
    } else {
        req.args(EC_KEY).arg("-keyout").arg(key);
    }
    run(req
        .arg("-out")
        .arg(&csr)
        .args(["-subj", &format!("/CN={name}")]));
    let ext_file = cert.with_extension("ext");
    fs::write(
        &ext_file,
        format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
    )
    .expect("writing the certificate extensions");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "7", "-set_serial", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-extfile")
        .arg(&ext_file)
        .arg("-out")
        .arg(cert));
}

/// A self-signed `CA:TRUE` certificate for `IP:127.0.0.1, DNS:localhost`
/// valid from 2025-01-01 to 2025-02-01: `openssl ca -selfsign` is the one
/// openssl 3.0 command that sets both dates (`req -x509` starts today).
fn make_expired_self_signed(work: &Path, key: &Path, cert: &Path) {
    let db = work.join("ca-db");
    fs::create_dir_all(&db).expect("creating the openssl ca database dir");
    fs::write(db.join("index.txt"), "").expect("writing index.txt");
    fs::write(db.join("serial"), "01\n").expect("writing serial");
    let config = work.join("ca.cnf");
    fs::write(
        &config,
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n\
             serial = {db}/serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n\
             unique_subject = no\n[p]\ncommonName = supplied\n",
            db = db.display()
        ),
    )
    .expect("writing the openssl ca config");
    let csr = work.join("domain.csr");
    run(Command::new("openssl")
        .args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=bundle expired test"])
        .args(["-addext", &format!("subjectAltName = {LOOPBACK_SAN}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"]));
    run(Command::new("openssl")
        .args(["ca", "-batch", "-notext", "-selfsign", "-config"])
        .arg(&config)
        .arg("-keyfile")
        .arg(key)
        .arg("-in")
        .arg(&csr)
        .args([
            "-startdate",
            "20250101000000Z",
            "-enddate",
            "20250201000000Z",
        ])
        .arg("-out")
        .arg(cert));
}
