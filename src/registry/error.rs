//! Registry errors, and the distribution spec's error envelope.
//!
//! Display texts never repeat the wrapped error (it is the `source`, printed by
//! whoever walks the chain) and never contain credentials or tokens.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::digest::Digest;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry answered with an unexpected HTTP status.
    #[error(
        "{method} {url}: the registry answered {status}{}",
        DetailsSuffix(errors)
    )]
    Http {
        /// Request method.
        method: &'static str,
        /// Request URL (never holds credentials).
        url: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error envelope `{"errors":[…]}`, empty if it sent none.
        errors: Vec<ErrorDetail>,
    },
    /// The registry answered a step of a push (blob check, mount, upload, manifest) with an unexpected status.
    #[error(
        "{what}: {method} {url}: the registry answered {status}{}",
        DetailsSuffix(errors)
    )]
    Refused {
        /// The step, naming the repository and the blob or manifest.
        what: String,
        /// Request method.
        method: &'static str,
        /// Request URL without its query (upload locations carry opaque state there).
        url: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error envelope `{"errors":[…]}`, empty if it sent none.
        errors: Vec<ErrorDetail>,
    },
    /// The registry (or its token service) refused us: missing, wrong or insufficient credentials.
    #[error("{host} refused access{}: check the credentials", ScopeSuffix(scope))]
    Unauthorized {
        /// The host that refused.
        host: String,
        /// The token scope that was asked for, if any.
        scope: Option<String>,
    },
    /// The registry took the credentials but does not grant what was asked (`insufficient_scope`).
    #[error(
        "{host} does not grant {scope} to these credentials (they are accepted; the account lacks that permission)"
    )]
    NotGranted {
        /// The host that refused.
        host: String,
        /// The token scope that was asked for.
        scope: String,
    },
    /// Content did not hash to the digest it was asked by or announced with.
    #[error("{what}: digest mismatch, expected {expected}, found {found}")]
    DigestMismatch {
        /// What was checked (a manifest or blob, with its repository).
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of the bytes received.
        found: Digest,
    },
    /// Content was not the size it was announced with.
    #[error("{what}: size mismatch, expected {expected} bytes, {}", FoundSize(*found, *more))]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size it should have.
        expected: u64,
        /// The bytes received (or announced by `Content-Length`).
        found: u64,
        /// Whether reading stopped early at `found` because it already exceeded `expected`.
        more: bool,
    },
    /// A response body came slower than 64 KiB per minute of waiting on the
    /// network (a trickle the read timeout never sees; `registry::pace`).
    #[error(
        "{url} sent only {bytes} bytes in {secs} s of waiting: too slow to go on \
         (at least {} bytes a minute are needed)",
        super::pace::MIN_BYTES
    )]
    TooSlow {
        /// The URL.
        url: String,
        /// Bytes that came in the window.
        bytes: u64,
        /// Seconds spent waiting on the network in it.
        secs: u64,
    },
    /// A response body was larger than bundle accepts for its kind.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A manifest in Docker schema 1 format, which bundle refuses.
    #[error("{what}: Docker schema1 manifests are not supported (media type {media_type})")]
    Schema1 {
        /// The manifest asked for.
        what: String,
        /// The media type it came with.
        media_type: String,
    },
    /// The registry answered something that is not what the API promises.
    #[error("{url}: invalid response: {reason}")]
    InvalidResponse {
        /// Request URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The request could not be sent or its answer not received (DNS, connection, timeout, reset).
    #[error("request to {url} failed")]
    Transport {
        /// Request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server's TLS certificate could not be verified.
    #[error(
        "the TLS certificate of {host} could not be verified{}",
        if *untrusted {
            " (trust its CA certificate, or the server's own certificate, with --ca-cert FILE \
             or --cert-dir DIR; or, at your own risk, --tls-verify=false)"
        } else {
            ": it is not valid for this server (see the cause: trusting it would not help)"
        }
    )]
    Certificate {
        /// The host whose certificate was refused.
        host: String,
        /// Whether it was refused for want of a trusted issuer (the fix is
        /// to trust one), rather than for what it says (name, dates,
        /// purpose, signature).
        untrusted: bool,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed for a reason other than the certificate (or the server does not speak TLS).
    #[error("TLS handshake with {host} failed ({})", PlainHttpHint { host, loopback: *loopback })]
    Tls {
        /// The host.
        host: String,
        /// Whether the host is loopback (`localhost`, `127.0.0.0/8`, `::1`),
        /// where plain http is tried after https (see `Registry::connect`).
        loopback: bool,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the TLS connection over the client certificate
    /// (none was given, or not one it trusts).
    #[error(
        "{host} asked for a client certificate and closed the TLS connection: it wants one \
         it trusts (give the certificate and its key as NAME.cert and NAME.key in \
         --cert-dir DIR, or in the registry's HOST[:PORT] directory under \
         /etc/containers/certs.d)"
    )]
    ClientCertificate {
        /// The host.
        host: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Plain HTTP was asked for while TLS verification is on.
    #[error(
        "refusing plain http:// to {host} while TLS verification is enabled (add --tls-verify=false)"
    )]
    PlainHttpRefused {
        /// The host.
        host: String,
    },
    /// The registry host is not `host[:port]` with an optional `http://`/`https://` scheme.
    #[error("invalid registry host {host:?}: {reason}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A token service URL (realm) that bundle will not send credentials to.
    #[error("{host} sent an unusable token service address: {reason}")]
    InvalidRealm {
        /// The registry that sent the challenge.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference, repository name, tag or digest that does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `Link` pagination chain that leaves the registry, revisits a page or never ends.
    #[error("{url}: pagination {reason}")]
    Pagination {
        /// The URL of the page whose `Link` is at fault.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The auth file could not be read.
    #[error("reading auth file {path}")]
    ReadAuthfile {
        /// The auth file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The auth file is not valid `auth.json`.
    #[error("auth file {path}: {reason}")]
    InvalidAuthfile {
        /// The auth file.
        path: PathBuf,
        /// What is wrong (never includes a secret).
        reason: String,
    },
    /// The credential helper the auth file names for this host failed.
    #[error(
        "auth file {path}: credentials for {host} are kept by credential helper \
         docker-credential-{helper}: {reason}"
    )]
    CredentialHelper {
        /// The auth file.
        path: PathBuf,
        /// The host looked up.
        host: String,
        /// The helper's name.
        helper: String,
        /// What went wrong (never holds a secret).
        reason: String,
    },
    /// Credentials that cannot be sent (a token with characters not allowed in a header).
    #[error("unusable credentials: {reason}")]
    InvalidCredentials {
        /// What is wrong (never the secret itself).
        reason: String,
    },
    /// A CA certificate file (`--ca-cert`, or a `*.crt` in a certificate directory) could not be read.
    #[error("reading CA certificate {path}")]
    ReadCaCert {
        /// The certificate file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CA certificate file holds no usable PEM certificate.
    #[error("CA certificate file {path} holds no valid PEM certificate")]
    InvalidCaCert {
        /// The certificate file.
        path: PathBuf,
    },
    /// A certificate directory (`--cert-dir`, or a registry's under `certs.d`) could not be read.
    #[error("reading certificate directory {path}")]
    ReadCertDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A client certificate `NAME.cert` without its key `NAME.key` beside it.
    #[error(
        "missing key {key} for client certificate {cert} (CA certificates take the extension .crt)"
    )]
    MissingClientKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file that should be beside it.
        key: PathBuf,
    },
    /// A key `NAME.key` without its client certificate `NAME.cert` beside it.
    #[error("missing client certificate {cert} for key {key}")]
    MissingClientCert {
        /// The key file.
        key: PathBuf,
        /// The certificate file that should be beside it.
        cert: PathBuf,
    },
    /// A client certificate or key file could not be read.
    #[error("reading client certificate file {path}")]
    ReadClientCert {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A client certificate and key that cannot be used together.
    #[error("client certificate {cert} with key {key}: {reason}")]
    InvalidClientCert {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration could not be set up.
    #[error("setting up TLS")]
    TlsSetup(#[source] rustls::Error),
    /// The HTTP client could not be set up.
    #[error("setting up the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether trying again later may succeed (rate limits, 5xx, connection resets, timeouts).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Http { status, .. } | RegistryError::Refused { status, .. } => {
                is_retryable_status(*status)
            }
            RegistryError::Transport { source, .. } => {
                source.is_timeout()
                    || source.is_connect()
                    || source.is_request()
                    || source.is_body()
                    || source.is_decode()
            }
            // Perhaps one slow connection: the next one may be faster.
            RegistryError::TooSlow { .. } => true,
            _ => false,
        }
    }

    /// The first error code in the registry's envelope, if it sent one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            RegistryError::Http { errors, .. } | RegistryError::Refused { errors, .. } => {
                errors.first().map(|e| &e.code)
            }
            _ => None,
        }
    }

    /// Whether the registry said the thing asked for does not exist (404, or a `*_UNKNOWN` code).
    pub fn is_not_found(&self) -> bool {
        match self {
            RegistryError::Http { status, errors, .. }
            | RegistryError::Refused { status, errors, .. } => {
                *status == 404
                    || errors.iter().any(|e| {
                        matches!(
                            e.code,
                            ErrorCode::ManifestUnknown
                                | ErrorCode::BlobUnknown
                                | ErrorCode::NameUnknown
                        )
                    })
            }
            _ => false,
        }
    }
}

/// HTTP statuses worth retrying: rate limiting and transient server trouble.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// One entry of the distribution spec's error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message from the registry.
    #[serde(default)]
    pub message: String,
}

/// Error codes of the OCI distribution spec (plus the ones registries commonly add).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// Invalid number of results requested (distribution's catalog `n` above its maximum).
    PaginationNumberInvalid,
    /// Any other code, kept verbatim.
    #[serde(untagged)]
    Other(String),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Other(s) => s,
        };
        f.write_str(s)
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<ErrorDetail>,
}

/// Reads the error envelope from a response body; empty if the body is not one.
pub(crate) fn parse_error_envelope(body: &[u8]) -> Vec<ErrorDetail> {
    serde_json::from_slice::<Envelope>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

/// Turns a reqwest failure into the error kind a user can act on.
///
/// A rustls error in the source chain decides: a certificate we refused, an
/// alert the server sent about ours, or another TLS failure. Without one
/// (rustls hands some errors on as text) the chain's text is inspected; it
/// only picks the variant, the text itself stays in the `source`.
pub(crate) fn transport_error(url: &reqwest::Url, err: reqwest::Error) -> RegistryError {
    let host = host_port(url);
    let loopback = super::is_loopback(url);
    match tls_cause(&err) {
        Some(rustls::Error::InvalidCertificate(e)) => {
            let untrusted = matches!(
                e,
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::Other(_)
            );
            return RegistryError::Certificate {
                host,
                untrusted,
                source: err,
            };
        }
        Some(rustls::Error::AlertReceived(alert)) if is_client_cert_alert(*alert) => {
            return RegistryError::ClientCertificate { host, source: err };
        }
        Some(_) => {
            return RegistryError::Tls {
                host,
                loopback,
                source: err,
            };
        }
        None => {}
    }
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = cur {
        chain.push_str(&e.to_string().to_ascii_lowercase());
        chain.push('\n');
        cur = e.source();
    }
    // An alert received after the handshake (TLS 1.3 client authentication)
    // reaches here as text only.
    let alert = chain
        .split("received fatal alert: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next());
    if alert.is_some_and(|name| {
        CLIENT_CERT_ALERTS
            .iter()
            .any(|a| format!("{a:?}").eq_ignore_ascii_case(name))
    }) {
        RegistryError::ClientCertificate { host, source: err }
    } else if chain.contains("certificate") && !chain.contains("certificate required") {
        RegistryError::Certificate {
            host,
            untrusted: true,
            source: err,
        }
    } else if [
        "tls",
        "handshake",
        "corrupt message",
        "alert",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|w| chain.contains(w))
    {
        RegistryError::Tls {
            host,
            loopback,
            source: err,
        }
    } else {
        RegistryError::Transport {
            url: url.to_string(),
            source: err,
        }
    }
}

/// The rustls error in `err`'s source chain, if any (it sits inside `io::Error`s).
fn tls_cause(err: &reqwest::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error's `source` skips the error it wraps, and reqwest's
        // connector wraps the TLS stream's io::Error in another.
        let mut io = e.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|io| io.get_ref()) {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = e.source();
    }
    None
}

/// Alerts a server sends about the client's certificate (the server does not
/// judge its own): none given, or one it does not trust.
const CLIENT_CERT_ALERTS: [rustls::AlertDescription; 8] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::AccessDenied,
];

fn is_client_cert_alert(alert: rustls::AlertDescription) -> bool {
    CLIENT_CERT_ALERTS.contains(&alert)
}

/// What lets bundle speak plain http to `host`, exactly as `Registry::connect` decides it.
struct PlainHttpHint<'a> {
    host: &'a str,
    loopback: bool,
}

impl fmt::Display for PlainHttpHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host;
        if self.loopback {
            write!(
                f,
                "if it serves plain http, give --tls-verify=false: with {host} http is \
                 tried when https fails on a loopback host, with http://{host} it is used at once"
            )
        } else {
            write!(
                f,
                "if it serves plain http, give http://{host} with --tls-verify=false: \
                 plain http is never tried otherwise"
            )
        }
    }
}

/// `host[:port]` of a URL, for messages.
pub(crate) fn host_port(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => url.to_string(),
    }
}

struct DetailsSuffix<'a>(&'a [ErrorDetail]);

impl fmt::Display for DetailsSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(3).enumerate() {
            f.write_str(if i == 0 { " (" } else { "; " })?;
            write!(f, "{}", e.code)?;
            let msg: String = e
                .message
                .chars()
                .take(200)
                .filter(|c| !c.is_control())
                .collect();
            if !msg.is_empty() {
                write!(f, ": {msg}")?;
            }
        }
        if !self.0.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

struct ScopeSuffix<'a>(&'a Option<String>);

impl fmt::Display for ScopeSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(scope) => write!(f, " for {scope}"),
            None => Ok(()),
        }
    }
}

struct FoundSize(u64, bool);

impl fmt::Display for FoundSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(f, "received more than that ({} bytes so far)", self.0)
        } else {
            write!(f, "found {} bytes", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_with_known_and_unknown_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},{"code":"SOMETHING_NEW","message":"m"}]}"#;
        let errors = parse_error_envelope(body);
        assert_eq!(errors[0].code, ErrorCode::ManifestUnknown);
        assert_eq!(errors[1].code, ErrorCode::Other("SOMETHING_NEW".into()));
        let e = RegistryError::Http {
            method: "GET",
            url: "https://r/v2/a/manifests/x".into(),
            status: 404,
            errors,
        };
        assert_eq!(
            e.to_string(),
            "GET https://r/v2/a/manifests/x: the registry answered 404 \
             (MANIFEST_UNKNOWN: manifest unknown; SOMETHING_NEW: m)"
        );
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some(&ErrorCode::ManifestUnknown));
    }

    #[test]
    fn refused_names_the_step() {
        let e = RegistryError::Refused {
            what: "uploading blob sha256:ab to a/x".into(),
            method: "PUT",
            url: "https://r/v2/a/x/blobs/uploads/u".into(),
            status: 400,
            errors: parse_error_envelope(
                br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
            ),
        };
        assert_eq!(
            e.to_string(),
            "uploading blob sha256:ab to a/x: PUT https://r/v2/a/x/blobs/uploads/u: \
             the registry answered 400 (DIGEST_INVALID: provided digest did not match uploaded content)"
        );
        assert_eq!(e.code(), Some(&ErrorCode::DigestInvalid));
        assert!(!e.is_retryable());
        assert!(!e.is_not_found());
    }

    #[test]
    fn non_envelope_bodies_give_no_details() {
        assert!(parse_error_envelope(b"<html>oops</html>").is_empty());
        assert!(parse_error_envelope(b"").is_empty());
        assert!(parse_error_envelope(br#"{"errors":"x"}"#).is_empty());
    }

    #[test]
    fn pagination_and_rate_limit_codes() {
        let e = parse_error_envelope(
            br#"{"errors":[{"code":"PAGINATION_NUMBER_INVALID"},{"code":"TOOMANYREQUESTS"},{"code":"DENIED"}]}"#,
        );
        assert_eq!(
            e.iter().map(|d| d.code.clone()).collect::<Vec<_>>(),
            vec![
                ErrorCode::PaginationNumberInvalid,
                ErrorCode::TooManyRequests,
                ErrorCode::Denied
            ]
        );
    }

    #[test]
    fn the_plain_http_hint_follows_the_connect_rule() {
        let hint = |host: &str, loopback: bool| PlainHttpHint { host, loopback }.to_string();
        assert_eq!(
            hint("127.0.0.1:5000", true),
            "if it serves plain http, give --tls-verify=false: with 127.0.0.1:5000 http is \
             tried when https fails on a loopback host, with http://127.0.0.1:5000 it is used at once"
        );
        assert_eq!(
            hint("registry.example", false),
            "if it serves plain http, give http://registry.example with --tls-verify=false: \
             plain http is never tried otherwise"
        );
    }

    #[test]
    fn retryable_statuses() {
        let http = |status| RegistryError::Http {
            method: "GET",
            url: String::new(),
            status,
            errors: vec![],
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(404).is_retryable());
        assert!(!http(401).is_retryable());
    }
}
