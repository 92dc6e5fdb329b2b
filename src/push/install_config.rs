//! install-config-mirrors.yaml: the part of an OpenShift `install-config.yaml`
//! a disconnected install needs (`imageDigestSources`, and the target's CA as
//! `additionalTrustBundle`), and the checking of that CA.
//!
//! The CA reaches the file only as certificates decoded from PEM, parsed as
//! X.509 certificates, and encoded again: no byte of the given file is
//! copied, so neither a private key beside the certificate nor stray text
//! can end up in a cluster's configuration.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::quoted::Yaml;

/// Why a CA file cannot be used as a trust bundle.
#[derive(Debug, thiserror::Error)]
pub enum TrustBundleError {
    /// No `BEGIN CERTIFICATE` block.
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A PEM block of another kind (a private key, a request…).
    #[error("holds a PEM block {label:?}, not only certificates")]
    NotACertificate {
        /// The block's label, printable ASCII only.
        label: String,
    },
    /// A block without its END line.
    #[error("PEM block {number} has no -----END CERTIFICATE----- line")]
    Unterminated {
        /// 1-based number of the block.
        number: usize,
    },
    /// A block whose body is not base64 of a DER certificate.
    #[error("PEM block {number} is not a DER certificate in base64")]
    BadCertificate {
        /// 1-based number of the block.
        number: usize,
    },
}

const BEGIN: &str = "-----BEGIN ";
const END_CERT: &str = "-----END CERTIFICATE-----";

/// Whether `der` is an X.509 certificate (parsed whole, as the TLS set-up does).
fn is_der_certificate(der: &[u8]) -> bool {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der).is_ok()
}

/// The certificates in the PEM text `pem`, checked and written again in
/// canonical PEM (64 base64 characters a line). Text outside the blocks is
/// ignored, as openssl does; any block that is not a certificate is refused.
pub fn canonical_pem_certificates(pem: &[u8]) -> Result<String, TrustBundleError> {
    let text = String::from_utf8_lossy(pem);
    let mut lines = text.lines().map(str::trim);
    let mut out = String::new();
    let mut number = 0;
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix(BEGIN) else {
            continue;
        };
        number += 1;
        let label = label.trim_end_matches('-');
        if label != "CERTIFICATE" {
            return Err(TrustBundleError::NotACertificate {
                label: super::quoted::comment_text(&label.chars().take(40).collect::<String>()),
            });
        }
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            if line == END_CERT {
                ended = true;
                break;
            }
            body.push_str(line);
        }
        if !ended {
            return Err(TrustBundleError::Unterminated { number });
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .ok()
            .filter(|der| is_der_certificate(der))
            .ok_or(TrustBundleError::BadCertificate { number })?;
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(&der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str(END_CERT);
        out.push('\n');
    }
    if out.is_empty() {
        return Err(TrustBundleError::NoCertificate);
    }
    Ok(out)
}

/// install-config-mirrors.yaml: `imageDigestSources` from `repos` (source
/// repository, its mirrors) and, if given, `additionalTrustBundle` (PEM made
/// by [`canonical_pem_certificates`]).
pub(super) fn install_config_snippet(
    comments: &[&str],
    repos: &[(String, Vec<String>)],
    trust_bundle: Option<&str>,
) -> String {
    let sources = repos
        .iter()
        .map(|(source, mirrors)| {
            Yaml::Map(vec![
                ("source", Yaml::str(source)),
                (
                    "mirrors",
                    Yaml::Seq(mirrors.iter().map(Yaml::str).collect()),
                ),
            ])
        })
        .collect();
    let mut entries = Vec::new();
    if let Some(pem) = trust_bundle {
        entries.push(("additionalTrustBundle", Yaml::literal(pem)));
    }
    entries.push(("imageDigestSources", Yaml::Seq(sources)));
    Yaml::document(comments, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::quoted::read_back;
    use serde_json::json;

    /// A real certificate: a CA made with openssl (EC P-256).
    fn cert_der() -> Vec<u8> {
        STANDARD
            .decode(
                "MIIBhTCCASugAwIBAgIUFBJRvCxMl3RcGjMWw+SKv+H808owCgYIKoZIzj0EAwIwEDEOMAwGA1UEAwwFb2st\
                 Y2EwHhcNMjYxMjA2MDUwNzQ2WhcNMzYxMjAzMDUwNzQ2WjAQMQ4wDAYDVQQDDAVvay1jYTBZMBMGByqG\
                 SM49AgEGCCqGSM49AwEHA0IABGPQ6Noa75U36VCTLB2LGmCxytclyeZJOoSMhUmBWer33EjHDSuvoELn\
                 kcgP6GvOa7ud6qgi6Y05ivW8wyC4nr2jYzBhMB0GA1UdDgQWBBTRPLZQb9MfvuKCM8y3aFA347or5TAf\
                 BgNVHSMEGDAWgBTRPLZQb9MfvuKCM8y3aFA347or5TAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQE\
                 AwICBDAKBggqhkjOPQQDAgNIADBFAiEAx+teJrWpnvWbbd5YyCahn4FYd5bSIPykQ3u8axGThK4CICZF\
                 muPaHHysbgh9s3fw+gf3JIrEnXFrTFiVkKJh0EOu",
            )
            .expect("base64")
    }

    /// `der` as canonical PEM (base64 in lines of 64).
    fn pem_of(der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn certificates_are_checked_and_written_again() {
        let pem = pem_of(&cert_der());
        let messy = format!("subject=CN = x\r\n  {}\nissuer: y\n{pem}", pem.trim());
        assert_eq!(
            canonical_pem_certificates(messy.as_bytes()).expect("two certificates"),
            format!("{pem}{pem}")
        );
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        for (bad, want) in [
            ("", "no PEM certificate"),
            ("just text\n", "no PEM certificate"),
            (key, "\"PRIVATE KEY\""),
            (&format!("{pem}{key}"), "\"PRIVATE KEY\""),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n", "has no -----END"),
            (&pem_of(b"not der"), "block 1 is not a DER"),
            (&pem.replace("MIIBhT", "MI\"BhT"), "block 1 is not a DER"),
            (&pem_of(&cert_der()[..12]), "not a DER"),
            (&pem_of(&[0x30, 0x00]), "not a DER"),
        ] {
            let e = canonical_pem_certificates(bad.as_bytes()).expect_err(bad);
            assert!(e.to_string().contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_snippet_reads_back_as_install_config_fields() {
        let pem = canonical_pem_certificates(pem_of(&cert_der()).as_bytes()).expect("a cert");
        let repos = vec![(
            "quay.io/a\n- evil".to_owned(),
            vec!["reg:5000/m/a".to_owned()],
        )];
        let text = install_config_snippet(&["c"], &repos, Some(&pem));
        assert!(
            text.contains("additionalTrustBundle: |\n  -----BEGIN"),
            "{text}"
        );
        assert_eq!(
            read_back::yaml(&text),
            [json!({
                "additionalTrustBundle": pem,
                "imageDigestSources": [{"source": "quay.io/a\n- evil", "mirrors": ["reg:5000/m/a"]}],
            })]
        );
        let text = install_config_snippet(&[], &repos, None);
        assert_eq!(
            read_back::yaml(&text)[0].as_object().map(|o| o.len()),
            Some(1)
        );
    }
}
