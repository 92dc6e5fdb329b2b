//! A Docker token server on loopback that issues real signed JWTs, for a
//! [`TestRegistry`](super::TestRegistry) started with `auth: token`.
//!
//! It speaks the token protocol of the distribution spec: `GET /token?service=
//! &scope=…&account=…` with optional HTTP Basic credentials, and the OAuth2
//! `POST /token` form (`grant_type=password` or `grant_type=refresh_token`).
//! What each user may do is a [`User`] policy set by the test; a scope the
//! user may not have is left out of the token's `access` (as real token
//! servers do: the registry then answers `401 insufficient_scope`), and an
//! unknown user, a wrong password or an unknown refresh token is a `401`.
//!
//! Tokens are ES256 JWTs ([`super::jwt`]) whose header carries the signing
//! certificate in `x5c`; the key and the self-signed certificate are made
//! with `openssl` at start-up, and the certificate is the registry's
//! `rootcertbundle`. Every request is logged ([`TokenServer::requests`]) so
//! tests can count them.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::http::{Framing, Head, percent_decode, read_body};
use super::jwt::Signer;
pub use super::jwt::{Access, ISSUER, SERVICE};
use super::temp_dir;

/// The user every [`TokenServer`] has, allowed everything (to seed registries).
pub const ADMIN: &str = "admin";

/// When a user's tokens are issued already expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Every token is valid for `expires_in`.
    #[default]
    Never,
    /// The first token issued for each distinct scope set is expired, later ones are valid.
    FirstPerScope,
    /// Every token is expired.
    Always,
}

/// One user of the token server and what it may do.
#[derive(Debug, Clone)]
pub struct User {
    name: String,
    password: String,
    grants: Vec<(String, Vec<String>)>,
    catalog: bool,
    expiry: Expiry,
}

impl User {
    /// A user with a password and no rights yet.
    pub fn new(name: &str, password: &str) -> Self {
        User {
            name: name.to_owned(),
            password: password.to_owned(),
            grants: Vec::new(),
            catalog: false,
            expiry: Expiry::Never,
        }
    }

    /// Allows `actions` (`pull`, `push`, `delete`, or `*` for any) on the
    /// repositories matching `pattern` (`*` matches any run of characters, `/` included).
    pub fn allow(mut self, pattern: &str, actions: &[&str]) -> Self {
        let actions = actions.iter().map(|a| (*a).to_owned()).collect();
        self.grants.push((pattern.to_owned(), actions));
        self
    }

    /// Allows `registry:catalog:*`.
    pub fn catalog(mut self) -> Self {
        self.catalog = true;
        self
    }

    /// Issues this user's tokens already expired, as `expiry` says.
    pub fn expired_tokens(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// `name:password`, as `--creds` takes it.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.name, self.password)
    }
}

/// How a token request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `GET` without credentials.
    Anonymous,
    /// `GET` with HTTP Basic credentials.
    Basic,
    /// `POST` with `grant_type=password`.
    Password,
    /// `POST` with `grant_type=refresh_token`.
    RefreshToken,
    /// Anything else (refused with 400).
    Other,
}

/// One request the token server received, and what it answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// How it authenticated.
    pub grant: Grant,
    /// The user it authenticated as (`None` for anonymous or refused).
    pub user: Option<String>,
    /// The scopes asked for, in order.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The `account` parameter (docker sends the user name).
    pub account: Option<String>,
    /// The `client_id` parameter (OAuth2 form).
    pub client_id: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Whether the token issued (if any) was already expired.
    pub expired: bool,
    /// The token issued, if any (tests check it never leaks into output).
    pub token: Option<String>,
}

impl TokenRequest {
    /// The scopes sorted and space-joined: what "the same scope" means for counting.
    pub fn scope_key(&self) -> String {
        let mut scopes = self.scopes.clone();
        scopes.sort();
        scopes.join(" ")
    }
}

/// Signs tokens for one token server; shared with the registries that trust
/// it, which mint tokens for `curl` with it.
#[derive(Clone)]
pub struct Issuer {
    signer: Arc<Signer>,
    realm: String,
    admin_password: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The signing certificate (PEM): the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &Path {
        self.signer.cert_pem()
    }

    /// The admin user's `(name, password)`.
    pub fn admin(&self) -> (&str, &str) {
        (ADMIN, &self.admin_password)
    }

    /// A signed token for `subject` granting `access`, valid for `valid_for`
    /// or, when `expired`, with `exp` beyond the registry's leeway in the past.
    pub fn mint(
        &self,
        subject: &str,
        access: &[Access],
        valid_for: Duration,
        expired: bool,
    ) -> String {
        self.signer.mint(subject, access, valid_for, expired)
    }
}

/// Options for a [`TokenServer`]; start it with [`TokenServerBuilder::start`].
#[derive(Debug, Clone)]
pub struct TokenServerBuilder {
    users: Vec<User>,
    anonymous: Vec<(String, Vec<String>)>,
    refresh_tokens: Vec<(String, String)>,
    expires_in: u64,
}

impl TokenServerBuilder {
    /// Adds a user.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Lets requests without credentials pull the repositories matching `pattern`.
    pub fn anonymous_pull(mut self, pattern: &str) -> Self {
        self.anonymous
            .push((pattern.to_owned(), vec!["pull".to_owned()]));
        self
    }

    /// Accepts `token` as an OAuth2 refresh token (an auth.json `identitytoken`) of `user`.
    pub fn refresh_token(mut self, token: &str, user: &str) -> Self {
        self.refresh_tokens
            .push((token.to_owned(), user.to_owned()));
        self
    }

    /// The `expires_in` of every answer (default 300 s).
    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = seconds;
        self
    }

    /// Makes the key and certificate and starts serving on `127.0.0.1:0`.
    pub fn start(self) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the token server");
        let port = listener.local_addr().expect("token server address").port();
        let dir = temp_dir();
        let admin_password = format!("admin-{:016x}", rand::random::<u64>());
        let issuer = Issuer {
            signer: Arc::new(Signer::generate(dir.path())),
            realm: format!("http://127.0.0.1:{port}/token"),
            admin_password: admin_password.clone(),
        };
        let mut users: BTreeMap<String, User> = BTreeMap::new();
        users.insert(
            ADMIN.to_owned(),
            User::new(ADMIN, &admin_password)
                .allow("*", &["*"])
                .catalog(),
        );
        for user in self.users {
            assert!(user.name != ADMIN, "the {ADMIN} user is built in");
            users.insert(user.name.clone(), user);
        }
        let state = Arc::new(State {
            issuer: issuer.clone(),
            users,
            anonymous: self.anonymous,
            expires_in: self.expires_in,
            refresh_tokens: Mutex::new(self.refresh_tokens.into_iter().collect()),
            issued: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (Arc::clone(&state), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&state2);
                std::thread::spawn(move || {
                    // A client hanging up mid-request is not the server's failure.
                    let _ = serve_connection(stream, &state);
                });
            }
        });
        TokenServer {
            port,
            state,
            stop,
            accept: Some(accept),
            _dir: dir,
        }
    }
}

/// The running token server; stops accepting on drop.
pub struct TokenServer {
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

struct State {
    issuer: Issuer,
    users: BTreeMap<String, User>,
    anonymous: Vec<(String, Vec<String>)>,
    expires_in: u64,
    /// Refresh token → user.
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    /// Tokens issued so far per (user, scope key), for [`Expiry::FirstPerScope`].
    issued: Mutex<BTreeMap<(String, String), usize>>,
    log: Mutex<Vec<TokenRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TokenServer {
    /// A server with only the admin user; add users with the builder.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            users: Vec::new(),
            anonymous: Vec::new(),
            refresh_tokens: Vec::new(),
            expires_in: 300,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        self.state.issuer.realm().to_owned()
    }

    /// What signs the tokens (for [`RegistryBuilder::token_auth`](super::registry::RegistryBuilder::token_auth)).
    pub fn issuer(&self) -> Issuer {
        self.state.issuer.clone()
    }

    /// The admin user's `(name, password)`: allowed every scope.
    pub fn admin(&self) -> (String, String) {
        let (user, password) = self.state.issuer.admin();
        (user.to_owned(), password.to_owned())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.log).clone()
    }

    /// Forgets the requests seen so far (and which scopes got their first token).
    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
        lock(&self.state.issued).clear();
    }

    /// Successful requests per [`TokenRequest::scope_key`] (`""` for none).
    pub fn counts_by_scope(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.requests().iter().filter(|r| r.status == 200) {
            *counts.entry(r.scope_key()).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

/// What `grants` allow of `requested` actions (`*` granted means any).
fn allowed(grants: &[(String, Vec<String>)], repo: &str, requested: &[String]) -> Vec<String> {
    let held: Vec<&String> = grants
        .iter()
        .filter(|(pattern, _)| glob_matches(pattern, repo))
        .flat_map(|(_, actions)| actions)
        .collect();
    requested
        .iter()
        .filter(|want| held.iter().any(|h| *h == "*" || h == want))
        .cloned()
        .collect()
}

impl State {
    /// The access `user` (or anonymous) gets of `scopes`: only what it may have.
    fn access(&self, user: Option<&User>, scopes: &[String]) -> Vec<Access> {
        let mut out: Vec<Access> = Vec::new();
        for scope in scopes {
            let Some((rest, actions)) = scope.rsplit_once(':') else {
                continue;
            };
            let Some((kind, name)) = rest.split_once(':') else {
                continue;
            };
            let requested: Vec<String> = actions.split(',').map(str::to_owned).collect();
            let granted = match (kind, name, user) {
                ("registry", "catalog", Some(u)) if u.catalog => vec!["*".to_owned()],
                ("repository", repo, Some(u)) => allowed(&u.grants, repo, &requested),
                ("repository", repo, None) => allowed(&self.anonymous, repo, &requested),
                _ => Vec::new(),
            };
            if granted.is_empty() {
                continue;
            }
            match out.iter_mut().find(|a| a.kind == kind && a.name == name) {
                Some(a) => {
                    for g in granted {
                        if !a.actions.contains(&g) {
                            a.actions.push(g);
                        }
                    }
                }
                None => out.push(Access {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    actions: granted,
                }),
            }
        }
        out
    }

    /// Answers one `/token` request: `(status, body)`, and logs it.
    fn answer(
        &self,
        method: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut entry = TokenRequest {
            method: method.to_owned(),
            grant: Grant::Other,
            user: None,
            scopes: Vec::new(),
            service: None,
            account: None,
            client_id: None,
            status: 400,
            expired: false,
            token: None,
        };
        let params = if method == "POST" {
            parse_form(&String::from_utf8_lossy(body))
        } else {
            parse_form(query)
        };
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        entry.scopes = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        entry.service = param("service");
        entry.account = param("account");
        entry.client_id = param("client_id");
        let authenticated = self.authenticate(method, headers, &param, &mut entry);
        let result = match authenticated {
            Err((status, error)) => (status, error_json("UNAUTHORIZED", error)),
            Ok(_) if entry.service.as_deref().is_some_and(|s| s != SERVICE) => {
                (400, error_json("DENIED", "unknown service"))
            }
            Ok(user) => self.issue(user, &param, &mut entry),
        };
        entry.status = result.0;
        lock(&self.log).push(entry);
        result
    }

    /// Who the request is from; `Err((status, message))` when refused.
    fn authenticate<'s>(
        &'s self,
        method: &str,
        headers: &[(String, String)],
        param: &dyn Fn(&str) -> Option<String>,
        entry: &mut TokenRequest,
    ) -> Result<Option<&'s User>, (u16, &'static str)> {
        let check = |name: &str, password: &str| match self.users.get(name) {
            Some(u) if u.password == password => Ok(Some(u)),
            _ => Err((401, "unknown user or wrong password")),
        };
        if method == "GET" {
            let basic = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
                .and_then(|(_, v)| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|raw| String::from_utf8(raw).ok());
            let Some(basic) = basic else {
                entry.grant = Grant::Anonymous;
                return Ok(None);
            };
            entry.grant = Grant::Basic;
            let (name, password) = basic.split_once(':').unwrap_or((&basic, ""));
            let user = check(name, password)?;
            entry.user = Some(name.to_owned());
            return Ok(user);
        }
        match param("grant_type").as_deref() {
            Some("password") => {
                entry.grant = Grant::Password;
                let name = param("username").unwrap_or_default();
                let user = check(&name, &param("password").unwrap_or_default())?;
                entry.user = Some(name);
                Ok(user)
            }
            Some("refresh_token") => {
                entry.grant = Grant::RefreshToken;
                let token = param("refresh_token").unwrap_or_default();
                let name = lock(&self.refresh_tokens).get(&token).cloned();
                let user = name.as_ref().and_then(|n| self.users.get(n));
                entry.user = name.filter(|_| user.is_some());
                user.map(Some).ok_or((401, "unknown refresh token"))
            }
            _ => Err((400, "unsupported grant_type")),
        }
    }

    /// Issues a token for the logged request `entry`.
    fn issue(
        &self,
        user: Option<&User>,
        param: &dyn Fn(&str) -> Option<String>,
        entry: &mut TokenRequest,
    ) -> (u16, Value) {
        let access = self.access(user, &entry.scopes);
        let subject = user.map_or(String::new(), |u| u.name.clone());
        let expiry = user.map_or(Expiry::Never, |u| u.expiry);
        let first = {
            let mut issued = lock(&self.issued);
            let n = issued
                .entry((subject.clone(), entry.scope_key()))
                .or_insert(0);
            *n += 1;
            *n == 1
        };
        entry.expired = match expiry {
            Expiry::Never => false,
            Expiry::FirstPerScope => first,
            Expiry::Always => true,
        };
        let valid_for = Duration::from_secs(self.expires_in);
        let token = self
            .issuer
            .mint(&subject, &access, valid_for, entry.expired);
        entry.token = Some(token.clone());
        let issued_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formatting the time");
        let mut answer = json!({
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued_at,
        });
        let offline = param("access_type").as_deref() == Some("offline");
        if entry.grant == Grant::Password && offline {
            let refresh = format!("refresh-{:032x}", rand::random::<u128>());
            lock(&self.refresh_tokens).insert(refresh.clone(), subject);
            answer["refresh_token"] = Value::String(refresh);
        }
        (200, answer)
    }
}

fn serve_connection(stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(head) = Head::read(&mut reader)? {
        if head.has_token("Expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = match head.framing() {
            // A request without a length has no body.
            Framing::UntilEof => Vec::new(),
            framing => read_body(&mut reader, framing)?,
        };
        let mut parts = head.start.split(' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (status, answer) = match (path, method) {
            ("/token", "GET" | "POST") => state.answer(method, query, &head.headers, &body),
            ("/token", _) => (405, error_json("UNSUPPORTED", method)),
            _ => (404, error_json("NOT_FOUND", path)),
        };
        let body = answer.to_string();
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        if status == 401 {
            response.push_str("WWW-Authenticate: Basic realm=\"bundle-test-token\"\r\n");
        }
        let close = head.has_token("Connection", "close");
        if close {
            response.push_str("Connection: close\r\n");
        }
        writer.write_all(format!("{response}\r\n{body}").as_bytes())?;
        writer.flush()?;
        if close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// A distribution-style error envelope.
fn error_json(code: &str, message: &str) -> Value {
    json!({ "errors": [{ "code": code, "message": message }] })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    }
}

/// `application/x-www-form-urlencoded` (or a query string) as ordered pairs:
/// `scope` may come several times.
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}
