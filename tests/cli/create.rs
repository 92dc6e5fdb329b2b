//! `bundle create` against a real registry: enumeration, filters, media
//! types, credentials and TLS, determinism.

use std::path::Path;

use crate::common::*;
use crate::support::*;

fn host_args(reg: &TestRegistry) -> Vec<String> {
    vec!["--from".into(), reg.host(), "--tls-verify=false".into()]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn bundles_the_whole_catalog_keeping_every_manifest_byte_for_byte() {
    let fx = standard_fixture();
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("bundle");
    create_ok(&out, &keys.secret, &args(&host_args(&fx.registry)));
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains("VERIFIED: 7 images"), "{}", text(&v));

    let layout = tmp.path().join("layout");
    standard_tools_extract(&out, &keys.public, &layout);
    let refs = layout_refs(&layout);
    assert_eq!(refs.len(), fx.images.len());
    for pushed in &fx.images {
        let (_, digest, media_type) = refs
            .iter()
            .find(|(name, _, _)| *name == pushed.reference())
            .unwrap_or_else(|| panic!("{} missing from index.json: {refs:?}", pushed.reference()));
        assert_eq!(*digest, pushed.digest, "digest of {}", pushed.reference());
        assert_eq!(
            *media_type,
            pushed.media_type,
            "media type of {}",
            pushed.reference()
        );
        // The stored manifest is exactly what the registry serves, Docker types included.
        let served = fetch_manifest(&fx.registry, &pushed.repo, &pushed.tag);
        let stored = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(stored, served.bytes, "bytes of {}", pushed.reference());
    }
    // Every blob of every pushed image is in the layout.
    for image in &fx.layout.images {
        for d in image.blob_digests() {
            if fx
                .images
                .iter()
                .any(|p| p.source == image.name && p.media_type.contains("oci"))
            {
                assert!(
                    layout.join("blobs/sha256").join(&d[7..]).is_file(),
                    "{} of {}",
                    d,
                    image.name
                );
            }
        }
    }
    // Platforms come from the index, or from the image config of single manifests.
    let listing = list_json(&out, &keys.public);
    let platforms = |reference: &str| {
        listing["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reference"] == reference)
            .unwrap()["platforms"]
            .clone()
    };
    assert_eq!(
        platforms("openshift/php:5.5"),
        serde_json::json!(["linux/amd64"])
    );
    assert_eq!(
        platforms("library/nginx:1.25"),
        serde_json::json!(["linux/amd64"])
    );
    assert_eq!(
        platforms("library/busybox:1.36"),
        serde_json::json!(["linux/amd64", "linux/arm64", "linux/arm/v7"])
    );
    // index.json is last, oci-layout first, and each blob appears once.
    let names = run_stdout(std::process::Command::new("bash").arg("-c").arg(format!(
        "cat '{}'/images.tar.zst.* | zstd -d | tar -t",
        out.display()
    )));
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.first(), Some(&"oci-layout"));
    assert_eq!(names.last(), Some(&"index.json"));
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate tar entries");
}

#[test]
fn include_exclude_platform_and_images_file() {
    let fx = standard_fixture();
    let keys = keygen();
    let tmp = temp_dir();

    let out = tmp.path().join("filtered");
    let mut a = host_args(&fx.registry);
    a.extend(
        [
            "--include",
            "openshift/*",
            "--include",
            "library/busybox:*",
            "--exclude",
            "*:latest",
        ]
        .map(String::from),
    );
    create_ok(&out, &keys.secret, &args(&a));
    assert_eq!(
        listed_references(&out, &keys.public),
        [
            "library/busybox:1.36",
            "openshift/php:5.5",
            "openshift/php:5.6"
        ]
    );

    let out = tmp.path().join("amd64");
    let mut a = host_args(&fx.registry);
    a.extend(["--include", "library/*", "--platform", "linux/amd64"].map(String::from));
    create_ok(&out, &keys.secret, &args(&a));
    let listing = list_json(&out, &keys.public);
    for image in listing["images"].as_array().unwrap() {
        let reference = image["reference"].as_str().unwrap();
        if reference.starts_with("library/busybox") || reference.starts_with("library/alpine") {
            assert_eq!(
                image["platforms"],
                serde_json::json!(["linux/amd64"]),
                "{reference}"
            );
        }
    }
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // The index is kept byte for byte; the arm64 manifest is not in the bundle.
    let busybox = fx.get("library/busybox:1.36");
    let index = fetch_manifest(&fx.registry, "library/busybox", "1.36").json();
    let arm = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let bundle_json = std::fs::read_to_string(out.join("bundle.json")).unwrap();
    assert!(bundle_json.contains(&busybox.digest));
    assert!(
        !bundle_json.contains(&arm),
        "arm64 manifest should be filtered out"
    );

    let list = tmp.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# two images\n{}/openshift/php:5.5\n\ntools/helm:3.14   # pinned\n",
            fx.registry.host()
        ),
    )
    .unwrap();
    let out = tmp.path().join("listed");
    let mut a = host_args(&fx.registry);
    a.extend(["--images".to_owned(), list.display().to_string()]);
    create_ok(&out, &keys.secret, &args(&a));
    assert_eq!(
        listed_references(&out, &keys.public),
        ["openshift/php:5.5", "tools/helm:3.14"]
    );
}

#[test]
fn follows_catalog_and_tag_pagination() {
    let fx = standard_fixture();
    // 1,050 repositories: the catalog needs two pages even at n=1000.
    let names = seed_many_repositories(&fx.registry, 1050);
    // Tags come through a proxy that pages them two at a time.
    let proxy = PagingProxy::in_front_of(&fx.registry, 2);
    let keys = keygen();
    let tmp = temp_dir();
    let out = tmp.path().join("bundle");
    create_ok(
        &out,
        &keys.secret,
        &[
            "--from",
            &proxy.host(),
            "--tls-verify=false",
            "--include",
            "many/r104*",
            "--include",
            "openshift/*",
        ],
    );
    let mut expected: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("many/r104"))
        .map(|n| format!("{n}:1"))
        .collect();
    expected.extend(
        [
            "openshift/php:5.5",
            "openshift/php:5.6",
            "openshift/php:latest",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(listed_references(&out, &keys.public), expected);
    assert!(proxy.requests("/v2/_catalog") >= 2, "{:?}", proxy.counts());
    assert!(
        proxy.requests("/v2/openshift/php/tags/list") >= 2,
        "{:?}",
        proxy.counts()
    );
}

#[test]
fn basic_auth_and_tls_with_a_test_ca() {
    let reg = TestRegistry::builder()
        .htpasswd("alice", "s3cret-pass")
        .tls()
        .start();
    let layout_dir = temp_dir();
    let layout = standard_layout(&layout_dir.path().join("layout"));
    skopeo_push(
        &reg,
        &layout,
        "openshift/php:5.5",
        "openshift/php:5.5",
        Format::Oci,
    );
    let keys = keygen();
    let tmp = temp_dir();
    let ca = reg.ca_cert_path().display().to_string();
    let host = reg.host();

    let out = tmp.path().join("ok");
    create_ok(
        &out,
        &keys.secret,
        &[
            "--from",
            &host,
            "--creds",
            "alice:s3cret-pass",
            "--ca-cert",
            &ca,
        ],
    );
    assert_eq!(listed_references(&out, &keys.public), ["openshift/php:5.5"]);

    // auth.json, as podman writes it, through REGISTRY_AUTH_FILE.
    let authfile = tmp.path().join("auth.json");
    let auth = base64_encode(b"alice:s3cret-pass");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let out = tmp.path().join("authfile");
    let o = bundle_cmd()
        .env("REGISTRY_AUTH_FILE", &authfile)
        .args(["create", "--from", &host, "--ca-cert", &ca, "--key"])
        .arg(&keys.secret)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // A credential helper named in auth.json (credHelpers), run from PATH as
    // docker and podman run it: `get` with the registry on stdin.
    let helpers = tmp.path().join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    let seen = tmp.path().join("helper-was-asked-for");
    let script = helpers.join("docker-credential-testpass");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\necho \"$server\" > '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret-pass\"}}' \"$server\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper_auth = tmp.path().join("helper-auth.json");
    std::fs::write(
        &helper_auth,
        format!(r#"{{"auths":{{}},"credHelpers":{{"{host}":"testpass"}}}}"#),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_helper = |out: &Path, path: &str| {
        bundle_cmd()
            .env("REGISTRY_AUTH_FILE", &helper_auth)
            .env("PATH", path)
            .args(["create", "--from", &host, "--ca-cert", &ca, "--key"])
            .arg(&keys.secret)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let o = with_helper(&tmp.path().join("helper"), &path);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), host);
    // Without the helper installed: a clear error, nothing written.
    let out = tmp.path().join("nohelper");
    let o = with_helper(&out, "/usr/bin:/bin");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("docker-credential-testpass is not installed"),
        "{}",
        text(&o)
    );
    assert!(!out.join("bundle.json").exists());

    let refused = |out: &Path, extra: &[&str], needle: &str| {
        let mut a = vec!["--from", host.as_str()];
        a.extend_from_slice(extra);
        let o = create(out, &keys.secret, &a);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.to_lowercase().contains(needle),
            "expected {needle:?} in: {t}"
        );
        assert!(!t.contains("s3cret-pass"), "the password leaked: {t}");
        assert!(!out.join("bundle.json").exists());
    };
    refused(
        &tmp.path().join("anon"),
        &["--ca-cert", &ca],
        "refused access",
    );
    refused(
        &tmp.path().join("wrong"),
        &["--ca-cert", &ca, "--creds", "alice:wrong"],
        "refused access",
    );
    refused(
        &tmp.path().join("noca"),
        &["--creds", "alice:s3cret-pass"],
        "certificate",
    );
    // The explicit opt-out works against the same server.
    let out = tmp.path().join("insecure");
    create_ok(
        &out,
        &keys.secret,
        &[
            "--from",
            &host,
            "--creds",
            "alice:s3cret-pass",
            "--tls-verify=false",
        ],
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_same_input_gives_byte_identical_volumes() {
    let fx = standard_fixture();
    let keys = keygen();
    let tmp = temp_dir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        create_ok(
            out,
            &keys.secret,
            &[
                "--from",
                &fx.registry.host(),
                "--tls-verify=false",
                "--volume-size",
                "256K",
            ],
        );
    }
    let (va, vb) = (volumes(&a), volumes(&b));
    assert!(va.len() > 1);
    assert_eq!(va.len(), vb.len());
    for (x, y) in va.iter().zip(&vb) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}

#[test]
fn bundles_an_oci_layout_written_by_skopeo() {
    let fx = standard_fixture();
    let tmp = temp_dir();
    let layout = tmp.path().join("skopeo-layout");
    for p in ["openshift/php:5.5", "library/busybox:1.36"] {
        run(std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{p}", fx.registry.host()))
            .arg(format!("oci:{}:{p}", layout.display())));
    }
    let keys = keygen();
    let out = tmp.path().join("bundle");
    create_ok(
        &out,
        &keys.secret,
        &["--from", &format!("oci:{}", layout.display())],
    );
    assert_eq!(
        listed_references(&out, &keys.public),
        ["library/busybox:1.36", "openshift/php:5.5"]
    );
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn refuses_unsafe_keys_and_occupied_output() {
    let keys = keygen();
    let tmp = temp_dir();
    let loose = tmp.path().join("loose.key");
    std::fs::copy(&keys.secret, &loose).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = create(
        &tmp.path().join("o1"),
        &loose,
        &["--from", "oci:sample/layout"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));

    let out = tmp.path().join("o2");
    create_ok(&out, &keys.secret, &["--from", "oci:sample/layout"]);
    let o = create(&out, &keys.secret, &["--from", "oci:sample/layout"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("already holds a finished bundle"),
        "{}",
        text(&o)
    );

    let o = create(
        &tmp.path().join("o3"),
        &keys.secret,
        &["--from", "oci:sample/layout", "--include", "nothing/*"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no images matched"), "{}", text(&o));
}

/// A password-protected key made by `minisign -G` signs: its password from
/// --key-password-file or BUNDLE_KEY_PASSWORD, minisign verifies the result;
/// a wrong password or none (no terminal) is refused before anything is
/// created, saying how to give it.
#[test]
fn a_password_protected_minisign_key_signs() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut keygen_run = std::process::Command::new("minisign")
        .args(["-G", "-p", "k.pub", "-s", "k.key"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("minisign is installed (apt-get install minisign)");
    use std::io::Write;
    keygen_run
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\ncorrect horse\n")
        .unwrap();
    assert!(keygen_run.wait().unwrap().success(), "minisign -G");
    let key = dir.join("k.key");
    assert!(std::fs::read_to_string(&key).unwrap().contains("encrypted"));
    std::fs::write(dir.join("pw"), "correct horse\n").unwrap();
    std::fs::write(dir.join("wrong"), "incorrect horse\n").unwrap();

    // `bundle create` of the sample with the key, BUNDLE_KEY_PASSWORD set to
    // `env` (or unset), and `extra` arguments.
    let run = |out: &Path, env: Option<&str>, extra: &[&std::ffi::OsStr]| {
        let mut cmd = bundle_cmd();
        match env {
            Some(p) => cmd.env("BUNDLE_KEY_PASSWORD", p),
            None => cmd.env_remove("BUNDLE_KEY_PASSWORD"),
        };
        cmd.arg("create")
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(&key)
            .args(extra)
            .args(["--from", "oci:sample/layout"])
            .output()
            .unwrap()
    };
    let password_file = |name: &str| {
        [
            "--key-password-file".into(),
            dir.join(name).into_os_string(),
        ]
    };

    let out = dir.join("with-file");
    let [flag, file] = password_file("pw");
    let o = run(&out, None, &[&flag, &file]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = std::process::Command::new("minisign")
        .args(["-Vm"])
        .arg(out.join("bundle.json"))
        .arg("-p")
        .arg(dir.join("k.pub"))
        .output()
        .unwrap();
    assert!(v.status.success(), "minisign -V: {}", text(&v));
    let v = verify(&out, &dir.join("k.pub"), &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    let o = run(&dir.join("with-env"), Some("correct horse"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let out = dir.join("out-wrong");
    let [flag, file] = password_file("wrong");
    let o = run(&out, None, &[&flag, &file]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("wrong password"), "{}", text(&o));
    assert!(!text(&o).contains("horse"), "{}", text(&o));
    assert!(!out.exists());

    let out = dir.join("out-none");
    let o = run(&out, None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--key-password-file"), "{}", text(&o));
    assert!(!out.exists());
}

/// An OCI index with no manifests is an image like any other: it travels,
/// verifies and extracts, with or without `--platform`, and no warning
/// about `--platform` appears when none was given.
#[test]
fn an_empty_index_travels_like_any_other_image() {
    let registry = TestRegistry::start();
    let tmp = temp_dir();
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let body = tmp.path().join("index.json");
    std::fs::write(&body, index).unwrap();
    let mut put = registry.curl_args_for("empty/index");
    put.extend(
        [
            "--request",
            "PUT",
            "--header",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
        ]
        .map(String::from),
    );
    put.push(format!("@{}", body.display()));
    let answer = curl(
        &put,
        &format!("{}/v2/empty/index/manifests/1", registry.url()),
    );
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // distribution's catalog lists only repositories that hold a blob: name it.
    let list = tmp.path().join("images.txt");
    std::fs::write(&list, "empty/index:1\n").unwrap();
    let keys = keygen();
    for (name, extra) in [
        ("plain", &[][..]),
        ("filtered", &["--platform", "linux/amd64"][..]),
    ] {
        let out = tmp.path().join(name);
        let mut a = host_args(&registry);
        a.extend(["--images".to_owned(), list.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let o = create(&out, &keys.secret, &args(&a));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        assert!(!text(&o).contains("--platform"), "{name}: {}", text(&o));
        assert_eq!(listed_references(&out, &keys.public), ["empty/index:1"]);
        let listing = list_json(&out, &keys.public);
        assert_eq!(listing["images"][0]["digest"], digest_of(index), "{name}");
        let v = verify(&out, &keys.public, &[]);
        assert_eq!(v.status.code(), Some(0), "{name}: {}", text(&v));
    }
    let layout = tmp.path().join("layout");
    standard_tools_extract(&tmp.path().join("plain"), &keys.public, &layout);
    assert_eq!(
        std::fs::read(layout.join("blobs/sha256").join(&digest_of(index)[7..])).unwrap(),
        index
    );
    let target = TestRegistry::start();
    let o = bundle_cmd()
        .arg("push")
        .arg(tmp.path().join("plain"))
        .args(["--to", &target.host(), "--tls-verify=false", "--pubkey"])
        .arg(&keys.public)
        .arg("--mirror-config")
        .arg(tmp.path().join("mirror"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(skopeo_inspect_raw(&target, "empty/index", "1"), index);
}
