//! Credentials and where they come from: podman/docker auth files.
//!
//! Everything here is pure except the thin functions that touch the file
//! system or run a credential helper: [`credentials_from_authfile`],
//! [`default_authfile`] and `run_helper`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroize as _;

use super::RegistryError;

/// What to authenticate with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (anonymous pull tokens are still fetched when a registry asks).
    #[default]
    Anonymous,
    /// User and password: sent as `Authorization: Basic` to the registry and to its token service.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A ready-made bearer token used as-is (OpenShift's `oc whoami -t`).
    Bearer(String),
    /// An OAuth2 refresh token (`identitytoken` in auth.json), exchanged at the token service.
    IdentityToken {
        /// User name the token belongs to (may be empty).
        username: String,
        /// The refresh token.
        token: String,
    },
}

/// The secret is wiped from memory when the credentials are dropped (each
/// clone wipes its own copy). Copies made on the way to the wire (the
/// base64 of a Basic header, reqwest's header buffers) are not.
impl Drop for Credentials {
    fn drop(&mut self) {
        match self {
            Credentials::Anonymous => {}
            Credentials::Basic { password, .. } => password.zeroize(),
            Credentials::Bearer(token) | Credentials::IdentityToken { token, .. } => {
                token.zeroize()
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Looks up credentials for `host` in a podman/docker auth file.
///
/// `host` is `host[:port]`, optionally followed by a repository path
/// (`quay.io/org/app`): like containers-auth.json(5), the most specific key
/// wins (`quay.io/org/app`, then `quay.io/org`, then `quay.io`). Keys written as
/// `https://host/v1/` count as `host`, and `docker.io`, `index.docker.io` and
/// `registry-1.docker.io` are the same registry. An entry holds `auth`
/// (base64 of `user:password`), or `username` and `password`, or an
/// `identitytoken` (with `auth` giving the user), or a `registrytoken`. A
/// `credHelpers` entry for the registry comes first, and `credsStore` last:
/// their `docker-credential-<name>` program is run from `PATH`.
/// Returns `Ok(None)` when nothing matches.
pub fn credentials_from_authfile(
    path: &Path,
    host: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| {
        RegistryError::ReadAuthfile {
            path: path.to_owned(),
            source,
        }
    })?);
    let found = lookup_authfile(&bytes, host).map_err(|e| match e {
        AuthfileError::Invalid(reason) => RegistryError::InvalidAuthfile {
            path: path.to_owned(),
            reason,
        },
    })?;
    match found {
        Lookup::Found(creds) => Ok(Some(creds)),
        Lookup::Nothing => Ok(None),
        Lookup::Helper { helper, server } => {
            run_helper(&helper, &server, std::env::var_os("PATH").as_deref()).map_err(|reason| {
                RegistryError::CredentialHelper {
                    path: path.to_owned(),
                    host: host.to_owned(),
                    helper,
                    reason,
                }
            })
        }
    }
}

/// Asks `docker-credential-<helper>` (searched in `path_env`) for the
/// credentials of `server`, as docker and podman do: `get` with the server on
/// stdin, JSON `{"Username", "Secret"}` on stdout; a `Username` of `<token>`
/// means the secret is an identity token. "Not found" is `Ok(None)`.
fn run_helper(
    helper: &str,
    server: &str,
    path_env: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let program = format!("docker-credential-{helper}");
    let found = path_env
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(&program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} is not installed (not found in PATH)"))?;
    let mut child = Command::new(&found)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", found.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    parse_helper_output(&program, out.status.success(), &out.stdout, &out.stderr)
}

/// Reads what a credential helper answered (pure; never echoes a secret).
fn parse_helper_output(
    program: &str,
    success: bool,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Credentials>, String> {
    if !success {
        let said = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
        let said = said.trim();
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let first = said
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        return Err(format!("{program} get failed: {first}"));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(stdout)
        .map_err(|_| format!("{program} get did not answer with JSON credentials"))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credentials::IdentityToken {
            username: String::new(),
            token: answer.secret,
        }
    } else {
        Credentials::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

/// The auth file the container tools would use, if one exists.
///
/// In order: `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
/// `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`,
/// `${DOCKER_CONFIG:-~/.docker}/config.json`; the first that exists.
pub fn default_authfile() -> Option<PathBuf> {
    default_authfile_with(|k| std::env::var_os(k), |p| p.is_file())
}

/// [`default_authfile`] with the environment and the file system passed in.
fn default_authfile_with(
    env: impl Fn(&str) -> Option<OsString>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = set("HOME");
    let mut candidates = Vec::new();
    if let Some(p) = set("REGISTRY_AUTH_FILE") {
        candidates.push(p);
    }
    if let Some(d) = set("XDG_RUNTIME_DIR") {
        candidates.push(d.join("containers/auth.json"));
    }
    if let Some(d) = set("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        candidates.push(d.join("containers/auth.json"));
    }
    if let Some(d) = set("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        candidates.push(d.join("config.json"));
    }
    candidates.into_iter().find(|p| exists(p))
}

/// Why [`lookup_authfile`] failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthfileError {
    /// Not valid auth.json (the reason never holds a secret).
    Invalid(String),
}

/// What auth.json says about a host.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Credentials written in the file.
    Found(Credentials),
    /// Kept by credential helper `docker-credential-<helper>`, asked for `server`.
    Helper {
        /// The helper's name.
        helper: String,
        /// What to ask it for (the registry as docker names it).
        server: String,
    },
    /// Nothing for this host.
    Nothing,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// The file's secrets are wiped when the parsed file is dropped.
impl Drop for AuthEntry {
    fn drop(&mut self) {
        self.auth.zeroize();
        self.password.zeroize();
        self.identitytoken.zeroize();
        self.registrytoken.zeroize();
    }
}

/// Finds the credentials for `host[/path]` in auth.json bytes, in the order
/// docker and podman use: a `credHelpers` entry for the registry, then the
/// most specific `auths` entry holding credentials, then `credsStore`.
pub fn lookup_authfile(bytes: &[u8], host: &str) -> Result<Lookup, AuthfileError> {
    let file: AuthFile = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message may quote a value from the file: keep only where.
        AuthfileError::Invalid(format!(
            "not valid auth.json ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let wanted = normalize_key(host, false);
    let registry = wanted.split('/').next().unwrap_or(&wanted);
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    };
    let helper_for = |name: &str| {
        // The name becomes part of a program name searched in PATH: a `/`
        // would make it a path of the file's choosing.
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain || name.starts_with('.') {
            return Err(AuthfileError::Invalid(format!(
                "credential helper name {name:?} is not a plain name \
                 (docker-credential-<name> is run from PATH)"
            )));
        }
        Ok(Lookup::Helper {
            helper: name.to_owned(),
            server: server.clone(),
        })
    };
    let named = file
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_key(k, true) == registry);
    if let Some((_, helper)) = named {
        return helper_for(helper);
    }
    // Most specific first: host/a/b, host/a, host.
    let mut candidate = wanted.as_str();
    loop {
        let matching = file
            .auths
            .iter()
            .filter(|(k, _)| normalize_key(k, true) == candidate)
            .map(|(_, v)| v);
        for entry in matching {
            if let Some(creds) = entry_credentials(entry, candidate)? {
                return Ok(Lookup::Found(creds));
            }
        }
        match candidate.rfind('/') {
            Some(i) => candidate = &candidate[..i],
            None => break,
        }
    }
    match file.creds_store.as_deref().filter(|s| !s.is_empty()) {
        Some(store) => helper_for(store),
        None => Ok(Lookup::Nothing),
    }
}

/// Credentials held by one entry; `None` if it holds none.
fn entry_credentials(entry: &AuthEntry, key: &str) -> Result<Option<Credentials>, AuthfileError> {
    let from_auth = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
        Some(auth) => Some(decode_auth(auth).ok_or_else(|| {
            AuthfileError::Invalid(format!(
                "the \"auth\" of {key} is not base64 of user:password"
            ))
        })?),
        None => None,
    };
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        let username = from_auth
            .map(|(u, _)| u)
            .or_else(|| entry.username.clone())
            .unwrap_or_default();
        return Ok(Some(Credentials::IdentityToken {
            username,
            token: token.to_owned(),
        }));
    }
    if let Some((username, password)) = from_auth {
        return Ok(Some(Credentials::Basic { username, password }));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    if let Some(token) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Bearer(token.to_owned())));
    }
    Ok(None)
}

/// `base64(user:password)` → `(user, password)`.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let engine = base64::engine::general_purpose::STANDARD;
    let lenient = base64::engine::general_purpose::STANDARD_NO_PAD;
    let raw = engine
        .decode(auth.trim())
        .or_else(|_| lenient.decode(auth.trim().trim_end_matches('=')))
        .ok()?;
    let text = zeroize::Zeroizing::new(String::from_utf8(raw).ok()?);
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Normalizes an auth.json key (or a looked-up host) like containers/image does:
/// a URL-style key (`https://host/v1/`) keeps only its host, and the Docker Hub
/// aliases become `docker.io`.
fn normalize_key(key: &str, is_file_key: bool) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let key = match stripped {
        Some(rest) if is_file_key => rest.split('/').next().unwrap_or(rest),
        Some(rest) => rest,
        None => key,
    };
    let key = key.trim_end_matches('/');
    let (host, path) = match key.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (key, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(bytes: &[u8], host: &str) -> Result<Option<Credentials>, AuthfileError> {
        lookup_authfile(bytes, host).map(|l| match l {
            Lookup::Found(c) => Some(c),
            Lookup::Nothing => None,
            Lookup::Helper { .. } => panic!("unexpected {l:?}"),
        })
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn auth_field_and_username_password() {
        let file = format!(
            r#"{{"auths":{{"r.example:5000":{{"auth":"{}"}},"other.example":{{"username":"bob","password":"p:w"}}}}}}"#,
            b64("alice:se:cret")
        );
        assert_eq!(
            found(file.as_bytes(), "r.example:5000"),
            Ok(basic("alice", "se:cret"))
        );
        assert_eq!(
            found(file.as_bytes(), "other.example"),
            Ok(basic("bob", "p:w"))
        );
        assert_eq!(found(file.as_bytes(), "r.example"), Ok(None));
        assert_eq!(found(file.as_bytes(), "nowhere"), Ok(None));
    }

    #[test]
    fn url_keys_and_docker_hub_aliases() {
        let file = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"http://r.example:5000/v2/":{{"auth":"{}"}}}}}}"#,
            b64("hub:1"),
            b64("r:2")
        );
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io/library/busybox",
        ] {
            assert_eq!(
                found(file.as_bytes(), host),
                Ok(basic("hub", "1")),
                "{host}"
            );
        }
        assert_eq!(
            found(file.as_bytes(), "r.example:5000"),
            Ok(basic("r", "2"))
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let file = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/org":{{"auth":"{}"}},"quay.io/org/app":{{"auth":"{}"}}}}}}"#,
            b64("host:1"),
            b64("org:2"),
            b64("app:3")
        );
        let f = file.as_bytes();
        assert_eq!(found(f, "quay.io/org/app"), Ok(basic("app", "3")));
        assert_eq!(found(f, "quay.io/org/other"), Ok(basic("org", "2")));
        assert_eq!(found(f, "quay.io/org"), Ok(basic("org", "2")));
        assert_eq!(found(f, "quay.io/organisation"), Ok(basic("host", "1")));
        assert_eq!(found(f, "quay.io"), Ok(basic("host", "1")));
    }

    #[test]
    fn identity_and_registry_tokens() {
        let file = format!(
            r#"{{"auths":{{"a.example":{{"auth":"{}","identitytoken":"refresh"}},"b.example":{{"registrytoken":"tok"}}}}}}"#,
            b64("user:")
        );
        assert_eq!(
            found(file.as_bytes(), "a.example"),
            Ok(Some(Credentials::IdentityToken {
                username: "user".into(),
                token: "refresh".into()
            }))
        );
        assert_eq!(
            found(file.as_bytes(), "b.example"),
            Ok(Some(Credentials::Bearer("tok".into())))
        );
    }

    #[test]
    fn credential_helpers_in_the_order_docker_and_podman_use() {
        let file = format!(
            r#"{{"auths":{{"quay.io":{{}},"r.example":{{"auth":"{}"}},"docker.io":{{}}}},"credsStore":"desktop","credHelpers":{{"gcr.io":"gcloud","r.example":"pass"}}}}"#,
            b64("u:p")
        );
        let helper = |h: &str, s: &str| {
            Ok(Lookup::Helper {
                helper: h.into(),
                server: s.into(),
            })
        };
        let f = file.as_bytes();
        // credHelpers first (even over credentials in auths), by registry host.
        assert_eq!(lookup_authfile(f, "r.example"), helper("pass", "r.example"));
        assert_eq!(
            lookup_authfile(f, "gcr.io/proj/app"),
            helper("gcloud", "gcr.io")
        );
        // Then an auths entry holding credentials; then the store.
        assert_eq!(lookup_authfile(f, "quay.io"), helper("desktop", "quay.io"));
        assert_eq!(
            lookup_authfile(f, "docker.io/library/busybox"),
            helper("desktop", "https://index.docker.io/v1/")
        );
        assert_eq!(
            lookup_authfile(f, "elsewhere.io"),
            helper("desktop", "elsewhere.io")
        );
        let no_store = br#"{"auths":{"quay.io":{}},"credHelpers":{"gcr.io":"gcloud"}}"#;
        assert_eq!(lookup_authfile(no_store, "quay.io"), Ok(Lookup::Nothing));
    }

    #[test]
    fn a_helper_name_that_is_not_a_plain_name_is_refused() {
        for name in ["../../tmp/evil", "x/y", "/bin/sh", ".hidden", "a b"] {
            for file in [
                format!(r#"{{"credHelpers":{{"r.example":{name:?}}}}}"#),
                format!(r#"{{"credsStore":{name:?}}}"#),
            ] {
                let Err(AuthfileError::Invalid(reason)) =
                    lookup_authfile(file.as_bytes(), "r.example")
                else {
                    panic!("{file} was accepted");
                };
                assert!(reason.contains("not a plain name"), "{reason}");
            }
        }
    }

    #[test]
    fn helper_answers() {
        let p = "docker-credential-x";
        assert_eq!(
            parse_helper_output(
                p,
                true,
                br#"{"ServerURL":"q","Username":"al","Secret":"s3"}"#,
                b""
            ),
            Ok(basic("al", "s3"))
        );
        assert_eq!(
            parse_helper_output(
                p,
                true,
                br#"{"Username":"<token>","Secret":"refresh"}"#,
                b""
            ),
            Ok(Some(Credentials::IdentityToken {
                username: String::new(),
                token: "refresh".into()
            }))
        );
        assert_eq!(
            parse_helper_output(p, false, b"credentials not found in native keychain\n", b""),
            Ok(None)
        );
        let e = parse_helper_output(p, false, b"", b"gpg: decryption failed\nmore").unwrap_err();
        assert_eq!(e, "docker-credential-x get failed: gpg: decryption failed");
        let e = parse_helper_output(p, true, b"hunter2", b"").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn helpers_run_from_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-fake");
        std::fs::write(
            &script,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 3\n\
             if [ \"$server\" = known.example ]; then\n\
               printf '{\"ServerURL\":\"%s\",\"Username\":\"al\",\"Secret\":\"s3\"}' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = Some(dir.path().as_os_str());
        assert_eq!(
            run_helper("fake", "known.example", path),
            Ok(basic("al", "s3"))
        );
        assert_eq!(run_helper("fake", "other.example", path), Ok(None));
        let e = run_helper("missing", "known.example", path).unwrap_err();
        assert!(
            e.contains("docker-credential-missing is not installed"),
            "{e}"
        );
    }

    #[test]
    fn broken_files_never_echo_secrets() {
        let secret = "hunter2-secret";
        let file = format!(r#"{{"auths":{{"x":{{"auth":{secret:?}}}}}}}"#);
        match found(file.as_bytes(), "x") {
            Err(AuthfileError::Invalid(reason)) => assert!(!reason.contains(secret), "{reason}"),
            other => panic!("expected an error, got {other:?}"),
        }
        let file = format!(r#"{{"auths":{{"x":{{"auth":5, "password":"{secret}"}}}}"#);
        match found(file.as_bytes(), "x") {
            Err(AuthfileError::Invalid(reason)) => assert!(!reason.contains(secret), "{reason}"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(matches!(
            found(b"not json", "x"),
            Err(AuthfileError::Invalid(_))
        ));
        assert_eq!(found(b"{}", "x"), Ok(None));
    }

    #[test]
    fn reads_a_real_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        )
        .expect("write");
        assert_eq!(
            credentials_from_authfile(&path, "h").expect("reads"),
            basic("u", "p")
        );
        let missing = credentials_from_authfile(&dir.path().join("nope"), "h");
        assert!(matches!(missing, Err(RegistryError::ReadAuthfile { .. })));
    }

    #[test]
    fn debug_redacts_secrets() {
        let all = [
            Credentials::Basic {
                username: "u".into(),
                password: "hunter2".into(),
            },
            Credentials::Bearer("hunter2".into()),
            Credentials::IdentityToken {
                username: "u".into(),
                token: "hunter2".into(),
            },
        ];
        for c in all {
            let s = format!("{c:?}");
            assert!(!s.contains("hunter2"), "{s}");
        }
    }

    #[test]
    fn default_authfile_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = &[
            ("REGISTRY_AUTH_FILE", "/a/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
            ("HOME", "/home/u"),
        ];
        let everything = |_: &Path| true;
        assert_eq!(
            default_authfile_with(env(all), everything),
            Some(PathBuf::from("/a/auth.json"))
        );
        let only = |want: &'static str| move |p: &Path| p == Path::new(want);
        assert_eq!(
            default_authfile_with(env(all), only("/run/user/1/containers/auth.json")),
            Some(PathBuf::from("/run/user/1/containers/auth.json"))
        );
        assert_eq!(
            default_authfile_with(env(all), only("/home/u/.config/containers/auth.json")),
            Some(PathBuf::from("/home/u/.config/containers/auth.json"))
        );
        assert_eq!(
            default_authfile_with(env(all), only("/home/u/.docker/config.json")),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(default_authfile_with(env(all), |_| false), None);
        assert_eq!(default_authfile_with(env(&[]), everything), None);
    }
}
