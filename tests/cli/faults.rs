//! Network and server faults between `bundle` and a registry, injected by a
//! [`FaultProxy`] in front of the real one: resets mid-body, 5xx, 429 with
//! `Retry-After`, a body shorter than its `Content-Length`, a trickle, a
//! flipped byte. Each run either succeeds with a bundle that verifies and
//! holds the source's digests, or fails (exit 2) naming what failed and
//! signing nothing. Timings are only checked as lower bounds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use crate::support::images::Blob;
use crate::support::*;

/// Longer than any retry budget of the client: a run still going is hung.
const HANG: Duration = Duration::from_secs(180);

/// `bundle create --from PROXY --tls-verify=false --volume-size 256K ARGS…`
/// into `out`, killed after [`HANG`] (then its exit code is `None`).
fn create_via(proxy: &FaultProxy, out: &Path, key: &Path, args: &[&str]) -> Output {
    bundle_cmd()
        .arg("create")
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .args(["--from", &proxy.host(), "--tls-verify=false"])
        .args(["--volume-size", "256K"])
        .args(args)
        .timeout(HANG)
        .output()
        .unwrap()
}

/// `bundle push BUNDLE --to PROXY/mirror --tls-verify=false
/// --mirror-config CONFIG ARGS…`, killed after [`HANG`].
fn push_via(
    proxy: &FaultProxy,
    bundle: &Path,
    pubkey: &Path,
    config: &Path,
    args: &[&str],
) -> Output {
    bundle_cmd()
        .arg("push")
        .arg(bundle)
        .arg("--to")
        .arg(format!("{}/mirror", proxy.host()))
        .arg("--pubkey")
        .arg(pubkey)
        .args(["--tls-verify=false", "--mirror-config"])
        .arg(config)
        .args(args)
        .timeout(HANG)
        .output()
        .unwrap()
}

/// One create through the proxy with fresh keys, into `_tmp/bundle`.
struct Run {
    keys: Keys,
    out: PathBuf,
    output: Output,
    _tmp: tempfile::TempDir,
}

fn create_through(proxy: &FaultProxy, args: &[&str]) -> Run {
    let keys = keygen();
    let _tmp = temp_dir();
    let out = _tmp.path().join("bundle");
    let output = create_via(proxy, &out, &keys.secret, args);
    Run {
        keys,
        out,
        output,
        _tmp,
    }
}

/// Panics with the run's output and the proxy's log unless the run exited with `code`.
fn assert_exit(o: &Output, code: i32, proxy: &FaultProxy) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "bundle exited {} (no code: killed after {HANG:?}, hung)\n{}\n--- proxy log\n{}",
        o.status,
        text(o),
        proxy.log_text()
    );
}

/// The bundle verifies and lists every source image at its source digest.
fn assert_bundle_is_the_source(out: &Path, keys: &Keys, fx: &StandardFixture) {
    let v = verify(out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let listing = list_json(out, &keys.public);
    let mut listed: Vec<(String, String)> = listing["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap().to_owned(),
                i["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut source: Vec<(String, String)> = fx
        .images
        .iter()
        .map(|p| (p.reference(), p.digest.clone()))
        .collect();
    listed.sort();
    source.sort();
    assert_eq!(listed, source, "the bundle's images and digests");
}

/// Nothing was signed: no `bundle.json`, no signature, and `verify` refuses.
fn assert_nothing_signed(out: &Path, keys: &Keys) {
    assert!(!out.join("bundle.json").exists(), "bundle.json was written");
    assert!(
        !out.join("bundle.json.minisig").exists(),
        "a signature was written"
    );
    let v = verify(out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
}

/// The fixture's layer shared by every image but one (~200 KB).
fn base_layer(fx: &StandardFixture) -> Blob {
    fx.layout.image("openshift/php:5.5").manifests[0].layers[0].clone()
}

/// The `php-common` layer of `openshift/php:5.6` and `library/nginx:1.25` (~30 KB).
fn php_common_layer(fx: &StandardFixture) -> Blob {
    fx.layout.image("openshift/php:5.6").manifests[0].layers[1].clone()
}

/// The only layer of `tools/helm:3.14`, in no other image.
fn helm_layer(fx: &StandardFixture) -> Blob {
    fx.layout.image("tools/helm:3.14").manifests[0].layers[0].clone()
}

/// The requests of `log` after `entry` (by arrival) for the same path.
fn later_for<'a>(log: &'a [Logged], entry: &Logged) -> Vec<&'a Logged> {
    log.iter()
        .filter(|r| r.at > entry.at && r.path == entry.path && r.method == entry.method)
        .collect()
}

/// The proxy itself: each fault as `curl` sees it, and ranges forwarded.
#[test]
fn fault_proxy_injects_each_fault_and_forwards_ranges() {
    let (registry, digest, size) = helm_registry();
    let proxy = FaultProxy::in_front_of(&registry);
    let url = format!("http://{}/v2/app/helm/blobs/{digest}", proxy.host());
    // curl's exit code, stderr and body.
    let get = |extra: &[&str]| {
        let dir = temp_dir();
        let body = dir.path().join("body");
        let o = Command::new("curl")
            .args(["--silent", "--show-error", "--output"])
            .arg(&body)
            .args(extra)
            .arg(&url)
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&o.stderr).into_owned();
        (
            o.status.code(),
            text,
            std::fs::read(&body).unwrap_or_default(),
        )
    };
    let blob = |fault| Rule::new(Kind::BlobGet, fault).first(1);

    proxy.add(blob(Fault::Reset { after: 1000 }));
    let (code, err, body) = get(&[]);
    assert_eq!(code, Some(56), "a reset is a receive failure: {err}");
    assert!(err.contains("reset by peer"), "{err}");
    assert_eq!(body.len(), 1000);

    proxy.add(blob(Fault::Truncate));
    let (code, err, body) = get(&[]);
    assert_eq!(code, Some(18), "a short body is a partial transfer: {err}");
    assert_eq!(body.len() as u64, size / 2);

    proxy.add(blob(Fault::FlipByte));
    let (code, err, body) = get(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(body.len() as u64, size);
    assert_ne!(digest_of(&body), digest);

    proxy.add(blob(Fault::Status(503)));
    let answer = curl(&[], &url);
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["errors"][0]["code"], "UNAVAILABLE");

    proxy.add(Rule::new(Kind::Catalog, Fault::TooManyRequests { retry_after: 1 }).first(1));
    let answer = curl(&[], &format!("http://{}/v2/_catalog", proxy.host()));
    assert_eq!(
        (answer.status, answer.header("Retry-After")),
        (429, Some("1"))
    );
    let answer = curl(&[], &format!("http://{}/v2/_catalog", proxy.host()));
    assert_eq!(
        answer.status, 200,
        "only the first catalog request is refused"
    );

    proxy.add(blob(Fault::Trickle {
        bytes_per_sec: 100_000,
    }));
    let (code, err, body) = get(&[]);
    assert_eq!((code, digest_of(&body)), (Some(0), digest.clone()), "{err}");

    // Without a fault left, ranges go through as asked.
    let (code, err, body) = get(&["--range", "100-"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(body.len() as u64, size - 100);

    let log = proxy.log();
    let sent: Vec<(u16, u64, Option<Fault>)> = log
        .iter()
        .filter(|r| r.path.contains(&digest))
        .map(|r| (r.status, r.sent, r.fault))
        .collect();
    assert_eq!(
        sent,
        [
            (200, 1000, Some(Fault::Reset { after: 1000 })),
            (200, size / 2, Some(Fault::Truncate)),
            (200, size, Some(Fault::FlipByte)),
            (503, 60, Some(Fault::Status(503))),
            (
                200,
                size,
                Some(Fault::Trickle {
                    bytes_per_sec: 100_000
                })
            ),
            (206, size - 100, None),
        ],
        "{}",
        proxy.log_text()
    );
    let ranged = log.last().expect("requests were logged");
    assert_eq!(ranged.range.as_deref(), Some("bytes=100-"));
    let trickled = &log[log.len() - 2];
    // Ten steps a second: at least the nominal time less one step.
    let nominal = Duration::from_secs_f64(size as f64 / 100_000.0);
    assert!(trickled.done - trickled.at >= nominal.saturating_sub(Duration::from_millis(100)));
}

#[test]
fn connections_reset_mid_body_are_resumed_with_range() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    const AFTER: u64 = 10_000;
    let (base, common) = (base_layer(&fx), php_common_layer(&fx));
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::Reset { after: AFTER })
            .paths(&[&base.digest, &common.digest])
            .fresh_only()
            .first_per_path(1),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 0, &proxy);
    assert_bundle_is_the_source(&out, &keys, &fx);

    let log = proxy.log();
    let resets = proxy.faulted();
    assert_eq!(
        resets.len(),
        2,
        "both layers reset once:\n{}",
        proxy.log_text()
    );
    for reset in &resets {
        assert_eq!(reset.sent, AFTER, "{}", reset.line());
        let next = later_for(&log, reset);
        let resumed = next.first().unwrap_or_else(|| {
            panic!(
                "no GET after the reset of {}:\n{}",
                reset.path,
                proxy.log_text()
            )
        });
        // A resume asks for the rest from what arrived (at most what was sent).
        let from = resumed
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .map(|n| n.parse::<u64>().expect("a Range start"));
        match from {
            Some(from) => {
                assert!(0 < from && from <= AFTER, "{}", resumed.line());
                assert_eq!(resumed.status, 206, "{}", resumed.line());
            }
            None => assert_eq!(resumed.status, 200, "a full re-GET: {}", resumed.line()),
        }
    }
    assert!(
        log.iter()
            .any(|r| r.range.as_deref() == Some(&format!("bytes={AFTER}-"))),
        "no GET resumed with Range: bytes={AFTER}-:\n{}",
        proxy.log_text()
    );
}

#[test]
fn server_errors_on_the_first_attempts_are_retried() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let faults = [
        (helm_layer(&fx).digest, 503),
        (base_layer(&fx).digest, 500),
        (php_common_layer(&fx).digest, 502),
    ];
    for (digest, status) in &faults {
        proxy.add(
            Rule::new(Kind::BlobGet, Fault::Status(*status))
                .paths(&[digest])
                .first(2),
        );
    }
    proxy.add(
        Rule::new(Kind::ManifestGet, Fault::Status(503))
            .paths(&["/v2/openshift/php/manifests/"])
            .first(2),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 0, &proxy);
    assert_bundle_is_the_source(&out, &keys, &fx);

    let log = proxy.log();
    let faulted = proxy.faulted();
    assert_eq!(
        faulted.len(),
        8,
        "every fault was met:\n{}",
        proxy.log_text()
    );
    for (digest, status) in &faults {
        let hits: Vec<&Logged> = log.iter().filter(|r| r.path.contains(digest)).collect();
        assert!(
            hits.len() >= 3
                && hits[..2].iter().all(|r| r.status == *status)
                && hits[2].status == 200,
            "{digest}: {status} twice, then 200:\n{}",
            proxy.log_text()
        );
    }
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let limited = Fault::TooManyRequests { retry_after: 1 };
    proxy.add(Rule::new(Kind::Catalog, limited).first(1));
    proxy.add(
        Rule::new(Kind::TagList, limited)
            .paths(&["/v2/openshift/php/"])
            .first(1),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 0, &proxy);
    assert_bundle_is_the_source(&out, &keys, &fx);

    let log = proxy.log();
    let limited = proxy.faulted();
    assert_eq!(limited.len(), 2, "{}", proxy.log_text());
    for refused in &limited {
        assert_eq!(refused.status, 429);
        let retry = later_for(&log, refused);
        let retry = retry
            .first()
            .unwrap_or_else(|| panic!("{} never retried:\n{}", refused.path, proxy.log_text()));
        // Retry-After: 1 honoured (a generous lower bound: timers are coarse).
        let waited = retry.at.saturating_sub(refused.done);
        assert!(
            waited >= Duration::from_millis(800),
            "retried after {waited:?}:\n{}",
            proxy.log_text()
        );
        assert_eq!(retry.status, 200, "{}", retry.line());
    }
}

#[test]
fn a_body_shorter_than_its_content_length_is_resumed_or_named() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let base = base_layer(&fx);
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::Truncate)
            .paths(&[&base.digest])
            .fresh_only()
            .first(1),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    let cut = proxy.faulted();
    eprintln!(
        "create: {}\n{}\n--- proxy log\n{}",
        o.status,
        text(&o),
        proxy.log_text()
    );
    assert_eq!(cut.len(), 1, "{}", proxy.log_text());
    assert_eq!(cut[0].sent, base.size / 2, "{}", cut[0].line());
    if o.status.success() {
        assert_bundle_is_the_source(&out, &keys, &fx);
        let log = proxy.log();
        let next = later_for(&log, &cut[0]);
        let next = next
            .first()
            .unwrap_or_else(|| panic!("succeeded without the rest:\n{}", proxy.log_text()));
        assert!(
            next.range.as_deref() == Some(&format!("bytes={}-", base.size / 2))
                || (next.range.is_none() && next.status == 200),
            "the rest was asked for: {}",
            next.line()
        );
    } else {
        assert_exit(&o, 2, &proxy);
        assert!(text(&o).contains(&base.digest[7..]), "{}", text(&o));
        assert_nothing_signed(&out, &keys);
    }
}

#[test]
fn a_byte_flipped_on_every_attempt_fails_naming_the_blob_and_signs_nothing() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let helm = helm_layer(&fx);
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::FlipByte)
            .paths(&[&helm.digest])
            .always(),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 2, &proxy);
    let t = text(&o);
    assert!(t.contains(&helm.digest[7..]), "the blob must be named: {t}");
    assert!(
        t.contains("tools/helm"),
        "the repository must be named: {t}"
    );
    assert!(t.to_lowercase().contains("digest"), "{t}");
    assert_nothing_signed(&out, &keys);
    let flips = proxy.faulted();
    assert!(
        flips.iter().all(|r| r.sent == helm.size),
        "the flipped body kept its length:\n{}",
        proxy.log_text()
    );
    // Fetched once more after the mismatch, then given up.
    assert_eq!(flips.len(), 2, "{}", proxy.log_text());
}

#[test]
fn a_byte_flipped_once_is_fetched_again_and_the_bundle_is_the_source() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    // The base layer, needed by most images; the proptest in the archive covers rewinds across volumes.
    let base = base_layer(&fx);
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::FlipByte)
            .paths(&[&base.digest])
            .first(1),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 0, &proxy);
    assert_eq!(proxy.faulted().len(), 1, "{}", proxy.log_text());
    let gets = proxy
        .log()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&base.digest))
        .count();
    assert_eq!(
        gets,
        2,
        "fetched again after the mismatch:\n{}",
        proxy.log_text()
    );
    assert_bundle_is_the_source(&out, &keys, &fx);
}

#[test]
fn a_blob_failing_every_attempt_fails_within_the_retry_budget() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let helm = helm_layer(&fx);
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::Status(503))
            .paths(&[&helm.digest])
            .always(),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 2, &proxy);
    let t = text(&o);
    assert!(t.contains(&helm.digest[7..]), "the blob must be named: {t}");
    assert!(t.contains("503"), "the status must be named: {t}");
    assert_nothing_signed(&out, &keys);
    // Retried, but not without end.
    let attempts = proxy.faulted().len();
    assert!(
        (2..=8).contains(&attempts),
        "{attempts} attempts:\n{}",
        proxy.log_text()
    );
}

#[test]
fn a_blob_trickling_in_completes() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let base = base_layer(&fx);
    const RATE: u64 = 200_000;
    proxy.add(
        Rule::new(
            Kind::BlobGet,
            Fault::Trickle {
                bytes_per_sec: RATE,
            },
        )
        .paths(&[&base.digest])
        .first(1),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp,
    } = create_through(&proxy, &[]);
    assert_exit(&o, 0, &proxy);
    assert_bundle_is_the_source(&out, &keys, &fx);
    let slow = proxy.faulted();
    assert_eq!(slow.len(), 1, "{}", proxy.log_text());
    assert_eq!((slow[0].status, slow[0].sent), (200, base.size));
    // The trickle did happen (a lower bound, half the nominal time).
    let took = slow[0].done - slow[0].at;
    let nominal = Duration::from_secs_f64(base.size as f64 / RATE as f64);
    assert!(took >= nominal / 2, "took {took:?}: {}", slow[0].line());
    let fetched = proxy
        .log()
        .iter()
        .filter(|r| r.path.contains(&base.digest))
        .count();
    assert_eq!(fetched, 1, "fetched again:\n{}", proxy.log_text());
}

#[test]
fn a_push_through_5xx_on_uploads_tags_the_source_digests_or_nothing() {
    let Bundled { fx, keys, tmp, dir } = bundled("256K");
    let target = TestRegistry::start();
    let proxy = FaultProxy::in_front_of(&target);
    // The fixture's blobs are small: each is sent as a POST and one PUT with
    // the body (a PATCH only streams blobs larger than a chunk, and is not retried).
    proxy.add(Rule::new(Kind::UploadStart, Fault::Status(503)).first(2));
    proxy.add(Rule::new(Kind::UploadPut, Fault::Status(502)).first(2));
    proxy.add(Rule::new(Kind::ManifestPut, Fault::Status(500)).first(1));
    let config = tmp.path().join("mirror-config");
    let o = push_via(&proxy, &dir, &keys.public, &config, &[]);
    assert_eq!(
        proxy.faulted().len(),
        5,
        "every fault was met:\n{}",
        proxy.log_text()
    );
    eprintln!("push: {}\n{}", o.status, text(&o));
    if o.status.success() {
        for pushed in &fx.images {
            let repo = format!("mirror/{}", pushed.repo);
            let served = fetch_manifest(&target, &repo, &pushed.tag);
            assert_eq!(served.digest, pushed.digest, "{repo}:{}", pushed.tag);
        }
    } else {
        assert_exit(&o, 2, &proxy);
        for repo in fx.repositories() {
            let r = curl(
                &target.curl_args(),
                &format!("{}/v2/mirror/{repo}/tags/list", target.url()),
            );
            let tags = if r.status == 200 {
                r.json()["tags"].clone()
            } else {
                serde_json::Value::Null
            };
            assert!(
                tags.as_array().is_none_or(|t| t.is_empty()),
                "a failed push tagged {repo}: {tags}"
            );
        }
    }
}

#[test]
fn keep_going_leaves_out_the_images_that_cannot_be_fetched_and_exits_3() {
    let fx = standard_fixture();
    let proxy = FaultProxy::in_front_of(&fx.registry);
    let helm = helm_layer(&fx);
    // tools/helm's layer never comes; library/nginx's manifest never comes.
    proxy.add(
        Rule::new(Kind::BlobGet, Fault::Status(503))
            .paths(&[&helm.digest])
            .always(),
    );
    proxy.add(
        Rule::new(Kind::ManifestGet, Fault::Status(503))
            .paths(&["/v2/library/nginx/"])
            .always(),
    );
    let Run {
        keys,
        out,
        output: o,
        _tmp: tmp,
    } = create_through(&proxy, &["--keep-going"]);
    assert_exit(&o, 3, &proxy);
    let t = text(&o);
    assert!(t.contains("PARTIAL: 2 images left out"), "{t}");
    assert!(
        t.contains("tools/helm:3.14") && t.contains(&helm.digest),
        "{t}"
    );
    assert!(t.contains("library/nginx:1.25") && t.contains("503"), "{t}");
    let v = verify(&out, &keys.public, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let mut want: Vec<String> = fx
        .images
        .iter()
        .map(|p| p.reference())
        .filter(|r| r != "tools/helm:3.14" && r != "library/nginx:1.25")
        .collect();
    want.sort();
    assert_eq!(listed_references(&out, &keys.public), want);
    // Without --keep-going the same faults fail the run, and nothing is signed.
    let out2 = tmp.path().join("strict");
    let o = create_via(&proxy, &out2, &keys.secret, &[]);
    assert_exit(&o, 2, &proxy);
    assert!(
        !out2.join("bundle.json").exists(),
        "a failed run signs nothing"
    );
}

/// `push --jobs N` bounds the uploads at once: behind a target whose upload
/// starts are slow, the proxy never sees more than N of them in flight (and
/// sees N), and every tag lands at the source digest.
#[test]
fn push_jobs_bounds_the_uploads_in_flight() {
    let Bundled { fx, keys, tmp, dir } = bundled("256K");
    for jobs in [1usize, 3] {
        let target = TestRegistry::start();
        let proxy = FaultProxy::in_front_of(&target);
        proxy.add(Rule::new(Kind::UploadStart, Fault::Delay { ms: 300 }).always());
        let config = tmp.path().join(format!("mirror-{jobs}"));
        let o = push_via(
            &proxy,
            &dir,
            &keys.public,
            &config,
            &["--jobs", &jobs.to_string()],
        );
        assert_exit(&o, 0, &proxy);
        assert_eq!(
            proxy.max_in_flight(Kind::UploadStart),
            jobs,
            "upload starts in flight at once with --jobs {jobs}\n{}",
            proxy.log_text()
        );
        for pushed in &fx.images {
            let repo = format!("mirror/{}", pushed.repo);
            let served = fetch_manifest(&target, &repo, &pushed.tag);
            assert_eq!(served.digest, pushed.digest, "{repo}:{}", pushed.tag);
        }
    }
}
