//! The only network code: a thin client for the OCI distribution API on reqwest.
//!
//! [`Registry::connect`] pings `/v2/` and learns how the registry wants to be
//! authenticated; then [`Registry::catalog`], [`Registry::tags`],
//! [`Registry::manifest`] and [`Registry::blob`] read from it. Every body that
//! is returned is checked: manifests are hashed as raw bytes (never
//! re-serialized), blobs arrive as a [`BlobStream`] that fails instead of
//! ending if size or digest differ.
//!
//! The write side pushes: [`Registry::has_blob`] and
//! [`Registry::manifest_digest`] check what is already there,
//! [`Registry::mount_blob`] and [`Registry::start_upload`] open an [`Upload`]
//! that sends a blob in chunks, and [`Registry::put_manifest`] pushes a
//! manifest by tag or digest.
//!
//! - `auth`: credentials and auth files.
//! - `challenge`: `WWW-Authenticate` challenges and token responses.
//! - `session`: authorization, the token flow, retries.
//! - `download`: blob bodies resumed with `Range` after a broken connection.
//! - `reference`: image reference parsing.
//! - `link`: `Link` header pagination.
//! - `manifest`: checks on fetched manifest bytes.
//! - `blob`: the self-checking blob stream.
//! - `upload`: the push side: blob checks, mounts, chunked uploads, manifests.
//! - `pace`: the slowest a response body may arrive (a trickle fails).
//! - `tls`: trusted CAs, the user's own server certificates, client
//!   certificates, certificate directories (`--cert-dir`, `certs.d`).

mod auth;
mod blob;
mod challenge;
mod download;
mod error;
mod link;
mod manifest;
mod pace;
mod reference;
mod session;
mod tls;
mod upload;

/// The registry's parsers of untrusted text, for the fuzz targets
/// (`fuzz/checks.rs`). Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::auth::{AuthfileError, Lookup, lookup_authfile};
    pub use super::challenge::{
        BearerChallenge, Challenge, Token, parse_challenge, parse_token_response,
    };
    pub use super::link::{Link, LinkParseError, next_page, parse_link_header};
}

#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_fake;
#[cfg(test)]
mod tests_real;
#[cfg(test)]
mod tests_upload;
#[cfg(test)]
mod testutil;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderName, LINK};
use serde::Deserialize;

use crate::digest::Digest;
use crate::oci;

pub use auth::{Credentials, credentials_from_authfile, default_authfile};
pub use blob::BlobStream;
pub use error::{ErrorCode, ErrorDetail, RegistryError};
pub use reference::{ImageReference, is_valid_host, is_valid_repository, is_valid_tag};
pub use tls::{ca_cert_files, default_cert_roots, read_pem_file};
pub use upload::{MountOutcome, Upload};

use session::{Scope, Session};

/// Page size asked of `/v2/_catalog` (distribution refuses more than 1000).
pub const DEFAULT_CATALOG_PAGE_SIZE: usize = 1000;
/// Bytes sent per `PATCH` of a blob upload, unless the registry asks for more.
pub const DEFAULT_UPLOAD_CHUNK_SIZE: usize = 8 << 20;
/// Largest upload chunk held in memory, whatever is configured or asked for.
pub const MAX_UPLOAD_CHUNK_SIZE: usize = 256 << 20;
/// Largest catalog or tag-list page read.
const LIST_LIMIT: u64 = 16 << 20;
/// Most pages followed in one listing before giving up.
const MAX_PAGES: usize = 100_000;
/// Connection set-up timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Verify TLS certificates (on by default; off also allows plain http, see [`Registry::connect`]).
    pub tls_verify: bool,
    /// PEM files whose certificates are trusted in addition to the system roots
    /// (as CAs, and each as the server's own certificate).
    pub ca_certs: Vec<PathBuf>,
    /// A certificate directory as skopeo's `--cert-dir`: `*.crt` CA
    /// certificates, `NAME.cert` + `NAME.key` client certificates. None: the
    /// registry's `HOST[:PORT]/` under the first of `cert_roots` that has one.
    pub cert_dir: Option<PathBuf>,
    /// Where `HOST[:PORT]/` certificate directories are looked for (default: [`default_cert_roots`]).
    pub cert_roots: Vec<PathBuf>,
    /// What to authenticate with.
    pub credentials: Credentials,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            ca_certs: Vec::new(),
            cert_dir: None,
            cert_roots: default_cert_roots(),
            credentials: Credentials::Anonymous,
            user_agent: concat!("bundle/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A manifest (or index) exactly as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The raw body: hash and store these bytes, never a re-serialization.
    pub bytes: Bytes,
    /// Media type (`Content-Type` without parameters, else the body's `mediaType`).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

/// A connected registry; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Registry {
    session: Arc<Session>,
    catalog_page_size: usize,
    upload_chunk_size: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.session.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects to `host` (`host[:port]`, or with an explicit `https://` or `http://`).
    ///
    /// Without a scheme, https is used. Plain http is used only when the scheme
    /// says `http://` and `tls_verify` is false, or when no scheme is given,
    /// `tls_verify` is false, the host is loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`) and https fails at the connection or TLS level (as
    /// skopeo does). Then `GET /v2/` is sent
    /// and its authentication challenge answered: anonymous access to a registry
    /// that wants basic auth, or credentials it refuses, give
    /// [`RegistryError::Unauthorized`] here.
    pub async fn connect(host: &str, opts: &ClientOptions) -> Result<Registry, RegistryError> {
        let (scheme, host_port) = split_host(host)?;
        if scheme == Some("http") && opts.tls_verify {
            return Err(RegistryError::PlainHttpRefused {
                host: host_port.to_owned(),
            });
        }
        let (http, client_auth) = build_client(opts, host_port)?;
        // Docker Hub's API lives on another name than the one people write.
        let api_host = match host_port {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            h => h,
        };
        let base = |scheme: &str| {
            Url::parse(&format!("{scheme}://{api_host}/")).map_err(|_| RegistryError::InvalidHost {
                host: host.to_owned(),
                reason: "not host[:port]".to_owned(),
            })
        };
        let session = |url: Url| {
            Session::new(
                http.clone(),
                url,
                host_port.to_owned(),
                opts.credentials.clone(),
            )
        };
        let connected = if scheme == Some("http") {
            let s = session(base("http")?);
            s.ping().await?;
            s
        } else {
            let https = base("https")?;
            let loopback = is_loopback(&https);
            let s = session(https);
            // A server that asked for a client certificate speaks TLS: its
            // refusal is never a reason to try plain http.
            match s.ping().await.map_err(|e| client_auth.explain(e)) {
                Ok(()) => s,
                Err(e)
                    if scheme.is_none() && !opts.tls_verify && loopback && fails_below_http(&e) =>
                {
                    tracing::debug!(
                        host = host_port,
                        "https failed on a loopback host, trying http"
                    );
                    let s = session(base("http")?);
                    s.ping().await?;
                    s
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Registry {
            session: Arc::new(connected),
            catalog_page_size: DEFAULT_CATALOG_PAGE_SIZE,
            upload_chunk_size: DEFAULT_UPLOAD_CHUNK_SIZE,
        })
    }

    /// The same registry, asking for `n` repositories per catalog page.
    pub fn with_catalog_page_size(mut self, n: usize) -> Self {
        self.catalog_page_size = n.max(1);
        self
    }

    /// The same registry, sending blob uploads in `PATCH` chunks of `n` bytes
    /// (1 to [`MAX_UPLOAD_CHUNK_SIZE`]; default [`DEFAULT_UPLOAD_CHUNK_SIZE`]).
    ///
    /// A registry that announces a larger `OCI-Chunk-Min-Length` gets chunks
    /// of that size instead.
    pub fn with_upload_chunk_size(mut self, n: usize) -> Self {
        self.upload_chunk_size = n.clamp(1, MAX_UPLOAD_CHUNK_SIZE);
        self
    }

    /// `host[:port]` as given to [`Registry::connect`], without scheme.
    pub fn host(&self) -> &str {
        &self.session.host
    }

    /// Whether the registry is spoken to over plain http.
    pub fn is_plain_http(&self) -> bool {
        self.session.base.scheme() == "http"
    }

    /// Every repository in `/v2/_catalog`, following `Link` pagination, without duplicates.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let mut url = self.api_url("v2/_catalog")?;
        url.query_pairs_mut()
            .append_pair("n", &self.catalog_page_size.to_string());
        self.list(url, &Scope::Catalog, "repositories", "catalog page")
            .await
    }

    /// Every tag of `repo` in `/v2/<repo>/tags/list`, following `Link` pagination, without duplicates.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        check_repository(repo)?;
        let url = self.api_url(&format!("v2/{repo}/tags/list"))?;
        self.list(url, &Scope::Pull(repo.to_owned()), "tags", "tag list page")
            .await
    }

    /// Fetches the manifest or index `reference` (a tag or a digest) of `repo`, byte for byte.
    ///
    /// The digest is computed over the raw bytes and must match a digest
    /// `reference` and the `Docker-Content-Digest` header; bodies over 4 MiB and
    /// Docker schema 1 are refused.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        check_repository(repo)?;
        let what = manifest_name(repo, reference)?;
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"))?;
        let accept = manifest::accept_header();
        let page = self
            .session
            .get_small(
                &url,
                &Scope::Pull(repo.to_owned()),
                Some(&accept),
                oci::MAX_MANIFEST_SIZE,
                &what,
            )
            .await?;
        if !page.is_success() {
            return Err(page.error("GET", &url));
        }
        let header = |name: &str| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            session::header_strs(&page.headers, name).next()
        };
        let checked = manifest::check_manifest(
            &what,
            url.as_str(),
            &page.body,
            reference,
            header("docker-content-digest"),
            header(CONTENT_TYPE.as_str()),
        )?;
        Ok(FetchedManifest {
            bytes: page.body,
            media_type: checked.media_type,
            digest: checked.digest,
        })
    }

    /// Streams blob `digest` of `repo`, checked against `digest` and `size` as it arrives.
    ///
    /// Redirects (to storage or a CDN) are followed without credentials; a body
    /// that breaks off is resumed with `Range` from the registry URL.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobStream, RegistryError> {
        check_repository(repo)?;
        let what = format!("blob {digest} in {repo}");
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scope = Scope::Pull(repo.to_owned());
        let resp = self.session.get(&url, &scope, None, None).await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = session::read_capped(resp, 64 << 10, &what).await?;
            return Err(RegistryError::Http {
                method: "GET",
                url: url.to_string(),
                status,
                errors: error::parse_error_envelope(&body),
            });
        }
        if let Some(len) = resp.content_length().filter(|&len| len != size) {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: size,
                found: len,
                more: false,
            });
        }
        let body = download::resumable_body(self.session.clone(), url, scope, resp);
        Ok(BlobStream::new(body, *digest, size, what))
    }

    fn api_url(&self, path: &str) -> Result<Url, RegistryError> {
        self.session
            .base
            .join(path)
            .map_err(|_| RegistryError::InvalidReference {
                reference: path.to_owned(),
                reason: "cannot form a URL from it".to_owned(),
            })
    }

    /// Reads a paginated JSON list (`{"<field>": [..]}`), following `Link: rel="next"`.
    async fn list(
        &self,
        first: Url,
        scope: &Scope,
        field: &str,
        what: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let mut visited = HashSet::new();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let pagination = |reason: &str| RegistryError::Pagination {
                url: url.to_string(),
                reason: reason.to_owned(),
            };
            if visited.len() >= MAX_PAGES {
                return Err(pagination("goes on for too many pages"));
            }
            visited.insert(url.clone());
            let page = self
                .session
                .get_small(&url, scope, Some("application/json"), LIST_LIMIT, what)
                .await?;
            if !page.is_success() {
                return Err(page.error("GET", &url));
            }
            let items =
                parse_list(&page.body, field).map_err(|reason| RegistryError::InvalidResponse {
                    url: url.to_string(),
                    reason,
                })?;
            for item in items {
                if seen.insert(item.clone()) {
                    out.push(item);
                }
            }
            let link =
                link::next_page(&url, session::header_strs(&page.headers, LINK)).map_err(|e| {
                    RegistryError::InvalidResponse {
                        url: url.to_string(),
                        reason: format!(
                            "unreadable Link header: expected {} at byte {}",
                            e.expected, e.at
                        ),
                    }
                })?;
            if let Some(n) = &link {
                if n.origin() != self.session.base.origin() {
                    return Err(pagination("leads to another host"));
                }
                if visited.contains(n) {
                    return Err(pagination("loops back to a page already read"));
                }
            }
            next = link;
        }
        Ok(out)
    }
}

/// Reads `{"<field>": ["a", "b"]}` (a `null` or missing list is empty).
fn parse_list(body: &[u8], field: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_owned())?;
    match value.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(list) => Vec::<String>::deserialize(list)
            .map_err(|_| format!("\"{field}\" is not a list of strings")),
    }
}

/// `manifest <repo>:<tag>` or `manifest <repo>@<digest>`, for messages;
/// refuses a reference that is neither a tag nor a sha256 digest.
fn manifest_name(repo: &str, reference: &str) -> Result<String, RegistryError> {
    if reference.parse::<Digest>().is_ok() {
        Ok(format!("manifest {repo}@{reference}"))
    } else if is_valid_tag(reference) {
        Ok(format!("manifest {repo}:{reference}"))
    } else {
        Err(RegistryError::InvalidReference {
            reference: reference.to_owned(),
            reason: "neither a tag nor a sha256 digest".to_owned(),
        })
    }
}

fn check_repository(repo: &str) -> Result<(), RegistryError> {
    if is_valid_repository(repo) {
        Ok(())
    } else {
        Err(RegistryError::InvalidReference {
            reference: repo.to_owned(),
            reason: "not a repository name (lowercase components separated by '/')".to_owned(),
        })
    }
}

/// Splits `[scheme://]host[:port][/]` and checks the host part.
fn split_host(input: &str) -> Result<(Option<&str>, &str), RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidHost {
        host: input.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = match input.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Some("https"), rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Some("http"), rest),
        Some(_) => return Err(invalid("the scheme must be https:// or http://")),
        None => (None, input),
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    if host_port.is_empty() {
        return Err(invalid("no host"));
    }
    if host_port.contains(['/', '@', '?', '#']) || host_port.contains(char::is_whitespace) {
        return Err(invalid("expected host[:port] with no path, user or query"));
    }
    let url = Url::parse(&format!("https://{host_port}/"))
        .map_err(|_| invalid("expected host[:port]"))?;
    if url.host_str().is_none() {
        return Err(invalid("expected host[:port]"));
    }
    Ok((scheme, host_port))
}

/// Whether a URL's host is `localhost` or a loopback address.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Whether an https attempt failed below HTTP (TLS or connection), so plain http may be worth a try.
fn fails_below_http(e: &RegistryError) -> bool {
    match e {
        RegistryError::Tls { .. } | RegistryError::Certificate { .. } => true,
        RegistryError::Transport { source, .. } => source.is_connect(),
        _ => false,
    }
}

/// The HTTP client, with TLS set up for `host_port` (see the `tls` module).
fn build_client(
    opts: &ClientOptions,
    host_port: &str,
) -> Result<(reqwest::Client, tls::ClientAuthProbe), RegistryError> {
    let (tls, probe) = tls::client_config(opts, host_port)?;
    let client = reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(redirect_policy())
        .use_preconfigured_tls(tls)
        .build()
        .map_err(RegistryError::Client)?;
    Ok((client, probe))
}

/// Follows up to [`MAX_REDIRECTS`] redirects, never from https down to http.
///
/// It only decides whether to follow: reqwest itself removes `Authorization`
/// when the next URL is on another host or port, and nothing here adds it back.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|prev| prev.scheme() == "https" && attempt.url().scheme() != "https");
        if downgrade {
            attempt.error("refusing a redirect from https to plain http")
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            split_host("r.example:5000").expect("ok"),
            (None, "r.example:5000")
        );
        assert_eq!(
            split_host("https://r.example/").expect("ok"),
            (Some("https"), "r.example")
        );
        assert_eq!(
            split_host("HTTP://127.0.0.1:80").expect("ok"),
            (Some("http"), "127.0.0.1:80")
        );
        assert_eq!(split_host("[::1]:5000").expect("ok"), (None, "[::1]:5000"));
        for bad in [
            "",
            "ftp://x",
            "x/y",
            "user:pw@x",
            "https://",
            "x?y",
            "x y",
            "x:port",
        ] {
            assert!(split_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        let l = |s: &str| is_loopback(&Url::parse(s).expect("url"));
        assert!(l("https://localhost:5000/"));
        assert!(l("https://127.0.0.1/"));
        assert!(l("https://127.8.9.10:1/"));
        assert!(l("https://[::1]:5000/"));
        assert!(!l("https://10.0.0.1/"));
        assert!(!l("https://localhost.example/"));
        assert!(!l("https://[::2]/"));
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list(br#"{"repositories":["a","b"]}"#, "repositories"),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_list(br#"{"name":"a","tags":null}"#, "tags"),
            Ok(vec![])
        );
        assert_eq!(parse_list(br#"{"name":"a"}"#, "tags"), Ok(vec![]));
        assert!(parse_list(br#"{"tags":[1]}"#, "tags").is_err());
        assert!(parse_list(b"nope", "tags").is_err());
    }
}
