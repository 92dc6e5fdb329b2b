//! Checks on a fetched manifest's raw bytes: digest, media type, schema.
//!
//! Pure: the client reads the body and headers, these functions decide.

use serde::Deserialize;

use crate::digest::{Digest, DigestParseError};
use crate::oci;

use super::RegistryError;

/// The `Accept` header for manifests: every type bundle handles (a registry
/// serves an OCI index only if its type is listed).
pub(crate) fn accept_header() -> String {
    [
        oci::OCI_MANIFEST,
        oci::OCI_INDEX,
        oci::DOCKER_MANIFEST,
        oci::DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

/// What a checked manifest turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// sha256 of the raw bytes.
    pub digest: Digest,
    /// Media type, from `Content-Type` or else the body.
    pub media_type: String,
}

/// Checks a manifest body against what it was asked by and announced with.
///
/// - `reference`: the tag or digest asked for; a digest must match the bytes.
/// - `header_digest`: `Docker-Content-Digest`; a sha256 one must match (other
///   algorithms cannot be checked and are ignored).
/// - `content_type`: the `Content-Type` header; parameters are dropped, and a
///   missing or generic one (`application/json`, …) falls back to `mediaType`
///   in the body.
///
/// Docker schema 1 is refused.
pub(crate) fn check_manifest(
    what: &str,
    url: &str,
    body: &[u8],
    reference: &str,
    header_digest: Option<&str>,
    content_type: Option<&str>,
) -> Result<Checked, RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidResponse {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let digest = Digest::of(body);
    if let Ok(expected) = reference.parse::<Digest>()
        && expected != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: what.to_owned(),
            expected,
            found: digest,
        });
    }
    if let Some(header) = header_digest.map(str::trim).filter(|h| !h.is_empty()) {
        match header.parse::<Digest>() {
            Ok(announced) if announced != digest => {
                return Err(RegistryError::DigestMismatch {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: announced,
                    found: digest,
                });
            }
            Ok(_) => {}
            Err(DigestParseError::Algorithm(_)) => {
                tracing::debug!(%header, "Docker-Content-Digest in another algorithm, not checked");
            }
            Err(DigestParseError::Hex(_)) => {
                return Err(invalid("malformed sha256 Docker-Content-Digest header"));
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u64>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|_| invalid("the manifest is not a JSON object"))?;

    let header_type = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| !ct.is_empty());
    let generic = |ct: &str| {
        matches!(
            ct,
            "application/json" | "text/plain" | "application/octet-stream"
        )
    };
    let body_type = probe.media_type.filter(|m| !m.is_empty());
    let media_type = match (header_type, body_type) {
        (Some(h), _) if !generic(&h) => Some(h),
        (_, Some(b)) => Some(b),
        (h, None) => h,
    };
    let schema1 = |m: &str| m.starts_with("application/vnd.docker.distribution.manifest.v1");
    if probe.schema_version == Some(1) || media_type.as_deref().is_some_and(schema1) {
        return Err(RegistryError::Schema1 {
            what: what.to_owned(),
            media_type: media_type.unwrap_or_else(|| "none, schemaVersion 1".to_owned()),
        });
    }
    let media_type = match media_type {
        Some(m) if !generic(&m) => m,
        _ => {
            return Err(invalid(
                "the manifest has no media type (neither Content-Type nor mediaType)",
            ));
        }
    };
    Ok(Checked { digest, media_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

    fn check(
        body: &[u8],
        reference: &str,
        header: Option<&str>,
        ct: Option<&str>,
    ) -> Result<Checked, RegistryError> {
        check_manifest(
            "manifest r:t",
            "https://r/v2/r/manifests/t",
            body,
            reference,
            header,
            ct,
        )
    }

    #[test]
    fn digest_is_of_the_raw_bytes() {
        let c = check(INDEX, "latest", None, Some(oci::OCI_INDEX)).expect("valid");
        assert_eq!(c.digest, Digest::of(INDEX));
        assert_eq!(c.media_type, oci::OCI_INDEX);
    }

    #[test]
    fn reference_digest_must_match() {
        let d = Digest::of(INDEX).to_string();
        assert!(check(INDEX, &d, None, Some(oci::OCI_INDEX)).is_ok());
        let other = Digest::of(b"x").to_string();
        let e = check(INDEX, &other, None, Some(oci::OCI_INDEX)).expect_err("mismatch");
        assert!(
            matches!(e, RegistryError::DigestMismatch { expected, found, .. }
            if expected == Digest::of(b"x") && found == Digest::of(INDEX))
        );
    }

    #[test]
    fn header_digest_must_match() {
        let d = Digest::of(INDEX).to_string();
        assert!(check(INDEX, "t", Some(&d), Some(oci::OCI_INDEX)).is_ok());
        let other = Digest::of(b"x").to_string();
        assert!(matches!(
            check(INDEX, "t", Some(&other), Some(oci::OCI_INDEX)),
            Err(RegistryError::DigestMismatch { .. })
        ));
        assert!(check(INDEX, "t", Some("sha512:abcd"), Some(oci::OCI_INDEX)).is_ok());
        assert!(matches!(
            check(INDEX, "t", Some("sha256:zz"), Some(oci::OCI_INDEX)),
            Err(RegistryError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn content_type_parameters_are_dropped() {
        let c = check(
            INDEX,
            "t",
            None,
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .expect("valid");
        assert_eq!(c.media_type, oci::OCI_INDEX);
    }

    #[test]
    fn missing_or_generic_content_type_falls_back_to_the_body() {
        for ct in [
            None,
            Some(""),
            Some("application/json"),
            Some("text/plain; charset=utf-8"),
        ] {
            let c = check(INDEX, "t", None, ct).expect("valid");
            assert_eq!(c.media_type, oci::OCI_INDEX, "{ct:?}");
        }
        let bare = br#"{"schemaVersion":2,"config":{}}"#;
        assert!(matches!(
            check(bare, "t", None, None),
            Err(RegistryError::InvalidResponse { .. })
        ));
        let c = check(bare, "t", None, Some(oci::OCI_MANIFEST)).expect("header suffices");
        assert_eq!(c.media_type, oci::OCI_MANIFEST);
    }

    #[test]
    fn schema1_is_refused() {
        let body = br#"{"schemaVersion":1,"name":"a","tag":"t","fsLayers":[]}"#;
        for ct in [
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            Some("application/vnd.docker.distribution.manifest.v1+json"),
            Some("application/json"),
            None,
        ] {
            let e = check(body, "t", None, ct);
            assert!(
                matches!(e, Err(RegistryError::Schema1 { .. })),
                "{ct:?}: {e:?}"
            );
        }
        let e = check(
            body,
            "t",
            None,
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        )
        .expect_err("schema1");
        assert!(
            e.to_string()
                .contains("schema1 manifests are not supported"),
            "{e}"
        );
    }

    #[test]
    fn non_json_is_refused() {
        assert!(matches!(
            check(b"<html>", "t", None, Some(oci::OCI_MANIFEST)),
            Err(RegistryError::InvalidResponse { .. })
        ));
    }
}
