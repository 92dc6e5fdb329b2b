//! How a registry asks for credentials: `WWW-Authenticate` challenges and
//! token service answers. Pure parsers.

use std::time::Duration;

use serde::Deserialize;

/// What a `401` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`: send the user and password.
    Basic,
    /// `Bearer realm=…`: get a token from the realm.
    Bearer(BearerChallenge),
}

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Token service URL.
    pub realm: String,
    /// `service` parameter to pass back.
    pub service: Option<String>,
    /// `scope` the registry said the request needs.
    pub scope: Option<String>,
    /// `error` (`invalid_token`, `insufficient_scope`), if given.
    pub error: Option<String>,
}

/// Picks the challenge bundle can answer from `WWW-Authenticate` values:
/// `Bearer` (with a realm) first, then `Basic`. `None` if there is neither or
/// nothing parses.
pub fn parse_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for value in values {
        let Ok(challenges) = http_auth::parse_challenges(value) else {
            tracing::debug!("unparseable WWW-Authenticate header");
            continue;
        };
        for c in challenges {
            if c.scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    c.params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.to_unescaped())
                        .filter(|v| !v.is_empty())
                };
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer(BearerChallenge {
                        realm,
                        service: param("service"),
                        scope: param("scope"),
                        error: param("error"),
                    }));
                }
            } else if c.scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// A token service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub token: String,
    /// How long it is valid (at least 60 s, the spec's default).
    pub expires_in: Duration,
}

/// Reads a token response: `token` or `access_token`, and `expires_in`.
pub fn parse_token_response(body: &[u8]) -> Result<Token, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| format!("token response is not JSON ({:?} error)", e.classify()))?;
    let token = raw
        .token
        .filter(|t| !t.is_empty())
        .or(raw.access_token.filter(|t| !t.is_empty()))
        .ok_or("token response holds neither token nor access_token")?;
    Ok(Token {
        token,
        expires_in: Duration::from_secs(raw.expires_in.unwrap_or(60).max(60)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_all_params() {
        let c = parse_challenge([
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull",error="insufficient_scope""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
                error: Some("insufficient_scope".into()),
            }))
        );
    }

    #[test]
    fn bearer_preferred_over_basic_and_case_insensitive() {
        let c = parse_challenge([r#"Basic realm="x""#, r#"bearer Realm="https://t/""#]);
        assert!(
            matches!(c, Some(Challenge::Bearer(b)) if b.realm == "https://t/" && b.service.is_none())
        );
        let c = parse_challenge([r#"Basic realm="x", Bearer realm="https://t/""#]);
        assert!(matches!(c, Some(Challenge::Bearer(_))));
    }

    #[test]
    fn basic_and_unusable_challenges() {
        assert_eq!(
            parse_challenge([r#"Basic realm="Registry Realm""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge(["Bearer service=x"]), None);
        assert_eq!(parse_challenge(["Negotiate"]), None);
        assert_eq!(parse_challenge(["@@@ garbage ,,"]), None);
        assert_eq!(parse_challenge(std::iter::empty()), None);
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).expect("parses");
        assert_eq!(t.token, "abc");
        assert_eq!(t.expires_in, Duration::from_secs(300));
        let t = parse_token_response(br#"{"access_token":"xyz","expires_in":5}"#).expect("parses");
        assert_eq!(t.token, "xyz");
        assert_eq!(t.expires_in, Duration::from_secs(60));
        let t = parse_token_response(br#"{"token":"","access_token":"z"}"#).expect("parses");
        assert_eq!(t.token, "z");
        assert!(parse_token_response(br#"{"expires_in":5}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }
}
