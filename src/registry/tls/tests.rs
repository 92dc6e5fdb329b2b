//! Unit tests of the TLS set-up: the given-certificate verifier with fixed
//! certificates and times, and the certificate-directory rules.

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
        let e = client_config(&opts, "reg.example:5000").expect_err("a key of another certificate");
        assert!(
            matches!(e, RegistryError::InvalidClientCert { .. }),
            "{e:?}"
        );
    }
    let missing = ClientOptions {
        cert_dir: Some(root.path().join("no-such-dir")),
        ..opts
    };
    let e =
        client_config(&missing, "reg.example:5000").expect_err("a --cert-dir that is not there");
    assert_eq!(
        e.to_string(),
        format!(
            "reading certificate directory {}",
            root.path().join("no-such-dir").display()
        )
    );
}
