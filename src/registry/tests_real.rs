//! Tests against a real `docker-registry` (CNCF distribution 2.8) on loopback:
//! reads of what a raw pusher seeded, and every push flow of [`Registry`]
//! (monolithic and chunked uploads, mounts, manifests) plain and over TLS with
//! basic auth.

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
        ..RegistryConfig::default()
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

/// Uploads `data` to `repo` in pieces of `piece` bytes; returns the PATCH count.
async fn upload(r: &Registry, repo: &str, data: &[u8], piece: usize) -> u64 {
    let mut up = r.start_upload(repo).await.expect("start upload");
    for p in data.chunks(piece) {
        up.write(p).await.expect("write");
    }
    assert_eq!(up.len(), data.len() as u64);
    let patches = up.patches();
    up.finish(&Digest::of(data)).await.expect("finish");
    patches
}

async fn read_back(r: &Registry, repo: &str, data: &[u8]) -> Vec<u8> {
    let stream = r
        .blob(repo, &Digest::of(data), data.len() as u64)
        .await
        .expect("blob");
    collect(stream).await.expect("verified")
}

/// A small blob is one POST and one PUT; `has_blob` sees it, and not an unknown one.
async fn small_blob_flow(r: &Registry) {
    let data = noise(1024, 11);
    let digest = Digest::of(&data);
    assert!(!r.has_blob("up/small", &digest).await.expect("HEAD"));
    assert_eq!(upload(r, "up/small", &data, 1024).await, 0, "no PATCH");
    assert!(r.has_blob("up/small", &digest).await.expect("HEAD"));
    assert!(read_back(r, "up/small", &data).await == data);
    let unknown = Digest::of(b"never uploaded");
    assert!(!r.has_blob("up/small", &unknown).await.expect("HEAD"));

    // The empty blob: a PUT with an empty body.
    assert_eq!(upload(r, "up/small", b"", 1).await, 0);
    assert!(
        r.has_blob("up/small", &Digest::of(b""))
            .await
            .expect("HEAD")
    );
}

/// 5 MiB in 1 MiB chunks, written in odd pieces, from a spawned task.
async fn chunked_blob_flow(r: &Registry) {
    let r = r.clone().with_upload_chunk_size(1 << 20);
    let data = noise(5 << 20, 12);
    let task = {
        let (r, data) = (r.clone(), data.clone());
        tokio::spawn(async move { upload(&r, "up/chunked", &data, 777_777).await })
    };
    let patches = task.await.expect("upload task");
    assert!(patches >= 4, "{patches} PATCHes");
    assert!(read_back(&r, "up/chunked", &data).await == data);

    // An exact multiple of the chunk size: the last chunk goes with the PUT.
    let data = noise(2 << 20, 13);
    assert_eq!(upload(&r, "up/chunked", &data, 1 << 20).await, 1);
    assert!(read_back(&r, "up/chunked", &data).await == data);
}

/// Streamed chunks: nothing buffered, two PATCHes of known length, then the PUT.
async fn streamed_blob_flow(r: &Registry) {
    let data = noise(3 << 20, 15);
    let digest = Digest::of(&data);
    let mut up = r.start_upload("up/streamed").await.expect("start");
    let (first, second) = data.split_at(2 << 20);
    for part in [first, second] {
        let pieces: Vec<Result<Bytes, std::io::Error>> = part
            .chunks(300_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        up.write_stream(part.len() as u64, futures_util::stream::iter(pieces))
            .await
            .expect("streamed PATCH");
    }
    assert_eq!((up.patches(), up.len()), (2, 3 << 20));
    up.finish(&digest).await.expect("PUT");
    assert!(read_back(r, "up/streamed", &data).await == data);

    // A body that breaks off fails the request, and nothing is committed.
    let mut up = r.start_upload("up/streamed").await.expect("start");
    let broken: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("entry ended early")),
    ];
    assert!(
        up.write_stream(1000, futures_util::stream::iter(broken))
            .await
            .is_err()
    );
    up.cancel().await;
}

/// A PUT with a digest the content does not have is refused and leaves nothing.
async fn wrong_digest_flow(r: &Registry) {
    let r = r.clone().with_upload_chunk_size(64 << 10);
    let data = noise(200 << 10, 14);
    let wrong = Digest::of(b"not the content");
    let mut up = r.start_upload("up/wrong").await.expect("start");
    up.write(&data).await.expect("write");
    assert_eq!(up.patches(), 3);
    let e = up.finish(&wrong).await.expect_err("digest invalid");
    assert_eq!(e.code(), Some(&ErrorCode::DigestInvalid), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&wrong.to_string()) && text.contains("up/wrong"),
        "{text}"
    );
    assert!(!r.has_blob("up/wrong", &wrong).await.expect("HEAD"));
    assert!(
        !r.has_blob("up/wrong", &Digest::of(&data))
            .await
            .expect("HEAD")
    );
}

/// A blob in `a/x` mounts into `b/y`; one `a/x` lacks gets an upload session.
async fn mount_flow(r: &Registry) {
    let data = noise(3000, 15);
    let digest = Digest::of(&data);
    upload(r, "a/x", &data, 3000).await;
    let outcome = r.mount_blob("b/y", &digest, "a/x").await.expect("mount");
    assert!(matches!(outcome, MountOutcome::Mounted), "{outcome:?}");
    assert!(r.has_blob("b/y", &digest).await.expect("HEAD"));
    assert!(read_back(r, "b/y", &data).await == data);

    let other = noise(5000, 16);
    let other_digest = Digest::of(&other);
    let outcome = r
        .mount_blob("b/y", &other_digest, "a/x")
        .await
        .expect("mount of a blob a/x lacks");
    let MountOutcome::Upload(mut up) = outcome else {
        panic!("mounted a blob a/x does not have");
    };
    up.write(&other).await.expect("write");
    up.finish(&other_digest).await.expect("finish");
    assert!(r.has_blob("b/y", &other_digest).await.expect("HEAD"));
    assert!(!r.has_blob("a/x", &other_digest).await.expect("HEAD"));
}

/// A one-layer OCI image manifest over `config` and `layer`.
fn image_manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        oci::OCI_MANIFEST,
        oci::OCI_CONFIG,
        Digest::of(config),
        config.len(),
        Digest::of(layer),
        layer.len()
    )
    .into_bytes()
}

/// A manifest pushed by digest and by tag reads back byte for byte.
async fn manifest_flow(r: &Registry) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = noise(4096, 17);
    let manifest = image_manifest(config, &layer);
    let digest = Digest::of(&manifest);
    let bytes = Bytes::from(manifest.clone());

    // Blobs first: a manifest over missing blobs is refused.
    let e = r
        .put_manifest("up/img", "v1", oci::OCI_MANIFEST, bytes.clone())
        .await
        .expect_err("blobs missing");
    assert_eq!(e.code(), Some(&ErrorCode::ManifestBlobUnknown), "{e}");
    assert!(e.to_string().contains("manifest up/img:v1"), "{e}");

    upload(r, "up/img", config, 1 << 20).await;
    upload(r, "up/img", &layer, 1 << 20).await;
    let by_digest = r
        .put_manifest(
            "up/img",
            &digest.to_string(),
            oci::OCI_MANIFEST,
            bytes.clone(),
        )
        .await
        .expect("push by digest");
    assert_eq!(by_digest, digest);
    assert_eq!(
        r.manifest_digest("up/img", &digest.to_string())
            .await
            .expect("HEAD by digest"),
        Some(digest)
    );
    assert_eq!(
        r.manifest_digest("up/img", "v1")
            .await
            .expect("not tagged yet"),
        None
    );
    let by_tag = r
        .put_manifest("up/img", "v1", oci::OCI_MANIFEST, bytes)
        .await
        .expect("push by tag");
    assert_eq!(by_tag, digest);
    assert_eq!(
        r.manifest_digest("up/img", "v1")
            .await
            .expect("HEAD by tag"),
        Some(digest)
    );
    assert_eq!(
        r.manifest_digest("up/img", "nope")
            .await
            .expect("unknown tag"),
        None
    );
    assert_eq!(
        r.manifest_digest("no/such", "v1")
            .await
            .expect("unknown repo"),
        None
    );
    let m = r.manifest("up/img", "v1").await.expect("read back");
    assert_eq!(&m.bytes[..], &manifest[..]);
    assert_eq!(m.media_type, oci::OCI_MANIFEST);
    assert_eq!(m.digest, digest);
    assert_eq!(r.tags("up/img").await.expect("tags"), vec!["v1"]);
}

#[tokio::test]
async fn push_small_blob() {
    let reg = plain_registry().await;
    small_blob_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn push_chunked_blob() {
    let reg = plain_registry().await;
    chunked_blob_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn push_streamed_blob() {
    let reg = plain_registry().await;
    streamed_blob_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn push_with_wrong_digest_is_refused() {
    let reg = plain_registry().await;
    wrong_digest_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn mount_across_repositories() {
    let reg = plain_registry().await;
    mount_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn push_manifest_by_digest_and_tag() {
    let reg = plain_registry().await;
    manifest_flow(&connect_plain(&reg).await).await;
}

#[tokio::test]
async fn push_over_tls_with_basic_auth() {
    let creds = ("pusher".to_owned(), "pass".to_owned());
    let reg = TestRegistry::start(RegistryConfig {
        tls: true,
        basic: Some(creds.clone()),
        ..RegistryConfig::default()
    })
    .await;
    let trusted = ClientOptions {
        ca_certs: vec![reg.ca_cert()],
        credentials: Credentials::Basic {
            username: creds.0,
            password: creds.1,
        },
        ..ClientOptions::default()
    };
    let r = Registry::connect(&reg.host(), &trusted)
        .await
        .expect("connect");
    assert!(!r.is_plain_http());
    small_blob_flow(&r).await;
    chunked_blob_flow(&r).await;
    wrong_digest_flow(&r).await;
    mount_flow(&r).await;
    manifest_flow(&r).await;

    let wrong = ClientOptions {
        credentials: Credentials::Basic {
            username: "pusher".into(),
            password: "wrong".into(),
        },
        ..trusted
    };
    let e = Registry::connect(&reg.host(), &wrong)
        .await
        .expect_err("wrong password");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
}

#[tokio::test]
async fn read_only_registry_refuses_late() {
    let reg = TestRegistry::start(RegistryConfig {
        readonly: true,
        ..RegistryConfig::default()
    })
    .await;
    let r = connect_plain(&reg).await;
    let digest = Digest::of(b"blob");
    assert!(!r.has_blob("ro/app", &digest).await.expect("reads work"));
    let e = r.start_upload("ro/app").await.expect_err("read-only");
    assert!(
        matches!(
            &e,
            RegistryError::Refused {
                status: 405,
                method: "POST",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("ro/app"), "{e}");
    let e = r
        .mount_blob("ro/app", &digest, "ro/other")
        .await
        .expect_err("read-only");
    assert!(
        matches!(&e, RegistryError::Refused { status: 405, .. }),
        "{e}"
    );
}
