//! The write side of the distribution API: blob checks, mounts, chunked blob
//! uploads and manifest pushes.
//!
//! A blob is pushed in up to four steps:
//!
//! 1. [`Registry::has_blob`] (`HEAD /v2/<repo>/blobs/<digest>`): nothing to do
//!    if the registry has it.
//! 2. [`Registry::mount_blob`] (`POST …/blobs/uploads/?mount=<digest>&from=<repo>`):
//!    a registry that has the blob in another repository links it in (`201`),
//!    no bytes sent; otherwise it opens an ordinary upload session (`202`).
//!    [`Registry::start_upload`] opens one directly.
//! 3. [`Upload::write`] buffers bytes and sends each full chunk as one
//!    `PATCH <location>` with `Content-Range: <start>-<end>`. This is the OCI
//!    chunked upload: every chunk is a bounded request, so memory stays at one
//!    chunk whatever the blob's size, and the range lets the registry refuse
//!    a chunk that does not start where its data ends (`416`). Distribution
//!    2.8 ignores `Content-Range` and appends whatever arrives, so the `Range`
//!    of each answer (what the registry holds) is checked here as well. A
//!    registry may ask for chunks of at least `OCI-Chunk-Min-Length` bytes
//!    (storage back ends such as S3 multipart need large parts); the chunk
//!    size is then raised to that. Each answer names the `Location` of the
//!    next request.
//! 4. [`Upload::finish`] (`PUT <location>?digest=<digest>`) sends what is
//!    still buffered and asks the registry to check the digest and publish the
//!    blob. A blob smaller than one chunk is thus a monolithic upload: one
//!    `POST` and one `PUT`, no `PATCH`.
//!
//! Then [`Registry::put_manifest`] pushes the manifest, by digest or by tag.
//!
//! The registry verifies the digest itself at `PUT`; the bytes are not hashed
//! here (callers read them from a verified source). Credentials go only to an
//! upload `Location` on the registry's own origin.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    ACCEPT, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RANGE,
};
use reqwest::{Method, Url};

use crate::digest::{Digest, DigestParseError};

use super::session::{Scope, Session, Small, header_strs, without_query};
use super::{MAX_UPLOAD_CHUNK_SIZE, Registry, RegistryError, check_repository, manifest};

/// The header a registry announces its smallest accepted chunk with.
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";
/// The header a registry names the digest of stored content with.
const CONTENT_DIGEST: &str = "docker-content-digest";
/// The media type of blob bytes in an upload.
const OCTET_STREAM: &str = "application/octet-stream";

/// What [`Registry::mount_blob`] achieved.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "made once per mount and taken apart at once; `Upload(Upload)` is the agreed API"
)]
pub enum MountOutcome {
    /// The registry linked the blob in from the other repository: nothing to upload.
    Mounted,
    /// The registry could not mount it and opened an upload session instead.
    Upload(Upload),
}

/// One blob upload session on a registry, which it sends in chunks.
///
/// Bytes go in with [`Upload::write`] in pieces of any size; every full chunk
/// is sent as one `PATCH`, and [`Upload::finish`] sends the rest with the
/// closing `PUT`. After an error the session cannot go on: cancel it and start
/// another.
#[must_use = "an upload session stays open on the registry until finished or cancelled"]
pub struct Upload {
    session: Arc<Session>,
    scope: Scope,
    repo: String,
    /// Where the next request goes (the last `Location` the registry named).
    location: Url,
    /// Bytes per `PATCH`.
    chunk: usize,
    /// The registry's `OCI-Chunk-Min-Length`, 0 if it named none.
    min_chunk: u64,
    /// Bytes accepted but not sent yet (at most `chunk`).
    buf: BytesMut,
    /// Bytes sent so far.
    sent: u64,
    patches: u64,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("repo", &self.repo)
            .field("location", &without_query(&self.location).as_str())
            .field("chunk", &self.chunk)
            .field("len", &self.len())
            .field("patches", &self.patches)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Whether `repo` has blob `digest`: `HEAD /v2/<repo>/blobs/<digest>`.
    ///
    /// `Ok(true)` on 2xx, `Ok(false)` on 404, an error otherwise. Asks for a
    /// push token, so the check and the upload that may follow share one.
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        check_repository(repo)?;
        let what = format!("checking blob {digest} in {repo}");
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"))?;
        let scope = Scope::Push(repo.to_owned());
        let answer = self
            .session
            .send_small(Method::HEAD, &url, &scope, HeaderMap::new(), None, &what)
            .await?;
        match answer.status {
            404 => Ok(false),
            _ if answer.is_success() => Ok(true),
            _ => Err(answer.refused(&what, "HEAD", &url)),
        }
    }

    /// The digest of manifest `reference` (a tag or a digest) in `repo`, or
    /// `None` if there is none: `HEAD /v2/<repo>/manifests/<reference>`.
    ///
    /// Sends the same `Accept` as [`Registry::manifest`]. The digest comes from
    /// `Docker-Content-Digest`; without that header it is the digest asked by,
    /// or for a tag, the digest of the manifest fetched with `GET`. A header
    /// that contradicts a digest reference is a
    /// [`RegistryError::DigestMismatch`].
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        check_repository(repo)?;
        let what = format!("checking {}", super::manifest_name(repo, reference)?);
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, header_value(&manifest::accept_header(), &url)?);
        let scope = Scope::Push(repo.to_owned());
        let answer = self
            .session
            .send_small(Method::HEAD, &url, &scope, headers, None, &what)
            .await?;
        if answer.status == 404 {
            return Ok(None);
        }
        if !answer.is_success() {
            return Err(answer.refused(&what, "HEAD", &url));
        }
        let announced = announced_digest(header(&answer, CONTENT_DIGEST)).map_err(|reason| {
            RegistryError::InvalidResponse {
                url: url.to_string(),
                reason,
            }
        })?;
        match (announced, reference.parse::<Digest>().ok()) {
            (Some(found), Some(asked)) if found != asked => Err(RegistryError::DigestMismatch {
                what: format!("{what} (Docker-Content-Digest)"),
                expected: asked,
                found,
            }),
            (Some(found), _) => Ok(Some(found)),
            (None, Some(asked)) => Ok(Some(asked)),
            (None, None) => {
                tracing::debug!(%url, "no sha256 Docker-Content-Digest, fetching the manifest");
                match self.manifest(repo, reference).await {
                    Ok(m) => Ok(Some(m.digest)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Mounts blob `digest` into `repo` from repository `from`:
    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`.
    ///
    /// `201` is [`MountOutcome::Mounted`]; `202` means the registry opened an
    /// ordinary upload session instead ([`MountOutcome::Upload`]), for the
    /// caller to upload the blob itself. The token asked for covers push to
    /// `repo` and pull from `from`.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        check_repository(repo)?;
        check_repository(from)?;
        let what = format!("mounting blob {digest} into {repo} from {from}");
        let mut url = self.api_url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scope = Scope::Mount {
            repo: repo.to_owned(),
            from: from.to_owned(),
        };
        let answer = self.post_empty(&url, &scope, &what).await?;
        match answer.status {
            201 => Ok(MountOutcome::Mounted),
            202 => Ok(MountOutcome::Upload(
                self.open_upload(repo, scope, &answer)?,
            )),
            _ => Err(answer.refused(&what, "POST", &url)),
        }
    }

    /// Opens an upload session in `repo`: `POST /v2/<repo>/blobs/uploads/`,
    /// answered `202` with the session's `Location`.
    pub async fn start_upload(&self, repo: &str) -> Result<Upload, RegistryError> {
        check_repository(repo)?;
        let what = format!("starting a blob upload to {repo}");
        let url = self.api_url(&format!("v2/{repo}/blobs/uploads/"))?;
        let scope = Scope::Push(repo.to_owned());
        let answer = self.post_empty(&url, &scope, &what).await?;
        if answer.status != 202 {
            return Err(answer.refused(&what, "POST", &url));
        }
        self.open_upload(repo, scope, &answer)
    }

    /// Pushes manifest `bytes` as `reference` (a tag or its digest) in `repo`:
    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`.
    ///
    /// Returns the sha256 of `bytes`. A digest `reference` that is not that
    /// digest is refused before sending, and a `Docker-Content-Digest` in the
    /// answer that differs is a [`RegistryError::DigestMismatch`].
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        check_repository(repo)?;
        let what = format!("pushing {}", super::manifest_name(repo, reference)?);
        let digest = Digest::of(&bytes);
        if let Ok(asked) = reference.parse::<Digest>()
            && asked != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: asked,
                found: digest,
            });
        }
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"))?;
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::InvalidReference {
                reference: media_type.to_owned(),
                reason: "not a media type that can be sent as Content-Type".to_owned(),
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type);
        let scope = Scope::Push(repo.to_owned());
        let answer = self
            .session
            .send_small(Method::PUT, &url, &scope, headers, Some(bytes), &what)
            .await?;
        if !answer.is_success() {
            return Err(answer.refused(&what, "PUT", &url));
        }
        check_announced(&answer, &url, &what, &digest)?;
        Ok(digest)
    }

    /// `POST …/blobs/uploads/[?mount=…]` with an empty body: how every upload starts.
    async fn post_empty(
        &self,
        url: &Url,
        scope: &Scope,
        what: &str,
    ) -> Result<Small, RegistryError> {
        self.session
            .send_small(
                Method::POST,
                url,
                scope,
                HeaderMap::new(),
                Some(Bytes::new()),
                what,
            )
            .await
    }

    /// The upload session a `202` answer (to `POST …/blobs/uploads/`) opened.
    fn open_upload(
        &self,
        repo: &str,
        scope: Scope,
        answer: &Small,
    ) -> Result<Upload, RegistryError> {
        let location = next_location(answer, &self.session.base)?;
        let min_chunk = chunk_min_length(&answer.headers).unwrap_or(0);
        let wanted = usize::try_from(min_chunk).unwrap_or(usize::MAX);
        let chunk = self
            .upload_chunk_size
            .max(wanted)
            .min(MAX_UPLOAD_CHUNK_SIZE);
        tracing::debug!(repo, chunk, min_chunk, "upload session opened");
        Ok(Upload {
            session: self.session.clone(),
            scope,
            repo: repo.to_owned(),
            location,
            chunk,
            min_chunk,
            buf: BytesMut::new(),
            sent: 0,
            patches: 0,
        })
    }
}

impl Upload {
    /// Appends `bytes` (any piece size) to the blob.
    ///
    /// Bytes are buffered up to the chunk size; each full chunk is sent as one
    /// `PATCH` (`Content-Type: application/octet-stream`, `Content-Range:
    /// <start>-<end>`, inclusive) once more bytes follow it, so a blob that
    /// fits in one chunk goes whole with [`Upload::finish`]. `202` and `201`
    /// answers are accepted and their `Location` followed; `416` (the registry
    /// holds another length) is an error.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), RegistryError> {
        while !bytes.is_empty() {
            if self.buf.len() >= self.chunk {
                self.send_chunk().await?;
            }
            let take = (self.chunk - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Completes the upload as blob `digest`: `PUT <location>?digest=<digest>`
    /// with whatever is still buffered as the body, answered `201`.
    ///
    /// The registry checks the digest: content that does not hash to it is
    /// refused (`400 DIGEST_INVALID`, a [`RegistryError::Refused`] naming the
    /// blob). On any error the session is cancelled, best effort.
    pub async fn finish(mut self, digest: &Digest) -> Result<(), RegistryError> {
        let what = format!("uploading blob {digest} to {}", self.repo);
        let result = self.complete(digest, &what).await;
        if result.is_err() {
            self.delete().await;
        }
        result
    }

    /// Abandons the upload: a best-effort `DELETE` of the session (errors are logged at debug level).
    pub async fn cancel(self) {
        self.delete().await;
    }

    /// Bytes accepted so far (sent or still buffered).
    pub fn len(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    /// Whether no byte has been accepted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `PATCH` requests sent so far.
    pub fn patches(&self) -> u64 {
        self.patches
    }

    /// Bytes per `PATCH`: the configured size, or the registry's `OCI-Chunk-Min-Length` if larger.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Sends the (full) buffer as one `PATCH` and moves to the `Location` it is answered with.
    async fn send_chunk(&mut self) -> Result<(), RegistryError> {
        let start = self.sent;
        let len = self.buf.len() as u64;
        let end = start + len.saturating_sub(1);
        if len < self.min_chunk {
            return Err(RegistryError::InvalidResponse {
                url: without_query(&self.location).to_string(),
                reason: format!(
                    "the registry asks for upload chunks of at least {} bytes \
                     (OCI-Chunk-Min-Length), more than the {MAX_UPLOAD_CHUNK_SIZE} bundle holds in memory",
                    self.min_chunk
                ),
            });
        }
        let what = format!("uploading bytes {start}-{end} of a blob to {}", self.repo);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        headers.insert(
            CONTENT_RANGE,
            header_value(&format!("{start}-{end}"), &self.location)?,
        );
        let body = self.buf.split().freeze();
        let answer = self
            .session
            .send_small(
                Method::PATCH,
                &self.location,
                &self.scope,
                headers,
                Some(body),
                &what,
            )
            .await?;
        self.after_patch(&answer, &what, end)?;
        self.buf.reserve(self.chunk);
        Ok(())
    }

    /// Sends the next `len` bytes as one `PATCH` whose body streams from
    /// `body`, so nothing is buffered whatever `len` is. Only on an upload
    /// with nothing buffered. Not retried (a stream cannot be replayed): a
    /// failure fails the upload. The chunk is at least `OCI-Chunk-Min-Length`
    /// unless it is the last one.
    pub async fn write_stream<S>(&mut self, len: u64, body: S) -> Result<(), RegistryError>
    where
        S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        if !self.buf.is_empty() || len == 0 {
            return Err(RegistryError::InvalidResponse {
                url: without_query(&self.location).to_string(),
                reason: "a streamed chunk must follow whole chunks and not be empty".to_owned(),
            });
        }
        let start = self.sent;
        let end = start + len - 1;
        let what = format!("uploading bytes {start}-{end} of a blob to {}", self.repo);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        headers.insert(
            CONTENT_RANGE,
            header_value(&format!("{start}-{end}"), &self.location)?,
        );
        let answer = self
            .session
            .patch_streamed(
                &self.location,
                &self.scope,
                headers,
                reqwest::Body::wrap_stream(body),
                len,
                &what,
            )
            .await?;
        self.after_patch(&answer, &what, end)
    }

    /// Checks a `PATCH` answer (201 or 202, `Range` up to `end`) and follows its `Location`.
    fn after_patch(&mut self, answer: &Small, what: &str, end: u64) -> Result<(), RegistryError> {
        if !matches!(answer.status, 201 | 202) {
            return Err(answer.refused(what, "PATCH", &self.location));
        }
        let stored = header_strs(&answer.headers, RANGE)
            .next()
            .and_then(parse_range)
            .filter(|&(first, _)| first == 0)
            .map(|(_, last)| last.saturating_add(1));
        if let Some(stored) = stored.filter(|&n| n != end + 1) {
            return Err(RegistryError::SizeMismatch {
                what: format!("{what} (Range of the registry's answer)"),
                expected: end + 1,
                found: stored,
                more: false,
            });
        }
        if answer.status == 202 || header(answer, LOCATION.as_str()).is_some() {
            self.location = next_location(answer, &self.session.base)?;
        }
        self.sent = end + 1;
        self.patches += 1;
        Ok(())
    }

    /// The closing `PUT`, with the rest of the bytes.
    async fn complete(&mut self, digest: &Digest, what: &str) -> Result<(), RegistryError> {
        let mut url = self.location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        let body = self.buf.split().freeze();
        let len = body.len() as u64;
        let answer = self
            .session
            .send_small(Method::PUT, &url, &self.scope, headers, Some(body), what)
            .await?;
        if answer.status != 201 {
            return Err(answer.refused(what, "PUT", &url));
        }
        self.sent += len;
        check_announced(&answer, &url, what, digest)
    }

    /// `DELETE <location>`, errors only logged.
    async fn delete(&self) {
        let location = without_query(&self.location);
        let answer = self
            .session
            .send_small(
                Method::DELETE,
                &self.location,
                &self.scope,
                HeaderMap::new(),
                None,
                "cancelling an upload",
            )
            .await;
        match answer {
            Ok(a) if a.is_success() => {
                tracing::debug!(repo = self.repo, %location, "upload cancelled");
            }
            Ok(a) => {
                tracing::debug!(repo = self.repo, %location, status = a.status, "upload not cancelled");
            }
            Err(e) => {
                tracing::debug!(repo = self.repo, %location, error = %e, "cancelling the upload failed");
            }
        }
    }
}

/// The first value of header `name` (lowercase) of an answer.
fn header<'a>(answer: &'a Small, name: &str) -> Option<&'a str> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    header_strs(&answer.headers, name).next()
}

fn header_value(value: &str, url: &Url) -> Result<HeaderValue, RegistryError> {
    HeaderValue::from_str(value).map_err(|_| RegistryError::InvalidResponse {
        url: without_query(url).to_string(),
        reason: format!("cannot send {value:?} as a header"),
    })
}

/// The `Location` of an upload answer, resolved; an `InvalidResponse` if it is missing or unusable.
fn next_location(answer: &Small, base: &Url) -> Result<Url, RegistryError> {
    resolve_location(header(answer, LOCATION.as_str()), &answer.url, base).map_err(|reason| {
        RegistryError::InvalidResponse {
            url: without_query(&answer.url).to_string(),
            reason,
        }
    })
}

/// Resolves a `Location` against the URL that answered with it, keeping its
/// query; refuses one that is missing, not http(s), or leaves https for http.
fn resolve_location(value: Option<&str>, answered: &Url, base: &Url) -> Result<Url, String> {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or("the upload session has no Location header")?;
    let url = answered
        .join(value)
        .map_err(|_| "the Location header is not a URL".to_owned())?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if base.scheme() == "http" => Ok(url),
        "http" => Err("the upload Location leaves https for plain http".to_owned()),
        _ => Err("the upload Location is not an http(s) URL".to_owned()),
    }
}

/// `OCI-Chunk-Min-Length`, if present and a number.
fn chunk_min_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CHUNK_MIN_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Range: <first>-<last>` of an upload answer (a `bytes=` prefix is tolerated).
fn parse_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (first, last) = value.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// A `Docker-Content-Digest` value: `Ok(None)` when absent or in another
/// algorithm (which cannot be checked), an error when a sha256 one is malformed.
fn announced_digest(value: Option<&str>) -> Result<Option<Digest>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<Digest>() {
            Ok(d) => Ok(Some(d)),
            Err(DigestParseError::Algorithm(_)) => Ok(None),
            Err(DigestParseError::Hex(_)) => {
                Err("malformed sha256 Docker-Content-Digest header".to_owned())
            }
        },
    }
}

/// Checks the `Docker-Content-Digest` of an answer to a push against the digest sent.
fn check_announced(
    answer: &Small,
    url: &Url,
    what: &str,
    sent: &Digest,
) -> Result<(), RegistryError> {
    let announced = announced_digest(header(answer, CONTENT_DIGEST)).map_err(|reason| {
        RegistryError::InvalidResponse {
            url: without_query(url).to_string(),
            reason,
        }
    })?;
    match announced {
        Some(found) if found != *sent => Err(RegistryError::DigestMismatch {
            what: format!("{what} (Docker-Content-Digest)"),
            expected: *sent,
            found,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn upload_is_send_and_static() {
        fn check<T: Send + 'static>() {}
        check::<Upload>();
        check::<MountOutcome>();
    }

    #[test]
    fn locations() {
        let answered = url("https://r.example/v2/a/blobs/uploads/");
        let base = url("https://r.example/");
        let r = |v| resolve_location(v, &answered, &base);
        assert_eq!(
            r(Some("/v2/a/blobs/uploads/u1?_state=xyz")).expect("absolute path"),
            url("https://r.example/v2/a/blobs/uploads/u1?_state=xyz")
        );
        assert_eq!(
            r(Some("u2")).expect("relative"),
            url("https://r.example/v2/a/blobs/uploads/u2")
        );
        assert_eq!(
            r(Some("https://storage.example/up?sig=1")).expect("other origin"),
            url("https://storage.example/up?sig=1")
        );
        assert!(r(None).is_err());
        assert!(r(Some("  ")).is_err());
        assert!(r(Some("http://r.example/v2/a/blobs/uploads/u")).is_err());
        assert!(r(Some("ftp://r.example/u")).is_err());
        let plain = url("http://r.example/");
        assert!(resolve_location(Some("http://other/u"), &plain, &plain).is_ok());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-1048575"), Some((0, 1048575)));
        assert_eq!(parse_range("bytes=0-9"), Some((0, 9)));
        assert_eq!(parse_range(" 0 - 0 "), Some((0, 0)));
        assert_eq!(parse_range("0-"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn chunk_min_lengths() {
        let mut h = HeaderMap::new();
        assert_eq!(chunk_min_length(&h), None);
        h.insert(CHUNK_MIN_LENGTH, HeaderValue::from_static(" 3000000"));
        assert_eq!(chunk_min_length(&h), Some(3_000_000));
        h.insert(CHUNK_MIN_LENGTH, HeaderValue::from_static("lots"));
        assert_eq!(chunk_min_length(&h), None);
    }

    #[test]
    fn announced_digests() {
        let d = Digest::of(b"x");
        assert_eq!(announced_digest(None), Ok(None));
        assert_eq!(announced_digest(Some("")), Ok(None));
        assert_eq!(announced_digest(Some(&d.to_string())), Ok(Some(d)));
        assert_eq!(announced_digest(Some("sha512:abcd")), Ok(None));
        assert!(announced_digest(Some("sha256:abcd")).is_err());
    }
}
