//! Terminal-safe output. Every line the CLI prints goes through [`escape`]
//! (by way of [`outln!`] and [`errln!`]), so no value from the medium or a
//! registry can move the cursor, recolour or erase the screen, ring the bell,
//! or reorder what the operator reads: control and invisible formatting
//! characters are shown as `\x1b`, `\u{202e}`, …. `--json` output escapes the
//! same characters as `\uXXXX` ([`escape_json`]).
//!
//! Writing never panics. When stdout is closed (`bundle list … | head -1`),
//! printing stops quietly and the command keeps its exit code; any other
//! stdout failure is reported once at the end ([`stdout_failure`]). Errors
//! writing to stderr are ignored.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::OnceLock;

/// Prints one line on stdout, formatted as `format!` does and then escaped.
macro_rules! outln {
    () => {
        $crate::cli::output::out_line("")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::out_line(&format!($($arg)*))
    };
}

/// Prints one line on stderr, formatted as `format!` does and then escaped.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::err_line(&format!($($arg)*))
    };
}

pub(crate) use {errln, outln};

pub use crate::text::is_unsafe;

/// `s` with every [`is_unsafe`] character in a visible escaped form: `\t`,
/// `\n`, `\r`, `\x1b` for the other C0 controls and DEL, `\u{9b}` or
/// `\u{202e}` for the rest. Everything else, backslashes included, is kept.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c <= '\x7f' && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Serialized JSON with every [`is_unsafe`] character from DEL up written as
/// a `\uXXXX` escape (a surrogate pair above U+FFFF). serde_json already
/// escapes C0 controls inside strings; the characters escaped here can only
/// occur inside strings, so the text still parses to the same value.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let unsafe_above_ascii = |c: char| c >= '\x7f' && is_unsafe(c);
    if !json.chars().any(unsafe_above_ascii) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_above_ascii(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The first error writing to stdout; once set, nothing more is written.
static STDOUT_ERROR: OnceLock<io::Error> = OnceLock::new();

/// Writes `text` to stdout unless an earlier write failed; remembers the
/// first failure instead of panicking.
fn write_stdout(text: &str) {
    if STDOUT_ERROR.get().is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        let _ = STDOUT_ERROR.set(e);
    }
}

/// Prints `line`, escaped, and a line break on stdout (see [`outln!`]).
pub fn out_line(line: &str) {
    write_stdout(&format!("{}\n", escape(line)));
}

/// Prints `line`, escaped, and a line break on stderr (see [`errln!`]); a
/// failure to write is ignored, as there is nowhere left to report it.
pub fn err_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{}", escape(line));
}

/// Prints serialized JSON, escaped by [`escape_json`], and a line break on stdout.
pub fn out_json(json: &str) {
    write_stdout(&format!("{}\n", escape_json(json)));
}

/// The error that stopped output to stdout, unless it was a closed pipe
/// (the reader is gone: nothing to report, and no one to report it to).
pub fn stdout_failure() -> Option<&'static io::Error> {
    STDOUT_ERROR
        .get()
        .filter(|e| e.kind() != io::ErrorKind::BrokenPipe)
}

/// A `tracing` writer for stderr that escapes each log record as a line:
/// field values from a registry or the medium cannot reach the terminal
/// raw (tracing-subscriber escapes ESC and C1, but not CR or bidirectional
/// overrides). Write errors are ignored.
#[derive(Clone, Copy, Default)]
pub struct EscapingStderr;

impl Write for EscapingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let _ = writeln!(io::stderr().lock(), "{}", escape(body));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingStderr {
    type Writer = EscapingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept_as_it_is() {
        for s in [
            "",
            "bundle 0123 created 2026-01-01T00:00:00Z",
            "caf\u{e9} \u{4e2d}\u{6587} \\x1b C:\\dir",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn c0_controls_and_del_are_shown_as_hex_or_letters() {
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("\r\n\t"), "\\r\\n\\t");
        assert_eq!(escape("\x07\x08\0\x7f"), "\\x07\\x08\\x00\\x7f");
        assert_eq!(escape("\x0b\x0c\x1f"), "\\x0b\\x0c\\x1f");
    }

    #[test]
    fn c1_controls_are_shown_as_code_points() {
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(
            escape("\u{80}\u{85}\u{9d}\u{9f}"),
            "\\u{80}\\u{85}\\u{9d}\\u{9f}"
        );
        assert_eq!(escape("\u{a0}"), "\u{a0}", "NO-BREAK SPACE is printable");
    }

    #[test]
    fn bidi_and_invisible_format_characters_are_shown_as_code_points() {
        for c in [
            '\u{61c}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
            '\u{3164}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(escape(&s), format!("x\\u{{{:x}}}y", u32::from(c)), "{c:?}");
        }
    }

    #[test]
    fn no_unsafe_character_survives_escaping() {
        let all: String = (0..=0x10ffff).filter_map(char::from_u32).collect();
        let escaped = escape(&all);
        assert!(!escaped.chars().any(is_unsafe));
        assert!(escaped.contains("\\x1b") && escaped.contains("\\u{202e}"));
    }

    #[test]
    fn json_escapes_keep_the_value() {
        let value = serde_json::json!({
            "name": "images.tar.zst.\u{1b}[2J\r\x07\u{9b}\u{202e}\u{7f}\u{e0041}\n",
            "plain": "caf\u{e9}",
        });
        let text = serde_json::to_string_pretty(&value).unwrap();
        let escaped = escape_json(&text);
        assert!(
            !escaped.chars().any(|c| is_unsafe(c) && c != '\n'),
            "{escaped}"
        );
        assert!(escaped.contains("\\u009b") && escaped.contains("\\u202e"));
        assert!(
            escaped.contains("\\udb40\\udc41"),
            "a surrogate pair above U+FFFF"
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn json_without_unsafe_characters_is_kept() {
        let text = "{\n  \"a\": \"caf\u{e9}\\u001b\"\n}";
        assert!(matches!(escape_json(text), Cow::Borrowed(_)));
    }
}
