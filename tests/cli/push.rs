//! `bundle push`: into a real registry (htpasswd + TLS), every tag at the
//! source digest; nothing re-uploaded on a second run; blobs mounted across
//! repositories; no tag created or moved from a bad bundle; a killed push
//! finished by a re-run.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;
use crate::support::*;

fn push(bundle: &Path, to: &str, pubkey: &Path, args: &[&str]) -> Output {
    bundle_cmd()
        .arg("push")
        .arg(bundle)
        .arg("--to")
        .arg(to)
        .arg("--pubkey")
        .arg(pubkey)
        .args(args)
        .output()
        .unwrap()
}

fn push_json(bundle: &Path, to: &str, pubkey: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = push(bundle, to, pubkey, &all);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn stat(report: &Value, name: &str) -> u64 {
    report["stats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{name} in {report}"))
}

/// Tags of `repo` on `registry` (`None` when the repository does not exist).
fn tags(registry: &TestRegistry, repo: &str) -> Option<Vec<String>> {
    let r = curl(
        &registry.curl_args(),
        &format!("{}/v2/{repo}/tags/list", registry.url()),
    );
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut tags: Vec<String> = r.json()["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    tags.sort();
    Some(tags)
}

fn digests_of_committed_blobs(proxy: &PagingProxy) -> Vec<String> {
    proxy
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .filter_map(|r| query_value(r.query.as_deref()?, "digest"))
        .collect()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%3A", ":").replace("%2F", "/"))
    })
}

#[test]
fn pushes_every_tag_to_an_authenticated_tls_registry_with_the_source_digests() {
    let b = bundled("100K");
    // Volumes on two media.
    let second = b.tmp.path().join("dvd2");
    std::fs::create_dir(&second).unwrap();
    let vols = volumes(&b.dir);
    assert!(vols.len() >= 3, "want several volumes, got {}", vols.len());
    for v in &vols[vols.len() / 2..] {
        std::fs::rename(v, second.join(v.file_name().unwrap())).unwrap();
    }
    let target = TestRegistry::builder()
        .htpasswd("pusher", "s3cret")
        .tls()
        .start();
    let config = b.tmp.path().join("mirror-config");
    let ca = target.ca_cert_path();
    let to = format!("{}/mirror", target.host());
    let report = push_json(
        &b.dir,
        &to,
        &b.keys.public,
        &[
            "--creds",
            "pusher:s3cret",
            "--ca-cert",
            ca.to_str().unwrap(),
            "--volumes-from",
            second.to_str().unwrap(),
            "--mirror-config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(report["tagged"], true, "{report}");
    assert_eq!(report["volumes_read"], true);
    for pushed in &b.fx.images {
        let repo = format!("mirror/{}", pushed.repo);
        // skopeo, an independent client, reads every tag at the source digest.
        let raw = skopeo_inspect_raw(&target, &repo, &pushed.tag);
        assert_eq!(digest_of(&raw), pushed.digest, "{repo}:{}", pushed.tag);
    }
    // Multi-arch indexes stay whole: skopeo copies every platform from the target.
    let copy = b.tmp.path().join("busybox");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--src-creds", "pusher:s3cret"])
        .arg(format!("--src-cert-dir={}", target.cert_dir().display()))
        .arg(format!("docker://{to}/library/busybox:1.36"))
        .arg(format!("dir:{}", copy.display()));
    run(&mut cmd);
    let index: Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);

    // Every blob was sent once; the shared base layer was mounted into the other repositories.
    let blobs: std::collections::BTreeSet<String> =
        b.fx.layout
            .images
            .iter()
            .flat_map(|i| i.blob_digests())
            .collect();
    assert!(stat(&report, "blobs_uploaded") as usize <= blobs.len());
    assert!(stat(&report, "blobs_mounted") >= 3, "{report}");
    assert_eq!(stat(&report, "blobs_present"), 0);

    // The mirror configuration names the source and the target of every repository.
    let source = b.fx.registry.host();
    let mapping = std::fs::read_to_string(config.join("mapping.txt")).unwrap();
    for pushed in &b.fx.images {
        let line = format!(
            "{source}/{}@{}={to}/{}:{}",
            pushed.repo, pushed.digest, pushed.repo, pushed.tag
        );
        assert!(
            mapping.lines().any(|l| l == line),
            "{line} not in\n{mapping}"
        );
    }
    let idms = std::fs::read_to_string(config.join("imagedigestmirrorset.yaml")).unwrap();
    assert!(idms.contains("kind: \"ImageDigestMirrorSet\""), "{idms}");
    assert!(
        idms.contains(&format!(
            "  - source: \"{source}/openshift/php\"\n    mirrors:\n    - \"{to}/openshift/php\"\n"
        )),
        "{idms}"
    );
    let conf = std::fs::read_to_string(config.join("registries.conf")).unwrap();
    assert!(
        conf.contains(&format!("location = \"{to}/library/nginx\"")),
        "{conf}"
    );

    // Without credentials the target refuses, and the error says so.
    let o = push(
        &b.dir,
        &to,
        &b.keys.public,
        &[
            "--ca-cert",
            ca.to_str().unwrap(),
            "--volumes-from",
            second.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("unauthorized") || text(&o).contains("credentials"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_second_push_uploads_nothing_and_reads_no_volume() {
    let b = bundled("300K");
    let target = TestRegistry::start();
    let proxy = PagingProxy::in_front_of(&target, 1000);
    let to = format!("{}/mirror", proxy.host());
    let config = b.tmp.path().join("cfg");
    let cfg = [
        "--tls-verify=false",
        "--mirror-config",
        config.to_str().unwrap(),
    ];
    let first = push_json(&b.dir, &to, &b.keys.public, &cfg);
    let committed = digests_of_committed_blobs(&proxy);
    let unique: std::collections::BTreeSet<&String> = committed.iter().collect();
    assert_eq!(
        committed.len(),
        unique.len(),
        "a blob was uploaded twice: {committed:?}"
    );
    assert_eq!(committed.len() as u64, stat(&first, "blobs_uploaded"));
    let mounts = proxy
        .log()
        .iter()
        .filter(|r| r.method == "POST" && r.query.as_deref().is_some_and(|q| q.contains("mount=")))
        .count();
    assert!(mounts >= 3, "the shared base layer is mounted, not re-sent");

    proxy.clear_log();
    let second = push_json(&b.dir, &to, &b.keys.public, &cfg);
    assert_eq!(stat(&second, "blobs_uploaded"), 0, "{second}");
    assert_eq!(stat(&second, "blobs_mounted"), 0);
    assert_eq!(stat(&second, "manifests_pushed"), 0);
    assert_eq!(second["volumes_read"], false);
    let writes: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "the second push wrote: {writes:?}");
    for image in second["images"].as_array().unwrap() {
        assert_eq!(image["tag"], "unchanged", "{image}");
        assert_eq!(image["delivery"], "already-there", "{image}");
    }
    // Every image in exactly one bucket: all pushed the first time, all
    // already there the second, and the human summary says the same.
    let n = b.fx.images.len();
    let counts = |pushed, there| serde_json::json!({"pushed": pushed, "already_there": there, "refused": 0, "not_pushed": 0});
    assert_eq!(first["delivered"], counts(n, 0), "{first}");
    assert_eq!(second["delivered"], counts(0, n), "{second}");
    let o = push(&b.dir, &to, &b.keys.public, &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "images: 0 pushed, {n} already there (of {n} for {to})"
        )),
        "{out}"
    );
}

#[test]
fn blobs_held_in_another_repository_of_the_target_are_mounted_not_uploaded() {
    let b = bundled("4M");
    let target = TestRegistry::start();
    // The target already has php 5.6 (base, php-common and its own layer) elsewhere.
    skopeo_push(
        &target,
        &b.fx.layout,
        "openshift/php:5.6",
        "elsewhere/php:old",
        Format::Oci,
    );
    let php = &b.fx.layout.image("openshift/php:5.6").manifests[0];
    let held: Vec<String> = std::iter::once(&php.config)
        .chain(&php.layers)
        .map(|blob| blob.digest.clone())
        .collect();
    let proxy = PagingProxy::in_front_of(&target, 1000);
    let report = push_json(
        &b.dir,
        &format!("{}/mirror", proxy.host()),
        &b.keys.public,
        &[
            "--tls-verify=false",
            "--mount-from",
            "elsewhere/php",
            "--mirror-config",
            b.tmp.path().join("c").to_str().unwrap(),
        ],
    );
    let committed = digests_of_committed_blobs(&proxy);
    let log = proxy.log();
    for digest in &held {
        assert!(
            !committed.contains(digest),
            "{digest} was uploaded though the target had it"
        );
        assert!(
            log.iter().any(|r| r.method == "POST"
                && r.path == "/v2/mirror/openshift/php/blobs/uploads/"
                && r.query.as_deref().is_some_and(|q| q
                    .contains(&format!("mount={}", digest.replace(':', "%3A")))
                    || q.contains(&format!("mount={digest}")))),
            "{digest} not mounted into mirror/openshift/php"
        );
    }
    assert!(
        stat(&report, "blobs_mounted") >= held.len() as u64 - 1,
        "{report}"
    );
    for pushed in &b.fx.images {
        assert_eq!(
            fetch_manifest(&target, &format!("mirror/{}", pushed.repo), &pushed.tag).digest,
            pushed.digest
        );
    }
}

#[test]
fn a_corrupt_middle_volume_creates_and_moves_no_tag() {
    let b = bundled("200K");
    let vols = volumes(&b.dir);
    assert!(vols.len() >= 3, "{}", vols.len());
    let bad = &vols[vols.len() / 2];
    let mut bytes = std::fs::read(bad).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(bad, bytes).unwrap();

    let target = TestRegistry::start();
    // A tag that exists on the target before, pointing at another image.
    skopeo_push(
        &target,
        &b.fx.layout,
        "tools/helm:3.14",
        "mirror/openshift/php:5.5",
        Format::Oci,
    );
    let before = fetch_manifest(&target, "mirror/openshift/php", "5.5").digest;

    let o = push(
        &b.dir,
        &format!("{}/mirror", target.host()),
        &b.keys.public,
        &[
            "--tls-verify=false",
            "--mirror-config",
            b.tmp.path().join("c").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let name = bad.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text(&o).contains(&name),
        "the bad volume is named: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("no tag was created or moved"),
        "{}",
        text(&o)
    );
    assert!(
        !b.tmp.path().join("c").exists(),
        "no mirror configuration for a bad bundle"
    );
    for pushed in &b.fx.images {
        let repo = format!("mirror/{}", pushed.repo);
        let now = tags(&target, &repo).unwrap_or_default();
        if repo == "mirror/openshift/php" {
            assert_eq!(
                now,
                vec!["5.5".to_owned()],
                "only the tag that was there before"
            );
        } else {
            assert!(now.is_empty(), "{repo} got tags {now:?}");
        }
    }
    assert_eq!(
        fetch_manifest(&target, "mirror/openshift/php", "5.5").digest,
        before
    );
}

#[test]
fn a_missing_volume_or_a_wrong_key_stops_the_push_before_anything_is_sent() {
    let b = bundled("200K");
    let vols = volumes(&b.dir);
    std::fs::remove_file(&vols[1]).unwrap();
    let target = TestRegistry::start();
    let proxy = PagingProxy::in_front_of(&target, 1000);
    let o = push(
        &b.dir,
        &format!("{}/mirror", proxy.host()),
        &b.keys.public,
        &["--tls-verify=false"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let name = vols[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        text(&o).contains(&name) && text(&o).contains("missing"),
        "{}",
        text(&o)
    );
    // A key that did not sign it: refused the same way.
    let other = keygen();
    let o = push(
        &b.dir,
        &format!("{}/mirror", proxy.host()),
        &other.public,
        &["--tls-verify=false"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("key"), "{}", text(&o));
    // Not even a connection: the signature and the volumes come first.
    let sent = proxy.log();
    assert!(
        sent.is_empty(),
        "requests before the missing volume was noticed: {sent:?}"
    );
}

#[test]
fn existing_tags_are_moved_by_default_and_left_with_skip_existing_tags() {
    let b = bundled("4M");
    let target = TestRegistry::start();
    skopeo_push(
        &target,
        &b.fx.layout,
        "tools/helm:3.14",
        "m/openshift/php:5.5",
        Format::Oci,
    );
    let helm = fetch_manifest(&target, "m/openshift/php", "5.5").digest;
    let cfg = b.tmp.path().join("c");
    let to = format!("{}/m", target.host());
    let args = [
        "--tls-verify=false",
        "--mirror-config",
        cfg.to_str().unwrap(),
    ];
    let mut skip = args.to_vec();
    skip.push("--skip-existing-tags");
    let o = push(&b.dir, &to, &b.keys.public, &skip);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("left {to}/openshift/php:5.5")),
        "{}",
        text(&o)
    );
    assert_eq!(
        fetch_manifest(&target, "m/openshift/php", "5.5").digest,
        helm
    );

    let report = push_json(&b.dir, &to, &b.keys.public, &args);
    let php55 =
        b.fx.images
            .iter()
            .find(|p| p.reference() == "openshift/php:5.5")
            .unwrap();
    assert_eq!(
        fetch_manifest(&target, "m/openshift/php", "5.5").digest,
        php55.digest
    );
    let entry = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "openshift/php:5.5")
        .unwrap();
    assert_eq!(entry["tag"], "updated", "{entry}");
}

#[test]
fn flatten_and_max_nested_paths_map_repositories() {
    let b = bundled("4M");
    let target = TestRegistry::start();
    let cfg = b.tmp.path().join("c");
    let base = [
        "--tls-verify=false",
        "--mirror-config",
        cfg.to_str().unwrap(),
    ];
    let mut flat = base.to_vec();
    flat.push("--flatten");
    push_json(
        &b.dir,
        &format!("{}/org/team", target.host()),
        &b.keys.public,
        &flat,
    );
    let mut quay = base.to_vec();
    quay.extend(["--max-nested-paths", "2"]);
    push_json(
        &b.dir,
        &format!("{}/quay", target.host()),
        &b.keys.public,
        &quay,
    );
    for pushed in &b.fx.images {
        let dashed = pushed.repo.replace('/', "-");
        for repo in [format!("org/team/{dashed}"), format!("quay/{dashed}")] {
            assert_eq!(
                fetch_manifest(&target, &repo, &pushed.tag).digest,
                pushed.digest,
                "{repo}"
            );
        }
    }
}

#[test]
fn a_killed_push_is_finished_by_running_it_again() {
    // Enough data that the push is still running when its first blob lands;
    // layers above 4 MiB stream through the upload.
    let fx_dir = temp_dir();
    let mut builder = LayoutBuilder::new(fx_dir.path().join("layout"));
    let names: Vec<String> = (0..12).map(|i| format!("big/app{i}:v1")).collect();
    for name in &names {
        builder = builder.image(
            name,
            ImageSpec::new(vec![
                LayerSpec::shared("base", 1_500_000),
                LayerSpec::unique(5_000_000),
            ]),
        );
    }
    let layout = builder.build();
    let source = TestRegistry::start();
    let digests: Vec<String> = names
        .iter()
        .map(|n| skopeo_push(&source, &layout, n, n, Format::Oci).digest)
        .collect();
    let keys = keygen();
    let tmp = temp_dir();
    let dir = tmp.path().join("bundle");
    create_ok(
        &dir,
        &keys.secret,
        &[
            "--from",
            &source.host(),
            "--tls-verify=false",
            "--volume-size",
            "8M",
        ],
    );

    let target = TestRegistry::start();
    let to = format!("{}/mirror", target.host());
    let cfg = tmp.path().join("c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bundle"))
        .arg("push")
        .arg(&dir)
        .args(["--to", &to, "--pubkey"])
        .arg(&keys.public)
        .args(["--tls-verify=false", "--mirror-config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let layers = target.storage_dir().join("docker/registry/v2/blobs/sha256");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !layers.exists() || std::fs::read_dir(&layers).unwrap().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no blob landed in 60 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-way");
    for name in &names {
        let repo = format!("mirror/{}", name.split_once(':').unwrap().0);
        assert!(
            tags(&target, &repo).unwrap_or_default().is_empty(),
            "{repo} tagged by a killed push"
        );
    }

    let report = push_json(
        &dir,
        &to,
        &keys.public,
        &[
            "--tls-verify=false",
            "--mirror-config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(
        stat(&report, "blobs_present") >= 1,
        "the re-run found what the first one sent: {report}"
    );
    for (name, digest) in names.iter().zip(&digests) {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(
            &fetch_manifest(&target, &format!("mirror/{repo}"), tag).digest,
            digest
        );
    }
}

#[test]
fn a_sparse_index_from_create_platform_is_reported_and_the_other_images_are_tagged() {
    let b = bundled_with(&["--platform", "linux/amd64"]);
    let target = TestRegistry::start();
    let cfg = b.tmp.path().join("c");
    let o = push(
        &b.dir,
        &format!("{}/m", target.host()),
        &b.keys.public,
        &[
            "--tls-verify=false",
            "--mirror-config",
            cfg.to_str().unwrap(),
        ],
    );
    // distribution 2.8 refuses an index whose platforms are not all there.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("library/busybox:1.36") && out.contains("--platform"),
        "{out}"
    );
    for pushed in &b.fx.images {
        let repo = format!("m/{}", pushed.repo);
        if ["library/busybox", "library/alpine"].contains(&pushed.repo.as_str()) {
            assert_eq!(
                tags(&target, &repo).unwrap_or_default(),
                Vec::<String>::new(),
                "{repo}"
            );
        } else {
            assert_eq!(
                fetch_manifest(&target, &repo, &pushed.tag).digest,
                pushed.digest,
                "{repo}"
            );
        }
    }
    let mapping = std::fs::read_to_string(cfg.join("mapping.txt")).unwrap();
    assert!(
        !mapping.contains("busybox") && mapping.contains("openshift/php"),
        "{mapping}"
    );
    // The summary puts the refused images in their own bucket.
    let refused =
        b.fx.images
            .iter()
            .filter(|p| ["library/busybox", "library/alpine"].contains(&p.repo.as_str()))
            .count();
    let pushed = b.fx.images.len() - refused;
    assert!(
        out.contains(&format!(
            "images: {pushed} pushed, 0 already there, {refused} refused"
        )),
        "{out}"
    );
}

#[test]
fn a_streamed_blob_that_fails_to_verify_is_never_committed() {
    let fx_dir = temp_dir();
    let layout = LayoutBuilder::new(fx_dir.path().join("layout"))
        .image(
            "big/one:v1",
            ImageSpec::new(vec![LayerSpec::unique(9_000_000)]),
        )
        .build();
    let layer = layout.image("big/one:v1").manifests[0].layers[0]
        .digest
        .clone();
    let source = TestRegistry::start();
    skopeo_push(&source, &layout, "big/one:v1", "big/one:v1", Format::Oci);
    let keys = keygen();
    let tmp = temp_dir();
    let dir = tmp.path().join("bundle");
    create_ok(
        &dir,
        &keys.secret,
        &["--from", &source.host(), "--tls-verify=false"],
    );
    let vols = volumes(&dir);
    assert_eq!(vols.len(), 1);
    let mut bytes = std::fs::read(&vols[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&vols[0], bytes).unwrap();

    let target = TestRegistry::start();
    let o = push(
        &dir,
        &format!("{}/m", target.host()),
        &keys.public,
        &["--tls-verify=false"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&layer),
        "the bad blob is named: {}",
        text(&o)
    );
    let head = curl(
        &["--head".to_owned()],
        &format!("{}/v2/m/big/one/blobs/{layer}", target.url()),
    );
    assert_eq!(head.status, 404, "the unverified blob was committed");
    assert_eq!(
        tags(&target, "m/big/one").unwrap_or_default(),
        Vec::<String>::new()
    );
}

/// A blob the target lost after a push (deleted, garbage-collected) is found
/// by the next push and sent again, although the image's tag is still there:
/// the blob counts never claim what was not asked.
#[test]
fn a_blob_the_target_lost_is_sent_again_by_the_next_push() {
    let b = bundled("4M");
    let target = TestRegistry::start();
    let to = format!("{}/mirror", target.host());
    let config = b.tmp.path().join("cfg");
    let cfg = [
        "--tls-verify=false",
        "--mirror-config",
        config.to_str().unwrap(),
    ];
    push_json(&b.dir, &to, &b.keys.public, &cfg);
    let php = &b.fx.layout.image("openshift/php:5.6").manifests[0];
    let layer = php.layers.last().unwrap().digest.clone();
    let repo = "mirror/openshift/php";
    let url = format!("{}/v2/{repo}/blobs/{layer}", target.url());
    let mut delete = target.curl_args_for(repo);
    delete.extend(["--request", "DELETE"].map(String::from));
    assert_eq!(curl(&delete, &url).status, 202);
    let head = |what: &str| {
        let mut args = target.curl_args_for(repo);
        args.push("--head".to_owned());
        let status = curl(&args, &url).status;
        assert!(status == 404 || status == 200, "{what}: {status}");
        status
    };
    assert_eq!(head("deleted"), 404);

    let second = push_json(&b.dir, &to, &b.keys.public, &cfg);
    assert_eq!(stat(&second, "blobs_uploaded"), 1, "{second}");
    assert_eq!(head("pushed again"), 200);
}
