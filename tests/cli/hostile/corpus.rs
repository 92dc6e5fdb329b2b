//! The no-panic net over the fuzz corpus: every input of
//! `fuzz/corpus/bundle_json/` becomes the bundle.json of a bundle directory
//! beside the genuine volumes (once under the genuine signature, which no
//! longer matches, once signed again with the trusted key), and every input
//! of `fuzz/corpus/signed_bundle/` a signed bundle directory as the fuzz
//! target builds it. `verify`, `list` (with and without `--pubkey`),
//! `extract` and, for the signed ones, `push` to a real registry run over
//! each: whatever they decide, none may panic, be killed or hang.

#[path = "../../../fuzz/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bundle::manifest;

use super::forge;
use crate::common::*;
use crate::support::*;

/// Longer than any run over a corpus input should take.
const HANG: Duration = Duration::from_secs(60);

/// The inputs of `fuzz/corpus/<target>/`, by file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

/// Runs `bundle ARGS…` and checks that it ended with one of the exit codes
/// the README lists (the net in `bundle_cmd` has already failed the test on
/// a panic). Returns the exit code.
fn run_any_outcome(case: &str, args: &[&std::ffi::OsStr]) -> i32 {
    let out = bundle_cmd().args(args).timeout(HANG).output().unwrap();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "{case}: bundle {args:?} ended with {}:\n{}",
        out.status,
        text(&out)
    );
    code.unwrap()
}

#[test]
fn no_command_panics_on_any_fuzz_corpus_input() {
    let started = Instant::now();
    let f = forge();
    let key = f.keys.public.as_os_str();
    let mut signed: Vec<(String, PathBuf)> = Vec::new();
    for (name, json) in corpus("bundle_json") {
        let unsigned = f.tmp.path().join(format!("unsigned-{name}"));
        copy_dir_all(&f.good, &unsigned);
        fs::write(unsigned.join(manifest::FILE_NAME), &json).unwrap();
        let case = format!("bundle_json/{name}, unsigned");
        let dir = unsigned.as_os_str();
        run_any_outcome(&case, &["list".as_ref(), dir]);
        run_any_outcome(&case, &["list".as_ref(), dir, "--json".as_ref()]);
        run_any_outcome(&case, &["list".as_ref(), dir, "--pubkey".as_ref(), key]);
        let code = run_any_outcome(&case, &["verify".as_ref(), dir, "--pubkey".as_ref(), key]);
        assert_eq!(code, 1, "{case}: the genuine signature no longer matches");
        let layout = f.tmp.path().join(format!("layout-unsigned-{name}"));
        let args = [
            "extract".as_ref(),
            dir,
            "--pubkey".as_ref(),
            key,
            "--to".as_ref(),
            layout.as_os_str(),
        ];
        run_any_outcome(&case, &args);

        let dir = f.tmp.path().join(format!("signed-{name}"));
        copy_dir_all(&f.good, &dir);
        f.sign_into(&dir, &json);
        signed.push((format!("bundle_json/{name}, signed"), dir));
    }
    for (name, data) in corpus("signed_bundle") {
        let Some((json, volumes)) = checks::split_signed_input(&data) else {
            continue;
        };
        let dir = f.tmp.path().join(format!("signed_bundle-{name}"));
        fs::create_dir(&dir).unwrap();
        f.sign_into(&dir, json);
        for (i, v) in volumes.iter().enumerate() {
            fs::write(dir.join(manifest::volume_name(i)), v).unwrap();
        }
        signed.push((format!("signed_bundle/{name}"), dir));
    }

    let registry = TestRegistry::start();
    let mut verified = 0;
    for (i, (case, dir)) in signed.iter().enumerate() {
        let dir = dir.as_os_str();
        run_any_outcome(case, &["list".as_ref(), dir]);
        run_any_outcome(case, &["list".as_ref(), dir, "--pubkey".as_ref(), key]);
        run_any_outcome(
            case,
            &[
                "list".as_ref(),
                dir,
                "--pubkey".as_ref(),
                key,
                "--json".as_ref(),
            ],
        );
        let code = run_any_outcome(case, &["verify".as_ref(), dir, "--pubkey".as_ref(), key]);
        verified += usize::from(code == 0);
        run_any_outcome(
            case,
            &[
                "verify".as_ref(),
                dir,
                "--pubkey".as_ref(),
                key,
                "--json".as_ref(),
            ],
        );
        let layout = f.tmp.path().join(format!("layout-{i}"));
        let args = [
            "extract".as_ref(),
            dir,
            "--pubkey".as_ref(),
            key,
            "--to".as_ref(),
            layout.as_os_str(),
        ];
        run_any_outcome(case, &args);
        let to = format!("{}/corpus-{i}", registry.host());
        let config = f.tmp.path().join(format!("mirror-{i}"));
        let args = [
            "push".as_ref(),
            dir,
            "--to".as_ref(),
            to.as_ref(),
            "--pubkey".as_ref(),
            key,
            "--tls-verify=false".as_ref(),
            "--mirror-config".as_ref(),
            config.as_os_str(),
        ];
        let pushed = run_any_outcome(case, &args);
        assert!(code != 0 || pushed == 0, "{case}: verified but not pushed");
    }
    assert!(
        verified >= 2,
        "the clean signed_bundle seeds verify: {verified}"
    );
    eprintln!("{} signed inputs in {:?}", signed.len(), started.elapsed());
}
