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
        if is_ca_file_name(bytes) {
            let pem = match read_pem_file(&path) {
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
                read_pem_file(p).map_err(|source| RegistryError::ReadClientCert {
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

/// Whether a certificate directory's file of this name holds CA certificates
/// (`*.crt`, as containers/image's `strings.HasSuffix(name, ".crt")`), the one
/// rule both the TLS set-up and the install-config trust bundle list by.
fn is_ca_file_name(name: &[u8]) -> bool {
    name.ends_with(b".crt")
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
        invalid(
            "the key file holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC; \
             encrypted keys are not supported)",
        )
    })?;
    Ok(ClientCert {
        cert_path,
        key_path,
        chain,
        key,
    })
}

/// The certificate directory used for `host_port`: `--cert-dir`, else the
/// registry's own under the certs.d roots, if any.
fn cert_dir_in_use(
    opts: &ClientOptions,
    host_port: &str,
) -> Result<Option<PathBuf>, RegistryError> {
    match &opts.cert_dir {
        Some(dir) => {
            // Unlike a certs.d directory, one asked for must be there (skopeo
            // would pass over a mistyped --cert-dir without a word).
            std::fs::read_dir(dir).map_err(|source| RegistryError::ReadCertDir {
                path: dir.clone(),
                source,
            })?;
            Ok(Some(dir.clone()))
        }
        None => per_host_cert_dir(&opts.cert_roots, &host_port.to_ascii_lowercase()),
    }
}

/// The files of CA certificates trusted for `host_port` besides the system's:
/// every `--ca-cert`, then the `*.crt` files of the certificate directory in
/// use (in name order), as the TLS set-up reads them.
pub fn ca_cert_files(opts: &ClientOptions, host_port: &str) -> Result<Vec<PathBuf>, RegistryError> {
    let mut files = opts.ca_certs.clone();
    if let Some(dir) = cert_dir_in_use(opts, host_port)? {
        let read_err = |source| RegistryError::ReadCertDir {
            path: dir.clone(),
            source,
        };
        let mut crt: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        crt.retain(|p| p.file_name().is_some_and(|n| is_ca_file_name(n.as_bytes())));
        crt.sort();
        files.extend(crt);
    }
    Ok(files)
}

/// The rustls configuration for `host_port` (`host[:port]` as the user wrote
/// it), and the probe that tells whether its server asked for a client certificate.
pub(crate) fn client_config(
    opts: &ClientOptions,
    host_port: &str,
) -> Result<(rustls::ClientConfig, ClientAuthProbe), RegistryError> {
    let dir = cert_dir_in_use(opts, host_port)?;
    let CertDir {
        ca_certs: mut given,
        client_certs,
    } = match &dir {
        Some(dir) => read_cert_dir(dir)?,
        None => CertDir::default(),
    };
    for path in &opts.ca_certs {
        let pem = read_pem_file(path).map_err(|source| RegistryError::ReadCaCert {
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
            RegistryError::Transport { source, .. } | RegistryError::Tls { source, .. }
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

/// Largest certificate or key file read (a system CA bundle is about 200 KiB).
pub const MAX_PEM_FILE: u64 = 8 << 20;

/// The bytes of a certificate or key file: a regular file (links followed),
/// opened without blocking (a FIFO is refused, not waited on), at most
/// 8 MiB.
pub fn read_pem_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file =
        crate::files::open_regular(path, crate::files::Links::Follow).map_err(|e| match e {
            crate::files::OpenError::Io { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_PEM_FILE} bytes: not a certificate or key file"),
        ));
    }
    Ok(bytes)
}

/// Whether a file error means "nothing there for us" (missing, or not ours to read).
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}

/// webpki over the system roots; the given certificates that are CAs as
/// anchors with the limits they carry; and every given certificate as the
/// server's own.
#[derive(Debug)]
struct Verifier {
    /// webpki over the system roots (None when the system has none).
    system: Option<Arc<WebPkiServerVerifier>>,
    /// The given CA certificates as trust anchors, and the limits webpki
    /// drops from an anchor (it keeps only the subject, key and name
    /// constraints), checked on each path built to them.
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    limits: Vec<CaLimits>,
    /// Every certificate the user gave, accepted as the server's own.
    given: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// What a given CA certificate allows below it, beyond what webpki keeps.
#[derive(Debug)]
struct CaLimits {
    /// `pathLenConstraint`: most intermediate CAs between it and the server.
    path_len: Option<u8>,
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
        let system = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| RegistryError::TlsSetup(rustls::Error::General(e.to_string())))?,
            )
        };
        let mut anchors = Vec::new();
        let mut limits = Vec::new();
        for der in &given {
            // As Go's verifier (skopeo, podman): a certificate signs others only
            // if it is a CA, and only for the purposes its extended key usage lists.
            let Some(path_len) = ca_for_servers(der) else {
                continue;
            };
            // Each parsed as a trust anchor already (parse_ca_certs).
            if let Ok(anchor) = webpki::anchor_from_trusted_cert(der) {
                anchors.push(anchor.to_owned());
                limits.push(CaLimits { path_len });
            }
        }
        Ok(Verifier {
            system,
            anchors,
            limits,
            given,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// Verifies `end_entity` for `server_name` on a path to one of the given CAs.
    fn verify_by_given_cas(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let within_limits = |path: &webpki::VerifiedPath<'_>| {
            let anchor = path.anchor();
            let limit = self
                .anchors
                .iter()
                .zip(&self.limits)
                .find(|(a, _)| {
                    a.subject == anchor.subject
                        && a.subject_public_key_info == anchor.subject_public_key_info
                })
                .and_then(|(_, l)| l.path_len);
            match limit {
                Some(n) if path.intermediate_certificates().count() > usize::from(n) => {
                    Err(webpki::Error::PathLenConstraintViolated)
                }
                _ => Ok(()),
            }
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&within_limits),
        )
        .map_err(pki_error)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)
    }
}

fn is_unknown_issuer(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    )
}

/// `Some(pathLenConstraint)` when `der` is a CA certificate (basic
/// constraints `CA:TRUE`) whose extended key usage, if it has one, allows
/// TLS servers; `None` for any other certificate.
fn ca_for_servers(der: &CertificateDer<'_>) -> Option<Option<u8>> {
    use x509_cert::ext::pkix::BasicConstraints;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
    let (_, basic) = cert.tbs_certificate.get::<BasicConstraints>().ok()??;
    if !basic.ca {
        return None;
    }
    match cert.tbs_certificate.get::<ExtendedKeyUsage>().ok()? {
        Some((_, usage))
            if !usage
                .0
                .iter()
                .any(|oid| *oid == SERVER_AUTH || *oid == ANY_EXTENDED_KEY_USAGE) =>
        {
            None
        }
        _ => Some(basic.path_len_constraint),
    }
}

/// A webpki refusal as the rustls error reqwest reports (and
/// `transport_error` sorts by).
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let kind = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::CertNotValidForName(webpki::InvalidNameContext {
            expected,
            presented,
        }) => CertificateError::NotValidForNameContext {
            expected,
            presented,
        },
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        // A given CA's own limit: trusting it again would not help.
        E::PathLenConstraintViolated | E::NameConstraintViolation => {
            CertificateError::ApplicationVerificationFailure
        }
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(kind)
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
        let mut refused = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        if let Some(system) = &self.system {
            match system.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(e) => refused = e,
            }
        }
        if !self.anchors.is_empty() {
            match self.verify_by_given_cas(end_entity, intermediates, server_name, now) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                // The more telling reason wins: "unknown issuer" from one side
                // never hides what the other found wrong with the certificate.
                Err(e) if !is_unknown_issuer(&e) || is_unknown_issuer(&refused) => refused = e,
                Err(_) => {}
            }
        }
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
mod tests;
