//! Pushes against a scripted HTTP server, for what distribution 2.8 never
//! does: `OCI-Chunk-Min-Length`, `PATCH` answered `201`, relative and
//! `_state`-carrying locations, locations on another origin, `416`, an answer
//! whose `Range` disagrees, lying `Docker-Content-Digest` headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::testutil::{MiniServer, Reply, Request, connect};
use super::*;

/// How the scripted upload registry answers.
#[derive(Clone, Default)]
struct UploadScript {
    /// `OCI-Chunk-Min-Length` on the POST answer.
    min_chunk: Option<u64>,
    /// Answer PATCH with 201 (and no Location) instead of 202.
    patch_201: bool,
    /// Give the POST's Location relative to the request URL (`u1`) instead of
    /// as an absolute path with a `_state` query that changes on every PATCH.
    relative: bool,
    /// Leave the Location out of the POST answer.
    no_location: bool,
    /// Answer PATCH with 416.
    patch_416: bool,
    /// Store one byte less than each PATCH carries, and say so in `Range`.
    drop_a_byte: bool,
}

/// A registry that takes blob uploads for `app` and keeps the bytes in `store`.
fn upload_registry(
    script: UploadScript,
    store: Arc<std::sync::Mutex<Vec<u8>>>,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let states = AtomicUsize::new(0);
    move |req: &Request| {
        let mut data = store.lock().expect("lock");
        let location = |n: usize| {
            if script.relative {
                "u1".to_owned()
            } else {
                format!("/v2/app/blobs/uploads/u1?_state=s{n}")
            }
        };
        match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Reply::json(200, "{}"),
            ("POST", "/v2/app/blobs/uploads/") => {
                data.clear();
                let mut reply = Reply::status(202).header("range", "0-0");
                if !script.no_location {
                    reply = reply.header("location", location(0));
                }
                if let Some(n) = script.min_chunk {
                    reply = reply.header("oci-chunk-min-length", n.to_string());
                }
                reply
            }
            ("PATCH", "/v2/app/blobs/uploads/u1") => {
                if script.patch_416 {
                    // Like distribution: a body announced and never sent.
                    return Reply {
                        cut_after: Some(0),
                        ..Reply::status(416).body("range not satisfiable")
                    };
                }
                let n = states.fetch_add(1, Ordering::SeqCst);
                if !script.relative && req.query("_state") != Some(format!("s{n}")) {
                    return Reply::json(400, r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}"#);
                }
                let want = format!("{}-{}", data.len(), data.len() + req.body.len() - 1);
                if req.header("content-range") != Some(want.as_str()) {
                    return Reply::status(416);
                }
                let keep = req.body.len() - usize::from(script.drop_a_byte);
                data.extend_from_slice(&req.body[..keep]);
                let reply = if script.patch_201 {
                    Reply::status(201)
                } else {
                    Reply::status(202).header("location", location(n + 1))
                };
                reply.header("range", format!("0-{}", data.len() - 1))
            }
            ("PUT", "/v2/app/blobs/uploads/u1") => {
                data.extend_from_slice(&req.body);
                let have = Digest::of(&data);
                if req.query("digest") == Some(have.to_string()) {
                    Reply::status(201).header("docker-content-digest", have.to_string())
                } else {
                    Reply::json(
                        400,
                        r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
                    )
                }
            }
            ("DELETE", "/v2/app/blobs/uploads/u1") => Reply::status(204),
            _ => Reply::status(404),
        }
    }
}

/// Writes `data` to `up` in pieces of `piece` bytes.
async fn write_in_pieces(up: &mut Upload, data: &[u8], piece: usize) {
    for p in data.chunks(piece) {
        up.write(p).await.expect("write");
    }
    assert_eq!(up.len(), data.len() as u64);
}

fn patches(server: &MiniServer) -> Vec<Request> {
    server
        .seen()
        .into_iter()
        .filter(|q| q.method == "PATCH")
        .collect()
}

#[tokio::test]
async fn chunk_min_length_raises_the_chunk_size() {
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = UploadScript {
        min_chunk: Some(3_000_000),
        ..UploadScript::default()
    };
    let server = MiniServer::start("127.0.0.1", upload_registry(script, store.clone())).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_upload_chunk_size(1 << 20);
    let data: Vec<u8> = (0..7_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = Digest::of(&data);
    let mut up = r.start_upload("app").await.expect("start");
    assert_eq!(up.chunk_size(), 3_000_000);
    write_in_pieces(&mut up, &data, 777_777).await;
    assert_eq!(up.patches(), 2);
    up.finish(&digest).await.expect("finish");
    assert!(*store.lock().expect("lock") == data);

    let sent = patches(&server);
    assert_eq!(sent.len(), 2);
    for (i, p) in sent.iter().enumerate() {
        assert_eq!(p.body.len(), 3_000_000);
        let start = i * 3_000_000;
        let range = format!("{start}-{}", start + 3_000_000 - 1);
        assert_eq!(p.header("content-range"), Some(range.as_str()));
        assert_eq!(p.header("content-length"), Some("3000000"));
        assert_eq!(p.header("content-type"), Some("application/octet-stream"));
    }
    let put = server.seen().pop().expect("PUT");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.body.len(), 1_000_000);
    assert_eq!(put.query("digest"), Some(digest.to_string()));
}

#[tokio::test]
async fn state_in_the_location_is_carried_to_the_put() {
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server =
        MiniServer::start("127.0.0.1", upload_registry(UploadScript::default(), store)).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_upload_chunk_size(1000);
    let data = vec![42u8; 3500];
    let digest = Digest::of(&data);
    let mut up = r.start_upload("app").await.expect("start");
    write_in_pieces(&mut up, &data, 999).await;
    assert_eq!(up.patches(), 3);
    up.finish(&digest).await.expect("finish");
    let put = server.seen().pop().expect("PUT");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.query("_state").as_deref(), Some("s3"));
    assert_eq!(put.query("digest"), Some(digest.to_string()));
    assert_eq!(put.body.len(), 500);

    // A small blob: POST and PUT, no PATCH; an empty body is announced as such.
    let mut up = r.start_upload("app").await.expect("start");
    up.write(b"tiny").await.expect("write");
    up.finish(&Digest::of(b"tiny")).await.expect("finish");
    let mut up = r.start_upload("app").await.expect("start");
    assert!(up.is_empty());
    up.write(&[]).await.expect("nothing");
    up.finish(&Digest::of(b"")).await.expect("empty blob");
    let put = server.seen().pop().expect("PUT");
    assert_eq!(put.header("content-length"), Some("0"));
    let post = server.seen().into_iter().rfind(|q| q.method == "POST");
    assert_eq!(post.expect("POST").header("content-length"), Some("0"));
    for q in server.seen() {
        let lengths = q.headers.iter().filter(|(k, _)| k == "content-length");
        assert!(lengths.count() <= 1, "one Content-Length: {q:?}");
    }
    assert_eq!(patches(&server).len(), 3);

    // A wrong digest is refused by the registry, named, and the session cancelled.
    let mut up = r.start_upload("app").await.expect("start");
    up.write(b"content").await.expect("write");
    let wrong = Digest::of(b"other content");
    let e = up.finish(&wrong).await.expect_err("digest invalid");
    assert_eq!(e.code(), Some(&ErrorCode::DigestInvalid));
    let text = e.to_string();
    assert!(
        text.contains(&wrong.to_string()) && text.contains(" app") && !text.contains("_state"),
        "{text}"
    );
    assert_eq!(server.seen().pop().expect("DELETE").method, "DELETE");
}

#[tokio::test]
async fn patch_answered_201_and_a_relative_location() {
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = UploadScript {
        patch_201: true,
        relative: true,
        ..UploadScript::default()
    };
    let server = MiniServer::start("127.0.0.1", upload_registry(script, store.clone())).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_upload_chunk_size(100);
    let data: Vec<u8> = (0..=255).collect();
    let mut up = r.start_upload("app").await.expect("start");
    write_in_pieces(&mut up, &data, 7).await;
    assert_eq!(up.patches(), 2);
    up.finish(&Digest::of(&data)).await.expect("finish");
    assert_eq!(*store.lock().expect("lock"), data);
    for q in server
        .seen()
        .iter()
        .filter(|q| q.method != "GET" && q.method != "POST")
    {
        assert_eq!(q.path(), "/v2/app/blobs/uploads/u1", "{q:?}");
    }
}

#[tokio::test]
async fn missing_location_and_416_are_errors() {
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = UploadScript {
        no_location: true,
        ..UploadScript::default()
    };
    let server = MiniServer::start("127.0.0.1", upload_registry(script, store.clone())).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    let e = r.start_upload("app").await.expect_err("no Location");
    assert!(
        matches!(&e, RegistryError::InvalidResponse { reason, .. } if reason.contains("Location")),
        "{e}"
    );

    let script = UploadScript {
        patch_416: true,
        ..UploadScript::default()
    };
    let server = MiniServer::start("127.0.0.1", upload_registry(script, store)).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_upload_chunk_size(10);
    let mut up = r.start_upload("app").await.expect("start");
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), up.write(&[1; 25]))
        .await
        .expect("the 416 body is not waited for")
        .expect_err("416");
    assert!(
        matches!(
            &e,
            RegistryError::Refused {
                status: 416,
                method: "PATCH",
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("to app"), "{e}");
    assert_eq!(patches(&server).len(), 1, "a 416 is not retried");
    up.cancel().await;
    assert_eq!(server.seen().pop().expect("DELETE").method, "DELETE");
}

#[tokio::test]
async fn range_that_disagrees_with_what_was_sent_is_an_error() {
    // distribution 2.8 ignores Content-Range and appends whatever arrives: the
    // Range of its answer is the only sign that a chunk did not land whole.
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = UploadScript {
        drop_a_byte: true,
        ..UploadScript::default()
    };
    let server = MiniServer::start("127.0.0.1", upload_registry(script, store)).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_upload_chunk_size(10);
    let mut up = r.start_upload("app").await.expect("start");
    let e = up.write(&[1; 15]).await.expect_err("short Range");
    assert!(
        matches!(&e, RegistryError::SizeMismatch { expected: 10, found: 9, what, .. } if what.contains("app")),
        "{e}"
    );
}

#[tokio::test]
async fn location_on_another_origin_gets_no_credentials() {
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let storage = MiniServer::start("127.0.0.2", move |req: &Request| {
        let mut data = store.lock().expect("lock");
        data.extend_from_slice(&req.body);
        match req.method.as_str() {
            "PATCH" => Reply::status(202).header("location", "/up/u1?sig=2"),
            "PUT" if req.query("digest") == Some(Digest::of(&data).to_string()) => {
                Reply::status(201)
            }
            _ => Reply::status(400),
        }
    })
    .await;
    let elsewhere = format!("{}/up/u1?sig=1", storage.url());
    let server = MiniServer::start("127.0.0.1", move |req: &Request| {
        if req.header("authorization") != Some("Bearer sekrit") {
            return Reply::status(401).header("www-authenticate", r#"Bearer realm="x""#);
        }
        match req.path() {
            "/v2/" => Reply::json(200, "{}"),
            "/v2/app/blobs/uploads/" => Reply::status(202).header("location", elsewhere.clone()),
            _ => Reply::status(404),
        }
    })
    .await;
    let r = connect(&server, Credentials::Bearer("sekrit".into()))
        .await
        .expect("connect")
        .with_upload_chunk_size(10);
    let data = b"twenty-five bytes of data".to_vec();
    let mut up = r.start_upload("app").await.expect("start");
    up.write(&data).await.expect("write");
    up.finish(&Digest::of(&data)).await.expect("finish");
    let seen = storage.seen();
    assert_eq!(
        seen.iter().map(|q| q.method.as_str()).collect::<Vec<_>>(),
        vec!["PATCH", "PATCH", "PUT"]
    );
    assert_eq!(seen[0].query("sig").as_deref(), Some("1"));
    assert_eq!(seen[2].query("sig").as_deref(), Some("2"));
    for q in &seen {
        assert_eq!(q.header("authorization"), None, "credentials leaked: {q:?}");
    }
}

#[tokio::test]
async fn manifest_digests_are_checked() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let good = Digest::of(&manifest);
    let other = Digest::of(b"other");
    let body = manifest.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| {
        match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Reply::json(200, "{}"),
            ("PUT", "/v2/app/manifests/lies") => {
                Reply::status(201).header("docker-content-digest", other.to_string())
            }
            ("PUT", "/v2/app/manifests/v1") => Reply::status(201),
            // HEAD without Docker-Content-Digest: the manifest is fetched and hashed.
            ("HEAD", "/v2/app/manifests/v1") => Reply::status(200),
            ("GET", "/v2/app/manifests/v1") => Reply::status(200)
                .header("content-type", oci::OCI_MANIFEST)
                .body(body.clone()),
            ("HEAD", p) if p.starts_with("/v2/app/manifests/sha256:") => {
                Reply::status(200).header("docker-content-digest", other.to_string())
            }
            _ => Reply::status(404),
        }
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    let bytes = Bytes::from(manifest.clone());

    let e = r
        .put_manifest("app", "lies", oci::OCI_MANIFEST, bytes.clone())
        .await
        .expect_err("header digest");
    assert!(
        matches!(e, RegistryError::DigestMismatch { expected, found, .. } if expected == good && found == other),
        "{e}"
    );
    let put = server.seen().pop().expect("PUT");
    assert_eq!(put.header("content-type"), Some(oci::OCI_MANIFEST));
    assert_eq!(put.body, manifest);

    let before = server.seen().len();
    let e = r
        .put_manifest("app", &other.to_string(), oci::OCI_MANIFEST, bytes.clone())
        .await
        .expect_err("reference is another digest");
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert_eq!(server.seen().len(), before, "refused before sending");

    assert_eq!(
        r.put_manifest("app", "v1", oci::OCI_MANIFEST, bytes)
            .await
            .expect("push"),
        good
    );
    assert_eq!(
        r.manifest_digest("app", "v1").await.expect("HEAD then GET"),
        Some(good)
    );
    assert_eq!(r.manifest_digest("app", "nope").await.expect("404"), None);
    let e = r
        .manifest_digest("app", &good.to_string())
        .await
        .expect_err("header contradicts the digest");
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    let e = r
        .manifest_digest("app", "bad tag!")
        .await
        .expect_err("invalid");
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e}");
}
