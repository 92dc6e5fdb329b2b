//! Authentication against a scripted HTTP server: token services (basic,
//! anonymous, refresh token, static bearer), basic challenges, realms, and
//! the two-scope tokens of cross-repository mounts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::testutil::{MiniServer, Reply, Request, connect, insecure};
use super::*;

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.into(),
        password: p.into(),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn tags_page(tags: &[&str]) -> String {
    serde_json::json!({"name": "app", "tags": tags}).to_string()
}

/// A registry with a token service at `/token`. Tokens read
/// `tok-<n> <scopes…>`, so the registry can check the scope they carry.
fn token_registry(
    issued: Arc<AtomicUsize>,
    reject_first_token: bool,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    let rejected = AtomicUsize::new(0);
    move |req: &Request| {
        let host = req.header("host").unwrap_or("").to_owned();
        let challenge = |scope: &str| {
            let mut params = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
            if !scope.is_empty() {
                params.push_str(&format!(r#",scope="{scope}""#));
            }
            Reply::json(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .header("www-authenticate", params)
        };
        if req.path() == "/token" {
            let scopes = if req.method == "POST" {
                let form = String::from_utf8_lossy(&req.body).into_owned();
                let probe = Request {
                    target: format!("/?{form}"),
                    ..req.clone()
                };
                if probe.query("grant_type").as_deref() != Some("refresh_token")
                    || probe.query("refresh_token").as_deref() != Some("refresh-me")
                    || probe.query("service").as_deref() != Some("fake")
                {
                    return Reply::status(401);
                }
                probe.query("scope").unwrap_or_default()
            } else {
                let want = format!("Basic {}", b64("alice:pw"));
                if req.header("authorization").is_some_and(|a| a != want) {
                    return Reply::status(401);
                }
                req.query_all("scope").join(" ")
            };
            let n = issued.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({
                "access_token": format!("tok-{n} {scopes}"),
                "expires_in": 300
            });
            return Reply::json(200, body.to_string());
        }
        let need = match req.path() {
            "/v2/" => None,
            "/v2/_catalog" => Some("registry:catalog:*".to_owned()),
            p => p
                .strip_prefix("/v2/")
                .and_then(|p| p.split_once("/tags/list"))
                .map(|(repo, _)| format!("repository:{repo}:pull")),
        };
        let token = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        let Some(need) = need else {
            return if token.is_empty() {
                challenge("")
            } else {
                Reply::json(200, "{}")
            };
        };
        if !token.split(' ').any(|s| s == need) {
            return challenge(&need);
        }
        if reject_first_token && rejected.fetch_add(1, Ordering::SeqCst) == 0 {
            return challenge(&need);
        }
        if need.starts_with("registry") {
            Reply::json(200, r#"{"repositories":["app"]}"#)
        } else {
            Reply::json(200, tags_page(&["t"]))
        }
    }
}

#[tokio::test]
async fn token_flow_with_basic_credentials() {
    let issued = Arc::new(AtomicUsize::new(0));
    let server = MiniServer::start("127.0.0.1", token_registry(issued.clone(), false)).await;
    let r = connect(&server, basic("alice", "pw"))
        .await
        .expect("connect");
    assert_eq!(r.catalog().await.expect("catalog"), vec!["app"]);
    assert_eq!(r.tags("app").await.expect("tags"), vec!["t"]);
    assert_eq!(r.tags("app").await.expect("tags again"), vec!["t"]);
    // A login check at connect, then one token per scope (cached for the second tags()).
    assert_eq!(issued.load(Ordering::SeqCst), 3);

    let seen = server.seen();
    let token_reqs: Vec<&Request> = seen.iter().filter(|q| q.path() == "/token").collect();
    assert_eq!(token_reqs.len(), 3);
    assert!(token_reqs[0].query_all("scope").is_empty());
    assert_eq!(token_reqs[1].query_all("scope"), vec!["registry:catalog:*"]);
    assert_eq!(
        token_reqs[2].query_all("scope"),
        vec!["repository:app:pull"]
    );
    assert!(
        token_reqs
            .iter()
            .all(|q| q.query("service").as_deref() == Some("fake"))
    );
    for q in seen.iter().filter(|q| q.path() != "/token") {
        assert!(
            !q.header("authorization")
                .is_some_and(|a| a.starts_with("Basic")),
            "basic credentials must only go to the token service: {q:?}"
        );
    }

    let e = connect(&server, basic("alice", "wrong"))
        .await
        .expect_err("bad password");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong"));
}

#[tokio::test]
async fn token_flow_anonymous_identity_token_and_static_bearer() {
    let issued = Arc::new(AtomicUsize::new(0));
    let server = MiniServer::start("127.0.0.1", token_registry(issued.clone(), false)).await;

    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("anonymous");
    assert_eq!(r.tags("app").await.expect("tags"), vec!["t"]);
    let token_req = server
        .seen()
        .into_iter()
        .find(|q| q.path() == "/token")
        .expect("token request");
    assert_eq!(token_req.header("authorization"), None);

    let refresh = Credentials::IdentityToken {
        username: "alice".into(),
        token: "refresh-me".into(),
    };
    let r = connect(&server, refresh).await.expect("identity token");
    assert_eq!(r.catalog().await.expect("catalog"), vec!["app"]);
    assert!(
        server
            .seen()
            .iter()
            .any(|q| q.path() == "/token" && q.method == "POST")
    );

    let before = issued.load(Ordering::SeqCst);
    let r = connect(
        &server,
        Credentials::Bearer("tok-x repository:app:pull".into()),
    )
    .await
    .expect("static bearer");
    assert_eq!(r.tags("app").await.expect("tags"), vec!["t"]);
    let e = r
        .catalog()
        .await
        .expect_err("scope not in the static token");
    assert!(
        matches!(&e, RegistryError::Unauthorized { scope: Some(s), .. } if s == "registry:catalog:*"),
        "{e}"
    );
    assert_eq!(
        issued.load(Ordering::SeqCst),
        before,
        "a static token is never exchanged"
    );
}

/// Eight requests at once that need the same new token ask for it once.
#[tokio::test]
async fn concurrent_requests_share_one_token_fetch() {
    let issued = Arc::new(AtomicUsize::new(0));
    let server = MiniServer::start("127.0.0.1", token_registry(issued.clone(), false)).await;
    let r = connect(&server, basic("alice", "pw")).await.unwrap();
    let all = futures_util::future::join_all((0..8).map(|_| r.tags("app"))).await;
    assert!(
        all.iter()
            .all(|t| t.as_deref().ok() == Some(&["t".to_owned()][..]))
    );
    let scoped = server
        .seen()
        .iter()
        .filter(|q| q.path() == "/token" && q.query_all("scope") == ["repository:app:pull"])
        .count();
    assert_eq!(scoped, 1, "token requests for repository:app:pull");
}

/// A token service that answers the GET with 404 and takes only the OAuth2
/// POST gets the password grant, and never sees the password in a URL.
#[tokio::test]
async fn a_token_service_without_get_gets_the_password_grant() {
    let server = MiniServer::start("127.0.0.1", |req: &Request| {
        let host = req.header("host").unwrap_or("").to_owned();
        match (req.method.as_str(), req.path()) {
            ("GET", "/token") => Reply::status(404),
            ("POST", "/token") => {
                let form = String::from_utf8_lossy(&req.body).into_owned();
                let probe = Request {
                    target: format!("/?{form}"),
                    ..req.clone()
                };
                let ok = probe.query("grant_type").as_deref() == Some("password")
                    && probe.query("username").as_deref() == Some("alice")
                    && probe.query("password").as_deref() == Some("p&w=1")
                    && probe.query("service").as_deref() == Some("fake")
                    // No scope: the ping's token proving the credentials.
                    && matches!(probe.query("scope").as_deref(), None | Some("repository:app:pull"));
                if !ok {
                    return Reply::status(401);
                }
                Reply::json(200, r#"{"access_token":"granted","expires_in":300}"#)
            }
            (_, "/v2/") if req.header("authorization") == Some("Bearer granted") => {
                Reply::json(200, "{}")
            }
            (_, "/v2/app/tags/list") if req.header("authorization") == Some("Bearer granted") => {
                Reply::json(200, tags_page(&["v1"]))
            }
            _ => Reply::json(401, r#"{"errors":[]}"#).header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://{host}/token",service="fake",scope="repository:app:pull""#
                ),
            ),
        }
    })
    .await;
    let reg = connect(&server, basic("alice", "p&w=1")).await.unwrap();
    assert_eq!(reg.tags("app").await.unwrap(), vec!["v1"]);
    let requests = server.seen();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path() == "/token")
    );
    assert!(
        requests
            .iter()
            .all(|r| !r.target.contains("p%26w") && !r.target.contains("p&w")),
        "the password went into a URL"
    );
}

#[tokio::test]
async fn rejected_token_is_replaced_once() {
    let issued = Arc::new(AtomicUsize::new(0));
    let server = MiniServer::start("127.0.0.1", token_registry(issued.clone(), true)).await;
    let r = connect(&server, Credentials::Anonymous)
        .await
        .expect("connect");
    assert_eq!(r.tags("app").await.expect("tags"), vec!["t"]);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn basic_challenge_and_ping_failures() {
    let server = MiniServer::start("127.0.0.1", |req: &Request| {
        if req.header("authorization") == Some(&format!("Basic {}", b64("u:p"))[..]) {
            Reply::json(200, r#"{"repositories":["x"]}"#)
        } else {
            Reply::status(401).header("www-authenticate", r#"Basic realm="reg""#)
        }
    })
    .await;
    let e = connect(&server, Credentials::Anonymous)
        .await
        .expect_err("anonymous");
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    let r = connect(&server, basic("u", "p")).await.expect("basic");
    assert_eq!(r.catalog().await.expect("catalog"), vec!["x"]);

    let not_registry = MiniServer::start("127.0.0.1", |_: &Request| Reply::status(404)).await;
    let e = connect(&not_registry, Credentials::Anonymous)
        .await
        .expect_err("404");
    assert!(matches!(e, RegistryError::Http { status: 404, .. }), "{e}");

    // Loopback without a scheme and without verification: https fails, plain http works.
    let ok = MiniServer::start("127.0.0.1", |_: &Request| Reply::json(200, "{}")).await;
    let r = Registry::connect(&ok.host(), &insecure(Credentials::Anonymous))
        .await
        .expect("fallback");
    assert!(r.is_plain_http());
}

#[tokio::test]
async fn realm_that_is_not_http_is_refused() {
    // Credentials never go to a realm that is not https (or http when the
    // registry itself is plain http, as here).
    let server = MiniServer::start("127.0.0.1", |_: &Request| {
        Reply::status(401).header(
            "www-authenticate",
            r#"Bearer realm="ftp://evil.example/token",service="x""#,
        )
    })
    .await;
    let e = connect(&server, basic("u", "p"))
        .await
        .expect_err("bad realm");
    assert!(matches!(e, RegistryError::InvalidRealm { .. }), "{e}");
}

/// A token registry where a mount into `b` from `a` needs one token carrying
/// both `repository:b:pull,push` and `repository:a:pull`.
fn mount_registry() -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req: &Request| {
        let host = req.header("host").unwrap_or("").to_owned();
        if req.path() == "/token" {
            let scopes = if req.method == "POST" {
                let form = String::from_utf8_lossy(&req.body).into_owned();
                Request {
                    target: format!("/?{form}"),
                    ..req.clone()
                }
                .query_all("scope")
                .join(" ")
            } else {
                req.query_all("scope").join(" ")
            };
            let body = serde_json::json!({"token": format!("tok {scopes}"), "expires_in": 300});
            return Reply::json(200, body.to_string());
        }
        let token = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        let challenge = |scope: &str| {
            Reply::status(401).header(
                "www-authenticate",
                format!(r#"Bearer realm="http://{host}/token",service="fake",scope="{scope}""#),
            )
        };
        match req.path() {
            "/v2/" if token.is_empty() => challenge(""),
            "/v2/" => Reply::json(200, "{}"),
            "/v2/b/blobs/uploads/" if req.method == "POST" => {
                let has = |s: &str| token.split(' ').any(|t| t == s);
                if !has("repository:b:pull,push") {
                    return challenge("repository:b:pull,push");
                }
                match req.query("from") {
                    Some(from) if has(&format!("repository:{from}:pull")) => Reply::status(201),
                    _ => Reply::status(202).header("location", "/v2/b/blobs/uploads/u"),
                }
            }
            _ => Reply::status(404),
        }
    }
}

#[tokio::test]
async fn mount_token_carries_push_and_pull_scopes() {
    let digest = crate::digest::Digest::of(b"shared layer");
    for creds in [
        basic("alice", "pw"),
        Credentials::IdentityToken {
            username: "alice".into(),
            token: "refresh-me".into(),
        },
    ] {
        let server = MiniServer::start("127.0.0.1", mount_registry()).await;
        let r = connect(&server, creds).await.expect("connect");
        let outcome = r.mount_blob("b", &digest, "a").await.expect("mount");
        assert!(matches!(outcome, MountOutcome::Mounted), "{outcome:?}");
        r.mount_blob("b", &digest, "a")
            .await
            .expect("mount again, cached token");
        let up = r.start_upload("b").await.expect("push scope alone");
        up.cancel().await;

        let seen = server.seen();
        let tokens: Vec<&Request> = seen.iter().filter(|q| q.path() == "/token").collect();
        // The login check, the mount token (once), the push token.
        assert_eq!(tokens.len(), 3, "{tokens:#?}");
        let scopes = |q: &Request| {
            if q.method == "POST" {
                let form = String::from_utf8_lossy(&q.body).into_owned();
                vec![
                    Request {
                        target: format!("/?{form}"),
                        ..q.clone()
                    }
                    .query("scope")
                    .unwrap_or_default(),
                ]
            } else {
                q.query_all("scope")
            }
        };
        let want: Vec<String> = if tokens[1].method == "POST" {
            vec!["repository:b:pull,push repository:a:pull".into()]
        } else {
            vec!["repository:b:pull,push".into(), "repository:a:pull".into()]
        };
        assert_eq!(scopes(tokens[1]), want);
        let push: Vec<String> = vec!["repository:b:pull,push".into()];
        assert_eq!(scopes(tokens[2]), push);
        let mounts: Vec<&Request> = seen.iter().filter(|q| q.query("mount").is_some()).collect();
        assert_eq!(mounts[0].query("mount"), Some(digest.to_string()));
        assert_eq!(mounts[0].query("from").as_deref(), Some("a"));
    }
}
