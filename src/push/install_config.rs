//! install-config-mirrors.yaml: the part of an OpenShift `install-config.yaml`
//! a disconnected install needs (`imageDigestSources`, and the target's CA as
//! `additionalTrustBundle`), and the checking of that CA.
//!
//! The CA reaches the file only as certificates decoded from PEM, checked to
//! be DER certificates, and encoded again: no byte of the given file is
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

/// Whether `der` is one DER SEQUENCE spanning it exactly whose first element
/// is a SEQUENCE (a certificate's `tbsCertificate`).
fn is_der_certificate(der: &[u8]) -> bool {
    /// The (header length, content length) of the DER element at the start.
    fn element(b: &[u8]) -> Option<(usize, usize)> {
        let (&tag, rest) = b.split_first()?;
        if tag != 0x30 {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        Some((2 + n, len))
    }
    let Some((header, len)) = element(der) else {
        return false;
    };
    header.checked_add(len) == Some(der.len())
        && element(&der[header..]).is_some_and(|(h, l)| h + l <= len)
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
            // base64 is ASCII.
            out.push_str(&String::from_utf8_lossy(chunk));
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

    /// A real certificate (the test CA the registry tests make has the same shape).
    fn cert_der() -> Vec<u8> {
        // SEQUENCE { SEQUENCE { INTEGER 1 }, SEQUENCE {}, BIT STRING }
        vec![
            0x30, 0x0b, 0x30, 0x03, 0x02, 0x01, 0x01, 0x30, 0x00, 0x03, 0x02, 0x00, 0xff,
        ]
    }

    fn pem_of(der: &[u8]) -> String {
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(der)
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
            (&pem.replace("MAs", "M\"s"), "block 1 is not a DER"),
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
