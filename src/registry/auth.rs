//! Credentials and where they come from: podman/docker auth files.
//!
//! Everything here is pure except the two thin functions that touch the file
//! system, [`credentials_from_authfile`] and [`default_authfile`].

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

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
/// `identitytoken` (with `auth` giving the user), or a `registrytoken`.
/// Returns `Ok(None)` when no entry matches.
pub fn credentials_from_authfile(
    path: &Path,
    host: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|source| RegistryError::ReadAuthfile {
        path: path.to_owned(),
        source,
    })?;
    lookup_authfile(&bytes, host).map_err(|e| match e {
        AuthfileError::Invalid(reason) => RegistryError::InvalidAuthfile {
            path: path.to_owned(),
            reason,
        },
        AuthfileError::Helper(helper) => RegistryError::CredentialHelper {
            path: path.to_owned(),
            host: host.to_owned(),
            helper,
        },
    })
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
enum AuthfileError {
    /// Not valid auth.json (the reason never holds a secret).
    Invalid(String),
    /// The matching entry is kept by this credential helper.
    Helper(String),
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

/// Finds the credentials for `host[/path]` in auth.json bytes.
fn lookup_authfile(bytes: &[u8], host: &str) -> Result<Option<Credentials>, AuthfileError> {
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
                return Ok(Some(creds));
            }
            if let Some(store) = &file.creds_store {
                return Err(AuthfileError::Helper(store.clone()));
            }
        }
        if let Some(helper) = file.cred_helpers.get(candidate) {
            return Err(AuthfileError::Helper(helper.clone()));
        }
        match candidate.rfind('/') {
            Some(i) => candidate = &candidate[..i],
            None => return Ok(None),
        }
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
    let text = String::from_utf8(raw).ok()?;
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
            lookup_authfile(file.as_bytes(), "r.example:5000"),
            Ok(basic("alice", "se:cret"))
        );
        assert_eq!(
            lookup_authfile(file.as_bytes(), "other.example"),
            Ok(basic("bob", "p:w"))
        );
        assert_eq!(lookup_authfile(file.as_bytes(), "r.example"), Ok(None));
        assert_eq!(lookup_authfile(file.as_bytes(), "nowhere"), Ok(None));
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
                lookup_authfile(file.as_bytes(), host),
                Ok(basic("hub", "1")),
                "{host}"
            );
        }
        assert_eq!(
            lookup_authfile(file.as_bytes(), "r.example:5000"),
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
        assert_eq!(lookup_authfile(f, "quay.io/org/app"), Ok(basic("app", "3")));
        assert_eq!(
            lookup_authfile(f, "quay.io/org/other"),
            Ok(basic("org", "2"))
        );
        assert_eq!(lookup_authfile(f, "quay.io/org"), Ok(basic("org", "2")));
        assert_eq!(
            lookup_authfile(f, "quay.io/organisation"),
            Ok(basic("host", "1"))
        );
        assert_eq!(lookup_authfile(f, "quay.io"), Ok(basic("host", "1")));
    }

    #[test]
    fn identity_and_registry_tokens() {
        let file = format!(
            r#"{{"auths":{{"a.example":{{"auth":"{}","identitytoken":"refresh"}},"b.example":{{"registrytoken":"tok"}}}}}}"#,
            b64("user:")
        );
        assert_eq!(
            lookup_authfile(file.as_bytes(), "a.example"),
            Ok(Some(Credentials::IdentityToken {
                username: "user".into(),
                token: "refresh".into()
            }))
        );
        assert_eq!(
            lookup_authfile(file.as_bytes(), "b.example"),
            Ok(Some(Credentials::Bearer("tok".into())))
        );
    }

    #[test]
    fn credential_helpers_are_reported() {
        let file =
            br#"{"auths":{"quay.io":{}},"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}"#;
        assert_eq!(
            lookup_authfile(file, "quay.io"),
            Err(AuthfileError::Helper("desktop".into()))
        );
        assert_eq!(
            lookup_authfile(file, "gcr.io"),
            Err(AuthfileError::Helper("gcloud".into()))
        );
        assert_eq!(lookup_authfile(file, "elsewhere.io"), Ok(None));
    }

    #[test]
    fn broken_files_never_echo_secrets() {
        let secret = "hunter2-secret";
        let file = format!(r#"{{"auths":{{"x":{{"auth":{secret:?}}}}}}}"#);
        match lookup_authfile(file.as_bytes(), "x") {
            Err(AuthfileError::Invalid(reason)) => assert!(!reason.contains(secret), "{reason}"),
            other => panic!("expected an error, got {other:?}"),
        }
        let file = format!(r#"{{"auths":{{"x":{{"auth":5, "password":"{secret}"}}}}"#);
        match lookup_authfile(file.as_bytes(), "x") {
            Err(AuthfileError::Invalid(reason)) => assert!(!reason.contains(secret), "{reason}"),
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(matches!(
            lookup_authfile(b"not json", "x"),
            Err(AuthfileError::Invalid(_))
        ));
        assert_eq!(lookup_authfile(b"{}", "x"), Ok(None));
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
