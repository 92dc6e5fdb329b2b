//! Hostile text meets the terminal: file names on the medium, strings of
//! bundle.json and registry error texts holding escape sequences, carriage
//! returns, bells, C1 controls and bidirectional overrides must reach
//! stdout and stderr escaped (`\x1b`, `\u{202e}`), never raw, so no bundle
//! can redraw a failed verify as `VERIFIED` or erase a warning; `--json`
//! keeps the values exact. A closed stdout (`bundle list … | head -1`) ends
//! a command quietly with the exit code of its outcome.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bundle::manifest;

use super::forge;
use crate::common::*;
use crate::support::*;

/// An extra file that verify takes for a volume: clears the screen, homes
/// the cursor, writes `VERIFIED` over the line, rings, and sends a C1 CSI.
const VOLUME_NAME: &str = "images.tar.zst.\u{1b}[2J\u{1b}[H\rVERIFIED\u{7}\u{9b}0m\u{202e}001";
/// [`VOLUME_NAME`] as it must be shown.
const VOLUME_SHOWN: &str = r"images.tar.zst.\x1b[2J\x1b[H\rVERIFIED\x07\u{9b}0m\u{202e}001";
/// An extra file that is not volume-like: sets the window title, hides its
/// extension behind a right-to-left override, and backspaces.
const OTHER_NAME: &str = "\u{1b}]0;owned\u{7}notes\u{202e}hs.txt\u{8}\u{8}\u{2066}";
/// [`crate::support::faults::HOSTILE_MESSAGE`] as it must be shown.
const MESSAGE_SHOWN: &str = r"\x1b[2J\x1b[HVERIFIED\r\x07\u{9b}0m\u{202e}txt.exe";

/// True for a character a terminal acts on or that hides or reorders text:
/// C0 and C1 controls and DEL (`char::is_control`), bidirectional marks,
/// embeddings, overrides and isolates, line and paragraph separators,
/// zero-width characters and the byte order mark.
fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
        )
}

/// Panics unless stdout and stderr are UTF-8 holding no ESC byte and no
/// character a terminal acts on other than the line breaks between lines.
fn assert_terminal_safe(what: &str, output: &Output) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8(bytes.clone())
            .unwrap_or_else(|e| panic!("{what}: {stream} is not UTF-8: {e}"));
        assert!(!bytes.contains(&0x1b), "{what}: ESC on {stream}:\n{text}");
        let raw: Vec<char> = text
            .chars()
            .filter(|&c| c != '\n' && acts_on_terminal(c))
            .collect();
        assert!(raw.is_empty(), "{what}: {raw:?} raw on {stream}:\n{text}");
    }
}

/// `bundle ARGS…` from `cwd`, checked to be terminal-safe and to exit `code`.
fn run_expecting(cwd: &Path, args: &[&std::ffi::OsStr], code: i32) -> Output {
    let out = bundle_cmd().current_dir(cwd).args(args).output().unwrap();
    let what = format!("bundle {args:?}");
    assert_terminal_safe(&what, &out);
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(&out));
    out
}

#[test]
fn hostile_file_names_on_the_medium_are_shown_escaped() {
    let f = forge();
    let case = f.case("names");
    copy_dir_all(&f.good, &case.bundle);
    fs::write(case.bundle.join(VOLUME_NAME), b"not a volume").unwrap();
    fs::write(case.bundle.join(OTHER_NAME), b"notes").unwrap();
    let (bundle, key) = (case.bundle.as_os_str(), f.keys.public.as_os_str());

    let out = run_expecting(
        &case.cwd,
        &["verify".as_ref(), bundle, "--pubkey".as_ref(), key],
        1,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(VOLUME_SHOWN), "{stdout}");
    assert!(
        stdout.lines().last().unwrap().starts_with("BAD BUNDLE"),
        "{stdout}"
    );

    let args = [
        "verify".as_ref(),
        bundle,
        "--pubkey".as_ref(),
        key,
        "--json".as_ref(),
    ];
    let out = run_expecting(&case.cwd, &args, 1);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains(r"\u001b[2J") && json.contains(r"\u202e"),
        "{json}"
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let files: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["file"].as_str())
        .collect();
    assert!(
        files.contains(&VOLUME_NAME),
        "the exact name in --json: {files:?}"
    );

    let layout = case.layout.as_os_str();
    let args = [
        "extract".as_ref(),
        bundle,
        "--to".as_ref(),
        layout,
        "--pubkey".as_ref(),
        key,
    ];
    let out = run_expecting(&case.cwd, &args, 1);
    assert!(text(&out).contains(VOLUME_SHOWN), "{}", text(&out));

    run_expecting(
        &case.cwd,
        &["list".as_ref(), bundle, "--pubkey".as_ref(), key],
        0,
    );
    let out = run_expecting(&case.cwd, &["list".as_ref(), bundle], 0);
    assert!(
        text(&out).contains("signature not checked"),
        "{}",
        text(&out)
    );
}

#[test]
fn hostile_strings_in_bundle_json_are_shown_escaped() {
    let f = forge();
    let case = f.case("strings");
    // Moves up a line, erases it (list's "signature not checked" warning),
    // returns and prints a green OK; the others hide or reorder text.
    let reference = "app/one:1\u{1b}[1A\u{1b}[2K\r\u{1b}[32mOK\u{7}";
    let shown = r"app/one:1\x1b[1A\x1b[2K\r\x1b[32mOK\x07";
    let platform = "linux/amd64\u{202e}\u{2028}\u{200b}";
    f.write_json(&case, |m| {
        m["images"][0]["reference"] = reference.into();
        m["images"][0]["platforms"] = serde_json::json!([platform]);
        m["images"][0]["media_type"] = "application/x\u{85}\u{9b}2J".into();
        m["source"] = "oci:/tmp/x\u{1b}]8;;http://evil/\u{7}".into();
    });
    let (bundle, key) = (case.bundle.as_os_str(), f.keys.public.as_os_str());

    // Unsigned: accepted today; refused by a strict parser (the error then
    // names the value, escaped). Either way nothing reaches the terminal raw
    // and the warning stays.
    let out = bundle_cmd()
        .current_dir(&case.cwd)
        .arg("list")
        .arg(bundle)
        .output()
        .unwrap();
    assert_terminal_safe("list", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("signature not checked"), "{stderr}");
    match out.status.code() {
        Some(0) => assert!(
            String::from_utf8_lossy(&out.stdout).contains(shown),
            "{}",
            text(&out)
        ),
        code => assert!(matches!(code, Some(1 | 2)), "list:\n{}", text(&out)),
    }

    let out = bundle_cmd()
        .current_dir(&case.cwd)
        .arg("list")
        .arg(bundle)
        .arg("--json")
        .output()
        .unwrap();
    assert_terminal_safe("list --json", &out);
    if out.status.success() {
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listing["images"][0]["reference"], reference);
        assert_eq!(listing["images"][0]["platforms"][0], platform);
    }

    // Signed: verify refuses it (index.json disagrees, or the strict parser).
    for (args, codes) in [
        (
            vec!["list".as_ref(), bundle, "--pubkey".as_ref(), key],
            &[0, 1, 2][..],
        ),
        (
            vec!["verify".as_ref(), bundle, "--pubkey".as_ref(), key],
            &[1],
        ),
        (
            vec![
                "verify".as_ref(),
                bundle,
                "--pubkey".as_ref(),
                key,
                "--json".as_ref(),
            ],
            &[1],
        ),
    ] {
        let out = bundle_cmd()
            .current_dir(&case.cwd)
            .args(&args)
            .output()
            .unwrap();
        assert_terminal_safe(&format!("{args:?}"), &out);
        let code = out.status.code().unwrap_or(-1);
        assert!(codes.contains(&code), "{args:?}:\n{}", text(&out));
    }
}

#[test]
fn registry_error_texts_are_shown_escaped() {
    let f = forge();
    let registry = TestRegistry::start();
    let proxy = FaultProxy::in_front_of(&registry);
    proxy.add(Rule::new(Kind::UploadStart, Fault::HostileStatus(400)).always());
    proxy.add(Rule::new(Kind::Catalog, Fault::HostileStatus(400)).always());
    let tmp = temp_dir();

    for verbose in [None, Some("-vv")] {
        let out = bundle_cmd()
            .arg("push")
            .arg(&f.good)
            .arg("--to")
            .arg(format!("{}/mirror", proxy.host()))
            .arg("--pubkey")
            .arg(&f.keys.public)
            .args(["--tls-verify=false", "--mirror-config"])
            .arg(tmp.path().join("config"))
            .args(verbose)
            .output()
            .unwrap();
        assert_terminal_safe("push", &out);
        assert_eq!(out.status.code(), Some(2), "push:\n{}", text(&out));
        assert!(text(&out).contains(MESSAGE_SHOWN), "push:\n{}", text(&out));
    }

    let out = bundle_cmd()
        .arg("create")
        .args(["--from", &proxy.host(), "--tls-verify=false", "--out"])
        .arg(tmp.path().join("created"))
        .arg("--key")
        .arg(&f.keys.secret)
        .output()
        .unwrap();
    assert_terminal_safe("create", &out);
    assert_eq!(out.status.code(), Some(2), "create:\n{}", text(&out));
    assert!(
        text(&out).contains(MESSAGE_SHOWN),
        "create:\n{}",
        text(&out)
    );
}

/// `bundle ARGS…` with stdout a pipe whose reader is gone before the
/// process starts (every write fails with EPIPE), and stderr closed the same
/// way too when `close_stderr`. Checked not to panic.
fn with_stdout_closed(args: &[&std::ffi::OsStr], close_stderr: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bundle"));
    cmd.args(args).stdin(Stdio::null()).stdout(writer);
    if close_stderr {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        cmd.stderr(writer);
    } else {
        cmd.stderr(Stdio::piped());
    }
    let out = cmd.output().unwrap();
    assert_no_panic(&out);
    out
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_outcome_exit_code() {
    let f = forge();
    let bad = f.case("bad");
    copy_dir_all(&f.good, &bad.bundle);
    fs::write(bad.bundle.join(manifest::volume_name(7)), b"extra").unwrap();
    let (good, bad_dir, key) = (
        f.good.as_os_str(),
        bad.bundle.as_os_str(),
        f.keys.public.as_os_str(),
    );
    let layout = f.tmp.path().join("layout");
    let nowhere = f.tmp.path().join("no-such-bundle");
    let cases: Vec<(Vec<&std::ffi::OsStr>, i32)> = vec![
        (vec!["list".as_ref(), good, "--pubkey".as_ref(), key], 0),
        (vec!["list".as_ref(), good, "--json".as_ref()], 0),
        (vec!["list".as_ref(), good], 0),
        (vec!["verify".as_ref(), good, "--pubkey".as_ref(), key], 0),
        (
            vec!["verify".as_ref(), bad_dir, "--pubkey".as_ref(), key],
            1,
        ),
        (
            vec![
                "verify".as_ref(),
                bad_dir,
                "--pubkey".as_ref(),
                key,
                "--json".as_ref(),
            ],
            1,
        ),
        (
            vec![
                "extract".as_ref(),
                good,
                "--pubkey".as_ref(),
                key,
                "--to".as_ref(),
                layout.as_ref(),
            ],
            0,
        ),
        (
            vec![
                "verify".as_ref(),
                nowhere.as_ref(),
                "--pubkey".as_ref(),
                key,
            ],
            2,
        ),
        (vec!["--help".as_ref()], 0),
    ];
    for (args, code) in &cases {
        let out = with_stdout_closed(args, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}:\n{stderr}");
        // Quiet: nothing about the closed pipe (list without --pubkey still
        // warns, a missing bundle is still an error).
        assert!(
            !stderr.contains("pipe") && !stderr.contains("stdout"),
            "{args:?}:\n{stderr}"
        );
        let out = with_stdout_closed(args, true);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}, stderr closed too"
        );
    }
}

#[test]
fn a_stdout_that_cannot_be_written_is_an_error() {
    let f = forge();
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bundle"))
        .arg("list")
        .arg(&f.good)
        .arg("--pubkey")
        .arg(&f.keys.public)
        .stdout(full)
        .output()
        .unwrap();
    assert_no_panic(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: writing to stdout"), "{stderr}");
}
