//! The bearer-token flow against a real `docker-registry` with `auth: token`
//! and a [`TokenServer`] issuing signed JWTs: users allowed some repositories
//! and not others, the catalog scope granted or denied, anonymous pulls,
//! refresh tokens from auth.json, token reuse, expired tokens, and pushes
//! (with cross-repository mounts) into a token-auth target.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;
use crate::support::token::{Grant, SERVICE, TokenRequest};
use crate::support::*;

/// The refresh token (auth.json `identitytoken`) the server knows as `reader`'s.
const REFRESH: &str = "refresh-token-of-reader";

fn reader() -> User {
    reader_named("reader", "reader-pw")
}

/// A token-auth registry holding the standard fixture, its token server
/// (with the users below), keys and a temp dir.
struct TokenSource {
    server: TokenServer,
    fx: StandardFixture,
    keys: Keys,
    tmp: tempfile::TempDir,
}

impl TokenSource {
    fn start() -> Self {
        let server = TokenServer::builder()
            .user(reader())
            // May pull everything, but not list the catalog.
            .user(User::new("lister", "lister-pw").allow("*", &["pull"]))
            .user(
                User::new("php", "php-pw")
                    .allow("openshift/*", &["pull"])
                    .catalog(),
            )
            .user(reader_named("stale", "stale-pw").expired_tokens(Expiry::FirstPerScope))
            .user(reader_named("expired", "expired-pw").expired_tokens(Expiry::Always))
            .anonymous_pull("library/*")
            .refresh_token(REFRESH, "reader")
            .start();
        let registry = TestRegistry::builder().token_auth(&server).start();
        let fx = standard_fixture_on(registry);
        // What seeding asked (skopeo as admin) is not what the tests count.
        server.clear_log();
        TokenSource {
            server,
            fx,
            keys: keygen(),
            tmp: temp_dir(),
        }
    }

    fn host(&self) -> String {
        self.fx.registry.host()
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `bundle create --from HOST --tls-verify=false ARGS…` into `out`.
    fn create(&self, out: &Path, args: &[&str]) -> Output {
        let host = self.host();
        let mut all = vec!["--from", host.as_str(), "--tls-verify=false"];
        all.extend_from_slice(args);
        create(out, &self.keys.secret, &all)
    }

    /// An `--images` file listing `refs`.
    fn images_file(&self, name: &str, refs: &[&str]) -> String {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, refs.join("\n") + "\n").unwrap();
        path.display().to_string()
    }

    /// Every reference of the fixture, sorted.
    fn all_references(&self) -> Vec<String> {
        let mut refs: Vec<String> = self.fx.images.iter().map(Pushed::reference).collect();
        refs.sort();
        refs
    }
}

/// A user who may pull everything and list the catalog.
fn reader_named(name: &str, password: &str) -> User {
    User::new(name, password).allow("*", &["pull"]).catalog()
}

fn ok(output: &Output) -> String {
    let t = text(output);
    assert_eq!(output.status.code(), Some(0), "{t}");
    t
}

/// Asserts exit 2 with every `needle` in the output and no bundle written; returns the output.
fn refused(output: &Output, out: &Path, needles: &[&str]) -> String {
    let t = text(output);
    assert_eq!(output.status.code(), Some(2), "{t}");
    for needle in needles {
        assert!(t.contains(needle), "expected {needle:?} in: {t}");
    }
    assert!(!out.join("bundle.json").exists(), "a bundle was written");
    t
}

fn successful(requests: &[TokenRequest]) -> Vec<&TokenRequest> {
    requests.iter().filter(|r| r.status == 200).collect()
}

#[test]
fn a_reader_with_catalog_access_bundles_every_image() {
    let src = TokenSource::start();
    let out = src.out("bundle");
    ok(&src.create(&out, &["--creds", &reader().creds()]));
    let v = verify(&out, &src.keys.public, &[]);
    assert!(ok(&v).contains("VERIFIED: 7 images"), "{}", text(&v));
    assert_eq!(
        listed_references(&out, &src.keys.public),
        src.all_references()
    );
    // Every token came from the token server for reader, over GET with Basic,
    // for the registry's service, the catalog scope included.
    let requests = src.server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.grant, r.user.as_deref(), r.status),
            (Grant::Basic, Some("reader"), 200),
            "{r:?}"
        );
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{r:?}");
    }
    assert!(
        requests.iter().any(|r| r.scopes == ["registry:catalog:*"]),
        "{requests:#?}"
    );
}

#[test]
fn without_catalog_access_create_needs_an_images_list() {
    let src = TokenSource::start();
    let out = src.out("no-catalog");
    let o = src.create(&out, &["--creds", "lister:lister-pw"]);
    let t = refused(
        &o,
        &out,
        &[
            "/v2/_catalog",
            "--images FILE",
            "does not grant registry:catalog:* to these credentials",
        ],
    );
    assert!(!t.contains("lister-pw"), "the password leaked: {t}");
    // The token server was asked for the catalog and left it out of the token.
    assert!(
        src.server
            .requests()
            .iter()
            .any(|r| r.scopes == ["registry:catalog:*"] && r.status == 200),
        "{:#?}",
        src.server.requests()
    );

    let list = src.images_file("images.txt", &["openshift/php:5.5", "library/busybox:1.36"]);
    let out = src.out("listed");
    ok(&src.create(&out, &["--creds", "lister:lister-pw", "--images", &list]));
    assert_eq!(
        listed_references(&out, &src.keys.public),
        ["library/busybox:1.36", "openshift/php:5.5"]
    );
    let v = verify(&out, &src.keys.public, &[]);
    ok(&v);
}

#[test]
fn a_user_allowed_only_openshift_gets_those_and_is_refused_the_rest() {
    let src = TokenSource::start();
    let out = src.out("openshift");
    ok(&src.create(&out, &["--creds", "php:php-pw", "--include", "openshift/*"]));
    assert_eq!(
        listed_references(&out, &src.keys.public),
        [
            "openshift/php:5.5",
            "openshift/php:5.6",
            "openshift/php:latest"
        ]
    );

    let list = src.images_file("busybox.txt", &["library/busybox:1.36"]);
    let out = src.out("busybox");
    let o = src.create(&out, &["--creds", "php:php-pw", "--images", &list]);
    refused(
        &o,
        &out,
        &[
            "library/busybox:1.36",
            "does not grant repository:library/busybox:pull",
        ],
    );
    // Asked for, authenticated, and granted nothing.
    assert!(
        src.server
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("php")
                && r.scopes
                    .contains(&"repository:library/busybox:pull".to_owned())
                && r.status == 200),
        "{:#?}",
        src.server.requests()
    );
}

#[test]
fn anonymous_pulls_library_images_only() {
    let src = TokenSource::start();
    let home = temp_dir();
    // No auth.json of the machine's user may take part.
    let anonymous = |out: &Path, list: &str| {
        bundle_cmd()
            .env("HOME", home.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .args(["create", "--from", &src.host(), "--tls-verify=false"])
            .args(["--images", list, "--key"])
            .arg(&src.keys.secret)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let library = [
        "library/alpine:3.19",
        "library/busybox:1.36",
        "library/nginx:1.25",
    ];
    let list = src.images_file("library.txt", &library);
    let out = src.out("library");
    ok(&anonymous(&out, &list));
    assert_eq!(listed_references(&out, &src.keys.public), library);
    let requests = src.server.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.grant == Grant::Anonymous && r.status == 200),
        "{requests:#?}"
    );

    let list = src.images_file("php.txt", &["openshift/php:5.5"]);
    let out = src.out("php");
    refused(
        &anonymous(&out, &list),
        &out,
        &["refused access for repository:openshift/php:pull"],
    );
}

#[test]
fn an_identity_token_in_auth_json_is_exchanged_with_the_refresh_grant() {
    use base64::Engine as _;
    let src = TokenSource::start();
    let host = src.host();
    // As podman writes it: `auth` names the user (skopeo needs it), no password.
    let user_only = base64::engine::general_purpose::STANDARD.encode("reader:");
    let authfile = |name: &str, token: &str| {
        let path = src.tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"{host}":{{"auth":"{user_only}","identitytoken":"{token}"}}}}}}"#
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let good = authfile("auth.json", REFRESH);
    let out = src.out("refresh");
    ok(&src.create(&out, &["--authfile", &good]));
    assert_eq!(
        listed_references(&out, &src.keys.public),
        src.all_references()
    );
    let requests = src.server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.grant, r.user.as_deref(), r.status),
            ("POST", Grant::RefreshToken, Some("reader"), 200),
            "{r:?}"
        );
        assert_eq!(r.client_id.as_deref(), Some("bundle"), "{r:?}");
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{r:?}");
    }
    assert!(requests.iter().any(|r| r.scopes == ["registry:catalog:*"]));

    // skopeo, an independent client, takes the same file the same way.
    src.server.clear_log();
    run(Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--authfile",
            &good,
        ])
        .arg(format!("docker://{host}/openshift/php:5.5")));
    assert!(
        src.server
            .requests()
            .iter()
            .any(|r| r.grant == Grant::RefreshToken && r.status == 200),
        "{:#?}",
        src.server.requests()
    );

    // A refresh token the server does not know is refused, and not echoed.
    let bad = authfile("bad.json", "refresh-token-nobody-issued");
    let out = src.out("bad");
    let t = refused(
        &src.create(&out, &["--authfile", &bad]),
        &out,
        &["refused access"],
    );
    assert!(!t.contains("refresh-token-nobody-issued"), "{t}");
}

#[test]
fn a_create_of_the_whole_fixture_reuses_each_token() {
    let src = TokenSource::start();
    let out = src.out("bundle");
    ok(&src.create(&out, &["--creds", &reader().creds()]));
    let counts = src.server.counts_by_scope();
    // The ping (no scope), the catalog, and one pull scope per repository:
    // never once per manifest or blob (the fixture has dozens of those).
    let mut expected: Vec<String> = vec![String::new(), "registry:catalog:*".to_owned()];
    expected.extend(
        src.fx
            .repositories()
            .iter()
            .map(|repo| format!("repository:{repo}:pull")),
    );
    expected.sort();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        expected,
        "{counts:?}"
    );
    for (scope, n) in &counts {
        assert!(*n <= 2, "{n} token requests for {scope:?}: {counts:?}");
    }
    let total: usize = counts.values().sum();
    assert!(total <= 2 * expected.len(), "{counts:?}");
}

#[test]
fn an_expired_token_is_answered_with_one_fresh_token_and_never_a_loop() {
    let src = TokenSource::start();
    // The first token of every scope is expired (beyond the registry's 60 s
    // leeway) though `expires_in` says 300: the registry answers 401
    // invalid_token, the client asks again once and goes on.
    let out = src.out("stale");
    ok(&src.create(&out, &["--creds", "stale:stale-pw"]));
    assert_eq!(
        listed_references(&out, &src.keys.public),
        src.all_references()
    );
    let requests = src.server.requests();
    let catalog: Vec<&TokenRequest> = successful(&requests)
        .into_iter()
        .filter(|r| r.scopes == ["registry:catalog:*"])
        .collect();
    assert_eq!(
        catalog.iter().map(|r| r.expired).collect::<Vec<_>>(),
        [true, false],
        "one expired catalog token, then one fresh: {requests:#?}"
    );
    // Each repository's tags are listed before its manifests are fetched:
    // the expired token is met once, and the fresh one serves the rest.
    for repo in src.fx.repositories() {
        let scope = format!("repository:{repo}:pull");
        let expired: Vec<bool> = requests
            .iter()
            .filter(|r| r.scopes == [scope.clone()])
            .map(|r| r.expired)
            .collect();
        assert_eq!(expired, [true, false], "tokens for {scope}: {requests:#?}");
    }

    // A token service that only ever issues expired tokens: one retry per
    // request, then a clear refusal.
    src.server.clear_log();
    let out = src.out("expired");
    refused(
        &src.create(&out, &["--creds", "expired:expired-pw"]),
        &out,
        &["refused access for registry:catalog:*"],
    );
    let catalog = src
        .server
        .requests()
        .iter()
        .filter(|r| r.scopes == ["registry:catalog:*"])
        .count();
    assert_eq!(catalog, 2, "{:#?}", src.server.requests());
}

/// The standard fixture (plain registry) bundled, and an empty token-auth
/// target whose server knows `pusher` (pull, push on `mirror/*`) and
/// `mirror-reader` (pull only).
struct PushSetup {
    source: StandardFixture,
    server: TokenServer,
    target: TestRegistry,
    keys: Keys,
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl PushSetup {
    fn start() -> Self {
        let source = standard_fixture();
        let keys = keygen();
        let tmp = temp_dir();
        let dir = tmp.path().join("bundle");
        let host = source.registry.host();
        create_ok(&dir, &keys.secret, &["--from", &host, "--tls-verify=false"]);
        let server = TokenServer::builder()
            .user(User::new("pusher", "pusher-pw").allow("mirror/*", &["pull", "push"]))
            .user(User::new("mirror-reader", "mr-pw").allow("mirror/*", &["pull"]))
            .start();
        let target = TestRegistry::builder().token_auth(&server).start();
        PushSetup {
            source,
            server,
            target,
            keys,
            tmp,
            dir,
        }
    }

    fn push(&self, creds: &str, json: bool) -> Output {
        let config = self.tmp.path().join(format!("mirror-config-{creds}"));
        let mut cmd = bundle_cmd();
        cmd.arg("push")
            .arg(&self.dir)
            .args(["--to", &format!("{}/mirror", self.target.host())])
            .arg("--pubkey")
            .arg(&self.keys.public)
            .args(["--creds", creds, "--tls-verify=false", "--mirror-config"])
            .arg(config);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    }

    /// Tags of `repo` on the target (none when the repository does not exist).
    fn tags(&self, repo: &str) -> Vec<String> {
        let r = curl(
            &self.target.curl_args_for(repo),
            &format!("{}/v2/{repo}/tags/list", self.target.url()),
        );
        if r.status == 404 {
            return Vec::new();
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }
}

#[test]
fn push_into_a_token_registry_tags_every_image_and_mounts_the_shared_layer() {
    let s = PushSetup::start();
    let o = s.push("pusher:pusher-pw", true);
    ok(&o);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["tagged"], true, "{report}");
    for pushed in &s.source.images {
        let repo = format!("mirror/{}", pushed.repo);
        assert_eq!(
            fetch_manifest(&s.target, &repo, &pushed.tag).digest,
            pushed.digest,
            "{repo}:{}",
            pushed.tag
        );
    }
    // A mount needs one token for push on the repository and pull on the
    // other: the registry accepted it (201), or nothing would count as mounted.
    let mounted = report["stats"]["blobs_mounted"].as_u64().unwrap();
    assert!(mounted >= 1, "{report}");
    let requests = s.server.requests();
    assert!(
        requests.iter().any(|r| r.status == 200
            && r.scopes.len() == 2
            && r.scopes[0].ends_with(":pull,push")
            && r.scopes[1].starts_with("repository:mirror/")
            && r.scopes[1].ends_with(":pull")),
        "no mount token was asked for: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.user.as_deref() == Some("pusher") && r.status == 200),
        "{requests:#?}"
    );
    // Tokens are reused, not asked per blob or manifest. The survey looks up
    // the three openshift/php tags at once and racing first uses of a scope
    // each ask (the client does not share a token fetch in flight): at most 3.
    let counts = s.server.counts_by_scope();
    for (scope, n) in &counts {
        assert!(*n <= 3, "{n} token requests for {scope:?}: {counts:?}");
    }
    let sent = ["blobs_uploaded", "blobs_mounted", "manifests_pushed"]
        .iter()
        .map(|k| report["stats"][k].as_u64().unwrap() as usize)
        .sum::<usize>();
    assert!(
        counts.values().sum::<usize>() < sent,
        "{counts:?} for {report}"
    );
}

#[test]
fn a_pull_only_user_cannot_push_and_no_tag_is_made() {
    let s = PushSetup::start();
    let o = s.push("mirror-reader:mr-pw", false);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("does not grant repository:mirror/") && t.contains(":pull,push"),
        "{t}"
    );
    assert!(!t.contains("mr-pw"), "the password leaked: {t}");
    for repo in s.source.repositories() {
        let repo = format!("mirror/{repo}");
        assert_eq!(s.tags(&repo), Vec::<String>::new(), "{repo}");
    }
}

/// Every file in `dir` (recursively), for a search of its bytes.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// No password, basic-auth header value or issued token appears anywhere a
/// run leaves words: stdout, stderr with every log on (`RUST_LOG=trace`),
/// `--json`, error messages of a wrong password and of a refused scope, or
/// the bundle's files.
#[test]
fn no_password_or_token_leaks_into_output_logs_or_the_bundle() {
    let src = TokenSource::start();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |name: &str, creds: &str, extra: &[&str]| {
        let out = src.out(name);
        let host = src.host();
        let o = bundle_cmd()
            .env("RUST_LOG", "trace")
            .args([
                "-vv",
                "create",
                "--from",
                host.as_str(),
                "--tls-verify=false",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--key")
            .arg(&src.keys.secret)
            .args(["--creds", creds])
            .args(extra)
            .output()
            .unwrap();
        outputs.push((format!("{name}: stdout"), o.stdout.clone()));
        outputs.push((format!("{name}: stderr"), o.stderr.clone()));
        for f in all_files(&out) {
            outputs.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
        o
    };
    let good = run("good", "reader:reader-pw", &["--json"]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let wrong = run("wrong", "reader:wr0ng-pw-7731", &[]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    let php = run("php", "php:php-pw", &["--include", "library/*"]);
    assert_ne!(php.status.code(), Some(0), "{}", text(&php));

    let mut secrets: Vec<String> = ["reader-pw", "wr0ng-pw-7731", "php-pw"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for userpass in ["reader:reader-pw", "reader:wr0ng-pw-7731", "php:php-pw"] {
        use base64::Engine;
        secrets.push(base64::engine::general_purpose::STANDARD.encode(userpass));
    }
    let tokens: Vec<String> = src
        .server
        .requests()
        .into_iter()
        .filter_map(|r| r.token)
        .collect();
    assert!(tokens.len() >= 3, "tokens were issued: {}", tokens.len());
    secrets.extend(tokens);
    let logged: usize = outputs.iter().map(|(_, b)| b.len()).sum();
    assert!(
        logged > 10_000,
        "the trace logs were written ({logged} bytes)"
    );
    for (what, bytes) in &outputs {
        let hay = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(
                !hay.contains(secret.as_str()),
                "{what} holds a secret ({}…)",
                &secret[..secret.len().min(12)]
            );
        }
    }
}

/// `--creds USER --password-stdin`: the password comes from standard input,
/// the run authenticates with it, and the process's command line (what `ps`
/// shows) never holds it.
#[test]
fn password_stdin_keeps_the_password_out_of_the_process_list() {
    use std::io::Write;
    let src = TokenSource::start();
    let out = src.out("stdin");
    let host = src.host();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bundle"))
        .args(["create", "--from", host.as_str(), "--tls-verify=false"])
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&src.keys.secret)
        .args(["--creds", "reader", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // What `ps` shows once the process runs (it waits for its password).
    let cmdline = (0..200)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let raw = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
            String::from_utf8_lossy(&raw).replace('\0', " ")
        })
        .find(|c| c.contains("create"))
        .expect("the process's command line");
    assert!(cmdline.contains("--password-stdin"), "{cmdline}");
    assert!(!cmdline.contains("reader-pw"), "{cmdline}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"reader-pw\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_no_panic(&o);
    ok(&o);
    assert!(out.join("bundle.json").exists());
    let users: Vec<Option<String>> = src.server.requests().into_iter().map(|r| r.user).collect();
    assert!(users.contains(&Some("reader".into())), "{users:?}");

    // USER:PASSWORD and --password-stdin together is a mistake, said as such.
    let o = bundle_cmd()
        .args(["create", "--from", host.as_str(), "--tls-verify=false"])
        .arg("--out")
        .arg(src.out("both"))
        .arg("--key")
        .arg(&src.keys.secret)
        .args(["--creds", "reader:reader-pw", "--password-stdin"])
        .write_stdin("reader-pw\n")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--creds takes only USER"), "{}", text(&o));
}
