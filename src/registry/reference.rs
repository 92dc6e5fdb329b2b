//! Image references: `[host[:port]/]repo/path[:tag][@sha256:<hex>]`.
//!
//! The grammar is docker's (`distribution/reference`): repository components
//! are lowercase `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`, a tag is
//! `[\w][\w.-]{0,127}`, and the first component is a host only if it holds a
//! `.` or a `:` or is `localhost`. Nothing is normalized: `busybox` stays
//! `busybox`, it does not become `docker.io/library/busybox`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

use super::RegistryError;

/// Longest repository name (host included) docker accepts.
const MAX_NAME_LEN: usize = 255;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host, with its port if any (`registry.example.com:5000`).
    pub host: Option<String>,
    /// Repository path inside the registry (`openshift/php`).
    pub repository: String,
    /// Tag, if one was given.
    pub tag: Option<String>,
    /// Digest, if one was given (it wins over the tag when fetching).
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// What to ask the registry for: the digest if there is one, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl FromStr for ImageReference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| {
                    invalid("the digest is not sha256:<64 lowercase hex characters>")
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before
        // that is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            None => (rest, None),
        };
        if tag.is_some_and(|t| !is_valid_tag(t)) {
            return Err(invalid(
                "the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
            ));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let (host, repository) = match name.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                if !is_valid_host(first) {
                    return Err(invalid("the registry host is not host[:port]"));
                }
                (Some(first), remainder)
            }
            _ => (None, name),
        };
        if !is_valid_repository(repository) {
            return Err(invalid(
                "repository components must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes",
            ));
        }
        Ok(ImageReference {
            host: host.map(str::to_owned),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `repo` is a repository path (`a/b/c`) under docker's grammar.
pub fn is_valid_repository(repo: &str) -> bool {
    !repo.is_empty() && repo.len() <= MAX_NAME_LEN && repo.split('/').all(is_valid_path_component)
}

/// Whether `tag` matches `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            word(*first)
                && rest.len() <= 127
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // One run of alphanumerics is required here.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // Then a separator: '.', '_', '__' or any number of '-'.
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
}

/// `host[:port]`: DNS labels, an IPv4 address, or a bracketed IPv6 address.
pub fn is_valid_host(host: &str) -> bool {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') {
        return true;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageReference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn refuse(s: &str) {
        assert!(
            matches!(
                s.parse::<ImageReference>(),
                Err(RegistryError::InvalidReference { .. })
            ),
            "{s:?} should be refused"
        );
    }

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn bare_name_has_no_host() {
        let r = parse("busybox");
        assert_eq!(r.host, None);
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, None);
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn first_component_without_dot_or_colon_is_a_namespace() {
        let r = parse("openshift/php:5.5");
        assert_eq!(r.host, None);
        assert_eq!(r.repository, "openshift/php");
        assert_eq!(r.tag.as_deref(), Some("5.5"));
    }

    #[test]
    fn host_with_port_and_tag() {
        let r = parse("registry.example.com:5000/team/app:v1.2-rc_3");
        assert_eq!(r.host.as_deref(), Some("registry.example.com:5000"));
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2-rc_3"));
        assert_eq!(
            r.to_string(),
            "registry.example.com:5000/team/app:v1.2-rc_3"
        );
    }

    #[test]
    fn localhost_is_a_host() {
        let r = parse("localhost/app");
        assert_eq!(r.host.as_deref(), Some("localhost"));
        assert_eq!(r.repository, "app");
        let r = parse("localhost:5000/app");
        assert_eq!(r.host.as_deref(), Some("localhost:5000"));
    }

    #[test]
    fn localhost_with_port_and_no_slash_is_a_name_and_tag() {
        let r = parse("localhost:5000");
        assert_eq!(r.host, None);
        assert_eq!(r.repository, "localhost");
        assert_eq!(r.tag.as_deref(), Some("5000"));
    }

    #[test]
    fn host_with_port_and_no_tag() {
        let r = parse("10.0.0.1:5000/app");
        assert_eq!(r.host.as_deref(), Some("10.0.0.1:5000"));
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn ipv6_host() {
        let r = parse("[::1]:5000/app:1");
        assert_eq!(r.host.as_deref(), Some("[::1]:5000"));
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag.as_deref(), Some("1"));
        refuse("[zz]:5000/app");
    }

    #[test]
    fn digest_only_and_tag_plus_digest() {
        let r = parse(&format!("quay.io/org/app@sha256:{HEX}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.map(|d| d.hex()), Some(HEX.to_owned()));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));

        let s = format!("quay.io/org/app:1.0@sha256:{HEX}");
        let r = parse(&s);
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert!(r.digest.is_some());
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn separators_in_components() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2/c3", "x-y.z_w"] {
            assert!(is_valid_repository(ok), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "a._b", "-a", "a-", "_a", "a_", "A", "a//b", "", "a/", "/a",
        ] {
            assert!(!is_valid_repository(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x"));
        assert!(is_valid_tag("sha256-abc.sig"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("-x"));
        assert!(!is_valid_tag("a/b"));
    }

    #[test]
    fn refuses_bad_references() {
        refuse("");
        refuse("UPPER/case");
        refuse("app:");
        refuse("app:-bad");
        refuse("app@sha256:short");
        refuse(&format!("app@sha512:{HEX}"));
        refuse("host.com:port/app");
        refuse("-bad.com/app");
        refuse("host.com/");
        refuse("a/../b");
        refuse(&"a".repeat(256));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "busybox",
            "busybox:1",
            "localhost:5000/a/b:c",
            "my.registry/x",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }
}
