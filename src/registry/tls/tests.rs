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
             PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC; encrypted keys are not supported)",
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

// Given certificates as CAs: made with openssl (EC P-256) on 2026-12-06,
// valid ten years.

/// A self-signed CA:FALSE certificate for IP:127.0.0.1 (given as the server's own).
const PINNED_NOT_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBhjCCASugAwIBAgIUeqF5TtDLT/6VLQ/YDqzghVb1AeYwCgYIKoZIzj0EAwIw\n\
ETEPMA0GA1UEAwwGcGlubmVkMB4XDTI2MTIwNjA1MDc0NloXDTM2MTIwMzA1MDc0\n\
NlowETEPMA0GA1UEAwwGcGlubmVkMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
0ImxJvNkUdJMOBwHYtZwmxnDHsJpXzRzS9ZM6D+CM83SCCwFu4QLMOU8gWhxq2s1\n\
/ylKamn6q7HnjoLKwdRUqaNhMF8wHQYDVR0OBBYEFISAtIl3lOstWp5O9S4t6DeR\n\
2raDMB8GA1UdIwQYMBaAFISAtIl3lOstWp5O9S4t6DeR2raDMA8GA1UdEQQIMAaH\n\
BH8AAAEwDAYDVR0TAQH/BAIwADAKBggqhkjOPQQDAgNJADBGAiEA4OS+XDgDnjvs\n\
yooDiv69I5WlSu05tunraR1pBalSe88CIQCOCccxtYmqcb+3UEjmI/d58UQ9DSAC\n\
2JJg2rugW1T7/g==\n\
-----END CERTIFICATE-----";

/// A certificate for IP:127.0.0.1 signed with PINNED_NOT_CA's key.
const SIGNED_BY_PINNED: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBlzCCAT6gAwIBAgIUI357TJkK8sVMRWUpybfDbFI5vMQwCgYIKoZIzj0EAwIw\n\
ETEPMA0GA1UEAwwGcGlubmVkMB4XDTI2MTIwNjA1MDc0NloXDTM2MTIwMzA1MDc0\n\
NlowDzENMAsGA1UEAwwEZXZpbDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCaZ\n\
zKIU5TUOhsjoZ6W9P27hiJiXq6XfdNloGxpPt8OAmqPHC8Ibly9nrtRG7Rc3D3Gi\n\
SszNz9nPvzSPRa0Jr3ejdjB0MA8GA1UdEQQIMAaHBH8AAAEwDAYDVR0TAQH/BAIw\n\
ADATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQUEQnIqWgATeAmTzgPL0Lp\n\
jvREH4owHwYDVR0jBBgwFoAUhIC0iXeU6y1ank71Li3oN5HatoMwCgYIKoZIzj0E\n\
AwIDRwAwRAIgMJrTXdA1E2ZGIlXg79d7WfqoE59JpYJgTMR/PAoOaNsCIEuVJEDb\n\
Oxfpvl5b+XW2ThNFe38jpP89pDtm+3baOc4D\n\
-----END CERTIFICATE-----";

/// A CA:TRUE certificate whose extended key usage is clientAuth only.
const CLIENT_AUTH_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBkTCCATigAwIBAgIUcLPR+MV7RuZlruq3Bws0hcXLz0kwCgYIKoZIzj0EAwIw\n\
FDESMBAGA1UEAwwJY2xpZW50LWNhMB4XDTI2MTIwNjA1MDc0NloXDTM2MTIwMzA1\n\
MDc0NlowFDESMBAGA1UEAwwJY2xpZW50LWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
AQcDQgAE4TKLsRYRvFxy6m5zzUBGN26W/u5oCQrQWKiWIG0xE6bg1R4yr+B2BO8w\n\
WABCDqCkG3wBG+VjqbQ6IMB7cXGudqNoMGYwHQYDVR0OBBYEFJ2VmUF8jd3e7dUT\n\
rgylPyHa4C+6MB8GA1UdIwQYMBaAFJ2VmUF8jd3e7dUTrgylPyHa4C+6MA8GA1Ud\n\
EwEB/wQFMAMBAf8wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDRwAw\n\
RAIgV0Lfm07kAW9PiAJDXbiHOMfvN39KuxdOGl5+IVQK+zsCIG8MYOrkGV3alW5Y\n\
ZPkPmKi9fVg3gUh47d+NE5IP53lC\n\
-----END CERTIFICATE-----";

/// A serverAuth certificate for IP:127.0.0.1 it signed.
const SIGNED_BY_CLIENT_AUTH_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBnDCCAUKgAwIBAgIUZmR+SiHyGvBRQVWNuQu+ROMbLx0wCgYIKoZIzj0EAwIw\n\
FDESMBAGA1UEAwwJY2xpZW50LWNhMB4XDTI2MTIwNjA1MDc0NloXDTM2MTIwMzA1\n\
MDc0NlowEDEOMAwGA1UEAwwFbGVhZmMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n\
AAQxkLrlKX1o08gMSql2adCYpAt1Eb50+QytC+QqQ+umBX6CAIBefceNy5fet+xl\n\
f7WJQF+ct4Ru5bwCsDk8ZGNKo3YwdDAPBgNVHREECDAGhwR/AAABMAwGA1UdEwEB\n\
/wQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFLkI3g+lPqSaELuv\n\
hIXGPesRg2s3MB8GA1UdIwQYMBaAFJ2VmUF8jd3e7dUTrgylPyHa4C+6MAoGCCqG\n\
SM49BAMCA0gAMEUCIQC31J9u3/43o9oOqt31X+3XlHy9fLe6GOGDWtjmME0XMwIg\n\
dih9GnPDs6hQpql8JXwCUZ7a2ZUx1070XjibTq4+0oA=\n\
-----END CERTIFICATE-----";

/// A CA:TRUE, pathlen:0 certificate.
const PATHLEN0_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBlTCCATqgAwIBAgIUJ/KV2WrWyILyXlCHsXNfC/Mv5bcwCgYIKoZIzj0EAwIw\n\
FjEUMBIGA1UEAwwLcGF0aGxlbjAtY2EwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAz\n\
MDUwNzQ2WjAWMRQwEgYDVQQDDAtwYXRobGVuMC1jYTBZMBMGByqGSM49AgEGCCqG\n\
SM49AwEHA0IABNY7SHt+vdF8So5NeQVifT4cBZTkngbEBB2hgngUMklz7b9C7KdI\n\
2Eu0pS5ETIDrb66o2GVwyONQCywJN23C0wKjZjBkMB0GA1UdDgQWBBRJElwKSWV1\n\
yxXeJuIevKYwiayOxDAfBgNVHSMEGDAWgBRJElwKSWV1yxXeJuIevKYwiayOxDAS\n\
BgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwICBDAKBggqhkjOPQQDAgNJ\n\
ADBGAiEAw72QLx7relHaggdGsXsI/Lwi9fb2jg3g14Du9kB1KfwCIQDbs+a+IfO+\n\
roy5CLALl/UuZLpaUpmO5uSYnuHvxdUGNw==\n\
-----END CERTIFICATE-----";

/// A CA:TRUE intermediate it signed.
const PATHLEN0_INTERMEDIATE: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBizCCATGgAwIBAgIUCDRaDhfWSjStnPqfp+oORPRi6HwwCgYIKoZIzj0EAwIw\n\
FjEUMBIGA1UEAwwLcGF0aGxlbjAtY2EwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAz\n\
MDUwNzQ2WjAQMQ4wDAYDVQQDDAVpbnRlcjBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABLBVAEeW1sShXXzCtsIn39nFx+/hQK/OaiePTgzefAtvLpvZEETz49Vt4uf2\n\
4OqPgxEpJog17O3w29BvZGgQW5OjYzBhMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P\n\
AQH/BAQDAgIEMB0GA1UdDgQWBBTVM+W3crb949FO3gpVhM8tAFRwLTAfBgNVHSME\n\
GDAWgBRJElwKSWV1yxXeJuIevKYwiayOxDAKBggqhkjOPQQDAgNIADBFAiBsaK0L\n\
yq1B3Kr1U4W+xbPTD6RNvhseJKbDPC2FY2oNpwIhALnBBx3xGWgBncdqS+VKOtQJ\n\
vMxrum8K5cXEPPuv2ieF\n\
-----END CERTIFICATE-----";

/// A certificate for IP:127.0.0.1 that intermediate signed.
const BELOW_PATHLEN0_INTERMEDIATE: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBmDCCAT6gAwIBAgIUDWtSO1R4PzA53mjZeMdueUpWS24wCgYIKoZIzj0EAwIw\n\
EDEOMAwGA1UEAwwFaW50ZXIwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAzMDUwNzQ2\n\
WjAQMQ4wDAYDVQQDDAVsZWFmcDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDPa\n\
w5FSJNHKH7GVYfZc2MlY54/1KBjXm7k2BQ9zrlp02Tc9K/6JNYvrMN6PGOvR8hkx\n\
uTBMI1xT0ivuNdy0RJejdjB0MA8GA1UdEQQIMAaHBH8AAAEwDAYDVR0TAQH/BAIw\n\
ADATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQUIpBO/C0zo6SxhA8Yaka8\n\
krLEAJQwHwYDVR0jBBgwFoAU1TPlt3K2/ePRTt4KVYTPLQBUcC0wCgYIKoZIzj0E\n\
AwIDSAAwRQIhAIG0Uil7Rqtdkh9j6oaImFkDKYH4Lryn0jjV2GNMW3dJAiAUcU5z\n\
t5nHVjeT4aOwI/WTgOvGmSO3BFw+5r2TOiB25Q==\n\
-----END CERTIFICATE-----";

/// A certificate for IP:127.0.0.1 PATHLEN0_CA signed directly.
const SIGNED_BY_PATHLEN0_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBnjCCAUSgAwIBAgIUCDRaDhfWSjStnPqfp+oORPRi6H0wCgYIKoZIzj0EAwIw\n\
FjEUMBIGA1UEAwwLcGF0aGxlbjAtY2EwHhcNMjYxMjA2MDUwNzUzWhcNMzYxMjAz\n\
MDUwNzUzWjAQMQ4wDAYDVQQDDAVsZWFmZDBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABJBdmNAS9btB/LboEChkCTqIub3Qx1DuOCPVtKqE14DituQcKz2mHLVBkO22\n\
xXKa5Ws1tmSQyU5syhRBTtSFE0ajdjB0MA8GA1UdEQQIMAaHBH8AAAEwDAYDVR0T\n\
AQH/BAIwADATBgNVHSUEDDAKBggrBgEFBQcDATAdBgNVHQ4EFgQUii0w49GynFb8\n\
sRZNUI52/C3zCnowHwYDVR0jBBgwFoAUSRJcCklldcsV3ibiHrymMImsjsQwCgYI\n\
KoZIzj0EAwIDSAAwRQIhAId4/Cgzza6COm7vBQFMvDLJL/+4pC7a7sl+pWLune95\n\
AiA1Pjkdwx+HQwVFY3SI9N8vzgGukyCle8Z0lF5iZb3n9Q==\n\
-----END CERTIFICATE-----";

/// A CA:TRUE certificate without limits.
const PLAIN_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBhTCCASugAwIBAgIUFBJRvCxMl3RcGjMWw+SKv+H808owCgYIKoZIzj0EAwIw\n\
EDEOMAwGA1UEAwwFb2stY2EwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAzMDUwNzQ2\n\
WjAQMQ4wDAYDVQQDDAVvay1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGPQ\n\
6Noa75U36VCTLB2LGmCxytclyeZJOoSMhUmBWer33EjHDSuvoELnkcgP6GvOa7ud\n\
6qgi6Y05ivW8wyC4nr2jYzBhMB0GA1UdDgQWBBTRPLZQb9MfvuKCM8y3aFA347or\n\
5TAfBgNVHSMEGDAWgBTRPLZQb9MfvuKCM8y3aFA347or5TAPBgNVHRMBAf8EBTAD\n\
AQH/MA4GA1UdDwEB/wQEAwICBDAKBggqhkjOPQQDAgNIADBFAiEAx+teJrWpnvWb\n\
bd5YyCahn4FYd5bSIPykQ3u8axGThK4CICZFmuPaHHysbgh9s3fw+gf3JIrEnXFr\n\
TFiVkKJh0EOu\n\
-----END CERTIFICATE-----";

/// A certificate for IP:127.0.0.1 it signed.
const SIGNED_BY_PLAIN_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBmTCCAT+gAwIBAgIUVEV7bJv34iqgVuTcbXz7LBFxtAwwCgYIKoZIzj0EAwIw\n\
EDEOMAwGA1UEAwwFb2stY2EwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAzMDUwNzQ2\n\
WjARMQ8wDQYDVQQDDAZsZWFmb2swWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARx\n\
lIoCRjTqcL5QiqNvt5sEXZYhcmOCTOrNdWgwrwtdhzdvSQHJLo0gAyh7qX3GvSib\n\
kdPioybssZAVwrKXGs+ao3YwdDAPBgNVHREECDAGhwR/AAABMAwGA1UdEwEB/wQC\n\
MAAwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFEZQRAQ6XUOLpIWnMCBH\n\
KvwUHhUAMB8GA1UdIwQYMBaAFNE8tlBv0x++4oIzzLdoUDfjuivlMAoGCCqGSM49\n\
BAMCA0gAMEUCIFHAdE3qWqHMMiBqbHPoaN3s3/OqBVOEWO4cpocPpBeEAiEA+14X\n\
3Q//YdcziSq1DAjFORsuY+SUz29cCfmyuXmMXu4=\n\
-----END CERTIFICATE-----";

/// 2030-01-01 (UTC), inside the validity of the certificates above.
const IN_2030: u64 = 1_893_456_000;

/// What [`Verifier`] says of `leaf` (above `chain`) for 127.0.0.1 when the
/// user gave `given`.
fn verdict(given: &[&str], leaf: &str, chain: &[&str]) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        Verifier::new(given.iter().map(|p| der(p)).collect(), &provider).expect("set up");
    let chain: Vec<CertificateDer<'static>> = chain.iter().map(|p| der(p)).collect();
    verifier
        .verify_server_cert(&der(leaf), &chain, &name("127.0.0.1"), &[], at(IN_2030))
        .map(|_| ())
}

#[test]
fn a_given_certificate_signs_others_only_as_a_ca_for_servers_within_its_path_length() {
    // Controls: a plain CA, and a pathlen:0 CA signing directly.
    verdict(&[PLAIN_CA], SIGNED_BY_PLAIN_CA, &[]).expect("a CA's server certificate");
    verdict(&[PATHLEN0_CA], SIGNED_BY_PATHLEN0_CA, &[]).expect("no intermediate: within pathlen 0");
    // The pinned certificate is the server's own, not a CA.
    verdict(&[PINNED_NOT_CA], PINNED_NOT_CA, &[]).expect("the given certificate as is");
    let refused = [
        (
            verdict(&[PINNED_NOT_CA], SIGNED_BY_PINNED, &[]),
            "signed by a CA:FALSE certificate",
        ),
        (
            verdict(&[CLIENT_AUTH_CA], SIGNED_BY_CLIENT_AUTH_CA, &[]),
            "signed by a CA for clients only",
        ),
        (
            verdict(
                &[PATHLEN0_CA],
                BELOW_PATHLEN0_INTERMEDIATE,
                &[PATHLEN0_INTERMEDIATE],
            ),
            "an intermediate below a pathlen:0 CA",
        ),
    ];
    for (result, what) in refused {
        assert!(
            matches!(result, Err(rustls::Error::InvalidCertificate(_))),
            "{what}: {result:?}"
        );
    }
}

/// A certificate the system's roots vouch for but not for this name: the
/// user's own CAs (which know nothing of it) must not turn the reason into
/// "unknown issuer", which would send the user to --ca-cert for nothing.
#[test]
fn the_given_cas_do_not_hide_why_the_system_roots_refused() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut system_roots = RootCertStore::empty();
    system_roots.add(der(PLAIN_CA)).expect("an anchor");
    let system =
        WebPkiServerVerifier::builder_with_provider(Arc::new(system_roots), provider.clone())
            .build()
            .expect("a verifier");
    let mut verifier = Verifier::new(vec![der(PATHLEN0_CA)], &provider).expect("set up");
    verifier.system = Some(system);
    let refused = verifier
        .verify_server_cert(
            &der(SIGNED_BY_PLAIN_CA),
            &[],
            &name("10.0.0.1"),
            &[],
            at(IN_2030),
        )
        .map(|_| ());
    assert!(
        matches!(
            refused,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{refused:?}"
    );
}

/// What the TLS set-up trusts from a certificate directory and what push
/// writes into install-config's trust bundle are the same files.
#[test]
fn the_trust_bundle_lists_the_ca_files_the_tls_set_up_reads() {
    let dir = dir_with(&[
        (".crt", PLAIN_CA),
        ("b.crt", PATHLEN0_CA),
        ("c.pem", PLAIN_CA),
    ]);
    let opts = ClientOptions {
        cert_dir: Some(dir.path().to_owned()),
        ..ClientOptions::default()
    };
    let files = ca_cert_files(&opts, "reg.example:5000").expect("listed");
    let read = read_cert_dir(dir.path()).expect("read");
    assert_eq!(files, [dir.path().join(".crt"), dir.path().join("b.crt")]);
    assert_eq!(read.ca_certs.len(), files.len());
}
