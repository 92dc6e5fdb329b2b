//! Tests against a scripted HTTP server, for what the real registry never does:
//! tag pagination, token services, redirects, broken bodies, lies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use super::testutil::{MiniServer, Reply, Request, connect};
use super::*;

async fn collect(mut s: BlobStream) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn tags_page(tags: &[&str]) -> String {
    serde_json::json!({"name": "app", "tags": tags}).to_string()
}

#[tokio::test]
async fn tag_pagination_follows_relative_and_absolute_links() {
    let server = MiniServer::start("127.0.0.1", |req: &Request| match req.target.as_str() {
        "/v2/" => Reply::json(200, "{}"),
        "/v2/app/tags/list" => Reply::json(200, tags_page(&["a", "b", "c"]))
            .header("link", r#"</v2/app/tags/list?last=c&n=3>; rel="next""#),
        "/v2/app/tags/list?last=c&n=3" => Reply::json(200, tags_page(&["c", "d"]))
            // path-relative, with other params and another link before it
            .header(
                "link",
                r#"<list?last=a>; rel="prev", <list?last=d&n=3>; rel="next"; title="more""#,
            ),
        "/v2/app/tags/list?last=d&n=3" => Reply::json(200, tags_page(&["e"])),
        _ => Reply::status(404),
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    assert_eq!(
        r.tags("app").await.expect("tags"),
        vec!["a", "b", "c", "d", "e"]
    );
}

#[tokio::test]
async fn tag_pagination_through_an_absolute_link() {
    let server = MiniServer::start("127.0.0.1", |req: &Request| {
        let host = req.header("host").unwrap_or("").to_owned();
        match req.target.as_str() {
            "/v2/" => Reply::json(200, "{}"),
            "/v2/app/tags/list" => Reply::json(200, tags_page(&["a"])).header(
                "link",
                format!(r#"<http://{host}/v2/app/tags/list?last=a>; rel="next""#),
            ),
            "/v2/app/tags/list?last=a" => Reply::json(200, tags_page(&["b"])),
            _ => Reply::status(404),
        }
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    assert_eq!(r.tags("app").await.expect("tags"), vec!["a", "b"]);
}

#[tokio::test]
async fn catalog_pagination_with_a_small_page_size() {
    let repos: Vec<String> = (0..23).map(|i| format!("r{i:02}")).collect();
    let all = repos.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| {
        if req.path() == "/v2/" {
            return Reply::json(200, "{}");
        }
        let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(100);
        let start = match req.query("last") {
            Some(last) => all
                .iter()
                .position(|r| *r == last)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let page: Vec<&String> = all.iter().skip(start).take(n).collect();
        let mut reply = Reply::json(200, serde_json::json!({ "repositories": page }).to_string());
        if start + n < all.len() {
            let last = page.last().map(|s| s.as_str()).unwrap_or("");
            reply = reply.header(
                "link",
                format!(r#"</v2/_catalog?last={last}&n={n}>; rel="next""#),
            );
        }
        reply
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect")
        .with_catalog_page_size(7);
    assert_eq!(r.catalog().await.expect("catalog"), repos);
    let seen = server.seen();
    let pages: Vec<&Request> = seen.iter().filter(|q| q.path() == "/v2/_catalog").collect();
    assert_eq!(pages.len(), 4);
    assert_eq!(pages[0].query("n").as_deref(), Some("7"));
}

#[tokio::test]
async fn pagination_loops_foreign_hosts_and_garbage_are_refused() {
    let server = MiniServer::start("127.0.0.1", |req: &Request| match req.target.as_str() {
        "/v2/" => Reply::json(200, "{}"),
        "/v2/loop/tags/list" => Reply::json(200, tags_page(&["a"]))
            .header("link", r#"</v2/loop/tags/list?p=2>; rel="next""#),
        "/v2/loop/tags/list?p=2" => Reply::json(200, tags_page(&["b"]))
            .header("link", r#"</v2/loop/tags/list>; rel="next""#),
        "/v2/away/tags/list" => Reply::json(200, tags_page(&["a"])).header(
            "link",
            r#"<http://elsewhere.example/v2/away/tags/list?p=2>; rel="next""#,
        ),
        "/v2/garbage/tags/list" => {
            Reply::json(200, tags_page(&["a"])).header("link", "next page please")
        }
        "/v2/notjson/tags/list" => Reply::json(200, "<html>"),
        _ => Reply::status(404),
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    let e = r.tags("loop").await.expect_err("loop");
    assert!(
        matches!(&e, RegistryError::Pagination { reason, .. } if reason.contains("loops")),
        "{e}"
    );
    let e = r.tags("away").await.expect_err("foreign");
    assert!(
        matches!(&e, RegistryError::Pagination { reason, .. } if reason.contains("another host")),
        "{e}"
    );
    let e = r.tags("garbage").await.expect_err("garbage");
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e}");
    let e = r.tags("notjson").await.expect_err("not json");
    assert!(matches!(e, RegistryError::InvalidResponse { .. }), "{e}");
    let e = r.tags("Bad/Name").await.expect_err("invalid name");
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e}");
}

#[tokio::test]
async fn blob_redirect_to_another_host_carries_no_credentials() {
    let data = b"layer bytes on a CDN".to_vec();
    let digest = Digest::of(&data);
    let cdn_data = data.clone();
    let cdn = MiniServer::start("127.0.0.2", move |_: &Request| {
        Reply::status(200).body(cdn_data.clone())
    })
    .await;
    let cdn_url = format!("{}/blob?sig=x", cdn.url());
    let server = MiniServer::start("127.0.0.1", move |req: &Request| match req.path() {
        "/v2/" => Reply::json(200, "{}"),
        _ => Reply::status(307).header("location", cdn_url.clone()),
    })
    .await;
    let r = connect(&server, Credentials::Bearer("sekrit".into()))
        .await
        .expect("connect");
    let got = collect(
        r.blob("app", &digest, data.len() as u64)
            .await
            .expect("blob"),
    )
    .await
    .expect("verified");
    assert_eq!(got, data);
    let reg_req = server.seen().pop().expect("registry request");
    assert_eq!(reg_req.header("authorization"), Some("Bearer sekrit"));
    let cdn_req = cdn.seen().pop().expect("cdn request");
    assert_eq!(
        cdn_req.header("authorization"),
        None,
        "credentials leaked to the CDN"
    );
}

#[tokio::test]
async fn broken_blob_body_resumes_with_range() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&data);
    let served = data.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| {
        if req.path() == "/v2/" {
            return Reply::json(200, "{}");
        }
        match req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
            None => Reply {
                cut_after: Some(30_000),
                ..Reply::status(200).body(served.clone())
            },
            Some(range) => {
                let from: usize = range.trim_end_matches('-').parse().expect("range");
                let total = served.len();
                Reply::status(206)
                    .header(
                        "content-range",
                        format!("bytes {from}-{}/{total}", total - 1),
                    )
                    .body(served[from..].to_vec())
            }
        }
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    let got = collect(
        r.blob("app", &digest, data.len() as u64)
            .await
            .expect("blob"),
    )
    .await
    .expect("resumed and verified");
    assert!(got == data);
    let ranges: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|q| q.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec!["bytes=30000-".to_owned()]);
}

#[tokio::test]
async fn broken_blob_body_fails_when_range_is_ignored() {
    let data = vec![7u8; 50_000];
    let digest = Digest::of(&data);
    let served = data.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| {
        if req.path() == "/v2/" {
            return Reply::json(200, "{}");
        }
        Reply {
            cut_after: Some(10_000),
            ..Reply::status(200).body(served.clone())
        }
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    let e = collect(
        r.blob("app", &digest, data.len() as u64)
            .await
            .expect("blob"),
    )
    .await
    .expect_err("cannot resume");
    assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| match req.path() {
        "/v2/" => Reply::json(200, "{}"),
        _ => match c.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::status(503),
            1 => Reply::json(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
            .header("retry-after", "0"),
            _ => Reply::json(200, r#"{"repositories":["x"]}"#),
        },
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    assert_eq!(r.catalog().await.expect("catalog"), vec!["x"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let always = MiniServer::start("127.0.0.1", |req: &Request| match req.path() {
        "/v2/" => Reply::json(200, "{}"),
        _ => Reply::json(
            503,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"down"}]}"#,
        ),
    })
    .await;
    let r = connect(&always, Credentials::Anonymous)
        .await
        .expect("connect");
    let e = r.catalog().await.expect_err("gives up");
    assert!(matches!(e, RegistryError::Http { status: 503, .. }), "{e}");
    assert!(e.is_retryable());
    assert_eq!(always.seen().len(), 1 + 4);
}

#[tokio::test]
async fn lying_registry_is_caught() {
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
    let good = Digest::of(&index);
    let body = index.clone();
    let server = MiniServer::start("127.0.0.1", move |req: &Request| match req.path() {
        "/v2/" => Reply::json(200, "{}"),
        "/v2/app/manifests/lies" => Reply::status(200)
            .header("content-type", oci::OCI_INDEX)
            .header("docker-content-digest", Digest::of(b"other").to_string())
            .body(body.clone()),
        "/v2/app/manifests/plain" => Reply::status(200)
            .header("content-type", "application/json")
            .body(body.clone()),
        "/v2/app/manifests/huge" => Reply::status(200)
            .header("content-type", oci::OCI_MANIFEST)
            .body(vec![b' '; 5 << 20]),
        "/v2/app/manifests/old" => Reply::status(200)
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
            .body(r#"{"schemaVersion":1,"name":"app","tag":"old","fsLayers":[]}"#),
        p if p.starts_with("/v2/app/manifests/sha256:") => Reply::status(200)
            .header("content-type", oci::OCI_INDEX)
            .body(body.clone()),
        p if p.starts_with("/v2/app/blobs/") => Reply::status(200).body("not what you asked for"),
        _ => Reply::status(404),
    })
    .await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");

    let e = r.manifest("app", "lies").await.expect_err("header digest");
    assert!(
        matches!(e, RegistryError::DigestMismatch { found, .. } if found == good),
        "{e}"
    );

    let m = r
        .manifest("app", "plain")
        .await
        .expect("generic content type");
    assert_eq!(m.media_type, oci::OCI_INDEX);

    let e = r.manifest("app", "huge").await.expect_err("too large");
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");

    let e = r.manifest("app", "old").await.expect_err("schema1");
    assert!(e.to_string().contains("schema1"), "{e}");

    let asked = Digest::of(b"another manifest");
    let e = r
        .manifest("app", &asked.to_string())
        .await
        .expect_err("by digest");
    assert!(
        matches!(e, RegistryError::DigestMismatch { expected, .. } if expected == asked),
        "{e}"
    );
    assert!(r.manifest("app", &good.to_string()).await.is_ok());

    let want = b"what you asked for!!!!";
    let stream = r
        .blob("app", &Digest::of(want), want.len() as u64)
        .await
        .expect("blob");
    let e = collect(stream).await.expect_err("wrong content");
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");

    let e = r
        .manifest("app", "bad tag!")
        .await
        .expect_err("invalid tag");
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e}");
}
