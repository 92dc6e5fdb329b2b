//! One connection to one registry: authorization, token flow, retries, bodies.
//!
//! Every request goes through [`Session::send`] (or [`Session::get`]), which
//! adds the right `Authorization`, answers one `401` challenge, and retries
//! transient failures (429, 5xx, resets, timeouts) with backoff; a request body
//! is [`Bytes`], so it can be sent again as is. Credentials go only to the
//! registry's own origin and to the token service it names: an upload
//! `Location` on another origin is sent nothing, reqwest drops `Authorization`
//! when a redirect leaves the host (blob CDNs), and the redirect policy here
//! never adds anything back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderValue, RANGE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, Url};

use super::RegistryError;
use super::auth::Credentials;
use super::challenge::{BearerChallenge, Challenge, parse_challenge, parse_token_response};
use super::error::{host_port, is_retryable_status, parse_error_envelope, transport_error};

/// Attempts per request (the first one included) before a transient failure is returned.
const MAX_ATTEMPTS: u32 = 4;
/// First backoff; doubled on each retry.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Largest token response read.
const TOKEN_LIMIT: u64 = 1 << 20;
/// Largest error body read (for its envelope).
const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// A token is dropped this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// What a request needs access to, as a token scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Nothing in particular (the `/v2/` ping, a login check).
    Registry,
    /// `registry:catalog:*`.
    Catalog,
    /// `repository:<repo>:pull`.
    Pull(String),
    /// `repository:<repo>:pull,push`.
    Push(String),
    /// A cross-repository mount: `repository:<repo>:pull,push` and
    /// `repository:<from>:pull`, in one token.
    Mount {
        /// The repository pushed to.
        repo: String,
        /// The repository the blob is mounted from.
        from: String,
    },
}

impl Scope {
    /// The token scopes to ask for, each sent as its own `scope=` parameter.
    fn token_scopes(&self) -> Vec<String> {
        let push = |repo: &str| format!("repository:{repo}:pull,push");
        match self {
            Scope::Registry => Vec::new(),
            Scope::Catalog => vec!["registry:catalog:*".to_owned()],
            Scope::Pull(repo) => vec![format!("repository:{repo}:pull")],
            Scope::Push(repo) => vec![push(repo)],
            Scope::Mount { repo, from } if repo == from => vec![push(repo)],
            Scope::Mount { repo, from } => vec![push(repo), format!("repository:{from}:pull")],
        }
    }

    /// Every token scope, space-joined (the token cache key, and what messages
    /// show); `None` when nothing in particular is asked for.
    fn as_token_scope(&self) -> Option<String> {
        let scopes = self.token_scopes();
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }
}

/// A response whose (small) body has been read.
pub(crate) struct Small {
    /// The URL that answered (after redirects): what a relative `Location` is resolved against.
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Small {
    /// Status, headers and the (small) body of an answer; no body for
    /// `no_body` (a `HEAD`) or a `416` (which distribution announces but
    /// never sends).
    async fn read(resp: Response, no_body: bool, what: &str) -> Result<Small, RegistryError> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let url = resp.url().clone();
        let body = if no_body || status == 416 {
            Bytes::new()
        } else {
            read_capped(resp, ERROR_BODY_LIMIT, what).await?
        };
        Ok(Small {
            url,
            status,
            headers,
            body,
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this (unsuccessful) response means.
    pub fn error(&self, method: &'static str, url: &Url) -> RegistryError {
        RegistryError::Http {
            method,
            url: url.to_string(),
            status: self.status,
            errors: parse_error_envelope(&self.body),
        }
    }

    /// The error this (unsuccessful) answer to step `what` of a push means.
    ///
    /// The URL is shown without its query: upload locations carry opaque
    /// session state (and on some registries signatures) there.
    pub fn refused(&self, what: &str, method: &'static str, url: &Url) -> RegistryError {
        RegistryError::Refused {
            what: what.to_owned(),
            method,
            url: without_query(url).to_string(),
            status: self.status,
            errors: parse_error_envelope(&self.body),
        }
    }
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Token per scope string ("" for no scope), with the instant it stops being used.
    tokens: HashMap<String, (String, Instant)>,
    /// One gate per scope: concurrent requests that need the same new token
    /// (parallel downloads from one repository) ask the token service once.
    gates: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// One registry: its base URL, HTTP client, credentials and cached tokens.
pub(crate) struct Session {
    http: reqwest::Client,
    /// `scheme://host[:port]/`.
    pub base: Url,
    /// `host[:port]` as the user gave it.
    pub host: String,
    credentials: Credentials,
    state: Mutex<AuthState>,
}

impl Session {
    pub fn new(http: reqwest::Client, base: Url, host: String, credentials: Credentials) -> Self {
        Session {
            http,
            base,
            host,
            credentials,
            state: Mutex::new(AuthState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, AuthState> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unauthorized(&self, scope: &Scope) -> RegistryError {
        RegistryError::Unauthorized {
            host: self.host.clone(),
            scope: scope.as_token_scope(),
        }
    }

    /// What a final `401` means: credentials refused, or (`insufficient_scope`)
    /// accepted but not allowed `scope`.
    fn refusal(&self, scope: &Scope, headers: &HeaderMap) -> RegistryError {
        match parse_challenge(header_strs(headers, WWW_AUTHENTICATE)) {
            Some(Challenge::Bearer(c))
                if c.error.as_deref() == Some("insufficient_scope")
                    && !matches!(self.credentials, Credentials::Anonymous) =>
            {
                RegistryError::NotGranted {
                    host: self.host.clone(),
                    scope: scope.as_token_scope().unwrap_or_default(),
                }
            }
            _ => self.unauthorized(scope),
        }
    }

    /// `GET /v2/`: checks this is a registry and learns how it wants to be authenticated.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.base.join("v2/").map_err(|_| self.bad_base())?;
        let static_auth = match &self.credentials {
            Credentials::Bearer(t) => Some(bearer(t)?),
            _ => None,
        };
        let first = self.get_raw_small(&url, static_auth.clone()).await?;
        if first.is_success() {
            return Ok(());
        }
        if first.status != 401 {
            return Err(first.error("GET", &url));
        }
        if static_auth.is_some() {
            return Err(self.unauthorized(&Scope::Registry));
        }
        match parse_challenge(header_strs(&first.headers, WWW_AUTHENTICATE)) {
            Some(Challenge::Bearer(c)) => {
                self.state().challenge = Some(Challenge::Bearer(c.clone()));
                if !matches!(self.credentials, Credentials::Anonymous) {
                    // Like `docker login`: a token without scope proves the credentials.
                    self.fetch_token(&c, &Scope::Registry, None).await?;
                }
                Ok(())
            }
            Some(Challenge::Basic) => {
                self.state().challenge = Some(Challenge::Basic);
                let Some(basic) = self.basic_header() else {
                    return Err(self.unauthorized(&Scope::Registry));
                };
                let second = self.get_raw_small(&url, Some(basic)).await?;
                match second.status {
                    s if (200..300).contains(&s) => Ok(()),
                    401 => Err(self.unauthorized(&Scope::Registry)),
                    _ => Err(second.error("GET", &url)),
                }
            }
            None => Err(self.unauthorized(&Scope::Registry)),
        }
    }

    fn bad_base(&self) -> RegistryError {
        RegistryError::InvalidHost {
            host: self.host.clone(),
            reason: "cannot form API URLs from it".to_owned(),
        }
    }

    /// An authorized GET with retries; `range_from` asks for `bytes=N-`.
    /// Returns any response but a `401` it could not get past.
    pub async fn get(
        &self,
        url: &Url,
        scope: &Scope,
        accept: Option<&str>,
        range_from: Option<u64>,
    ) -> Result<Response, RegistryError> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            let v = HeaderValue::from_str(accept).map_err(|_| RegistryError::InvalidResponse {
                url: url.to_string(),
                reason: "unusable Accept header".to_owned(),
            })?;
            headers.insert(ACCEPT, v);
        }
        if let Some(from) = range_from.filter(|&n| n > 0) {
            let v =
                HeaderValue::from_str(&format!("bytes={from}-")).map_err(|_| self.bad_base())?;
            headers.insert(RANGE, v);
        }
        self.send(Method::GET, url, scope, headers, None).await
    }

    /// An authorized request with retries, of any method, with an optional
    /// body that is sent again as is on a retry or after a `401` challenge.
    ///
    /// `Authorization` is added only when `url` is on the registry's own
    /// origin (scheme, host and port); elsewhere (an upload `Location` on
    /// storage) the request goes without credentials and a `401` is not
    /// answered. Returns any response but a `401` it could not get past.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        scope: &Scope,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, RegistryError> {
        let own = url.origin() == self.base.origin();
        let mut headers = headers;
        if let Some(b) = &body {
            // Stated even for an empty body, which hyper would leave unsaid
            // (and some front ends answer a bodiless POST or PUT with 411).
            headers.insert(CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        let mut challenged = false;
        loop {
            let mut h = headers.clone();
            if own && let Some(auth) = self.authorization(scope).await? {
                h.insert(AUTHORIZATION, auth);
            }
            let resp = self
                .send_retrying(url, || {
                    let rb = self
                        .http
                        .request(method.clone(), url.clone())
                        .headers(h.clone());
                    match &body {
                        Some(b) => rb.body(b.clone()),
                        None => rb,
                    }
                })
                .await?;
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            if own && !challenged && self.answer_challenge(resp.headers(), scope).await? {
                challenged = true;
                continue;
            }
            return Err(if own {
                self.refusal(scope, resp.headers())
            } else {
                RegistryError::Unauthorized {
                    host: host_port(url),
                    scope: None,
                }
            });
        }
    }

    /// One `PATCH` whose body streams from `body` (`len` bytes): a streamed
    /// body cannot be replayed, so there is no retry and a `401` is an error
    /// (the caller has used `scope` just before, so its token is fresh). The
    /// answer's (small) body is read.
    pub async fn patch_streamed(
        &self,
        url: &Url,
        scope: &Scope,
        mut headers: HeaderMap,
        body: reqwest::Body,
        len: u64,
        what: &str,
    ) -> Result<Small, RegistryError> {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        if url.origin() == self.base.origin()
            && let Some(auth) = self.authorization(scope).await?
        {
            headers.insert(AUTHORIZATION, auth);
        }
        let resp = self
            .http
            .request(Method::PATCH, url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        if resp.status().as_u16() == 401 {
            return Err(self.refusal(scope, resp.headers()));
        }
        Small::read(resp, false, what).await
    }

    /// [`Session::send`], then reads the body (up to the error-body limit: the
    /// answers to pushes carry no content). The bodies of `HEAD` answers and of
    /// `416` (which distribution announces but never sends) are not read.
    pub async fn send_small(
        &self,
        method: Method,
        url: &Url,
        scope: &Scope,
        headers: HeaderMap,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<Small, RegistryError> {
        let head = method == Method::HEAD;
        let resp = self.send(method, url, scope, headers, body).await?;
        Small::read(resp, head, what).await
    }

    /// [`Session::get`], then reads the body (up to `limit` bytes), retrying broken bodies.
    pub async fn get_small(
        &self,
        url: &Url,
        scope: &Scope,
        accept: Option<&str>,
        limit: u64,
        what: &str,
    ) -> Result<Small, RegistryError> {
        let mut attempt = 1;
        loop {
            let resp = self.get(url, scope, accept, None).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let answered = resp.url().clone();
            let limit = if (200..300).contains(&status) {
                limit
            } else {
                ERROR_BODY_LIMIT
            };
            match read_capped(resp, limit, what).await {
                Ok(body) => {
                    return Ok(Small {
                        url: answered,
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(%url, attempt, "body broke off, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A GET with no auth handling (ping) whose body is read.
    async fn get_raw_small(
        &self,
        url: &Url,
        auth: Option<HeaderValue>,
    ) -> Result<Small, RegistryError> {
        let resp = self
            .send_retrying(url, || {
                let rb = self.http.get(url.clone());
                match &auth {
                    Some(a) => rb.header(AUTHORIZATION, a.clone()),
                    None => rb,
                }
            })
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let answered = resp.url().clone();
        let body = read_capped(resp, ERROR_BODY_LIMIT, "registry ping").await?;
        Ok(Small {
            url: answered,
            status,
            headers,
            body,
        })
    }

    /// Sends the request `make` builds, retrying transient failures with backoff
    /// (honouring `Retry-After`). The last response is returned whatever its status.
    async fn send_retrying(
        &self,
        url: &Url,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        loop {
            match make().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !is_retryable_status(status) || attempt >= MAX_ATTEMPTS {
                        return Ok(resp);
                    }
                    let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                    tracing::debug!(%url, status, attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let err = transport_error(url, e);
                    if !err.is_retryable() || attempt >= MAX_ATTEMPTS {
                        return Err(err);
                    }
                    tracing::debug!(%url, attempt, "request failed, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
            attempt += 1;
        }
    }

    /// The `Authorization` to send for `scope`, fetching a token if the registry wants one.
    async fn authorization(&self, scope: &Scope) -> Result<Option<HeaderValue>, RegistryError> {
        if let Credentials::Bearer(t) = &self.credentials {
            return Ok(Some(bearer(t)?));
        }
        let challenge = self.state().challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic_header()),
            Some(Challenge::Bearer(c)) => {
                let key = scope.as_token_scope().unwrap_or_default();
                if let Some(t) = self.cached_token(&key) {
                    return Ok(Some(bearer(&t)?));
                }
                let gate = self.state().gates.entry(key.clone()).or_default().clone();
                let _one_at_a_time = gate.lock().await;
                // Whoever held the gate before may have fetched it meanwhile.
                let token = match self.cached_token(&key) {
                    Some(t) => t,
                    None => self.fetch_token(&c, scope, None).await?,
                };
                Ok(Some(bearer(&token)?))
            }
        }
    }

    /// The token cached for scope `key`, while it is still good.
    fn cached_token(&self, key: &str) -> Option<String> {
        self.state()
            .tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Reacts to a `401`: learns the challenge and gets what it asks for.
    /// `Ok(true)` when the request is worth sending once more.
    async fn answer_challenge(
        &self,
        headers: &HeaderMap,
        scope: &Scope,
    ) -> Result<bool, RegistryError> {
        if matches!(self.credentials, Credentials::Bearer(_)) {
            return Ok(false);
        }
        match parse_challenge(header_strs(headers, WWW_AUTHENTICATE)) {
            Some(Challenge::Bearer(c)) => {
                {
                    let mut state = self.state();
                    state.challenge = Some(Challenge::Bearer(c.clone()));
                    state
                        .tokens
                        .remove(&scope.as_token_scope().unwrap_or_default());
                }
                self.fetch_token(&c, scope, c.scope.as_deref()).await?;
                Ok(true)
            }
            Some(Challenge::Basic) => {
                let previous = self.state().challenge.replace(Challenge::Basic);
                Ok(self.basic_header().is_some() && previous != Some(Challenge::Basic))
            }
            None => Ok(false),
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        match &self.credentials {
            Credentials::Basic { username, password } => {
                use base64::Engine as _;
                let raw = format!("{username}:{password}");
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        }
    }

    /// Gets a token from the challenge's realm for `scope` (plus `extra`
    /// scopes the registry named), caches it and returns it.
    async fn fetch_token(
        &self,
        challenge: &BearerChallenge,
        scope: &Scope,
        extra: Option<&str>,
    ) -> Result<String, RegistryError> {
        let realm_error = |reason: &str| RegistryError::InvalidRealm {
            host: self.host.clone(),
            reason: reason.to_owned(),
        };
        let realm = Url::parse(&challenge.realm).map_err(|_| realm_error("not a URL"))?;
        match realm.scheme() {
            "https" => {}
            // Plain http only when the registry itself was reached over plain http.
            "http" if self.base.scheme() == "http" => {}
            _ => return Err(realm_error("not an https:// URL")),
        }
        let mut scopes = scope.token_scopes();
        for s in extra.unwrap_or("").split_ascii_whitespace() {
            if !scopes.iter().any(|have| have == s) {
                scopes.push(s.to_owned());
            }
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        let joined = scopes.join(" ");
        // The OAuth2 POST: `grant` pairs, then client id, service and scope.
        let oauth_post = |grant: &[(&str, &str)]| {
            let mut form = grant.to_vec();
            form.push(("client_id", "bundle"));
            form.extend(query.iter().copied());
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            self.http.post(realm.clone()).form(&form)
        };
        let resp = self
            .send_retrying(&realm, || match &self.credentials {
                Credentials::IdentityToken { token, .. } => oauth_post(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ]),
                creds => {
                    let mut q = query.clone();
                    q.extend(scopes.iter().map(|s| ("scope", s.as_str())));
                    let rb = self.http.get(realm.clone()).query(&q);
                    match creds {
                        Credentials::Basic { username, password } => {
                            rb.basic_auth(username, Some(password))
                        }
                        _ => rb,
                    }
                }
            })
            .await?;
        let mut post_grant = matches!(self.credentials, Credentials::IdentityToken { .. });
        let resp = match (&self.credentials, resp.status().as_u16()) {
            // A token service that takes only the OAuth2 POST (docker's other
            // flow): the password grant, as `docker login` sends it.
            (Credentials::Basic { username, password }, 404 | 405) => {
                post_grant = true;
                self.send_retrying(&realm, || {
                    oauth_post(&[
                        ("grant_type", "password"),
                        ("username", username.as_str()),
                        ("password", password.as_str()),
                    ])
                })
                .await?
            }
            _ => resp,
        };
        let status = resp.status().as_u16();
        let body = read_capped(resp, TOKEN_LIMIT, "token response").await?;
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                host: host_port(&realm),
                scope: scope.as_token_scope(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Http {
                method: if post_grant { "POST" } else { "GET" },
                url: realm.to_string(),
                status,
                errors: parse_error_envelope(&body),
            });
        }
        let token =
            parse_token_response(&body).map_err(|reason| RegistryError::InvalidResponse {
                url: realm.to_string(),
                reason,
            })?;
        let until = Instant::now() + token.expires_in.saturating_sub(TOKEN_MARGIN);
        self.state().tokens.insert(
            scope.as_token_scope().unwrap_or_default(),
            (token.token.clone(), until),
        );
        Ok(token.token)
    }
}

/// Reads a body, refusing more than `limit` bytes (whatever `Content-Length` says).
pub(crate) async fn read_capped(
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let url = resp.url().clone();
    let mut buf = BytesMut::new();
    let mut pace = super::pace::Pace::new();
    while let Some(chunk) = pace
        .timed(&url, resp.chunk(), |c| {
            c.as_ref().map_or(0, |c| c.as_ref().map_or(0, Bytes::len))
        })
        .await?
        .map_err(|e| transport_error(&url, e))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `Authorization: Bearer <token>`, marked sensitive.
fn bearer(token: &str) -> Result<HeaderValue, RegistryError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        RegistryError::InvalidCredentials {
            reason: "the bearer token holds characters not allowed in an HTTP header".to_owned(),
        }
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// All values of a header that are valid strings.
pub(crate) fn header_strs(
    headers: &HeaderMap,
    name: reqwest::header::HeaderName,
) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// `url` without its query, for messages and logs.
pub(crate) fn without_query(url: &Url) -> Url {
    let mut shown = url.clone();
    shown.set_query(None);
    shown
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured), capped.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Backoff before retry number `attempt` (1-based): 250 ms, 500 ms, 1 s, …,
/// each scaled by a random factor in [0.5, 1.5) so that many clients failing
/// together do not retry in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = BASE_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    base.mul_f64(0.5 + jitter())
}

/// A number in [0, 1) that differs from call to call (std's randomly keyed
/// hasher over a counter: no need for a random-number crate to spread retries).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_only() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("100000"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let ms = |a| backoff(a).as_millis();
        for _ in 0..100 {
            assert!((125..375).contains(&ms(1)), "{}", ms(1));
            assert!((250..750).contains(&ms(2)), "{}", ms(2));
            assert!((500..1500).contains(&ms(3)), "{}", ms(3));
            assert!(ms(100) < 24_000);
        }
        let spread: std::collections::BTreeSet<u128> = (0..50).map(|_| ms(3)).collect();
        assert!(spread.len() > 10, "retries are spread: {spread:?}");
    }

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::Catalog.as_token_scope().as_deref(),
            Some("registry:catalog:*")
        );
        assert_eq!(
            Scope::Pull("a/b".into()).as_token_scope().as_deref(),
            Some("repository:a/b:pull")
        );
        assert_eq!(Scope::Registry.as_token_scope(), None);
        assert_eq!(
            Scope::Push("a/b".into()).token_scopes(),
            vec!["repository:a/b:pull,push"]
        );
        let mount = Scope::Mount {
            repo: "b/y".into(),
            from: "a/x".into(),
        };
        assert_eq!(
            mount.token_scopes(),
            vec!["repository:b/y:pull,push", "repository:a/x:pull"]
        );
        assert_eq!(
            mount.as_token_scope().as_deref(),
            Some("repository:b/y:pull,push repository:a/x:pull")
        );
        let same = Scope::Mount {
            repo: "a".into(),
            from: "a".into(),
        };
        assert_eq!(same.token_scopes(), vec!["repository:a:pull,push"]);
    }
}
