//! TLS as skopeo and podman do it: a self-signed server certificate given
//! with `--ca-cert` (the distribution docs' recipe), client certificates for
//! mutual TLS from `--cert-dir`, and the per-registry `certs.d` directories.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;
use crate::support::*;

/// `bundle create --out OUT --key KEY --from HOST ARGS…` with `HOME` set to
/// `home` (so that no `~/.config/containers/certs.d` of the machine is read).
fn create_from(reg: &TestRegistry, home: &Path, out: &Path, key: &Path, args: &[&str]) -> Output {
    bundle_cmd()
        .env("HOME", home)
        .args(["create", "--from", &reg.host(), "--key"])
        .arg(key)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("running bundle create")
}

/// `reg` with one image, `openshift/php:5.5`, pushed by skopeo.
fn seeded(reg: TestRegistry) -> (TestRegistry, tempfile::TempDir) {
    let dir = temp_dir();
    let layout = standard_layout(&dir.path().join("layout"));
    skopeo_push(
        &reg,
        &layout,
        "openshift/php:5.5",
        "openshift/php:5.5",
        Format::Oci,
    );
    (reg, dir)
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_self_signed_server_certificate_given_with_ca_cert_is_trusted_as_skopeo_does() {
    let (reg, _layout) = seeded(
        TestRegistry::builder()
            .server_cert(ServerCert::SelfSigned(LOOPBACK_SAN.to_owned()))
            .start(),
    );
    let keys = keygen();
    let tmp = temp_dir();
    let crt = reg.ca_cert_path();
    assert!(crt.ends_with("domain.crt"), "{}", crt.display());

    // Not trusted without it, with a hint that names the fix.
    let o = create_from(
        &reg,
        tmp.path(),
        &tmp.path().join("untrusted"),
        &keys.secret,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains("could not be verified"), "{err}");
    let fix = err
        .find("--ca-cert FILE")
        .expect("the hint names --ca-cert");
    assert!(err.contains("--cert-dir DIR"), "{err}");
    assert!(
        fix < err.find("--tls-verify=false").expect("and the opt-out"),
        "{err}"
    );

    for (name, args) in [
        ("ca-cert", vec!["--ca-cert".to_owned(), path_arg(&crt)]),
        (
            "cert-dir",
            vec!["--cert-dir".to_owned(), path_arg(reg.cert_dir())],
        ),
    ] {
        let out = tmp.path().join(name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = create_from(&reg, tmp.path(), &out, &keys.secret, &args);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        assert_eq!(listed_references(&out, &keys.public), ["openshift/php:5.5"]);
    }
}

#[test]
fn a_given_server_certificate_still_needs_the_right_name_and_dates() {
    let keys = keygen();
    let tmp = temp_dir();
    for (cert, expected) in [
        (
            ServerCert::SelfSigned("DNS:registry.example".to_owned()),
            "not valid for name",
        ),
        (ServerCert::ExpiredSelfSigned, "expired"),
    ] {
        let reg = TestRegistry::builder().server_cert(cert.clone()).start();
        let crt = path_arg(&reg.ca_cert_path());
        let out = tmp.path().join("out");
        let o = create_from(&reg, tmp.path(), &out, &keys.secret, &["--ca-cert", &crt]);
        assert_eq!(o.status.code(), Some(2), "{cert:?}: {}", text(&o));
        let err = text(&o);
        assert!(err.contains("could not be verified"), "{cert:?}: {err}");
        assert!(err.contains(expected), "{cert:?}: {err}");
        // Given already: the hint does not send the user back to --ca-cert.
        assert!(
            err.contains("trusting it would not help"),
            "{cert:?}: {err}"
        );
        assert!(!err.contains("--ca-cert FILE"), "{cert:?}: {err}");
        assert!(!out.join("bundle.json").exists());
    }
}

#[test]
fn mutual_tls_create_and_push_with_a_cert_dir() {
    let (source, _layout) = seeded(TestRegistry::builder().client_cas().start());
    let keys = keygen();
    let tmp = temp_dir();
    let ca = path_arg(&source.ca_cert_path());

    // The CA alone: the registry wants a client certificate, and says so.
    let o = create_from(
        &source,
        tmp.path(),
        &tmp.path().join("no-client"),
        &keys.secret,
        &["--ca-cert", &ca],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains("asked for a client certificate"), "{err}");
    assert!(err.contains("--cert-dir DIR"), "{err}");
    assert!(!err.contains("plain http"), "no misleading hint: {err}");

    // skopeo's cert dir: ca.crt, client.cert, client.key (PKCS#1 RSA).
    let bundle = tmp.path().join("bundle");
    let cert_dir = path_arg(source.cert_dir());
    let o = create_from(
        &source,
        tmp.path(),
        &bundle,
        &keys.secret,
        &["--cert-dir", &cert_dir],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        listed_references(&bundle, &keys.public),
        ["openshift/php:5.5"]
    );

    // Push into another mutual-TLS registry (its own CAs).
    let target = TestRegistry::builder().client_cas().start();
    let to = format!("{}/mirror", target.host());
    let push = |args: &[&str]| {
        bundle_cmd()
            .env("HOME", tmp.path())
            .arg("push")
            .arg(&bundle)
            .args(["--to", &to, "--pubkey"])
            .arg(&keys.public)
            .arg("--mirror-config")
            .arg(tmp.path().join("mirror-config"))
            .args(args)
            .output()
            .expect("running bundle push")
    };
    let target_ca = path_arg(&target.ca_cert_path());
    let o = push(&["--ca-cert", &target_ca]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("asked for a client certificate"),
        "{}",
        text(&o)
    );
    assert!(target.repositories().is_empty());
    // The source's client certificate is not one the target trusts.
    let o = push(&["--ca-cert", &target_ca, "--cert-dir", &cert_dir]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(target.repositories().is_empty());

    let o = push(&["--cert-dir", &path_arg(target.cert_dir())]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(target.repositories(), ["mirror/openshift/php"]);
}

#[test]
fn a_client_certificate_without_its_key_is_an_error_naming_both() {
    let reg = TestRegistry::builder().client_cas().start();
    let keys = keygen();
    let tmp = temp_dir();
    let dir = tmp.path().join("certs");
    copy_dir_all(reg.cert_dir(), &dir);
    std::fs::remove_file(dir.join("client.key")).expect("removing the key");
    let o = create_from(
        &reg,
        tmp.path(),
        &tmp.path().join("out"),
        &keys.secret,
        &["--cert-dir", &path_arg(&dir)],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    let (cert, key) = (dir.join("client.cert"), dir.join("client.key"));
    assert!(
        err.contains(&format!(
            "missing key {} for client certificate {}",
            key.display(),
            cert.display()
        )),
        "{err}"
    );

    // The reverse: a key without its certificate.
    std::fs::rename(&cert, dir.join("other.cert")).expect("renaming");
    std::fs::copy(reg.cert_dir().join("client.key"), &key).expect("copying the key back");
    std::fs::copy(reg.cert_dir().join("client.key"), dir.join("other.key")).expect("copying");
    let o = create_from(
        &reg,
        tmp.path(),
        &tmp.path().join("out"),
        &keys.secret,
        &["--cert-dir", &path_arg(&dir)],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "missing client certificate {} for key {}",
            cert.display(),
            key.display()
        )),
        "{}",
        text(&o)
    );
}

/// Directories made under `/etc` for one test, removed when dropped (with
/// the parents the test had to create, such as `/etc/containers/certs.d`).
struct EtcDirs(Vec<PathBuf>);

impl EtcDirs {
    /// Makes `dir` (and its parents), failing the test clearly when `/etc` is not writable.
    fn make(&mut self, dir: PathBuf) -> PathBuf {
        let created = dir
            .ancestors()
            .take_while(|a| !a.exists())
            .last()
            .map(Path::to_owned);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!(
                "this test writes {} as podman's per-registry certificate directory; \
                 run it as root (CI does): {e}",
                dir.display()
            );
        }
        self.0.extend(created);
        dir
    }
}

impl Drop for EtcDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn the_registrys_certs_d_directory_is_used_without_flags() {
    let (reg, _layout) = seeded(TestRegistry::builder().client_cas().start());
    let keys = keygen();
    let tmp = temp_dir();
    let mut etc = EtcDirs(Vec::new());
    // What podman reads first: ca.crt, client.cert and client.key.
    let containers = etc.make(Path::new("/etc/containers/certs.d").join(reg.host()));
    copy_dir_all(reg.cert_dir(), &containers);
    // Read only when /etc/containers has none (no merging): a lone .cert here
    // would be an error.
    let docker = etc.make(Path::new("/etc/docker/certs.d").join(reg.host()));
    std::fs::copy(reg.cert_dir().join("client.cert"), docker.join("lone.cert")).expect("copying");

    let out = tmp.path().join("bundle");
    let o = create_from(&reg, tmp.path(), &out, &keys.secret, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(listed_references(&out, &keys.public), ["openshift/php:5.5"]);

    // ~/.config/containers/certs.d comes first (a lone key there is an error).
    let home = tmp.path().join("home");
    let mine = home.join(".config/containers/certs.d").join(reg.host());
    std::fs::create_dir_all(&mine).expect("creating the home cert dir");
    std::fs::copy(reg.cert_dir().join("client.key"), mine.join("me.key")).expect("copying");
    let o = create_from(&reg, &home, &tmp.path().join("again"), &keys.secret, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("for key {}", mine.join("me.key").display())),
        "{}",
        text(&o)
    );

    // --cert-dir replaces the lookup.
    let o = create_from(
        &reg,
        &home,
        &tmp.path().join("flag"),
        &keys.secret,
        &["--cert-dir", &path_arg(reg.cert_dir())],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_plain_http_hint_says_exactly_what_allows_plain_http() {
    let (reg, _layout) = seeded(TestRegistry::start());
    let keys = keygen();
    let tmp = temp_dir();
    let host = reg.host();
    // Verification on: https fails at the TLS level.
    let o = create_from(&reg, tmp.path(), &tmp.path().join("a"), &keys.secret, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains(&format!("TLS handshake with {host} failed")),
        "{err}"
    );
    assert!(err.contains("--tls-verify=false"), "{err}");
    assert!(err.contains(&format!("http://{host}")), "{err}");
    // What it says works: --tls-verify=false on this loopback host, with or without http://.
    for (name, from) in [("b", host.clone()), ("c", format!("http://{host}"))] {
        let o = bundle_cmd()
            .env("HOME", tmp.path())
            .args(["create", "--from", &from, "--tls-verify=false", "--key"])
            .arg(&keys.secret)
            .arg("--out")
            .arg(tmp.path().join(name))
            .output()
            .expect("running bundle create");
        assert_eq!(o.status.code(), Some(0), "{from}: {}", text(&o));
    }
}
