//! The mirror configuration `bundle push` writes works as written: podman,
//! given only the generated registries.conf, pulls the source's references
//! from the mirror with the source registry stopped, over plain http and
//! over TLS, by digest (and by tag with `--tag-mirrors`); the install-config
//! snippet carries the target's CA.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::support::*;

/// `bundle push --json` of `b` to `to` with the mirror configuration in `cfg`.
fn push_to(b: &Bundled, to: &str, cfg: &Path, args: &[&str]) -> Value {
    let o = bundle_cmd()
        .arg("push")
        .arg(&b.dir)
        .args(["--to", to, "--json", "--pubkey"])
        .arg(&b.keys.public)
        .arg("--mirror-config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

/// Pulls `reference` with podman and checks it is the image `digest`.
fn pull_ok(podman: &Podman, reference: &str, digest: &str) {
    let o = podman.pull(reference);
    assert!(
        o.status.success(),
        "podman pull {reference} through the generated registries.conf failed:\n{}",
        text(&o)
    );
    let digests = podman.repo_digests(reference);
    assert!(
        digests.iter().any(|d| d.ends_with(&format!("@{digest}"))),
        "{reference}: {digests:?}"
    );
}

/// A bundle of the standard fixture, pushed to `target` under `mirror/`;
/// then the source is stopped. Returns the bundle (its source stopped), the
/// mirror configuration directory and the image pulled, `openshift/php:5.6`.
fn pushed_then_source_stopped(target: &TestRegistry, args: &[&str]) -> (Bundled, PathBuf, Pushed) {
    let mut b = bundled("50M");
    let cfg = b.tmp.path().join("mirror-config");
    let to = format!("{}/mirror", target.host());
    let report = push_to(&b, &to, &cfg, args);
    assert_eq!(report["tagged"], true, "{report}");
    let php = b.fx.get("openshift/php:5.6").clone();
    b.fx.registry.stop();
    (b, cfg, php)
}

#[test]
fn podman_pulls_by_digest_from_a_plain_http_mirror_with_the_source_stopped() {
    let target = TestRegistry::start();
    let (b, cfg, php) = pushed_then_source_stopped(&target, &["--tls-verify=false"]);
    let conf = std::fs::read_to_string(cfg.join("registries.conf")).unwrap();
    assert!(conf.contains("insecure = true"), "{conf}");
    let podman = Podman::with_registries_conf(&cfg.join("registries.conf"));
    let source = b.fx.registry.host();
    pull_ok(
        &podman,
        &format!("{source}/{}@{}", php.repo, php.digest),
        &php.digest,
    );
    // Digest-only mirrors: a pull by tag goes to the (stopped) source and fails.
    let by_tag = podman.pull(&format!("{source}/{}", php.reference()));
    assert!(!by_tag.status.success(), "{}", text(&by_tag));
}

#[test]
fn podman_pulls_by_digest_from_a_tls_mirror_and_install_config_trusts_its_ca() {
    let target = TestRegistry::builder().tls().start();
    let ca = target.ca_cert_path();
    let (b, cfg, php) = pushed_then_source_stopped(&target, &["--ca-cert", ca.to_str().unwrap()]);
    let conf = std::fs::read_to_string(cfg.join("registries.conf")).unwrap();
    assert!(!conf.contains("insecure"), "{conf}");
    let podman =
        Podman::with_registries_conf(&cfg.join("registries.conf")).cert_dir(target.cert_dir());
    let source = b.fx.registry.host();
    pull_ok(
        &podman,
        &format!("{source}/{}@{}", php.repo, php.digest),
        &php.digest,
    );

    // install-config-mirrors.yaml: the CA as a literal block, the digest sources.
    let snippet = std::fs::read_to_string(cfg.join("install-config-mirrors.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&snippet).unwrap();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let bundle = docs[0]["additionalTrustBundle"].as_str().unwrap();
    let body = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    assert_eq!(body(bundle), body(&ca_pem), "{snippet}");
    assert!(snippet.contains("additionalTrustBundle: |\n"), "{snippet}");
    // The CA of a --cert-dir push goes into the trust bundle the same way.
    let by_dir = b.tmp.path().join("mirror-config-cert-dir");
    let dir = target.cert_dir().display().to_string();
    push_to(
        &b,
        &format!("{}/mirror", target.host()),
        &by_dir,
        &["--cert-dir", &dir],
    );
    let again = std::fs::read_to_string(by_dir.join("install-config-mirrors.yaml")).unwrap();
    let again = yaml_rust2::YamlLoader::load_from_str(&again).unwrap();
    assert_eq!(again[0]["additionalTrustBundle"].as_str(), Some(bundle));
    let sources = docs[0]["imageDigestSources"].as_vec().unwrap();
    assert!(
        sources.iter().any(|s| {
            s["source"].as_str() == Some(&format!("{source}/openshift/php"))
                && s["mirrors"][0].as_str()
                    == Some(&format!("{}/mirror/openshift/php", target.host()))
        }),
        "{snippet}"
    );
}

#[test]
fn with_tag_mirrors_podman_pulls_by_tag_and_never_contact_source_blocks_the_source() {
    let target = TestRegistry::start();
    let (b, cfg, php) = pushed_then_source_stopped(
        &target,
        &[
            "--tls-verify=false",
            "--tag-mirrors",
            "--never-contact-source",
        ],
    );
    let itms = std::fs::read_to_string(cfg.join("imagetagmirrorset.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&itms).unwrap();
    assert_eq!(docs[0]["kind"].as_str(), Some("ImageTagMirrorSet"));
    let entry = &docs[0]["spec"]["imageTagMirrors"][0];
    assert_eq!(
        entry["mirrorSourcePolicy"].as_str(),
        Some("NeverContactSource")
    );
    let podman = Podman::with_registries_conf(&cfg.join("registries.conf"));
    let source = b.fx.registry.host();
    pull_ok(
        &podman,
        &format!("{source}/{}", php.reference()),
        &php.digest,
    );
    pull_ok(
        &podman,
        &format!("{source}/{}@{}", php.repo, php.digest),
        &php.digest,
    );
    // Not on the mirror: refused as blocked, not tried at the source.
    let o = podman.pull(&format!("{source}/openshift/php:no-such-tag"));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("blocked"), "{}", text(&o));
}

/// Images listed by digest (two of one repository, one also naming a tag)
/// beside a tagged one: mapping.txt gives oc a destination without a digest
/// for each, every destination once; podman pulls the digest-only images
/// from the mirror with the source stopped.
#[test]
fn digest_only_images_map_for_oc_and_pull_from_the_mirror() {
    let fx = standard_fixture();
    let keys = keygen();
    let tmp = temp_dir();
    let (p55, p56) = (
        fx.get("openshift/php:5.5").clone(),
        fx.get("openshift/php:5.6").clone(),
    );
    let list = tmp.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "openshift/php@{}\nopenshift/php:5.6@{}\nopenshift/php:5.6\n",
            p55.digest, p56.digest
        ),
    )
    .unwrap();
    let dir = tmp.path().join("bundle");
    let host = fx.registry.host();
    create_ok(
        &dir,
        &keys.secret,
        &[
            "--from",
            &host,
            "--tls-verify=false",
            "--images",
            list.to_str().unwrap(),
        ],
    );
    let b = Bundled { fx, keys, tmp, dir };
    let target = TestRegistry::start();
    let cfg = b.tmp.path().join("cfg");
    let to = format!("{}/mirror", target.host());
    let report = push_to(&b, &to, &cfg, &["--tls-verify=false"]);
    assert_eq!(report["tagged"], true, "{report}");
    let mut fx = b.fx;
    fx.registry.stop();

    let mapping = std::fs::read_to_string(cfg.join("mapping.txt")).unwrap();
    let lines: Vec<&str> = mapping.lines().filter(|l| !l.starts_with('#')).collect();
    let mut destinations = std::collections::BTreeSet::new();
    for line in &lines {
        let (src, dst) = line.split_once('=').unwrap();
        assert!(src.contains('@') && !dst.contains('@'), "oc refuses {line}");
        assert!(destinations.insert(dst), "{dst} twice in\n{mapping}");
    }
    let repo = format!("{to}/openshift/php");
    assert!(
        lines.contains(&format!("{host}/openshift/php@{}={repo}:5.6", p56.digest).as_str()),
        "{mapping}"
    );
    for p in [&p55, &p56] {
        let src = format!("{host}/openshift/php@{}=", p.digest);
        assert!(
            lines.iter().any(|l| l.starts_with(&src)),
            "{src} missing from\n{mapping}"
        );
    }

    let podman = Podman::with_registries_conf(&cfg.join("registries.conf"));
    for p in [&p55, &p56] {
        pull_ok(
            &podman,
            &format!("{host}/openshift/php@{}", p.digest),
            &p.digest,
        );
    }
}

/// A `--ca-cert` file that holds more than certificates (here a private key
/// beside the CA) never reaches install-config: the push stops before
/// anything is sent, naming the file and what is in it.
#[test]
fn a_ca_file_holding_a_private_key_is_refused_before_anything_is_sent() {
    let b = bundled("50M");
    let target = TestRegistry::builder().tls().start();
    let ca = std::fs::read_to_string(target.ca_cert_path()).unwrap();
    let mixed = b.tmp.path().join("ca-and-key.pem");
    std::fs::write(
        &mixed,
        format!("{ca}-----BEGIN PRIVATE KEY-----\nMAsw\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let cfg = b.tmp.path().join("cfg");
    let o = bundle_cmd()
        .arg("push")
        .arg(&b.dir)
        .args(["--to", &target.host(), "--pubkey"])
        .arg(&b.keys.public)
        .arg("--ca-cert")
        .arg(&mixed)
        .arg("--mirror-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("ca-and-key.pem") && err.contains("PRIVATE KEY"),
        "{err}"
    );
    assert!(target.repositories().is_empty(), "something was pushed");
    assert!(!cfg.exists());
}

/// A target named by an IPv6 address is refused before anything is sent:
/// podman and OpenShift refuse such a reference, so the generated
/// registries.conf would break every pull of the source.
#[test]
fn an_ipv6_target_is_refused_before_anything_is_sent() {
    let b = bundled("50M");
    let cfg = b.tmp.path().join("mirror-config");
    let o = bundle_cmd()
        .arg("push")
        .arg(&b.dir)
        .args(["--to", "[::1]:1/mirror", "--tls-verify=false", "--pubkey"])
        .arg(&b.keys.public)
        .arg("--mirror-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot name the registry [::1]:1") && text(&o).contains("host name"),
        "{}",
        text(&o)
    );
    assert!(!cfg.exists() || std::fs::read_dir(&cfg).unwrap().next().is_none());
}
