//! `Link` header parsing (RFC 8288), for catalog and tag-list pagination.
//!
//! Registries answer `Link: </v2/_catalog?last=x&n=100>; rel="next"`; the
//! target is a URI reference resolved against the URL of the request that
//! returned it.

use reqwest::Url;

/// One link-value: a target and its `rel` relation types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`, unresolved.
    pub target: String,
    /// Relation types from `rel`, lowercased (a `rel` may list several).
    pub rels: Vec<String>,
}

/// Why a `Link` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParseError {
    /// Byte offset where parsing stopped.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

/// Parses one `Link` header value (which may hold several comma-separated links).
pub fn parse_link_header(value: &str) -> Result<Vec<Link>, LinkParseError> {
    let mut p = Cursor { s: value, i: 0 };
    let mut links = Vec::new();
    loop {
        p.skip_ws_and_commas();
        if p.at_end() {
            return Ok(links);
        }
        p.expect(b'<', "'<' opening a link target")?;
        let start = p.i;
        while !p.at_end() && p.peek() != b'>' {
            p.i += 1;
        }
        let target = value[start..p.i].trim().to_owned();
        p.expect(b'>', "'>' closing a link target")?;
        let mut rels = Vec::new();
        loop {
            p.skip_ws();
            if p.at_end() || p.peek() == b',' {
                break;
            }
            p.expect(b';', "';' or ',' after a link")?;
            p.skip_ws();
            let name = p.token("a parameter name")?.to_ascii_lowercase();
            p.skip_ws();
            let val = if !p.at_end() && p.peek() == b'=' {
                p.i += 1;
                p.skip_ws();
                if !p.at_end() && p.peek() == b'"' {
                    p.quoted()?
                } else {
                    p.bare_value()?.to_owned()
                }
            } else {
                String::new()
            };
            // RFC 8288: only the first `rel` parameter counts.
            if name == "rel" && rels.is_empty() {
                rels = val
                    .split_ascii_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
        }
        links.push(Link { target, rels });
    }
}

/// Finds the `rel="next"` target among all `Link` header values and resolves it
/// against `request_url`. `Ok(None)` when there is no next page.
pub fn next_page<'a>(
    request_url: &Url,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Url>, LinkParseError> {
    for value in values {
        for link in parse_link_header(value)? {
            if link.rels.iter().any(|r| r == "next") {
                return request_url
                    .join(&link.target)
                    .map(Some)
                    .map_err(|_| LinkParseError {
                        at: 0,
                        expected: "a URI reference as the next-page target",
                    });
            }
        }
    }
    Ok(None)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> u8 {
        self.s.as_bytes()[self.i]
    }

    fn skip_ws(&mut self) {
        while !self.at_end() && matches!(self.peek(), b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while !self.at_end() && matches!(self.peek(), b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), LinkParseError> {
        if !self.at_end() && self.peek() == b {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn error(&self, expected: &'static str) -> LinkParseError {
        LinkParseError {
            at: self.i,
            expected,
        }
    }

    /// An RFC 7230 token.
    fn token(&mut self, expected: &'static str) -> Result<&'a str, LinkParseError> {
        let start = self.i;
        while !self.at_end()
            && (self.peek().is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&self.peek()))
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.error(expected));
        }
        Ok(&self.s[start..self.i])
    }

    /// An unquoted parameter value: a token, leniently also allowing `/`, `:`
    /// and other characters servers put there unquoted (`type=text/html`).
    fn bare_value(&mut self) -> Result<&'a str, LinkParseError> {
        let start = self.i;
        while !self.at_end()
            && !matches!(self.peek(), b';' | b',' | b' ' | b'\t' | b'"' | b'<' | b'>')
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.error("a parameter value"));
        }
        Ok(&self.s[start..self.i])
    }

    /// A quoted-string, unescaped.
    fn quoted(&mut self) -> Result<String, LinkParseError> {
        self.expect(b'"', "'\"'")?;
        let mut out = String::new();
        loop {
            if self.at_end() {
                return Err(self.error("'\"' closing a quoted string"));
            }
            let c = self.s[self.i..].chars().next().unwrap_or('"');
            self.i += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(escaped) = self.s[self.i..].chars().next() else {
                        return Err(self.error("a character after '\\'"));
                    };
                    self.i += escaped.len_utf8();
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn relative_target_resolves_against_the_request() {
        let base = url("https://r.example:5000/v2/_catalog?n=100");
        let next = next_page(&base, [r#"</v2/_catalog?last=b%2Fc&n=100>; rel="next""#])
            .expect("parses")
            .expect("has next");
        assert_eq!(
            next.as_str(),
            "https://r.example:5000/v2/_catalog?last=b%2Fc&n=100"
        );
    }

    #[test]
    fn path_relative_target() {
        let base = url("https://r.example/v2/app/tags/list");
        let next = next_page(&base, ["<list?last=9>; rel=next"]).expect("parses");
        assert_eq!(
            next.map(|u| u.to_string()).as_deref(),
            Some("https://r.example/v2/app/tags/list?last=9")
        );
    }

    #[test]
    fn absolute_target() {
        let base = url("https://r.example/v2/_catalog");
        let next = next_page(
            &base,
            [r#"<https://other.example/v2/_catalog?last=z>; rel="next""#],
        )
        .expect("parses");
        assert_eq!(
            next.map(|u| u.to_string()).as_deref(),
            Some("https://other.example/v2/_catalog?last=z")
        );
    }

    #[test]
    fn params_around_rel_and_case() {
        let links = parse_link_header(r#"<a>; title="x, y; z"; REL="Next Last" ; type=text/html"#)
            .expect("parses");
        assert_eq!(
            links,
            vec![Link {
                target: "a".into(),
                rels: vec!["next".into(), "last".into()]
            }]
        );
    }

    #[test]
    fn several_links_in_one_value_and_across_values() {
        let base = url("http://h/v2/_catalog");
        let v = r#"</prev>; rel="prev", </next>; rel="next""#;
        assert_eq!(
            next_page(&base, [v])
                .expect("parses")
                .map(|u| u.path().to_owned()),
            Some("/next".to_owned())
        );
        let values = [r#"</first>; rel="first""#, r#"</n2>; rel="next""#];
        assert_eq!(
            next_page(&base, values)
                .expect("parses")
                .map(|u| u.path().to_owned()),
            Some("/n2".to_owned())
        );
    }

    #[test]
    fn no_next_link() {
        let base = url("http://h/v2/_catalog");
        assert_eq!(
            next_page(&base, [r#"</p>; rel="prev""#]).expect("parses"),
            None
        );
        assert_eq!(next_page(&base, std::iter::empty()).expect("parses"), None);
        assert_eq!(next_page(&base, [""]).expect("parses"), None);
    }

    #[test]
    fn escaped_quotes() {
        let links = parse_link_header(r#"<x>; title="a \"b\""; rel="next""#).expect("parses");
        assert_eq!(links[0].rels, vec!["next".to_owned()]);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "next",
            "/v2/_catalog?last=a; rel=next",
            "<unterminated; rel=next",
            r#"<a> rel="next""#,
            r#"<a>; rel="next"#,
            "<a>; =x",
        ] {
            assert!(parse_link_header(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
