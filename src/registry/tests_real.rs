//! Tests against a real `docker-registry` (CNCF distribution 2.8) on loopback.

use futures_util::StreamExt;
use futures_util::future::join_all;

use super::testutil::{RegistryConfig, TestRegistry};
use super::*;

fn insecure() -> ClientOptions {
    ClientOptions {
        tls_verify: false,
        ..ClientOptions::default()
    }
}

async fn plain_registry() -> TestRegistry {
    TestRegistry::start(RegistryConfig::default()).await
}

async fn connect_plain(reg: &TestRegistry) -> Registry {
    Registry::connect(&format!("http://{}", reg.host()), &insecure())
        .await
        .expect("connect")
}

async fn collect(mut s: BlobStream) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Bytes that do not compress or repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn catalog_of_120_repositories_in_one_and_in_many_pages() {
    let reg = plain_registry().await;
    let pusher = reg.pusher();
    let names: Vec<String> = (0..120)
        .map(|i| format!("ns{}/repo-{i:03}", i % 3))
        .collect();
    join_all(names.iter().map(|n| pusher.image(n, "v1", b"layer"))).await;

    let client = connect_plain(&reg).await;
    let mut all = client.catalog().await.expect("catalog");
    all.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(all, want);

    let paged = client.clone().with_catalog_page_size(7);
    let mut all = paged.catalog().await.expect("paged catalog");
    assert_eq!(all.len(), 120, "no duplicates across pages");
    all.sort();
    assert_eq!(all, want);
}

#[tokio::test]
async fn tags_of_one_repository() {
    let reg = plain_registry().await;
    let pusher = reg.pusher();
    let tags = ["latest", "1.0", "1.0.1", "sha256-abc.sig", "v2_rc-1"];
    for t in tags {
        pusher.image("team/app", t, t.as_bytes()).await;
    }
    let client = connect_plain(&reg).await;
    let mut got = client.tags("team/app").await.expect("tags");
    got.sort();
    let mut want: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    let e = client.tags("no/such").await.expect_err("unknown repo");
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.code(), Some(&ErrorCode::NameUnknown));
}

#[tokio::test]
async fn oci_index_by_tag_and_by_digest_keeps_exact_bytes() {
    let reg = plain_registry().await;
    let pusher = reg.pusher();
    let amd = pusher.image("multi", "amd64", b"amd64 layer").await;
    let arm = pusher.image("multi", "arm64", b"arm64 layer").await;
    // Unusual spacing and key order: the bytes must come back untouched.
    let index = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"manifests\": [\n    {{\"mediaType\": \"{}\", \"size\": {}, \"digest\": \"{}\", \"platform\": {{\"os\": \"linux\", \"architecture\": \"amd64\"}}}},\n    {{\"mediaType\": \"{}\", \"size\": {}, \"digest\": \"{}\", \"platform\": {{\"os\": \"linux\", \"architecture\": \"arm64\"}}}}\n  ]\n}}\n",
        oci::OCI_INDEX,
        oci::OCI_MANIFEST,
        amd.manifest.len(),
        amd.digest,
        oci::OCI_MANIFEST,
        arm.manifest.len(),
        arm.digest
    )
    .into_bytes();
    let index_digest = pusher
        .manifest("multi", "latest", oci::OCI_INDEX, &index)
        .await;

    let client = connect_plain(&reg).await;
    let m = client
        .manifest("multi", "latest")
        .await
        .expect("index by tag");
    assert_eq!(m.media_type, oci::OCI_INDEX);
    assert_eq!(&m.bytes[..], &index[..]);
    assert_eq!(m.digest, index_digest);

    let m = client
        .manifest("multi", &index_digest.to_string())
        .await
        .expect("index by digest");
    assert_eq!(&m.bytes[..], &index[..]);

    let m = client
        .manifest("multi", &amd.digest.to_string())
        .await
        .expect("child by digest");
    assert_eq!(m.media_type, oci::OCI_MANIFEST);
    assert_eq!(&m.bytes[..], &amd.manifest[..]);

    let missing = Digest::of(b"nothing").to_string();
    let e = client
        .manifest("multi", &missing)
        .await
        .expect_err("unknown digest");
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.code(), Some(&ErrorCode::ManifestUnknown));
    let e = client
        .manifest("multi", "nope")
        .await
        .expect_err("unknown tag");
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn docker_schema2_manifest_keeps_its_media_type() {
    let reg = plain_registry().await;
    let pusher = reg.pusher();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = pusher.blob("docker", config).await;
    let ld = pusher.blob("docker", b"layer").await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":5,"digest":"{ld}"}}]}}"#,
        oci::DOCKER_MANIFEST,
        config.len()
    );
    let d = pusher
        .manifest("docker", "v1", oci::DOCKER_MANIFEST, manifest.as_bytes())
        .await;
    let client = connect_plain(&reg).await;
    let m = client.manifest("docker", "v1").await.expect("manifest");
    assert_eq!(m.media_type, oci::DOCKER_MANIFEST);
    assert_eq!(m.digest, d);
    assert_eq!(&m.bytes[..], manifest.as_bytes());
}

#[tokio::test]
async fn blob_stream_round_trip_and_checks() {
    let reg = plain_registry().await;
    let pusher = reg.pusher();
    let data = noise(3 << 20, 7);
    let digest = pusher.blob("blobs", &data).await;
    let size = data.len() as u64;
    let client = connect_plain(&reg).await;

    let got = collect(client.blob("blobs", &digest, size).await.expect("blob"))
        .await
        .expect("verified");
    assert!(got == data, "streamed bytes differ");

    // The registry announces the real length: a wrong size fails before streaming.
    for wrong in [size - 1, size + 1] {
        let e = client
            .blob("blobs", &digest, wrong)
            .await
            .expect_err("size");
        assert!(
            matches!(e, RegistryError::SizeMismatch { expected, found, .. } if expected == wrong && found == size),
            "{e}"
        );
    }

    // The real body fed to a BlobStream expecting another digest or size.
    let raw = || async {
        let url = format!("{}/v2/blobs/blobs/{digest}", reg.base_url());
        let resp = reg.admin_client().get(url).send().await.expect("raw GET");
        resp.bytes_stream().map(|r| {
            r.map_err(|source| RegistryError::Transport {
                url: "raw".into(),
                source,
            })
        })
    };
    let wrong_digest = Digest::of(b"something else");
    let e = collect(BlobStream::new(raw().await, wrong_digest, size, "blob"))
        .await
        .expect_err("digest");
    assert!(
        matches!(e, RegistryError::DigestMismatch { expected, found, .. } if expected == wrong_digest && found == digest),
        "{e}"
    );
    let e = collect(BlobStream::new(raw().await, digest, size - 10, "blob"))
        .await
        .expect_err("too long");
    assert!(
        matches!(e, RegistryError::SizeMismatch { more: true, .. }),
        "{e}"
    );
    let e = collect(BlobStream::new(raw().await, digest, size + 10, "blob"))
        .await
        .expect_err("too short");
    assert!(
        matches!(e, RegistryError::SizeMismatch { found, more: false, .. } if found == size),
        "{e}"
    );

    let e = client
        .blob("blobs", &Digest::of(b"absent"), 6)
        .await
        .expect_err("unknown blob");
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn plain_http_rules() {
    let reg = plain_registry().await;
    let host = reg.host();

    // Explicit http:// needs tls_verify off.
    let e = Registry::connect(&format!("http://{host}"), &ClientOptions::default())
        .await
        .expect_err("refused");
    assert!(matches!(e, RegistryError::PlainHttpRefused { .. }), "{e}");

    // No scheme, loopback, verification off: https fails, http is tried.
    let r = Registry::connect(&host, &insecure())
        .await
        .expect("fallback");
    assert!(r.is_plain_http());
    assert_eq!(r.host(), host);
    assert!(r.catalog().await.expect("catalog").is_empty());

    // With verification on there is no fallback.
    let e = Registry::connect(&host, &ClientOptions::default())
        .await
        .expect_err("no fallback");
    assert!(matches!(e, RegistryError::Tls { .. }), "{e:?}");
}

#[tokio::test]
async fn basic_auth_over_tls() {
    let creds = ("user".to_owned(), "pass".to_owned());
    let reg = TestRegistry::start(RegistryConfig {
        tls: true,
        basic: Some(creds.clone()),
    })
    .await;
    let pushed = reg
        .pusher()
        .image("secure/app", "v1", b"secret layer")
        .await;
    let host = reg.host();
    let basic = Credentials::Basic {
        username: creds.0.clone(),
        password: creds.1.clone(),
    };
    let trusted = ClientOptions {
        ca_certs: vec![reg.ca_cert()],
        ..ClientOptions::default()
    };

    let e = Registry::connect(&host, &trusted)
        .await
        .expect_err("anonymous");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");

    let wrong = ClientOptions {
        credentials: Credentials::Basic {
            username: "user".into(),
            password: "wrong".into(),
        },
        ..trusted.clone()
    };
    let e = Registry::connect(&host, &wrong)
        .await
        .expect_err("wrong password");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(
        !format!("{e} {e:?}").contains("wrong"),
        "no secret in {e:?}"
    );

    let ok = ClientOptions {
        credentials: basic.clone(),
        ..trusted.clone()
    };
    for name in [
        host.clone(),
        format!("https://{host}"),
        format!("localhost:{}", reg.port),
    ] {
        let r = Registry::connect(&name, &ok)
            .await
            .expect("connect with CA and creds");
        assert!(!r.is_plain_http());
        assert_eq!(
            r.catalog().await.expect("catalog"),
            vec!["secure/app".to_owned()]
        );
        assert_eq!(
            r.tags("secure/app").await.expect("tags"),
            vec!["v1".to_owned()]
        );
        let m = r.manifest("secure/app", "v1").await.expect("manifest");
        assert_eq!(m.digest, pushed.digest);
        let layer = Digest::of(&pushed.layer);
        let got = collect(
            r.blob("secure/app", &layer, pushed.layer.len() as u64)
                .await
                .expect("blob"),
        )
        .await
        .expect("verified");
        assert_eq!(got, pushed.layer);
    }

    let untrusted = ClientOptions {
        credentials: basic.clone(),
        ..ClientOptions::default()
    };
    let e = Registry::connect(&host, &untrusted)
        .await
        .expect_err("untrusted CA");
    assert!(matches!(e, RegistryError::Certificate { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");

    let unverified = ClientOptions {
        credentials: basic,
        tls_verify: false,
        ..ClientOptions::default()
    };
    let r = Registry::connect(&host, &unverified)
        .await
        .expect("no verification");
    assert!(!r.is_plain_http(), "TLS works, so no fallback to http");
    assert_eq!(
        r.catalog().await.expect("catalog"),
        vec!["secure/app".to_owned()]
    );
}
