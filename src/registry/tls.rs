//! TLS as skopeo and podman set it up (containers/image's `tlsclientconfig`).
//!
//! The rustls configuration handed to reqwest trusts the system roots plus
//! the CA certificates the user gave (`--ca-cert`, `*.crt` in a certificate
//! directory), and presents the client certificate of a `NAME.cert` +
//! `NAME.key` pair for mutual TLS. The certificate directory is `--cert-dir`,
//! else the first `HOST[:PORT]/` found under [`default_cert_roots`].
//!
//! Certificates are verified by webpki as usual, with one addition: a server
//! certificate that is byte for byte one the user gave is accepted even when
//! webpki refuses it as an end entity (the self-signed `CA:TRUE` certificate
//! the distribution docs make with `openssl req -x509`, which skopeo, podman
//! and curl accept). Its host name, validity period and extended key usage are
//! still checked, and the handshake signatures are verified as for any other.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_cert::der::Decode;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::ext::pkix::ExtendedKeyUsage;

use super::ClientOptions;
use super::error::RegistryError;

/// `id-kp-serverAuth` (RFC 5280).
const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `anyExtendedKeyUsage` (RFC 5280).
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// Where podman, skopeo and docker look for a registry's `HOST[:PORT]/`
/// certificate directory, in order: `$HOME/.config/containers/certs.d`,
/// `/etc/containers/certs.d`, `/etc/docker/certs.d`.
pub fn default_cert_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        roots.push(Path::new(&home).join(".config/containers/certs.d"));
    }
    roots.push(PathBuf::from("/etc/containers/certs.d"));
    roots.push(PathBuf::from("/etc/docker/certs.d"));
    roots
}

/// `ROOT/HOST[:PORT]` for the first of `roots` where it exists, as
/// containers/image's `dockerCertDir`: only that one directory is read, the
/// others are not merged in. Missing and unreadable (permission) ones are
/// passed over.
pub fn per_host_cert_dir(
    roots: &[PathBuf],
    host_port: &str,
) -> Result<Option<PathBuf>, RegistryError> {
    // The host was validated as host[:port]; never let it name another directory.
    if host_port.is_empty() || host_port.starts_with('.') || host_port.contains('/') {
        return Ok(None);
    }
    for root in roots {
        let dir = root.join(host_port);
        match std::fs::metadata(&dir) {
            Ok(_) => return Ok(Some(dir)),
            Err(e) if is_absent(&e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no certificate directory");
            }
            Err(source) => return Err(RegistryError::ReadCertDir { path: dir, source }),
        }
    }
    Ok(None)
}

/// What a certificate directory holds.
#[derive(Debug, Default)]
pub struct CertDir {
    /// CA certificates from its `*.crt` files.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// Client certificates from its `NAME.cert` + `NAME.key` pairs, in name order.
    pub client_certs: Vec<ClientCert>,
}

/// A client certificate chain and its private key, with the files they came from.
#[derive(Debug)]
pub struct ClientCert {
    /// The `NAME.cert` file.
    pub cert_path: PathBuf,
    /// The `NAME.key` file.
    pub key_path: PathBuf,
    /// Its certificates, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PrivateKeyDer<'static>,
}

/// Reads a certificate directory as containers/image's `SetupCertificates`
/// does: `*.crt` are CA certificates, `NAME.cert` with `NAME.key` a client
/// certificate; a `.cert` without its `.key`, or the reverse, is an error. A
/// directory that does not exist or may not be read holds nothing.
pub fn read_cert_dir(dir: &Path) -> Result<CertDir, RegistryError> {
    let mut out = CertDir::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "skipping certificate directory");
            return Ok(out);
        }
        Err(source) => {
            return Err(RegistryError::ReadCertDir {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<OsString>, _>>()
        .map_err(|source| RegistryError::ReadCertDir {
            path: dir.to_owned(),
            source,
        })?;
    names.sort();
    let has = |name: &[u8]| names.iter().any(|n| n.as_bytes() == name);
    for name in &names {
        let bytes = name.as_bytes();
        let path = dir.join(name);
        if bytes.ends_with(b".crt") {
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                // Removed since the listing: as containers/image, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(RegistryError::ReadCaCert { path, source }),
            };
            out.ca_certs.extend(parse_ca_certs(&pem, &path)?);
        } else if let Some(stem) = bytes.strip_suffix(b".cert") {
            let key_name = [stem, b".key"].concat();
            let key_path = dir.join(std::ffi::OsStr::from_bytes(&key_name));
            if !has(&key_name) {
                return Err(RegistryError::MissingClientKey {
                    cert: path,
                    key: key_path,
                });
            }
            let read = |p: &Path| {
                std::fs::read(p).map_err(|source| RegistryError::ReadClientCert {
                    path: p.to_owned(),
                    source,
                })
            };
            let (cert_pem, key_pem) = (read(&path)?, zeroize::Zeroizing::new(read(&key_path)?));
            out.client_certs
                .push(parse_client_cert(&cert_pem, &key_pem, path, key_path)?);
        } else if let Some(stem) = bytes.strip_suffix(b".key") {
            let cert_name = [stem, b".cert"].concat();
            if !has(&cert_name) {
                return Err(RegistryError::MissingClientCert {
                    key: path,
                    cert: dir.join(std::ffi::OsStr::from_bytes(&cert_name)),
                });
            }
        }
    }
    Ok(out)
}

/// The certificates of a PEM file of CA certificates (`path` names it in
/// the error): at least one, each usable as a trust anchor.
pub fn parse_ca_certs(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let invalid = || RegistryError::InvalidCaCert {
        path: path.to_owned(),
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid())?;
    let mut probe = RootCertStore::empty();
    for cert in &certs {
        probe.add(cert.clone()).map_err(|_| invalid())?;
    }
    if certs.is_empty() {
        return Err(invalid());
    }
    Ok(certs)
}

/// A client certificate chain (PEM) and its private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_client_cert(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: PathBuf,
    key_path: PathBuf,
) -> Result<ClientCert, RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidClientCert {
        cert: cert_path.clone(),
        key: key_path.clone(),
        reason: reason.to_owned(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| invalid("the certificate file holds no PEM certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
        invalid("the key file holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")
    })?;
    Ok(ClientCert {
        cert_path,
        key_path,
        chain,
        key,
    })
}

/// The rustls configuration for `host_port` (`host[:port]` as the user wrote
/// it), and the probe that tells whether its server asked for a client certificate.
pub(crate) fn client_config(
    opts: &ClientOptions,
    host_port: &str,
) -> Result<(rustls::ClientConfig, ClientAuthProbe), RegistryError> {
    let dir = match &opts.cert_dir {
        Some(dir) => Some(dir.clone()),
        None => per_host_cert_dir(&opts.cert_roots, &host_port.to_ascii_lowercase())?,
    };
    let CertDir {
        ca_certs: mut given,
        client_certs,
    } = match &dir {
        Some(dir) => read_cert_dir(dir)?,
        None => CertDir::default(),
    };
    for path in &opts.ca_certs {
        let pem = std::fs::read(path).map_err(|source| RegistryError::ReadCaCert {
            path: path.clone(),
            source,
        })?;
        given.extend(parse_ca_certs(&pem, path)?);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if opts.tls_verify {
        Arc::new(Verifier::new(given, &provider)?)
    } else {
        Arc::new(AnyCertificate(provider.signature_verification_algorithms))
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RegistryError::TlsSetup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // Several pairs: the first in name order is presented.
    let mut config = match client_certs.into_iter().next() {
        Some(client) => {
            let (cert, key) = (client.cert_path, client.key_path);
            builder
                .with_client_auth_cert(client.chain, client.key)
                .map_err(|e| RegistryError::InvalidClientCert {
                    cert,
                    key,
                    reason: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let probe = ClientAuthProbe {
        host: host_port.to_owned(),
        asked: Arc::new(AtomicBool::new(false)),
    };
    config.client_auth_cert_resolver = Arc::new(Recording {
        inner: config.client_auth_cert_resolver.clone(),
        asked: probe.asked.clone(),
    });
    Ok((config, probe))
}

/// Whether a registry asked for a client certificate during a handshake.
///
/// With TLS 1.3 a server refuses the client's certificate (or its absence)
/// after the client finished its handshake, and the alert it sends is often
/// lost to a plain "connection closed" (h2 drops it). This tells such a
/// refusal from a connection that merely broke.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuthProbe {
    host: String,
    asked: Arc<AtomicBool>,
}

impl ClientAuthProbe {
    /// `e`, or [`RegistryError::ClientCertificate`] when it is a broken
    /// connection to a registry that asked for a client certificate.
    pub(crate) fn explain(&self, e: RegistryError) -> RegistryError {
        match e {
            RegistryError::Transport { source, .. }
                if self.asked.load(Ordering::Relaxed) && !source.is_timeout() =>
            {
                RegistryError::ClientCertificate {
                    host: self.host.clone(),
                    source,
                }
            }
            e => e,
        }
    }
}

/// A client certificate resolver that notes that the server asked for one.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for Recording {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// Whether a file error means "nothing there for us" (missing, or not ours to read).
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}

/// webpki over the system roots and the given CA certificates, plus the
/// given certificates themselves as server certificates.
#[derive(Debug)]
struct Verifier {
    /// None when there is no trust anchor at all.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The user's certificates, accepted as the server's own.
    given: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(
        given: Vec<CertificateDer<'static>>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Verifier, RegistryError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "reading the system's CA certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system CA certificates");
        // Each parsed as a trust anchor already (parse_ca_certs).
        roots.add_parsable_certificates(given.iter().cloned());
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| RegistryError::TlsSetup(rustls::Error::General(e.to_string())))?,
            )
        };
        Ok(Verifier {
            webpki,
            given,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match &self.webpki {
            Some(webpki) => match webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            },
            None => rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        };
        if !self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        check_given_server_cert(end_entity, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What still holds for a server certificate the user gave as is: it names
/// the host, `now` is within its validity period, and its extended key usage
/// (if any) allows a TLS server.
fn check_given_server_cert(
    der: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let parsed = ParsedCertificate::try_from(der)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|_| bad())?;
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration();
    let not_after = validity.not_after.to_unix_duration();
    let time = Duration::from_secs(now.as_secs());
    if time < not_before {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before: UnixTime::since_unix_epoch(not_before),
            },
        ));
    }
    if time > not_after {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after: UnixTime::since_unix_epoch(not_after),
            },
        ));
    }
    match cert.tbs_certificate.get::<ExtendedKeyUsage>() {
        Ok(None) => Ok(()),
        Ok(Some((_, usage)))
            if usage
                .0
                .iter()
                .any(|oid| *oid == SERVER_AUTH || *oid == ANY_EXTENDED_KEY_USAGE) =>
        {
            Ok(())
        }
        Ok(Some(_)) => Err(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose,
        )),
        Err(_) => Err(bad()),
    }
}

/// `--tls-verify=false`: any certificate is accepted, as reqwest's own
/// `danger_accept_invalid_certs` does.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req … -addext "subjectAltName = IP:127.0.0.1,DNS:localhost"`
    /// self-signed with `basicConstraints=critical,CA:TRUE` (as `req -x509`
    /// makes it), valid 2026-01-01 to 2027-01-01.
    const SERVER_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBZTCCAQugAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv\n\
c3QwHhcNMjYwMTAxMDAwMDAwWhcNMjcwMTAxMDAwMDAwWjAUMRIwEAYDVQQDDAls\n\
b2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASmEzhGeBUyBbnaXPw6\n\
Yd6sN+yaCEIk5WaRvHtSdQqpK7FnhlTH3sXLI1SVl2jX6IpVHFORKxVTjc6m1eAo\n\
nIibo04wTDAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwDwYDVR0TAQH/BAUw\n\
AwEB/zAdBgNVHQ4EFgQUZK1BHu/RVVxPmA/P3vMNh4oj/QMwCgYIKoZIzj0EAwID\n\
SAAwRQIhALK8Cyz2UmuTsHUWyQ+fdlctVOblpY/pT2yqL/fi+xLFAiAjGJarOH9l\n\
17a7799BKH7dBUiOcBrVFlVxuIDicE6sFQ==\n\
-----END CERTIFICATE-----";
    /// The same, with `extendedKeyUsage=clientAuth` only.
    const CLIENT_ONLY_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBezCCASCgAwIBAgIBAjAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv\n\
c3QwHhcNMjYwMTAxMDAwMDAwWhcNMjcwMTAxMDAwMDAwWjAUMRIwEAYDVQQDDAls\n\
b2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASmEzhGeBUyBbnaXPw6\n\
Yd6sN+yaCEIk5WaRvHtSdQqpK7FnhlTH3sXLI1SVl2jX6IpVHFORKxVTjc6m1eAo\n\
nIibo2MwYTAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwDwYDVR0TAQH/BAUw\n\
AwEB/zATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQUZK1BHu/RVVxPmA/P\n\
3vMNh4oj/QMwCgYIKoZIzj0EAwIDSQAwRgIhAOUY9Z8H+IwKaUvTuVyiE4pn+Fd5\n\
HBvwm2wK2cp6cNSkAiEAtOGQ9ZRt1iledY7+oqRHj9R6k3Imm1SQy/E6dROO+dE=\n\
-----END CERTIFICATE-----";
    /// A self-signed client certificate …
    const CLIENT_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBdzCCAR2gAwIBAgIUHlQk5V+TyD8xBVc54CmLgTgatGswCgYIKoZIzj0EAwIw\n\
ETEPMA0GA1UEAwwGY2xpZW50MB4XDTI2MTIwNjA0MzQyM1oXDTM2MTIwMzA0MzQy\n\
M1owETEPMA0GA1UEAwwGY2xpZW50MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
3+zXwQseJpBfCkO0Kd5N8A1tihJ5Ywy38MSe3JPlTjeiaMkvmT9iHxALFjjkhp98\n\
yRhJTeSzJDk5cuL1bFYHT6NTMFEwHQYDVR0OBBYEFPd9kVw+RaJ8Nsqp4KGQG8yH\n\
Wwg0MB8GA1UdIwQYMBaAFPd9kVw+RaJ8Nsqp4KGQG8yHWwg0MA8GA1UdEwEB/wQF\n\
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAP+0NGK7rCJ7DGwZpFI0Z2hjFO7Mdlub\n\
7web/C9q7bx0AiAFHZK0wsbZrVjvscqH7JRslTbrtR1qPqwRavoeJxZNVQ==\n\
-----END CERTIFICATE-----";
    /// … and its key, PKCS#8 …
    const CLIENT_KEY_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS/F4TFJuLoEA/Ita\n\
dtNwSLkuiRtqxP+lvvo4Yjc30b6hRANCAATf7NfBCx4mkF8KQ7Qp3k3wDW2KEnlj\n\
DLfwxJ7ck+VON6JoyS+ZP2IfEAsWOOSGn3zJGElN5LMkOTly4vVsVgdP\n\
-----END PRIVATE KEY-----";
    /// … and SEC1.
    const CLIENT_KEY_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIEvxeExSbi6BAPyLWnbTcEi5LokbasT/pb76OGI3N9G+oAoGCCqGSM49\n\
AwEHoUQDQgAE3+zXwQseJpBfCkO0Kd5N8A1tihJ5Ywy38MSe3JPlTjeiaMkvmT9i\n\
HxALFjjkhp98yRhJTeSzJDk5cuL1bFYHTw==\n\
-----END EC PRIVATE KEY-----";

    /// 2026-06-01, 2027-06-01 and 2025-06-01 (UTC).
    const INSIDE: u64 = 1_780_272_000;
    const AFTER: u64 = 1_811_808_000;
    const BEFORE: u64 = 1_748_736_000;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).expect("a server name")
    }

    fn cert_error(r: Result<(), rustls::Error>) -> CertificateError {
        match r {
            Err(rustls::Error::InvalidCertificate(e)) => e,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[test]
    fn webpki_alone_refuses_a_self_signed_ca_as_the_server_certificate() {
        let mut roots = RootCertStore::empty();
        roots.add(der(SERVER_CERT)).expect("a trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("a verifier");
        let e = webpki
            .verify_server_cert(&der(SERVER_CERT), &[], &name("localhost"), &[], at(INSIDE))
            .expect_err("webpki refuses it");
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
    }

    #[test]
    fn a_given_server_certificate_is_accepted_with_its_name_dates_and_usage_checked() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = Verifier::new(vec![der(SERVER_CERT)], &provider).expect("a verifier");
        let verify = |cert: &str, host: &str, secs: u64| {
            v.verify_server_cert(&der(cert), &[], &name(host), &[], at(secs))
                .map(|_| ())
        };
        verify(SERVER_CERT, "localhost", INSIDE).expect("accepted by name");
        verify(SERVER_CERT, "127.0.0.1", INSIDE).expect("accepted by IP address");
        assert!(matches!(
            cert_error(verify(SERVER_CERT, "registry.example", INSIDE)),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ));
        assert!(matches!(
            cert_error(verify(SERVER_CERT, "localhost", AFTER)),
            CertificateError::ExpiredContext { .. }
        ));
        assert!(matches!(
            cert_error(verify(SERVER_CERT, "localhost", BEFORE)),
            CertificateError::NotValidYetContext { .. }
        ));
        // Only the very certificate given: another one for the same name is not.
        cert_error(verify(CLIENT_ONLY_CERT, "localhost", INSIDE));
        cert_error(verify(CLIENT_CERT, "client", INSIDE));
        // Given, but for clients only.
        assert_eq!(
            cert_error(check_given_server_cert(
                &der(CLIENT_ONLY_CERT),
                &name("localhost"),
                at(INSIDE)
            )),
            CertificateError::InvalidPurpose
        );
    }

    /// A temp dir with `files` (name, contents) in it.
    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("writing a test file");
        }
        dir
    }

    #[test]
    fn cert_dirs_read_crt_as_cas_and_cert_key_pairs_as_client_certificates() {
        let dir = dir_with(&[
            ("ca.crt", SERVER_CERT),
            ("b.cert", CLIENT_CERT),
            ("b.key", CLIENT_KEY_SEC1),
            ("a.cert", CLIENT_CERT),
            ("a.key", CLIENT_KEY_PKCS8),
            ("README", "not a certificate"),
            ("ca.pem", "ignored: neither .crt, .cert nor .key"),
        ]);
        let read = read_cert_dir(dir.path()).expect("a good cert dir");
        assert_eq!(read.ca_certs, vec![der(SERVER_CERT)]);
        let pairs: Vec<_> = read
            .client_certs
            .iter()
            .map(|c| (c.cert_path.clone(), c.key_path.clone(), c.chain.clone()))
            .collect();
        let p = |n: &str| dir.path().join(n);
        assert_eq!(
            pairs,
            vec![
                (p("a.cert"), p("a.key"), vec![der(CLIENT_CERT)]),
                (p("b.cert"), p("b.key"), vec![der(CLIENT_CERT)]),
            ]
        );
        assert!(matches!(read.client_certs[0].key, PrivateKeyDer::Pkcs8(_)));
        assert!(matches!(read.client_certs[1].key, PrivateKeyDer::Sec1(_)));
        // A directory that does not exist holds nothing.
        let none = read_cert_dir(&p("missing")).expect("no directory, no certificates");
        assert!(none.ca_certs.is_empty() && none.client_certs.is_empty());
    }

    #[test]
    fn unpaired_or_unreadable_cert_dir_files_are_errors_naming_them() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("client.cert", CLIENT_CERT)],
                "missing key DIR/client.key for client certificate DIR/client.cert \
                 (CA certificates take the extension .crt)",
            ),
            (
                &[("client.key", CLIENT_KEY_SEC1)],
                "missing client certificate DIR/client.cert for key DIR/client.key",
            ),
            (
                &[("ca.crt", CLIENT_KEY_SEC1)],
                "CA certificate file DIR/ca.crt holds no valid PEM certificate",
            ),
            (
                &[(
                    "ca.crt",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                )],
                "CA certificate file DIR/ca.crt holds no valid PEM certificate",
            ),
            (
                &[("c.cert", CLIENT_CERT), ("c.key", CLIENT_CERT)],
                "client certificate DIR/c.cert with key DIR/c.key: the key file holds no \
                 PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
            ),
            (
                &[("c.cert", CLIENT_KEY_SEC1), ("c.key", CLIENT_KEY_SEC1)],
                "client certificate DIR/c.cert with key DIR/c.key: the certificate file \
                 holds no PEM certificate",
            ),
        ];
        for (files, expected) in cases {
            let dir = dir_with(files);
            let e = read_cert_dir(dir.path()).expect_err("refused");
            let shown = e
                .to_string()
                .replace(&dir.path().display().to_string(), "DIR");
            assert_eq!(&shown, expected, "{files:?}");
        }
    }

    #[test]
    fn the_per_host_directory_is_the_first_root_that_has_one() {
        let roots: Vec<tempfile::TempDir> = (0..3).map(|_| dir_with(&[])).collect();
        let paths: Vec<PathBuf> = roots.iter().map(|r| r.path().to_owned()).collect();
        for root in &paths[1..] {
            std::fs::create_dir(root.join("reg.example:5000")).expect("a host dir");
        }
        assert_eq!(
            per_host_cert_dir(&paths, "reg.example:5000").expect("looked up"),
            Some(paths[1].join("reg.example:5000"))
        );
        assert_eq!(
            per_host_cert_dir(&paths, "reg.example").expect("looked up"),
            None
        );
        assert_eq!(per_host_cert_dir(&paths, "..").expect("looked up"), None);
    }

    #[test]
    fn client_config_reads_the_per_host_directory_of_the_lowercased_host() {
        let root = dir_with(&[]);
        let host_dir = root.path().join("reg.example:5000");
        std::fs::create_dir(&host_dir).expect("a host dir");
        std::fs::write(host_dir.join("me.cert"), CLIENT_CERT).expect("writing");
        std::fs::write(host_dir.join("me.key"), CLIENT_KEY_SEC1).expect("writing");
        let opts = ClientOptions {
            cert_roots: vec![root.path().to_owned()],
            ..ClientOptions::default()
        };
        let (config, _) = client_config(&opts, "Reg.Example:5000").expect("a TLS config");
        assert!(config.client_auth_cert_resolver.has_certs());
        let (other, _) = client_config(&opts, "other.example").expect("a TLS config");
        assert!(!other.client_auth_cert_resolver.has_certs());
        // --cert-dir replaces the lookup; a key that is not the certificate's is refused.
        let mismatched = dir_with(&[("me.cert", SERVER_CERT), ("me.key", CLIENT_KEY_SEC1)]);
        for tls_verify in [true, false] {
            let opts = ClientOptions {
                cert_dir: Some(mismatched.path().to_owned()),
                tls_verify,
                ..opts.clone()
            };
            let e =
                client_config(&opts, "reg.example:5000").expect_err("a key of another certificate");
            assert!(
                matches!(e, RegistryError::InvalidClientCert { .. }),
                "{e:?}"
            );
        }
    }
}
