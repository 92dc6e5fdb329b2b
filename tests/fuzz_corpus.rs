//! Replays every fuzz seed and saved finding under `fuzz/corpus/<target>/`
//! through the same checks the fuzz targets run (`fuzz/checks.rs`), so plain
//! `cargo test` covers them without cargo-fuzz or a nightly toolchain.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The seed files of `target`, sorted by name.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing the corpus").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed of `target` and names each one that panics.
fn replay(target: &str, check: checks::Check) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} has no seeds");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data =
                std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (panic messages above): {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn bundle_json_corpus() {
    replay("bundle_json", checks::bundle_json);
}

/// The corpus file `fuzz/corpus/<target>/<name>` holds exactly `data`, the
/// seed as the fixtures make it today; `BUNDLE_WRITE_SEEDS=1` writes it so.
fn seed_file_matches(target: &str, name: &str, data: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
        .join(name);
    if std::env::var_os("BUNDLE_WRITE_SEEDS").is_some() {
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let file = std::fs::read(&path).unwrap_or_default();
    assert!(
        file == data,
        "{} is not the seed the fixtures make now; write it again with \
         BUNDLE_WRITE_SEEDS=1 cargo test --test fuzz_corpus",
        path.display()
    );
}

#[test]
fn volume_reader_corpus() {
    replay("volume_reader", checks::volume_reader);
}

/// The `volume_reader` seeds as the current writer makes them (the corpus
/// files are a snapshot of the same list): the clean ones read clean, every
/// other one is reported, and `-rehashed` ones get past the volume hash.
#[test]
fn volume_reader_fixture_seeds() {
    for (name, data) in checks::volume_reader_seeds() {
        seed_file_matches("volume_reader", &name, &data);
        let outcome = checks::volume_reader_outcome(&data).expect("seeds are not empty");
        let clean = name.contains("clean");
        assert_eq!(outcome.changed, !clean, "{name}: {outcome:?}");
        assert_eq!(outcome.problems == 0, clean, "{name}: {outcome:?}");
        assert_eq!(
            outcome.rehashed,
            name.ends_with("-rehashed"),
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn oci_manifest_corpus() {
    replay("oci_manifest", checks::oci_manifest);
}

#[test]
fn image_reference_corpus() {
    replay("image_reference", checks::image_reference);
}

#[test]
fn minisign_signature_corpus() {
    replay("minisign_signature", checks::minisign_signature);
}

#[test]
fn www_authenticate_corpus() {
    replay("www_authenticate", checks::www_authenticate);
}

#[test]
fn link_header_corpus() {
    replay("link_header", checks::link_header);
}

#[test]
fn auth_json_corpus() {
    replay("auth_json", checks::auth_json);
}

#[test]
fn signed_bundle_corpus() {
    replay("signed_bundle", checks::signed_bundle);
}

#[test]
fn mirror_config_corpus() {
    replay("mirror_config", checks::mirror_config);
}

/// The `mirror_config` seeds reach what they are for: the `registry-` ones
/// build the three files, the `bad-source-` ones are refused (by
/// `mirror_config`, or by `BundleManifest::parse` once it checks sources),
/// and the `hostile-id-` ones build them (or are refused at parse).
#[test]
fn mirror_config_seeds_reach_the_writer() {
    for path in corpus("mirror_config") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = checks::mirror_config_outcome(&std::fs::read(&path).unwrap());
        if name.starts_with("registry-") {
            assert_eq!(outcome, Some(true), "{name}");
        } else if name.starts_with("bad-source-") {
            assert_ne!(outcome, Some(true), "{name}");
        } else {
            assert_ne!(outcome, Some(false), "{name}");
        }
    }
}

/// The `signed_bundle` seeds as the current writer makes them: the `clean`
/// ones verify and extract, the edited ones are refused (so the target
/// reaches the deep checks and is not refused at the signature).
#[test]
fn signed_bundle_fixture_seeds() {
    for (name, data) in checks::signed_bundle_seeds() {
        seed_file_matches("signed_bundle", &name, &data);
        let ok = checks::signed_bundle_outcome(&data).expect("seeds hold a bundle.json");
        assert_eq!(ok, name.ends_with("-clean"), "{name}");
    }
}

/// The replay tests above, `checks::TARGETS`, the target files and the corpus
/// directories name the same targets.
#[test]
fn targets_and_corpora_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut names: Vec<&str> = checks::TARGETS.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    let mut dirs: Vec<String> = std::fs::read_dir(root.join("corpus"))
        .expect("listing fuzz/corpus")
        .map(|entry| entry.expect("listing fuzz/corpus").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    dirs.sort_unstable();
    assert_eq!(dirs, names, "fuzz/corpus/* and checks::TARGETS differ");
    for name in names {
        let target = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
    }
}
