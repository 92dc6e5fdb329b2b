//! Test support: a real `docker-registry` on loopback, a pusher to seed it,
//! and a tiny HTTP/1.1 server for behaviour the real registry never shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ClientOptions, Credentials, Registry, RegistryError};
use crate::digest::Digest;
use crate::oci;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// What the test registry should require.
#[derive(Default)]
pub struct RegistryConfig {
    /// Serve https with a freshly made CA.
    pub tls: bool,
    /// Require this user and password (htpasswd, bcrypt).
    pub basic: Option<(String, String)>,
    /// Serve read-only (`storage.maintenance.readonly`): pushes fail with 405.
    pub readonly: bool,
}

/// A `docker-registry serve` child process, killed on drop.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    tls: bool,
    basic: Option<(String, String)>,
}

impl TestRegistry {
    /// Starts a registry and waits until `/v2/` answers.
    pub async fn start(cfg: RegistryConfig) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: apt-get install docker-registry"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{}http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display(),
            if cfg.readonly {
                "  maintenance:\n    readonly:\n      enabled: true\n"
            } else {
                ""
            }
        );
        if cfg.tls {
            make_certs(dir.path());
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.pem").display(),
                dir.path().join("server.key").display()
            ));
        }
        if let Some((user, pass)) = &cfg.basic {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).expect("write htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("env")
            .arg("-i")
            .arg(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut reg = TestRegistry {
            child,
            dir,
            port,
            tls: cfg.tls,
            basic: cfg.basic,
        };
        reg.wait_ready().await;
        reg
    }

    async fn wait_ready(&mut self) {
        let client = self.admin_client();
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if client.get(&url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry never answered:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate that signed the server certificate (TLS only).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client trusting anything, for seeding and raw checks.
    pub fn admin_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client")
    }

    /// A pusher with the registry's credentials.
    pub fn pusher(&self) -> Pusher {
        Pusher {
            client: self.admin_client(),
            base: Url::parse(&self.base_url()).expect("base url"),
            basic: self.basic.clone(),
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for localhost and 127.0.0.1.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bundle test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Pushes content straight through the distribution API.
pub struct Pusher {
    client: reqwest::Client,
    base: Url,
    basic: Option<(String, String)>,
}

/// An image that was pushed.
pub struct Pushed {
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
    /// The layer's bytes.
    pub layer: Vec<u8>,
}

impl Pusher {
    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.basic {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    /// Uploads a blob (monolithic: POST then PUT ?digest=).
    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let start = self
            .base
            .join(&format!("v2/{repo}/blobs/uploads/"))
            .expect("url");
        let resp = self
            .auth(self.client.post(start))
            .send()
            .await
            .expect("POST upload");
        assert_eq!(resp.status().as_u16(), 202, "starting an upload");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location");
        let mut put = self.base.join(location).expect("location url");
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .auth(self.client.put(put))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT blob");
        assert_eq!(resp.status().as_u16(), 201, "finishing an upload");
        digest
    }

    /// Uploads a manifest under `reference` (a tag or its digest).
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let url = self
            .base
            .join(&format!("v2/{repo}/manifests/{reference}"))
            .expect("url");
        let resp = self
            .auth(self.client.put(url))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "pushing manifest {repo}:{reference}: {body}");
        Digest::of(bytes)
    }

    /// Pushes a one-layer OCI image whose layer is `layer`, tagged `tag`.
    pub async fn image(&self, repo: &str, tag: &str, layer: &[u8]) -> Pushed {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = self.blob(repo, config).await;
        let layer_digest = self.blob(repo, layer).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
            oci::OCI_MANIFEST,
            config.len(),
            layer.len()
        )
        .into_bytes();
        let digest = self.manifest(repo, tag, oci::OCI_MANIFEST, &manifest).await;
        Pushed {
            manifest,
            digest,
            layer: layer.to_vec(),
        }
    }
}

/// A request as the mini server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// First value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, decoded (first occurrence).
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_all(name).into_iter().next()
    }

    /// Every value of a query parameter, decoded.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        let url = Url::parse(&format!("http://x{}", self.target)).expect("target");
        url.query_pairs()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

/// What the mini server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (its full length is announced in Content-Length).
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection.
    pub cut_after: Option<usize>,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_after: None,
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_owned(), v.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server on loopback; stops on drop.
pub struct MiniServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every request received, in order.
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MiniServer {
    /// Listens on `ip:0` and answers every request with `handler`.
    pub async fn start(
        ip: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> MiniServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind mini server");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_connection(sock, handler.clone(), log.clone()));
            }
        });
        MiniServer {
            addr,
            requests,
            task,
        }
    }

    /// `ip:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of the requests seen so far.
    pub fn seen(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(mut sock: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.first() == Some(&0x16) {
                // A TLS ClientHello: answer 400 like a real HTTP server, then hang up.
                let _ = sock
                    .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nnot HTTP\n")
                    .await;
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let target = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let req = Request {
            method,
            target,
            headers,
            body,
        };
        log.lock().expect("lock").push(req.clone());
        let reply = handler(&req);
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        let send = reply
            .cut_after
            .unwrap_or(reply.body.len())
            .min(reply.body.len());
        bytes.extend_from_slice(&reply.body[..send]);
        if sock.write_all(&bytes).await.is_err() {
            return;
        }
        if reply.cut_after.is_some() {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

/// Options for a loopback test server: no certificate checks, these credentials.
pub fn insecure(credentials: Credentials) -> ClientOptions {
    ClientOptions {
        tls_verify: false,
        credentials,
        ..ClientOptions::default()
    }
}

/// Connects to a scripted server with `credentials`.
pub async fn connect(
    server: &MiniServer,
    credentials: Credentials,
) -> Result<Registry, RegistryError> {
    Registry::connect(&server.url(), &insecure(credentials)).await
}
