//! YAML and TOML text in which every value is a double-quoted string.
//!
//! The mirror configuration carries strings from the signed bundle.json.
//! Pasted into a template, a newline or a quote in one of them would add a
//! YAML document, a TOML table or a key. Here a document is a tree whose keys
//! are `&'static str` names written in this crate, and every string value is
//! written by [`yaml_quoted`] or [`toml_quoted`]: between double quotes, only
//! printable ASCII (0x20..=0x7e) other than `"` and `\` is written as it is,
//! and every other character is an escape. A value can therefore never end
//! its string early, so it cannot add a key, an entry, a document or a table,
//! and it reads back as exactly the string given. Comments go through
//! [`comment_text`], which keeps printable ASCII only, so no text can leave
//! its comment line.

use std::fmt::Write;

/// A node of a block-style YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Yaml {
    /// A string, written double-quoted.
    Str(String),
    /// A string of lines written as a literal block (`key: |`); only made by
    /// [`Yaml::literal`], which checks that its lines are safe there.
    Literal(String),
    /// A sequence, one `- item` per element.
    Seq(Vec<Yaml>),
    /// A mapping with fixed keys, written in this order.
    Map(Vec<(&'static str, Yaml)>),
}

/// A value of a TOML table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Toml {
    /// A basic string, written double-quoted.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// An array of tables, written as `[[path.key]]` sections.
    Tables(Vec<TomlTable>),
}

/// A TOML table: fixed keys and their values, written in this order.
pub(super) type TomlTable = Vec<(&'static str, Toml)>;

/// `value` as a YAML double-quoted scalar (`\xXX`, `\uXXXX`, `\UXXXXXXXX`
/// escapes).
pub(super) fn yaml_quoted(value: &str) -> String {
    quoted(value, true)
}

/// `value` as a TOML basic string (`\uXXXX`, `\UXXXXXXXX` escapes).
pub(super) fn toml_quoted(value: &str) -> String {
    quoted(value, false)
}

/// `value` between double quotes, everything but printable ASCII escaped;
/// `\xXX` for code points up to 0xff where the format has it (YAML).
fn quoted(value: &str, hex_escapes: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        let code = u32::from(c);
        // Writing to a String cannot fail.
        let _ = match c {
            '"' => out.write_str("\\\""),
            '\\' => out.write_str("\\\\"),
            ' '..='~' => out.write_char(c),
            _ if hex_escapes && code <= 0xff => write!(out, "\\x{code:02x}"),
            _ if code <= 0xffff => write!(out, "\\u{code:04x}"),
            _ => write!(out, "\\U{code:08x}"),
        };
    }
    out.push('"');
    out
}

/// `text` fit for a `#` comment: printable ASCII kept, anything else
/// (a line end, a control, any non-ASCII character) replaced by `?`.
pub(super) fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if matches!(c, ' '..='~') { c } else { '?' })
        .collect()
}

/// A `# ` line per comment (YAML and TOML write comments alike).
fn comment_lines(comments: &[&str]) -> String {
    comments
        .iter()
        .map(|line| format!("# {}\n", comment_text(line)))
        .collect()
}

/// Whether `key` may be written bare in YAML and TOML: `[A-Za-z][A-Za-z0-9-]*`.
/// Keys are names in this crate's source; this documents and checks it.
fn is_plain_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Yaml {
    /// A string node.
    pub(super) fn str(value: impl Into<String>) -> Yaml {
        Yaml::Str(value.into())
    }

    /// `text` as a literal block when it is one or more lines ending in a
    /// line end, each non-empty printable ASCII that does not start with a
    /// space (such a block reads back as exactly `text`); else a quoted string.
    pub(super) fn literal(text: &str) -> Yaml {
        let safe = text.ends_with('\n')
            && text.lines().all(|line| {
                !line.is_empty()
                    && !line.starts_with(' ')
                    && line.bytes().all(|b| (b' '..=b'~').contains(&b))
            });
        if safe {
            Yaml::Literal(text.to_owned())
        } else {
            Yaml::Str(text.to_owned())
        }
    }

    /// One YAML document: a `# ` line per comment, then `entries` as its
    /// top-level mapping.
    pub(super) fn document(comments: &[&str], entries: &[(&'static str, Yaml)]) -> String {
        let mut out = comment_lines(comments);
        write_yaml_map(entries, 0, false, &mut out);
        out
    }
}

/// Writes the entries of a mapping at `indent`; `after_dash` when the first
/// key goes on a `- ` already written.
fn write_yaml_map(
    entries: &[(&'static str, Yaml)],
    indent: usize,
    after_dash: bool,
    out: &mut String,
) {
    for (i, (key, value)) in entries.iter().enumerate() {
        assert!(is_plain_key(key), "YAML key {key:?} is not a plain name");
        if i > 0 || !after_dash {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(key);
        out.push(':');
        match value {
            Yaml::Map(m) if !m.is_empty() => {
                out.push('\n');
                write_yaml_map(m, indent + 2, false, out);
            }
            // A sequence under a key sits at the key's own indentation.
            Yaml::Seq(s) if !s.is_empty() => {
                out.push('\n');
                write_yaml_seq(s, indent, out);
            }
            Yaml::Literal(text) => {
                out.push_str(" |\n");
                for line in text.lines() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                    out.push('\n');
                }
            }
            _ => write_yaml_flow(value, out),
        }
    }
}

/// Writes the items of a sequence at `indent`.
fn write_yaml_seq(items: &[Yaml], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Yaml::Map(m) if !m.is_empty() => {
                out.push(' ');
                write_yaml_map(m, indent + 2, true, out);
            }
            Yaml::Seq(s) if !s.is_empty() => {
                out.push('\n');
                write_yaml_seq(s, indent + 2, out);
            }
            _ => write_yaml_flow(item, out),
        }
    }
}

/// Writes ` "string"`, ` {}` or ` []` and the line end.
fn write_yaml_flow(value: &Yaml, out: &mut String) {
    out.push(' ');
    match value {
        Yaml::Str(s) | Yaml::Literal(s) => out.push_str(&yaml_quoted(s)),
        Yaml::Map(_) => out.push_str("{}"),
        Yaml::Seq(_) => out.push_str("[]"),
    }
    out.push('\n');
}

/// One TOML document: a `# ` line per comment, then the top-level `table`.
pub(super) fn toml_document(comments: &[&str], table: &[(&'static str, Toml)]) -> String {
    let mut out = comment_lines(comments);
    write_toml_table("", table, &mut out);
    out
}

/// Writes the strings and booleans of the table at `path`, then each of its
/// arrays of tables as `[[path.key]]` sections (TOML requires that order).
fn write_toml_table(path: &str, table: &[(&'static str, Toml)], out: &mut String) {
    for (key, value) in table {
        assert!(is_plain_key(key), "TOML key {key:?} is not a plain name");
        match value {
            Toml::Str(s) => {
                let _ = writeln!(out, "{key} = {}", toml_quoted(s));
            }
            Toml::Bool(b) => {
                let _ = writeln!(out, "{key} = {b}");
            }
            Toml::Tables(_) => {}
        }
    }
    for (key, value) in table {
        if let Toml::Tables(tables) = value {
            let inner = if path.is_empty() {
                (*key).to_owned()
            } else {
                format!("{path}.{key}")
            };
            for t in tables {
                let _ = write!(out, "\n[[{inner}]]\n");
                write_toml_table(&inner, t, out);
            }
        }
    }
}

/// The generated files read back by parsers independent of this writer
/// (yaml-rust2, toml), as JSON values to compare with the expected structure.
#[cfg(test)]
pub(super) mod read_back {
    use serde_json::{Map, Value};

    /// Every document of `text`, read by yaml-rust2.
    pub(in crate::push) fn yaml(text: &str) -> Vec<Value> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text)
            .unwrap_or_else(|e| panic!("the YAML does not parse: {e}\n{text}"));
        docs.iter().map(yaml_value).collect()
    }

    fn yaml_value(node: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml as Y;
        match node {
            Y::String(s) => Value::String(s.clone()),
            Y::Boolean(b) => Value::Bool(*b),
            Y::Array(items) => Value::Array(items.iter().map(yaml_value).collect()),
            Y::Hash(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let Y::String(key) = k else {
                        panic!("a key that is not a string: {k:?}");
                    };
                    map.insert(key.clone(), yaml_value(v));
                }
                Value::Object(map)
            }
            // Numbers, nulls and aliases never come from the writer: mark them.
            other => Value::String(format!("<not a string: {other:?}>")),
        }
    }

    /// `text` read by the toml crate.
    pub(in crate::push) fn toml(text: &str) -> Value {
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("the TOML does not parse: {e}\n{text}"));
        serde_json::to_value(table).expect("a TOML table is JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Values that would break out of a string pasted into YAML or TOML.
    const HOSTILE: &[&str] = &[
        "a\n---\nkind: Secret\nmetadata:\n  name: x",
        "a\"b",
        "a\\b\\",
        "\\\"",
        "a # not a comment",
        "a]\n\n[[registry]]\nprefix = \"evil.io\"",
        "[[registry]]",
        "key: value",
        "- item",
        "ünïcödé 日本 😀",
        "\u{202e}evil.io\u{202c}",
        "\x1b[2J\x1b[1;1HVERIFIED\x07",
        "\r\n\t\0\x7f\u{85}\u{2028}\u{feff}",
        "'single'",
        "",
        " leading and trailing ",
        "&anchor *alias !tag %directive @ `",
        "true",
        "0x10",
        "null",
    ];

    #[test]
    fn quoting_escapes_all_but_printable_ascii() {
        assert_eq!(yaml_quoted("plain/a:b-1.2"), "\"plain/a:b-1.2\"");
        assert_eq!(
            yaml_quoted("\"\\\n\x1b\u{85}\u{202e}😀"),
            "\"\\\"\\\\\\x0a\\x1b\\x85\\u202e\\U0001f600\""
        );
        assert_eq!(
            toml_quoted("\"\\\n\x1b\x7f\u{202e}😀"),
            "\"\\\"\\\\\\u000a\\u001b\\u007f\\u202e\\U0001f600\""
        );
        for value in HOSTILE {
            for q in [yaml_quoted(value), toml_quoted(value)] {
                let body = &q[1..q.len() - 1];
                assert!(q.bytes().all(|b| (b' '..=b'~').contains(&b)), "{q}");
                assert!(!body.replace("\\\\", "").replace("\\\"", "").contains('"'));
            }
        }
        assert_eq!(comment_text("id\n---\u{202e}é"), "id?---??");
    }

    #[test]
    fn hostile_yaml_values_keep_the_structure_and_read_back() {
        for value in HOSTILE {
            let text = Yaml::document(
                &[value],
                &[
                    ("kind", Yaml::str(*value)),
                    ("empty", Yaml::Seq(Vec::new())),
                    (
                        "items",
                        Yaml::Seq(vec![
                            Yaml::Map(vec![
                                ("source", Yaml::str(*value)),
                                ("mirrors", Yaml::Seq(vec![Yaml::str(*value)])),
                            ]),
                            Yaml::Seq(vec![Yaml::str(*value)]),
                        ]),
                    ),
                ],
            );
            assert_eq!(
                read_back::yaml(&text),
                [json!({
                    "kind": value,
                    "empty": [],
                    "items": [{"source": value, "mirrors": [value]}, [value]],
                })],
                "{text}"
            );
        }
    }

    /// Text that is not plain lines falls back to a quoted string; both read
    /// back as given, nested or not.
    #[test]
    fn literal_blocks_read_back_or_fall_back_to_quoted() {
        let plain = "-----BEGIN X-----\nAB+/=\n-----END X-----\n";
        assert_eq!(Yaml::literal(plain), Yaml::Literal(plain.to_owned()));
        for value in HOSTILE.iter().chain(&["a\n\nb\n", " a\n", "a", "a\nb"]) {
            assert!(matches!(Yaml::literal(value), Yaml::Str(_)), "{value:?}");
        }
        for value in HOSTILE.iter().chain(&[plain]) {
            let text = Yaml::document(
                &[],
                &[
                    ("top", Yaml::literal(value)),
                    ("nested", Yaml::Map(vec![("inner", Yaml::literal(value))])),
                    ("after", Yaml::str("x")),
                ],
            );
            assert_eq!(
                read_back::yaml(&text),
                [json!({"top": value, "nested": {"inner": value}, "after": "x"})],
                "{text}"
            );
        }
    }

    #[test]
    fn hostile_toml_values_keep_the_structure_and_read_back() {
        for value in HOSTILE {
            let entry = |v: &str| -> Vec<(&'static str, Toml)> {
                vec![
                    ("prefix", Toml::Str(v.to_owned())),
                    ("flag", Toml::Bool(true)),
                    (
                        "mirror",
                        Toml::Tables(vec![vec![("location", Toml::Str(v.to_owned()))]]),
                    ),
                ]
            };
            let text = toml_document(
                &[value],
                &[
                    ("top", Toml::Str((*value).to_owned())),
                    ("registry", Toml::Tables(vec![entry(value), entry("b")])),
                ],
            );
            assert_eq!(
                read_back::toml(&text),
                json!({
                    "top": value,
                    "registry": [
                        {"prefix": value, "flag": true, "mirror": [{"location": value}]},
                        {"prefix": "b", "flag": true, "mirror": [{"location": "b"}]},
                    ],
                }),
                "{text}"
            );
        }
    }
}
