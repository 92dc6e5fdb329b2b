//! Tests of the harness itself: the fixtures do what the other tests assume.

use std::io::Read as _;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::support::images::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Platform,
};
use crate::support::seed::{copy_dir_all, skopeo_dest_flags, standard_layout};
use crate::support::token::{ADMIN, Access, Grant, SERVICE, glob_matches};
use crate::support::*;

#[test]
fn registry_starts_answers_restarts_and_stops() {
    let mut registry = TestRegistry::start();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    let response = curl(&registry.curl_args(), &format!("{}/v2/", registry.url()));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Docker-Distribution-Api-Version"),
        Some("registry/2.0")
    );

    registry.restart();
    assert_eq!(
        curl(&registry.curl_args(), &format!("{}/v2/", registry.url())).status,
        200
    );

    let port = registry.port();
    drop(registry);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "registry still listening after drop"
    );
}

#[test]
fn read_only_registry_refuses_pushes() {
    let registry = TestRegistry::builder().read_only().start();
    let dir = temp_dir();
    let layout = LayoutBuilder::new(dir.path())
        .image("x:1", ImageSpec::new(vec![LayerSpec::unique(1_000)]))
        .build();
    let output = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(layout.skopeo_ref("x:1"))
        .arg(format!("docker://{}/ro/x:1", registry.host()))
        .output()
        .expect("running skopeo");
    assert!(
        !output.status.success(),
        "a read-only registry accepted a push"
    );
    let catalog = curl(
        &registry.curl_args(),
        &format!("{}/v2/_catalog", registry.url()),
    );
    assert_eq!(catalog.status, 200, "reads still work");
}

#[test]
fn layouts_are_deterministic_and_layers_are_real() {
    let (a, b, c) = (temp_dir(), temp_dir(), temp_dir());
    let first = standard_layout(a.path());
    let second = standard_layout(b.path());
    let index = |dir: &std::path::Path| std::fs::read(dir.join("index.json")).expect("index.json");
    assert_eq!(index(a.path()), index(b.path()));
    let other = LayoutBuilder::new(c.path())
        .seed(1)
        .image(
            "openshift/php:5.5",
            ImageSpec::new(vec![LayerSpec::shared("base", 200_000)]),
        )
        .build();
    assert_ne!(
        other.image("openshift/php:5.5").manifests[0].layers[0].digest,
        first.image("openshift/php:5.5").manifests[0].layers[0].digest,
        "another seed gives other bytes"
    );

    // The base layer is one blob across images and platforms.
    let base = &first.image("openshift/php:5.5").manifests[0].layers[0];
    for name in [
        "openshift/php:5.6",
        "library/busybox:1.36",
        "library/nginx:1.25",
    ] {
        for manifest in &first.image(name).manifests {
            assert_eq!(
                &manifest.layers[0], base,
                "{name} {} shares the base",
                manifest.platform
            );
        }
    }
    let busybox = first.image("library/busybox:1.36");
    assert_eq!(busybox.top.media_type, OCI_INDEX);
    let platforms: Vec<Platform> = busybox.manifests.iter().map(|m| m.platform).collect();
    assert_eq!(
        platforms,
        [
            Platform::LINUX_AMD64,
            Platform::LINUX_ARM64,
            Platform::LINUX_ARM_V7
        ]
    );

    // Every blob is stored under its digest; diff_ids are the uncompressed tars'.
    for image in &second.images {
        for digest in image.blob_digests() {
            let bytes = std::fs::read(second.blob_path(&digest)).expect("blob in layout");
            assert_eq!(digest_of(&bytes), digest);
        }
        for manifest in &image.manifests {
            let config: serde_json::Value = serde_json::from_slice(
                &std::fs::read(second.blob_path(&manifest.config.digest)).expect("config"),
            )
            .expect("config JSON");
            assert_eq!(config["architecture"], manifest.platform.architecture);
            for (i, layer) in manifest.layers.iter().enumerate() {
                let gz = std::fs::File::open(second.blob_path(&layer.digest)).expect("layer blob");
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(gz)
                    .read_to_end(&mut tar)
                    .expect("gunzip layer");
                assert_eq!(config["rootfs"]["diff_ids"][i], digest_of(&tar));
                let entries = tar::Archive::new(tar.as_slice())
                    .entries()
                    .expect("tar")
                    .count();
                assert!(entries >= 3, "a directory, a label and data files");
            }
        }
    }
    // skopeo reads the layout by ref name.
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &first.skopeo_ref("openshift/php:5.6"),
    ]))
    .stdout;
    assert_eq!(digest_of(&raw), first.image("openshift/php:5.6").top.digest);
}

#[test]
fn standard_fixture_serves_every_manifest_kind() {
    let fixture = standard_fixture();
    let registry = &fixture.registry;
    let expected = [
        ("openshift/php:5.5", OCI_MANIFEST),
        ("openshift/php:5.6", OCI_MANIFEST),
        ("openshift/php:latest", OCI_MANIFEST),
        ("library/busybox:1.36", OCI_INDEX),
        ("library/alpine:3.19", DOCKER_MANIFEST_LIST),
        ("library/nginx:1.25", DOCKER_MANIFEST),
        ("tools/helm:3.14", OCI_MANIFEST),
    ];
    for (reference, media_type) in expected {
        let pushed = fixture.get(reference);
        assert_eq!(pushed.media_type, media_type, "{reference}");
        // skopeo, another client, sees the same bytes; and by digest as by tag.
        let raw = skopeo_inspect_raw(registry, &pushed.repo, &pushed.tag);
        assert_eq!(digest_of(&raw), pushed.digest, "{reference} via skopeo");
        let by_digest = fetch_manifest(registry, &pushed.repo, &pushed.digest);
        assert_eq!(by_digest.digest, pushed.digest);
        assert_eq!(by_digest.media_type, media_type);
    }
    assert_eq!(
        fixture.get("openshift/php:latest").digest,
        fixture.get("openshift/php:5.6").digest
    );
    // OCI content went in byte for byte; Docker conversions got new digests.
    for name in ["openshift/php:5.5", "library/busybox:1.36"] {
        assert_eq!(
            fixture.get(name).digest,
            fixture.layout.image(name).top.digest
        );
    }
    for name in ["library/alpine:3.19", "library/nginx:1.25"] {
        assert_ne!(
            fixture.get(name).digest,
            fixture.layout.image(name).top.digest
        );
    }
    // The Docker manifest list points at Docker schema 2 manifests.
    let list = fetch_manifest(registry, "library/alpine", "3.19").json();
    let children = list["manifests"].as_array().expect("manifests");
    assert_eq!(children.len(), 2);
    for child in children {
        assert_eq!(child["mediaType"], DOCKER_MANIFEST);
        let digest = child["digest"].as_str().expect("digest");
        assert_eq!(
            fetch_manifest(registry, "library/alpine", digest).media_type,
            DOCKER_MANIFEST
        );
    }
    // Repositories share the base layer, whatever the manifest format.
    let base = fixture.layout.image("openshift/php:5.5").manifests[0].layers[0]
        .digest
        .clone();
    for reference in ["openshift/php:5.5", "library/nginx:1.25"] {
        let pushed = fixture.get(reference);
        let manifest = fetch_manifest(registry, &pushed.repo, &pushed.tag).json();
        assert_eq!(
            manifest["layers"][0]["digest"],
            base.as_str(),
            "{reference}"
        );
    }
    let catalog = curl(
        &registry.curl_args(),
        &format!("{}/v2/_catalog", registry.url()),
    )
    .json();
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(
        repos,
        [
            "library/alpine",
            "library/busybox",
            "library/nginx",
            "openshift/php",
            "tools/helm"
        ]
    );
    assert_eq!(fixture.repositories().len(), 5);
}

#[test]
fn catalog_of_120_repositories_has_a_next_page() {
    let registry = TestRegistry::start();
    let names = seed_many_repositories(&registry, 120);
    assert_eq!(names.len(), 120);
    let first = curl(
        &registry.curl_args(),
        &format!("{}/v2/_catalog", registry.url()),
    );
    assert_eq!(first.status, 200);
    let link = first
        .header("Link")
        .expect("a Link header on the first catalog page");
    assert_eq!(link, "</v2/_catalog?last=many%2Fr099&n=100>; rel=\"next\"");
    assert_eq!(
        first.json()["repositories"].as_array().expect("list").len(),
        100
    );
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("link target");
    let second = curl(&registry.curl_args(), &format!("{}{next}", registry.url()));
    let rest = second.json()["repositories"]
        .as_array()
        .expect("list")
        .len();
    assert_eq!(rest, 20);
    assert_eq!(second.header("Link"), None);
    // The copies are real repositories.
    let original = fetch_manifest(&registry, "many/r000", "1");
    assert_eq!(fetch_manifest(&registry, "many/r119", "1"), original);
    let tags = curl(
        &registry.curl_args(),
        &format!("{}/v2/many/r077/tags/list", registry.url()),
    )
    .json();
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
}

#[test]
fn paging_proxy_pages_tags_and_forwards_the_rest() {
    let registry = TestRegistry::start();
    let layout_dir = temp_dir();
    let layout = standard_layout(layout_dir.path());
    skopeo_push(
        &registry,
        &layout,
        "openshift/php:5.5",
        "app/web:v0",
        Format::Oci,
    );
    // Seven more tags by copying the tag directory in storage.
    let tags_dir = registry.repositories_dir().join("app/web/_manifests/tags");
    for i in 1..8 {
        copy_dir_all(&tags_dir.join("v0"), &tags_dir.join(format!("v{i}")));
    }
    let proxy = PagingProxy::in_front_of(&registry, 3);

    let mut url = format!("{}/v2/app/web/tags/list", proxy.url());
    let mut pages = Vec::new();
    loop {
        let page = curl(&[], &url);
        assert_eq!(page.status, 200);
        let tags: Vec<String> = serde_json::from_value(page.json()["tags"].clone()).expect("tags");
        assert!(tags.len() <= 3);
        pages.push(tags);
        match page.header("Link") {
            Some(link) => {
                assert!(link.ends_with("rel=\"next\""), "{link}");
                let target = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("link target");
                assert!(
                    target.starts_with("/v2/app/web/tags/list?n=3&last="),
                    "{target}"
                );
                url = format!("{}{target}", proxy.url());
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), expected);
    assert_eq!(proxy.requests("/v2/app/web/tags/list"), 3);

    // A long list comes chunked from upstream; the proxy still pages it.
    for i in 0..600 {
        copy_dir_all(
            &tags_dir.join("v0"),
            &tags_dir.join(format!("long-tag-{i:04}")),
        );
    }
    let direct = curl(&[], &format!("{}/v2/app/web/tags/list", registry.url()));
    assert_eq!(direct.header("Transfer-Encoding"), Some("chunked"));
    let page = curl(
        &[],
        &format!(
            "{}/v2/app/web/tags/list?n=2&last=long-tag-0597",
            proxy.url()
        ),
    );
    assert_eq!(
        page.json()["tags"],
        serde_json::json!(["long-tag-0598", "long-tag-0599"])
    );
    assert!(
        page.header("Link")
            .is_some_and(|l| l.contains("last=long-tag-0599"))
    );

    // Everything else passes through: reads with their headers, and a push
    // (POST, PATCH with a streamed body, PUT) with skopeo through the proxy.
    let mut args = vec![
        "--header".to_owned(),
        format!("Accept: {}", crate::support::seed::ACCEPT_ALL),
    ];
    args.push("--silent".to_owned());
    let manifest = curl(&args, &format!("{}/v2/app/web/manifests/v0", proxy.url()));
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("Docker-Content-Digest"),
        Some(digest_of(&manifest.body).as_str())
    );
    assert_eq!(manifest.header("Content-Type"), Some(OCI_MANIFEST));
    let missing = curl(&args, &format!("{}/v2/app/nothing/tags/list", proxy.url()));
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("NAME_UNKNOWN"));

    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(layout.skopeo_ref("library/busybox:1.36"))
        .arg(format!("docker://{}/via/proxy:1", proxy.host())));
    let pushed = fetch_manifest(&registry, "via/proxy", "1");
    assert_eq!(
        pushed.digest,
        layout.image("library/busybox:1.36").top.digest
    );
    // A chunked request body (a monolithic blob upload) and a large response.
    let dir = temp_dir();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, vec![7u8; 300_000]).expect("writing a blob");
    let digest = format!("sha256:{}", sha256_file(&blob));
    let post = ["--request".to_owned(), "POST".to_owned()];
    let started = curl(
        &post,
        &format!("{}/v2/via/proxy/blobs/uploads/", proxy.url()),
    );
    assert_eq!(started.status, 202);
    let location = started.header("Location").expect("upload Location");
    assert!(
        location.starts_with(&proxy.url()),
        "Location points back at the proxy: {location}"
    );
    let upload = run(Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .args(["--request", "PUT", "--header", "Transfer-Encoding: chunked"])
        .args([
            "--header",
            "Content-Type: application/octet-stream",
            "--data-binary",
        ])
        .arg(format!("@{}", blob.display()))
        .arg(format!("{location}&digest={digest}")));
    assert_eq!(String::from_utf8_lossy(&upload.stdout), "201");
    let fetched = curl(&[], &format!("{}/v2/via/proxy/blobs/{digest}", proxy.url()));
    assert_eq!(digest_of(&fetched.body), digest);
    let head = curl(
        &["--head".to_owned()],
        &format!("{}/v2/via/proxy/blobs/{digest}", proxy.url()),
    );
    assert_eq!(head.header("Content-Length"), Some("300000"));

    let counts = proxy.counts();
    assert!(
        counts
            .keys()
            .any(|k| k.starts_with("PATCH /v2/via/proxy/blobs/uploads/")),
        "{counts:#?}"
    );
    assert_eq!(
        counts.get("PUT /v2/via/proxy/manifests/1"),
        Some(&1),
        "{counts:#?}"
    );
}

#[test]
fn tls_htpasswd_registry_needs_the_ca_and_the_credentials() {
    let registry = TestRegistry::builder()
        .htpasswd("alice", "s3cret")
        .tls()
        .start();
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let v2 = format!("{}/v2/", registry.url());
    let ca = registry.ca_cert_path().display().to_string();

    let anonymous = curl(&["--cacert".to_owned(), ca.clone()], &v2);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    assert_eq!(curl(&registry.curl_args(), &v2).status, 200);
    let localhost = v2.replace("127.0.0.1", "localhost");
    assert_eq!(
        curl(&registry.curl_args(), &localhost).status,
        200,
        "the certificate names localhost too"
    );
    // Without the CA the certificate is not trusted (curl exit 60, no answer).
    let untrusted = Command::new("curl")
        .args(["--silent", "--user", "alice:s3cret", &v2])
        .status()
        .expect("curl");
    assert_eq!(untrusted.code(), Some(60));
    let wrong_password = curl(
        &[
            "--cacert".to_owned(),
            ca,
            "--user".to_owned(),
            "alice:nope".to_owned(),
        ],
        &v2,
    );
    assert_eq!(wrong_password.status, 401);

    let layout_dir = temp_dir();
    let layout = standard_layout(layout_dir.path());
    let pushed = skopeo_push(
        &registry,
        &layout,
        "openshift/php:5.5",
        "secure/php:5.5",
        Format::Oci,
    );
    assert_eq!(pushed.digest, layout.image("openshift/php:5.5").top.digest);
    assert_eq!(skopeo_dest_flags(&registry).len(), 2);
    let refused = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-no-creds"])
        .arg(format!("--dest-cert-dir={}", registry.cert_dir().display()))
        .arg(layout.skopeo_ref("openshift/php:5.6"))
        .arg(format!("docker://{}/secure/php:5.6", registry.host()))
        .output()
        .expect("skopeo");
    assert!(!refused.status.success(), "anonymous push was accepted");
}

#[test]
fn token_registry_takes_only_valid_signed_tokens_with_the_scope() {
    let server = TokenServer::builder()
        .user(User::new("puller", "pw").allow("a/*", &["pull"]))
        .anonymous_pull("open/*")
        .start();
    let registry = TestRegistry::builder().token_auth(&server).start();
    assert!(registry.is_token_auth());
    let catalog = format!("{}/v2/_catalog", registry.url());
    let bearer = |token: String| {
        vec![
            "--silent".to_owned(),
            "--header".to_owned(),
            format!("Authorization: Bearer {token}"),
        ]
    };
    let challenge = |r: &CurlResponse| r.header("WWW-Authenticate").unwrap_or_default().to_owned();

    // Without a token: a Bearer challenge naming the realm, service and scope.
    let bare = curl(&["--silent".to_owned()], &catalog);
    assert_eq!(bare.status, 401);
    let c = challenge(&bare);
    assert!(
        c.starts_with("Bearer ")
            && c.contains(&server.realm())
            && c.contains(SERVICE)
            && c.contains("registry:catalog:*"),
        "{c}"
    );
    assert_eq!(curl(&registry.curl_args(), &catalog).status, 200);
    let issuer = server.issuer();
    let hour = Duration::from_secs(3600);
    let expired = curl(
        &bearer(issuer.mint(ADMIN, &[Access::catalog()], hour, true)),
        &catalog,
    );
    assert_eq!(expired.status, 401);
    assert!(challenge(&expired).contains("invalid_token"), "{expired:?}");
    let no_catalog = Access::repository("a/b", &["pull"]);
    let insufficient = curl(
        &bearer(issuer.mint(ADMIN, &[no_catalog], hour, false)),
        &catalog,
    );
    assert_eq!(insufficient.status, 401);
    assert!(
        challenge(&insufficient).contains("insufficient_scope"),
        "{insufficient:?}"
    );
    // A token signed by a key the registry does not trust.
    let stranger = TokenServer::builder().start();
    let forged = stranger
        .issuer()
        .mint(ADMIN, &[Access::catalog()], hour, false);
    assert_eq!(curl(&bearer(forged), &catalog).status, 401);

    // The token service over HTTP.
    let token_url = |scopes: &str| format!("{}?service={SERVICE}&{scopes}", server.realm());
    let user = |creds: &str| vec!["--silent".to_owned(), "--user".to_owned(), creds.to_owned()];
    let wanted =
        "scope=repository:a/x:pull,push&scope=repository:b/y:pull&scope=registry:catalog:*";
    assert_eq!(curl(&user("puller:wrong"), &token_url(wanted)).status, 401);
    assert_eq!(curl(&user("nobody:pw"), &token_url(wanted)).status, 401);
    let granted = curl(&user("puller:pw"), &token_url(wanted));
    assert_eq!(granted.status, 200);
    let token = granted.json()["token"].as_str().unwrap().to_owned();
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
    assert_eq!(claims["aud"], SERVICE, "aud is a plain string");
    assert_eq!(claims["sub"], "puller");
    // Only what puller may have: pull on a/x.
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "a/x", "actions": ["pull"]}])
    );
    // The registry takes it for a/x (404: the repository is empty, not 401).
    let tags = format!("{}/v2/a/x/tags/list", registry.url());
    assert_eq!(curl(&bearer(token), &tags).status, 404);
    let anonymous = curl(
        &["--silent".to_owned()],
        &token_url("scope=repository:open/z:pull&scope=repository:a/x:pull"),
    );
    let (_, claims) = jwt_parts(anonymous.json()["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "open/z", "actions": ["pull"]}])
    );

    // OAuth2: a password grant with offline access gives a refresh token,
    // which the refresh grant takes; an unknown one is refused.
    let post = |form: &str| {
        curl(
            &["--silent".to_owned(), "--data".to_owned(), form.to_owned()],
            &server.realm(),
        )
    };
    let form = format!(
        "grant_type=password&username=puller&password=pw&service={SERVICE}\
         &client_id=selftest&access_type=offline&scope=repository%3Aa%2Fx%3Apull"
    );
    let answer = post(&form).json();
    let refresh = answer["refresh_token"].as_str().expect("a refresh token");
    assert!(answer["access_token"].is_string() && answer["expires_in"] == 300);
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&client_id=selftest\
         &scope=repository%3Aa%2Fx%3Apull+repository%3Ab%2Fy%3Apull"
    );
    let answer = post(&form).json();
    let (_, claims) = jwt_parts(answer["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "puller");
    assert_eq!(claims["access"][0]["name"], "a/x");
    assert_eq!(
        post("grant_type=refresh_token&refresh_token=nope").status,
        401
    );
    let grants: Vec<Grant> = server.requests().iter().map(|r| r.grant).collect();
    assert_eq!(
        grants,
        [
            Grant::Basic,
            Grant::Basic,
            Grant::Basic,
            Grant::Anonymous,
            Grant::Password,
            Grant::RefreshToken,
            Grant::RefreshToken
        ]
    );
    assert!(glob_matches("a/*", "a/b/c") && !glob_matches("a/*", "b/a/c"));
    assert!(glob_matches("*", "x") && glob_matches("a/*/z", "a/b/z") && !glob_matches("a", "ab"));
}

/// A JWT's header and claims (the signature is the registry's to check).
fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine as _;
    let part = |p: &str| -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (part(parts[0]), part(parts[1]))
}

#[test]
fn shipped_sample_is_valid_and_regenerates_identically() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = repo.join("sample/layout");
    for name in [
        "openshift/php:5.5",
        "openshift/php:5.6",
        "library/busybox:1.36",
    ] {
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{name}", sample.display())))
        .stdout;
        let blob = sample
            .join("blobs/sha256")
            .join(&digest_of(&raw)["sha256:".len()..]);
        assert!(blob.is_file(), "{name}: manifest stored under its digest");
    }
    let stat = run(Command::new("umoci")
        .args(["stat", "--image"])
        .arg(format!("{}:openshift/php:5.5", sample.display())))
    .stdout;
    assert_eq!(
        String::from_utf8_lossy(&stat).matches("sha256:").count(),
        2,
        "two layers"
    );
    require_tool("python3", "python3");
    let again = temp_dir();
    run(Command::new("python3")
        .arg(repo.join("scripts/make-sample.py"))
        .arg(again.path().join("layout")));
    assert_eq!(
        tree_digests(&sample),
        tree_digests(&again.path().join("layout")),
        "sample/ is stale: run scripts/make-sample.py"
    );
}

/// `(relative path, sha256)` of every file under `root`, sorted.
fn tree_digests(root: &std::path::Path) -> Vec<(String, String)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("listing a directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                out.push((relative, sha256_file(&path)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// `Fault::Hold` stops an answer where asked and keeps the connection open
/// until the client goes away, the log shows it holding, and
/// `max_in_flight` counts the answers under way together.
#[test]
fn fault_proxy_holds_answers_and_counts_them_in_flight() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let (registry, digest, size) = helm_registry();
    assert!(size > 1000, "the layer is larger than what is sent");
    let proxy = FaultProxy::in_front_of(&registry);
    proxy.add(Rule::new(Kind::BlobGet, Fault::Hold { after: 1000 }).first(2));
    proxy.add(Rule::new(Kind::TagList, Fault::Hold { after: 0 }).first(1));
    let blob_path = format!("/v2/app/helm/blobs/{digest}");
    // A raw keep-alive GET, so that the test decides when the client goes away.
    let get = |path: &str| {
        let mut stream = TcpStream::connect(proxy.host()).expect("connecting to the proxy");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n\r\n",
            proxy.host()
        )
        .expect("sending a request");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("setting a read timeout");
        BufReader::new(stream)
    };
    // Reads a head, then `n` body bytes; returns the status line.
    let head_and = |reader: &mut BufReader<TcpStream>, n: usize| {
        let mut status = String::new();
        reader.read_line(&mut status).expect("a status line");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            if line.trim().is_empty() {
                break;
            }
        }
        let mut body = vec![0u8; n];
        reader.read_exact(&mut body).expect("the body bytes sent");
        status.trim().to_owned()
    };
    // Nothing more arrives while held (a read times out, it does not end).
    let silent = |reader: &mut BufReader<TcpStream>| {
        let mut byte = [0u8; 1];
        match reader.read_exact(&mut byte) {
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(()) => false,
        }
    };
    let wait = Duration::from_secs(10);

    let mut first = get(&blob_path);
    assert_eq!(head_and(&mut first, 1000), "HTTP/1.1 200 OK");
    let held = proxy.wait_until_held(wait).expect("the first GET is held");
    assert_eq!(
        (held.path.as_str(), held.status, held.sent, held.finished),
        (blob_path.as_str(), 200, 1000, false),
        "{}",
        proxy.log_text()
    );
    let mut second = get(&blob_path);
    assert_eq!(head_and(&mut second, 1000), "HTTP/1.1 200 OK");
    let both = proxy.wait_for(wait, |log| {
        (log.iter().filter(|r| r.held).count() == 2).then_some(())
    });
    assert!(both.is_some(), "two held:\n{}", proxy.log_text());
    assert!(
        silent(&mut first) && silent(&mut second),
        "nothing after the hold point"
    );
    assert_eq!(
        proxy.max_in_flight(Kind::BlobGet),
        2,
        "{}",
        proxy.log_text()
    );

    // After 0 bytes, not even the head is sent.
    let mut tags = get("/v2/app/helm/tags/list");
    let held_tags = proxy
        .wait_for(wait, |log| {
            log.iter().find(|r| r.held && r.is(Kind::TagList)).cloned()
        })
        .unwrap_or_else(|| panic!("the tag list is held:\n{}", proxy.log_text()));
    assert_eq!((held_tags.status, held_tags.sent), (0, 0));
    assert!(silent(&mut tags), "no head for a hold after 0 bytes");
    assert_eq!(proxy.max_in_flight(Kind::TagList), 1);
    assert_eq!(proxy.max_in_flight(Kind::BlobGet), 2, "other kinds apart");

    // A client going away ends its hold, and only its own.
    drop(first);
    let released = proxy.wait_for(wait, |log| {
        log.iter()
            .find(|r| r.at == held.at && r.finished)
            .map(|_| log.iter().filter(|r| r.held).count())
    });
    assert_eq!(released, Some(2), "{}", proxy.log_text());
    drop((second, tags));
    assert!(
        proxy.wait_until_released(wait),
        "holds end when their clients go away:\n{}",
        proxy.log_text()
    );
    let log = proxy.log();
    assert!(
        log.iter().all(|r| r.finished && r.fault.is_some()),
        "{}",
        proxy.log_text()
    );

    // Without a hold left, the blob comes whole; the maximum starts again on reset.
    proxy.reset_max_in_flight();
    assert_eq!(proxy.max_in_flight(Kind::BlobGet), 0);
    let answer = curl(&[], &format!("http://{}{blob_path}", proxy.host()));
    assert_eq!(
        (answer.status, digest_of(&answer.body)),
        (200, digest.clone())
    );
    assert_eq!(proxy.max_in_flight(Kind::BlobGet), 1);
}
